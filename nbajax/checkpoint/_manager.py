"""`Checkpointer`: Orbax's CheckpointManager with our metadata, resume
order and error messages (the layout and rules: `nbajax.checkpoint`)."""

import json
import logging
import os
import time
from typing import Any, Protocol

import jax
import orbax.checkpoint as ocp
from etils import epath

from nbajax import atomic
from nbajax.checkpoint._errors import (CheckpointError, CorruptCheckpointError,
                                       quote_cause)
from nbajax.checkpoint._plain import check_same_shapes, restore_variables


class TrainState(Protocol):
  """What the checkpointer needs of a train state (`nbajax.training`'s has
  it): its model variables, and a round trip through a plain pytree."""

  variables: Any

  def to_tree(self) -> Any:
    """The state as a pytree of arrays (what is saved)."""

  def from_tree(self, tree: Any) -> 'TrainState':
    """A state of this structure holding the arrays of `tree`."""


class Checkpointer:
  """Saves and restores `TrainState` + metadata in `directory`.

  Args:
    directory: the CheckpointManager directory (created if absent).
    max_to_keep: how many most recent steps to keep (>= 1).
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
    if max_to_keep < 1:
      raise ValueError(f'max_to_keep must be >= 1, got {max_to_keep}')
    self.directory = os.path.abspath(os.fspath(directory))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True),
    )

  def save(self, step: int, state: 'TrainState', meta: dict[str, Any]) -> None:
    """Writes step `step` and waits until it is on disk (atomically).

    Args:
      step: checkpoint number (epochs completed).
      state: the train state.
      meta: JSON-serializable metadata.

    Raises:
      TypeError: `meta` is not JSON (nothing is written).
      CheckpointError: `step` already exists.
    """
    json.dumps(meta)  # Fail before writing anything if meta is not JSON.
    if step in self.all_steps():
      raise CheckpointError(
          f'step {step} already exists in {self.directory}; steps are never '
          'overwritten (restore_newest + set_aside_after handle a resume)')
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state.to_tree()),
                                meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    """The newest complete step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every complete step, ascending."""
    return sorted(self._manager.all_steps())

  def partial_steps(self) -> dict[int, str]:
    """Steps whose save never finished: `{step: path of the partial dir}`."""
    if not os.path.isdir(self.directory):
      return {}
    found = {}
    for name in sorted(os.listdir(self.directory)):
      path = os.path.join(self.directory, name)
      # Orbax's own test for a step being written; its name starts with the
      # step number we gave it.
      step = name.split('.', 1)[0]
      if (step.isdigit() and os.path.isdir(path)
          and ocp.utils.is_tmp_checkpoint(path)):
        found[int(step)] = path
    return found

  def step_dir(self, step: int) -> str:
    """Directory of one step (`.../<step>`)."""
    return os.path.join(self.directory, str(step))

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """Metadata of `step` (default newest).

    Raises:
      CheckpointError: when there is no such step or it cannot be read.
    """
    step = self._require(step)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types; name the step.
      raise self._corrupt(step, 'its metadata cannot be read', e) from e
    return dict(restored.meta)

  def restore(self, template: 'TrainState',
              step: int | None = None) -> tuple['TrainState', dict[str, Any]]:
    """Restores `step` into the structure of `template`.

    With `step=None` this is the newest step that restores: corrupted newer
    steps are skipped, each logged with the reason (see `restore_newest`).
    A checkpoint of another model is an error at once, without fallback.

    Args:
      template: a TrainState of the same model and optimizer (its values are
        ignored; shapes and dtypes are checked against the checkpoint).
      step: which step; None for the newest usable one.

    Returns:
      (restored state, metadata).

    Raises:
      CheckpointError: missing or never completed step, or a checkpoint of
        another model / number of classes / optimizer.
      CorruptCheckpointError: the step's files cannot be read (with
        `step=None`: no step can be read).
    """
    if step is None:
      return self.restore_newest(template)[1:]
    return self._restore_step(template, self._require(step))

  def restore_newest(self, template: 'TrainState'
                     ) -> tuple[int, 'TrainState', dict[str, Any]]:
    """The newest step that restores, skipping (and logging) corrupted ones.

    Args:
      template: as in `restore`.

    Returns:
      (step, restored state, metadata).

    Raises:
      CheckpointError: no complete step, or a checkpoint of another model.
      CorruptCheckpointError: every complete step is corrupted.
    """
    steps = self._require_any()
    skipped = []
    for step in reversed(steps):
      try:
        state, meta = self._restore_step(template, step)
      except CorruptCheckpointError as e:
        logging.warning('skipping checkpoint step %d: %s', step, e)
        skipped.append(f'step {step}: {e}')
        continue
      if skipped:
        logging.warning('restored step %d of %s instead (newer steps %s are '
                        'unusable)', step, self.directory,
                        [s for s in steps if s > step])
      return step, state, meta
    raise CorruptCheckpointError(
        f'no step in {self.directory} can be restored:\n' + '\n'.join(skipped))

  def set_aside_after(self, step: int) -> list[str]:
    """Moves every complete step newer than `step` out of the manager's way.

    Used after `restore_newest` skipped unusable steps, so that training can
    write those step numbers again. Nothing is deleted: each goes to
    `<directory>/unusable-<step>-<UTC time>` for inspection.

    Returns:
      The new paths.
    """
    moved = []
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    for newer in [s for s in self.all_steps() if s > step]:
      dest = os.path.join(self.directory, f'unusable-{newer}-{stamp}')
      if atomic.is_writer():  # Process 0 of a multi-process run moves.
        os.replace(self.step_dir(newer), dest)
        logging.warning('moved unusable checkpoint step %d aside to %s',
                        newer, dest)
      moved.append(dest)
    atomic.barrier(f'set aside {self.directory}')
    if moved:
      self._manager.reload()
    return moved

  def restore_variables(self, template: Any,
                        step: int | None = None) -> dict[str, Any]:
    """Only the model variables of `step` (default newest), checked.

    No fallback to an older step: a finished run's newest step is the model
    its results describe, and an older one would be another model.

    Args:
      template: `{'params','batch_stats'}` of the expected model (arrays or
        `jax.ShapeDtypeStruct`s, e.g. from `jax.eval_shape(model.init, ...)`).
      step: which step.

    Returns:
      `{'params', 'batch_stats'}` in the template's structure.

    Raises:
      CheckpointError: missing step, or variables whose names or shapes
        differ from the template (another model or class count).
      CorruptCheckpointError: the step's files cannot be read.
    """
    step = self._require(step)
    self._check_model(step, template)
    try:
      tree = restore_variables(self.step_dir(step))  # The module function.
    except Exception as e:
      raise self._corrupt(step, 'its model variables cannot be read', e) from e
    want = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(want, jax.tree_util.tree_leaves(tree))

  def _restore_step(self, template: 'TrainState',
                    step: int) -> tuple['TrainState', dict[str, Any]]:
    abstract = jax.eval_shape(template.to_tree)
    self._check_model(step, template.variables, abstract)
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  meta=ocp.args.JsonRestore()))
    except Exception as e:  # Model and optimizer fit (checked): bad files.
      raise self._corrupt(step, 'its files cannot be read', e) from e
    try:
      state = template.from_tree(restored.state)
    except ValueError as e:
      raise CheckpointError(f'step {step} in {self.directory}: {e}') from e
    return state, dict(restored.meta)

  def _check_model(self, step: int, variables: Any,
                   whole: Any = None) -> None:
    """Compares saved shapes with `variables` (and the arrays of `whole`,
    the template's full tree) before reading any array.

    Raises:
      CheckpointError: another model, or another optimizer's state.
      CorruptCheckpointError: the array metadata cannot be read.
    """
    path = os.path.join(self.step_dir(step), 'state')
    # The item's own handler: shapes from the array metadata, without the
    # step-level metadata lookups that StandardCheckpointer warns about.
    reader = ocp.StandardCheckpointHandler()
    try:
      saved = reader.metadata(epath.Path(path))
      tree = getattr(saved, 'tree', saved)
      saved = {'params': tree['params'],
               'batch_stats': tree.get('batch_stats', {})}
    except Exception as e:
      raise self._corrupt(step, 'its array metadata cannot be read', e) from e
    finally:
      reader.close()
    want = {'params': variables['params'],
            'batch_stats': variables.get('batch_stats', {})}
    where = f'step {step} in {self.directory}'
    check_same_shapes(saved, want, where=where)
    if whole is not None:
      # Orbax gives optax's named tuples back as plain containers, so the
      # optimizer state is compared as a multiset of array shapes.
      have, need = (sorted(tuple(a.shape)
                           for a in jax.tree_util.tree_leaves(t))
                    for t in (tree, whole))
      if have != need:
        raise CheckpointError(
            f'{where} holds the state of another optimizer ({len(have)} '
            f'arrays saved, this one needs {len(need)}): restore it with the '
            'optimizer settings it was trained with')

  def _corrupt(self, step: int, what: str,
               cause: BaseException) -> CorruptCheckpointError:
    others = [s for s in self.all_steps() if s != step]
    return CorruptCheckpointError(
        f'checkpoint step {step} in {self.directory} is unusable: {what} '
        f'({quote_cause(cause)}); other complete steps: {others or "none"}')

  def _require_any(self) -> list[int]:
    steps = self.all_steps()
    if not steps:
      partial = self.partial_steps()
      note = (f' (the save of step(s) {sorted(partial)} was interrupted '
              'before it completed)' if partial else '')
      raise CheckpointError(f'no complete checkpoint in {self.directory}'
                            f'{note}')
    return steps

  def _require(self, step: int | None) -> int:
    steps = self._require_any()
    if step is None:
      return steps[-1]
    if step not in steps:
      partial = self.partial_steps()
      why = (f'its save was interrupted before it completed ({partial[step]} '
             'holds the partial files)' if step in partial
             else 'there is no such step')
      raise CheckpointError(
          f'step {step} is not a complete checkpoint in {self.directory}: '
          f'{why}; complete steps: {steps}')
    return step

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
