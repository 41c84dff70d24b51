"""Pure distillation losses for backdoor removal (NAD and our NBA).

Every function here is a pure, jit-able function of arrays: data positional,
hyper-parameters keyword-only, `jax.typing.ArrayLike` in, `jax.Array` out.
The module imports only JAX, so it can be used from any JAX code base.

Feature maps are NHWC (`[B, H, W, C]`), as the `nbajax.models` return them.
Wherever a loss compares a student with a teacher, the teacher side is put
under `jax.lax.stop_gradient`: the teacher is a fixed target.

References:
  [AT]  Zagoruyko & Komodakis, "Paying More Attention to Attention",
        ICLR 2017, arXiv 1612.03928.
  [NAD] Li et al., "Neural Attention Distillation: Erasing Backdoor Triggers
        from Deep Neural Networks", ICLR 2021, arXiv 2101.05930.
  [NBA] Ying & Wu, "NBA: defensive distillation for backdoor removal via
        neural behavior alignment", Cybersecurity 2023, arXiv 2406.10846.
        The paper's body is not available; the behavior kinds and the
        student loss below are our formulation (see docs/design.md §7).
  [KD]  Hinton et al., "Distilling the Knowledge in a Neural Network",
        arXiv 1503.02531.
"""

import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.typing.ArrayLike
Features = Mapping[str, ArrayLike]

BEHAVIOR_KINDS = ('spatial', 'channel', 'relation')


def _is_static_zero(weight) -> bool:
  """True for a Python/NumPy zero, so terms it multiplies can be skipped.

  A JAX array (possibly traced) is never a static zero: its term is kept.
  """
  return isinstance(weight, (int, float, np.generic)) and weight == 0


def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    label_smoothing: float = 0.0,
) -> jax.Array:
  """Softmax cross-entropy with integer labels, averaged over the batch.

  Args:
    logits: `[B, K]` unnormalized scores.
    labels: `int[B]` class indices in `[0, K)`.
    label_smoothing: mass spread uniformly over the K classes; the target is
      `(1 - label_smoothing) * one_hot + label_smoothing / K`.

  Returns:
    Scalar mean loss.
  """
  log_probs = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
  targets = jax.nn.one_hot(labels, log_probs.shape[-1], dtype=log_probs.dtype)
  if not _is_static_zero(label_smoothing):
    num_classes = log_probs.shape[-1]
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


def kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 1.0,
) -> jax.Array:
  """Knowledge-distillation loss of [KD]: `T^2 * KL(p_teacher || p_student)`.

  `p = softmax(logits / T)`; the `T^2` factor keeps the gradient scale
  independent of `T`. The teacher is under `stop_gradient`.

  Args:
    student_logits: `[B, K]`.
    teacher_logits: `[B, K]`.
    temperature: softmax temperature `T > 0`.

  Returns:
    Scalar, the KL divergence averaged over the batch, times `T^2`.
  """
  teacher_logits = jax.lax.stop_gradient(jnp.asarray(teacher_logits))
  log_p_s = jax.nn.log_softmax(jnp.asarray(student_logits) / temperature, -1)
  log_p_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
  return temperature**2 * jnp.mean(kl)


def _as_nhwc(feature: ArrayLike, name: str) -> jax.Array:
  """Returns `feature` as an array of at least float32, checking it is 4-D."""
  feature = jnp.asarray(feature)
  if feature.ndim != 4:
    raise ValueError(
        f'{name} must be a [B, H, W, C] feature map, got shape '
        f'{feature.shape}.')
  # Sums of squares over many channels lose too much in bf16.
  return feature.astype(jnp.promote_types(feature.dtype, jnp.float32))


def _safe_norm(x: jax.Array, axis) -> jax.Array:
  """L2 norm over `axis` (kept) whose gradient is 0, not NaN, at x = 0.

  A dead layer (all-zero ReLU map) would otherwise turn the whole loss
  gradient into NaN; PyTorch's `torch.norm` also returns a 0 gradient there.
  """
  squared = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _normalize(x: jax.Array, axis, eps: float) -> jax.Array:
  """Divides `x` by its L2 norm over `axis` plus `eps` (NAD's convention)."""
  return x / (_safe_norm(x, axis) + eps)


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
  feature = _as_nhwc(feature, 'feature')
  am = jnp.sum(jnp.abs(feature)**p, axis=-1)
  return _normalize(am, (1, 2), eps)


