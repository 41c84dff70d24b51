"""Tests for `nbajax.losses`: pinned values, NumPy references, gradients."""

import functools
import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import jax.test_util as jaxtest
import numpy as np
import optax

from nbajax import losses

# Small NHWC shapes: these tests must stay cheap on a shared 2-core CPU.
B, H, W, C = 3, 4, 5, 6


def _features(seed, shape=(B, H, W, C), scale=1.0):
  return (scale * np.random.default_rng(seed).normal(size=shape)).astype(
      np.float32)


def _np_nad_map(feature, p=2.0, eps=1e-6):
  """The official NAD `AT.attention_map` in float64 NumPy (NHWC input)."""
  am = np.sum(np.abs(feature.astype(np.float64))**p, axis=-1)
  norm = np.sqrt(np.sum(am**2, axis=(1, 2), keepdims=True))
  return am / (norm + eps)


def _np_at_map(feature, p=2.0):
  """The original [AT] code's map: channel mean, F.normalize (eps 1e-12)."""
  am = np.mean(np.abs(feature.astype(np.float64))**p, axis=-1)
  flat = am.reshape(am.shape[0], -1)
  norm = np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
  return (flat / norm).reshape(am.shape)


class CrossEntropyTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # softmax([0, ln 3]) = [1/4, 3/4].
    self.logits = np.array([[0.0, math.log(3.0)]] * 2, np.float32)
    self.labels = np.array([1, 0], np.int32)

  def test_hand_value(self):
    expected = (math.log(4 / 3) + math.log(4.0)) / 2
    np.testing.assert_allclose(
        losses.cross_entropy(self.logits, self.labels), expected, rtol=1e-6)

  def test_label_smoothing_hand_value(self):
    # Smoothing 0.5 over 2 classes: targets [0.25, 0.75] and [0.75, 0.25].
    per_sample = [
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)),
        -(0.75 * math.log(0.25) + 0.25 * math.log(0.75)),
    ]
    np.testing.assert_allclose(
        losses.cross_entropy(self.logits, self.labels, label_smoothing=0.5),
        np.mean(per_sample), rtol=1e-6)

  def test_per_example_hand_values_and_bf16_in_float32(self):
    per_example = losses.cross_entropy_per_example(self.logits, self.labels)
    np.testing.assert_allclose(
        per_example, [math.log(4 / 3), math.log(4.0)], rtol=1e-6)
    low = losses.cross_entropy_per_example(
        self.logits.astype(jnp.bfloat16), self.labels)
    self.assertEqual(low.dtype, jnp.float32)

  def test_agrees_with_optax_in_value_and_gradient(self):
    # Why ours is kept: see nbajax/losses/_classification.py.
    logits = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % 5

    def theirs(z):
      return jnp.mean(
          optax.softmax_cross_entropy_with_integer_labels(z, labels))

    ours = functools.partial(losses.cross_entropy, labels=labels)
    np.testing.assert_allclose(ours(logits), theirs(logits), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(ours)(logits),
                               jax.grad(theirs)(logits), atol=1e-7)

  def test_jit_and_gradient(self):
    fn = functools.partial(losses.cross_entropy, labels=self.labels)
    np.testing.assert_allclose(
        jax.jit(fn)(self.logits), fn(self.logits), rtol=1e-6)
    jaxtest.check_grads(
        jax.jit(fn), (self.logits,), order=1, modes=['rev'])


class KdLossTest(parameterized.TestCase):

  def test_zero_for_equal_logits(self):
    logits = _features(0, (4, 5)).reshape(4, 5)
    np.testing.assert_allclose(
        losses.kd_loss(logits, logits, temperature=3.0), 0.0, atol=1e-6)

  def test_positive_for_different_logits(self):
    loss = losses.kd_loss(_features(0, (4, 5)), _features(1, (4, 5)))
    self.assertGreater(float(loss), 0.0)

  def test_hand_value(self):
    student = np.array([[0.0, math.log(3.0)]], np.float32)  # [1/4, 3/4]
    teacher = np.array([[0.0, 0.0]], np.float32)  # [1/2, 1/2]
    # KL([.5, .5] || [.25, .75]) = .5 ln 2 + .5 ln(2/3) = .5 ln(4/3).
    np.testing.assert_allclose(
        losses.kd_loss(student, teacher), 0.5 * math.log(4 / 3), rtol=1e-5)

  def test_hand_value_with_temperature(self):
    student = np.array([[0.0, math.log(3.0)]], np.float32)
    teacher = np.array([[0.0, 0.0]], np.float32)
    # At T = 2 the student is softmax([0, ln 3 / 2]) = [1, r] / (1 + r).
    r = math.sqrt(3.0)
    kl = 0.5 * math.log(0.5 * (1 + r)) + 0.5 * math.log(0.5 * (1 + r) / r)
    np.testing.assert_allclose(
        losses.kd_loss(student, teacher, temperature=2.0), 4.0 * kl,
        rtol=1e-5)

  def test_teacher_gets_no_gradient(self):
    student, teacher = _features(0, (4, 5)), _features(1, (4, 5))
    g_s, g_t = jax.grad(losses.kd_loss, argnums=(0, 1))(student, teacher)
    self.assertGreater(float(jnp.abs(g_s).max()), 0.0)
    np.testing.assert_array_equal(g_t, 0.0)


