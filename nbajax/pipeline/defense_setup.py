"""What every defense of one backdoored model shares: `DefenseSetup`.

The backdoored model (restored from an attack run), its attack's evaluation
sets and metrics before defense, the seeded clean subset, and the teacher
(the backdoored model fine-tuned on that subset, made once in
`backdoor_dir/teacher-<fp>/` and reused by NAD, NBA and the probe). Used by
the defend and probe jobs and shared across a grid's defenses.
"""

import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from nbajax import atomic, defenses, rundir
from nbajax.attacks import poison
from nbajax.checkpoint import Checkpointer
from nbajax.data import clean_subset_indices
from nbajax.errors import UserError
from nbajax.pipeline import common, derive, evaluate, validate

_LOG = logging.getLogger(__name__)


def load_backdoor(backdoor_dir: str) -> dict[str, Any]:
  """Results of a finished attack run (config and attack spec inside).

  Raises:
    UserError: `backdoor_dir` holds no finished attack run.
  """
  path = os.path.join(backdoor_dir, common.RESULTS_FILE)
  if not os.path.isfile(path):
    raise UserError(
        f'{backdoor_dir} holds no finished attack run ({path} is missing): '
        'run `python -m experiments.attack` first')
  try:
    done = rundir.job_results(backdoor_dir)
  except UserError as e:
    raise UserError(f'--backdoor_dir {backdoor_dir}: {e}') from e
  if done.get('role') != 'backdoored':
    raise UserError(f'{backdoor_dir} is a {done.get("role")!r} run, not a '
                    'backdoored one')
  missing = [k for k in ('config', 'attack_spec') if k not in done]
  if missing:
    raise UserError(f'{path} lacks {missing}: not an attack run nbajax '
                    'wrote, or one of an older version')
  return done


def clean_subset(dataset, cfg: ml_collections.ConfigDict) -> np.ndarray:
  """The defender's seeded, class-stratified clean training indices."""
  return clean_subset_indices(dataset.y_train,
                              fraction=float(cfg.clean_fraction),
                              seed=int(cfg.clean_seed))


# Defense fields a DefenseSetup is built from: runs that share one must agree
# on them (the clean subset and the teacher).
SHARED_FIELDS = ('clean_fraction', 'clean_seed', 'teacher')


