"""The attack job: poison the training set, train the backdoored model.

Layout of an attack workdir:

    workdir/clean/          clean model (trojan, cl), an `experiments.train` run
    workdir/checkpoints/    the backdoored model (Orbax; metadata holds the
                            prepared attack spec, poison seed, indices hash)
    workdir/results.json    ACC, ACC-non-target, ASR, RA, history
    workdir/trigger.png     clean vs triggered test images
"""

import logging
import os
from typing import Any, Callable

import jax
import ml_collections

from nbajax import atomic, attacks, rundir
from nbajax.attacks import figures, poison
from nbajax.checkpoint import Checkpointer
from nbajax.errors import UserError
from nbajax.pipeline import (common, derive, evaluate, model_runs, record,
                             validate)

_LOG = logging.getLogger(__name__)

def clean_model_fn(config, workdir: str, dataset) -> Callable:
  """Eval-mode closure of a clean model: restored or trained in workdir."""
  given = config.attack.clean_model_dir
  source = given or os.path.join(workdir, 'clean')
  _LOG.info('clean model for %s: %s', config.attack.name, source)
  if given:
    done = rundir.job_results(given)
    if done is not None and done['fingerprint'] != common.training_fingerprint(
        config, 'clean'):
      raise UserError(
          f'config.attack.clean_model_dir={given} holds a clean model of other '
          'settings (seed, data, model or train differ from this config): '
          'point it at a clean model of these settings, or leave it empty to '
          'train one inside the attack run')
  # Reuses a finished run of these settings, trains one otherwise.
  model_runs.clean_model(config, source, part_of=workdir)
  model = common.build_model(config.model, dataset)
  ckpt = Checkpointer(os.path.join(source, 'checkpoints'))
  variables = jax.device_get(
      common.restore_variables_of(ckpt, model, dataset))
  return jax.jit(lambda x: model.apply(variables, x, train=False))


def run_attack(config: ml_collections.ConfigDict, workdir: str, *,
               overwrite: bool = False) -> dict[str, Any]:
  """Trains the backdoored model of `config.attack` and evaluates it.

  Returns:
    results dict (also in `workdir/results.json`): acc, acc_nontarget, asr,
    ra (fractions), history, attack spec, poisoned count, wall time.

  Raises:
    UserError: a bad config or workdir, or the workdir in use.
  """
  validate.validate_config(config, job='attack')
  given = config.attack.clean_model_dir
  fp = fingerprint(config, workdir)
  # Teachers were fine-tuned from the model an overwrite replaces.
  return record.run_once(
      workdir, fingerprint=fp, label='attack', overwrite=overwrite,
      teachers=True, reads=(given,) if given else (),
      body=lambda: _attack(config, workdir, fp))


def fingerprint(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The backdoored model's fingerprint: seed, data, model, train (with
  `attack.epochs`) and the attack fields but the clean model's directory,
  so a grid's runs stay reusable when the grid's directory moves.

  Runs made before hashed `attack.clean_model_dir` as well (in a grid, the
  grid's directory, for every attack). A run in `workdir` whose recorded
  fingerprint is that older one of these same settings, recomputed with
  the directory it recorded, keeps it: it is reused or resumed, not
  refused.
  """
  train = derive.backdoor_config(config)
  fields = derive.backdoor_attack_fields(config)
  recorded = common.recorded_run(workdir) or {}
  old_dir = ((recorded.get('config') or {}).get('attack') or {}).get(
      'clean_model_dir')
  if old_dir is not None:
    older = common.training_fingerprint(
        train, {**fields, 'clean_model_dir': old_dir}, 'backdoored')
    if recorded.get('fingerprint') == older:
      return older
  return common.training_fingerprint(train, fields, 'backdoored')


def _attack(config, workdir, fp) -> record.RunRecord:
  a = config.attack
  dataset = common.load_data(config.data)
  validate.validate_against_data(config, dataset, job='attack')
  attack = attacks.get_attack(a.name, **derive.attack_params(a))
  clean_fn = (clean_model_fn(config, workdir, dataset)
              if a.name in derive.NEEDS_CLEAN_MODEL else None)
  result = poison.poison_dataset(
      dataset.x_train, dataset.y_train, attack, rate=float(a.rate),
      target=int(a.target), mode=a.mode, seed=int(a.seed), clean_fn=clean_fn,
      num_classes=dataset.num_classes)
  _LOG.info('%s: poisoned %d of %d training images (target %s, %s)',
            a.name, len(result.indices), len(dataset.y_train), a.target,
            a.mode)
  sets = evaluate.make_eval_sets(dataset, result.attack, target=int(a.target),
                                 mode=a.mode)
  spec = attack_spec(config, result)
  eval_bs = int(config.eval_batch_size)
  trained_with = derive.backdoor_config(config)  # attack.epochs applied.
  model, state, history, _ = model_runs.train_model(
      trained_with, workdir, dataset=dataset, x_train=result.x,
      y_train=result.y, role='backdoored', fingerprint_=fp, extra_meta={'attack': spec},
      eval_fn=evaluate.eval_callback(sets, batch_size=eval_bs))
  final = evaluate.evaluate(model.apply, state.variables, sets,
                            batch_size=eval_bs)
  if atomic.is_writer():  # Process 0 of a multi-process run.
    save_trigger_figure(sets, os.path.join(workdir, 'trigger.png'),
                        title=f'{a.name} on {dataset.name}')
  _LOG.info('%s: ACC %.2f%%  ASR %.2f%%  RA %.2f%%', a.name,
            100 * final['acc'], 100 * final['asr'], 100 * final['ra'])
  return record.RunRecord(
      role='backdoored', attack=a.name, dataset=dataset.name,
      model=config.model.name, metrics=final,
      poisoned=int(len(result.indices)), history=history,
      config=derive.to_dict(trained_with), attack_spec=spec)


def attack_spec(config, result: poison.PoisonResult) -> dict[str, Any]:
  """What any later run needs to rebuild the exact triggered test set."""
  return {'attack': result.attack.to_config(), 'rate': float(config.attack.rate),
          'target': int(config.attack.target), 'mode': config.attack.mode,
          'seed': int(config.attack.seed),
          'poisoned': int(len(result.indices)),
          'indices_sha256': poison.indices_hash(result.indices),
          'cross': int(len(result.cross_indices))}


def save_trigger_figure(sets: evaluate.EvalSets, path: str, *, title: str,
                        count: int = 8) -> None:
  """PNG of the first `count` triggered test images beside their originals."""
  n = min(count, len(sets.x_trig))
  figures.save_trigger_figure(sets.x_test[sets.trig_index[:n]],
                              sets.x_trig[:n], path, title=title)
