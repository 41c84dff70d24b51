"""The NBA ablation: named variants of the defense config on the grid's models.

Each variant of `config.ablation.variants` is a nested dict of changes to
`config.defense` (e.g. `{'name': 'nba', 'nba': {'gamma': 0.0}}`). For each
seed and attack of `config.ablation`, the variant's defense runs on the
grid's backdoored model with the grid's teacher and clean subset, so the
variants differ from each other and from the grid's defenses only by their
changes. Layout, inside a grid workdir (see `nbajax.pipeline.reproduce`):

    workdir/seed<s>/<attack>/backdoor/               shared with the grid
    workdir/ablation/<variant>/seed<s>/<attack>/     one variant's run
    workdir/ablation/<variant>/seed<s>-dseed<d>/<attack>/   defense seed d
    workdir/<report>.{json,md,png}                   the report
                                   (`config.ablation.report`, 'ablation')

A variant whose defense config equals the grid's config of that defense
(e.g. 'nba' with no changes) is the grid's cell: it reuses (or fills)
`workdir/seed<s>/<attack>/<defense>/`. With `config.ablation.defense_seeds`
each variant runs once per defense seed, as the grid's
`grid.defense_seeds` (cells '<seed>/<defense seed>'). Resumable like the
grid.
"""

import logging
import os
from typing import Any, Mapping

import ml_collections

from nbajax import atomic, report, rundir
from nbajax.errors import UserError, closest
from nbajax.pipeline import attack as attack_job
from nbajax.pipeline import derive, reproduce, validate
from nbajax.pipeline import defend as defend_job
from nbajax.pipeline import defense_setup

_LOG = logging.getLogger(__name__)

ONLY_KEYS = ('attack', 'variant', 'seed')


def apply_changes(defense: ml_collections.ConfigDict, changes: Mapping,
                  *, where: str) -> None:
  """Sets the nested `changes` on `defense` in place.

  Args:
    defense: a `config.defense` copy.
    changes: `{field: value}`, a dict value for a sub-section.
    where: config path of `changes`, for error messages.

  Raises:
    UserError: naming a field that `defense` does not have, or a dict given
      for a plain field.
  """
  # Not `lock()` + `ConfigDict.update`, which does the same merge: its errors
  # print every field of the section and not the path of the bad one.
  for key, value in changes.items():
    path = f'{where}.{key}'
    if key not in defense:
      raise UserError(f'{path}: the defense config has no field {key!r}'
                      f'{closest(key, defense.keys())}; fields: '
                      f'{sorted(defense.keys())}')
    current = defense[key]
    if isinstance(value, Mapping):
      if not isinstance(current, ml_collections.ConfigDict):
        raise UserError(f'{path}: {key!r} is a plain field, got a dict')
      apply_changes(current, value, where=path)
    else:
      defense[key] = value


def variant_config(cell_config: ml_collections.ConfigDict, variant: str
                   ) -> ml_collections.ConfigDict:
  """The cell config with `config.ablation.variants[variant]` applied.

  Raises:
    UserError: for an unknown variant or a bad change (see
      `apply_changes`).
  """
  variants = cell_config.ablation.variants
  if variant not in variants:
    raise UserError(f'ablation variant {variant!r} is not in '
                    f'config.ablation.variants: {sorted(variants.keys())}')
  c = cell_config.copy_and_resolve_references()
  apply_changes(c.defense, derive.to_dict(variants[variant]),
                where=f'config.ablation.variants.{variant}')
  return c


def report_name(ablation_cfg: ml_collections.ConfigDict) -> str:
  """`config.ablation.report`, checked to be a plain file name.

  Raises:
    UserError: for an empty name, a folder in it or a leading dot.
  """
  name = str(ablation_cfg.report)
  if not name or os.path.basename(name) != name or name.startswith('.'):
    raise UserError(f'config.ablation.report must be a plain file name '
                    f'(no folder), got {name!r}')
  return name


def variant_dir(workdir: str, cell_config: ml_collections.ConfigDict,
                vcfg: ml_collections.ConfigDict, *, variant: str, seed: int,
                attack: str, defense_seed: int | None = None) -> str:
  """The grid's defense dir when the variant is that grid cell, else its own.

  `cell_config` is the cell's config for `defense_seed` (default: `seed`,
  the model's own; see `derive.defense_seed_config`).
  """
  dseed = seed if defense_seed is None else defense_seed
  grid = cell_config.copy_and_resolve_references()
  grid.defense.name = vcfg.defense.name
  if derive.to_dict(grid.defense) == derive.to_dict(vcfg.defense):
    return os.path.join(workdir, f'seed{seed}', attack,
                        reproduce.with_defense_seed(vcfg.defense.name,
                                                    seed=seed,
                                                    defense_seed=dseed))
  return os.path.join(workdir, 'ablation', variant,
                      reproduce.with_defense_seed(f'seed{seed}', seed=seed,
                                                  defense_seed=dseed),
                      attack)


