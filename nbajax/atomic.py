"""The project's one atomic file writer, and who writes.

Every file nbajax writes outside Orbax (results, tables, figures, reports)
goes to a temporary file in the same folder, is flushed to disk and moved
into place with `os.replace`: a reader, or a crash, never sees half a file,
and an older complete file survives a failed write.

In a run of several processes (`nbajax.training.distributed`) every process
computes the same results but only process 0 writes them: `set_process`
records this process's place, `write_atomic` writes nothing elsewhere, and
`barrier` lets the others wait until process 0's files are there.

Imports nothing of the project.
"""

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

# mkstemp makes 0600 files; results are shared, so give them the mode a plain
# open() would (read once: os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


_PROCESS = {'index': 0, 'count': 1}


def set_process(index: int, count: int) -> None:
  """This process's index among `count` processes of one run."""
  if not 0 <= index < count:
    raise ValueError(f'process {index} of {count}')
  _PROCESS.update(index=index, count=count)


def is_writer() -> bool:
  """Whether this process writes files (process 0, or the only one)."""
  return _PROCESS['index'] == 0


def barrier(name: str) -> None:
  """Every process of a multi-process run waits here for the others (a
  no-op in a run of one process)."""
  if _PROCESS['count'] > 1:
    from jax.experimental import multihost_utils  # Only when distributed.
    multihost_utils.sync_global_devices(name)


def write_atomic(path: str, write: Callable[[BinaryIO], Any]) -> str:
  """Calls `write(file)` on a temporary file, then renames it to `path`
  (in process 0 only of a multi-process run: see `set_process`).

  Args:
    path: destination; its folder must exist.
    write: writes the content to the binary file object it gets.

  Returns:
    `path`.
  """
  if not is_writer():
    return path
  folder, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      os.fchmod(f.fileno(), 0o666 & ~_UMASK)
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  return path


def write_text_atomic(path: str, text: str) -> str:
  """Writes UTF-8 text atomically; returns `path`."""
  return write_atomic(path, lambda f: f.write(text.encode('utf-8')))


def json_default(obj: Any) -> Any:
  """`json.dump`'s `default`: NumPy scalars and arrays as Python numbers and
  lists, tuples as lists."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, tuple):
    return list(obj)
  raise TypeError(f'not JSON-serializable: {type(obj).__name__}')


def write_json(path: str, obj: Any) -> str:
  """Writes `obj` as indented, key-sorted JSON atomically (folder made)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  text = json.dumps(obj, indent=2, sort_keys=True, default=json_default)
  return write_text_atomic(path, text)
