"""Tests for nbajax.data: sources, subsets, augmentation, offline TFDS.

The TFDS tests build a tiny data set named 'cifar10' in array_record format
on disk (no TensorFlow, no network) and read it back through the same
`load_dataset` call a user makes, with sockets blocked.
The shared real-data tests use ../shared/data/*.npz beside the repository
(present on development machines and CI) and skip when it is absent.
"""

import io
import json
import socket
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import data
from nbajax.data import tfds_source
from nbajax.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'


def _shared(name):
  path = SHARED_DATA / name
  if not path.is_file():
    pytest.skip(f'shared data file {path} is absent (only on dev machines '
                f'and CI)')
  return path


def _tiny(**overrides):
  rng = np.random.default_rng(0)
  fields = dict(
      name='tiny', x_train=rng.integers(0, 256, (6, 4, 4, 3), np.uint8),
      y_train=np.array([0, 1, 2, 0, 1, 2], np.int32),
      x_test=rng.integers(0, 256, (3, 4, 4, 3), np.uint8),
      y_test=np.array([0, 1, 2], np.int32), num_classes=3,
      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
  fields.update(overrides)
  return data.Dataset(**fields)


class TestDataset:

  def test_valid_passes_and_image_shape(self):
    ds = _tiny().validate()
    assert ds.image_shape == (4, 4, 3)
    assert 'tiny' in repr(ds) and len(repr(ds)) < 200

  @pytest.mark.parametrize('overrides, message', [
      (dict(x_train=np.zeros((6, 4, 4, 3), np.float32)),
       'x_train must be a uint8'),
      (dict(x_test=np.zeros((3, 4, 4), np.uint8)), 'ndim 4'),
      (dict(y_train=np.zeros((6,), np.int64)), 'y_train must be an int32'),
      (dict(y_test=np.array([0, 1], np.int32)),
       'has 3 images but y_test has 2'),
      (dict(y_test=np.array([0, 1, 3], np.int32)),
       r'labels must lie in \[0, 3\)'),
      (dict(y_train=np.array([0, 1, 2, 0, 1, -1], np.int32)), 'y_train labels'),
      (dict(x_test=np.zeros((3, 5, 4, 3), np.uint8)),
       'x_test images have shape'),
      (dict(mean=(0.5, 1.5, 0.5)), 'mean values'),
      (dict(std=(0.0, 0.2, 0.2)), 'std values'),
      (dict(std=(0.2, 0.2)), 'one per channel'),
      (dict(num_classes=0), 'num_classes'),
  ])
  def test_validate_names_the_problem(self, overrides, message):
    with pytest.raises(ValueError, match=message):
      _tiny(**overrides).validate()

  def test_channel_stats_exact(self):
    x = np.array([0, 255, 0, 255], np.uint8).reshape(4, 1, 1, 1)
    mean, std = data.channel_stats(x)
    np.testing.assert_allclose(mean, (0.5,))
    np.testing.assert_allclose(std, (0.5,))
    assert data.channel_stats(np.zeros((2, 2, 2, 1), np.uint8))[1] == (1 / 255,)


class TestDigits:

  def test_shapes_dtypes_and_scaling(self):
    ds = data.load_dataset('digits')
    assert ds.name == 'digits' and ds.num_classes == 10
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) == pytest.approx(0.2 * 1797, abs=10)
    assert ds.x_train.max() == 255
    # 16 * 255 / 16 and 8 * 255 / 16 = 127.5 -> 128 (half up).
    assert set(np.unique(ds.x_train)) <= {int(np.floor(v * 255 / 16 + 0.5))
                                          for v in range(17)}
    assert set(np.unique(ds.y_test)) == set(range(10))
    assert len(ds.mean) == 1 and 0 < ds.std[0] <= 1

  def test_deterministic_split(self):
    a, b = data.load_digits(seed=3), data.load_digits(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = data.load_digits(seed=4)
    assert not np.array_equal(a.x_test, c.x_test)

  def test_rejects_arguments_of_other_sources(self):
    with pytest.raises(ValueError, match='does not take path='):
      data.load_dataset('digits', path='x.npz')


class TestNpz:

  def test_split_layout_round_trip(self, tmp_path):
    ref = _tiny()
    path = tmp_path / 'mine.npz'
    np.savez(path, x_train=ref.x_train, y_train=ref.y_train.astype(np.int64),
             x_test=ref.x_test, y_test=ref.y_test)
    ds = data.load_dataset('npz', path=path)
    assert ds.name == 'mine' and ds.num_classes == 3
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert ds.y_train.dtype == np.int32
    np.testing.assert_allclose(ds.mean, data.channel_stats(ref.x_train)[0])

  def test_xy_layout_grayscale_split(self, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 5, 5), np.uint8)
    y = np.repeat(np.arange(5), 10)
    np.savez(tmp_path / 'xy.npz', x=x, y=y)
    ds = data.load_npz(tmp_path / 'xy.npz', seed=0, test_fraction=0.2,
                       num_classes=7)
    assert ds.image_shape == (5, 5, 1) and ds.num_classes == 7
    assert len(ds.y_test) == 10 and np.bincount(ds.y_test).tolist() == [2] * 5
    # Every image lands on exactly one side, with its own label.
    pairs = {(im.tobytes(), int(l)) for im, l in zip(x, y)}
    got = {(im[..., 0].tobytes(), int(l)) for im, l in
           zip(np.concatenate([ds.x_train, ds.x_test]),
               np.concatenate([ds.y_train, ds.y_test]))}
    assert got == pairs

  @pytest.mark.parametrize('arrays, error, message', [
      (dict(images=np.zeros((2, 2, 2), np.uint8)), UserError,
       'expected x_train'),
      (dict(x=np.zeros((4, 2, 2)), y=np.arange(4) % 2), ValueError,
       'integer pixels'),
      (dict(x=np.full((4, 2, 2), 300), y=np.arange(4) % 2), ValueError,
       '0..255'),
      (dict(x=np.zeros((4, 2, 2), np.uint8), y=np.arange(4) * 0.5), ValueError,
       'integer labels'),
      (dict(x=np.zeros((4, 2, 2), np.uint8), y=np.arange(3)), ValueError,
       'has 3 labels'),
  ])
  def test_clear_errors(self, tmp_path, arrays, error, message):
    np.savez(tmp_path / 'bad.npz', **arrays)
    with pytest.raises(error, match=message):
      data.load_dataset('npz', path=tmp_path / 'bad.npz')

  def test_label_beyond_num_classes(self, tmp_path):
    np.savez(tmp_path / 'l.npz', x=np.zeros((6, 2, 2), np.uint8),
             y=np.array([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 2\)'):
      data.load_npz(tmp_path / 'l.npz', num_classes=2)

  def test_missing_path(self, tmp_path):
    with pytest.raises(ValueError, match='needs path='):
      data.load_dataset('npz')
    with pytest.raises(UserError, match='no .npz file at'):
      data.load_dataset('npz', path=tmp_path / 'none.npz')

  def test_shared_gtsrb(self):
    ds = data.load_dataset('npz', path=_shared('gtsrb32.npz'))
    assert ds.num_classes == 43 and ds.image_shape == (32, 32, 3)
    assert (len(ds.y_train), len(ds.y_test)) == (25087, 7949)

  def test_shared_mnist_xy(self):
    ds = data.load_dataset('npz', path=_shared('mnist_test10k.npz'), seed=0)
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert len(ds.y_train) + len(ds.y_test) == 10000
    assert len(ds.y_test) == pytest.approx(2000, abs=10)


class TestSubsets:

  labels = np.repeat(np.arange(4), [100, 40, 7, 1])

  def test_fraction_per_class(self):
    idx = data.clean_subset_indices(self.labels, fraction=0.05, seed=0)
    assert idx.dtype == np.int32 and np.all(np.diff(idx) > 0)
    # round(5.0)=5, round(2.0)=2, round(0.35)->1 (at least one), 1.
    assert np.bincount(self.labels[idx]).tolist() == [5, 2, 1, 1]

  def test_fraction_rounds_half_up(self):
    labels = np.repeat(np.arange(2), [10, 30])
    idx = data.clean_subset_indices(labels, fraction=0.25, seed=0)
    assert np.bincount(labels[idx]).tolist() == [3, 8]  # 2.5 -> 3, 7.5 -> 8

  def test_count_exact_and_proportional(self):
    idx = data.clean_subset_indices(self.labels, count=20, seed=1)
    assert len(idx) == 20 and len(np.unique(idx)) == 20
    counts = np.bincount(self.labels[idx])
    assert counts.min() >= 1 and counts[0] > counts[1] > counts[2]

  def test_deterministic_and_seed_dependent(self):
    a = data.clean_subset_indices(self.labels, fraction=0.3, seed=5)
    np.testing.assert_array_equal(
        a, data.clean_subset_indices(self.labels, fraction=0.3, seed=5))
    assert not np.array_equal(
        a, data.clean_subset_indices(self.labels, fraction=0.3, seed=6))

  @pytest.mark.parametrize('kwargs', [
      dict(), dict(fraction=0.1, count=3), dict(fraction=0.0),
      dict(fraction=1.5), dict(count=3), dict(count=149), dict(count=2.5)])
  def test_errors(self, kwargs):
    with pytest.raises(ValueError):
      data.clean_subset_indices(self.labels, seed=0, **kwargs)

  def test_stratified_split_partitions(self):
    train, test = data.stratified_split(self.labels, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])),
                                  np.arange(len(self.labels)))
    assert np.bincount(self.labels[test]).tolist() == [20, 8, 1]


