"""A small CNN for tiny images (8x8 digits, 28x28 MNIST) that trains on CPU.

Three conv3x3-BN-ReLU stages, the second and third with stride 2, then global
average pooling and a linear head. It exposes the same feature names as the
WRN ('group1'..'group3', 'final') so NAD/NBA configs carry over unchanged.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from nbajax.models import common

_STRIDES = (1, 2, 2)


class SmallCNN(nn.Module):
  """conv3x3-BN-ReLU x 3 (strides 1, 2, 2) -> global average pool -> 'head'.

  Attributes:
    num_classes: number of output logits.
    widths: channels of the three stages.
    mean: per-channel input mean in [0, 1] units (length C or 1), or None.
    std: per-channel input std in [0, 1] units (length C or 1), or None.
    bn_axis_name: see `common.batch_norm`.
    dtype: compute dtype (see `WideResNet`); None for float32.
  """
  num_classes: int
  widths: tuple[int, int, int] = (32, 64, 128)
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None
  bn_axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.typing.ArrayLike, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the network.

    Args:
      x: float images [B, H, W, C] in [0, 1] (any H, W; C = 1 or 3).
      train: batch statistics when True, running averages when False; with
        True, call `apply` with `mutable=['batch_stats']`.

    Returns:
      logits [B, num_classes] and features, a dict of NHWC maps (post-ReLU
      stage outputs): 'group1' [B, H, W, w1], 'group2' [B, H/2, W/2, w2],
      'group3' [B, H/4, W/4, w3] (odd sizes round up) and 'final', the same
      array as 'group3' (the map that is average-pooled into the head).

    Raises:
      ValueError: widths is not three ints, or bad input (see
        `common.check_input`).
    """
    _check_widths(self.widths)
    y = common.normalize(common.check_input(x), self.mean, self.std)
    features = {}
    for i, (width, stride) in enumerate(zip(self.widths, _STRIDES), start=1):
      y = common.conv(width, 3, stride, kernel_init=common.he_normal_fan_out,
                      name=f'conv{i}', dtype=self.dtype)(y)
      y = nn.relu(common.batch_norm(
          train, axis_name=self.bn_axis_name, name=f'bn{i}',
          dtype=self.dtype)(y))
      features[f'group{i}'] = y
    features['final'] = y
    logits = nn.Dense(self.num_classes, kernel_init=common.torch_default_kernel,
                      bias_init=nn.initializers.zeros, name='head',
                      dtype=self.dtype)(common.global_avg_pool(y))
    return common.float32_outputs(logits, features, self.dtype)


def _check_widths(widths: Sequence[int]) -> None:
  """Raises ValueError unless widths is three positive ints."""
  if len(widths) != 3 or any(int(w) != w or w < 1 for w in widths):
    raise ValueError(f'widths must be three positive ints, got {widths}')
