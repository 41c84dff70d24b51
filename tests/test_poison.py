"""Tests for nbajax.attacks.poison: which samples, which labels, seeding."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import attacks
from nbajax.attacks import base
from nbajax.attacks import poison

K = 4          # classes
N = 80         # training samples, 20 per class
TARGET = 1


def _data(seed=0, n=N, size=8, channels=1):
  rng = np.random.RandomState(seed)
  x = rng.randint(0, 256, (n, size, size, channels)).astype(np.uint8)
  return x, (np.arange(n) % K).astype(np.int32)


def _tiny_model(channels=1, width=4, seed=0):
  """A pure-JAX conv net: clean_fn(x) -> (logits, {'final': feature})."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  w_conv = jax.random.normal(k1, (3, 3, channels, width))
  w_head = jax.random.normal(k2, (width, K))

  def clean_fn(x):
    f = jax.nn.relu(jax.lax.conv_general_dilated(
        x, w_conv, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO',
                                                      'NHWC')))
    return jnp.mean(f, axis=(1, 2)) @ w_head, {'final': f}

  return clean_fn


class TestDirtyLabel:

  def test_counts_labels_and_pixels(self):
    x, y = _data()
    res = poison.poison_dataset(x, y, attacks.get_attack('badnets'),
                                rate=0.1, target=TARGET, seed=0)
    assert res.x.dtype == np.uint8 and res.y.dtype == np.int32
    assert res.indices.dtype == np.int32 and len(res.indices) == 8
    assert np.all(np.diff(res.indices) > 0)
    assert np.all(y[res.indices] != TARGET)
    assert np.all(res.y[res.indices] == TARGET)
    rest = np.setdiff1d(np.arange(N), res.indices)
    np.testing.assert_array_equal(res.y[rest], y[rest])
    np.testing.assert_array_equal(res.x[rest], x[rest])
    expected = base.to_uint8(attacks.get_attack('badnets').apply(
        x[res.indices] / 255.0))
    np.testing.assert_array_equal(res.x[res.indices], expected)
    assert res.cross_indices.shape == (0,)

  def test_rounding(self):
    x, y = _data()
    assert len(poison.poison_dataset(x, y, attacks.get_attack('blend'),
                                     rate=0.05, target=0, seed=0).indices) == 4
    assert len(poison.poison_dataset(x, y, attacks.get_attack('blend'),
                                     rate=0.07, target=0, seed=0).indices) == 6

  def test_deterministic_per_seed_and_differs_across_seeds(self):
    x, y = _data()
    attack = attacks.get_attack('blend')
    a = poison.poison_dataset(x, y, attack, rate=0.2, target=0, seed=3)
    b = poison.poison_dataset(x, y, attack, rate=0.2, target=0, seed=3)
    c = poison.poison_dataset(x, y, attack, rate=0.2, target=0, seed=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.indices, c.indices)
    assert poison.indices_hash(a.indices) == poison.indices_hash(b.indices)
    assert poison.indices_hash(a.indices) != poison.indices_hash(c.indices)

  def test_all_to_all(self):
    x, y = _data()
    res = poison.poison_dataset(x, y, attacks.get_attack('badnets'),
                                rate=0.5, target=0, mode='all-to-all', seed=1)
    assert len(res.indices) == 40
    assert set(y[res.indices]) == set(range(K))   # target class included
    np.testing.assert_array_equal(res.y[res.indices],
                                  (y[res.indices] + 1) % K)

  def test_trojan_prepared_with_clean_fn(self):
    x, y = _data()
    attack = attacks.get_attack('trojan', steps=3)
    res = poison.poison_dataset(x, y, attack, rate=0.1, target=TARGET,
                                seed=0, clean_fn=_tiny_model())
    assert res.attack.pattern.shape == (3, 3, 1)
    cfg = json.loads(json.dumps(res.attack.to_config()))
    assert cfg['layer'] == 'final' and len(cfg['neurons']) == 1
    with pytest.raises(ValueError, match='clean_fn'):
      poison.poison_dataset(x, y, attack, rate=0.1, target=TARGET, seed=0)

  def test_wanet_cross_samples_keep_labels(self):
    x, y = _data(size=8)
    res = poison.poison_dataset(x, y, attacks.get_attack('wanet'), rate=0.1,
                                target=TARGET, seed=0)
    assert len(res.indices) == 8 and len(res.cross_indices) == 16
    assert not set(res.indices) & set(res.cross_indices)
    np.testing.assert_array_equal(res.y[res.cross_indices],
                                  y[res.cross_indices])
    assert np.all(res.y[res.indices] == TARGET)
    assert not np.array_equal(res.x[res.cross_indices], x[res.cross_indices])
    untouched = np.setdiff1d(np.arange(N), np.concatenate(
        [res.indices, res.cross_indices]))
    np.testing.assert_array_equal(res.x[untouched], x[untouched])