class TestAugment:

  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3)),
                  jnp.uint8)
  jitted = staticmethod(jax.jit(
      data.augment, static_argnames=('crop_padding', 'flip', 'cutout')))

  def test_shape_dtype_range(self):
    out = self.jitted(self.x, jax.random.PRNGKey(0), cutout=3)
    assert out.shape == (6, 8, 8, 3) and out.dtype == jnp.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0

  def test_deterministic_per_key_and_differs_across_keys(self):
    a = self.jitted(self.x, jax.random.PRNGKey(1), cutout=3)
    b = self.jitted(self.x, jax.random.PRNGKey(1), cutout=3)
    c = self.jitted(self.x, jax.random.PRNGKey(2), cutout=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

  def test_all_off_is_identity(self):
    out = data.augment(self.x, jax.random.PRNGKey(3), crop_padding=0,
                       flip=False, cutout=0)
    # XLA may divide by 255 as a multiply by 1/255: equal up to one ulp.
    np.testing.assert_allclose(out, np.asarray(self.x) / 255, rtol=1e-6)
    xf = self.x.astype(jnp.float32) / 255
    np.testing.assert_array_equal(
        data.augment(xf, jax.random.PRNGKey(3), crop_padding=0, flip=False), xf)

  def test_crop_is_a_per_sample_zero_filled_shift(self):
    x = jnp.ones((16, 8, 8, 1))
    out = np.asarray(data.random_crop(x, jax.random.PRNGKey(4), padding=2))
    ones = out.sum(axis=(1, 2, 3))
    # A shift by (dy, dx) keeps (8-|dy|)(8-|dx|) ones; offsets differ.
    assert set(ones.tolist()) <= {(8 - a) * (8 - b) for a in range(3)
                                  for b in range(3)}
    assert len(set(ones.tolist())) > 1

  def test_flip_mirrors_some_samples(self):
    x = jnp.broadcast_to(jnp.arange(8.0)[None, None, :, None], (16, 8, 8, 1))
    out = np.asarray(data.random_flip(x, jax.random.PRNGKey(5)))
    flipped = np.all(out == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped | kept) and flipped.any() and kept.any()

  def test_cutout_square_per_sample(self):
    x = jnp.ones((16, 12, 12, 2))
    out = np.asarray(data.random_cutout(x, jax.random.PRNGKey(6), size=3))
    zeros = (out[..., 0] == 0).sum(axis=(1, 2))
    assert zeros.max() == 9 and zeros.min() >= 4  # clipped at the corners
    np.testing.assert_array_equal(out[..., 0], out[..., 1])

  def test_rejects_bad_arguments(self):
    with pytest.raises(ValueError):
      data.augment(self.x[0], jax.random.PRNGKey(0))
    with pytest.raises(ValueError):
      data.augment(self.x, jax.random.PRNGKey(0), cutout=-1)


# ---------------------------------------------------------------- TFDS ---


def _tiny_cifar10_builder():
  """A GeneratorBasedBuilder named 'cifar10' writing 8x8x3 images.

  Images are handed over as PNG bytes encoded by PIL: TFDS encodes numpy
  images with TensorFlow, which is exactly what we want to do without.
  """
  import PIL.Image
  import tensorflow_datasets as tfds

  def png(image):
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format='PNG')
    return buffer.getvalue()

  class Cifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('3.0.2')
    SPLITS = {}

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              'image': tfds.features.Image(shape=(8, 8, 3)),
              'label': tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(s) for s in self.SPLITS}

    def _generate_examples(self, split):
      x, y = self.SPLITS[split]
      for i, (image, label) in enumerate(zip(x, y)):
        yield i, {'image': png(image), 'label': int(label)}

  return Cifar10


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """A data_dir with a prepared array_record 'cifar10' and its source arrays."""
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  rng = np.random.default_rng(7)
  splits = {s: (rng.integers(0, 256, (n, 8, 8, 3), np.uint8),
                np.arange(n) % 10) for s, n in (('train', 30), ('test', 12))}
  builder_cls = _tiny_cifar10_builder()
  builder_cls.SPLITS = splits
  root = tmp_path_factory.mktemp('tfds')
  builder_cls(data_dir=root, file_format='array_record').download_and_prepare()
  return root, splits


