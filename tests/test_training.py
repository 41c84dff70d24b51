"""Tests of nbajax.training: optimizer, steps, epoch loop, sharding, resume."""

import logging
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nbajax import training
from nbajax.checkpoint import Checkpointer
from tests.tiny import TinyNet, digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(model, lr=0.05, steps=10, epochs=2):
  tx = training.make_optimizer(training.make_schedule(
      lr=lr, schedule='constant', steps_per_epoch=steps, epochs=epochs))
  return training.create_train_state(model, tx, jax.random.key(0), (8, 8, 1))


def _leaves_equal(a, b):
  return all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


class TestOptimizer:

  def test_weight_decay_is_added_before_momentum_like_torch(self):
    # torch SGD: g' = g + wd*w; buf = g'; nesterov step = g' + m*buf.
    tx = training.make_optimizer(optax.constant_schedule(0.1), momentum=0.9,
                                 nesterov=True, weight_decay=0.5)
    w = {'w': jnp.array([2.0])}
    g = {'w': jnp.array([1.0])}
    updates, _ = tx.update(g, tx.init(w), w)
    g2 = 1.0 + 0.5 * 2.0
    np.testing.assert_allclose(updates['w'], [-0.1 * (g2 + 0.9 * g2)],
                               rtol=1e-6)

  def test_step_schedule_decays_at_epoch_boundaries(self):
    s = training.make_schedule(lr=0.1, schedule='step', steps_per_epoch=10,
                               epochs=20, boundaries=(2,), decay=0.1)
    np.testing.assert_allclose([s(0), s(19), s(20), s(199)],
                               [0.1, 0.1, 0.01, 0.01], rtol=1e-6)

  @pytest.mark.parametrize('kwargs, match', [
      (dict(lr=0.0, schedule='constant'), 'lr'),
      (dict(lr=0.1, schedule='linear'), 'schedule'),
  ])
  def test_bad_values_name_the_field(self, kwargs, match):
    with pytest.raises(ValueError, match=match):
      training.make_schedule(steps_per_epoch=1, epochs=1, **kwargs)


class TestCreateTrainState:

  def test_weakly_typed_variables_become_strong_so_the_step_compiles_once(
      self):
    model = TinyNet()
    tx = training.make_optimizer(optax.constant_schedule(0.1))
    init = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
    weak = jax.tree_util.tree_map(lambda a: jnp.full(a.shape, 0.1), init)
    assert all(a.weak_type for a in jax.tree_util.tree_leaves(weak))
    state = training.create_train_state(model, tx, jax.random.key(0),
                                        (8, 8, 1), variables=weak)
    assert not any(a.weak_type for a in jax.tree_util.tree_leaves(
        (state.params, state.batch_stats)))
    x, y = digits(128)
    trainer = training.Trainer(training.make_ce_loss(model), batch_size=64)
    trainer.run_epoch(training.replicate(state, trainer.mesh),
                      jnp.asarray(x), jnp.asarray(y), 0, jax.random.key(1))
    assert trainer.trace_count == 1


class TestTrainStep:

  def test_step_changes_params_and_batch_stats_and_counts(self):
    model = TinyNet()
    state = _state(model)
    x, y = digits(32)
    new, sums = jax.jit(lambda s, x, y: training.train_step(
        s, x, y, jax.random.key(1), None,
        loss_fn=training.make_ce_loss(model)))(state, x, y)
    assert int(new.step) == 1
    assert float(sums['seen']) == 32
    assert 0 <= float(sums['correct']) <= 32
    assert not _leaves_equal(new.params, state.params)
    assert not _leaves_equal(new.batch_stats, state.batch_stats)


