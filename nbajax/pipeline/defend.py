"""The defense job: backdoored checkpoint + clean subset -> defended model.

Layout:

    backdoor_dir/                  an attack workdir (checkpoints, results)
    backdoor_dir/teacher-<fp>/     the teacher (FT of the backdoored model on
                                   the clean subset), shared by NAD and NBA
    workdir/checkpoints/           the defended model (Orbax, per epoch)
    workdir/results.json           before/after ACC, ASR, RA, DER, history
"""

import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from nbajax import defenses, metrics, rundir
from nbajax.attacks import poison
from nbajax.checkpoint import Checkpointer
from nbajax.data import clean_subset_indices
from nbajax.errors import UserError
from nbajax.pipeline import attack as attack_job
from nbajax.pipeline import common, evaluate, validate


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
  done = rundir.job_results(backdoor_dir)
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

  def __init__(self, config: ml_collections.ConfigDict, backdoor_dir: str,
               log: Callable[[str], None]):
    self.backdoor_dir = backdoor_dir
    self.log = log
    done = load_backdoor(backdoor_dir)
    self.backdoor_fp = done['fingerprint']
    base = ml_collections.ConfigDict(done['config'])
    # Data, model and attack are the backdoor run's; the defense is ours.
    self.config = ml_collections.ConfigDict(base.to_dict())
    self.config.defense = config.defense
    self.config.eval_batch_size = config.get('eval_batch_size', 512)
    self.spec = done['attack_spec']
    self.dataset = common.load_data(base.data)
    validate.validate_against_data(self.config, self.dataset, job='defend')
    self.model = common.build_model(base.model, self.dataset)
    ckpt = Checkpointer(os.path.join(backdoor_dir, 'checkpoints'))
    self.variables = jax.device_get(
        common.restore_variables_of(ckpt, self.model, self.dataset))
    attack = attack_job.attack_from_spec(self.spec)
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
    return all(common.to_dict(mine.get(k)) == common.to_dict(theirs.get(k))
               for k in SHARED_FIELDS) and self.eval_bs == int(
                   config.get('eval_batch_size', 512))

  def subset_meta(self) -> dict[str, Any]:
    return {'fraction': float(self.config.defense.clean_fraction),
            'seed': int(self.config.defense.clean_seed),
            'count': int(len(self.idx)),
            'indices_sha256': poison.indices_hash(self.idx)}

  def context(self, *, name: str, workdir: str, key_seed: int,
              teacher=None, fp: str, role: str,
              defense: ml_collections.ConfigDict | None = None
              ) -> defenses.DefenseContext:
    """The DefenseContext of one run; `defense` (default the setup's) is
    the defense config its checkpoints record."""
    config = self.config
    if defense is not None:
      config = ml_collections.ConfigDict(config.to_dict())
      config.defense = defense
    meta = common.base_meta(
        config=config, dataset=self.dataset, model_name=self.model_name,
        role=role, fingerprint_=fp,
        extra={'attack': self.spec, 'defense': name,
               'clean_subset': self.subset_meta(),
               'backdoor_dir': os.path.abspath(self.backdoor_dir)})
    return defenses.DefenseContext(
        model=self.model, model_name=self.model_name,
        variables=self.variables, x_clean=self.dataset.x_train[self.idx],
        y_clean=self.dataset.y_train[self.idx],
        key=jax.random.key(key_seed), teacher=teacher,
        checkpointer=common.checkpointer(
            workdir, keep=int(self.config.get('keep_checkpoints', 2))),
        meta=meta,
        eval_fn=evaluate.eval_callback(self.sets, batch_size=self.eval_bs),
        log=self.log, name=name)

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
      self.log(f'reusing the teacher in {teacher_dir}')
      return jax.device_get(
          common.restore_variables_of(ckpt, self.model, self.dataset))
    t0 = time.time()
    ctx = self.context(name='teacher', workdir=teacher_dir,
                       key_seed=int(self.config.seed) + 1, fp=fp,
                       role='teacher')
    variables, history = defenses.get_defense('ft')(ctx, d.teacher)
    after = evaluate.evaluate(self.model.apply, variables, self.sets,
                              batch_size=self.eval_bs)
    common.write_json(results_path, {
        'fingerprint': fp, 'role': 'teacher', **after, 'history': history,
        'wall_seconds': time.time() - t0})
    return variables


