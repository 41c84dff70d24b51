"""Tests for nbajax.metrics on hand-made predictions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import metrics


def _counts(d):
  return {k: int(v) for k, v in d.items()}


class TestCleanCounts:

  def test_hand_example(self):
    labels = np.array([0, 1, 2, 1, 0])
    preds = np.array([0, 1, 1, 0, 0])      # 3 correct; 2 of 3 non-target 1
    got = _counts(metrics.clean_counts(preds, labels, target=1))
    assert got == {'correct': 3, 'seen': 5, 'correct_nontarget': 2,
                   'seen_nontarget': 3}

  def test_logits_equal_preds_and_jit(self):
    labels = jnp.array([2, 0, 1])
    logits = jnp.array([[0., 1., 3.], [2., 1., 0.], [5., 1., 0.]])
    fn = jax.jit(lambda lg, lb: metrics.clean_counts(lg, lb, target=0))
    assert _counts(fn(logits, labels)) == _counts(
        metrics.clean_counts(jnp.array([2, 0, 0]), labels, target=0))
    assert _counts(fn(logits, labels)) == {
        'correct': 2, 'seen': 3, 'correct_nontarget': 1, 'seen_nontarget': 2}

  def test_no_target_and_valid_mask(self):
    got = _counts(metrics.clean_counts(np.array([1, 1, 0]), np.array([1, 0, 0]),
                                       valid=np.array([True, True, False])))
    assert got == {'correct': 1, 'seen': 2, 'correct_nontarget': 1,
                   'seen_nontarget': 2}

  def test_bad_shape(self):
    with pytest.raises(ValueError, match='logits'):
      metrics.clean_counts(np.zeros((2, 2, 2)), np.zeros(2, int))


class TestTriggeredCounts:

  def test_all_to_one(self):
    y_true = np.array([0, 2, 3, 0])
    y_attack = np.full(4, 1)
    preds = np.array([1, 1, 3, 2])          # 2 to target, 1 still right
    got = _counts(metrics.triggered_counts(preds, y_true, y_attack))
    assert got == {'asr_hits': 2, 'ra_hits': 1, 'triggered': 4}

  def test_all_to_all(self):
    y_true = np.array([0, 1, 2, 3])
    y_attack = (y_true + 1) % 4
    preds = np.array([1, 2, 2, 1])          # hits: 0->1, 1->2; RA: 2
    got = _counts(metrics.triggered_counts(preds, y_true, y_attack))
    assert got == {'asr_hits': 2, 'ra_hits': 1, 'triggered': 4}

  def test_jit_with_padding(self):
    fn = jax.jit(metrics.triggered_counts)
    got = _counts(fn(jnp.array([1, 1, 1]), jnp.array([0, 1, 2]),
                     jnp.array([1, 1, 1]), valid=jnp.array([True, True,
                                                            False])))
    assert got == {'asr_hits': 2, 'ra_hits': 1, 'triggered': 2}


class TestFinalize:

  def test_sums_not_mean_of_batch_means(self):
    # Batch 1: 1/1 right; batch 2: 1/3 right. Mean of means = 2/3; truth 2/4.
    b1 = metrics.clean_counts(np.array([0]), np.array([0]), target=1)
    b2 = metrics.clean_counts(np.array([0, 0, 1]), np.array([0, 1, 0]),
                              target=1)
    t1 = metrics.triggered_counts(np.array([1, 1]), np.array([0, 2]),
                                  np.array([1, 1]))
    t2 = metrics.triggered_counts(np.array([0]), np.array([0]), np.array([1]))
    total = metrics.merge_counts(b1, b2, t1, t2)
    assert total == {'correct': 2, 'seen': 4, 'correct_nontarget': 2,
                     'seen_nontarget': 3, 'asr_hits': 2, 'ra_hits': 1,
                     'triggered': 3}
    res = metrics.finalize(total)
    assert res == {'acc': 0.5, 'acc_nontarget': 2 / 3, 'asr': 2 / 3,
                   'ra': 1 / 3}

  def test_missing_counts_give_nan(self):
    res = metrics.finalize({'correct': 1, 'seen': 2})
    assert res['acc'] == 0.5 and math.isnan(res['asr'])
    assert math.isnan(res['ra']) and math.isnan(res['acc_nontarget'])


class TestDer:

  def test_examples(self):
    before = {'acc': 0.90, 'asr': 1.00}
    assert metrics.der(before, {'acc': 0.85, 'asr': 0.05}) == pytest.approx(
        (0.95 - 0.05 + 1) / 2)
    # ASR went up and ACC went up: neither clipped term counts.
    assert metrics.der(before, {'acc': 0.95, 'asr': 1.0}) == 0.5
    # Perfect: all ASR removed, no ACC lost.
    assert metrics.der({'acc': 0.9, 'asr': 1.0},
                       {'acc': 0.9, 'asr': 0.0}) == 1.0
    # Worst: nothing removed, all accuracy lost.
    assert metrics.der({'acc': 1.0, 'asr': 0.5},
                       {'acc': 0.0, 'asr': 0.9}) == 0.0

  def test_rejects_percentages(self):
    with pytest.raises(ValueError, match='fraction'):
      metrics.der({'acc': 85.6, 'asr': 100.0}, {'acc': 82.1, 'asr': 3.6})

  def test_nad_table_numbers(self):
    # NAD, CIFAR-10 BadNets (docs/design.md §6): 85.65/100 -> 82.12/3.57.
    got = metrics.der({'acc': 0.8565, 'asr': 1.0},
                      {'acc': 0.8212, 'asr': 0.0357})
    assert got == pytest.approx((0.9643 - 0.0353 + 1) / 2)
    assert np.isclose(got, 0.9645)
