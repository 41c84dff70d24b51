"""Building blocks shared by the nbajax model families.

Conventions every model follows: inputs are float32 NHWC images in [0, 1];
per-channel normalization happens inside the model; convolutions pad like
PyTorch (explicit symmetric padding, so stride-2 outputs line up with the
reference PyTorch networks); batch norm uses PyTorch's defaults.
"""

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm2d(momentum=0.1) keeps 0.9 of the old running average.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# He normal with fan_out = k*k*out_channels, the WRN initialization.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

# PyTorch's default for Conv2d/Linear weights (kaiming_uniform with a=sqrt(5))
# is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. variance 1/(3*fan_in).
torch_default_kernel = nn.initializers.variance_scaling(
    1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default bias initializer, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  Args:
    fan_in: number of inputs of the layer the bias belongs to.

  Returns:
    An initializer `(key, shape, dtype) -> Array`.
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int],
           dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def check_input(x: jax.typing.ArrayLike) -> jax.Array:
  """Validates a model input and returns it as float32.

  Args:
    x: images [B, H, W, C], floating point in [0, 1].

  Returns:
    x as a float32 jax.Array [B, H, W, C].

  Raises:
    ValueError: x is not rank 4, or has an integer dtype (uint8 data must be
      divided by 255 first; silently casting would change the units).
  """
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f'expected NHWC images [B, H, W, C], got shape {x.shape}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f'expected float images in [0, 1], got dtype {x.dtype}; use x / 255.')
  return x.astype(jnp.float32)


def normalize(x: jax.Array, mean: Sequence[float] | None,
              std: Sequence[float] | None) -> jax.Array:
  """Applies (x - mean) / std per channel; None means no-op for that part.

  Args:
    x: images [B, H, W, C].
    mean: per-channel means, length C or 1, or None.
    std: per-channel standard deviations, length C or 1, or None.

  Returns:
    Normalized images [B, H, W, C].

  Raises:
    ValueError: mean or std has a length other than 1 or C (broadcasting a
      3-vector over a 1-channel image would silently make it RGB).
  """
  channels = x.shape[-1]
  for label, values in (('mean', mean), ('std', std)):
    if values is not None and len(values) not in (1, channels):
      raise ValueError(
          f'{label} has {len(values)} entries, input has {channels} channels')
  if mean is not None:
    x = x - jnp.asarray(mean, jnp.float32)
  if std is not None:
    x = x / jnp.asarray(std, jnp.float32)
  return x


def batch_norm(train: bool, *, axis_name: str | None = None,
               name: str | None = None, dtype: Any = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's momentum and epsilon.

  Args:
    train: use batch statistics (and update running ones) when True.
    axis_name: mapped axis to average statistics over (shard_map/pmap); None
      under jit with sharded arrays, where statistics are already global.
    name: submodule name.
    dtype: compute (output) dtype, None for float32; statistics are reduced
      and kept in float32 either way.

  Returns:
    An nn.BatchNorm with scale 1 and bias 0 at init.
  """
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON, axis_name=axis_name, name=name,
                      dtype=dtype)


def conv(features: int, kernel: int, stride: int, *,
         kernel_init: nn.initializers.Initializer,
         name: str | None = None, dtype: Any = None) -> nn.Conv:
  """Bias-free square convolution padded like PyTorch (padding=kernel//2).

  Args:
    features: output channels.
    kernel: kernel size (1 or 3 here).
    stride: spatial stride.
    kernel_init: initializer of the [k, k, C_in, C_out] kernel.
    name: submodule name.
    dtype: compute dtype (input and kernel cast to it), None for float32;
      the kernel parameter stays float32.

  Returns:
    An nn.Conv; output size is floor((H + 2*(k//2) - k) / stride) + 1.
  """
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False,
                 kernel_init=kernel_init, name=name, dtype=dtype)


COMPUTE_DTYPES = ('float32', 'bfloat16')


def compute_dtype(dtype: Any) -> Any:
  """A model's `dtype` option checked: None (float32, the default) or one of
  COMPUTE_DTYPES by name or as a dtype; returns None for float32, so that
  the default builds exactly the float32 network.

  Raises:
    ValueError: any other dtype.
  """
  if dtype is None:
    return None
  try:
    name = jnp.dtype(dtype).name
  except TypeError:
    name = None
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'dtype must be one of {COMPUTE_DTYPES} (or None), got '
                     f'{dtype!r}')
  return None if name == 'float32' else jnp.dtype(name)


def float32_outputs(logits: jax.Array, features: dict[str, jax.Array],
                    dtype: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Logits and feature maps as float32 when the network computed in a
  lower precision (`dtype` not None): losses, attention maps and metrics
  always see float32. Unchanged for the float32 network."""
  if dtype is None:
    return logits, features
  cast = lambda a: a.astype(jnp.float32)
  return cast(logits), {k: cast(v) for k, v in features.items()}


def global_avg_pool(x: jax.Array) -> jax.Array:
  """Mean over the spatial axes: [B, H, W, C] -> [B, C]."""
  return jnp.mean(x, axis=(1, 2))
