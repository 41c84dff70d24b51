"""Tests for the triggers in nbajax.attacks (formulas pinned on tiny arrays)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import attacks
from nbajax.attacks import base
from nbajax.attacks import blend
from nbajax.attacks import cl
from nbajax.attacks import figures
from nbajax.attacks import refool
from nbajax.attacks import wanet


def _images(shape=(4, 8, 8, 1), seed=0):
  """Random float32 images in [0, 1] on the uint8 grid."""
  x = np.random.RandomState(seed).randint(0, 256, shape)
  return (x / 255.0).astype(np.float32)


def _tiny_model(channels=1, width=6, classes=3, seed=0):
  """A pure-JAX conv net: clean_fn(x) -> (logits, {'conv', 'final'})."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  w_conv = jax.random.normal(k1, (3, 3, channels, width)) * 0.5
  w_head = jax.random.normal(k2, (width, classes))

  def clean_fn(x):
    f = jax.lax.conv_general_dilated(x, w_conv, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO',
                                                        'NHWC'))
    f = jax.nn.relu(f)
    return jnp.mean(f, axis=(1, 2)) @ w_head, {'conv': f, 'final': f}

  return clean_fn


def _ready(name, x):
  """A ready attack of every kind (generated arrays present)."""
  if name == 'trojan':
    pattern = np.random.RandomState(1).uniform(size=(3, 3, x.shape[-1]))
    return attacks.get_attack('trojan', pattern=pattern)
  if name == 'refool':
    return attacks.get_attack('refool', reflections=_images((3,) + x.shape[1:],
                                                            seed=7))
  return attacks.get_attack(name)


class TestRegistry:

  def test_names(self):
    assert attacks.ATTACK_NAMES == ('badnets', 'trojan', 'blend', 'sig', 'cl',
                                    'refool', 'wanet')

  def test_unknown_name_lists_allowed(self):
    with pytest.raises(ValueError, match='badnets.*wanet'):
      attacks.get_attack('nope')

  def test_unknown_param_lists_allowed(self):
    with pytest.raises(ValueError, match=r"\['size', 'position', 'pattern'\]"):
      attacks.get_attack('badnets', alpha=0.1)

  def test_bad_values(self):
    with pytest.raises(ValueError, match='position'):
      attacks.get_attack('badnets', position='middle')
    with pytest.raises(ValueError, match='alpha'):
      attacks.get_attack('blend', alpha=1.5)
    with pytest.raises(ValueError, match='reflection model'):
      attacks.get_attack('refool', model='mirror')

  def test_config_needs_name(self):
    with pytest.raises(ValueError, match='name'):
      attacks.attack_from_config({'size': 3})

  def test_clean_label_flags(self):
    flags = {n: attacks.attack_class(n).clean_label
             for n in attacks.ATTACK_NAMES}
    assert [n for n, f in flags.items() if f] == ['sig', 'cl', 'refool']

  @pytest.mark.parametrize('name', attacks.ATTACK_NAMES)
  @pytest.mark.parametrize('shape', [(3, 8, 8, 1), (2, 16, 12, 3)])
  def test_range_shape_dtype(self, name, shape):
    x = _images(shape)
    out = _ready(name, x).apply(jnp.asarray(x))
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not np.array_equal(np.asarray(out), x)

  @pytest.mark.parametrize('name', attacks.ATTACK_NAMES)
  def test_json_round_trip(self, name):
    x = _images((3, 8, 8, 1))
    attack = _ready(name, x)
    cfg = json.loads(json.dumps(attack.to_config()))
    assert cfg['name'] == name
    again = attacks.attack_from_config(cfg)
    assert type(again) is type(attack)
    np.testing.assert_array_equal(np.asarray(again.apply(jnp.asarray(x))),
                                  np.asarray(attack.apply(jnp.asarray(x))))
    assert json.dumps(again.to_config()) == json.dumps(cfg)

  def test_apply_is_jittable(self):
    x = jnp.asarray(_images())
    for name in attacks.ATTACK_NAMES:
      attack = _ready(name, x)
      np.testing.assert_allclose(jax.jit(attack.apply)(x), attack.apply(x),
                                 atol=1e-6)

  def test_rejects_non_nhwc(self):
    with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
      attacks.get_attack('badnets').apply(jnp.zeros((8, 8, 1)))


