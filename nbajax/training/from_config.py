"""Build the optimizer, augmentation and Trainer from an optimizer section.

An optimizer section (`config.train`, `config.defense`,
`config.defense.teacher`, `config.defense.ibau.outer`) has the fields
optimizer, epochs, batch_size, lr, schedule, boundaries, decay, momentum,
nesterov, weight_decay, crop_padding, flip, cutout and loop. Training from
scratch and every defense read them here, so a field means the same thing
everywhere.
"""

from typing import Any, Callable

import jax
import numpy as np
import optax

from nbajax.checkpoint import Checkpointer
from nbajax.data import augment as augment_images
from nbajax.training.fit import fit
from nbajax.training.loop import Trainer
from nbajax.training.optim import make_optimizer, make_schedule
from nbajax.training.state import create_train_state
from nbajax.training.steps import LossFn


def augment_fn(cfg: Any) -> Callable | None:
  """On-device augmentation from `crop_padding`, `flip`, `cutout` (None
  when all are off)."""
  pad = int(cfg.crop_padding)
  flip = bool(cfg.flip)
  cut = int(cfg.cutout)
  if not (pad or flip or cut):
    return None
  return lambda x, key: augment_images(x, key, crop_padding=pad, flip=flip,
                                       cutout=cut)


def trainer(loss_fn: LossFn, cfg: Any) -> Trainer:
  """A Trainer over all devices with the section's batch, augmentation and
  loop."""
  return Trainer(loss_fn, batch_size=int(cfg.batch_size),
                 augment_fn=augment_fn(cfg), loop=cfg.loop)


def optimizer(cfg: Any, *, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD or Adam with the section's schedule, momentum and weight decay."""
  schedule = make_schedule(
      lr=float(cfg.lr), schedule=cfg.schedule,
      steps_per_epoch=steps_per_epoch, epochs=int(cfg.epochs),
      boundaries=tuple(cfg.boundaries),
      decay=float(cfg.decay))
  return make_optimizer(schedule, kind=cfg.optimizer,
                        momentum=float(cfg.momentum),
                        nesterov=bool(cfg.nesterov),
                        weight_decay=float(cfg.weight_decay))


def finetune(model: Any, start: dict[str, Any], x: np.ndarray, y: np.ndarray,
             cfg: Any, *, key: jax.Array, loss_fn: LossFn, aux: Any = None,
             epoch_aux: Callable[[dict[str, Any], int], Any] | None = None,
             view: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
             checkpointer: Checkpointer | None = None,
             meta: dict[str, Any] | None = None,
             eval_fn: Callable[[Any, Any], dict[str, float]] | None = None,
             name: str = 'finetune', eval_every: int = 1
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Trains `start` with `loss_fn` on (x, y) for the section's epochs.

  The training side of every defense (`nbajax.defenses.run`): optimizer,
  augmentation and loop from `cfg`, per-epoch checkpoints and resume from
  `checkpointer`, evaluation and progress lines.

  Args:
    model: the linen module.
    start: `{'params', 'batch_stats'}` to start from.
    x: uint8 [N, H, W, C] images; y: int [N] labels.
    cfg: an optimizer section (epochs, lr, ...).
    key: base PRNG key of the run.
    loss_fn: `(params, batch_stats, x, y, key, aux) -> (loss, (bs, sums))`.
    aux: passed to every step (teacher variables, masks).
    epoch_aux: recomputed from the variables at each epoch's start instead
      of `aux` (see `fit`).
    view: the model the trained variables stand for, which `eval_fn` sees
      (MCR trains a curve's middle point and evaluates a point on it);
      None: the variables themselves.
    checkpointer: where each epoch is saved (None: nowhere).
    meta: JSON metadata saved with each step.
    eval_fn: `(apply_fn, variables) -> metrics` after each epoch.
    name: label of the progress lines.
    eval_every: epochs between `eval_fn` calls (the last epoch always).

  Returns:
    (trained variables on the host, per-epoch history).
  """
  runner = trainer(loss_fn, cfg)
  tx = optimizer(cfg, steps_per_epoch=runner.steps_per_epoch(len(x)))
  state = create_train_state(model, tx, key, tuple(x.shape[1:]),
                             variables=start)
  view = view or (lambda variables: variables)
  evaluate = ((lambda s: eval_fn(model.apply, view(s.variables)))
              if eval_fn else None)
  state, history = fit(
      state, x, y, trainer=runner, epochs=int(cfg.epochs), key=key, aux=aux,
      epoch_aux=epoch_aux, checkpointer=checkpointer, meta=meta,
      eval_fn=evaluate, name=name, eval_every=eval_every)
  return jax.device_get(state.variables), history


def save_untrained(model: Any, variables: dict[str, Any],
                   checkpointer: Checkpointer, *, key: jax.Array,
                   image_shape: tuple[int, ...],
                   meta: dict[str, Any]) -> None:
  """Saves `variables` as step 0 (no epoch trained) of `checkpointer`.

  For a defense whose result is not trained after its plan (ANP; FP with
  0 epochs): its model is then where every other run leaves its own, for a
  restore with plain Orbax and for reusing the finished run. The state has
  no optimizer (`optax.identity`), since nothing resumes from it.
  """
  state = create_train_state(model, optax.identity(), key,
                             tuple(image_shape), variables=variables)
  checkpointer.save(0, state, meta)