def run_ablation(config: ml_collections.ConfigDict, workdir: str, *,
                 only: str = ''
                 ) -> list[dict[str, Any]]:
  """Runs (or resumes) the ablation and writes its report in `workdir`.

  Args:
    config: a config with `grid` and `ablation` sections.
    workdir: the grid directory (backdoored models are trained there when
      missing, exactly as the grid would).
    only: filter such as 'attack=blend,variant=nba+eps8,seed=0'.

  Returns:
    The result cells; a cell's 'defense' is the variant name, 'variant' its
    changes.

  Raises:
    UserError: for a bad config, variant or filter.
  """
  validate.validate_config(config, job='grid')
  validate.check_defense_seeds(config, 'ablation')
  a = config.ablation
  only_sets = reproduce.parse_only(only, keys=ONLY_KEYS, allowed={
      'attack': tuple(a.attacks), 'variant': tuple(a.run),
      'seed': tuple(a.seeds)})
  rundir.check_workdir(workdir, grid=True)
  with rundir.locked(workdir):  # The grid's lock: they share its models.
    return _run_ablation(config, workdir, only, only_sets)


def _run_ablation(config, workdir, only, only_sets):
  a = config.ablation
  name = report_name(a)
  for variant in a.run:  # Every listed variant must build, before any run.
    variant_config(config, variant)
  plan = [(int(s), att, v) for s in a.seeds for att in a.attacks
          for v in a.run
          if reproduce.selected(only_sets, seed=s, attack=att, variant=v)]
  if not plan:
    raise UserError(f'--only {only!r} selects no ablation cell of seeds '
                    f'{tuple(a.seeds)}, attacks {tuple(a.attacks)}, '
                    f'variants {tuple(a.run)}')
  plan = [(s, att, v, dseed, label) for s, att, v in plan
          for dseed, label in reproduce.defense_seeds(a.defense_seeds, s)]
  progress = reproduce.Progress(len(plan), label='ablation')
  cells, backdoors = [], set()
  setups: dict[tuple[int, str, int], defense_setup.DefenseSetup] = {}
  last = last_uses(plan)
  for i, (seed, attack, variant, dseed, cell_seed) in enumerate(plan):
    model_cfg = derive.cell_config(config, attack=attack, seed=seed,
                                   workdir=workdir)
    cfg = derive.defense_seed_config(model_cfg, dseed)
    backdoor_dir = os.path.join(workdir, f'seed{seed}', attack, 'backdoor')
    progress.begin(f'seed {cell_seed} | {attack} | {variant}')
    if (seed, attack) not in backdoors:  # The 'none' row: before defense.
      backdoors.add((seed, attack))
      bd = attack_job.run_attack(model_cfg, backdoor_dir)
      cells.append(reproduce.result_cell(bd, attack=attack, defense='none',
                                         seed=seed,
                                         split=cfg.data.eval_split))
      cells[-1]['variant'] = {}
    vcfg = variant_config(cfg, variant)
    vdir = variant_dir(workdir, cfg, vcfg, variant=variant, seed=seed,
                       attack=attack, defense_seed=dseed)
    key = (seed, attack, dseed)
    if not reproduce.finished(vdir) and key not in setups:
      setups[key] = defense_setup.DefenseSetup(vcfg, backdoor_dir)
    res, seconds = reproduce.run_timed(
        vdir, defend_job.run_defense, vcfg, vdir, backdoor_dir=backdoor_dir,
        setup=setups.get(key))
    if last[key] == i:  # Its data set and evaluation sets are not needed.
      setups.pop(key, None)
    progress.end(seconds)
    cell = reproduce.result_cell(res, attack=attack, defense=variant,
                                 seed=cell_seed, split=cfg.data.eval_split)
    cell['variant'] = derive.to_dict(a.variants[variant])
    cells.append(cell)
  write_ablation_report(cells, workdir, name=name,
                        title=(f'Ablation {name!r}, {config.data.name} / '
                               f'{config.model.name}'))
  return cells


def last_uses(plan) -> dict[tuple[int, str, int], int]:
  """(seed, attack, defense seed) -> index of the last run of `plan`
  ((seed, attack, variant, defense seed, label) tuples) that needs that
  model's defense setup, so the ablation holds one only while needed."""
  return {(seed, attack, dseed): i
          for i, (seed, attack, _, dseed, _) in enumerate(plan)}


def write_ablation_report(cells: list[dict[str, Any]], workdir: str, *,
                          name: str, title: str) -> None:
  """<name>.json, <name>.md (rows variants) and <name>.png in `workdir`."""
  table = report.markdown_table(cells, transpose=True, mean_row=True)
  changes = ['| variant | changes of `config.defense` |', '|:--|:--|']
  for label, variant in dict((c['defense'], c['variant'])
                            for c in cells if c['defense'] != 'none').items():
    changes.append(f'| {label} | `{variant}` |')
  text = '\n'.join([f'# {title}', '', report.split_sentence(cells), '',
                    table, '', *changes]) + '\n'
  path = os.path.join(workdir, name)
  atomic.write_text_atomic(f'{path}.md', text)
  atomic.write_text_atomic(f'{path}.json', report.json_text(cells))
  report.plot_acc_vs_asr(cells, f'{path}.png', title=title)
  _LOG.info('\n' + table)
  _LOG.info('ablation report in %s: %s.md, %s.json, %s.png', workdir, name,
            name, name)