def _check_same_shape(student: jax.Array, teacher: jax.Array, what: str):
  if student.shape != teacher.shape:
    raise ValueError(
        f'Student and teacher {what} shapes differ: student '
        f'{student.shape} vs teacher {teacher.shape}.')


def _mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(student - teacher))


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
  student = _as_nhwc(student_feature, 'student_feature')
  teacher = _as_nhwc(teacher_feature, 'teacher_feature')
  if student.shape[:3] != teacher.shape[:3]:
    raise ValueError(
        'attention_loss needs equal [B, H, W]: student feature '
        f'{student.shape} vs teacher feature {teacher.shape}.')
  am_s = attention_map(student, p=p)
  am_t = jax.lax.stop_gradient(attention_map(teacher, p=p))
  return _mse(am_s, am_t)


def _layer_pair(student_features: Features, teacher_features: Features,
                layer: str) -> tuple[ArrayLike, ArrayLike]:
  """Looks up `layer` in both dicts, naming what exists when it is missing."""
  for side, features in (('student', student_features),
                         ('teacher', teacher_features)):
    if layer not in features:
      raise KeyError(
          f'Layer {layer!r} is not among the {side} features; available: '
          f'{sorted(features)}.')
  return student_features[layer], teacher_features[layer]


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
    student, teacher = _layer_pair(student_features, teacher_features, layer)
    total = total + beta * attention_loss(student, teacher, p=p)
  return total


def _channel_behavior(feature: jax.Array, p: float, eps: float) -> jax.Array:
  """`[B, C]`: how strongly each channel fires, unit L2 norm per sample."""
  return _normalize(jnp.mean(jnp.abs(feature)**p, axis=(1, 2)), (1,), eps)


def _relation_behavior(feature: jax.Array, eps: float) -> jax.Array:
  """`[B, C, C]`: channel Gram matrix, unit Frobenius norm per sample."""
  batch, height, width, channels = feature.shape
  flat = feature.reshape(batch, height * width, channels)
  gram = jnp.einsum('bnc,bnd->bcd', flat, flat) / (height * width)
  return _normalize(gram, (1, 2), eps)


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
  feature = _as_nhwc(feature, 'feature')
  if kind == 'spatial':
    return attention_map(feature, p=p, eps=eps)
  if kind == 'channel':
    return _channel_behavior(feature, p, eps)
  if kind == 'relation':
    return _relation_behavior(feature, eps)
  raise ValueError(f'Unknown behavior kind {kind!r}; kinds: {BEHAVIOR_KINDS}.')


def _check_kinds(weights: Mapping[str, float]):
  unknown = [kind for kind in weights if kind not in BEHAVIOR_KINDS]
  if unknown:
    raise ValueError(
        f'Unknown behavior kind(s) {unknown} in weights; kinds: '
        f'{BEHAVIOR_KINDS}.')


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
  for kind, value in items.items():
    if kind not in BEHAVIOR_KINDS:
      raise ValueError(f'weights.{kind}: unknown behavior kind; allowed: '
                       f'{list(BEHAVIOR_KINDS)}')
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
  student = _as_nhwc(student_feature, 'student_feature')
  teacher = _as_nhwc(teacher_feature, 'teacher_feature')
  total = jnp.zeros((), jnp.float32)
  for kind, weight in weights.items():
    if _is_static_zero(weight):
      continue
    b_s = behavior(student, kind=kind, p=p)
    b_t = jax.lax.stop_gradient(behavior(teacher, kind=kind, p=p))
    if b_s.shape != b_t.shape:
      raise ValueError(
          f'{kind!r} behaviors differ in shape: student feature '
          f'{student.shape} vs teacher feature {teacher.shape}.')
    total = total + weight * _mse(b_s, b_t)
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
    student, teacher = _layer_pair(student_features, teacher_features, layer)
    total = total + beta * behavior_distance(
        student, teacher, weights=weights, p=p)
  return total


def _require(value, name: str, term: str):
  if value is None:
    raise ValueError(f'nba_loss: {term} needs {name}, got None.')
  return value


