"""Data sources: sklearn digits, local .npz files, prepared TFDS data sets.

`load_dataset` is the one entry point configs and CLIs call. Every source is
offline: digits ship with scikit-learn, .npz files are local, and TFDS data
must already be prepared on disk (see `nbajax.data.tfds_source`).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nbajax.data import dataset as dataset_lib
from nbajax.data import subsets
from nbajax.data import tfds_source
from nbajax.errors import UserError

SOURCES = ('digits', 'npz', '<any prepared TFDS name, e.g. cifar10>')


def load_digits(*, seed: int = 0,
                test_fraction: float = 0.2) -> dataset_lib.Dataset:
  """scikit-learn's 1,797 real 8x8 handwritten digits, split by class.

  Pixels 0..16 become uint8 round(x * 255 / 16) (half up), so 16 -> 255.

  Args:
    seed: seed of the class-stratified train/test split.
    test_fraction: share of each class held out for test.

  Returns:
    Dataset 'digits': uint8[N, 8, 8, 1], 10 classes (1,438 / 359 images at
    the default 0.2).
  """
  from sklearn import datasets as sk_datasets

  digits = sk_datasets.load_digits()
  x = np.floor(digits.images * (255.0 / 16.0) + 0.5).astype(np.uint8)
  y = digits.target
  train, test = subsets.stratified_split(y, test_fraction=test_fraction,
                                         seed=seed)
  return dataset_lib.from_arrays('digits', x[train], y[train], x[test],
                                 y[test], num_classes=10)


_ZIP_MAGIC = (b'PK\x03\x04', b'PK\x05\x06')  # An .npz is a zip archive.


def _read_npz(path: Path) -> dict[str, np.ndarray]:
  """Every array of an .npz file, never unpickling anything.

  Raises:
    UserError: no such file, or not a readable .npz (another format, a
      truncated archive, a bad checksum, an object array): named, without
      numpy's advice to allow pickles.
  """
  if not path.is_file():
    raise UserError(f'no .npz file at {path}')
  with open(path, 'rb') as f:
    head = f.read(6)
  if not head.startswith(_ZIP_MAGIC):
    kind = ('a .npy array' if head.startswith(b'\x93NUMPY')
            else 'an empty file' if not head else 'not a zip archive')
    raise UserError(f'{path} is not an .npz file ({kind}); write one with '
                    'numpy.savez(path, x_train=..., y_train=..., ...)')
  key = None
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {}
      for key in f.files:
        arrays[key] = f[key]
      return arrays
  except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
          zlib.error) as e:
    what = f'array {key!r}' if key else 'its index'
    cause = ('an object array, which nbajax never unpickles'
             if 'pickle' in str(e) else f'{type(e).__name__}: {e}')
    raise UserError(f'{path} is a damaged or unsupported .npz file: {what} '
                    f'cannot be read ({cause})') from e


def load_npz(path: os.PathLike | str, *, seed: int = 0,
             test_fraction: float = 0.2, num_classes: Optional[int] = None,
             name: Optional[str] = None) -> dataset_lib.Dataset:
  """Loads images and labels from a local NumPy .npz file.

  Two layouts are accepted: keys x_train, y_train, x_test, y_test (used as
  given), or keys x, y (split class by class with `seed`, `test_fraction`).
  Images are integer [N, H, W] or [N, H, W, C] in 0..255; grayscale HW gets
  a channel axis. Optional keys mean, std (per channel, [0, 1] units) are
  used instead of statistics computed from x_train.

  Args:
    path: the .npz file; read with allow_pickle=False.
    seed: seed of the split for the x, y layout.
    test_fraction: share of each class held out for the x, y layout.
    num_classes: K; default the largest label + 1.
    name: data set name; default the file name without suffix.

  Returns:
    A validated `Dataset`.

  Raises:
    UserError: no file at `path`, or not a readable .npz.
    KeyError: if neither layout's keys are present.
    ValueError: for wrong dtypes, shapes or value ranges.
  """
  path = Path(path)
  arrays = _read_npz(path)
  split_keys = ('x_train', 'y_train', 'x_test', 'y_test')
  if all(k in arrays for k in split_keys):
    x_train, y_train, x_test, y_test = (arrays[k] for k in split_keys)
  elif 'x' in arrays and 'y' in arrays:
    y = dataset_lib.as_labels(arrays['y'], field='y')
    if len(y) != len(arrays['x']):
      raise ValueError(f'{path}: x has {len(arrays["x"])} images but y has '
                       f'{len(y)} labels')
    train, test = subsets.stratified_split(y, test_fraction=test_fraction,
                                           seed=seed)
    x_train, y_train = arrays['x'][train], y[train]
    x_test, y_test = arrays['x'][test], y[test]
  else:
    raise KeyError(
        f'{path} has keys {sorted(arrays)}; expected x_train, y_train, '
        f'x_test, y_test (or x, y to be split)')
  return dataset_lib.from_arrays(
      name or path.stem, x_train, y_train, x_test, y_test,
      num_classes=num_classes, mean=arrays.get('mean'),
      std=arrays.get('std'))


def load_dataset(name: str, *, data_dir: Optional[str] = None,
                 path: Optional[os.PathLike | str] = None, seed: int = 0,
                 **kwargs: Any) -> dataset_lib.Dataset:
  """Loads a data set by source name, offline.

  Args:
    name: 'digits'; 'npz' (with path=); or a TFDS name ('cifar10', 'mnist',
      'svhn_cropped', 'cifar100', 'name/config:1.0.0', ...) prepared in
      data_dir, optionally written 'tfds:cifar10'.
    data_dir: TFDS data directory (TFDS sources only).
    path: the .npz file (npz source only).
    seed: seed of the train/test split for sources that need one.
    **kwargs: passed to the source: `load_digits` (test_fraction),
      `load_npz` (test_fraction, num_classes, name), `load_tfds`
      (image_key, label_key, train_split, test_split, num_classes).

  Returns:
    A validated `Dataset`.

  Raises:
    UserError: for an unknown source, arguments the source does not take,
      a file that cannot be read, or arrays that break the `Dataset`
      contract (named with the source).
    tfds_source.DatasetNotPreparedError: if TFDS data is not on disk (a
      UserError).
  """
  try:
    return _load(name, data_dir=data_dir, path=path, seed=seed, **kwargs)
  except UserError:
    raise
  except (ValueError, KeyError) as e:
    # The loaders' and `Dataset.validate`'s checks of the user's arrays.
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    where = str(path) if path is not None else name
    raise UserError(text if where in text else f'data {where}: {text}') from e


def _load(name, *, data_dir, path, seed, **kwargs) -> dataset_lib.Dataset:
  if name == 'digits':
    _reject(name, data_dir=data_dir, path=path)
    return load_digits(seed=seed, **kwargs)
  if name == 'npz':
    _reject(name, data_dir=data_dir)
    if path is None:
      raise ValueError("source 'npz' needs path= (a local .npz file)")
    return load_npz(path, seed=seed, **kwargs)
  tfds_name = name[len('tfds:'):] if name.startswith('tfds:') else name
  if not tfds_source.is_tfds_name(tfds_name):
    raise ValueError(f'unknown data source {name!r}; options: '
                     + ', '.join(SOURCES))
  _reject(name, path=path)
  return tfds_source.load_tfds(tfds_name, data_dir=data_dir, **kwargs)


def _reject(source: str, **unused: Any) -> None:
  """Raises if an argument meant for another source was given."""
  given = [k for k, v in unused.items() if v is not None]
  if given:
    raise ValueError(f'source {source!r} does not take {", ".join(given)}=')
