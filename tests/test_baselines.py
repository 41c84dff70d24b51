"""Tests of the baselines MCR, ANP and I-BAU: their core computations pinned
by hand values and finite differences, and each run end to end on the
tiny digits setting of test_defenses."""

import logging

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import defenses, losses, training
from nbajax.checkpoint import Checkpointer
from nbajax.defenses import anp, ibau, mcr
from nbajax.models import common
from tests.test_defenses import _config, _context, _max_abs_diff
from tests.tiny import digits


class BnNet(nn.Module):
  """x [B,1,1,2] -> BN (the project's momentum) -> fixed Dense(2)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = common.batch_norm(train, name='bn')(x)
    logits = h.reshape(h.shape[0], -1) @ jnp.array([[1.0, -1.0],
                                                    [0.5, 2.0]])
    return logits, {'bn': h}


def _bn_variables():
  return {'params': {'bn': {'scale': jnp.array([2.0, 0.5]),
                            'bias': jnp.array([0.3, -0.1])}},
          'batch_stats': {'bn': {'mean': jnp.zeros(2), 'var': jnp.ones(2)}}}


class TestMcr:

  def test_bezier_point_and_its_gradient_by_hand(self):
    w0, theta, w1 = {'a': jnp.array(1.0)}, {'a': jnp.array(3.0)}, \
        {'a': jnp.array(5.0)}
    # (1-t)^2 * 1 + 2t(1-t) * 3 + t^2 * 5 at t = 1/4: 9/16 + 18/16 + 5/16.
    assert float(mcr.bezier(w0, theta, w1, 0.25)['a']) == pytest.approx(2.0)
    grad = jax.grad(lambda th: mcr.bezier(w0, {'a': th}, w1, 0.25)['a'])(
        jnp.array(3.0))
    assert float(grad) == pytest.approx(2 * 0.25 * 0.75)
    assert float(mcr.bezier(w0, theta, w1, 0.0)['a']) == 1.0
    assert float(mcr.bezier(w0, theta, w1, 1.0)['a']) == 5.0

  def test_curve_loss_gradient_is_the_point_gradient_times_2t_1_minus_t(self):
    ctx = _context()
    w0, w1 = ctx.variables['params'], ctx.teacher['params']
    theta = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, w0, w1)
    x, y = digits(16)
    x = jnp.asarray(x, jnp.float32) / 255
    key = jax.random.key(7)
    loss_fn = mcr.make_curve_loss(ctx.model)
    grad = jax.grad(lambda p: loss_fn(p, ctx.variables['batch_stats'], x, y,
                                      key, {'w0': w0, 'w1': w1})[0])(theta)
    t = float(jax.random.uniform(key))
    point = mcr.bezier(w0, theta, w1, t)

    def ce(p):
      (logits, _), _ = ctx.model.apply(
          {'params': p, 'batch_stats': ctx.variables['batch_stats']}, x,
          train=True, mutable=['batch_stats'])
      return losses.cross_entropy(logits, y)

    expected = jax.tree_util.tree_map(lambda g: 2 * t * (1 - t) * g,
                                      jax.grad(ce)(point))
    chex.assert_trees_all_close(grad, expected, atol=1e-5)

  def test_batch_norm_statistics_are_the_subset_mean_and_variance(self):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 1, 1, 2)).astype(np.uint8)
    v = _bn_variables()
    stats = mcr.reestimate_batch_stats(BnNet(), v['params'],
                                       v['batch_stats'], x, batch_size=5)
    xf = x.reshape(10, 2) / 255.0
    np.testing.assert_allclose(stats['bn']['mean'], xf.mean(0), rtol=1e-5)
    # Two equal batches: the mean of each batch's (biased) variance.
    halves = xf.reshape(2, 5, 2).var(1).mean(0)
    np.testing.assert_allclose(stats['bn']['var'], halves, rtol=1e-4)

  def test_batch_norm_statistics_under_augmentation_are_the_augmented_ones(
      self):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 1, 1, 2)).astype(np.uint8)
    v = _bn_variables()
    key = jax.random.key(3)
    shift = lambda x, k: x / 255.0 + jax.random.uniform(k, x.shape)
    stats = mcr.reestimate_batch_stats(BnNet(), v['params'],
                                       v['batch_stats'], x, batch_size=5,
                                       augment_fn=shift, key=key)
    seen = np.stack([np.asarray(shift(jnp.asarray(x[i:i + 5]),
                                      jax.random.fold_in(key, i // 5)))
                     for i in (0, 5)]).reshape(2, 5, 2)
    np.testing.assert_allclose(stats['bn']['mean'], seen.mean((0, 1)),
                               rtol=1e-5)
    np.testing.assert_allclose(stats['bn']['var'], seen.var(1).mean(0),
                               rtol=1e-4)
    with pytest.raises(ValueError, match='needs a key'):
      mcr.reestimate_batch_stats(BnNet(), v['params'], v['batch_stats'], x,
                                 augment_fn=shift)

  def test_the_result_re_estimates_batch_norm_under_the_defense_augmentation(
      self):
    ctx = _context()
    cfg = _config()
    cfg.mcr.t = 0.0  # The backdoored weights: only the statistics differ.
    cfg.mcr.bn_augment = True
    assert cfg.crop_padding == 1
    plan = defenses.get_defense('mcr')(ctx, cfg)
    augmented = plan.view(plan.start)['batch_stats']
    # Seeded by the run's key: the sweep and the result see the same draws.
    assert _max_abs_diff(plan.view(plan.start)['batch_stats'],
                         augmented) == 0.0
    cfg.mcr.bn_augment = False
    plain = defenses.get_defense('mcr')(ctx, cfg).view(plan.start)
    expected = mcr.reestimate_batch_stats(
        ctx.model, ctx.variables['params'], ctx.variables['batch_stats'],
        ctx.x_clean)
    assert _max_abs_diff(plain['batch_stats'], expected) < 1e-6
    assert _max_abs_diff(augmented, expected) > 1e-3

  def test_plan_ends_at_the_two_end_points_and_records_the_sweep(self):
    ctx = _context()
    plan = defenses.get_defense('mcr')(ctx, _config())
    trained = jax.device_get(plan.start)
    point0 = mcr.bezier(ctx.variables['params'], trained['params'],
                        ctx.teacher['params'], 0.0)
    assert _max_abs_diff(point0, ctx.variables['params']) == 0.0
    cfg = _config()
    cfg.mcr.sweep = (0.0, 0.5, 1.0)
    seen = []
    variables, history = defenses.defend(
        'mcr', ctx, cfg,
        eval_fn=lambda apply, v: seen.append(v) or {'test_acc': 0.5})
    assert [e['value'] for e in history[-1]['sweep']] == [0.0, 0.5, 1.0]
    assert history[-1]['sweep_name'] == 't'
    # The sweep's t = 1 is the teacher's weights, t = 0 the backdoored ones.
    assert _max_abs_diff(seen[-1]['params'], ctx.teacher['params']) < 1e-6
    assert _max_abs_diff(seen[-3]['params'], ctx.variables['params']) < 1e-6
    assert jax.tree_util.tree_structure(variables) == \
        jax.tree_util.tree_structure(ctx.variables)

  def test_needs_the_fine_tuned_end_point(self):
    with pytest.raises(ValueError, match='end point'):
      defenses.get_defense('mcr')(_context(teacher=False), _config())


class TestAnp:

  def test_masked_and_perturbed_neuron_by_hand(self):
    params = _bn_variables()['params']
    path = ('bn',)
    out = anp.masked_params(params, {path: jnp.array([0.5, 1.0])},
                            {path: (jnp.array([0.1, -0.2]),
                                    jnp.array([-0.2, 0.4]))})
    np.testing.assert_allclose(out['bn']['scale'], [2.0 * 0.6, 0.5 * 0.8])
    np.testing.assert_allclose(out['bn']['bias'], [0.3 * 0.8, -0.1 * 1.4])
    assert anp.neurons(_bn_variables()['batch_stats']) == {path: 2}

  def test_prune_by_threshold_and_by_number(self):
    params = {'a': {'scale': jnp.ones(3), 'bias': jnp.ones(3)},
              'b': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}}
    masks = {('a',): jnp.array([0.1, 0.9, 0.3]),
             ('b',): jnp.array([0.05, 0.25])}
    out, count = anp.prune(params, masks, threshold=0.2)
    assert count == 2
    np.testing.assert_array_equal(out['a']['scale'], [0, 1, 1])
    np.testing.assert_array_equal(out['b']['scale'], [0, 1])
    np.testing.assert_array_equal(out['a']['bias'], [1, 1, 1])  # Kept.
    out, count = anp.prune(params, masks, by='number', number=3)
    assert count == 3
    np.testing.assert_array_equal(out['a']['scale'], [0, 1, 1])
    np.testing.assert_array_equal(out['b']['scale'], [0, 0])

  def test_one_mask_update_is_sgd_on_the_loss_gradient(self):
    # eps = 0: no perturbation, so the update is -lr * dCE/dm (clipped).
    cfg = _config().anp
    cfg.eps, cfg.mask_lr = 0.0, 0.2
    v = _bn_variables()
    step, tx = anp.make_mask_step(BnNet(), cfg, v['batch_stats'])
    x = np.array([[[[10, 200]]], [[[250, 30]]], [[[90, 90]]]], np.uint8)
    y = np.array([1, 0, 1], np.int32)
    masks = {('bn',): jnp.array([0.7, 0.4])}
    new, _, out = step(v['params'], masks, tx.init(masks), x, y,
                       jax.random.key(0))

    def ce(m):
      logits, _ = BnNet().apply(
          {'params': anp.masked_params(v['params'], {('bn',): m}),
           'batch_stats': v['batch_stats']}, x / 255.0, train=True,
          mutable=['batch_stats'])[0]
      return float(losses.cross_entropy(logits, y))

    e = 1e-3
    fd = np.array([(ce(jnp.array([0.7, 0.4]) + d) -
                    ce(jnp.array([0.7, 0.4]) - d)) / (2 * e)
                   for d in np.eye(2) * e])
    np.testing.assert_allclose(new[('bn',)], np.clip(
        np.array([0.7, 0.4]) - 0.2 * fd, 0, 1), atol=1e-4)
    assert float(out['natural']) == pytest.approx(float(out['robust']))

  def test_plan_prunes_nothing_at_threshold_zero_and_sweeps(self, caplog):
    cfg = _config()
    cfg.anp.iterations, cfg.anp.batch_size = 3, 16
    cfg.anp.threshold = 0.0
    cfg.anp.sweep = (0.0, 1.0)
    ctx = _context()
    with caplog.at_level(logging.INFO, logger='nbajax.defenses.anp'):
      variables, history = defenses.defend(
          'anp', ctx, cfg,
          eval_fn=lambda apply, v: {'test_acc': 0.5})
    # The mask search is silent for minutes unless it reports: the last
    # iteration always does.
    assert [m for m in caplog.messages if 'mask iteration 3/3' in m]
    assert history[0]['pruned'] == 0
    assert _max_abs_diff(variables, ctx.variables) == 0.0
    sweep = history[-1]['sweep']
    masks = np.concatenate([np.asarray(m) for m in
                            history[0]['masks'].values()])
    assert masks.size == history[0]['neurons']
    assert [e['pruned'] for e in sweep] == [0.0, float(np.mean(masks < 1.0))]
    assert history[-1]['sweep_name'] == 'threshold'

  def test_the_pruned_model_is_saved_as_step_zero(self, tmp_path):
    # Nothing is trained after pruning, yet the defended model must be
    # where every run leaves its own (restore, reuse of a finished cell).
    cfg = _config()
    cfg.anp.iterations, cfg.anp.batch_size = 3, 16
    cfg.anp.prune_by, cfg.anp.number = 'number', 1  # Differs from start.
    ctx = _context()
    ckpt = Checkpointer(str(tmp_path / 'anp'))
    variables, _ = defenses.defend('anp', ctx, cfg, checkpointer=ckpt,
                                   meta={'fingerprint': 'f'})
    assert ckpt.all_steps() == [0]
    assert ckpt.restore_meta()['history'][0]['pruned'] > 0
    saved = ckpt.restore_variables(jax.eval_shape(lambda: variables))
    assert _max_abs_diff(saved, variables) == 0.0
    assert _max_abs_diff(variables, ctx.variables) > 0.0

  def test_bad_field_is_named(self):
    cfg = _config()
    cfg.anp.eps = 2.0
    with pytest.raises(ValueError, match='anp.eps'):
      anp.check(cfg)


def _quadratic():
  """inner 0.5 |d - A th|^2 (so d*(th) = A th) and a nonlinear outer."""
  a = jnp.array([[1.0, 2.0], [0.5, -1.0], [0.3, 0.2]])
  inner = lambda d, th: 0.5 * jnp.sum((d - a @ th) ** 2)
  outer = lambda d, th: (jnp.sum(jnp.sin(d) * jnp.array([1.0, 2.0, 3.0])) +
                         0.5 * jnp.dot(th, th) ** 2)
  return a, inner, outer


class TestIbau:

  def test_hypergradient_matches_finite_differences(self):
    a, inner, outer = _quadratic()
    theta = jnp.array([0.3, -0.7])
    got = ibau.hypergradient(inner, outer, a @ theta, theta, inner_lr=0.5,
                             steps=40)
    total = lambda th: float(outer(a @ th, th))
    e = 1e-3
    fd = np.array([(total(theta + d) - total(theta - d)) / (2 * e)
                   for d in np.eye(2) * e])
    np.testing.assert_allclose(got, fd, rtol=1e-3, atol=1e-4)
    # Without the implicit term it would be d outer / d theta alone.
    assert not np.allclose(jax.grad(outer, 1)(a @ theta, theta), fd,
                           atol=1e-2)

  def test_fixed_point_vector_by_hand(self):
    # dPhi/dd = (1 - lr) I here, so v_K = sum_{k<K} (1 - lr)^k g.
    a, inner, outer = _quadratic()
    theta = jnp.array([0.3, -0.7])
    d = a @ theta
    g = jax.grad(outer)(d, theta)
    v = ibau.implicit_vector(inner, outer, d, theta, inner_lr=0.5, steps=3)
    np.testing.assert_allclose(v, g * (1 + 0.5 + 0.25), rtol=1e-6)

  @pytest.mark.parametrize('batch,portion,count', [(100, 0.01, 1),
                                                   (32, 0.01, 1),
                                                   (400, 0.01, 4),
                                                   (10, 1.0, 10)])
  def test_unlearned_rows(self, batch, portion, count):
    rows = ibau.unlearned_rows(jax.random.key(0), batch, portion)
    assert rows.shape == (batch,) and float(rows.sum()) == count

  def _cfg(self):
    cfg = _config()
    cfg.ibau.outer.batch_size = 16
    cfg.ibau.outer.epochs = 2
    cfg.ibau.K = 2
    return cfg

  def test_runs_with_its_own_optimizer_and_changes_the_model(self):
    ctx = _context()
    variables, history = defenses.defend('ibau', ctx, self._cfg())
    assert len(history) == 2  # ibau.outer.epochs rounds, not defense.epochs.
    assert _max_abs_diff(variables['params'], ctx.variables['params']) > 0
    # Batch norm runs in eval mode: its statistics are the backdoored ones.
    assert _max_abs_diff(variables['batch_stats'],
                         ctx.variables['batch_stats']) == 0.0

  def test_resumed_run_equals_uninterrupted(self, tmp_path):
    ctx = _context()
    full, _ = defenses.defend('ibau', ctx, self._cfg(),
                              checkpointer=Checkpointer(str(tmp_path / 'a')))
    one = self._cfg()
    one.ibau.outer.epochs = 1
    ckpt = Checkpointer(str(tmp_path / 'b'))
    defenses.defend('ibau', ctx, one, checkpointer=ckpt)
    resumed, _ = defenses.defend('ibau', ctx, self._cfg(),
                                 checkpointer=ckpt)
    assert _max_abs_diff(full, resumed) == 0.0


def test_optimizer_section_adam_is_torch_adam():
  tx = training.make_optimizer(lambda step: 0.1, kind='adam',
                               weight_decay=0.0)
  params = jnp.array([1.0])
  updates, _ = tx.update(jnp.array([4.0]), tx.init(params), params)
  # Adam's first step moves by lr * g / (|g| + eps) ~ lr.
  np.testing.assert_allclose(updates, [-0.1], rtol=1e-5)
  with pytest.raises(ValueError, match='optimizer'):
    training.make_optimizer(lambda step: 0.1, kind='rmsprop')
