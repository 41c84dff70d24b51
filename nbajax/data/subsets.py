"""Seeded, class-stratified index selection: clean subsets and splits.

Every defense of one experiment grid must see the same clean images, so the
subset is a pure function of (labels, size, seed). Each class is drawn
separately so that small classes (GTSRB has classes of ~100 images) are never
left out of the defender's data.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def _round_half_up(x: np.ndarray) -> np.ndarray:
  # np.round rounds half to even; half-up is what a reader expects of
  # "round(fraction * n_c)" and is platform independent.
  return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _class_members(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
  """Returns the sorted classes present and the indices of each."""
  classes = np.unique(labels)
  return classes, [np.flatnonzero(labels == c) for c in classes]


def _check_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f'labels must be a non-empty 1-D array, got shape '
                     f'{labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}')
  return labels


def _quotas_for_count(sizes: np.ndarray, count: int) -> np.ndarray:
  """Splits `count` over classes proportionally, at least 1 each, summing to
  `count` exactly (largest-remainder method)."""
  exact = count * sizes / sizes.sum()
  quota = np.minimum(np.maximum(1, np.floor(exact)), sizes).astype(np.int64)
  # Hand out what is left by largest remainder, then take back what the
  # "at least one" floor over-spent from the most over-served classes.
  while quota.sum() < count:
    gap = np.where(quota < sizes, exact - quota, -np.inf)
    quota[int(np.argmax(gap))] += 1
  while quota.sum() > count:
    excess = np.where(quota > 1, quota - exact, -np.inf)
    quota[int(np.argmax(excess))] -= 1
  return quota


def clean_subset_indices(labels, *, fraction: Optional[float] = None,
                         count: Optional[int] = None,
                         seed: int) -> np.ndarray:
  """Picks a class-stratified random subset of a training set.

  With `fraction`, class c (n_c images) gets round(fraction * n_c) images,
  rounded half up, at least 1. With `count`, `count` images are shared over
  the classes in proportion to n_c (largest remainder), at least 1 each, and
  the total is exactly `count`.

  Args:
    labels: int[N] labels of the set to draw from.
    fraction: share of each class to keep, in (0, 1].
    count: total number of images to keep, in [number of classes present, N].
    seed: integer seed; the result is a pure function of (labels, size, seed).

  Returns:
    int32[n] sorted, distinct indices into `labels`.

  Raises:
    ValueError: unless exactly one of fraction/count is given and in range.
  """
  labels = _check_labels(labels)
  if (fraction is None) == (count is None):
    raise ValueError('give exactly one of fraction= or count=')
  _, members = _class_members(labels)
  sizes = np.array([len(m) for m in members], dtype=np.int64)
  if fraction is not None:
    if not 0.0 < fraction <= 1.0:
      raise ValueError(f'fraction must lie in (0, 1], got {fraction}')
    quota = np.clip(_round_half_up(fraction * sizes), 1, sizes)
  else:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
      raise ValueError(f'count must be an int, got {count!r}')
    if not len(sizes) <= count <= len(labels):
      raise ValueError(
          f'count must lie in [{len(sizes)}, {len(labels)}] (at least one '
          f'image per class present, at most all), got {count}')
    quota = _quotas_for_count(sizes, int(count))
  rng = np.random.default_rng(seed)
  picked = [rng.permutation(m)[:q] for m, q in zip(members, quota)]
  return np.sort(np.concatenate(picked)).astype(np.int32)


def stratified_split(labels, *, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into train and test, class by class.

  Class c gets round(test_fraction * n_c) test images (rounded half up), but
  every class with at least two images keeps one on each side.

  Args:
    labels: int[N] labels.
    test_fraction: share of each class that goes to test, in (0, 1).
    seed: integer seed.

  Returns:
    (train_idx, test_idx): sorted int32 index arrays that partition [0, N).

  Raises:
    ValueError: if test_fraction is outside (0, 1) or labels are malformed.
  """
  labels = _check_labels(labels)
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f'test_fraction must lie in (0, 1), got {test_fraction}')
  _, members = _class_members(labels)
  rng = np.random.default_rng(seed)
  train, test = [], []
  for m in members:
    n_test = int(_round_half_up(test_fraction * len(m)))
    if len(m) >= 2:
      n_test = min(max(n_test, 1), len(m) - 1)
    perm = rng.permutation(m)
    test.append(perm[:n_test])
    train.append(perm[n_test:])
  return (np.sort(np.concatenate(train)).astype(np.int32),
          np.sort(np.concatenate(test)).astype(np.int32))