class DefenseSetup:
  """Everything one backdoored model's defenses share (built once).

  Attributes:
    config: the backdoor run's config with `defense` from the caller.
    dataset, model, variables: data set, module, backdoored variables.
    spec: attack spec; sets: evaluation sets; before: metrics before.
    idx: clean-subset indices into the training set.
  """

  def __init__(self, config: ml_collections.ConfigDict, backdoor_dir: str):
    self.backdoor_dir = backdoor_dir
    done = load_backdoor(backdoor_dir)
    self.backdoor_fp = done['fingerprint']
    base = ml_collections.ConfigDict(done['config'])
    # Data, model and attack are the backdoor run's; the defense is ours.
    self.config = base.copy_and_resolve_references()
    self.config.defense = config.defense
    self.config.eval_batch_size = config.eval_batch_size
    self.spec = done['attack_spec']
    self.dataset = common.load_data(base.data)
    validate.validate_against_data(self.config, self.dataset, job='defend')
    self.model = common.build_model(base.model, self.dataset)
    ckpt = Checkpointer(os.path.join(backdoor_dir, 'checkpoints'))
    self.variables = jax.device_get(
        common.restore_variables_of(ckpt, self.model, self.dataset))
    attack = derive.attack_from_spec(self.spec)
    self.sets = evaluate.make_eval_sets(
        self.dataset, attack, target=int(self.spec['target']),
        mode=self.spec['mode'])
    self.idx = clean_subset(self.dataset, config.defense)
    self.eval_bs = int(self.config.eval_batch_size)
    self.before = evaluate.evaluate(self.model.apply, self.variables,
                                    self.sets, batch_size=self.eval_bs)

  @property
  def model_name(self) -> str:
    return self.config.model.name

  def serves(self, config: ml_collections.ConfigDict) -> bool:
    """Whether a defense of `config` has this clean subset and teacher."""
    mine, theirs = self.config.defense, config.defense
    return all(derive.to_dict(mine.get(k)) == derive.to_dict(theirs.get(k))
               for k in SHARED_FIELDS) and self.eval_bs == int(
                   config.eval_batch_size)

  def subset_meta(self) -> dict[str, Any]:
    return {'fraction': float(self.config.defense.clean_fraction),
            'seed': int(self.config.defense.clean_seed),
            'count': int(len(self.idx)),
            'indices_sha256': poison.indices_hash(self.idx)}

  def context(self, *, name: str, workdir: str, key_seed: int,
              teacher=None, fp: str, role: str,
              defense: ml_collections.ConfigDict | None = None
              ) -> tuple[defenses.DefenseInputs, dict[str, Any]]:
    """The inputs of one defense run and the hooks its training gets
    (checkpoints in `workdir`, metadata, evaluation, logging; see
    `defenses.run`); `defense` (default the setup's) is the defense config
    its checkpoints record."""
    config = self.config
    if defense is not None:
      config = config.copy_and_resolve_references()
      config.defense = defense
    meta = common.base_meta(
        config=config, dataset=self.dataset, model_name=self.model_name,
        role=role, fingerprint_=fp,
        extra={'attack': self.spec, 'defense': name,
               'clean_subset': self.subset_meta(),
               'backdoor_dir': os.path.abspath(self.backdoor_dir)})
    inputs = defenses.DefenseInputs(
        model=self.model, model_name=self.model_name,
        variables=self.variables, x_clean=self.dataset.x_train[self.idx],
        y_clean=self.dataset.y_train[self.idx],
        key=jax.random.key(key_seed), teacher=teacher)
    hooks = dict(
        checkpointer=common.checkpointer(
            workdir, keep=int(self.config.keep_checkpoints)),
        meta=meta,
        eval_fn=evaluate.eval_callback(self.sets, batch_size=self.eval_bs),
        name=name,
        eval_every=int(self.config.defense.eval_every))
    return inputs, hooks

  def teacher(self, teacher_dir: str | None = None) -> dict[str, Any]:
    """Teacher variables: reused from its directory or trained (FT) there."""
    d = self.config.defense
    fp = common.fingerprint(d.teacher, d.clean_fraction, d.clean_seed,
                            self.config.seed, 'teacher', self.backdoor_fp)
    teacher_dir = teacher_dir or os.path.join(self.backdoor_dir,
                                              f'teacher-{fp[:8]}')
    rundir.check_workdir(teacher_dir, part_of=self.backdoor_dir,
                         flag='--teacher_dir')
    with rundir.locked(teacher_dir):
      return self._teacher(teacher_dir, fp)

  def _teacher(self, teacher_dir: str, fp: str) -> dict[str, Any]:
    d = self.config.defense
    results_path = os.path.join(teacher_dir, common.RESULTS_FILE)
    done = rundir.job_results(teacher_dir)
    if done is not None:
      if done['fingerprint'] != fp or done['role'] != 'teacher':
        raise UserError(
            f'{teacher_dir} holds a {done["role"]} run of other settings or of '
            f'another backdoored model (fingerprint {done["fingerprint"]}, '
            f'needed {fp}); choose another --teacher_dir')
      ckpt = Checkpointer(os.path.join(teacher_dir, 'checkpoints'))
      _LOG.info('reusing the teacher in %s', teacher_dir)
      return jax.device_get(
          common.restore_variables_of(ckpt, self.model, self.dataset))
    t0 = time.time()
    inputs, hooks = self.context(name='teacher', workdir=teacher_dir,
                                 key_seed=int(self.config.seed) + 1, fp=fp,
                                 role='teacher')
    variables, history = defenses.defend('ft', inputs, d.teacher, **hooks)
    after = evaluate.evaluate(self.model.apply, variables, self.sets,
                              batch_size=self.eval_bs)
    atomic.write_json(results_path, {
        'fingerprint': fp, 'role': 'teacher', **after, 'history': history,
        'wall_seconds': time.time() - t0})
    return variables
