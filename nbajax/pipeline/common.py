"""Shared pieces of the jobs: data, model, optimizer, trainer, run files."""

import hashlib
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np

import nbajax
from nbajax import data as data_lib
from nbajax import atomic
from nbajax import models
from nbajax import rundir
from nbajax.atomic import json_default
from nbajax.pipeline.derive import to_dict
from nbajax.checkpoint import CheckpointError, Checkpointer
from nbajax.errors import UserError

_LOG = logging.getLogger(__name__)

RESULTS_FILE = rundir.RESULTS_FILE


def fingerprint(*parts: Any) -> str:
  """Stable short hash of JSON-able parts (identifies a run's settings)."""
  blob = json.dumps([to_dict(p) if isinstance(p, ml_collections.ConfigDict)
                     else p for p in parts], sort_keys=True,
                    default=json_default)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_fingerprint(config: ml_collections.ConfigDict, *tail: Any) -> str:
  """Fingerprint of a model trained from scratch: seed, data, model and
  train sections plus `tail` (role, attack); defense and grid fields do not
  change it, so they never block reuse or resume of a trained model."""
  return fingerprint(config.seed, config.data, model_section(config.model),
                     config.train, *tail)


def omit_added_fields(section: dict[str, Any],
                      added: dict[tuple[str, ...], Any]) -> dict[str, Any]:
  """`section` (`to_dict` form) as a fingerprint hashes it: without each
  field of `added` (its path of keys -> the value that does what runs saved
  before the field did) that holds that value, so those runs keep their
  fingerprints and any other value is a different run."""
  out = dict(section)
  for (head, *rest), before in added.items():
    if rest:
      if isinstance(out.get(head), dict):
        out[head] = omit_added_fields(out[head], {tuple(rest): before})
    elif head in out and out[head] == before:
      del out[head]
  return out


# `config.model` fields added after runs were saved (`omit_added_fields`).
MODEL_ADDED_FIELDS = {('compute_dtype',): 'float32'}


