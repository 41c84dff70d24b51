"""Run directories: what may be written where, what may be removed, locks.

Every job (train, attack, defend, grid, ablation, probe) writes into one
workdir. Three rules keep the user's files safe:

1. `check_workdir` before any work: the workdir is not `/`, not a file,
   not a path the system cannot hold, writable, not the run it reads from
   (nor inside it, nor around it), and not inside another job's run. It
   creates nothing.
2. `remove_own` is the only deletion, for `--overwrite`: it removes a
   checkpoint folder or a teacher run only when every entry in it is one
   nbajax wrote and says so (Orbax step folders whose metadata carry an
   nbajax fingerprint and version; a teacher's results.json); anything else
   there stops the job with a `UserError` and nothing is removed.
3. `locked(workdir)` holds an exclusive `fcntl` lock on
   `workdir/.nbajax.lock` for the whole job; a second process on the same
   workdir stops at once naming the holder. The lock dies with its process,
   so a killed run never leaves a stale lock behind.

Imports nothing of the project but `nbajax.errors` and `nbajax.atomic`.
One module (~400 lines) on purpose: every path by which nbajax may write,
remove or lock in a user's directory is here, so it is read and reviewed
in one place.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from nbajax import atomic
from nbajax.errors import UserError

RESULTS_FILE = 'results.json'
CHECKPOINTS = 'checkpoints'
LOCK_FILE = '.nbajax.lock'
# Roles a job writes into its results.json (a grid's is a list of cells).
JOB_ROLES = ('clean', 'backdoored', 'teacher', 'defended')

_STEP_RE = re.compile(r'^\d+$')
# `Checkpointer.set_aside_after`'s name for an unusable step.
_ASIDE_RE = re.compile(r'^unusable-\d+-\d{8}T\d{6}$')


# ------------------------------------------------------------ what is a run


def read_results(path: str) -> Any:
  """The JSON of a results file; UserError naming it when it is not JSON."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f'{path} is not a readable JSON results file ({e}); '
                    'it was not written by nbajax or was damaged') from e


def job_results(workdir: str) -> dict[str, Any] | None:
  """A job's finished results in `workdir`, or None when there are none.

  Raises:
    UserError: `workdir/results.json` exists but is not a job's (no
      fingerprint and role), e.g. a report's list of cells or a user's file.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  done = read_results(path)
  if (not isinstance(done, dict) or not isinstance(done.get('fingerprint'),
                                                     str)
      or done.get('role') not in JOB_ROLES):
    kind = type(done).__name__
    raise UserError(f'{path} is not the results of an nbajax job (a JSON '
                    f'{kind} without fingerprint and role)')
  return done


def is_job_run(path: str) -> bool:
  """Whether `path` holds a job's run: its results.json or checkpoints."""
  results = os.path.join(path, RESULTS_FILE)
  if os.path.isfile(results):
    try:
      return job_results(path) is not None
    except UserError:
      return False
  return bool(own_checkpoints(os.path.join(path, CHECKPOINTS))[0])


def own_checkpoints(directory: str) -> tuple[list[str], list[str]]:
  """(entries nbajax wrote, entries it did not) of a checkpoint folder."""
  if not os.path.isdir(directory):
    return [], []
  ours, foreign = [], []
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if _is_partial_step(path):
      ours.append(name)
    elif ((_STEP_RE.match(name) or _ASIDE_RE.match(name))
          and _has_our_meta(path)):
      ours.append(name)
    else:
      foreign.append(name)
  return ours, foreign


def _is_partial_step(path: str) -> bool:
  """A step Orbax began writing and never finished (it says so itself)."""
  if not (os.path.isdir(path) and '.' in os.path.basename(path)):
    return False
  import orbax.checkpoint as ocp  # Lazily: reports need no Orbax.
  return bool(ocp.utils.is_tmp_checkpoint(path))


def _has_our_meta(step_dir: str) -> bool:
  """Whether a step's JSON metadata carries nbajax's fingerprint."""
  try:
    with open(os.path.join(step_dir, 'meta', 'metadata'),
              encoding='utf-8') as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  return (isinstance(meta, dict) and 'fingerprint' in meta
          and 'nbajax_version' in meta)


# ------------------------------------------------------------ the checks