class AttentionMapTest(parameterized.TestCase):

  def test_shape_and_unit_norm(self):
    am = losses.attention_map(_features(0))
    self.assertEqual(am.shape, (B, H, W))
    np.testing.assert_allclose(
        jnp.sqrt(jnp.sum(am**2, axis=(1, 2))), 1.0, rtol=1e-5)

  @parameterized.parameters(1.0, 2.0, 3.0)
  def test_matches_numpy_nad_formula(self, p):
    feature = _features(1)
    np.testing.assert_allclose(
        losses.attention_map(feature, p=p), _np_nad_map(feature, p=p),
        rtol=1e-5, atol=1e-7)

  def test_zero_feature_gives_zero_map_and_finite_gradient(self):
    feature = np.zeros((1, H, W, C), np.float32)
    np.testing.assert_array_equal(losses.attention_map(feature), 0.0)
    grad = jax.grad(lambda f: losses.attention_map(f).sum())(feature)
    self.assertTrue(bool(jnp.all(jnp.isfinite(grad))))

  def test_gradient(self):
    # Away from 0, where |F|^p is smooth.
    feature = _features(2) + np.float32(3.0)
    jaxtest.check_grads(
        jax.jit(losses.attention_map), (feature,), order=1, modes=['rev'])

  def test_rejects_non_nhwc(self):
    with self.assertRaisesRegex(ValueError, r'\[B, H, W, C\]'):
      losses.attention_map(np.ones((2, 3, 4), np.float32))


class AttentionLossTest(parameterized.TestCase):

  def _np_loss(self, student, teacher, map_fn):
    return np.mean((map_fn(student) - map_fn(teacher))**2)

  def test_matches_numpy_nad_formula(self):
    student, teacher = _features(0), _features(1)
    np.testing.assert_allclose(
        losses.attention_loss(student, teacher),
        self._np_loss(student, teacher, _np_nad_map), rtol=1e-5)

  @parameterized.named_parameters(('unit_scale', 1.0), ('tiny_scale', 7e-4))
  def test_matches_original_at_code_up_to_eps(self, scale):
    """[AT]'s code (channel mean, F.normalize) differs only through eps.

    The mean is the sum over C, so without eps both maps are `a / ||a||`.
    With eps, ours is the reference times `1 - d`, `d = eps / (||a|| + eps)`
    per sample. So per element the difference of the two map differences
    is at most `e = d_s |r_s| + d_t |r_t|`, and the loss moves by at most
    `mean(e * (2 |r_s - r_t| + e))`. At unit scale `d ~ 1e-8`, far below
    float32 rounding (rtol 1e-5 covers that); at tiny scale `d ~ 0.1` and the
    difference is real, but within the bound.
    """
    student = _features(0, scale=scale)
    teacher = _features(1, scale=scale)
    ours = float(losses.attention_loss(student, teacher))
    ref_s, ref_t = _np_at_map(student), _np_at_map(teacher)
    reference = np.mean((ref_s - ref_t)**2)

    def shrink(feature):
      am = np.sum(feature.astype(np.float64)**2, axis=-1)
      norm = np.sqrt(np.sum(am**2, axis=(1, 2), keepdims=True))
      return 1e-6 / (norm + 1e-6)

    err = shrink(student) * np.abs(ref_s) + shrink(teacher) * np.abs(ref_t)
    bound = np.mean(err * (2 * np.abs(ref_s - ref_t) + err))
    self.assertLessEqual(abs(ours - reference), bound + 1e-5 * reference)
    if scale < 1.0:  # Here eps visibly matters (~13 %), as predicted.
      self.assertGreater(abs(ours - reference), 1e-2 * reference)
    # Our formula is still exactly NAD's at every scale.
    np.testing.assert_allclose(
        ours, self._np_loss(student, teacher, _np_nad_map), rtol=1e-4)

  def test_student_gradient_nonzero_teacher_gradient_zero(self):
    grad_fn = jax.grad(losses.attention_loss, argnums=(0, 1))
    g_s, g_t = grad_fn(_features(0), _features(1))
    self.assertGreater(float(jnp.abs(g_s).max()), 0.0)
    self.assertTrue(bool(jnp.all(jnp.isfinite(g_s))))
    np.testing.assert_array_equal(g_t, 0.0)

  def test_zero_for_equal_features(self):
    feature = _features(3)
    self.assertEqual(float(losses.attention_loss(feature, feature)), 0.0)

  def test_jit(self):
    student, teacher = _features(0), _features(1)
    np.testing.assert_allclose(
        jax.jit(losses.attention_loss)(student, teacher),
        losses.attention_loss(student, teacher), rtol=1e-6)

  def test_channel_counts_may_differ(self):
    loss = losses.attention_loss(_features(0), _features(1, (B, H, W, 2 * C)))
    self.assertGreater(float(loss), 0.0)

  def test_mismatched_shapes_name_both(self):
    student, teacher = _features(0), _features(1, (B, H + 1, W, C))
    with self.assertRaisesRegex(
        ValueError, r'\(3, 4, 5, 6\).*\(3, 5, 5, 6\)'):
      losses.attention_loss(student, teacher)
    with self.assertRaises(ValueError):  # Also when traced.
      jax.jit(losses.attention_loss)(student, teacher)


class NadLossTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.student = {'group1': _features(0), 'group2': _features(1)}
    self.teacher = {'group1': _features(2), 'group2': _features(3)}
    self.betas = {'group1': 500.0, 'group2': 1000.0}

  def test_weighted_sum_of_attention_losses(self):
    expected = sum(
        beta * losses.attention_loss(self.student[k], self.teacher[k])
        for k, beta in self.betas.items())
    np.testing.assert_allclose(
        losses.nad_loss(self.student, self.teacher, betas=self.betas),
        expected, rtol=1e-6)

  def test_ignores_layers_without_beta(self):
    only_one = losses.nad_loss(
        self.student, self.teacher, betas={'group2': 2.0})
    np.testing.assert_allclose(
        only_one, 2.0 * losses.attention_loss(
            self.student['group2'], self.teacher['group2']), rtol=1e-6)

  def test_missing_layer_names_it_and_the_available(self):
    with self.assertRaisesRegex(KeyError, r"group3.*'group1', 'group2'"):
      losses.nad_loss(self.student, self.teacher, betas={'group3': 1.0})

  def test_teacher_gets_no_gradient(self):
    grad_fn = jax.grad(
        functools.partial(losses.nad_loss, betas=self.betas), argnums=(0, 1))
    g_s, g_t = grad_fn(self.student, self.teacher)
    self.assertGreater(float(jnp.abs(g_s['group1']).max()), 0.0)
    for g in g_t.values():
      np.testing.assert_array_equal(g, 0.0)