class TestBadNets:

  def test_only_patch_changes_to_checkerboard(self):
    x = _images((2, 8, 8, 3))
    out = np.asarray(attacks.get_attack('badnets').apply(jnp.asarray(x)))
    expected = x.copy()
    board = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    expected[:, 5:, 5:, :] = board[None, :, :, None]
    np.testing.assert_array_equal(out, expected)

  def test_corner_pixel_is_white_for_even_size(self):
    x = np.zeros((1, 8, 8, 1), np.float32)
    out = np.asarray(attacks.get_attack('badnets', size=2,
                                        position='top-left').apply(x))
    np.testing.assert_array_equal(out[0, :2, :2, 0], [[1, 0], [0, 1]])
    out = np.asarray(attacks.get_attack('badnets', size=2).apply(x))
    np.testing.assert_array_equal(out[0, 6:, 6:, 0], [[1, 0], [0, 1]])
    assert out[0, 7, 7, 0] == 1.0

  def test_row_col_position_and_array_pattern(self):
    x = _images((1, 8, 8, 1))
    pattern = np.array([[0.25, 0.5], [0.75, 1.0]], np.float32)
    attack = attacks.get_attack('badnets', pattern=pattern, position=(1, 2))
    out = np.asarray(attack.apply(x))
    expected = x.copy()
    expected[0, 1:3, 2:4, 0] = pattern
    np.testing.assert_array_equal(out, expected)

  def test_white(self):
    out = attacks.get_attack('badnets', pattern='white', size=4).apply(
        jnp.zeros((1, 8, 8, 1)))
    assert float(out.sum()) == 16.0

  def test_too_small_names_sizes(self):
    with pytest.raises(ValueError, match='image 4x4 .* 5x5'):
      attacks.get_attack('badnets', size=5).apply(jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match='does not fit in a 8x8'):
      attacks.get_attack('badnets', position=(6, 6)).apply(
          jnp.zeros((1, 8, 8, 1)))


class TestTrojan:

  def test_raises_chosen_neurons_vs_random_patch(self):
    clean_fn = _tiny_model()
    x = jnp.asarray(_images((8, 8, 8, 1)))
    attack = attacks.make_trojan_trigger(
        clean_fn, (8, 8, 1), key=jax.random.key(0), layer='conv',
        num_neurons=2, steps=30, lr=0.05, images=x)
    assert attack.pattern.shape == (3, 3, 1)
    assert len(attack.neurons) == 2 and attack.layer == 'conv'
    idx = jnp.asarray(attack.neurons)

    def act(xt):
      return float(jnp.mean(clean_fn(xt)[1]['conv'][..., idx]))

    rand = attacks.get_attack('trojan', pattern=np.random.RandomState(0)
                              .uniform(size=(3, 3, 1)))
    assert act(attack.apply(x)) > act(rand.apply(x)) + 1e-3
    # Only the patch changes.
    diff = np.asarray(attack.apply(x)) != np.asarray(x)
    assert not diff[:, :5].any() and not diff[:, :, :5].any()

  def test_activation_selection_and_given_neurons(self):
    clean_fn = _tiny_model()
    attack = attacks.make_trojan_trigger(
        clean_fn, (8, 8, 1), key=jax.random.key(1),
        selection='activation', num_neurons=3, steps=2)
    assert attack.layer == 'final' and len(attack.neurons) == 3
    given = attacks.make_trojan_trigger(clean_fn, (8, 8, 1),
                                        key=jax.random.key(1),
                                        neurons=(4,), steps=2, size=2)
    assert given.neurons == (4,) and given.pattern.shape == (2, 2, 1)

  def test_errors(self):
    clean_fn = _tiny_model()
    with pytest.raises(ValueError, match=r"'nope' not among.*'conv'"):
      attacks.make_trojan_trigger(clean_fn, (8, 8, 1),
                                  key=jax.random.key(0), layer='nope')
    with pytest.raises(ValueError, match='outside the 6 channels'):
      attacks.make_trojan_trigger(clean_fn, (8, 8, 1),
                                  key=jax.random.key(0), neurons=(9,))
    with pytest.raises(ValueError, match='image 8x8 .* 9x9'):
      attacks.make_trojan_trigger(clean_fn, (8, 8, 1),
                                  key=jax.random.key(0), size=9)
    with pytest.raises(ValueError, match='no pattern yet'):
      attacks.get_attack('trojan').apply(jnp.zeros((1, 8, 8, 1)))


