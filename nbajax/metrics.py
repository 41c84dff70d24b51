"""ACC, ASR, RA and DER, accumulated as sums and counts.

Protocol (docs/design.md §5):

* ACC: accuracy on the whole clean test set; `acc_nontarget`: on the clean
  images whose label != target (the number the NAD code prints);
* ASR: fraction of triggered test images (label != target for all-to-one;
  all images for all-to-all) classified as their attack label (the target,
  or (y + 1) % K);
* RA: fraction of the same triggered images classified as their true label;
* DER = (max(0, ASR_before - ASR_after) - max(0, ACC_before - ACC_after)
  + 1) / 2.

Every rate is a FRACTION in [0, 1] (multiply by 100 for tables). Batches
give integer counts (`clean_counts`, `triggered_counts`, jit-able, inputs
logits [B, K] or predictions [B], optional `valid` mask for padded
batches); `merge_counts` adds them and `finalize` divides once, so the
result never depends on batch sizes. Imports jax and numpy only.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Counts = dict[str, jax.Array]

CLEAN_KEYS = ('correct', 'seen', 'correct_nontarget', 'seen_nontarget')
TRIGGERED_KEYS = ('asr_hits', 'ra_hits', 'triggered')


def _predictions(logits_or_preds: jax.Array) -> jax.Array:
  """argmax of logits [B, K], or int predictions [B] as they are."""
  x = jnp.asarray(logits_or_preds)
  if x.ndim == 2:
    return jnp.argmax(x, axis=-1)
  if x.ndim == 1:
    return x
  raise ValueError(f'expected logits [B, K] or predictions [B], got shape '
                   f'{x.shape}')


def _valid(valid: jax.Array | None, batch: int) -> jax.Array:
  if valid is None:
    return jnp.ones((batch,), bool)
  return jnp.asarray(valid, bool)


def clean_counts(logits_or_preds: jax.Array, labels: jax.Array, *,
                 target: int | None = None,
                 valid: jax.Array | None = None) -> Counts:
  """Counts on clean images.

  Args:
    logits_or_preds: logits [B, K] or predicted classes [B].
    labels: true labels int [B].
    target: target class; None counts every image as non-target
      (all-to-all attacks).
    valid: optional bool [B]; False rows (batch padding) are not counted.

  Returns:
    int32 scalars 'correct', 'seen', 'correct_nontarget', 'seen_nontarget'.
  """
  labels = jnp.asarray(labels)
  valid = _valid(valid, labels.shape[0])
  hit = (_predictions(logits_or_preds) == labels) & valid
  nontarget = valid if target is None else valid & (labels != target)
  return {
      'correct': jnp.sum(hit, dtype=jnp.int32),
      'seen': jnp.sum(valid, dtype=jnp.int32),
      'correct_nontarget': jnp.sum(hit & nontarget, dtype=jnp.int32),
      'seen_nontarget': jnp.sum(nontarget, dtype=jnp.int32),
  }


def triggered_counts(logits_or_preds: jax.Array, y_true: jax.Array,
                     y_attack: jax.Array, *,
                     valid: jax.Array | None = None) -> Counts:
  """Counts on triggered images (from `triggered_test_set`).

  Args:
    logits_or_preds: logits [B, K] or predicted classes [B].
    y_true: true labels int [B].
    y_attack: attack labels int [B] (target, or (y + 1) % K).
    valid: optional bool [B] mask of real (non-padding) rows.

  Returns:
    int32 scalars 'asr_hits' (pred == y_attack), 'ra_hits' (pred == y_true)
    and 'triggered' (rows counted).
  """
  y_true = jnp.asarray(y_true)
  valid = _valid(valid, y_true.shape[0])
  pred = _predictions(logits_or_preds)
  return {
      'asr_hits': jnp.sum((pred == jnp.asarray(y_attack)) & valid,
                          dtype=jnp.int32),
      'ra_hits': jnp.sum((pred == y_true) & valid, dtype=jnp.int32),
      'triggered': jnp.sum(valid, dtype=jnp.int32),
  }


def merge_counts(*counts: Mapping[str, jax.Array]) -> dict[str, int]:
  """Adds count dicts key by key (keys may differ); returns Python ints."""
  total: dict[str, int] = {}
  for c in counts:
    for key, value in c.items():
      total[key] = total.get(key, 0) + int(np.asarray(value))
  return total


def _ratio(counts: Mapping[str, int], num: str, den: str) -> float:
  """num / den as a float, NaN when den is missing or zero."""
  d = int(np.asarray(counts.get(den, 0)))
  return float(np.asarray(counts[num])) / d if d else float('nan')


def finalize(counts: Mapping[str, jax.Array | int]) -> dict[str, float]:
  """Divides once.

  Args:
    counts: merged counts (any subset of the clean and triggered keys).

  Returns:
    Fractions in [0, 1]: 'acc', 'acc_nontarget', 'asr', 'ra' (NaN for a
    quantity whose counts are missing or zero).
  """
  return {
      'acc': _ratio(counts, 'correct', 'seen'),
      'acc_nontarget': _ratio(counts, 'correct_nontarget', 'seen_nontarget'),
      'asr': _ratio(counts, 'asr_hits', 'triggered'),
      'ra': _ratio(counts, 'ra_hits', 'triggered'),
  }


def der(before: Mapping[str, float], after: Mapping[str, float]) -> float:
  """Defense effectiveness rating, DER (formula of docs/design.md §5).

  Args:
    before: {'acc', 'asr'} of the backdoored model, fractions in [0, 1].
    after: the same for the defended model.

  Returns:
    (max(0, ASR_b - ASR_a) - max(0, ACC_b - ACC_a) + 1) / 2, in [0, 1].

  Raises:
    ValueError: a rate outside [0, 1] (e.g. percentages were passed).
  """
  for name, rates in (('before', before), ('after', after)):
    for key in ('acc', 'asr'):
      if not 0.0 <= float(rates[key]) <= 1.0:
        raise ValueError(f'der: {name}[{key!r}] = {rates[key]} is not a '
                         'fraction in [0, 1] (divide percentages by 100)')
  asr_drop = max(0.0, float(before['asr']) - float(after['asr']))
  acc_drop = max(0.0, float(before['acc']) - float(after['acc']))
  return (asr_drop - acc_drop + 1.0) / 2.0
