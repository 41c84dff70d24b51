"""Reading prepared TensorFlow Datasets (TFDS) data, strictly offline.

nbajax never downloads. A TFDS data set must already be prepared under
`data_dir` (`<data_dir>/<name>[/<config>]/<version>/dataset_info.json`).
We look for it on the file system first, so that a missing data set fails
at once with a message saying where we looked, instead of TFDS trying to
download (and, without network, retrying for minutes).

Reading prefers `tfds.data_source` (array_record or parquet files, random
access, no TensorFlow needed); TFRecord files need TensorFlow and go through
`tfds.load(download=False)` + `tfds.as_numpy` when it is installed. Asking
for the prepared version explicitly makes TFDS build the reader from the
files' own `features.json`, so a data set prepared by another TFDS version,
or one with no builder code installed here (e.g. a custom 'gtsrb'), reads
the same way. TFDS is imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from typing import Iterator, Optional

import numpy as np

from nbajax.data import dataset as dataset_lib
from nbajax.errors import UserError

# 'name', 'name/config', 'name:1.2.3', 'name/config:1.2.3' (TFDS naming).
_NAME_RE = re.compile(r'^(?P<base>[a-z0-9_]+(?:/[A-Za-z0-9_.+-]+)?)'
                      r'(?::(?P<version>\d+\.\d+\.\d+))?$')
_VERSION_RE = re.compile(r'^\d+\.\d+\.\d+$')
_READ_CHUNK = 1024


class DatasetNotPreparedError(UserError, FileNotFoundError):
  """A TFDS data set is not prepared in data_dir (nbajax never downloads)."""


def is_tfds_name(name: str) -> bool:
  """Whether `name` is spelled like a TFDS data set name."""
  return bool(_NAME_RE.match(name))


def default_data_dir() -> str:
  """TFDS's own default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(
      os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError(
        'reading TFDS data sets needs tensorflow-datasets '
        '(pip install tensorflow-datasets)') from e
  return tfds


@contextlib.contextmanager
def _gcs_disabled() -> Iterator[None]:
  """Stops TFDS (and google-auth) from probing Google Cloud while we read.

  A builder whose files are missing asks the public gs://tfds-data bucket
  for its metadata (`DatasetInfo.initialize_from_bucket`) unless the private
  switch `gcs_utils._is_gcs_disabled` is set: tfds 4.9.10 ships it True,
  older releases False. NO_GCE_CHECK stops google-auth from probing the GCE
  metadata server when TensorFlow's file system is used. Both are set for
  the duration of the call and restored.
  """
  try:
    from tensorflow_datasets.core.utils import gcs_utils
  except ImportError:  # Layout changed: nothing to switch.
    gcs_utils = None
  old_flag = getattr(gcs_utils, '_is_gcs_disabled', None)
  old_env = os.environ.get('NO_GCE_CHECK')
  if old_flag is not None:
    gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access
  os.environ['NO_GCE_CHECK'] = 'true'
  try:
    yield
  finally:
    if old_flag is not None:
      gcs_utils._is_gcs_disabled = old_flag  # pylint: disable=protected-access
    if old_env is None:
      os.environ.pop('NO_GCE_CHECK', None)
    else:
      os.environ['NO_GCE_CHECK'] = old_env


def _tensorflow_available() -> bool:
  return importlib.util.find_spec('tensorflow') is not None


def _version_key(version: str) -> tuple[int, ...]:
  return tuple(int(p) for p in version.split('.'))


def _prepared_versions(path) -> list[str]:
  """Versions under `path` that hold a dataset_info.json, oldest first."""
  if not path.is_dir():
    return []
  found = [p.name for p in path.iterdir()
           if _VERSION_RE.match(p.name) and (p / 'dataset_info.json').exists()]
  return sorted(found, key=_version_key)


def _how_to_prepare(name: str, data_dir: str) -> str:
  base = name.split(':')[0]
  return (
      f'nbajax never downloads. To prepare it, on a machine with network '
      f'and TensorFlow run\n'
      f'  tfds build {base} --data_dir {data_dir} --file_format array_record\n'
      f'(array_record is readable here without TensorFlow), then copy the '
      f'prepared folder {base.split("/")[0]}/ into {data_dir} on this '
      f'machine; or pass data_dir= (or set TFDS_DATA_DIR) to where it is '
      f'already prepared.')


def _not_prepared(name: str, data_dir: str, looked: str,
                  detail: str) -> DatasetNotPreparedError:
  return DatasetNotPreparedError(
      f'TFDS data set {name!r} is not prepared in data_dir {data_dir!r}: '
      f'{detail} (looked in {looked}).\n' + _how_to_prepare(name, data_dir))


