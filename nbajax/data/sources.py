"""Data sources: sklearn digits, local .npz files, prepared TFDS data sets.

`load_dataset` is the one entry point configs and CLIs call. Every source is
offline: digits ship with scikit-learn, .npz files are local, and TFDS data
must already be prepared on disk (see `nbajax.data.tfds_source`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nbajax.data import dataset as dataset_lib
from nbajax.data import subsets
from nbajax.data import tfds_source

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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
  if not path.is_file():
    raise FileNotFoundError(f'no .npz file at {path}')
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


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
    FileNotFoundError: if there is no file at `path`.
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
    ValueError: for an unknown source or arguments the source does not take.
    tfds_source.DatasetNotPreparedError: if TFDS data is not on disk.
  """
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