def nba_loss(
    student_logits: ArrayLike,
    student_features: Features,
    teacher_features: Features,
    labels: ArrayLike,
    pseudo_logits: ArrayLike | None = None,
    pseudo_features: Features | None = None,
    target_logits: ArrayLike | None = None,
    target_features: Features | None = None,
    *,
    betas: Mapping[str, float],
    weights: Mapping[str, float],
    gamma: float = 0.0,
    lam: float = 0.0,
    kd_weight: float = 0.0,
    temperature: float = 1.0,
    pseudo_betas: Mapping[str, float] | None = None,
    p: float = 2.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The student loss of our NBA formulation (docs/design.md §7), from outputs.

      loss = CE(S(x), y) + behavior_loss(S(x), T(x))
           + gamma * behavior_loss(S(x~), T(target))
           + lam * CE(S(x~), y)
           + kd_weight * kd_loss(S(x~), T(target))

  where `x~` are the pseudo samples (`nbajax.generator`) and `target` is
  `x` or `x~` (the caller's `align_to` choice: it decides which teacher
  outputs are passed as `target_*`). Both behavior terms are beta-weighted
  over layers. A term whose weight is a Python zero is skipped, so it needs
  no inputs and NAD (`weights={'spatial': 1.0}`, gamma = lam = kd_weight =
  0) is exactly `cross_entropy + nad_loss`.

  Args:
    student_logits: `[B, K]`, student on clean `x`.
    student_features: layer -> `[B, H, W, C]`, student on `x`.
    teacher_features: layer -> `[B, H, W, C]`, teacher on `x`.
    labels: `int[B]` true labels of `x` (and so of `x~`).
    pseudo_logits: `[B, K]`, student on `x~` (for `lam`).
    pseudo_features: layer -> `[B, H, W, C]`, student on `x~` (for `gamma`).
    target_logits: `[B, K]`, teacher on the target input (for `kd_weight`).
    target_features: layer -> `[B, H, W, C]`, teacher on the target input
      (for `gamma`).
    betas: layer -> weight of the clean alignment term.
    weights: behavior kind -> weight, see `behavior_distance`.
    gamma: weight of the pseudo-sample alignment term.
    lam: weight of the CE on pseudo samples.
    kd_weight: weight of the KD term on pseudo samples.
    temperature: KD temperature.
    pseudo_betas: layer -> weight of the pseudo alignment; default `betas`.
    p: power for `'spatial'` and `'channel'`.

  Returns:
    `(loss, terms)`: scalar loss and the unweighted terms `'ce'`, `'align'`,
    `'pseudo_align'`, `'pseudo_ce'`, `'pseudo_kd'` (skipped terms are 0).

  Raises:
    ValueError: if a term with a nonzero weight lacks its inputs, or as
      `behavior_loss`.
    KeyError: as `behavior_loss`.
  """
  zero = jnp.zeros((), jnp.float32)
  terms = dict(pseudo_align=zero, pseudo_ce=zero, pseudo_kd=zero)
  terms['ce'] = cross_entropy(student_logits, labels)
  terms['align'] = behavior_loss(
      student_features, teacher_features, betas=betas, weights=weights, p=p)
  loss = terms['ce'] + terms['align']
  if not _is_static_zero(gamma):
    terms['pseudo_align'] = behavior_loss(
        _require(pseudo_features, 'pseudo_features', 'gamma'),
        _require(target_features, 'target_features', 'gamma'),
        betas=betas if pseudo_betas is None else pseudo_betas,
        weights=weights, p=p)
    loss = loss + gamma * terms['pseudo_align']
  if not _is_static_zero(lam):
    terms['pseudo_ce'] = cross_entropy(
        _require(pseudo_logits, 'pseudo_logits', 'lam'), labels)
    loss = loss + lam * terms['pseudo_ce']
  if not _is_static_zero(kd_weight):
    terms['pseudo_kd'] = kd_loss(
        _require(pseudo_logits, 'pseudo_logits', 'kd_weight'),
        _require(target_logits, 'target_logits', 'kd_weight'),
        temperature=temperature)
    loss = loss + kd_weight * terms['pseudo_kd']
  return loss, terms
