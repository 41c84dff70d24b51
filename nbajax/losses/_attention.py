"""Attention maps and NAD's attention-distillation loss ([AT], [NAD]).

References: see `nbajax.losses`.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from nbajax.losses._common import (ArrayLike, Features, as_nhwc, layer_pair,
                                   mse, normalize)


def attention_map(
    feature: ArrayLike,
    *,
    p: float = 2.0,
    eps: float = 1e-6,
) -> jax.Array:
  """Spatial attention map of [AT], exactly as the official [NAD] code.

  `A = sum_c |F|^p`, then each sample's map is divided by its L2 norm over
  `(H, W)` plus `eps`. [AT]'s own code averages over channels and uses
  `F.normalize` (eps 1e-12 under a max); the mean only scales `A` by `1/C`,
  which the normalization removes, so the two differ only through `eps`.

  Args:
    feature: `[B, H, W, C]` feature map (NHWC).
    p: power applied to `|F|`.
    eps: added to the norm; keeps all-zero maps finite.

  Returns:
    `[B, H, W]` maps, each of L2 norm just below 1 (0 for an all-zero map).

  Raises:
    ValueError: if `feature` is not 4-D.
  """
  feature = as_nhwc(feature, 'feature')
  am = jnp.sum(jnp.abs(feature)**p, axis=-1)
  return normalize(am, (1, 2), eps)

def attention_loss(
    student_feature: ArrayLike,
    teacher_feature: ArrayLike,
    *,
    p: float = 2.0,
) -> jax.Array:
  """The [NAD] attention-distillation loss of one layer (their `AT` module).

  Mean over `B*H*W` of the squared difference of the two attention maps
  (`attention_map` with `eps=1e-6`). The teacher is under `stop_gradient`.

  Args:
    student_feature: `[B, H, W, C_s]`.
    teacher_feature: `[B, H, W, C_t]`; the channel counts may differ (the
      attention map sums channels away), `B, H, W` must match.
    p: power of `attention_map`.

  Returns:
    Scalar loss.

  Raises:
    ValueError: at trace time, if the maps' shapes `[B, H, W]` differ (the
      message names both feature shapes) or a feature is not 4-D.
  """
  student = as_nhwc(student_feature, 'student_feature')
  teacher = as_nhwc(teacher_feature, 'teacher_feature')
  if student.shape[:3] != teacher.shape[:3]:
    raise ValueError(
        'attention_loss needs equal [B, H, W]: student feature '
        f'{student.shape} vs teacher feature {teacher.shape}.')
  am_s = attention_map(student, p=p)
  am_t = jax.lax.stop_gradient(attention_map(teacher, p=p))
  return mse(am_s, am_t)


def nad_loss(
    student_features: Features,
    teacher_features: Features,
    *,
    betas: Mapping[str, float],
    p: float = 2.0,
) -> jax.Array:
  """The [NAD] distillation term `sum_l beta_l * attention_loss_l`.

  [NAD] uses the three WRN groups with betas 500 / 1000 / 1000 (its loss is
  `CE + nad_loss`). Layers of the feature dicts not named in `betas` are
  ignored.

  Args:
    student_features: layer name -> `[B, H, W, C]`.
    teacher_features: layer name -> `[B, H, W, C]`.
    betas: layer name -> weight; the layers summed, in this order.
    p: power of `attention_map`.

  Returns:
    Scalar loss (0 for empty `betas`).

  Raises:
    KeyError: if a layer of `betas` is missing from either feature dict
      (the message names it and the available layers).
    ValueError: as `attention_loss`.
  """
  total = jnp.zeros((), jnp.float32)
  for layer, beta in betas.items():
    student, teacher = layer_pair(student_features, teacher_features, layer)
    total = total + beta * attention_loss(student, teacher, p=p)
  return total
