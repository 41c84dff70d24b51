"""Wide residual networks (Zagoruyko & Komodakis, 2016) as in the NAD code.

Architecture and initialization follow the WRN used by the official NAD
implementation (itself the common PyTorch WRN): pre-activation basic blocks,
a 1x1 projection shortcut only where the channel count changes, and the
feature maps NAD distils taken at the output of each residual group, before
the network's final BN-ReLU.
"""

from typing import Any

import flax.linen as nn
import jax

from nbajax.models import common


class WideBasicBlock(nn.Module):
  """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut.

  When the channel count changes, the shortcut is a 1x1 (strided) conv applied
  to the BN-ReLU'd input, the same activation the residual branch sees; when
  it does not, the shortcut is the raw input (the WRN "equalInOut" detail,
  which changes the function, not just the parameter count).

  Attributes:
    features: output channels.
    stride: stride of the first conv (and of the shortcut).
    dropout_rate: dropout between the two convs when training.
    bn_axis_name: see `common.batch_norm`.
    dtype: compute dtype (`common.compute_dtype`); None for float32.
  """
  features: int
  stride: int = 1
  dropout_rate: float = 0.0
  bn_axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Maps [B, H, W, C_in] to [B, ceil(H/stride), ceil(W/stride), features]."""
    equal_in_out = x.shape[-1] == self.features
    act = nn.relu(common.batch_norm(
        train, axis_name=self.bn_axis_name, name='bn1', dtype=self.dtype)(x))
    y = common.conv(self.features, 3, self.stride,
                    kernel_init=common.he_normal_fan_out, name='conv1',
                    dtype=self.dtype)(act)
    y = nn.relu(common.batch_norm(
        train, axis_name=self.bn_axis_name, name='bn2', dtype=self.dtype)(y))
    if self.dropout_rate > 0:
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = common.conv(self.features, 3, 1,
                    kernel_init=common.he_normal_fan_out, name='conv2',
                    dtype=self.dtype)(y)
    if equal_in_out:
      shortcut = x
    else:
      shortcut = common.conv(self.features, 1, self.stride,
                             kernel_init=common.he_normal_fan_out,
                             name='shortcut', dtype=self.dtype)(act)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-depth-k for images of any size >= 1x1 (global average pooling).

  conv3x3(16) -> group1 (16k, stride 1) -> group2 (32k, stride 2)
  -> group3 (64k, stride 2) -> BN-ReLU -> global average pool -> Dense 'head',
  each group being n = (depth - 4) / 6 `WideBasicBlock`s.

  Attributes:
    num_classes: number of output logits.
    depth: total depth; (depth - 4) must be divisible by 6.
    widen_factor: width multiplier k.
    dropout_rate: dropout inside each block when training (needs a 'dropout'
      rng in `apply` when > 0).
    mean: per-channel input mean in [0, 1] units (length C or 1), or None.
    std: per-channel input std in [0, 1] units (length C or 1), or None.
    bn_axis_name: see `common.batch_norm`.
    dtype: compute dtype (`common.compute_dtype`: None for float32, or
      bfloat16); parameters and batch statistics stay float32, and the
      logits and features come back as float32.
  """
  num_classes: int
  depth: int = 16
  widen_factor: int = 1
  dropout_rate: float = 0.0
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
      train: batch statistics and dropout when True, running averages when
        False; with True, call `apply` with `mutable=['batch_stats']`.

    Returns:
      logits [B, num_classes] and features, a dict of NHWC maps:
      'group1' [B, H, W, 16k], 'group2' [B, H/2, W/2, 32k] and
      'group3' [B, H/4, W/4, 64k] (group outputs before the final BN-ReLU;
      odd sizes round up), and 'final', group3 after the final BN-ReLU (the
      map that is average-pooled into the head).

    Raises:
      ValueError: bad depth, or input shape/dtype (see `common.check_input`).
    """
    if (self.depth - 4) % 6 or self.depth < 10:
      raise ValueError(
          f'WRN depth must be 6n + 4 with n >= 1, got {self.depth}')
    blocks_per_group = (self.depth - 4) // 6
    x = common.normalize(common.check_input(x), self.mean, self.std)
    y = common.conv(16, 3, 1, kernel_init=common.he_normal_fan_out,
                    name='conv1', dtype=self.dtype)(x)
    features = {}
    widths = [16 * self.widen_factor, 32 * self.widen_factor,
              64 * self.widen_factor]
    for g, (width, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
      y = self._group(y, width, stride, blocks_per_group, train, f'group{g}')
      features[f'group{g}'] = y
    y = nn.relu(common.batch_norm(
        train, axis_name=self.bn_axis_name, name='bn_final',
        dtype=self.dtype)(y))
    features['final'] = y
    logits = nn.Dense(self.num_classes, kernel_init=common.torch_default_kernel,
                      bias_init=nn.initializers.zeros, name='head',
                      dtype=self.dtype)(common.global_avg_pool(y))
    return common.float32_outputs(logits, features, self.dtype)

  def _group(self, y: jax.Array, width: int, stride: int, blocks: int,
             train: bool, name: str) -> jax.Array:
    """Applies one residual group; blocks are named '{name}_block{i}'."""
    for i in range(blocks):
      y = WideBasicBlock(width, stride if i == 0 else 1, self.dropout_rate,
                         self.bn_axis_name, self.dtype,
                         name=f'{name}_block{i}')(y, train)
    return y


def wrn_config(name: str) -> tuple[int, int]:
  """Parses 'wrn-{depth}-{k}' into (depth, k).

  Args:
    name: e.g. 'wrn-16-1'.

  Returns:
    (depth, widen_factor).

  Raises:
    ValueError: name is not of that form.
  """
  parts = name.split('-')
  if len(parts) != 3 or parts[0] != 'wrn' or not all(
      p.isdigit() for p in parts[1:]):
    raise ValueError(f"expected 'wrn-<depth>-<k>', got {name!r}")
  return int(parts[1]), int(parts[2])

