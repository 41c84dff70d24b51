"""The run skeleton every job shares, and the typed record it writes.

    check the workdir -> lock it -> reuse a finished run of the same
    fingerprint (or clear ours under --overwrite) -> body -> stamp the
    record (fingerprint, wall time) -> write results.json last, atomically

`run_once` is that sequence, once; a job gives it only its body, which
returns a `RunRecord`. The record is what results.json holds (the same keys
as ever, so older runs read back) and what the grid turns into report cells.
"""

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from nbajax import atomic, rundir
from nbajax.pipeline import common

_LOG = logging.getLogger(__name__)

# The metrics `evaluate.evaluate` gives (fractions), flat in results.json.
METRICS = ('acc', 'acc_nontarget', 'asr', 'ra')


@dataclasses.dataclass
class RunRecord:
  """The results of one job run (results.json).

  Attributes:
    role: 'clean', 'backdoored', 'teacher' or 'defended'.
    fingerprint: hash of the settings that determine the run.
    dataset, model: names (not recorded for teachers).
    attack, defense: names where the role has them.
    metrics: the final `METRICS` (a clean model: 'test_acc').
    history: per-epoch entries of the training.
    wall_seconds: time of the body (not of a reuse).
    config: the config (section) the run used.
    before, der: a defense's metrics before it and its DER.
    attack_spec, poisoned: what an attack run needs to rebuild its test set.
    clean_subset: a defense's clean-subset description.
    epochs: a clean model's epoch count.
  """

  role: str
  fingerprint: str = ''
  dataset: str | None = None
  model: str | None = None
  attack: str | None = None
  defense: str | None = None
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  wall_seconds: float | None = None
  config: dict[str, Any] | None = None
  before: dict[str, float] | None = None
  der: float | None = None
  attack_spec: dict[str, Any] | None = None
  poisoned: int | None = None
  clean_subset: dict[str, Any] | None = None
  epochs: int | None = None

  def to_json(self) -> dict[str, Any]:
    """results.json's dict: metrics flat, a defense's also under 'after'."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name != 'metrics' and getattr(self, f.name) is not None}
    out.update(self.metrics)
    if self.role == 'defended':
      out['after'] = dict(self.metrics)
    return out

  @classmethod
  def from_json(cls, done: dict[str, Any]) -> 'RunRecord':
    """The record of a results.json dict (keys it does not know ignored)."""
    names = {f.name for f in dataclasses.fields(cls)} - {'metrics'}
    metrics = {k: done[k] for k in (*METRICS, 'test_acc') if k in done}
    return cls(metrics=metrics,
               **{k: v for k, v in done.items() if k in names})


def run_once(workdir: str, *, fingerprint: str, label: str, overwrite: bool,
             body: Callable[[], RunRecord],
             reads: Sequence[str] = (), part_of: str | None = None,
             teachers: bool = False) -> dict[str, Any]:
  """Runs `body` in `workdir` unless a finished run of `fingerprint` is there.

  Args:
    workdir: the run directory.
    fingerprint: the settings' hash (`common.fingerprint`).
    label: the run's kind, for messages ('attack', 'nba', ...).
    overwrite: start over in a workdir holding a finished run.
    body: does the work and returns its record (fingerprint and wall time
      are filled in here).
    reads, part_of: see `rundir.check_workdir`.
    teachers: --overwrite also removes `teacher-*` runs (an attack's).

  Returns:
    The results.json dict (a reused run's as it was written).

  Raises:
    UserError: a bad workdir, the workdir in use, or a finished run that
      cannot be reused or replaced (see `common.reuse_or_start`).
  """
  rundir.check_workdir(workdir, reads=reads, part_of=part_of)
  # A multi-process run: every process has checked before process 0 locks.
  atomic.barrier(f'checked {workdir}')
  with rundir.locked(workdir):
    done = common.reuse_or_start(workdir, fingerprint, overwrite=overwrite,
                                 label=label, teachers=teachers)
    if done is not None:
      return done
    start = time.time()
    record = body()
    record.fingerprint = fingerprint
    record.wall_seconds = time.time() - start
    results = record.to_json()
    atomic.write_json(os.path.join(workdir, rundir.RESULTS_FILE), results)
    atomic.barrier(f'wrote {workdir}')  # The others read it from here on.
    _LOG.info('%s run finished in %.0fs; results in %s', label,
              record.wall_seconds, workdir)
    return results