def _within(path: str, root: str) -> bool:
  return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_workdir(workdir: str, *, reads: Sequence[str] = (),
                  part_of: str | None = None, flag: str = '--workdir',
                  grid: bool = False) -> str:
  """Checks a job's workdir before any work; creates nothing.

  Args:
    workdir: where the job will write.
    reads: run directories the job reads (e.g. the backdoored model's); the
      workdir may be none of them, lie inside none, and contain none.
    part_of: a run this one belongs to (the attack run that holds its own
      clean model); it does not count as "another run".
    flag: how the user named the workdir, for the message.
    grid: the workdir of a grid (or an ablation), which writes its own
      results.json: it may not be a job's run.

  Returns:
    The absolute, normalized workdir.

  Raises:
    UserError: naming the workdir and what is wrong with it.
  """
  if not workdir:
    raise UserError(f'{flag} is empty: name a directory to write the run to')
  path = os.path.realpath(os.path.expanduser(workdir))
  if path == os.path.realpath(os.sep):
    raise UserError(f'{flag}={workdir}: the file system root cannot be a '
                    'run directory; name a directory for this run')
  _check_length(workdir, path, flag)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'{flag}={workdir} is a file, not a directory')
  _check_writable(workdir, path, flag)
  if grid and is_job_run(path):
    raise UserError(f'{flag}={workdir} is a job\'s run, not a grid: give the '
                    'grid a directory of its own')
  for read in reads:
    src = os.path.realpath(os.path.expanduser(read))
    if _within(path, src) or _within(src, path):
      where = ('is' if path == src else 'lies inside' if _within(path, src)
               else 'contains')
      raise UserError(f'{flag}={workdir} {where} the run it reads ({read}): '
                      'write this run to a directory of its own')
  owner = part_of and os.path.realpath(part_of)
  parent = os.path.dirname(path)
  while parent != os.path.dirname(parent):
    if parent != owner and is_job_run(parent):
      raise UserError(f'{flag}={workdir} lies inside another run ({parent}); '
                      'choose a directory outside it')
    parent = os.path.dirname(parent)
  return path


def _check_length(given: str, path: str, flag: str) -> None:
  try:
    name_max = os.pathconf('/', 'PC_NAME_MAX')
    path_max = os.pathconf('/', 'PC_PATH_MAX')
  except (OSError, ValueError):
    name_max, path_max = 255, 4096
  # Room for the deepest file a run writes below its workdir.
  if len(path) + 64 > path_max:
    raise UserError(f'{flag} is too long ({len(path)} characters; this '
                    f'system holds paths of up to {path_max})')
  for part in path.split(os.sep):
    if len(part.encode()) > name_max:
      raise UserError(f'{flag}={given[:60]}...: the name {part[:40]}... is '
                      f'{len(part.encode())} bytes; this file system allows '
                      f'{name_max}')


def _check_writable(given: str, path: str, flag: str) -> None:
  """The workdir, or its nearest existing ancestor, is a writable dir."""
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f'{flag}={given}: {probe} is a file, so the directory '
                    'cannot be made')
  if not os.access(probe, os.W_OK | os.X_OK):
    what = 'is' if probe == path else f'would be made in {probe}, which is'
    raise UserError(f'{flag}={given} {what} not writable')


# ------------------------------------------------------------ overwrite


def remove_own(workdir: str, *, teachers: bool = False) -> list[str]:
  """For --overwrite: removes the checkpoints (and teacher runs) nbajax wrote.

  Checks everything first and removes only when all of it is nbajax's, so a
  refusal leaves the disk as it was.

  Args:
    workdir: a job's workdir.
    teachers: also remove `teacher-*` runs (an attack's, whose teachers
      were fine-tuned from the model being replaced).

  Returns:
    The removed paths.

  Raises:
    UserError: naming the first entry nbajax did not write.
  """
  doomed = []
  ckpt = os.path.join(workdir, CHECKPOINTS)
  if os.path.lexists(ckpt):
    doomed.append(_proven_checkpoints(ckpt))
  if teachers and os.path.isdir(workdir):
    for name in sorted(os.listdir(workdir)):
      if name.startswith('teacher-'):
        doomed.append(_proven_teacher(os.path.join(workdir, name)))
  if atomic.is_writer():  # Process 0 of a multi-process run removes.
    for path in doomed:
      shutil.rmtree(path)
  return doomed


def _proven_checkpoints(path: str) -> str:
  if os.path.islink(path) or not os.path.isdir(path):
    raise UserError(f'{path} is not a checkpoint folder nbajax wrote; '
                    '--overwrite removes only what nbajax wrote: move it '
                    'away or choose another --workdir')
  foreign = own_checkpoints(path)[1]
  if foreign:
    raise UserError(
        f'{path} holds files nbajax did not write ({", ".join(foreign[:3])}'
        f'{"..." if len(foreign) > 3 else ""}); --overwrite removes only what '
        'nbajax wrote: move them away or choose another --workdir')
  return path


