"""Neural behaviors of a layer and their alignment loss ([NBA], ours).

The behavior kinds are our formulation (docs/design.md §7).
"""

import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from nbajax.losses._attention import attention_map
from nbajax.losses._common import (ArrayLike, Features, as_nhwc,
                                   is_static_zero, layer_pair, mse,
                                   normalize)

BEHAVIOR_KINDS = ('spatial', 'channel', 'relation')


def _channel_behavior(feature: jax.Array, p: float, eps: float) -> jax.Array:
  """`[B, C]`: how strongly each channel fires, unit L2 norm per sample."""
  return normalize(jnp.mean(jnp.abs(feature)**p, axis=(1, 2)), (1,), eps)


def _relation_behavior(feature: jax.Array, eps: float) -> jax.Array:
  """`[B, C, C]`: channel Gram matrix, unit Frobenius norm per sample."""
  batch, height, width, channels = feature.shape
  flat = feature.reshape(batch, height * width, channels)
  gram = jnp.einsum('bnc,bnd->bcd', flat, flat) / (height * width)
  return normalize(gram, (1, 2), eps)


def behavior(
    feature: ArrayLike,
    *,
    kind: str,
    p: float = 2.0,
    eps: float = 1e-6,
) -> jax.Array:
  """A layer's neural behavior of one kind ([NBA], our formulation).

  - `'spatial'`: `attention_map(feature)`, where the layer looks; `[B,H,W]`.
  - `'channel'`: `mean_{h,w} |F|^p` divided by its L2 norm over channels
    (+ `eps`), which neurons fire (backdoors live in a few channels);
    `[B, C]`.
  - `'relation'`: the channel Gram matrix `G = F^T F / (H W)` of `F`
    reshaped to `[B, H*W, C]`, divided by its Frobenius norm (+ `eps`);
    `[B, C, C]`. `p` is not used.

  Args:
    feature: `[B, H, W, C]` feature map.
    kind: one of `BEHAVIOR_KINDS`.
    p: power for `'spatial'` and `'channel'`.
    eps: added to every normalizing norm.

  Returns:
    The behavior array, shape as listed above.

  Raises:
    ValueError: for an unknown `kind` (listing the kinds) or a non-4-D
      feature.
  """
  feature = as_nhwc(feature, 'feature')
  if kind == 'spatial':
    return attention_map(feature, p=p, eps=eps)
  if kind == 'channel':
    return _channel_behavior(feature, p, eps)
  if kind == 'relation':
    return _relation_behavior(feature, eps)
  raise ValueError(f'Unknown behavior kind {kind!r}; kinds: {BEHAVIOR_KINDS}.')


def _check_kinds(weights: Mapping[str, Any]) -> None:
  """The one rule on kind names, for configs and for the losses (whose
  weights may be traced arrays, so only the names are checked there)."""
  for kind in weights:
    if kind not in BEHAVIOR_KINDS:
      raise ValueError(f'weights.{kind}: unknown behavior kind; allowed: '
                       f'{list(BEHAVIOR_KINDS)}')


def check_behavior_weights(weights: Any) -> dict[str, float]:
  """Checks a `{kind: weight}` mapping for `behavior_distance`.

  Args:
    weights: a mapping of `BEHAVIOR_KINDS` entries to finite numbers >= 0,
      at least one of them > 0.

  Returns:
    The non-zero weights as floats.

  Raises:
    ValueError: the first problem, naming the kind ('weights.channel ...').
  """
  items = dict(weights.items()) if hasattr(weights, 'items') else None
  if not items:
    raise ValueError(f'weights must map behavior kinds {BEHAVIOR_KINDS} to '
                     f'weights, got {weights!r}')
  _check_kinds(items)
  for kind, value in items.items():
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not 0 <= value < float('inf')):
      raise ValueError(f'weights.{kind} must be a number >= 0, got '
                       f'{value!r}')
  if not any(v > 0 for v in items.values()):
    raise ValueError(f'weights needs at least one weight > 0, got {items}')
  return {k: float(v) for k, v in items.items() if v != 0}


def behavior_distance(
    student_feature: ArrayLike,
    teacher_feature: ArrayLike,
    *,
    weights: Mapping[str, float],
    p: float = 2.0,
) -> jax.Array:
  """One layer's behavior distance `D = sum_kind w_kind * MSE(B_kind)`.

  `MSE` is the mean over all elements of the squared difference between the
  student's and the (stop-gradient) teacher's behavior. With
  `weights={'spatial': 1.0}` this is exactly `attention_loss`. Kinds whose
  weight is a Python zero are not computed.

  Args:
    student_feature: `[B, H, W, C]`.
    teacher_feature: `[B, H, W, C]`.
    weights: kind (see `behavior`) -> weight. docs/design.md §7 suggests
      `{'spatial': 1.0, 'channel': 0.2}`: the channel term is ~5x larger.
    p: power for `'spatial'` and `'channel'`.

  Returns:
    Scalar distance (0 for empty `weights`).

  Raises:
    ValueError: for an unknown kind, a non-4-D feature, or behaviors of
      different shapes (the message names both feature shapes).
  """
  _check_kinds(weights)
  student = as_nhwc(student_feature, 'student_feature')
  teacher = as_nhwc(teacher_feature, 'teacher_feature')
  total = jnp.zeros((), jnp.float32)
  for kind, weight in weights.items():
    if is_static_zero(weight):
      continue
    b_s = behavior(student, kind=kind, p=p)
    b_t = jax.lax.stop_gradient(behavior(teacher, kind=kind, p=p))
    if b_s.shape != b_t.shape:
      raise ValueError(
          f'{kind!r} behaviors differ in shape: student feature '
          f'{student.shape} vs teacher feature {teacher.shape}.')
    total = total + weight * mse(b_s, b_t)
  return total


def behavior_loss(
    student_features: Features,
    teacher_features: Features,
    *,
    betas: Mapping[str, float],
    weights: Mapping[str, float],
    p: float = 2.0,
) -> jax.Array:
  """Layer-weighted behavior alignment `sum_l beta_l * D_l` ([NBA], ours).

  With `weights={'spatial': 1.0}` it equals `nad_loss` exactly (same
  operations in the same order).

  Args:
    student_features: layer name -> `[B, H, W, C]`.
    teacher_features: layer name -> `[B, H, W, C]`.
    betas: layer name -> weight; the layers summed, in this order.
    weights: behavior kind -> weight, see `behavior_distance`.
    p: power for `'spatial'` and `'channel'`.

  Returns:
    Scalar loss.

  Raises:
    KeyError: as `nad_loss`.
    ValueError: as `behavior_distance`.
  """
  _check_kinds(weights)
  total = jnp.zeros((), jnp.float32)
  for layer, beta in betas.items():
    student, teacher = layer_pair(student_features, teacher_features, layer)
    total = total + beta * behavior_distance(
        student, teacher, weights=weights, p=p)
  return total
