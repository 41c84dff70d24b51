"""Backdoor defenses: each maps a backdoored model + clean subset + config
to a plan the training layer runs (`plan(inputs, cfg) -> Plan`, then
`run`; `defend` does both).

* `ft`: fine-tuning (the control; also makes the teacher),
* `fp`: fine-pruning,
* `nad`: Neural Attention Distillation,
* `nba`: Neural Behavior Alignment (our formulation of the paper),
* `mcr`: mode connectivity repair,
* `anp`: adversarial neuron pruning,
* `ibau`: implicit backdoor adversarial unlearning.

A new defense is one module with a pure `plan` and its line in `DEFENSES`
(and in `CHECKS` when it has fields of its own to check before any work).
"""

from typing import Any, Callable

import ml_collections

from nbajax.defenses import anp, fp, ft, ibau, mcr, nad, nba
from nbajax.defenses.base import (DefenseInputs, Plan, format_sweep,
                                  layer_betas, run)

DEFENSES: dict[str, Callable[[DefenseInputs, ml_collections.ConfigDict],
                             Plan]] = {
    'ft': ft.plan, 'fp': fp.plan, 'nad': nad.plan, 'nba': nba.plan,
    'mcr': mcr.plan, 'anp': anp.plan, 'ibau': ibau.plan}
DEFENSE_NAMES = tuple(DEFENSES)
# Defenses that start from the teacher: NAD's and NBA's distillation
# target, MCR's second end point.
NEEDS_TEACHER = ('nad', 'nba', 'mcr')
# `check(defense_cfg)` of a defense's own fields (ValueError naming one).
CHECKS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    'fp': fp.check, 'nba': nba.check, 'mcr': mcr.check, 'anp': anp.check,
    'ibau': ibau.check}
# Optimizer sections a defense trains with besides `config.defense` itself
# (paths inside it), checked like it before any work.
OPTIMIZER_SECTIONS: dict[str, tuple[str, ...]] = {
    'ibau': ibau.OPTIMIZER_SECTIONS}


def get_defense(name: str) -> Callable[[DefenseInputs,
                                        ml_collections.ConfigDict], Plan]:
  """The `plan(inputs, cfg)` function of `name`.

  Raises:
    ValueError: for an unknown name (lists the known ones).
  """
  if name not in DEFENSES:
    raise ValueError(f'unknown defense {name!r}; known: {DEFENSE_NAMES}')
  return DEFENSES[name]


def defend(defense: str, inputs: DefenseInputs,
           cfg: ml_collections.ConfigDict,
           **hooks: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Plans `defense` (a name) and runs it (`hooks`: see `run`).

  Returns:
    (defended variables, per-epoch history).
  """
  return run(get_defense(defense)(inputs, cfg), inputs, cfg, **hooks)


__all__ = ['CHECKS', 'DEFENSES', 'DEFENSE_NAMES', 'DefenseInputs',
           'NEEDS_TEACHER', 'OPTIMIZER_SECTIONS', 'Plan', 'defend',
           'format_sweep', 'get_defense', 'layer_betas', 'run']