def find_prepared(name: str, data_dir: str) -> str:
  """Resolves `name` to the exact prepared 'name[/config]:version' on disk.

  Args:
    name: 'name', 'name/config', optionally with ':version'.
    data_dir: root directory of prepared TFDS data.

  Returns:
    'name[/config]:version' naming the newest (or the requested) version.

  Raises:
    ValueError: if `name` is not spelled like a TFDS name.
    DatasetNotPreparedError: if no prepared version is on disk.
  """
  from etils import epath

  match = _NAME_RE.match(name)
  if not match:
    raise ValueError(f'{name!r} is not a TFDS data set name')
  base, version = match['base'], match['version']
  path = epath.Path(data_dir) / base
  versions = _prepared_versions(path)
  if version is not None:
    if version not in versions:
      raise _not_prepared(name, data_dir, os.fspath(path / version),
                          f'version {version} not found; prepared: '
                          f'{versions or "none"}')
    return f'{base}:{version}'
  if versions:
    return f'{base}:{versions[-1]}'
  configs = ([p.name for p in sorted(path.iterdir()) if _prepared_versions(p)]
             if path.is_dir() else [])
  if configs:
    raise _not_prepared(name, data_dir, os.fspath(path),
                        'it has configs, pick one: ' + ', '.join(
                            f'{base}/{c}' for c in configs))
  root = epath.Path(data_dir)
  present = ([p.name for p in sorted(root.iterdir())
              if p.is_dir() and p.name != 'downloads']
             if root.is_dir() else [])
  raise _not_prepared(
      name, data_dir, os.fspath(path / '<version>' / 'dataset_info.json'),
      f'no prepared version found; data sets present there: '
      f'{present or "none"}')


def _read_source(source, image_key: str, label_key: str,
                 split: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads every record of one random-access split into two arrays."""
  n = len(source)
  images, labels = [], np.empty((n,), dtype=np.int64)
  for start in range(0, n, _READ_CHUNK):
    stop = min(start + _READ_CHUNK, n)
    for i, record in enumerate(source.__getitems__(list(range(start, stop)))):
      if image_key not in record or label_key not in record:
        raise KeyError(
            f'split {split!r} records have keys {sorted(record)}; pass '
            f'image_key= and label_key= naming the image and the label')
      images.append(np.asarray(record[image_key]))
      labels[start + i] = record[label_key]
  x = np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
  return x, labels


def _num_classes_from(features, label_key: str) -> Optional[int]:
  try:
    return int(features[label_key].num_classes)
  except (KeyError, AttributeError, TypeError):
    return None


def _open_data_sources(tfds, spec: str, data_dir: str,
                       splits: tuple[str, str]):
  """Random-access readers of the splits, or None for TFRecord files."""
  try:
    return tfds.data_source(spec, split=list(splits), data_dir=data_dir,
                            download=False, try_gcs=False)
  except NotImplementedError:  # TFDS: no random access for this format.
    return None


def _read_with_data_source(sources, splits: tuple[str, str], image_key: str,
                           label_key: str):
  arrays = [_read_source(s, image_key, label_key, split)
            for s, split in zip(sources, splits)]
  features = sources[0].dataset_info.features
  return arrays, _num_classes_from(features, label_key)


def _read_with_tensorflow(tfds, spec: str, data_dir: str,
                          splits: tuple[str, str], image_key: str,
                          label_key: str):
  datasets, info = tfds.load(spec, split=list(splits), data_dir=data_dir,
                             download=False, try_gcs=False, batch_size=-1,
                             with_info=True)
  arrays = []
  for ds in datasets:
    batch = tfds.as_numpy(ds)
    arrays.append((np.asarray(batch[image_key]),
                   np.asarray(batch[label_key])))
  return arrays, _num_classes_from(info.features, label_key)


def load_tfds(name: str, *, data_dir: Optional[str] = None,
              image_key: str = 'image', label_key: str = 'label',
              train_split: str = 'train', test_split: str = 'test',
              num_classes: Optional[int] = None) -> dataset_lib.Dataset:
  """Loads a prepared TFDS data set into memory, without any network access.

  Args:
    name: TFDS name, e.g. 'cifar10', 'mnist', 'svhn_cropped', 'cifar100',
      optionally 'name/config' and ':version' (default: newest on disk).
    data_dir: root of prepared TFDS data; default $TFDS_DATA_DIR, else
      ~/tensorflow_datasets.
    image_key: feature holding the uint8 image.
    label_key: feature holding the integer label (e.g. 'coarse_label').
    train_split: TFDS split (or slice, 'train[:90%]') used as train.
    test_split: TFDS split used as test.
    num_classes: K; default from the label's ClassLabel, else max label + 1.

  Returns:
    A validated `Dataset` named after `name` (without version).

  Raises:
    DatasetNotPreparedError: at once, if the data is not on disk.
    UserError: the files cannot be opened, or they are TFRecord and
      TensorFlow is not installed.
    KeyError: if image_key/label_key are not features of the records.
  """
  data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
  tfds = _import_tfds()
  spec = find_prepared(name, data_dir)
  splits = (train_split, test_split)
  with _gcs_disabled():
    try:
      sources = _open_data_sources(tfds, spec, data_dir, splits)
    except Exception as e:  # TFDS reading the user's files: many types.
      raise UserError(
          f'{spec} in {data_dir} cannot be opened: its files (e.g. '
          f'dataset_info.json) are damaged or of another TFDS version '
          f'({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e
    if sources is not None:
      arrays, k = _read_with_data_source(sources, splits, image_key,
                                         label_key)
    elif _tensorflow_available():
      arrays, k = _read_with_tensorflow(tfds, spec, data_dir, splits,
                                        image_key, label_key)
    else:
      raise UserError(
          f'{spec} in {data_dir} is prepared in a format without random '
          f'access (TFRecord, TFDS\'s default), which needs TensorFlow to '
          f'read: install it (pip install "nbajax[tf]") or prepare the data '
          f'with --file_format array_record.')
  (x_train, y_train), (x_test, y_test) = arrays
  return dataset_lib.from_arrays(
      name.split(':')[0], x_train, y_train, x_test, y_test,
      num_classes=num_classes if num_classes is not None else k)
