"""A validation split held out of the training set (docs/design.md §5).

Defaults, schedules and attack strengths are chosen on validation ACC/ASR;
the test set only reports. The validation images are removed from the
training set before anything else sees it, so they are never poisoned,
trained on, or drawn into a defender's clean subset.
"""

import dataclasses

from nbajax.data.dataset import Dataset, channel_stats
from nbajax.data.subsets import stratified_split

# What the returned Dataset's test split holds.
EVAL_SPLITS = ('test', 'val')


def hold_out(dataset: Dataset, *, fraction: float, seed: int,
             eval_split: str = 'test') -> Dataset:
  """The data set without its validation images in the training split.

  Args:
    dataset: the loaded data set.
    fraction: share of each class's training images held out, in [0, 1)
      (0: no validation split; the data set is returned unchanged).
    seed: seed of the class-stratified draw.
    eval_split: 'test' (the test split stays the test set) or 'val' (the
      test split becomes the validation images: everything downstream
      evaluates on validation without knowing it).

  Returns:
    A Dataset whose x_train/y_train exclude the validation images and whose
    mean/std are those of the remaining training images.

  Raises:
    ValueError: a fraction outside [0, 1), an unknown split, or 'val'
      without a validation split.
  """
  if eval_split not in EVAL_SPLITS:
    raise ValueError(f'eval_split must be one of {EVAL_SPLITS}, got '
                     f'{eval_split!r}')
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'val_fraction must lie in [0, 1), got {fraction}')
  if fraction == 0.0:
    if eval_split == 'val':
      raise ValueError("eval_split='val' needs a validation split: set "
                       'val_fraction > 0')
    return dataset
  train, val = stratified_split(dataset.y_train, test_fraction=fraction,
                                seed=seed)
  x_train, y_train = dataset.x_train[train], dataset.y_train[train]
  mean, std = channel_stats(x_train)
  if eval_split == 'val':
    x_test, y_test = dataset.x_train[val], dataset.y_train[val]
  else:
    x_test, y_test = dataset.x_test, dataset.y_test
  return dataclasses.replace(dataset, x_train=x_train, y_train=y_train,
                             x_test=x_test, y_test=y_test, mean=mean,
                             std=std).validate()