@pytest.fixture
def no_network(monkeypatch):
  """Makes every connection attempt fail and records it."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args[1:] or args)
    raise OSError('network access blocked by test')

  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
  monkeypatch.setattr(socket, 'getaddrinfo', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)
  return attempts


def _as_multiset(x, y):
  # TFDS shuffles records on disk, so compare (label, pixels) pairs.
  return sorted(zip(np.asarray(y).tolist(), [im.tobytes() for im in x]))


class TestTfds:

  def test_end_to_end_offline_exact(self, tfds_dir, no_network, monkeypatch):
    from tensorflow_datasets.core.utils import gcs_utils
    import tensorflow_datasets as tfds
    root, splits = tfds_dir
    # Older tfds shipped with GCS probing on: load must switch it off while
    # reading and restore it afterwards.
    monkeypatch.setattr(gcs_utils, '_is_gcs_disabled', False)
    seen, real = [], tfds.data_source

    def spy(*args, **kwargs):
      seen.append(gcs_utils._is_gcs_disabled)
      return real(*args, **kwargs)

    monkeypatch.setattr(tfds, 'data_source', spy)
    ds = data.load_dataset('cifar10', data_dir=str(root))
    assert ds.name == 'cifar10' and ds.num_classes == 10
    assert ds.x_train.dtype == np.uint8 and ds.image_shape == (8, 8, 3)
    for split in ('train', 'test'):
      x, y = getattr(ds, f'x_{split}'), getattr(ds, f'y_{split}')
      assert _as_multiset(x, y) == _as_multiset(*splits[split])
    np.testing.assert_allclose(ds.mean,
                               data.channel_stats(splits['train'][0])[0])
    assert no_network == [] and seen == [True]
    assert gcs_utils._is_gcs_disabled is False
    assert list((root / 'cifar10' / '3.0.2').glob('*.array_record*'))

  def test_network_block_works(self, no_network):
    import urllib.request
    with pytest.raises(OSError):
      urllib.request.urlopen('http://example.com', timeout=1)
    assert no_network
    no_network.clear()

  def test_version_and_env_data_dir(self, tfds_dir, no_network, monkeypatch):
    root, splits = tfds_dir
    monkeypatch.setenv('TFDS_DATA_DIR', str(root))
    ds = data.load_dataset('tfds:cifar10:3.0.2', train_split='test')
    assert len(ds.y_train) == len(splits['test'][1])
    with pytest.raises(data.DatasetNotPreparedError, match=r"3\.0\.2"):
      data.load_dataset('cifar10:9.9.9')
    assert no_network == []

  def test_not_prepared_fails_fast_and_clearly(self, tmp_path, no_network):
    start = time.monotonic()
    with pytest.raises(data.DatasetNotPreparedError) as info:
      data.load_dataset('svhn_cropped', data_dir=str(tmp_path))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert str(tmp_path / 'svhn_cropped') in message
    assert 'tfds build svhn_cropped' in message and 'never downloads' in message
    assert no_network == []

  def test_unknown_source_lists_options(self):
    with pytest.raises(ValueError, match='options: digits, npz'):
      data.load_dataset('CIFAR-10')

  def test_tfrecord_without_tensorflow_is_clear(self, tfds_dir, tmp_path,
                                                no_network, monkeypatch):
    # Same files, but dataset_info.json claims TFRecord (TFDS's default).
    import shutil
    root, _ = tfds_dir
    shutil.copytree(root / 'cifar10', tmp_path / 'cifar10')
    info_path = tmp_path / 'cifar10' / '3.0.2' / 'dataset_info.json'
    info = json.loads(info_path.read_text())
    info['fileFormat'] = 'tfrecord'
    info_path.write_text(json.dumps(info))
    monkeypatch.setattr(tfds_source, '_tensorflow_available', lambda: False)
    with pytest.raises(UserError, match='needs TensorFlow'):
      data.load_dataset('cifar10', data_dir=str(tmp_path))
    assert no_network == []

  def test_tensorflow_fallback_glue(self, monkeypatch):
    """With TensorFlow present, TFRecord data goes through tfds.load."""
    import tensorflow_datasets as tfds
    x = np.zeros((4, 2, 2, 1), np.uint8)
    calls = {}

    def fake_data_source(*args, **kwargs):
      raise NotImplementedError('no random access')

    def fake_load(spec, **kwargs):
      calls.update(kwargs, spec=spec)
      info = type('Info', (), {'features': {'label': None}})()
      return ['train', 'test'], info

    monkeypatch.setattr(tfds_source, 'find_prepared', lambda n, d: n + ':1.0.0')
    monkeypatch.setattr(tfds_source, '_tensorflow_available', lambda: True)
    monkeypatch.setattr(tfds, 'data_source', fake_data_source)
    monkeypatch.setattr(tfds, 'load', fake_load)
    monkeypatch.setattr(tfds, 'as_numpy',
                        lambda ds: {'image': x, 'label': np.arange(4)})
    ds = data.load_tfds('mnist', data_dir='/nowhere')
    assert calls['spec'] == 'mnist:1.0.0' and calls['download'] is False
    assert calls['try_gcs'] is False and ds.num_classes == 4
