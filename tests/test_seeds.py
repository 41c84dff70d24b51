"""Several seeds in one vmapped program equal the separate runs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nbajax import data, training
from nbajax.training import seeds as seeds_lib
from tests.tiny import TinyNet, digits

SEEDS = 4
MODEL = TinyNet()  # One instance: stacked states share its apply_fn.


def _state(seed, tx):
  return training.create_train_state(MODEL, tx, jax.random.key(seed),
                                     (8, 8, 1))


def test_four_seeds_at_once_equal_four_separate_runs():
  x, y = digits(64)
  x, y = jnp.asarray(x), jnp.asarray(y)
  tx = training.make_optimizer(lambda step: 0.05, momentum=0.9)
  loss_fn = training.make_ce_loss(MODEL)
  augment = _augment
  keys = [jax.random.key(100 + s) for s in range(SEEDS)]

  single = training.Trainer(loss_fn, batch_size=16, augment_fn=augment,
                            loop='step')
  separate, separate_metrics = [], []
  for s in range(SEEDS):
    state = _state(s, tx)
    for epoch in range(2):
      state, metrics = single.run_epoch(state, x, y, epoch, keys[s])
    separate.append(state.to_tree())
    separate_metrics.append(metrics)

  many = seeds_lib.SeedTrainer(loss_fn, batch_size=16, augment_fn=augment)
  states = seeds_lib.stack([_state(s, tx) for s in range(SEEDS)])
  for epoch in range(2):
    states, metrics = many.run_epoch(states, x, y, epoch, jnp.stack(keys))
  together = [s.to_tree() for s in seeds_lib.unstack(states)]

  for s in range(SEEDS):
    chex.assert_trees_all_close(separate[s], together[s], rtol=2e-5,
                                atol=2e-6)
    assert metrics[s]['acc'] == separate_metrics[s]['acc']
    assert abs(metrics[s]['loss'] - separate_metrics[s]['loss']) < 1e-5
  # The seeds did differ (so the comparison compared something).
  assert not np.allclose(together[0]['params']['head']['kernel'],
                         together[1]['params']['head']['kernel'])


def _augment(x, key):
  return data.augment(x, key, crop_padding=1, flip=False, cutout=0)
