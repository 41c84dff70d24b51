"""Poisoning a data set and building the triggered test set.

Which training samples are poisoned (all draws use NumPy's frozen
`RandomState` streams, so a seed gives the same indices everywhere):

* dirty-label attacks (badnets, trojan, blend, wanet), all-to-one:
  round(rate * N) samples drawn among those whose label != target
  (N = the whole training set, as in the NAD code), relabelled `target`;
* dirty-label, all-to-all: round(rate * N) drawn among all samples,
  relabelled (y + 1) % K;
* clean-label attacks (sig, cl, refool): `rate` is the fraction of the
  TARGET CLASS: round(rate * n_target) target-class samples, labels
  unchanged (all-to-all is refused);
* wanet also transforms `attack.num_cross(n)` other samples ("cross", noise
  mode) and keeps their labels.

Triggered images are rounded back to uint8.
"""

import hashlib
from typing import NamedTuple

import numpy as np

from nbajax.attacks import base

MODES = ('all-to-one', 'all-to-all')


class PoisonResult(NamedTuple):
  """A poisoned training set.

  Attributes:
    x: uint8 images [N, H, W, C] (poisoned and cross samples transformed).
    y: int32 labels [N] (poisoned dirty-label samples relabelled).
    indices: sorted int32 indices of the poisoned samples.
    cross_indices: sorted int32 indices of WaNet's cross samples (empty for
      other attacks).
    attack: the prepared attack (generated arrays filled in); save its
      `to_config()` and use it for the triggered test set.
  """

  x: np.ndarray
  y: np.ndarray
  indices: np.ndarray
  cross_indices: np.ndarray
  attack: base.Attack


def _check_dataset(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray,
                                                          np.ndarray]:
  x, y = np.asarray(x), np.asarray(y)
  if x.dtype != np.uint8 or x.ndim != 4:
    raise ValueError(f'expected uint8 images [N, H, W, C], got {x.dtype} '
                     f'{x.shape}')
  if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'expected int labels [{len(x)}], got {y.dtype} '
                     f'{y.shape}')
  return x, y.astype(np.int32)


def _check_setup(y: np.ndarray, *, target: int, mode: str,
                 num_classes: int | None) -> int:
  """Validates target, mode and labels; returns the number of classes K."""
  base.check_choice(mode, 'mode', MODES)
  k = int(y.max()) + 1 if num_classes is None else int(num_classes)
  if int(target) != target or not 0 <= target < k:
    raise ValueError(f'target must be an int in [0, {k}), got {target!r}')
  if len(y) and (y.min() < 0 or y.max() >= k):
    raise ValueError(f'labels must lie in [0, {k})')
  return k


def select_poison_indices(y: np.ndarray, *, clean_label: bool, rate: float,
                          target: int, mode: str, seed: int) -> np.ndarray:
  """The sorted int32 indices to poison (rules in the module docstring).

  Raises:
    ValueError: rate outside (0, 1], zero samples, or too few candidates.
  """
  if not 0.0 < rate <= 1.0:
    raise ValueError(f'rate must be in (0, 1], got {rate}')
  y = np.asarray(y)
  if clean_label:
    candidates = np.flatnonzero(y == target)
    count = int(round(rate * len(candidates)))
  else:
    candidates = (np.flatnonzero(y != target) if mode == 'all-to-one'
                  else np.arange(len(y)))
    count = int(round(rate * len(y)))
  if count == 0:
    raise ValueError(f'rate {rate} poisons no sample (of {len(candidates)} '
                     'candidates)')
  if count > len(candidates):
    raise ValueError(f'rate {rate} asks for {count} samples but only '
                     f'{len(candidates)} are eligible')
  pick = base.seeded_rng(seed, 1).choice(len(candidates), size=count,
                                         replace=False)
  return np.sort(candidates[pick]).astype(np.int32)


def attack_labels(y: np.ndarray, *, target: int, mode: str,
                  num_classes: int) -> np.ndarray:
  """Labels the backdoor should produce for true labels `y` [N]: `target`
  (all-to-one) or (y + 1) % K (all-to-all); int32 [N]."""
  if mode == 'all-to-all':
    return ((y + 1) % num_classes).astype(np.int32)
  return np.full(y.shape, target, np.int32)


