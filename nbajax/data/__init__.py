"""Data for nbajax: offline sources, clean subsets, on-device augmentation.

Sources return a `Dataset` of uint8 NHWC images and int32 labels. TFDS and
scikit-learn are imported only when their source is used, and JAX only by
`augment`.
"""

from nbajax.data.augment import augment
from nbajax.data.augment import random_crop
from nbajax.data.augment import random_cutout
from nbajax.data.augment import random_flip
from nbajax.data.dataset import channel_stats
from nbajax.data.dataset import Dataset
from nbajax.data.dataset import from_arrays
from nbajax.data.sources import load_dataset
from nbajax.data.sources import load_digits
from nbajax.data.sources import load_npz
from nbajax.data.subsets import clean_subset_indices
from nbajax.data.subsets import stratified_split
from nbajax.data.tfds_source import DatasetNotPreparedError
from nbajax.data.tfds_source import load_tfds
from nbajax.data.validation import EVAL_SPLITS
from nbajax.data.validation import hold_out

__all__ = [
    'Dataset',
    'EVAL_SPLITS',
    'DatasetNotPreparedError',
    'augment',
    'channel_stats',
    'clean_subset_indices',
    'from_arrays',
    'hold_out',
    'load_dataset',
    'load_digits',
    'load_npz',
    'load_tfds',
    'random_crop',
    'random_cutout',
    'random_flip',
    'stratified_split',
]