class TestBlend:

  def test_exact_with_seeded_noise(self):
    x = _images((2, 8, 8, 3))
    out = np.asarray(attacks.get_attack('blend', seed=3).apply(x))
    noise = np.random.RandomState(3).uniform(size=(8, 8, 3)).astype(
        np.float32)
    np.testing.assert_allclose(out, 0.8 * x + 0.2 * noise, atol=1e-6)

  def test_given_pattern_and_alpha(self):
    x = _images((2, 8, 8, 1))
    pattern = np.full((8, 8), 0.5, np.float32)
    out = np.asarray(attacks.get_attack('blend', alpha=0.5,
                                        pattern=pattern).apply(x))
    np.testing.assert_allclose(out, 0.5 * x + 0.25, atol=1e-6)

  def test_prepare_stores_the_noise(self):
    x = np.zeros((5, 8, 8, 1), np.uint8)
    ready = attacks.get_attack('blend').prepare(x, np.zeros(5, int),
                                                target=0, seed=0)
    np.testing.assert_array_equal(ready.pattern,
                                  blend.noise_pattern(0, 8, 8, 1))


class TestSig:

  def test_exact(self):
    x = _images((2, 8, 12, 3))
    out = np.asarray(attacks.get_attack('sig').apply(x))
    cols = np.arange(12)
    signal = 20 / 255 * np.sin(2 * np.pi * cols * 6 / 12)
    np.testing.assert_allclose(out, np.clip(x + signal[None, None, :, None],
                                            0, 1), atol=1e-6)

  def test_rows_identical_and_params(self):
    attack = attacks.get_attack('sig', delta=0.1, freq=2)
    out = np.asarray(attack.apply(jnp.full((1, 4, 8, 1), 0.5)))
    np.testing.assert_array_equal(out[0, 0], out[0, 3])
    assert abs(out.max() - 0.6) < 1e-6 and abs(out.min() - 0.4) < 1e-6


class TestCL:

  def test_four_corners_only(self):
    x = _images((2, 16, 16, 1))
    out = np.asarray(attacks.get_attack('cl').apply(x))
    changed = np.zeros((16, 16), bool)
    for rows in (slice(0, 3), slice(13, 16)):
      for cols in (slice(0, 3), slice(13, 16)):
        changed[rows, cols] = True
    np.testing.assert_array_equal(out[:, ~changed], x[:, ~changed])
    assert np.all(out[:, [0, 0, 15, 15], [0, 15, 0, 15]] == 1.0)
    np.testing.assert_array_equal(out[0, :3, :3, 0],
                                  [[1, 0, 1], [0, 1, 0], [1, 0, 1]])

  def test_size_scales_down_for_8x8(self):
    out = np.asarray(attacks.get_attack('cl').apply(jnp.full((1, 8, 8, 1),
                                                             0.5)))
    assert cl.default_size(8, 8) == 2
    assert np.sum(out != 0.5) == 16

  def test_too_small(self):
    with pytest.raises(ValueError, match=r'image 5x5 .* 3x3 .* 6x6'):
      attacks.get_attack('cl', size=3).apply(jnp.zeros((1, 5, 5, 1)))

  def test_pgd_in_ball_raises_loss(self):
    clean_fn = _tiny_model(classes=3)
    x = _images((6, 8, 8, 1))
    y = np.asarray(jnp.argmax(clean_fn(jnp.asarray(x))[0], axis=-1))
    eps = 8 / 255
    adv = cl.pgd_hard_examples(clean_fn, x, y, eps=eps, steps=5,
                               batch_size=4)
    assert adv.shape == x.shape
    assert np.abs(adv - x).max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1

    def loss(z):
      logp = jax.nn.log_softmax(clean_fn(jnp.asarray(z))[0])
      return float(-jnp.mean(logp[np.arange(len(y)), y]))

    assert loss(adv) > loss(x) + 1e-3

  def test_poison_needs_clean_fn(self):
    x = jnp.asarray(_images())
    with pytest.raises(ValueError, match='clean_fn'):
      attacks.get_attack('cl').poison(x, np.zeros(4, int), seed=0)
    out = attacks.get_attack('cl', eps=0).poison(x, np.zeros(4, int), seed=0)
    np.testing.assert_array_equal(out, attacks.get_attack('cl').apply(x))


