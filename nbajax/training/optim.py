"""SGD (or Adam) with PyTorch-style weight decay, and LR schedules.

Weight decay is added to the gradient before momentum, as `torch.optim.SGD`
(and `torch.optim.Adam`'s `weight_decay`) does, so that the NAD recipe (SGD
0.9 Nesterov, wd 1e-4) and I-BAU's (Adam) mean the same here.
"""

from typing import Sequence

import optax

SCHEDULES = ('constant', 'step', 'cosine')
OPTIMIZERS = ('sgd', 'adam')


def make_schedule(
    *,
    lr: float,
    schedule: str,
    steps_per_epoch: int,
    epochs: int,
    boundaries: Sequence[int] = (),
    decay: float = 0.1,
) -> optax.Schedule:
  """Learning-rate schedule indexed by optimizer step.

  Args:
    lr: initial learning rate, > 0.
    schedule: 'constant', 'step' (multiply by `decay` at each epoch in
      `boundaries`) or 'cosine' (to zero over all epochs).
    steps_per_epoch: optimizer steps per epoch, >= 1.
    epochs: total epochs, >= 1.
    boundaries: epochs at which 'step' decays the rate.
    decay: multiplicative factor for 'step'.

  Returns:
    An optax schedule.

  Raises:
    ValueError: for an unknown schedule or a value out of range.
  """
  if lr <= 0:
    raise ValueError(f'lr must be > 0, got {lr}')
  if steps_per_epoch < 1 or epochs < 1:
    raise ValueError(
        f'steps_per_epoch and epochs must be >= 1, got {steps_per_epoch}, '
        f'{epochs}')
  if schedule == 'constant':
    return optax.constant_schedule(lr)
  if schedule == 'step':
    return optax.piecewise_constant_schedule(
        lr, {int(b) * steps_per_epoch: decay for b in boundaries})
  if schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, steps_per_epoch * epochs)
  raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')


def make_optimizer(
    schedule: optax.Schedule,
    *,
    kind: str = 'sgd',
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
) -> optax.GradientTransformation:
  """SGD as `torch.optim.SGD(lr, momentum, nesterov, weight_decay)`, or
  Adam as `torch.optim.Adam(lr, weight_decay)`.

  Args:
    schedule: learning rate per step.
    kind: 'sgd' or 'adam' (which ignores momentum and nesterov).
    momentum: in [0, 1).
    nesterov: Nesterov momentum.
    weight_decay: L2 coefficient added to the gradient, >= 0.

  Returns:
    The optax transformation.
  """
  if kind not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {kind!r}')
  if not 0 <= momentum < 1:
    raise ValueError(f'momentum must be in [0, 1), got {momentum}')
  if weight_decay < 0:
    raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
  if kind == 'adam':
    # torch's Adam defaults (betas 0.9/0.999, eps 1e-8) are optax's too.
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.adam(schedule))
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov),
  )
