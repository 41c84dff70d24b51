"""Image classifiers (flax.linen) that return logits and named feature maps.

Every model maps float32 NHWC images in [0, 1] to `(logits, features)`:

  model = get_model('wrn-16-1', 10, mean=ds.mean, std=ds.std)
  variables = model.init(rng, x, train=False)  # {'params', 'batch_stats'}
  logits, features = model.apply(variables, x, train=False)
  (logits, features), updates = model.apply(
      variables, x, train=True, mutable=['batch_stats'])

`features` maps layer names to NHWC arrays: 'group1'..'group3' for WRN and
'cnn', 'layer1'..'layer4' for 'preact-resnet18', and 'final' for all (the map
global average pooling turns into the input of the Dense layer 'head').
"""

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn

from nbajax.models.cnn import SmallCNN
from nbajax.models.common import COMPUTE_DTYPES, compute_dtype
from nbajax.models.preact_resnet import PreActResNet18
from nbajax.models.wrn import WideResNet
from nbajax.models.wrn import wrn_config

MODEL_NAMES: tuple[str, ...] = (
    'cnn', 'wrn-16-1', 'wrn-16-2', 'wrn-40-2', 'preact-resnet18')

# Keyword options get_model accepts per family, besides mean and std.
_OPTIONS = {
    'cnn': ('widths', 'bn_axis_name', 'dtype'),
    'wrn': ('dropout_rate', 'bn_axis_name', 'dtype'),
    'preact-resnet18': ('bn_axis_name', 'dtype'),
}

# Layers NAD/NBA align by default: the three WRN groups as in the NAD paper;
# for PreAct-ResNet18 the last three stages, as BackdoorBench's NAD does.
_DISTILL_LAYERS = {
    'cnn': ('group1', 'group2', 'group3'),
    'wrn': ('group1', 'group2', 'group3'),
    'preact-resnet18': ('layer2', 'layer3', 'layer4'),
}


def _family(name: str) -> str:
  """Returns 'cnn', 'wrn' or 'preact-resnet18'; ValueError if unknown."""
  if name not in MODEL_NAMES:
    raise ValueError(
        f'unknown model {name!r}; allowed: {", ".join(MODEL_NAMES)}')
  return 'wrn' if name.startswith('wrn-') else name


def distill_layers(name: str) -> tuple[str, ...]:
  """Default feature names that NAD/NBA distil for a model.

  Args:
    name: one of MODEL_NAMES.

  Returns:
    ('group1', 'group2', 'group3') for WRN and cnn,
    ('layer2', 'layer3', 'layer4') for preact-resnet18.

  Raises:
    ValueError: unknown name.
  """
  return _DISTILL_LAYERS[_family(name)]


def _channel_stats(values: Sequence[float] | None, label: str,
                   positive: bool) -> tuple[float, ...] | None:
  """Validates mean or std and returns it as a hashable tuple (or None)."""
  if values is None:
    return None
  values = tuple(float(v) for v in values)
  if not values or not all(math.isfinite(v) for v in values):
    raise ValueError(f'{label} must be non-empty and finite, got {values}')
  if positive and min(values) <= 0:
    raise ValueError(f'{label} must be positive, got {values}')
  return values


def get_model(name: str, num_classes: int, *,
              mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None,
              **options: Any) -> nn.Module:
  """Builds a classifier by name.

  Args:
    name: one of MODEL_NAMES.
    num_classes: number of logits, at least 2.
    mean: per-channel input mean in [0, 1] units (length C, or 1 to share it
      over channels); None (default) subtracts nothing.
    std: per-channel input std in [0, 1] units; None (default) divides by
      nothing. The model computes (x - mean) / std on its [0, 1] input.
    **options: family-specific: 'cnn' takes widths (three ints, default
      (32, 64, 128)); WRNs take dropout_rate (default 0.0); every model takes
      bn_axis_name (mapped axis for batch-norm statistics under shard_map;
      default None, right for jit with sharded arrays) and dtype (compute
      dtype: None or 'float32', the default, or 'bfloat16' with float32
      parameters, batch statistics, logits and features).

  Returns:
    An unbound flax.linen Module; `apply(variables, x, train=...)` returns
    (logits [B, num_classes], features dict of NHWC arrays).

  Raises:
    ValueError: unknown name, num_classes < 2, bad mean/std or dtype.
    TypeError: an option the family does not take.
  """
  family = _family(name)
  if isinstance(num_classes, bool) or int(num_classes) != num_classes or (
      num_classes < 2):
    raise ValueError(f'num_classes must be an int >= 2, got {num_classes!r}')
  mean = _channel_stats(mean, 'mean', positive=False)
  std = _channel_stats(std, 'std', positive=True)
  if mean is not None and std is not None and len(mean) != len(std):
    raise ValueError(f'mean {mean} and std {std} differ in length')
  unknown = sorted(set(options) - set(_OPTIONS[family]))
  if unknown:
    raise TypeError(f'{name} does not take option(s) {unknown}; '
                    f'allowed: {list(_OPTIONS[family])}')
  if 'dtype' in options:
    options['dtype'] = compute_dtype(options['dtype'])
  common = dict(num_classes=int(num_classes), mean=mean, std=std)
  if family == 'cnn':
    if 'widths' in options:
      options['widths'] = tuple(int(w) for w in options['widths'])
    return SmallCNN(**common, **options)
  if family == 'wrn':
    depth, widen = wrn_config(name)
    return WideResNet(depth=depth, widen_factor=widen, **common, **options)
  return PreActResNet18(**common, **options)


__all__ = ['COMPUTE_DTYPES', 'MODEL_NAMES', 'PreActResNet18', 'SmallCNN',
           'WideResNet', 'compute_dtype', 'distill_layers', 'get_model']
