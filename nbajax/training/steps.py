"""Pure train and eval steps.

A loss function has the signature

    loss_fn(params, batch_stats, x, y, key, aux) -> (loss, (batch_stats, sums))

with `x` float32 [B,H,W,C] in [0,1] (already augmented), `y` int32 [B],
`key` a PRNG key private to this step, `aux` any pytree the caller passes
to every step (a frozen teacher's variables, for instance), `sums` a dict of
per-batch *sums* (`loss`, `correct`, `seen`, and any named loss terms) so
that epoch metrics are sums and counts divided once.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from nbajax import losses
from nbajax.training.state import TrainState

LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]
AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]


def classification_sums(
    logits: jax.Array, labels: jax.Array, loss: jax.Array,
    terms: dict[str, jax.Array] | None = None,
) -> dict[str, jax.Array]:
  """Batch sums of the loss, its terms, correct predictions and examples.

  The one bookkeeping of every loss function: the epoch loop adds these
  sums over batches and divides once (`epoch_metrics`).

  Args:
    logits: [B, K].
    labels: int [B].
    loss: scalar batch-mean loss.
    terms: named scalar batch-mean parts of the loss (e.g. 'ce', 'at'),
      summed the same way and logged per epoch.

  Returns:
    {'loss': loss * B, 'correct': int, 'seen': B, **{term: term * B}}
    (float32 scalars).
  """
  b = labels.shape[0]
  correct = jnp.sum(jnp.argmax(logits, -1) == labels)
  sums = {
      'loss': loss * b,
      'correct': correct.astype(jnp.float32),
      'seen': jnp.asarray(b, jnp.float32),
  }
  weight = jnp.asarray(b, jnp.float32)
  sums.update({name: value * weight for name, value in (terms or {}).items()})
  return sums


def make_ce_loss(model: nn.Module) -> LossFn:
  """Plain cross entropy on the student in train mode (training, FT)."""

  def loss_fn(params, batch_stats, x, y, key, aux):
    del key, aux
    (logits, _), updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])
    loss = losses.cross_entropy(logits, y)
    return loss, (updates['batch_stats'], classification_sums(logits, y, loss))

  return loss_fn


def train_step(
    state: TrainState,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    aux: Any,
    *,
    loss_fn: LossFn,
    augment_fn: AugmentFn | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on one batch.

  Args:
    state: current train state.
    x: uint8 or float [B,H,W,C] images (uint8 is scaled to [0,1]).
    y: int32 [B] labels.
    key: the run's base key; the step folds in `state.step`, so nothing
      random is kept in the state and a resumed run is bit-exact.
    aux: pytree passed to `loss_fn` unchanged (teacher variables, ...).
    loss_fn: see module docstring.
    augment_fn: `(x, key) -> x` on float images, or None.

  Returns:
    (new state, dict of batch sums).
  """
  step_key = jax.random.fold_in(key, state.step)
  aug_key, loss_key = jax.random.split(step_key)
  x = to_float(x)
  if augment_fn is not None:
    x = augment_fn(x, aug_key)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (batch_stats, sums)), grads = grad_fn(
      state.params, state.batch_stats, x, y, loss_key, aux)
  return state.apply_gradients(grads=grads, batch_stats=batch_stats), sums


def to_float(x: jax.Array) -> jax.Array:
  """uint8 [0,255] -> float32 [0,1]; float input is only cast."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def predict_logits(apply_fn, variables, x: jax.Array) -> jax.Array:
  """Eval-mode logits [B,K] for uint8 or float images [B,H,W,C]."""
  logits, _ = apply_fn(variables, to_float(x), train=False)
  return logits