def poison_dataset(x: np.ndarray, y: np.ndarray, attack: base.Attack, *,
                   rate: float, target: int, mode: str = 'all-to-one',
                   seed: int, clean_fn: base.CleanFn | None = None,
                   num_classes: int | None = None) -> PoisonResult:
  """Poisons a training set.

  Args:
    x: uint8 images [N, H, W, C].
    y: int labels [N].
    attack: the attack (prepared here with `attack.prepare`).
    rate: fraction in (0, 1]: of the whole set for dirty-label attacks, of
      the target class for clean-label ones.
    target: target class (validated; all-to-all relabels to (y + 1) % K
      instead).
    mode: 'all-to-one' or 'all-to-all'.
    seed: non-negative int; fixes indices and any per-image randomness.
    clean_fn: clean model closure, needed by 'cl' (PGD) and an unprepared
      'trojan'.
    num_classes: K (default max(y) + 1).

  Returns:
    A `PoisonResult`.

  Raises:
    ValueError: bad target, rate, mode, shapes, or missing clean_fn.
  """
  x, y = _check_dataset(x, y)
  k = _check_setup(y, target=target, mode=mode, num_classes=num_classes)
  if attack.clean_label and mode != 'all-to-one':
    raise ValueError(f'clean-label attack {attack.name!r} supports only '
                     "mode='all-to-one'")
  idx = select_poison_indices(y, clean_label=attack.clean_label, rate=rate,
                              target=target, mode=mode, seed=seed)
  attack = attack.prepare(x, y, target=target, seed=seed, clean_fn=clean_fn)
  x_out, y_out = x.copy(), y.copy()
  x_out[idx] = base.to_uint8(attack.poison(base.to_float(x[idx]), y[idx],
                                           seed=seed, clean_fn=clean_fn))
  if not attack.clean_label:
    y_out[idx] = attack_labels(y[idx], target=target, mode=mode,
                               num_classes=k)
  cross = _select_cross(len(y), idx, attack.num_cross(len(idx)), seed)
  if len(cross):
    x_out[cross] = base.to_uint8(attack.cross(base.to_float(x[cross]),
                                              seed=seed))
  return PoisonResult(x_out, y_out, idx, cross, attack)


def _select_cross(n: int, poisoned: np.ndarray, count: int,
                  seed: int) -> np.ndarray:
  """Seeded sorted choice of `count` samples outside `poisoned`."""
  rest = np.setdiff1d(np.arange(n), poisoned)
  count = min(count, len(rest))
  if count == 0:
    return np.zeros((0,), np.int32)
  pick = base.seeded_rng(seed, 2).choice(len(rest), size=count, replace=False)
  return np.sort(rest[pick]).astype(np.int32)


def triggered_test_set(x: np.ndarray, y: np.ndarray, attack: base.Attack, *,
                       target: int, mode: str = 'all-to-one',
                       num_classes: int | None = None,
                       batch_size: int = 1024
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Applies the test-time trigger to the images that count for ASR and RA.

  Args:
    x: uint8 test images [N, H, W, C].
    y: int test labels [N].
    attack: a ready attack (e.g. `PoisonResult.attack`).
    target: target class.
    mode: 'all-to-one' (keeps images with label != target) or 'all-to-all'
      (keeps all images).
    num_classes: K; required for 'all-to-all'.
    batch_size: images triggered per call (bounds memory).

  Returns:
    (x_trig uint8 [M, H, W, C], y_true int32 [M], y_attack int32 [M]).

  Raises:
    ValueError: bad mode or target, or all-to-all without num_classes.
  """
  x, y = _check_dataset(x, y)
  if mode == 'all-to-all' and num_classes is None:
    raise ValueError("mode='all-to-all' needs num_classes")
  k = _check_setup(y, target=target, mode=mode, num_classes=num_classes)
  keep = triggered_indices(y, target=target, mode=mode)
  parts = [base.to_uint8(attack.apply(base.to_float(x[keep[i:i + batch_size]])))
           for i in range(0, len(keep), batch_size)]
  x_trig = (np.concatenate(parts) if parts else
            np.zeros((0,) + x.shape[1:], np.uint8))
  y_true = y[keep]
  return x_trig, y_true, attack_labels(y_true, target=target, mode=mode,
                                       num_classes=k)


def triggered_indices(y: np.ndarray, *, target: int,
                      mode: str) -> np.ndarray:
  """Indices of the images that count for ASR: all (all-to-all) or those
  whose label is not `target`, in order; the order of `triggered_test_set`.
  """
  return (np.arange(len(y)) if mode == 'all-to-all' else
          np.flatnonzero(np.asarray(y) != target))


def indices_hash(indices: np.ndarray) -> str:
  """sha256 hex digest of the sorted indices as little-endian int64.

  For checkpoint metadata: equal poisoned sets give equal hashes.
  """
  arr = np.sort(np.asarray(indices, np.int64)).astype('<i8')
  return hashlib.sha256(arr.tobytes()).hexdigest()
