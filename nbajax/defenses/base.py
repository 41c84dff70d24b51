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
from nbajax.training import from_config


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
  """A defense, as the training layer runs it: fine-tune `start` on the
  clean subset with `loss_fn` (every defense here is of that form).

  Attributes:
    loss_fn: `(params, batch_stats, x, y, key, aux) -> (loss, (bs, sums))`.
    start: `{'params','batch_stats'}` to fine-tune (FP: the pruned model).
    aux: passed to every step (the teacher, FP's mask).
    notes: JSON-able facts of a step before training (FP's pruning), put
      into the first history entry.
    summary: a line for the log about that step ('' for none).
  """

  loss_fn: Callable[..., Any]
  start: dict[str, Any]
  aux: Any = None
  notes: dict[str, Any] = dataclasses.field(default_factory=dict)
  summary: str = ''


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
        log: Callable[[str], None] = logging.info, name: str = 'defense',
        eval_every: int = 1
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Runs a defense's plan with the optimizer fields of `cfg`.

  Training, checkpoints (and resume from `checkpointer`), evaluation and
  logging are the training layer's (`training.from_config.finetune`); with
  `cfg.epochs == 0` the plan's start is the result.

  Returns:
    (defended variables, per-epoch history; the first entry carries
    `plan.notes`).
  """
  if plan.summary:
    log(f'[{name}] {plan.summary}')
  if int(cfg.epochs) == 0:
    return jax.device_get(plan.start), [dict(plan.notes)]
  variables, history = from_config.finetune(
      inputs.model, plan.start, inputs.x_clean, inputs.y_clean, cfg,
      key=inputs.key, loss_fn=plan.loss_fn, aux=plan.aux,
      checkpointer=checkpointer, meta=meta, eval_fn=eval_fn, log=log,
      name=name, eval_every=eval_every)
  if plan.notes:
    history[0] = {**history[0], **plan.notes}
  return variables, history
