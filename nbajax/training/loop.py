"""The epoch loop: on-device data, sharded batches, one metrics fetch an epoch.

The data set stays on the devices as uint8; each epoch draws a permutation
on device from `fold_in(key, epoch)`, and the step gathers its batch from it,
so the host only dispatches. Two execution modes (docs/design.md §8):

* 'step': one jitted call per optimizer step. On XLA:CPU a convolution inside
  a while loop runs ~17x slower than the same step jitted alone, so this is
  the CPU default.
* 'scan': the whole epoch is one jitted `lax.scan`; no per-step dispatch, the
  fast path on GPU/TPU.
"""

import logging
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nbajax.training import sharding
from nbajax.training.state import TrainState
from nbajax.training.steps import AugmentFn, LossFn, predict_logits, train_step

LOOPS = ('auto', 'step', 'scan')
_LOG = logging.getLogger(__name__)
EpochCallback = Callable[[int, TrainState, dict[str, float]], dict[str, Any]]


def resolve_loop(loop: str) -> str:
  """'auto' -> 'step' on CPU, 'scan' on GPU/TPU; validates the name."""
  if loop not in LOOPS:
    raise ValueError(f'loop must be one of {LOOPS}, got {loop!r}')
  if loop == 'auto':
    return 'step' if jax.default_backend() == 'cpu' else 'scan'
  return loop


def _permutation(key: jax.Array, epoch: int, n: int) -> jax.Array:
  return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def full_batches(n: int, batch_size: int) -> int:
  """Full batches per epoch; the remainder is dropped (a new permutation
  every epoch, so every example is used across epochs).

  Raises:
    ValueError: fewer than one batch of examples.
  """
  steps = n // batch_size
  if steps < 1:
    raise ValueError(
        f'the training set has {n} examples, fewer than one batch of '
        f'{batch_size}: lower batch_size')
  return steps


def gather_batch(x_all: jax.Array, y_all: jax.Array, perm: jax.Array,
                 index: jax.Array, batch_size: int
                 ) -> tuple[jax.Array, jax.Array]:
  """Batch `index` of the epoch's permutation `perm`, taken on device."""
  idx = jax.lax.dynamic_slice(perm, (index * batch_size,), (batch_size,))
  return jnp.take(x_all, idx, axis=0), jnp.take(y_all, idx, axis=0)


class Trainer:
  """Compiles the step (or epoch) once and runs epochs with it.

  Args:
    loss_fn: see `nbajax.training.steps`.
    batch_size: global batch size, a multiple of the device count.
    augment_fn: on-device augmentation `(x, key) -> x`, or None.
    mesh: device mesh (default: all devices).
    loop: 'auto', 'step' or 'scan'.
  """

  def __init__(self, loss_fn: LossFn, *, batch_size: int,
               augment_fn: AugmentFn | None = None, mesh: Mesh | None = None,
               loop: str = 'auto'):
    self.mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size(batch_size, self.mesh)
    self.batch_size = batch_size
    self.loop = resolve_loop(loop)
    self.trace_count = 0
    self._loss_fn = loss_fn
    self._augment_fn = augment_fn
    self._batch_sharding = sharding.batch_sharded(self.mesh)
    donate = () if jax.default_backend() == 'cpu' else (0,)
    self._step = jax.jit(self._gathered_step, donate_argnums=donate)
    self._epoch = jax.jit(self._scanned_epoch, static_argnums=(6,),
                          donate_argnums=donate)

  def _gathered_step(self, state, x_all, y_all, perm, index, key, aux):
    self.trace_count += 1  # Runs at trace time only: counts compilations.
    x, y = jax.lax.with_sharding_constraint(
        gather_batch(x_all, y_all, perm, index, self.batch_size),
        self._batch_sharding)
    return train_step(state, x, y, key, aux, loss_fn=self._loss_fn,
                      augment_fn=self._augment_fn)

  def _scanned_epoch(self, state, x_all, y_all, perm, key, aux, steps):
    def body(carry, index):
      carry, sums = self._gathered_step(carry, x_all, y_all, perm, index, key,
                                        aux)
      return carry, sums

    state, sums = jax.lax.scan(body, state, jnp.arange(steps))
    return state, jax.tree_util.tree_map(jnp.sum, sums)

  def steps_per_epoch(self, n: int) -> int:
    """Full batches per epoch (`full_batches`)."""
    return full_batches(n, self.batch_size)

  def run_epoch(self, state: TrainState, x_all: jax.Array, y_all: jax.Array,
                epoch: int, key: jax.Array,
                aux: Any = None) -> tuple[TrainState, dict[str, float]]:
    """Trains one epoch; returns the state and host-side epoch metrics.

    Args:
      state: replicated train state.
      x_all: uint8 [N,H,W,C] on device (replicated).
      y_all: int32 [N] on device (replicated).
      epoch: 0-based epoch index (selects the permutation).
      key: the run's base key.
      aux: pytree passed to every step.

    Returns:
      (state, {'loss', 'acc', 'seen', plus every other sum divided by seen}).
    """
    steps = self.steps_per_epoch(x_all.shape[0])
    data_key, step_key = jax.random.split(key)
    perm = _permutation(data_key, epoch, x_all.shape[0])
    if self.loop == 'scan':
      state, sums = self._epoch(state, x_all, y_all, perm, step_key, aux,
                                steps)
    else:
      totals = None
      for i in range(steps):
        state, sums = self._step(state, x_all, y_all, perm, i, step_key, aux)
        totals = sums if totals is None else jax.tree_util.tree_map(
            jnp.add, totals, sums)
      sums = totals
    sums = jax.device_get(sums)  # The one host fetch of the epoch.
    return state, epoch_metrics(sums)


