"""Reading a step with plain Orbax, and the shape comparison that names
the first variable of another model."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from nbajax.checkpoint._errors import (CheckpointError, CorruptCheckpointError,
                                       quote_cause)


def restore_variables(step_dir: str | os.PathLike) -> dict[str, Any]:
  """Model variables of one step directory with plain Orbax (no template).

  Args:
    step_dir: `<workdir>/checkpoints/<step>`.

  Returns:
    {'params': ..., 'batch_stats': ...} as host/device arrays.

  Raises:
    CheckpointError: the directory is missing or cannot be read.
  """
  path = os.path.join(os.fspath(step_dir), 'state')
  if not os.path.isdir(path):
    raise CheckpointError(f'{step_dir} is not a complete checkpoint step '
                          f'({path} is missing)')
  tree = _read_state(path, step_dir)
  return {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {})}


def _read_state(path: str, step_dir: Any) -> Any:
  """Plain-Orbax restore of a state item; CorruptCheckpointError if bad.

  On a corrupted step TensorStore may also print 'Event loop is closed'
  tracebacks from its reads still in flight (Orbax's synchronous API closes
  its event loop on the first failure); they are harmless.
  """
  try:
    with ocp.StandardCheckpointer() as reader:
      return reader.restore(path)
  except Exception as e:
    raise CorruptCheckpointError(
        f'{step_dir} cannot be read: {quote_cause(e)}') from e


def check_same_shapes(tree: Any, template: Any, *, where: str) -> None:
  """Raises CheckpointError naming the first variable that differs."""
  have = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(template)}
  for name in sorted(set(have) | set(want)):
    if have.get(name) != want.get(name):
      raise CheckpointError(
          f'{where} does not fit this model: variable {name} has shape '
          f'{have.get(name)} in the checkpoint and {want.get(name)} in the '
          'model (a checkpoint of another model or number of classes?)')
