"""A tiny Flax model and data for fast tests of the training machinery."""

import flax.linen as nn
import jax
import numpy as np


class TinyNet(nn.Module):
  """Conv-BN-ReLU + Dense head; returns (logits [B,K], {'group1': NHWC})."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Conv(8, (3, 3), use_bias=False)(x)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    h = nn.relu(h)
    return nn.Dense(self.num_classes, name='head')(h.mean((1, 2))), {
        'group1': h}


def digits(n: int | None = None):
  """sklearn digits as uint8 [N,8,8,1] and int32 labels."""
  from sklearn.datasets import load_digits
  d = load_digits()
  x = np.round(d.images * 255 / 16).astype(np.uint8)[..., None]
  y = d.target.astype(np.int32)
  return (x, y) if n is None else (x[:n], y[:n])


def tiny_state(num_classes: int = 10, seed: int = 0, lr: float = 0.1):
  """A TinyNet train state on [8, 8, 1] inputs, constant-lr SGD: a small
  real state for checkpoint and reliability tests."""
  from nbajax import training
  tx = training.make_optimizer(training.make_schedule(
      lr=lr, schedule='constant', steps_per_epoch=1, epochs=1))
  return training.create_train_state(TinyNet(num_classes), tx,
                                     jax.random.key(seed), (8, 8, 1))
