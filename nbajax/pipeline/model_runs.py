"""Models trained from scratch in a run directory, for the jobs that need one.

`train_model` trains `config.model` on given arrays (clean or poisoned) with
per-epoch checkpoints and resume; `clean_model` is the whole clean-model run
(checks, lock, reuse, train, evaluate, results.json), used by the train job
and by the attack job for the clean model Trojan and CL need.
"""

import logging
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from nbajax import training
from nbajax.training import from_config
from nbajax.pipeline import common, evaluate, record, validate

_LOG = logging.getLogger(__name__)


def train_model(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    dataset,
    x_train: np.ndarray,
    y_train: np.ndarray,
    role: str,
    fingerprint_: str,
    extra_meta: dict[str, Any] | None = None,
    eval_fn: Callable[[Any, Any], dict[str, float]] | None = None,
):
  """Trains `config.model` on (x_train, y_train) with `config.train`.

  Checkpoints every epoch to `workdir/checkpoints` and resumes from there.

  Args:
    config: full experiment config (`seed`, `model`, `train`, ...).
    workdir: run directory.
    dataset: the source Dataset (metadata, normalization).
    x_train: uint8 [N,H,W,C] training images (possibly poisoned).
    y_train: int [N] labels.
    role: 'clean' or 'backdoored' (goes into the metadata).
    fingerprint_: identifies the run's settings; a checkpoint of another
      fingerprint in `workdir` is refused instead of resumed.
    extra_meta: more JSON metadata (the attack spec, ...).
    eval_fn: `(apply_fn, variables) -> metrics` after every epoch.

  Returns:
    (model, final TrainState, history, metadata).
  """
  opt = config.train
  model = common.build_model(config.model, dataset)
  trainer = from_config.trainer(training.make_ce_loss(model), opt)
  tx = from_config.optimizer(
      opt, steps_per_epoch=trainer.steps_per_epoch(len(x_train)))
  key = jax.random.key(int(config.seed))
  init_key, run_key = jax.random.split(key)
  state = training.create_train_state(model, tx, init_key,
                                      tuple(x_train.shape[1:]))
  meta = common.base_meta(config=config, dataset=dataset,
                          model_name=config.model.name, role=role,
                          fingerprint_=fingerprint_, extra=extra_meta)
  ckpt = common.checkpointer(workdir, keep=int(config.keep_checkpoints))
  evaluate = (lambda s: eval_fn(model.apply, s.variables)) if eval_fn else None
  state, history = training.fit(
      state, x_train, y_train, trainer=trainer, epochs=int(opt.epochs),
      key=run_key, checkpointer=ckpt, meta=meta, eval_fn=evaluate, name=role,
      eval_every=int(config.eval_every))
  ckpt.close()
  return model, state, history, meta


def clean_model(config: ml_collections.ConfigDict, workdir: str, *,
                overwrite: bool = False,
                part_of: str | None = None) -> dict[str, Any]:
  """A clean model run: reused when finished, trained and evaluated if not.

  Args:
    config: experiment config.
    workdir: run directory; a finished run of the same config is reused.
    overwrite: start over even when `workdir` holds a finished run.
    part_of: the run this clean model belongs to (an attack run keeps the
      clean model Trojan and CL need inside its own workdir).

  Returns:
    The results dict written to `workdir/results.json`.

  Raises:
    UserError: a bad config or workdir, or the workdir in use.
  """
  validate.validate_config(config, job='train')
  fp = common.training_fingerprint(config, 'clean')
  return record.run_once(
      workdir, fingerprint=fp, label='clean-model', overwrite=overwrite,
      part_of=part_of,
      body=lambda: _clean_model(config, workdir, fp))


def _clean_model(config, workdir, fp) -> record.RunRecord:
  dataset = common.load_data(config.data)
  validate.validate_against_data(config, dataset, job='train')
  eval_fn = evaluate.eval_callback(evaluate.make_eval_sets(dataset),
                                   batch_size=int(config.eval_batch_size))
  _, _, history, meta = train_model(
      config, workdir, dataset=dataset, x_train=dataset.x_train,
      y_train=dataset.y_train, role='clean', fingerprint_=fp, eval_fn=eval_fn)
  _LOG.info('test accuracy %.2f%%; results in %s',
            100 * history[-1]['test_acc'], workdir)
  return record.RunRecord(
      role='clean', dataset=dataset.name, model=config.model.name,
      metrics={'test_acc': history[-1]['test_acc']}, epochs=len(history),
      history=history, config=meta['config'])