class TestTrainer:

  def test_loss_decreases_and_compiles_once(self):
    model = TinyNet()
    x, y = digits(512)
    trainer = training.Trainer(training.make_ce_loss(model), batch_size=64)
    state = training.replicate(_state(model, lr=0.1, steps=8),
                               trainer.mesh)
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    losses = []
    for epoch in range(4):
      state, m = trainer.run_epoch(state, xd, yd, epoch, jax.random.key(3))
      losses.append(m['loss'])
      assert m['seen'] == 512
    assert losses[-1] < losses[0]
    assert trainer.trace_count == 1

  def test_scan_loop_matches_step_loop(self):
    model = TinyNet()
    x, y = digits(256)
    results = []
    for loop in ('step', 'scan'):
      trainer = training.Trainer(training.make_ce_loss(model), batch_size=64,
                                 loop=loop)
      state, _ = trainer.run_epoch(_state(model), jnp.asarray(x),
                                   jnp.asarray(y), 0, jax.random.key(3))
      results.append(state.params)
    for a, b in zip(jax.tree_util.tree_leaves(results[0]),
                    jax.tree_util.tree_leaves(results[1])):
      np.testing.assert_allclose(a, b, atol=1e-5)

  def test_batch_larger_than_data_is_a_clear_error(self):
    trainer = training.Trainer(training.make_ce_loss(TinyNet()),
                               batch_size=64)
    with pytest.raises(ValueError, match='fewer than one batch'):
      trainer.steps_per_epoch(10)

  def test_unknown_loop_is_rejected(self):
    with pytest.raises(ValueError, match='loop'):
      training.resolve_loop('while')


class TestFit:

  def test_resumed_run_equals_uninterrupted(self, tmp_path):
    model = TinyNet()
    x, y = digits(256)

    def run(directory, epochs):
      trainer = training.Trainer(training.make_ce_loss(model), batch_size=64)
      return training.fit(_state(model), x, y, trainer=trainer, epochs=epochs,
                          key=jax.random.key(7),
                          checkpointer=Checkpointer(directory))

    full, full_hist = run(tmp_path / 'a', 3)
    run(tmp_path / 'b', 2)  # "Interrupted" after two epochs.
    resumed, hist = run(tmp_path / 'b', 3)
    assert _leaves_equal(full.to_tree(), resumed.to_tree())
    assert [h['train_loss'] for h in hist] == [
        h['train_loss'] for h in full_hist]

  def test_non_finite_loss_names_the_epoch(self):
    model = TinyNet()
    x, y = digits(128)
    trainer = training.Trainer(training.make_ce_loss(model), batch_size=64)
    with pytest.raises(FloatingPointError, match=r'in epoch \d+'):
      training.fit(_state(model, lr=1e30), x, y, trainer=trainer, epochs=2,
                   key=jax.random.key(0))

  def test_predict_pads_the_last_batch(self):
    model = TinyNet()
    state = _state(model)
    x, _ = digits(70)
    preds = training.predict(model.apply, state.variables, x, batch_size=32)
    logits, _ = model.apply(state.variables, x / 255.0, train=False)
    np.testing.assert_array_equal(preds, np.argmax(logits, -1))


_SHARDED_SCRIPT = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax, jax.numpy as jnp, numpy as np
    from nbajax import training
    from tests.tiny import TinyNet, digits
    assert len(jax.devices()) == 8, jax.devices()
    model = TinyNet()
    x, y = digits(256)
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = training.make_mesh(devices)
      tx = training.make_optimizer(training.make_schedule(
          lr=0.1, schedule='constant', steps_per_epoch=4, epochs=2))
      state = training.create_train_state(model, tx, jax.random.key(0),
                                          (8, 8, 1))
      trainer = training.Trainer(training.make_ce_loss(model), batch_size=64,
                                 mesh=mesh)
      state = training.replicate(state, mesh)
      xd = training.replicate(x, mesh)
      yd = training.replicate(y, mesh)
      for epoch in range(2):
        state, _ = trainer.run_epoch(state, xd, yd, epoch, jax.random.key(1))
      out.append(jax.device_get(state.to_tree()))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(out[0]), jax.tree_util.tree_leaves(out[1])))
    print('MAXDIFF', diff)
''')


def test_eight_fake_devices_match_one_device():
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _SHARDED_SCRIPT], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  diff = float(proc.stdout.split('MAXDIFF')[1])
  assert diff < 1e-5, diff


def test_log_epoch_line_names_the_run_and_its_metrics(caplog):
  caplog.set_level(logging.INFO, logger='nbajax')
  training.log_epoch(2, 10, {'loss': 0.5, 'acc': 0.25, 'seen': 100.0}, 2.0,
                     {'test_acc': 0.875, 'pruned': 3}, name='nad')
  assert caplog.messages == [
      '[nad] epoch 3/10 | loss 0.5000 | train_acc 25.00% | test_acc 87.50% '
      '| pruned 3 | 50 img/s | 2.0s']
