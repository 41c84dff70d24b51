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

Writes are atomic: Orbax writes a step into `<step>.orbax-checkpoint-tmp`
and renames it to `<step>` when complete, so a crash during a save leaves
the previous steps intact and the partial one is never listed (the next save
of that step removes it).

What goes wrong, and what happens (every error is a `CheckpointError` that
names the step and the directory; the other steps stay usable):

* a step that was never completed (a crash mid-save): named as such;
* a corrupted step (truncated or missing files): `CorruptCheckpointError`;
  `Checkpointer.restore` without a step falls back to the newest step that
  restores and logs each one it skipped;
* a checkpoint of another model or number of classes: the first variable
  whose shape differs is named; of another optimizer: the array counts; no
  fallback in either case (every step would differ).

Resume order (`Checkpointer.restore_newest`, used by training): the newest
step that restores; each step of a run is the state after that many epochs.
Newer unusable steps are moved aside (`unusable-<step>-<time>`), never
deleted, so that training can write those steps again.
"""

from nbajax.checkpoint._errors import CheckpointError, CorruptCheckpointError
from nbajax.checkpoint._manager import Checkpointer, TrainState
from nbajax.checkpoint._plain import check_same_shapes, restore_variables

__all__ = ['CheckpointError', 'Checkpointer', 'CorruptCheckpointError',
           'TrainState', 'check_same_shapes', 'restore_variables']