class TestRefool:

  def test_focus_exact_and_first_reflection(self):
    x, r = _images((2, 8, 8, 1)), _images((3, 8, 8, 1), seed=5)
    attack = attacks.get_attack('refool', model='focus', alpha=0.4,
                                reflections=r)
    np.testing.assert_allclose(attack.apply(x), 0.6 * x + 0.4 * r[:1],
                               atol=1e-6)

  def test_blur_with_zero_sigma_is_focus(self):
    x, r = _images((2, 8, 8, 1)), _images((1, 8, 8, 1), seed=5)
    a = attacks.get_attack('refool', model='blur', sigma=0, reflections=r)
    b = attacks.get_attack('refool', model='focus', reflections=r)
    np.testing.assert_array_equal(a.apply(x), b.apply(x))

  def test_blur_keeps_constant_and_smooths(self):
    const = jnp.full((1, 8, 8, 1), 0.3)
    np.testing.assert_allclose(refool.gaussian_blur(const, 1.5), const,
                               atol=1e-6)
    spike = np.zeros((1, 9, 9, 1), np.float32)
    spike[0, 4, 4] = 1.0
    blurred = np.asarray(refool.gaussian_blur(spike, 1.0))
    assert abs(blurred.sum() - 1.0) < 1e-5 and blurred.max() < 0.2

  def test_ghost(self):
    r = np.zeros((1, 8, 8, 1), np.float32)
    r[0, 2, 2] = 1.0
    x = np.zeros((1, 8, 8, 1), np.float32)
    attack = attacks.get_attack('refool', model='ghost', alpha=1.0,
                                offset=(1, 2), ghost_attenuation=0.5,
                                reflections=r)
    out = np.asarray(attack.apply(x))[0, ..., 0]
    assert abs(out[2, 2] - 1 / 1.5) < 1e-6 and abs(out[3, 4] - 0.5 / 1.5) < 1e-6
    assert np.count_nonzero(out) == 2

  def test_rgb_reflection_on_gray_images_and_resize(self):
    r = _images((2, 16, 16, 3), seed=2)
    out = attacks.get_attack('refool', reflections=r).apply(
        jnp.asarray(_images((2, 8, 8, 1))))
    assert out.shape == (2, 8, 8, 1)

  def test_needs_reflections(self):
    with pytest.raises(ValueError, match='no reflections'):
      attacks.get_attack('refool').apply(jnp.zeros((1, 8, 8, 1)))

  def test_prepare_draws_non_target_images(self):
    x = np.stack([np.full((8, 8, 1), 10 * i, np.uint8) for i in range(20)])
    y = np.arange(20) % 2
    ready = attacks.get_attack('refool', num_reflections=4).prepare(
        x, y, target=0, seed=0)
    values = np.round(ready.reflections[:, 0, 0, 0] * 255).astype(int)
    assert ready.reflections.shape == (4, 8, 8, 1)
    assert all((v // 10) % 2 == 1 for v in values)
    again = attacks.get_attack('refool', num_reflections=4).prepare(
        x, y, target=0, seed=0)
    np.testing.assert_array_equal(again.reflections, ready.reflections)


class TestWaNet:

  @pytest.mark.parametrize('shape', [(2, 8, 8, 1), (2, 16, 12, 3)])
  def test_zero_strength_is_exact_identity(self, shape):
    x = _images(shape)
    out = attacks.get_attack('wanet', s=0.0).apply(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(out), x)

  def test_small_strength_changes_and_keeps_range(self):
    x = _images((2, 16, 16, 3))
    out = np.asarray(attacks.get_attack('wanet', s=0.5).apply(x))
    assert np.abs(out - x).max() > 1e-3
    assert out.min() >= 0 and out.max() <= 1
    # A constant image stays constant under any warp.
    const = attacks.get_attack('wanet').apply(jnp.full((1, 8, 8, 1), 0.7))
    np.testing.assert_allclose(const, 0.7, atol=1e-6)

  def test_noise_normalized_and_seeded(self):
    a, b = attacks.get_attack('wanet'), attacks.get_attack('wanet', seed=1)
    assert a.noise.shape == (4, 4, 2)
    assert abs(np.mean(np.abs(a.noise)) - 1.0) < 1e-5
    assert not np.array_equal(a.noise, b.noise)

  def test_upsample_keeps_corner_values_and_constants(self):
    grid = np.random.RandomState(0).uniform(-1, 1, (4, 4, 2))
    up = wanet.upsample_corners(grid, 10, 7)
    assert up.shape == (10, 7, 2)
    np.testing.assert_allclose(up[[0, 0, -1, -1], [0, -1, 0, -1]],
                               grid[[0, 0, -1, -1], [0, -1, 0, -1]],
                               atol=1e-12)
    np.testing.assert_allclose(wanet.upsample_corners(np.ones((4, 4, 2)), 9,
                                                      9), 1.0, atol=1e-12)

  def test_upsample_is_pytorch_bicubic(self):
    # Keys kernel a = -0.75 at half-way points: 0.59375 and -0.09375 (taps
    # beyond the border clamp onto the edge), as torch align_corners=True.
    grid = np.zeros((4, 1, 2))
    grid[1] = 1.0
    up = wanet.upsample_corners(grid, 7, 1)[:, 0, 0]
    np.testing.assert_allclose(up, [0, 0.59375, 1, 0.59375, 0, -0.09375, 0],
                               atol=1e-12)

  def test_grid_sample_bilinear_by_hand(self):
    img = jnp.arange(12.0).reshape(1, 3, 4, 1)   # value = 4 * row + col
    # (x, y) = (0, 0) is pixel (row 1, col 1.5); (-1/3, 0) is (1, 1).
    grid = jnp.array([[[[0.0, 0.0], [-1 / 3, 0.0], [1.0, 1.0]]]])
    out = wanet.grid_sample(img, grid)
    np.testing.assert_allclose(out[0, 0, :, 0], [5.5, 5.0, 11.0], atol=1e-5)

  def test_cross_differs_from_trigger(self):
    x = jnp.asarray(_images((3, 8, 8, 1)))
    attack = attacks.get_attack('wanet')
    crossed = np.asarray(attack.cross(x, seed=0))
    assert crossed.min() >= 0 and crossed.max() <= 1
    assert not np.allclose(crossed, attack.apply(x))
    assert attack.num_cross(5) == 10

  def test_too_small(self):
    with pytest.raises(ValueError, match='image 3x3 .* 4x4 control grid'):
      attacks.get_attack('wanet').apply(jnp.zeros((1, 3, 3, 1)))


class TestFigures:

  def test_png_written(self, tmp_path):
    x = (_images((3, 8, 8, 1)) * 255).astype(np.uint8)
    trig = base.to_uint8(attacks.get_attack('badnets').apply(x / 255.0))
    path = figures.save_trigger_figure(x, trig, tmp_path / 'sub' / 'bn.png',
                                       title='badnets')
    assert os.path.getsize(path) > 1000
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'

  def test_rgb_and_bad_shapes(self, tmp_path):
    x = (_images((2, 8, 8, 3)) * 255).astype(np.uint8)
    figures.save_trigger_figure(x, x, tmp_path / 'rgb.png')
    with pytest.raises(ValueError, match='uint8'):
      figures.save_trigger_figure(x, x[:1], tmp_path / 'bad.png')
