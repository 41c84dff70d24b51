"""The validation split: held out of training before anything sees it, the
split a job evaluates on, and the split a report names."""

import numpy as np
import pytest

from experiments.configs import digits as digits_config
from nbajax import data as data_lib
from nbajax.pipeline import common
from nbajax.report import files
from tests.tiny import digits


def _dataset():
  x, y = digits(400)
  return data_lib.from_arrays('digits', x[:300], y[:300], x[300:], y[300:])


def _rows(x):
  """The images as a sorted list of bytes (a multiset)."""
  return sorted(row.tobytes() for row in x)


class TestHoldOut:

  def test_partitions_the_training_set_class_by_class(self):
    d = _dataset()
    kept = data_lib.hold_out(d, fraction=0.2, seed=0)
    val = data_lib.hold_out(d, fraction=0.2, seed=0, eval_split='val')
    # The same training images either way; val images are the rest.
    np.testing.assert_array_equal(kept.x_train, val.x_train)
    combined = np.concatenate([kept.x_train, val.x_test])
    assert _rows(combined) == _rows(d.x_train)
    # Class-stratified: about a fifth of every class.
    per_class = np.bincount(val.y_test, minlength=10)
    totals = np.bincount(d.y_train, minlength=10)
    assert np.all(np.abs(per_class - 0.2 * totals) <= 1)
    # The test split is untouched under 'test'.
    np.testing.assert_array_equal(kept.x_test, d.x_test)

  def test_statistics_are_those_of_the_remaining_training_images(self):
    kept = data_lib.hold_out(_dataset(), fraction=0.2, seed=0)
    mean, std = data_lib.channel_stats(kept.x_train)
    assert kept.mean == pytest.approx(mean) and kept.std == pytest.approx(std)

  def test_seeded_and_deterministic(self):
    d = _dataset()
    a = data_lib.hold_out(d, fraction=0.2, seed=3, eval_split='val')
    b = data_lib.hold_out(d, fraction=0.2, seed=3, eval_split='val')
    c = data_lib.hold_out(d, fraction=0.2, seed=4, eval_split='val')
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)

  def test_zero_fraction_is_the_data_set_itself(self):
    d = _dataset()
    assert data_lib.hold_out(d, fraction=0.0, seed=0) is d

  @pytest.mark.parametrize('kwargs, words', [
      ({'fraction': 1.0}, 'val_fraction'),
      ({'fraction': -0.1}, 'val_fraction'),
      ({'fraction': 0.1, 'eval_split': 'train'}, 'eval_split'),
      ({'fraction': 0.0, 'eval_split': 'val'}, 'val_fraction > 0')])
  def test_bad_arguments(self, kwargs, words):
    with pytest.raises(ValueError, match=words):
      data_lib.hold_out(_dataset(), seed=0, **kwargs)


def test_jobs_never_see_validation_images_in_training():
  cfg = digits_config.get_config()
  train_view = common.load_data(cfg.data)
  cfg.data.eval_split = 'val'
  val_view = common.load_data(cfg.data)
  np.testing.assert_array_equal(train_view.x_train, val_view.x_train)
  full = data_lib.load_digits(seed=int(cfg.data.split_seed))
  assert len(train_view.x_train) + len(val_view.x_test) == len(full.x_train)
  # The digits config's held-out tenth.
  assert len(val_view.x_test) == pytest.approx(0.1 * len(full.x_train), abs=5)


def test_report_names_the_split():
  cell = {'attack': 'badnets', 'defense': 'none', 'acc': 0.9,
          'acc_nontarget': 0.9, 'asr': 1.0, 'ra': 0.0, 'der': None}
  assert 'test set' in files.results_markdown([{**cell, 'split': 'test'}])
  text = files.results_markdown([{**cell, 'split': 'val'}])
  assert 'validation split' in text and 'not to report' in text