def run_defense(config: ml_collections.ConfigDict, workdir: str, *,
                backdoor_dir: str, teacher_dir: str | None = None,
                overwrite: bool = False,
                log: Callable[[str], None] | None = None,
                setup: DefenseSetup | None = None) -> dict[str, Any]:
  """Runs `config.defense` on the backdoored model of `backdoor_dir`.

  Args:
    config: config whose `defense` (and `seed`) are used; data, model and
      attack come from the backdoor run.
    workdir: this defense's run directory.
    backdoor_dir: a finished `experiments.attack` workdir.
    teacher_dir: where the teacher is made or reused (default inside
      `backdoor_dir`, keyed by the teacher settings).
    overwrite: start over in a workdir holding a finished run.
    log: progress sink.
    setup: a prepared DefenseSetup to share between defenses; one built
      for another clean subset or teacher (`SHARED_FIELDS`) is not used.

  Returns:
    results dict (also `workdir/results.json`): `before` and `after`
    metrics, `der`, history, wall time.

  Raises:
    UserError: a bad config, workdir or backdoor run, or the workdir in use.
  """
  validate.validate_config(config, job='defend')
  reads = (backdoor_dir,) + ((teacher_dir,) if teacher_dir else ())
  rundir.check_workdir(workdir, reads=reads)
  with rundir.locked(workdir):
    return _run_defense(config, workdir, backdoor_dir=backdoor_dir,
                        teacher_dir=teacher_dir, overwrite=overwrite,
                        log=log or common.logger('defend'), setup=setup)


def _run_defense(config, workdir, *, backdoor_dir, teacher_dir, overwrite, log,
                 setup):
  name = config.defense.name
  defend = defenses.get_defense(name)
  backdoor = load_backdoor(backdoor_dir)
  fp = common.fingerprint(config.defense, config.seed, backdoor['fingerprint'],
                          name)
  done = common.reuse_or_start(workdir, fp, overwrite=overwrite, log=log,
                               label=name)
  if done is not None:
    return done
  t0 = time.time()
  if setup is None or not setup.serves(config):
    setup = DefenseSetup(config, backdoor_dir, log)
  teacher = (setup.teacher(teacher_dir)
             if name in defenses.NEEDS_TEACHER else None)
  ctx = setup.context(name=name, workdir=workdir,
                      key_seed=int(config.seed) + 2, teacher=teacher, fp=fp,
                      role='defended', defense=config.defense)
  variables, history = defend(ctx, config.defense)
  after = evaluate.evaluate(setup.model.apply, variables, setup.sets,
                            batch_size=setup.eval_bs)
  results = {
      'fingerprint': fp, 'role': 'defended', 'defense': name,
      'attack': setup.spec['attack']['name'], 'dataset': setup.dataset.name,
      'model': setup.model_name, 'before': setup.before, 'after': after,
      **after, 'der': metrics.der(setup.before, after),
      'clean_subset': setup.subset_meta(), 'history': history,
      'wall_seconds': time.time() - t0,
      'config': common.to_dict(config.defense)}
  common.write_json(os.path.join(workdir, common.RESULTS_FILE), results)
  log(f'{name}: ACC {100 * setup.before["acc"]:.2f}% -> '
      f'{100 * after["acc"]:.2f}%  ASR {100 * setup.before["asr"]:.2f}% -> '
      f'{100 * after["asr"]:.2f}%  DER {results["der"]:.3f} '
      f'({results["wall_seconds"]:.0f}s)')
  return results
