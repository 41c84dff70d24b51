"""What every defense receives, and the fine-tuning loop they share.

A defense maps a backdoored model + a clean subset + its config to a
defended model. All four here fine-tune the backdoored weights on the clean
subset with some loss; they differ in that loss (and FP in a pruning step
first), so `finetune` is the one loop they all call.
"""

import dataclasses
import logging
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from nbajax import models, training
from nbajax.training import from_config
from nbajax.checkpoint import Checkpointer


@dataclasses.dataclass
class DefenseContext:
  """Inputs of a defense run.

  Attributes:
    model: the linen module (student and teacher share the architecture).
    model_name: its registry name (selects default distillation layers).
    variables: backdoored `{'params','batch_stats'}` to start from.
    x_clean: uint8 [n,H,W,C] clean subset the defender holds.
    y_clean: int32 [n] its labels.
    key: base PRNG key of this defense run.
    teacher: frozen teacher variables (NAD, NBA), or None.
    checkpointer: per-epoch checkpoints (resume), or None.
    meta: JSON metadata saved with each checkpoint.
    eval_fn: `(apply_fn, variables) -> metrics` after each epoch, or None.
    log: progress sink.
  """

  model: nn.Module
  model_name: str
  variables: dict[str, Any]
  x_clean: np.ndarray
  y_clean: np.ndarray
  key: jax.Array
  teacher: dict[str, Any] | None = None
  checkpointer: Checkpointer | None = None
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  eval_fn: Callable[[Any, Any], dict[str, float]] | None = None
  log: Callable[[str], None] = logging.info
  name: str = 'defense'


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


def finetune(ctx: DefenseContext, cfg: ml_collections.ConfigDict,
             loss_fn, *, aux: Any = None,
             variables: dict[str, Any] | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Fine-tunes `variables` (default the backdoored ones) with `loss_fn`.

  Uses the optimizer fields of `cfg` (epochs, batch_size, lr, schedule,
  boundaries, decay, momentum, nesterov, weight_decay, loop) and resumes
  from `ctx.checkpointer` when it holds steps.

  Returns:
    (defended variables, per-epoch history).
  """
  trainer = from_config.trainer(loss_fn, cfg)
  tx = from_config.optimizer(
      cfg, steps_per_epoch=trainer.steps_per_epoch(len(ctx.x_clean)))
  start = variables if variables is not None else ctx.variables
  state = training.create_train_state(ctx.model, tx, ctx.key,
                                      tuple(ctx.x_clean.shape[1:]),
                                      variables=start)
  evaluate = ((lambda s: ctx.eval_fn(ctx.model.apply, s.variables))
              if ctx.eval_fn else None)
  state, history = training.fit(
      state, ctx.x_clean, ctx.y_clean, trainer=trainer,
      epochs=int(cfg.epochs), key=ctx.key, aux=aux,
      checkpointer=ctx.checkpointer, meta=ctx.meta, eval_fn=evaluate,
      log=ctx.log, name=ctx.name, eval_every=int(cfg.get('eval_every', 1)))
  return jax.device_get(state.variables), history