class TestCleanLabel:

  @pytest.mark.parametrize('name', ['sig', 'cl', 'refool'])
  def test_only_target_class_and_labels_kept(self, name):
    x, y = _data()
    res = poison.poison_dataset(x, y, attacks.get_attack(name), rate=0.5,
                                target=TARGET, seed=0,
                                clean_fn=_tiny_model())
    assert len(res.indices) == 10          # half of the 20 target images
    assert np.all(y[res.indices] == TARGET)
    np.testing.assert_array_equal(res.y, y)
    rest = np.setdiff1d(np.arange(N), res.indices)
    np.testing.assert_array_equal(res.x[rest], x[rest])
    assert not np.array_equal(res.x[res.indices], x[res.indices])

  def test_cl_poison_stays_near_the_trigger_plus_eps(self):
    x, y = _data()
    attack = attacks.get_attack('cl', eps=4 / 255)
    res = poison.poison_dataset(x, y, attack, rate=0.25, target=TARGET,
                                seed=0, clean_fn=_tiny_model())
    triggered = base.to_uint8(attack.apply(x[res.indices] / 255.0))
    diff = np.abs(res.x[res.indices].astype(int) - triggered.astype(int))
    assert diff.max() <= 4 + 1 and diff.max() > 0

  def test_refool_reflections_from_other_classes(self):
    x, y = _data()
    res = poison.poison_dataset(x, y, attacks.get_attack('refool'), rate=0.5,
                                target=TARGET, seed=0)
    assert res.attack.reflections.shape == (10, 8, 8, 1)
    again = attacks.attack_from_config(
        json.loads(json.dumps(res.attack.to_config())))
    np.testing.assert_array_equal(again.reflections, res.attack.reflections)

  def test_clean_label_refuses_all_to_all(self):
    x, y = _data()
    with pytest.raises(ValueError, match='all-to-one'):
      poison.poison_dataset(x, y, attacks.get_attack('sig'), rate=0.5,
                            target=0, mode='all-to-all', seed=0)


class TestErrors:

  @pytest.mark.parametrize('target', [-1, K, 1.5])
  def test_target(self, target):
    x, y = _data()
    with pytest.raises(ValueError, match='target'):
      poison.poison_dataset(x, y, attacks.get_attack('badnets'), rate=0.1,
                            target=target, seed=0)

  @pytest.mark.parametrize('rate', [0.0, -0.1, 1.5, 0.001])
  def test_rate(self, rate):
    x, y = _data()
    with pytest.raises(ValueError, match='rate'):
      poison.poison_dataset(x, y, attacks.get_attack('badnets'), rate=rate,
                            target=0, seed=0)

  def test_rate_beyond_candidates(self):
    x, y = _data()
    with pytest.raises(ValueError, match='only 60 are eligible'):
      poison.poison_dataset(x, y, attacks.get_attack('badnets'), rate=0.9,
                            target=0, seed=0)

  def test_mode_and_inputs(self):
    x, y = _data()
    with pytest.raises(ValueError, match="allowed: \\['all-to-one'"):
      poison.poison_dataset(x, y, attacks.get_attack('badnets'), rate=0.1,
                            target=0, mode='one-to-one', seed=0)
    with pytest.raises(ValueError, match='uint8'):
      poison.poison_dataset(x / 255.0, y, attacks.get_attack('badnets'),
                            rate=0.1, target=0, seed=0)
    with pytest.raises(ValueError, match='seed'):
      poison.poison_dataset(x, y, attacks.get_attack('badnets'), rate=0.1,
                            target=0, seed=-1)


class TestTriggeredTestSet:

  def test_all_to_one(self):
    x, y = _data(n=12)
    attack = attacks.get_attack('badnets')
    x_trig, y_true, y_attack = poison.triggered_test_set(
        x, y, attack, target=TARGET, batch_size=5)
    keep = y != TARGET
    assert x_trig.dtype == np.uint8 and len(x_trig) == keep.sum() == 9
    np.testing.assert_array_equal(y_true, y[keep])
    np.testing.assert_array_equal(y_attack, np.full(9, TARGET))
    np.testing.assert_array_equal(
        x_trig, base.to_uint8(attack.apply(x[keep] / 255.0)))

  def test_all_to_all(self):
    x, y = _data(n=12)
    _, y_true, y_attack = poison.triggered_test_set(
        x, y, attacks.get_attack('blend'), target=0, mode='all-to-all',
        num_classes=K)
    np.testing.assert_array_equal(y_true, y)
    np.testing.assert_array_equal(y_attack, (y + 1) % K)
    with pytest.raises(ValueError, match='num_classes'):
      poison.triggered_test_set(x, y, attacks.get_attack('blend'), target=0,
                                mode='all-to-all')


class TestIndicesHash:

  def test_order_invariant_sha256(self):
    h = poison.indices_hash(np.array([3, 1, 2], np.int32))
    assert h == poison.indices_hash([1, 2, 3]) and len(h) == 64
    assert h != poison.indices_hash([1, 2, 4])
