"""The defense job: backdoored checkpoint + clean subset -> defended model.

Layout:

    backdoor_dir/                  an attack workdir (checkpoints, results)
    backdoor_dir/teacher-<fp>/     the teacher (FT of the backdoored model on
                                   the clean subset), shared by NAD and NBA
    workdir/checkpoints/           the defended model (Orbax, per epoch)
    workdir/results.json           before/after ACC, ASR, RA, DER, history
"""

import logging
from typing import Any

import ml_collections

from nbajax import defenses, metrics, rundir
from nbajax.pipeline import common, derive, evaluate, record, validate
from nbajax.pipeline.defense_setup import DefenseSetup, load_backdoor

_LOG = logging.getLogger(__name__)


def run_defense(config: ml_collections.ConfigDict, workdir: str, *,
                backdoor_dir: str, teacher_dir: str | None = None,
                overwrite: bool = False,
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
    setup: a prepared DefenseSetup to share between defenses; one built
      for another clean subset or teacher (`SHARED_FIELDS`) is not used.

  Returns:
    results dict (also `workdir/results.json`): `before` and `after`
    metrics, `der`, history, wall time.

  Raises:
    UserError: a bad config, workdir or backdoor run, or the workdir in use.
  """
  validate.validate_config(config, job='defend')
  name = config.defense.name
  defenses.get_defense(name)  # An unknown name fails before any work.
  reads = (backdoor_dir,) + ((teacher_dir,) if teacher_dir else ())
  rundir.check_workdir(workdir, reads=reads)  # Before reading the backdoor.
  backdoor = load_backdoor(backdoor_dir)
  fp = fingerprint(config, backdoor['fingerprint'], workdir)
  return record.run_once(
      workdir, fingerprint=fp, label=name, overwrite=overwrite, reads=reads,
      body=lambda: _defend(config, workdir, fp, backdoor_dir=backdoor_dir,
                           teacher_dir=teacher_dir, setup=setup))


# `config.defense` fields added after runs were saved, with the value that
# does what those runs did (`common.omit_added_fields`).
ADDED_FIELDS = {('mcr', 'bn_augment'): False,
                ('nba', 'pseudo_epochs'): 0}


def own_fields(defense: dict[str, Any], name: str) -> dict[str, Any]:
  """The fields of a defense section (`derive.to_dict` form) that defense
  `name` reads: all but the other defenses' sections, and but the teacher's
  for a defense that trains none; an `ADDED_FIELDS` field at its earlier
  behavior's value is left out."""
  others = set(defenses.DEFENSE_NAMES) - {name}
  if name not in defenses.NEEDS_TEACHER:
    others.add('teacher')
  return common.omit_added_fields(
      {k: v for k, v in defense.items() if k not in others}, ADDED_FIELDS)


def fingerprint(config: ml_collections.ConfigDict, backdoor_fp: str,
                workdir: str) -> str:
  """A defense run's fingerprint: its seed, the backdoored model's
  fingerprint and `own_fields` of `config.defense`, so a change of one
  defense's fields (NBA's lr, ANP's threshold) never blocks the reuse or
  resume of another defense's runs.

  Runs made before hashed the whole defense section. A run in `workdir`
  whose recorded fingerprint is that older one, recomputed from the section
  it recorded, and whose own fields equal this config's, keeps it: it is
  reused or resumed, not refused.
  """
  name = config.defense.name
  section = derive.to_dict(config.defense)
  mine = own_fields(section, name)
  recorded = common.recorded_run(workdir) or {}
  old = recorded.get('config')
  if isinstance(old, dict) and 'defense' in old and 'name' not in old:
    old = old['defense']  # A checkpoint's metadata holds the whole config.
  if isinstance(old, dict) and old.get('name') == name:
    older = common.fingerprint(old, config.seed, backdoor_fp, name)
    if (recorded.get('fingerprint') == older and
        common.fingerprint(own_fields(old, name)) == common.fingerprint(mine)):
      return older
  return common.fingerprint(mine, config.seed, backdoor_fp, name)


def _defend(config, workdir, fp, *, backdoor_dir, teacher_dir,
            setup) -> record.RunRecord:
  name = config.defense.name
  if setup is None or not setup.serves(config):
    setup = DefenseSetup(config, backdoor_dir)
  teacher = (setup.teacher(teacher_dir)
             if name in defenses.NEEDS_TEACHER else None)
  inputs, hooks = setup.context(name=name, workdir=workdir,
                                key_seed=int(config.seed) + 2, teacher=teacher,
                                fp=fp, role='defended', defense=config.defense)
  variables, history = defenses.defend(name, inputs, config.defense, **hooks)
  after = evaluate.evaluate(setup.model.apply, variables, setup.sets,
                            batch_size=setup.eval_bs)
  der = metrics.der(setup.before, after)
  _LOG.info('%s: ACC %.2f%% -> %.2f%%  ASR %.2f%% -> %.2f%%  DER %.3f', name,
            100 * setup.before['acc'], 100 * after['acc'],
            100 * setup.before['asr'], 100 * after['asr'], der)
  return record.RunRecord(
      role='defended', defense=name, attack=setup.spec['attack']['name'],
      dataset=setup.dataset.name, model=setup.model_name,
      before=setup.before, metrics=after, der=der,
      clean_subset=setup.subset_meta(), history=history,
      config=derive.to_dict(config.defense))
