"""Cross-entropy and knowledge distillation on logits.

`cross_entropy` is ours rather than
`optax.softmax_cross_entropy_with_integer_labels`: the two give the same
value, but optax's gradient goes through `exp(x) / sum(exp(x))` where ours
goes through `log_softmax`, so swapping would change the last bits of every
trained model and move every published table (tests/test_losses.py checks
the two agree to float32 rounding). The KD divergence is optax's.
"""

import jax
import jax.numpy as jnp
import optax

from nbajax.losses._common import ArrayLike, is_static_zero


def cross_entropy_per_example(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    label_smoothing: float = 0.0,
) -> jax.Array:
  """Softmax cross-entropy with integer labels, one value per example.

  Computed in at least float32 (bf16 logits lose too much in the
  log-sum-exp).

  Args:
    logits: `[B, K]` unnormalized scores.
    labels: `int[B]` class indices in `[0, K)`.
    label_smoothing: mass spread uniformly over the K classes; the target is
      `(1 - label_smoothing) * one_hot + label_smoothing / K`.

  Returns:
    `[B]` losses.
  """
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  targets = jax.nn.one_hot(labels, log_probs.shape[-1], dtype=log_probs.dtype)
  if not is_static_zero(label_smoothing):
    num_classes = log_probs.shape[-1]
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  return -jnp.sum(targets * log_probs, axis=-1)


def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    label_smoothing: float = 0.0,
) -> jax.Array:
  """`cross_entropy_per_example` averaged over the batch: a scalar."""
  return jnp.mean(cross_entropy_per_example(
      logits, labels, label_smoothing=label_smoothing))


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
  kl = optax.losses.kl_divergence_with_log_targets(log_p_s, log_p_t)
  return temperature**2 * jnp.mean(kl)
