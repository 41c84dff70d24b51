"""Tests for `nbajax.generator`: the NBA pseudo-sample PGD."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from nbajax import generator
from nbajax import losses

B, H, W, C, K = 4, 8, 8, 3, 5
EPS = 16 / 255
STEPS = 3


def _params(seed):
  rng = np.random.default_rng(seed)
  return dict(
      conv=rng.normal(size=(3, 3, C, 4)).astype(np.float32),
      dense=rng.normal(size=(4, K)).astype(np.float32))


def _model(params, x):
  """A one-conv 'network': x[B,H,W,C] -> (logits[B,K], {'group1': ...})."""
  conv = jax.lax.conv_general_dilated(
      x, params['conv'], window_strides=(1, 1), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  group1 = jax.nn.relu(conv)
  return jnp.mean(group1, axis=(1, 2)) @ params['dense'], {'group1': group1}


STUDENT = functools.partial(_model, _params(0))
TEACHER = functools.partial(_model, _params(1))
DISTANCE = functools.partial(
    losses.behavior_loss, betas={'group1': 1.0},
    weights={'spatial': 1.0, 'channel': 0.2})


def _images(seed=0, low=0.0, high=1.0):
  return np.random.default_rng(seed).uniform(
      low, high, size=(B, H, W, C)).astype(np.float32)


def _craft(x, key, **kwargs):
  # Eager: JAX caches each primitive, which beats compiling every option set.
  kwargs = dict(eps=EPS, steps=STEPS, distance_fn=DISTANCE) | kwargs
  return generator.craft_pseudo_samples(STUDENT, TEACHER, x, key, **kwargs)


@jax.jit
def _jitted_distance(x_student, x_teacher):
  return DISTANCE(STUDENT(x_student)[1], TEACHER(x_teacher)[1])


def _distance(x_student, x_teacher):
  return float(_jitted_distance(x_student, x_teacher))


class ProjectLinfTest(absltest.TestCase):

  def test_clips_to_ball(self):
    delta = np.array([-0.5, -0.1, 0.0, 0.05, 0.3], np.float32)
    np.testing.assert_allclose(
        generator.project_linf(delta, 0.1), [-0.1, -0.1, 0.0, 0.05, 0.1])

  def test_zero_radius(self):
    np.testing.assert_array_equal(
        generator.project_linf(np.ones((2, 2), np.float32), 0.0), 0.0)


class CraftPseudoSamplesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      ('universal', 'clean'), ('per_sample', 'clean'),
      ('universal', 'pseudo'))
  def test_within_ball_and_unit_box(self, mode, target):
    x = _images()
    craft = self.variant(functools.partial(_craft, mode=mode, target=target))
    x_pseudo = craft(x, jax.random.key(0))
    self.assertEqual(x_pseudo.shape, x.shape)
    self.assertLessEqual(float(jnp.abs(x_pseudo - x).max()), EPS + 1e-6)
    self.assertGreaterEqual(float(x_pseudo.min()), 0.0)
    self.assertLessEqual(float(x_pseudo.max()), 1.0)

  def test_universal_delta_shared_where_not_clipped(self):
    x = _images(low=0.2, high=0.8)  # Far from 0 and 1: nothing is clipped.
    delta = _craft(x, jax.random.key(1), mode='universal') - x
    np.testing.assert_allclose(
        delta, jnp.broadcast_to(delta[:1], delta.shape), atol=1e-6)
    # Some steps must have moved delta to the ball's surface.
    self.assertGreater(
        float(jnp.mean(jnp.abs(jnp.abs(delta) - EPS) < 1e-6)), 0.1)

  def test_per_sample_deltas_differ(self):
    x = _images(low=0.2, high=0.8)
    delta = _craft(x, jax.random.key(1), mode='per_sample') - x
    self.assertGreater(float(jnp.abs(delta[0] - delta[1]).max()), 1e-3)

  @parameterized.parameters('universal', 'per_sample')
  def test_ascent_increases_distance(self, mode):
    x = _images()
    gains_vs_start, gains_vs_clean = [], []
    for seed in range(3):
      key = jax.random.key(seed)
      start = _craft(x, key, mode=mode, steps=0)
      crafted = _craft(x, key, mode=mode)
      gains_vs_start.append(_distance(crafted, x) - _distance(start, x))
      gains_vs_clean.append(_distance(crafted, x) - _distance(x, x))
    self.assertGreater(np.mean(gains_vs_start), 0.0)
    self.assertGreater(min(gains_vs_clean), 0.0)

  def test_deterministic_per_key(self):
    x = _images()
    first = _craft(x, jax.random.key(3))
    np.testing.assert_array_equal(first, _craft(x, jax.random.key(3)))
    self.assertGreater(
        float(jnp.abs(first - _craft(x, jax.random.key(4))).max()), 0.0)

  @parameterized.parameters('universal', 'per_sample')
  def test_zero_steps_is_random_start(self, mode):
    x, key = _images(), jax.random.key(5)
    shape = (1, H, W, C) if mode == 'universal' else x.shape
    delta = jax.random.uniform(key, shape, minval=-EPS, maxval=EPS)
    np.testing.assert_array_equal(
        _craft(x, key, mode=mode, steps=0), jnp.clip(x + delta, 0.0, 1.0))

  def test_zero_steps_without_random_start_is_identity(self):
    x = _images()
    np.testing.assert_array_equal(
        _craft(x, jax.random.key(0), steps=0, random_start=False), x)

  def test_jit_and_fori_loop_match_eager(self):
    x, key = _images(), jax.random.key(6)
    eager = _craft(x, key)
    jitted = jax.jit(_craft)(x, key)
    looped = jax.jit(functools.partial(_craft, unroll=False))(x, key)
    np.testing.assert_allclose(jitted, eager, atol=1e-6)
    np.testing.assert_allclose(looped, eager, atol=1e-6)

  def test_traced_eps(self):
    x, key = _images(), jax.random.key(7)
    crafted = jax.jit(lambda x, key, eps: _craft(x, key, eps=eps))(
        x, key, EPS)
    np.testing.assert_allclose(crafted, _craft(x, key), atol=1e-6)

  def test_output_is_stop_gradient(self):
    x, key = _images(), jax.random.key(8)

    def loss(x):
      x_pseudo = _craft(x, key)
      return losses.cross_entropy(STUDENT(x_pseudo)[0], jnp.zeros(B, int))

    np.testing.assert_array_equal(jax.grad(loss)(x), 0.0)

  def test_axis_name_shares_universal_delta_across_shards(self):
    x = _images(low=0.2, high=0.8).reshape(2, B // 2, H, W, C)  # 2 'shards'.
    craft = functools.partial(_craft, key=jax.random.key(9), steps=2)
    shared = jax.jit(jax.vmap(functools.partial(craft, axis_name='data'),
                              axis_name='data'))(x)
    local = jax.jit(jax.vmap(craft))(x)
    deltas = (shared - x).reshape(B, H, W, C)
    np.testing.assert_allclose(
        deltas, jnp.broadcast_to(deltas[:1], deltas.shape), atol=1e-6)
    self.assertGreater(float(jnp.abs(local[0, 0] - local[1, 0]).max()), 1e-3)

  @parameterized.named_parameters(
      ('eps', dict(eps=-0.1), 'eps'),
      ('steps_negative', dict(steps=-1), 'steps'),
      ('steps_float', dict(steps=1.5), 'steps'),
      ('steps_bool', dict(steps=True), 'steps'),
      ('mode', dict(mode='batch'), 'mode'),
      ('target', dict(target='teacher'), 'target'),
  )
  def test_validation(self, kwargs, field):
    with self.assertRaisesRegex(ValueError, field):
      _craft(_images(), jax.random.key(0), **kwargs)


if __name__ == '__main__':
  absltest.main()