def model_section(model_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config.model` as a fingerprint hashes it: `compute_dtype` only when it
  is not 'float32' (the field came after runs were saved; a float32 model
  keeps the fingerprint it had without it)."""
  return omit_added_fields(to_dict(model_cfg), MODEL_ADDED_FIELDS)


def load_data(data_cfg: ml_collections.ConfigDict) -> 'data_lib.Dataset':
  """The data set a config names (`digits`, `npz` with a path, TFDS),
  without its validation images (`val_fraction`); its test split is the
  split `eval_split` names ('test' or 'val')."""
  kwargs = {}
  if data_cfg.path:
    kwargs['path'] = os.path.expanduser(data_cfg.path)
  if data_cfg.data_dir:
    kwargs['data_dir'] = os.path.expanduser(data_cfg.data_dir)
  dataset = data_lib.load_dataset(data_cfg.name, seed=data_cfg.split_seed,
                                  **kwargs)
  # seed + 1: a draw apart from the train/test split of sources without one.
  return data_lib.hold_out(dataset, fraction=float(data_cfg.val_fraction),
                           seed=int(data_cfg.split_seed) + 1,
                           eval_split=data_cfg.eval_split)


def build_model(model_cfg: ml_collections.ConfigDict,
                dataset: 'data_lib.Dataset'):
  """The model of a config, normalized with the data set's statistics, in
  its compute dtype (float32 for configs saved before the field)."""
  dtype = model_cfg.get('compute_dtype', 'float32')
  if model_cfg.normalize:
    return models.get_model(model_cfg.name, dataset.num_classes,
                            mean=tuple(dataset.mean), std=tuple(dataset.std),
                            dtype=dtype)
  return models.get_model(model_cfg.name, dataset.num_classes, dtype=dtype)


def base_meta(*, config: Any, dataset, model_name: str, role: str,
              fingerprint_: str, extra: dict[str, Any] | None = None
              ) -> dict[str, Any]:
  """The JSON metadata every checkpoint of a run carries (docs/design.md §4)."""
  return {
      'role': role,
      'model': model_name,
      'num_classes': int(dataset.num_classes),
      'image_shape': list(dataset.x_train.shape[1:]),
      'dataset': dataset.name,
      'config': to_dict(config),
      'fingerprint': fingerprint_,
      'nbajax_version': nbajax.__version__,
      'jax_version': jax.__version__,
      **(extra or {}),
  }


def checkpointer(workdir: str, sub: str = 'checkpoints', *,
                 keep: int = 2) -> Checkpointer:
  """The Orbax manager of `workdir/sub`."""
  return Checkpointer(os.path.join(workdir, sub), max_to_keep=keep)


def variables_template(model, dataset) -> Any:
  """Shapes of `model`'s variables for `dataset`'s images (no compute)."""
  dummy = jax.ShapeDtypeStruct((1, *dataset.x_train.shape[1:]), np.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x,
                                             train=False), dummy)


def restore_variables_of(ckpt: Checkpointer, model, dataset,
                         step: int | None = None) -> Any:
  """The model variables of a checkpoint, validated against `model`."""
  return ckpt.restore_variables(variables_template(model, dataset), step)


def recorded_run(workdir: str) -> dict[str, Any] | None:
  """What a run in `workdir` recorded: its results.json, else its newest
  checkpoint's metadata; None when there is none or it cannot be read
  (the run's own checks then name the problem)."""
  try:
    done = rundir.job_results(workdir)
  except UserError:
    return None
  ckpt_dir = os.path.join(workdir, rundir.CHECKPOINTS)
  if done is not None or not os.path.isdir(ckpt_dir):
    return done
  try:
    ckpt = Checkpointer(ckpt_dir)
    try:
      return ckpt.restore_meta() if ckpt.latest_step() is not None else None
    finally:
      ckpt.close()
  except CheckpointError:
    return None


def reuse_or_start(workdir: str, fp: str, *, overwrite: bool, label: str,
                   teachers: bool = False) -> Any:
  """Results of a finished run of the same settings, or None to run.

  With `overwrite`, the run's own results.json and checkpoints (and with
  `teachers` its `teacher-*` runs) are removed first, so the new run cannot
  resume from the old one; `rundir.remove_own` removes nothing nbajax did
  not write.

  Raises:
    UserError: `workdir` holds a finished run of other settings and
      `overwrite` is False; a results.json or checkpoint folder nbajax did
      not write; a finished run whose checkpoints are gone.
  """
  try:
    done = rundir.job_results(workdir)
  except UserError as e:
    raise UserError(f'{e}; nbajax will not overwrite it: choose another '
                    '--workdir') from e
  ours, foreign = rundir.own_checkpoints(
      os.path.join(workdir, rundir.CHECKPOINTS))
  if foreign and not overwrite:
    raise UserError(
        f'{workdir}/{rundir.CHECKPOINTS} holds files nbajax did not write '
        f'({", ".join(foreign[:3])}): choose another --workdir')
  if done is not None and not overwrite:
    if done['fingerprint'] != fp:
      raise UserError(
          f'{workdir} holds a finished run of other settings (fingerprint '
          f'{done["fingerprint"]}, this config {fp}); pass --overwrite or '
          'choose another --workdir')
    if not ours:
      raise UserError(
          f'{workdir} holds the results of a finished {label} run but its '
          'checkpoints are gone (ANP runs before nbajax saved their model '
          'left none); pass --overwrite to run it again, or, in a grid, '
          'remove that directory')
    _LOG.info('%s already holds this finished %s run; reusing it', workdir,
              label)
    return done
  if overwrite:
    removed = rundir.remove_own(workdir, teachers=teachers)
    if done is not None:
      if atomic.is_writer():
        os.remove(os.path.join(workdir, RESULTS_FILE))
      removed.append(os.path.join(workdir, RESULTS_FILE))
    for path in removed:
      _LOG.info('--overwrite: removed %s', path)
    # The other processes of a multi-process run go on once it is gone.
    atomic.barrier(f'overwrite {workdir}')
  return None
