"""Helpers the losses share: feature checks, norms, layer lookup.

Private to `nbajax.losses`; the public names are re-exported there.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.typing.ArrayLike
Features = Mapping[str, ArrayLike]


def is_static_zero(weight) -> bool:
  """True for a Python/NumPy zero, so terms it multiplies can be skipped.

  A JAX array (possibly traced) is never a static zero: its term is kept.
  """
  return isinstance(weight, (int, float, np.generic)) and weight == 0


def as_nhwc(feature: ArrayLike, name: str) -> jax.Array:
  """Returns `feature` as an array of at least float32, checking it is 4-D."""
  feature = jnp.asarray(feature)
  if feature.ndim != 4:
    raise ValueError(
        f'{name} must be a [B, H, W, C] feature map, got shape '
        f'{feature.shape}.')
  # Sums of squares over many channels lose too much in bf16.
  return feature.astype(jnp.promote_types(feature.dtype, jnp.float32))


def safe_norm(x: jax.Array, axis) -> jax.Array:
  """L2 norm over `axis` (kept) whose gradient is 0, not NaN, at x = 0.

  A dead layer (all-zero ReLU map) would otherwise turn the whole loss
  gradient into NaN; PyTorch's `torch.norm` also returns a 0 gradient there.
  """
  squared = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def normalize(x: jax.Array, axis, eps: float) -> jax.Array:
  """Divides `x` by its L2 norm over `axis` plus `eps` (NAD's convention)."""
  return x / (safe_norm(x, axis) + eps)


def mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(student - teacher))


def layer_pair(student_features: Features, teacher_features: Features,
                layer: str) -> tuple[ArrayLike, ArrayLike]:
  """Looks up `layer` in both dicts, naming what exists when it is missing."""
  for side, features in (('student', student_features),
                         ('teacher', teacher_features)):
    if layer not in features:
      raise KeyError(
          f'Layer {layer!r} is not among the {side} features; available: '
          f'{sorted(features)}.')
  return student_features[layer], teacher_features[layer]