def epoch_metrics(sums: dict[str, Any]) -> dict[str, float]:
  """Divides summed metrics by the example count, once."""
  seen = float(sums['seen'])
  out = {'seen': seen, 'acc': float(sums['correct']) / seen}
  for name, value in sums.items():
    if name not in ('seen', 'correct'):
      out[name] = float(value) / seen
  return out


def check_finite(metrics: dict[str, float], *, epoch: int,
                 last_good: str | None = None) -> None:
  """Raises FloatingPointError naming the epoch on a non-finite loss."""
  if not math.isfinite(metrics['loss']):
    where = f'; last good checkpoint: {last_good}' if last_good else ''
    raise FloatingPointError(
        f'non-finite training loss ({metrics["loss"]}) in epoch {epoch + 1}: '
        f'lower the learning rate or check the data{where}')


def predict(state_or_apply, variables, x: np.ndarray | jax.Array, *,
            batch_size: int = 512, mesh: Mesh | None = None) -> np.ndarray:
  """Eval-mode predicted classes for a whole array, batched and padded.

  Args:
    state_or_apply: a model's `apply` function.
    variables: `{'params','batch_stats'}`.
    x: uint8 or float [N,H,W,C].
    batch_size: evaluation batch (rounded up to a multiple of devices).
    mesh: device mesh (default: all devices).

  Returns:
    int32 [N] predictions (numpy, fetched once).
  """
  mesh = mesh or sharding.make_mesh()
  ndev = mesh.devices.size
  batch_size = max(ndev, -(-batch_size // ndev) * ndev)
  fn = _predict_fn(state_or_apply, mesh)
  n = x.shape[0]
  out = []
  for start in range(0, n, batch_size):
    chunk = np.asarray(x[start:start + batch_size])
    pad = batch_size - chunk.shape[0]
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]),
                                              chunk.dtype)])
    chunk = jax.device_put(chunk, sharding.batch_sharded(mesh))
    out.append(fn(variables, chunk))
  preds = np.concatenate(jax.device_get(out)) if out else np.zeros(0, np.int32)
  return preds[:n].astype(np.int32)


_PREDICT_CACHE: dict[Any, Any] = {}


def _predict_fn(apply_fn, mesh: Mesh):
  # Replicated predictions: every process of a multi-process run can fetch
  # them (a batch-sharded result spans devices other processes own).
  if (apply_fn, mesh) not in _PREDICT_CACHE:
    _PREDICT_CACHE[(apply_fn, mesh)] = jax.jit(
        lambda v, x: jnp.argmax(predict_logits(apply_fn, v, x), -1),
        out_shardings=sharding.replicated(mesh))
  return _PREDICT_CACHE[(apply_fn, mesh)]


def log_epoch(epoch: int, epochs: int, metrics: dict[str, float],
              seconds: float, extra: dict[str, Any] | None = None,
              name: str = '') -> None:
  """One progress line per epoch at INFO: loss, train ACC, eval metrics,
  images/s, prefixed with `[name]` when given."""
  parts = [f'epoch {epoch + 1}/{epochs}', f'loss {metrics["loss"]:.4f}',
           f'train_acc {100 * metrics["acc"]:.2f}%']
  for key, value in (extra or {}).items():
    parts.append(f'{key} {100 * value:.2f}%' if isinstance(value, float)
                 else f'{key} {value}')
  parts.append(f'{metrics["seen"] / max(seconds, 1e-9):.0f} img/s')
  parts.append(f'{seconds:.1f}s')
  _LOG.info('%s%s', f'[{name}] ' if name else '', ' | '.join(parts))
