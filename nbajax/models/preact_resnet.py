"""Pre-activation ResNet-18 (He et al., 2016) as used by BackdoorBench.

BackdoorBench's variant: a 3x3 stem (no max-pool), four stages of two
pre-activation basic blocks, a 1x1 projection shortcut applied to the
BN-ReLU'd input whenever stride or width changes, and NO BN-ReLU after the
last stage: the sum leaving layer4 is average-pooled directly. Layers use
PyTorch's default initialization, as BackdoorBench trains from it.
"""

from typing import Any

import flax.linen as nn
import jax

from nbajax.models import common

_WIDTHS = (64, 128, 256, 512)
_STRIDES = (1, 2, 2, 2)


class PreActBlock(nn.Module):
  """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut.

  Attributes:
    features: output channels.
    stride: stride of the first conv (and of the shortcut).
    bn_axis_name: see `common.batch_norm`.
    dtype: compute dtype (`common.compute_dtype`); None for float32.
  """
  features: int
  stride: int = 1
  bn_axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Maps [B, H, W, C_in] to [B, ceil(H/stride), ceil(W/stride), features]."""
    act = nn.relu(common.batch_norm(
        train, axis_name=self.bn_axis_name, name='bn1', dtype=self.dtype)(x))
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = common.conv(self.features, 1, self.stride,
                             kernel_init=common.torch_default_kernel,
                             name='shortcut', dtype=self.dtype)(act)
    else:
      shortcut = x
    y = common.conv(self.features, 3, self.stride,
                    kernel_init=common.torch_default_kernel, name='conv1',
                    dtype=self.dtype)(act)
    y = nn.relu(common.batch_norm(
        train, axis_name=self.bn_axis_name, name='bn2', dtype=self.dtype)(y))
    y = common.conv(self.features, 3, 1,
                    kernel_init=common.torch_default_kernel, name='conv2',
                    dtype=self.dtype)(y)
    return shortcut + y


class PreActResNet18(nn.Module):
  """PreAct-ResNet18 for images of any size >= 1x1 (global average pooling).

  conv3x3(64) -> layer1 (64, stride 1) -> layer2 (128, /2) -> layer3 (256, /2)
  -> layer4 (512, /2) -> global average pool -> Dense 'head'; each layer is
  two `PreActBlock`s.

  Attributes:
    num_classes: number of output logits.
    mean: per-channel input mean in [0, 1] units (length C or 1), or None.
    std: per-channel input std in [0, 1] units (length C or 1), or None.
    bn_axis_name: see `common.batch_norm`.
    dtype: compute dtype (see `WideResNet`); None for float32.
  """
  num_classes: int
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
      logits [B, num_classes] and features, a dict of NHWC maps:
      'layer1' [B, H, W, 64], 'layer2' [B, H/2, W/2, 128],
      'layer3' [B, H/4, W/4, 256], 'layer4' [B, H/8, W/8, 512] (odd sizes
      round up) and 'final', the map that is average-pooled into the head:
      the same array as 'layer4', since this network has no final BN-ReLU.

    Raises:
      ValueError: bad input shape/dtype (see `common.check_input`).
    """
    x = common.normalize(common.check_input(x), self.mean, self.std)
    y = common.conv(64, 3, 1, kernel_init=common.torch_default_kernel,
                    name='conv1', dtype=self.dtype)(x)
    features = {}
    for i, (width, stride) in enumerate(zip(_WIDTHS, _STRIDES), start=1):
      for b in range(2):
        y = PreActBlock(width, stride if b == 0 else 1, self.bn_axis_name,
                        self.dtype, name=f'layer{i}_block{b}')(y, train)
      features[f'layer{i}'] = y
    features['final'] = y
    logits = nn.Dense(self.num_classes, kernel_init=common.torch_default_kernel,
                      bias_init=common.torch_default_bias(y.shape[-1]),
                      name='head', dtype=self.dtype)(
                          common.global_avg_pool(y))
    return common.float32_outputs(logits, features, self.dtype)
