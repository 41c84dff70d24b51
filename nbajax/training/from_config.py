"""Build the optimizer, augmentation and Trainer from an optimizer section.

An optimizer section (`config.train`, `config.defense`,
`config.defense.teacher`) has the fields epochs, batch_size, lr, schedule,
boundaries, decay, momentum, nesterov, weight_decay, crop_padding, flip,
cutout and loop. Training from scratch and every defense read them here,
so a field means the same thing everywhere.
"""

from typing import Any, Callable

import optax

from nbajax.data import augment as augment_images
from nbajax.training.loop import Trainer
from nbajax.training.optim import make_optimizer, make_schedule
from nbajax.training.steps import LossFn


def augment_fn(cfg: Any) -> Callable | None:
  """On-device augmentation from `crop_padding`, `flip`, `cutout` (None
  when all are off)."""
  pad = int(cfg.get('crop_padding', 0))
  flip = bool(cfg.get('flip', False))
  cut = int(cfg.get('cutout', 0))
  if not (pad or flip or cut):
    return None
  return lambda x, key: augment_images(x, key, crop_padding=pad, flip=flip,
                                       cutout=cut)


def trainer(loss_fn: LossFn, cfg: Any) -> Trainer:
  """A Trainer over all devices with the section's batch, augmentation and
  loop."""
  return Trainer(loss_fn, batch_size=int(cfg.batch_size),
                 augment_fn=augment_fn(cfg), loop=cfg.get('loop', 'auto'))


def optimizer(cfg: Any, *, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with the section's schedule, momentum and weight decay."""
  schedule = make_schedule(
      lr=float(cfg.lr), schedule=cfg.schedule,
      steps_per_epoch=steps_per_epoch, epochs=int(cfg.epochs),
      boundaries=tuple(cfg.get('boundaries', ())),
      decay=float(cfg.get('decay', 0.1)))
  return make_optimizer(schedule, momentum=float(cfg.momentum),
                        nesterov=bool(cfg.nesterov),
                        weight_decay=float(cfg.weight_decay))
