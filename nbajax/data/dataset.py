"""The `Dataset` container every source returns, and its checks.

Images stay uint8 NHWC on the host (and later on the device) because that is
4x smaller than float32 and is what poisoning writes; models convert with
`x / 255.`. The per-channel mean and std travel with the data so that a model
can normalize inside itself and a checkpoint can record them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

# A std below one grey level would blow up normalized inputs, so statistics
# computed from (nearly) constant channels are floored here.
_MIN_STD = 1.0 / 255.0


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A labelled image classification data set with a train and a test split.

  Attributes:
    name: short name of the source, e.g. 'digits', 'cifar10', 'gtsrb32'.
    x_train: uint8[N, H, W, C] training images in [0, 255].
    y_train: int32[N] training labels in [0, num_classes).
    x_test: uint8[M, H, W, C] test images.
    y_test: int32[M] test labels.
    num_classes: number of classes K.
    mean: per-channel mean of the training images, C floats in [0, 1] units.
    std: per-channel standard deviation, C floats in (0, 1] units.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one image."""
    return tuple(int(d) for d in self.x_train.shape[1:])

  def __repr__(self) -> str:
    # The default dataclass repr would print every pixel.
    return (
        f'Dataset(name={self.name!r}, train={len(self.y_train)}, '
        f'test={len(self.y_test)}, image_shape={self.image_shape}, '
        f'num_classes={self.num_classes})'
    )

  def validate(self) -> Dataset:
    """Checks dtypes, shapes and value ranges.

    Returns:
      self, so that sources can `return Dataset(...).validate()`.

    Raises:
      ValueError: naming the first field that breaks the contract.
    """
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f'name must be a non-empty str, got {self.name!r}')
    if isinstance(self.num_classes, bool) or not isinstance(
        self.num_classes, (int, np.integer)) or self.num_classes < 1:
      raise ValueError(
          f'num_classes must be a positive int, got {self.num_classes!r}')
    for split in ('train', 'test'):
      _check_split(split, getattr(self, f'x_{split}'),
                   getattr(self, f'y_{split}'), int(self.num_classes))
    if len(self.y_train) == 0:
      raise ValueError('x_train holds no images')
    if self.x_test.shape[1:] != self.x_train.shape[1:]:
      raise ValueError(
          f'x_test images have shape {self.x_test.shape[1:]} but x_train '
          f'images have shape {self.x_train.shape[1:]}')
    channels = self.x_train.shape[-1]
    _check_stats('mean', self.mean, channels, low=0.0, low_open=False)
    _check_stats('std', self.std, channels, low=0.0, low_open=True)
    return self


def _check_split(split: str, x: np.ndarray, y: np.ndarray,
                 num_classes: int) -> None:
  """Raises ValueError if one split's arrays break the contract."""
  if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
    raise ValueError(
        f'x_{split} must be a uint8 numpy array, got '
        f'{type(x).__name__} of dtype {getattr(x, "dtype", None)}')
  if x.ndim != 4:
    raise ValueError(
        f'x_{split} must be NHWC (ndim 4), got shape {x.shape}')
  if not isinstance(y, np.ndarray) or y.dtype != np.int32:
    raise ValueError(
        f'y_{split} must be an int32 numpy array, got '
        f'{type(y).__name__} of dtype {getattr(y, "dtype", None)}')
  if y.ndim != 1:
    raise ValueError(f'y_{split} must be 1-D, got shape {y.shape}')
  if len(x) != len(y):
    raise ValueError(
        f'x_{split} has {len(x)} images but y_{split} has {len(y)} labels')
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(
        f'y_{split} labels must lie in [0, {num_classes}), found '
        f'[{y.min()}, {y.max()}]')


def _check_stats(field: str, values: Sequence[float], channels: int, *,
                 low: float, low_open: bool) -> None:
  """Raises ValueError unless `values` are `channels` floats in the range."""
  if not isinstance(values, tuple) or len(values) != channels:
    raise ValueError(
        f'{field} must be a tuple of {channels} floats (one per channel), '
        f'got {values!r}')
  for v in values:
    ok = np.isfinite(v) and v <= 1.0 and (v > low if low_open else v >= low)
    if not ok:
      bracket = '(' if low_open else '['
      raise ValueError(
          f'{field} values must lie in {bracket}{low}, 1] (units of [0, 1] '
          f'pixels), got {values!r}')


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...],
                                          tuple[float, ...]]:
  """Exact per-channel mean and std of uint8 images, in [0, 1] units.

  Counts the 256 grey levels per channel instead of converting to float, so
  that a 25k-image set needs no float copy of itself.

  Args:
    x: uint8[N, H, W, C] images.

  Returns:
    (mean, std): two tuples of C floats; std floored at 1/255.

  Raises:
    ValueError: if `x` holds no pixels.
  """
  if x.size == 0:
    raise ValueError('cannot compute channel statistics of zero images')
  levels = np.arange(256, dtype=np.float64) / 255.0
  means, stds = [], []
  for c in range(x.shape[-1]):
    counts = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
    p = counts / counts.sum()
    mean = float(p @ levels)
    var = float(p @ (levels - mean) ** 2)
    means.append(mean)
    stds.append(max(float(np.sqrt(var)), _MIN_STD))
  return tuple(means), tuple(stds)


