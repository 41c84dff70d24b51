"""Multi-epoch training with per-epoch checkpoints and exact resume.

`fit` restores the newest complete checkpoint in its checkpointer (if any),
then trains the remaining epochs. Randomness comes only from the base key
folded with the epoch (data order) and the step (augmentation, pseudo
samples), so a resumed run ends bit-identical to an uninterrupted one.
"""

import logging
import signal
import time
from typing import Any, Callable

import jax
import numpy as np

from nbajax.checkpoint import CheckpointError, Checkpointer
from nbajax.training import sharding
from nbajax.training.loop import Trainer, check_finite, log_epoch
from nbajax.training.state import TrainState

_LOG = logging.getLogger(__name__)
EvalFn = Callable[[TrainState], dict[str, float]]


class TrainingInterrupted(RuntimeError):
  """SIGINT/SIGTERM arrived; the last complete epoch checkpoint is kept.

  Attributes:
    signum: the signal's number (a CLI exits with 128 + signum).
  """

  def __init__(self, message: str, *, signum: int):
    super().__init__(message)
    self.signum = signum


class _StopOnSignal:
  """Turns SIGINT/SIGTERM into a flag checked after each epoch's save.

  A second signal stops at once (a user pressing Ctrl-C twice means it):
  saves are atomic, so the newest complete checkpoint stays usable.
  """

  def __init__(self):
    self.received: int | None = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:
      raise TrainingInterrupted(
          f'second signal {signum} during an epoch: stopped at once; the '
          'newest complete checkpoint is kept', signum=signum)
    self.received = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


def fit(
    state: TrainState,
    x: np.ndarray,
    y: np.ndarray,
    *,
    trainer: Trainer,
    epochs: int,
    key: jax.Array,
    aux: Any = None,
    epoch_aux: Callable[[dict[str, Any], int], Any] | None = None,
    checkpointer: Checkpointer | None = None,
    meta: dict[str, Any] | None = None,
    eval_fn: EvalFn | None = None,
    name: str = 'train',
    eval_every: int = 1,
) -> tuple[TrainState, list[dict[str, Any]]]:
  """Trains `epochs` epochs, resuming from `checkpointer` when it has steps.

  Args:
    state: freshly initialized state (the template for a restore).
    x: uint8 [N,H,W,C] training images.
    y: int [N] labels.
    trainer: compiled step/epoch runner.
    epochs: total epochs (>= 1).
    key: base PRNG key of this run.
    aux: pytree passed to every step (teacher variables, ...).
    epoch_aux: `(variables, epoch) -> pytree` computed from the state at the
      start of each epoch and passed to its steps instead of `aux` (I-BAU's
      universal perturbation); a function of the saved state, so a resumed
      run still equals an uninterrupted one.
    checkpointer: where each epoch is saved; None trains without saving.
    meta: JSON metadata saved with every step (a 'history' entry is added).
    eval_fn: called after each epoch, returns metrics (fractions) to log.
    name: label of its progress lines (logged at INFO as '[name] ...').
    eval_every: run `eval_fn` every this many epochs (and after the last).

  Returns:
    (final state, history: one dict per epoch with train and eval metrics).

  Raises:
    FloatingPointError: non-finite loss (names the epoch and last checkpoint).
    TrainingInterrupted: SIGINT/SIGTERM; the previous epoch stays saved.
    CheckpointError: an existing checkpoint of another run or model.
  """
  if epochs < 1:
    raise ValueError(f'epochs must be >= 1, got {epochs}')
  if eval_every < 1:
    raise ValueError(f'eval_every must be >= 1, got {eval_every}')
  meta = dict(meta or {})
  history: list[dict[str, Any]] = []
  start = 0
  if checkpointer is not None and checkpointer.latest_step() is not None:
    # The newest step that restores; corrupted newer ones are logged, then
    # moved aside (not deleted) so that their epochs can be saved again.
    start, state, saved = checkpointer.restore_newest(state)
    _check_same_run(saved, meta, checkpointer.directory)
    checkpointer.set_aside_after(start)
    history = list(saved.get('history', []))
    _LOG.info('[%s] resumed from epoch %d in %s', name, start,
              checkpointer.directory)
  mesh = trainer.mesh
  state = sharding.replicate(state, mesh)
  x_dev = sharding.replicate(np.asarray(x), mesh)
  y_dev = sharding.replicate(np.asarray(y, np.int32), mesh)
  aux = sharding.replicate(aux, mesh) if aux is not None else None
  with _StopOnSignal() as stop:
    for epoch in range(start, epochs):
      t0 = time.perf_counter()
      if epoch_aux is not None:
        aux = sharding.replicate(epoch_aux(state.variables, epoch), mesh)
      state, metrics = trainer.run_epoch(state, x_dev, y_dev, epoch, key, aux)
      seconds = time.perf_counter() - t0
      last = (checkpointer.step_dir(checkpointer.latest_step())
              if checkpointer and checkpointer.latest_step() else None)
      check_finite(metrics, epoch=epoch, last_good=last)
      due = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
      extra = eval_fn(state) if eval_fn and due else {}
      log_epoch(epoch, epochs, metrics, seconds, extra, name=name)
      history.append({'epoch': epoch + 1, 'seconds': seconds,
                      **{f'train_{k}': v for k, v in metrics.items()},
                      **extra})
      if checkpointer is not None:
        checkpointer.save(epoch + 1, state, {**meta, 'history': history})
      if stop.received is not None:
        raise TrainingInterrupted(
            f'signal {stop.received} after epoch {epoch + 1}; the checkpoint '
            f'of that epoch is kept' + (f' in {checkpointer.directory}'
                                        if checkpointer else ''),
            signum=stop.received)
  return state, history


def _check_same_run(saved: dict[str, Any], meta: dict[str, Any],
                    directory: str) -> None:
  """Refuses to resume a checkpoint written by another configuration."""
  want, have = meta.get('fingerprint'), saved.get('fingerprint')
  if want is not None and have is not None and want != have:
    raise CheckpointError(
        f'{directory} holds a run of another configuration (fingerprint '
        f'{have} != {want}); use a new workdir or delete it to start over')
