"""Orbax checkpoints of a run: train state plus JSON metadata per step.

Layout (an Orbax `CheckpointManager` directory):

    workdir/checkpoints/<step>/state/   params, batch_stats, opt_state, step
    workdir/checkpoints/<step>/meta/    JSON: model, num_classes, dataset,
                                        attack spec, defense, config, version,
                                        per-epoch history

Model variables come back with plain Orbax, without nbajax:

    import orbax.checkpoint as ocp
    tree = ocp.StandardCheckpointer().restore('<workdir>/checkpoints/<step>/state')
    variables = {'params': tree['params'], 'batch_stats': tree['batch_stats']}

Writes are atomic (Orbax writes to a temporary directory and renames it when
complete), so a crash during a save leaves the previous steps intact.

Resume order: the newest step whose save finished; each step of a run is
the state after that many epochs.
"""

import json
import os
from typing import TYPE_CHECKING, Any

import jax
import orbax.checkpoint as ocp

if TYPE_CHECKING:  # Runtime import would be circular (training -> here).
  from nbajax.training.state import TrainState


class CheckpointError(RuntimeError):
  """A checkpoint is missing, incomplete, corrupted or of another model."""


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
    """Writes step `step` and waits until it is on disk.

    Args:
      step: checkpoint number (epochs completed).
      state: the train state.
      meta: JSON-serializable metadata.
    """
    json.dumps(meta)  # Fail before writing anything if meta is not JSON.
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
      raise CheckpointError(
          f'cannot read metadata of step {step} in {self.directory}: {e}') from e
    return dict(restored.meta)

  def restore(self, template: 'TrainState',
              step: int | None = None) -> tuple['TrainState', dict[str, Any]]:
    """Restores `step` (default newest) into the structure of `template`.

    Args:
      template: a TrainState of the same model and optimizer (its values are
        ignored; shapes and dtypes are checked against the checkpoint).
      step: which step.

    Returns:
      (restored state, metadata).

    Raises:
      CheckpointError: missing step, corrupted files, or a checkpoint of
        another model / number of classes.
    """
    step = self._require(step)
    abstract = jax.eval_shape(template.to_tree)
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  meta=ocp.args.JsonRestore()))
    except Exception as e:
      raise CheckpointError(
          f'cannot restore step {step} from {self.directory} into this model '
          f'(another model, number of classes or optimizer, or a corrupted '
          f'checkpoint): {e}') from e
    try:
      state = template.from_tree(restored.state)
    except ValueError as e:
      raise CheckpointError(str(e)) from e
    return state, dict(restored.meta)

  def restore_variables(self, template: Any,
                        step: int | None = None) -> dict[str, Any]:
    """Only the model variables of `step` (default newest), checked.

    Args:
      template: `{'params','batch_stats'}` of the expected model (arrays or
        `jax.ShapeDtypeStruct`s, e.g. from `jax.eval_shape(model.init, ...)`).
      step: which step.

    Returns:
      `{'params', 'batch_stats'}` in the template's structure.

    Raises:
      CheckpointError: missing/corrupted step, or variables whose names or
        shapes differ from the template (another model or class count).
    """
    step = self._require(step)
    try:
      tree = restore_variables(self.step_dir(step))
    except Exception as e:
      raise CheckpointError(
          f'cannot read step {step} in {self.directory}: {e}') from e
    check_same_shapes(tree, template, where=self.step_dir(step))
    want = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(want, jax.tree_util.tree_leaves(tree))

  def _require(self, step: int | None) -> int:
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise CheckpointError(f'no complete checkpoint in {self.directory}')
      return steps[-1]
    if step not in steps:
      raise CheckpointError(
          f'step {step} is not a complete checkpoint in {self.directory}; '
          f'complete steps: {steps}')
    return step

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def restore_variables(step_dir: str | os.PathLike) -> dict[str, Any]:
  """Model variables of one step directory with plain Orbax (no template).

  Args:
    step_dir: `<workdir>/checkpoints/<step>`.

  Returns:
    {'params': ..., 'batch_stats': ...} as host/device arrays.
  """
  tree = ocp.StandardCheckpointer().restore(
      os.path.join(os.fspath(step_dir), 'state'))
  return {'params': tree['params'], 'batch_stats': tree['batch_stats']}


def check_same_shapes(tree: Any, template: Any, *, where: str) -> None:
  """Raises CheckpointError naming the first variable that differs."""
  have = {jax.tree_util.keystr(k): v.shape
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  want = {jax.tree_util.keystr(k): v.shape
          for k, v in jax.tree_util.tree_leaves_with_path(template)}
  for name in sorted(set(have) | set(want)):
    if have.get(name) != want.get(name):
      raise CheckpointError(
          f'{where} does not fit this model: variable {name} has shape '
          f'{have.get(name)} in the checkpoint and {want.get(name)} in the '
          'model (another architecture or number of classes?)')
