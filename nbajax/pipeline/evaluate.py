"""ACC / ACC-non-target / ASR / RA of a model on a data set and an attack."""

import dataclasses
from typing import Any

import numpy as np

from nbajax import metrics, training
from nbajax.attacks import poison


@dataclasses.dataclass(frozen=True)
class EvalSets:
  """The clean test set and its triggered counterpart.

  Attributes:
    x_test: uint8 [N,H,W,C] clean test images.
    y_test: int32 [N].
    target: target class, or None (all-to-all: every image is non-target).
    x_trig: uint8 [M,H,W,C] triggered non-target test images (M may be 0
      when there is no attack).
    y_true: int32 [M] their true labels.
    y_attack: int32 [M] the labels the attack wants.
    trig_index: int [M] index in `x_test` of each triggered image's clean
      original.
  """

  x_test: np.ndarray
  y_test: np.ndarray
  target: int | None
  x_trig: np.ndarray
  y_true: np.ndarray
  y_attack: np.ndarray
  trig_index: np.ndarray


def make_eval_sets(dataset, attack=None, *, target: int = 0,
                   mode: str = 'all-to-one') -> EvalSets:
  """Builds the evaluation sets of `dataset` for a prepared `attack`."""
  if attack is None:
    empty = np.zeros((0,) + dataset.x_test.shape[1:], np.uint8)
    none = np.zeros(0, np.int32)
    return EvalSets(dataset.x_test, dataset.y_test, None, empty, none, none,
                    none)
  x_trig, y_true, y_attack = poison.triggered_test_set(
      dataset.x_test, dataset.y_test, attack, target=target, mode=mode,
      num_classes=dataset.num_classes)
  trig_index = poison.triggered_indices(dataset.y_test, target=target,
                                        mode=mode)
  return EvalSets(dataset.x_test, dataset.y_test,
                  None if mode == 'all-to-all' else target, x_trig, y_true,
                  y_attack, trig_index)


def evaluate(apply_fn, variables: Any, sets: EvalSets, *,
             batch_size: int = 512) -> dict[str, float]:
  """Eval-mode metrics as fractions: acc, acc_nontarget, asr, ra.

  ASR and RA are NaN when `sets` has no triggered images.
  """
  preds = training.predict(apply_fn, variables, sets.x_test,
                           batch_size=batch_size)
  counts = [metrics.clean_counts(preds, sets.y_test, target=sets.target)]
  if len(sets.x_trig):
    trig = training.predict(apply_fn, variables, sets.x_trig,
                            batch_size=batch_size)
    counts.append(metrics.triggered_counts(trig, sets.y_true, sets.y_attack))
  return metrics.finalize(metrics.merge_counts(*counts))


def eval_callback(sets: EvalSets, *, batch_size: int = 512):
  """`(apply_fn, variables) -> {'test_acc', 'asr', 'ra'}` for per-epoch logs."""

  def fn(apply_fn, variables):
    m = evaluate(apply_fn, variables, sets, batch_size=batch_size)
    out = {'test_acc': m['acc']}
    if len(sets.x_trig):
      out.update(asr=m['asr'], ra=m['ra'])
    return out

  return fn