class BehaviorTest(parameterized.TestCase):

  @parameterized.parameters(
      ('spatial', (B, H, W)), ('channel', (B, C)), ('relation', (B, C, C)))
  def test_shape(self, kind, shape):
    self.assertEqual(losses.behavior(_features(0), kind=kind).shape, shape)

  def test_spatial_is_attention_map(self):
    feature = _features(0)
    np.testing.assert_array_equal(
        losses.behavior(feature, kind='spatial'),
        losses.attention_map(feature))

  def test_channel_matches_numpy_and_has_unit_norm(self):
    feature = _features(1)
    vec = np.mean(np.abs(feature.astype(np.float64))**2, axis=(1, 2))
    expected = vec / (np.linalg.norm(vec, axis=1, keepdims=True) + 1e-6)
    got = losses.behavior(feature, kind='channel')
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(got, axis=1), 1.0, rtol=1e-5)

  def test_relation_matches_numpy_is_symmetric_unit_norm(self):
    feature = _features(2)
    flat = feature.astype(np.float64).reshape(B, H * W, C)
    gram = np.einsum('bnc,bnd->bcd', flat, flat) / (H * W)
    norm = np.linalg.norm(gram.reshape(B, -1), axis=1)[:, None, None]
    got = losses.behavior(feature, kind='relation')
    np.testing.assert_allclose(got, gram / (norm + 1e-6), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(got, jnp.swapaxes(got, 1, 2), atol=1e-6)
    np.testing.assert_allclose(
        jnp.sqrt(jnp.sum(got**2, axis=(1, 2))), 1.0, rtol=1e-5)

  @parameterized.parameters('spatial', 'channel', 'relation')
  def test_gradient(self, kind):
    feature = _features(3, (2, 3, 3, 4)) + np.float32(3.0)
    jaxtest.check_grads(
        jax.jit(functools.partial(losses.behavior, kind=kind)), (feature,),
        order=1, modes=['rev'])

  def test_unknown_kind_lists_kinds(self):
    with self.assertRaisesRegex(ValueError, 'spatial.*channel.*relation'):
      losses.behavior(_features(0), kind='temporal')


class BehaviorDistanceTest(parameterized.TestCase):

  def test_spatial_only_is_attention_loss(self):
    student, teacher = _features(0), _features(1)
    np.testing.assert_array_equal(
        losses.behavior_distance(student, teacher, weights={'spatial': 1.0}),
        losses.attention_loss(student, teacher))

  def test_weighted_sum_of_mses(self):
    student, teacher = _features(0), _features(1)
    weights = {'spatial': 1.0, 'channel': 0.2, 'relation': 3.0}
    expected = sum(
        w * jnp.mean((losses.behavior(student, kind=k) -
                      losses.behavior(teacher, kind=k))**2)
        for k, w in weights.items())
    np.testing.assert_allclose(
        losses.behavior_distance(student, teacher, weights=weights),
        expected, rtol=1e-6)

  @parameterized.parameters('spatial', 'channel', 'relation')
  def test_gradients(self, kind):
    grad_fn = jax.grad(
        functools.partial(losses.behavior_distance, weights={kind: 1.0}),
        argnums=(0, 1))
    g_s, g_t = grad_fn(_features(0), _features(1))
    self.assertGreater(float(jnp.abs(g_s).max()), 0.0)
    np.testing.assert_array_equal(g_t, 0.0)

  def test_unknown_kind_raises(self):
    with self.assertRaisesRegex(ValueError, 'spatial.*channel.*relation'):
      losses.behavior_distance(
          _features(0), _features(1), weights={'neurons': 1.0})

  def test_channel_mismatch_names_both_shapes(self):
    with self.assertRaisesRegex(ValueError, r'\(3, 4, 5, 6\).*\(3, 4, 5, 7\)'):
      losses.behavior_distance(
          _features(0), _features(1, (B, H, W, C + 1)),
          weights={'channel': 1.0})


class CheckBehaviorWeightsTest(parameterized.TestCase):

  def test_returns_the_nonzero_weights_as_floats(self):
    self.assertEqual(
        losses.check_behavior_weights({'spatial': 1, 'channel': 0.0,
                                       'relation': np.float32(0.5)}),
        {'spatial': 1.0, 'relation': 0.5})

  @parameterized.parameters(
      ({}, 'must map behavior kinds'),
      ([1.0], 'must map behavior kinds'),
      ({'temporal': 1.0}, 'weights.temporal: unknown behavior kind'),
      ({'spatial': -1.0}, 'weights.spatial must be a number >= 0'),
      ({'spatial': float('inf')}, 'weights.spatial must be a number >= 0'),
      ({'spatial': True}, 'weights.spatial must be a number >= 0'),
      ({'spatial': 0.0, 'channel': 0}, 'at least one weight > 0'),
  )
  def test_refuses(self, weights, words):
    with self.assertRaisesRegex(ValueError, words):
      losses.check_behavior_weights(weights)


class BehaviorLossTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.student = {'group1': _features(0), 'group2': _features(1)}
    self.teacher = {'group1': _features(2), 'group2': _features(3)}
    self.betas = {'group1': 500.0, 'group2': 1000.0}

  def test_spatial_only_equals_nad_loss_exactly(self):
    behavior = functools.partial(
        losses.behavior_loss, betas=self.betas, weights={'spatial': 1.0})
    nad = functools.partial(losses.nad_loss, betas=self.betas)
    np.testing.assert_array_equal(
        behavior(self.student, self.teacher), nad(self.student, self.teacher))
    np.testing.assert_array_equal(
        jax.jit(behavior)(self.student, self.teacher),
        jax.jit(nad)(self.student, self.teacher))

  def test_sum_over_layers(self):
    weights = {'spatial': 1.0, 'channel': 0.2}
    expected = sum(
        beta * losses.behavior_distance(
            self.student[k], self.teacher[k], weights=weights)
        for k, beta in self.betas.items())
    np.testing.assert_allclose(
        losses.behavior_loss(self.student, self.teacher, betas=self.betas,
                             weights=weights),
        expected, rtol=1e-6)

  def test_missing_layer_raises(self):
    with self.assertRaisesRegex(KeyError, 'layer3'):
      losses.behavior_loss(self.student, self.teacher, betas={'layer3': 1.0},
                           weights={'spatial': 1.0})


class NbaLossTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.labels = np.array([0, 2, 1], np.int32)
    self.logits = rng.normal(size=(B, 4)).astype(np.float32)
    self.pseudo_logits = rng.normal(size=(B, 4)).astype(np.float32)
    self.target_logits = rng.normal(size=(B, 4)).astype(np.float32)
    self.student = {'group1': _features(0), 'group2': _features(1)}
    self.teacher = {'group1': _features(2), 'group2': _features(3)}
    self.pseudo = {'group1': _features(4), 'group2': _features(5)}
    self.target = {'group1': _features(6), 'group2': _features(7)}
    self.betas = {'group1': 500.0, 'group2': 1000.0}

  def test_nad_special_case_exact(self):
    loss, terms = losses.nba_loss(
        self.logits, self.student, self.teacher, self.labels,
        betas=self.betas, weights={'spatial': 1.0})
    expected = (losses.cross_entropy(self.logits, self.labels) +
                losses.nad_loss(self.student, self.teacher, betas=self.betas))
    np.testing.assert_array_equal(loss, expected)
    self.assertEqual(float(terms['pseudo_align']), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_terms(self):
    weights = {'spatial': 1.0, 'channel': 0.2}
    loss, terms = self.variant(functools.partial(
        losses.nba_loss, betas=self.betas, weights=weights, gamma=0.5,
        lam=2.0, kd_weight=3.0, temperature=4.0))(
            self.logits, self.student, self.teacher, self.labels,
            self.pseudo_logits, self.pseudo, self.target_logits, self.target)
    behavior = functools.partial(
        losses.behavior_loss, betas=self.betas, weights=weights)
    expected_terms = {
        'ce': losses.cross_entropy(self.logits, self.labels),
        'align': behavior(self.student, self.teacher),
        'pseudo_align': behavior(self.pseudo, self.target),
        'pseudo_ce': losses.cross_entropy(self.pseudo_logits, self.labels),
        'pseudo_kd': losses.kd_loss(
            self.pseudo_logits, self.target_logits, temperature=4.0),
    }
    self.assertEqual(set(terms), set(expected_terms))
    for name, value in expected_terms.items():
      np.testing.assert_allclose(terms[name], value, rtol=1e-6, err_msg=name)
    t = expected_terms
    np.testing.assert_allclose(
        loss, t['ce'] + t['align'] + 0.5 * t['pseudo_align'] +
        2.0 * t['pseudo_ce'] + 3.0 * t['pseudo_kd'], rtol=1e-6)

  def test_pseudo_betas(self):
    _, terms = losses.nba_loss(
        self.logits, self.student, self.teacher, self.labels,
        pseudo_features=self.pseudo, target_features=self.target,
        betas=self.betas, weights={'spatial': 1.0}, gamma=1.0,
        pseudo_betas={'group2': 1.0})
    np.testing.assert_allclose(
        terms['pseudo_align'],
        losses.attention_loss(self.pseudo['group2'], self.target['group2']),
        rtol=1e-6)

  def test_missing_inputs_raise(self):
    with self.assertRaisesRegex(ValueError, 'pseudo_features'):
      losses.nba_loss(self.logits, self.student, self.teacher, self.labels,
                      betas=self.betas, weights={'spatial': 1.0}, gamma=1.0)
    with self.assertRaisesRegex(ValueError, 'pseudo_logits'):
      losses.nba_loss(self.logits, self.student, self.teacher, self.labels,
                      betas=self.betas, weights={'spatial': 1.0}, lam=1.0)

  def test_jit_and_student_only_gradient(self):
    def loss_fn(student, teacher):
      return losses.nba_loss(
          self.logits, student, teacher, self.labels,
          self.pseudo_logits, self.pseudo, self.target_logits, self.target,
          betas=self.betas, weights={'spatial': 1.0, 'channel': 0.2},
          gamma=1.0, lam=1.0, kd_weight=1.0)[0]

    g_s, g_t = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(
        self.student, self.teacher)
    self.assertGreater(float(jnp.abs(g_s['group1']).max()), 0.0)
    for g in g_t.values():
      np.testing.assert_array_equal(g, 0.0)


if __name__ == '__main__':
  absltest.main()
