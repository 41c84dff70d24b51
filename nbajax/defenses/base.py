"""What every defense receives and returns, and how a defense is run.

A defense is a pure function `plan(inputs, cfg) -> Plan`: from the
backdoored model, the clean subset (and a teacher) and its config section it
builds the loss to fine-tune with and the variables to start from (FP after
its pruning step). It does no I/O: `run` hands the plan to the training
layer, which owns checkpoints, evaluation and logging. Adding a defense is
one module with a `plan` plus its line in `nbajax.defenses.DEFENSES`.
"""

import dataclasses
import logging
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from nbajax import models
from nbajax.checkpoint import Checkpointer
from nbajax.errors import check_range
from nbajax.training import from_config

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DefenseInputs:
  """What a defense computes from (no files, no logging).

  Attributes:
    model: the linen module (student and teacher share the architecture).
    model_name: its registry name (selects default distillation layers).
    variables: backdoored `{'params','batch_stats'}` to start from.
    x_clean: uint8 [n,H,W,C] clean subset the defender holds.
    y_clean: int32 [n] its labels.
    key: base PRNG key of this defense run.
    teacher: frozen teacher variables (NAD, NBA), or None.
  """

  model: nn.Module
  model_name: str
  variables: dict[str, Any]
  x_clean: np.ndarray
  y_clean: np.ndarray
  key: jax.Array
  teacher: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
  """A defense, as the training layer runs it: train `start` on the clean
  subset with `loss_fn` (the gradient of a scalar, as every defense here
  can be written), then read the defended model off the trained variables.

  Attributes:
    loss_fn: `(params, batch_stats, x, y, key, aux) -> (loss, (bs, sums))`;
      None when nothing is trained after the plan (ANP: `start` is the
      result).
    start: the variables `{'params','batch_stats'}` to train (FP: the pruned
      model; MCR: the middle point of its curve).
    aux: passed to every step (the teacher, FP's mask).
    notes: JSON-able facts of a step before training (FP's pruning), put
      into the first history entry.
    summary: a line for the log about that step ('' for none).
    section: the optimizer section to train with, where the defense's
      paper prescribes its own (I-BAU: Adam); None: the defense config's.
    epoch_aux: `(variables, epoch) -> aux`, recomputed at the start of every
      epoch from the current variables (I-BAU's universal perturbation).
    view: `variables -> variables`, the model the trained variables stand
      for (MCR: the curve's point at t, batch norm re-estimated); None: the
      trained variables.
    sweep: `(trained variables, evaluate) -> [entries]`, the defended model
      along the defense's own parameter (MCR's t, ANP's pruning threshold),
      each entry `{'value', **evaluate(variables)}`; recorded, never used
      to choose anything.
    sweep_name: what the sweep's value is ('t', 'threshold').
  """

  loss_fn: Callable[..., Any] | None
  start: dict[str, Any]
  aux: Any = None
  notes: dict[str, Any] = dataclasses.field(default_factory=dict)
  summary: str = ''
  section: ml_collections.ConfigDict | None = None
  epoch_aux: Callable[[dict[str, Any], int], Any] | None = None
  view: Callable[[dict[str, Any]], dict[str, Any]] | None = None
  sweep: Callable[..., list[dict[str, Any]]] | None = None
  sweep_name: str = ''


def check_number(section: ml_collections.ConfigDict, prefix: str, name: str,
                 *, low: float, low_open: bool = False,
                 high: float | None = None) -> None:
  """`errors.check_range` of `section[name]`, named '{prefix}.{name}'."""
  check_range(section[name], f'{prefix}.{name}', low=low, low_open=low_open,
              high=high)


def check_integer(section: ml_collections.ConfigDict, prefix: str, name: str,
                  *, low: int) -> None:
  """`errors.check_range` of an int field `section[name]`."""
  check_range(section[name], f'{prefix}.{name}', low=low, integer=True)


def layer_betas(cfg: ml_collections.ConfigDict,
                model_name: str) -> dict[str, float]:
  """`{layer: beta}` from `cfg.layers` (empty: the model's default layers)
  and `cfg.betas` (one per layer, or a single value for all).

  Raises:
    ValueError: when the counts differ, a layer is named twice or a beta is
      negative.
  """
  layers = tuple(cfg.layers) or models.distill_layers(model_name)
  if len(set(layers)) != len(layers):
    # The dict below would keep only the last beta of a repeated layer.
    raise ValueError(f'layers {layers} name a layer more than once')
  betas = tuple(float(b) for b in cfg.betas)
  if len(betas) == 1:
    betas = betas * len(layers)
  if len(betas) != len(layers):
    raise ValueError(
        f'betas {betas} must give one value per layer {layers} (or one for '
        'all)')
  if any(b < 0 for b in betas):
    raise ValueError(f'betas must be >= 0, got {betas}')
  return dict(zip(layers, betas))


def run(plan: Plan, inputs: DefenseInputs, cfg: ml_collections.ConfigDict,
        *, checkpointer: Checkpointer | None = None,
        meta: dict[str, Any] | None = None,
        eval_fn: Callable[[Any, Any], dict[str, float]] | None = None,
        name: str = 'defense',
        eval_every: int = 1
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Runs a defense's plan with the optimizer fields of `cfg` (or of
  `plan.section`).

  Training, checkpoints (and resume from `checkpointer`), evaluation and
  logging are the training layer's (`training.from_config.finetune`); with
  no `plan.loss_fn` or 0 epochs the plan's start is the result, saved as
  checkpoint step 0 (`from_config.save_untrained`).

  Returns:
    (defended variables, per-epoch history; the first entry carries
    `plan.notes`, the last `{'sweep': [...], 'sweep_name': ...}` when the
    plan has a sweep and `eval_fn` is given).
  """
  if plan.summary:
    _LOG.info('[%s] %s', name, plan.summary)
  section = cfg if plan.section is None else plan.section
  untrained = plan.loss_fn is None or int(section.epochs) == 0
  if untrained:
    trained, history = jax.device_get(plan.start), [dict(plan.notes)]
  else:
    trained, history = from_config.finetune(
        inputs.model, plan.start, inputs.x_clean, inputs.y_clean, section,
        key=inputs.key, loss_fn=plan.loss_fn, aux=plan.aux,
        epoch_aux=plan.epoch_aux, view=plan.view, checkpointer=checkpointer,
        meta=meta, eval_fn=eval_fn, name=name,
        eval_every=eval_every)
    if plan.notes:
      history[0] = {**history[0], **plan.notes}
  if plan.sweep is not None and eval_fn is not None:
    entries = plan.sweep(trained,
                         lambda variables: eval_fn(inputs.model.apply,
                                                   variables))
    history[-1] = {**history[-1], 'sweep': entries,
                   'sweep_name': plan.sweep_name}
    _LOG.info('[%s] %s', name, format_sweep(entries, plan.sweep_name))
  variables = plan.view(trained) if plan.view is not None else trained
  if untrained and checkpointer is not None:
    from_config.save_untrained(
        inputs.model, variables, checkpointer, key=inputs.key,
        image_shape=inputs.x_clean.shape[1:],
        meta={**(meta or {}), 'history': history})
  return jax.device_get(variables), history


def format_sweep(entries: list[dict[str, Any]], name: str) -> str:
  """'t 0.0: acc 95.1% asr 99.0% | t 0.1: ...' for the log."""
  def one(entry):
    metrics = ' '.join(f'{k} {100 * v:.1f}%' for k, v in entry.items()
                       if k != 'value' and isinstance(v, float))
    return f'{name} {entry["value"]:g}: {metrics}'
  return ' | '.join(one(e) for e in entries)