def _proven_teacher(path: str) -> str:
  foreign = (sorted(n for n in os.listdir(path)
                    if n not in (CHECKPOINTS, RESULTS_FILE, LOCK_FILE))
             if os.path.isdir(path) and not os.path.islink(path) else ['.'])
  if os.path.isfile(os.path.join(path, RESULTS_FILE)):
    try:
      done = job_results(path)
    except UserError:
      done = None
    if done is None or done.get('role') != 'teacher':
      foreign.append(RESULTS_FILE)
  if foreign:
    raise UserError(f'{path} is not a teacher run nbajax wrote ({foreign[0]}); '
                    '--overwrite removes only what nbajax wrote: move it away '
                    'first')
  ckpt = os.path.join(path, CHECKPOINTS)
  if os.path.lexists(ckpt):
    _proven_checkpoints(ckpt)
  return path


# ------------------------------------------------------------ reports

REPORT_MARK = '.nbajax-report'  # In an outdir `nbajax.report` made.


def check_report_outdir(outdir: str, outputs: Sequence[str]) -> str:
  """Checks that a report may write `outputs` (file names) into `outdir`.

  A report writes only into a new or empty folder, or one an earlier
  report made: never into a job's run or a grid (whose results.json the
  jobs read), never over files something else wrote.

  Returns:
    The absolute outdir.

  Raises:
    UserError: naming the clash.
  """
  path = check_workdir(outdir, flag='--outdir')
  if is_job_run(path):
    raise UserError(f'--outdir {outdir} is a job\'s run directory; a report '
                    'never writes into a run: choose another --outdir')
  if os.path.isfile(os.path.join(path, REPORT_MARK)):
    return path
  clash = [n for n in outputs if os.path.lexists(os.path.join(path, n))]
  if clash:
    raise UserError(f'--outdir {outdir} already holds {", ".join(clash)}, not '
                    'written by nbajax.report (a grid\'s report?); choose '
                    'another --outdir')
  return path


def mark_report_outdir(outdir: str) -> None:
  """Records that `nbajax.report` writes into `outdir` (made if absent)."""
  if not atomic.is_writer():
    return
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, REPORT_MARK), 'w', encoding='utf-8') as f:
    f.write('written by python -m nbajax.report\n')


# ------------------------------------------------------------ the lock

_HELD: dict[str, list[Any]] = {}  # realpath -> [file object, depth]


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[str]:
  """Holds the workdir's lock (made if absent) for the `with` block.

  Re-entrant within a process. Call `check_workdir` first: this creates the
  workdir. On release the lock file goes away, and so does the workdir when
  this call made it and nothing was written there.

  Yields:
    The absolute workdir.

  Raises:
    UserError: another process holds the lock (its pid, host, command and
      start time are named).
  """
  path = os.path.realpath(workdir)
  if not atomic.is_writer():  # Process 0 of a multi-process run holds it.
    yield path
    return
  if path in _HELD:
    _HELD[path][1] += 1
    try:
      yield path
    finally:
      _HELD[path][1] -= 1
    return
  made = not os.path.isdir(path)
  os.makedirs(path, exist_ok=True)
  f = _acquire(os.path.join(path, LOCK_FILE), workdir)
  _HELD[path] = [f, 1]
  try:
    yield path
  finally:
    del _HELD[path]
    with contextlib.suppress(FileNotFoundError):  # Removed by hand meanwhile.
      os.remove(f.name)  # Under the lock: a late opener re-checks (_acquire).
    f.close()
    if made and not os.listdir(path):
      os.rmdir(path)


def _acquire(lock_path: str, workdir: str):
  """The open, exclusively locked lock file; UserError when it is held."""
  while True:
    f = open(lock_path, 'a+', encoding='utf-8')
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      f.seek(0)
      holder = f.read().strip() or 'another process'
      f.close()
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise UserError(f'{workdir} is in use by {holder}; wait for it to end '
                      'or choose another --workdir') from None
    try:  # The holder may have removed the file between our open and lock.
      same = os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    f.close()
  f.seek(0)
  f.truncate()
  f.write(f'pid {os.getpid()} on {socket.gethostname()} since '
          f'{time.strftime("%Y-%m-%d %H:%M:%S")} '
          f"({os.path.basename(sys.argv[0]) if sys.argv else 'python'})\n")
  f.flush()
  return f