def as_nhwc_uint8(x: np.ndarray, *, field: str) -> np.ndarray:
  """Converts integer images to uint8 NHWC, adding a channel axis to NHW.

  Args:
    x: integer array [N, H, W] (grayscale) or [N, H, W, C], values 0..255.
    field: name used in error messages, e.g. 'x_train'.

  Returns:
    uint8[N, H, W, C].

  Raises:
    ValueError: for float or bool images, values outside 0..255, or a rank
      other than 3 or 4.
  """
  x = np.asarray(x)
  if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
    raise ValueError(
        f'{field} must hold integer pixels 0..255 (uint8), got dtype '
        f'{x.dtype}; convert float images with np.rint(x * 255)')
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(
        f'{field} must be [N, H, W] or [N, H, W, C], got shape {x.shape}')
  if x.dtype != np.uint8:
    if x.size and (x.min() < 0 or x.max() > 255):
      raise ValueError(
          f'{field} pixels must lie in 0..255, found [{x.min()}, {x.max()}]')
    x = x.astype(np.uint8)
  return x


def as_labels(y: np.ndarray, *, field: str) -> np.ndarray:
  """Converts integer labels to int32[N].

  Args:
    y: integer array [N] (or [N, 1]).
    field: name used in error messages, e.g. 'y_train'.

  Returns:
    int32[N].

  Raises:
    ValueError: for non-integer labels, negative labels or a bad shape.
  """
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'{field} must hold integer labels, got dtype {y.dtype}')
  if y.ndim != 1:
    raise ValueError(f'{field} must be 1-D, got shape {y.shape}')
  if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
    raise ValueError(
        f'{field} labels must be non-negative int32, found '
        f'[{y.min()}, {y.max()}]')
  return y.astype(np.int32)


def from_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray,
                x_test: np.ndarray, y_test: np.ndarray, *,
                num_classes: Optional[int] = None,
                mean: Optional[Sequence[float]] = None,
                std: Optional[Sequence[float]] = None) -> Dataset:
  """Builds a validated `Dataset` from loosely typed arrays.

  Args:
    name: name of the data set.
    x_train: integer images [N, H, W] or [N, H, W, C] in 0..255.
    y_train: integer labels [N].
    x_test: integer images [M, H, W] or [M, H, W, C].
    y_test: integer labels [M].
    num_classes: K; defaults to the largest label + 1 over both splits
      (`infer_num_classes`).
    mean: per-channel mean in [0, 1] units; computed from x_train if None.
    std: per-channel std in [0, 1] units; computed from x_train if None.

  Returns:
    A validated `Dataset`.

  Raises:
    ValueError: if any array breaks the contract (see `Dataset.validate`).
  """
  x_train = as_nhwc_uint8(x_train, field='x_train')
  x_test = as_nhwc_uint8(x_test, field='x_test')
  y_train = as_labels(y_train, field='y_train')
  y_test = as_labels(y_test, field='y_test')
  if num_classes is None:
    num_classes = infer_num_classes(y_train, y_test)
  if mean is None or std is None:
    data_mean, data_std = channel_stats(x_train)
    mean = data_mean if mean is None else mean
    std = data_std if std is None else std
  return Dataset(
      name=name, x_train=x_train, y_train=y_train, x_test=x_test,
      y_test=y_test, num_classes=int(num_classes),
      mean=tuple(float(v) for v in mean),
      std=tuple(float(v) for v in std)).validate()


def infer_num_classes(y_train: np.ndarray, y_test: np.ndarray) -> int:
  """K = the largest label + 1, when every class 0..K-1 has training images.

  A single wrong label (say 70000 among CIFAR's 0..9) would otherwise make
  a model, its one-hot targets and every per-class table of that size.

  Args:
    y_train: int labels [N] (checked by `as_labels`).
    y_test: int labels [M].

  Returns:
    K.

  Raises:
    ValueError: when some class below the largest label has no training
      image; names the largest label and where it is.
  """
  k = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  classes = np.unique(y_train)  # No array of size k: k may be absurd.
  if len(classes) < k:
    off = np.flatnonzero(classes != np.arange(len(classes)))
    first_missing = int(off[0]) if off.size else len(classes)
    in_train = y_train.size and y_train.max() == k - 1
    where = (f'y_train[{int(np.argmax(y_train))}]' if in_train
             else f'y_test[{int(np.argmax(y_test))}]')
    raise ValueError(
        f'labels run up to {k - 1} ({where}) but {k - len(classes)} of the '
        f'{k} classes below have no training image (e.g. {first_missing}): '
        'labels must be 0..K-1; fix the labels or give num_classes')
  return k
