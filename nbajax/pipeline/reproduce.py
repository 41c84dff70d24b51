"""The main job: a paper-style grid of attacks x defenses, resumable.

For each seed and attack: train (or reuse) the backdoored model; pick the
seeded clean subset (shared by every defense of that attack and seed); for
each defense run it (or reuse its finished result); evaluate everything;
write the report. Layout of a grid workdir:

    workdir/seed<s>/clean/                   clean model (trojan, cl)
    workdir/seed<s>/<attack>/backdoor/       attack run (+ teacher-<fp>/)
    workdir/seed<s>/<attack>/<defense>/      defense run
    workdir/seed<s>/<attack>/<defense>-dseed<d>/   with defense seed d != s
    workdir/results.{json,csv,md}, *.png     the report

With `config.grid.defense_seeds` (e.g. (0, 1, 2)) every backdoored model
is defended once per defense seed d (its clean subset, teacher and the
defense's randomness drawn from d; `derive.defense_seed_config`), and the
defense cells are labelled with the seed '<s>/<d>', so the report's mean ±
spread is over models and defense seeds together, and the claim check pairs
defenses of one model and defense seed. The run with d = s is the one
without defense seeds (same directory, reused).

Killed at any point and started again with the same arguments, every
finished run is reused (each writes its results.json atomically, last) and
unfinished ones resume from their newest epoch checkpoint.
"""

import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from nbajax import losses, report, training
from nbajax import rundir
from nbajax.errors import UserError, closest
from nbajax.pipeline import attack as attack_job
from nbajax.pipeline import common, derive, record, validate
from nbajax.pipeline import defend as defend_job
from nbajax.pipeline import defense_setup

_LOG = logging.getLogger(__name__)

ONLY_KEYS = ('attack', 'defense', 'seed')


def parse_only(text: str, *, keys: tuple[str, ...] = ONLY_KEYS,
               allowed: dict[str, Any] | None = None
               ) -> dict[str, set[str]]:
  """`'attack=badnets+blend,defense=nba'` -> {'attack': {...}, ...}.

  Args:
    text: comma-separated `KEY=V1+V2` items.
    keys: the keys allowed.
    allowed: for each key, the values this run has (a typo such as
      `attack=badnet` would otherwise select nothing and pass silently).

  Raises:
    UserError: for a malformed item, an unknown key, or a value the run
      does not have (the closest one is suggested).
  """
  out: dict[str, set[str]] = {}
  for item in filter(None, (t.strip() for t in text.split(','))):
    key, sep, values = item.partition('=')
    if not sep or key not in keys or not values:
      raise UserError(f'--only item {item!r} must be KEY=V1+V2 with KEY in '
                      f'{keys}')
    out.setdefault(key, set()).update(values.split('+'))
  for key, values in out.items():
    if allowed is None or key not in allowed:
      continue
    have = [str(v) for v in allowed[key]]
    for value in sorted(set(values) - set(have)):
      raise UserError(f'--only {key}={value}: this run has no {key} '
                      f'{value!r}{closest(value, have)}; it has {have}')
  return out


def selected(only: dict[str, set[str]], **cell: Any) -> bool:
  """Whether a cell passes a `parse_only` filter."""
  return all(str(v) in only[k] for k, v in cell.items() if k in only)


class Progress:
  """Grid-level progress lines: which cell, elapsed time, ETA."""

  def __init__(self, total: int, *, label: str = 'grid'):
    self.total, self.label = total, label
    self.done = 0
    self.start = time.time()
    self.computed_seconds: list[float] = []

  def begin(self, label: str) -> None:
    eta = 'unknown'
    if self.computed_seconds:
      left = self.total - self.done
      eta = _hms(left * float(np.mean(self.computed_seconds)))
    _LOG.info('[%s %d/%d] %s | elapsed %s | ETA %s', self.label,
              self.done + 1, self.total, label,
              _hms(time.time() - self.start), eta)

  def end(self, seconds: float | None) -> None:
    self.done += 1
    if seconds is not None:
      self.computed_seconds.append(seconds)


def _hms(seconds: float) -> str:
  s = int(seconds)
  return f'{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s'


def run_timed(workdir: str, fn, *args, **kwargs):
  """Runs a job; returns (results, seconds), seconds None when it only
  reused a finished run (so ETAs average computed cells only)."""
  reused = finished(workdir)
  t0 = time.time()
  results = fn(*args, **kwargs)
  return results, None if reused else time.time() - t0


def run_grid(config: ml_collections.ConfigDict, workdir: str, *,
             only: str = ''
             ) -> list[dict[str, Any]]:
  """Runs (or resumes) the grid and writes the report in `workdir`.

  Args:
    config: a config with a `grid` section (attacks, defenses, seeds).
    workdir: grid directory.
    only: filter such as 'attack=badnets+blend,defense=nba'.

  Returns:
    The result cells (see `nbajax.report`).

  Raises:
    UserError: a bad config, filter or workdir, or the workdir in use.
  """
  validate.validate_config(config, job='grid')
  g = config.grid
  only_sets = parse_only(only, allowed={
      'attack': tuple(g.attacks), 'defense': ('none',) + tuple(g.defenses),
      'seed': tuple(g.seeds)})
  rundir.check_workdir(workdir, grid=True)
  with rundir.locked(workdir):
    return _run_grid(config, workdir, only_sets)


def _run_grid(config, workdir, only_sets):
  g = config.grid
  seeds = [int(s) for s in g.seeds]
  # The backdoored model ('none') is in every selected attack's rows: each
  # defense needs it anyway, and the table compares against it.
  plan = [(s, a, d) for s in seeds for a in g.attacks
          for d in ('none',) + tuple(g.defenses)
          if selected(only_sets, seed=s, attack=a)
          and (d == 'none' or selected(only_sets, defense=d))]
  runs_per_defense = len(g.defense_seeds) or 1
  progress = Progress(sum(1 if d == 'none' else runs_per_defense
                          for _, _, d in plan))
  cells: list[dict[str, Any]] = []
  for seed in seeds:
    for attack in g.attacks:
      todo = [d for s, a, d in plan if s == seed and a == attack]
      if not todo:
        continue
      cells += _attack_cells(config, workdir, seed=seed, attack=attack,
                             defenses=todo, progress=progress)
  write_report(config, workdir, cells)
  return cells


def _attack_cells(config, workdir, *, seed, attack, defenses, progress):
  cfg = derive.cell_config(config, attack=attack, seed=seed, workdir=workdir)
  base = os.path.join(workdir, f'seed{seed}', attack)
  backdoor_dir = os.path.join(base, 'backdoor')
  label = f'seed {seed} | {attack}'
  progress.begin(f'{label} | backdoor')
  bd, seconds = run_timed(backdoor_dir, attack_job.run_attack, cfg,
                           backdoor_dir)
  progress.end(seconds)
  cells = []
  if 'none' in defenses:
    cells.append(result_cell(bd, attack=attack, defense='none', seed=seed,
                             split=cfg.data.eval_split))
  setup = None
  for dseed, cell_seed in defense_seeds(config.grid.defense_seeds, seed):
    seeded = derive.defense_seed_config(cfg, dseed)
    for name in [d for d in defenses if d != 'none']:
      dcfg = seeded.copy_and_resolve_references()
      dcfg.defense.name = name
      progress.begin(f'{label} | {name}' +
                     (f' | defense seed {dseed}' if cell_seed != seed else ''))
      dwork = os.path.join(base, with_defense_seed(name, seed=seed,
                                                   defense_seed=dseed))
      if not finished(dwork) and (setup is None or not setup.serves(dcfg)):
        setup = defense_setup.DefenseSetup(dcfg, backdoor_dir)
      res, seconds = run_timed(dwork, defend_job.run_defense, dcfg, dwork,
                                backdoor_dir=backdoor_dir, setup=setup)
      progress.end(seconds)
      cells.append(result_cell(res, attack=attack, defense=name,
                               seed=cell_seed, split=cfg.data.eval_split))
  return cells


def defense_seeds(dseeds, seed: int) -> list[tuple[int, Any]]:
  """(defense seed, cell seed label) of model seed `seed`'s defense runs:
  [(seed, seed)] without defense seeds `dseeds` (`grid.defense_seeds`,
  `ablation.defense_seeds`), else (d, '<seed>/<d>') for each d."""
  if not len(dseeds):
    return [(seed, seed)]
  return [(int(d), f'{seed}/{int(d)}') for d in dseeds]


def with_defense_seed(name: str, *, seed: int, defense_seed: int) -> str:
  """A directory name of model seed `seed`'s runs for one defense seed:
  `name` itself for the model's own seed, else `name-dseed<d>` (a grid's
  `<defense>` dir, an ablation's `seed<s>` dir)."""
  return name if defense_seed == seed else f'{name}-dseed{defense_seed}'


def finished(workdir: str) -> bool:
  """Whether a job's workdir holds its final results.json."""
  return os.path.exists(os.path.join(workdir, common.RESULTS_FILE))


def result_cell(results: dict[str, Any], *, attack: str, defense: str,
                seed: Any, split: str = 'test') -> dict[str, Any]:
  """The report cell (see `nbajax.report`) of a job's results dict
  (`seed`: the model seed, or '<seed>/<defense seed>')."""
  run = record.RunRecord.from_json(results)
  history = [{k: v for k, v in h.items() if isinstance(v, (int, float))}
             for h in run.history]
  last = run.history[-1] if run.history else {}
  sweep = ({'sweep': last['sweep'], 'sweep_name': last.get('sweep_name')}
           if last.get('sweep') else {})
  return {'attack': attack, 'defense': defense, 'seed': seed, 'split': split,
          **{m: run.metrics[m] for m in record.METRICS}, 'der': run.der,
          'wall_seconds': run.wall_seconds, 'fingerprint': run.fingerprint,
          'history': history, 'config': run.config or {}, **sweep}


def write_report(config, workdir: str, cells: list[dict[str, Any]]) -> None:
  """Tables and plots of the grid in `workdir`; prints the table."""
  if not cells:
    _LOG.info('no cells selected: nothing to report')
    return
  title = (f'{config.data.name} / {config.model.name}: ACC / ASR (%) of '
           'each defense')
  report.write_results(cells, workdir, title=title)
  report.plot_acc_vs_asr(cells, os.path.join(workdir, 'acc_vs_asr.png'))
  report.plot_curves(cells, workdir)
  report.plot_sweeps(cells, workdir)
  report.write_implant(cells, workdir,
                       clean_acc=clean_accuracies(workdir, cells),
                       split=config.data.eval_split)
  if config.grid.attention_maps:
    attention_figure(config, workdir, cells)
  _LOG.info('\n' + report.markdown_table(cells))
  _LOG.info('report in %s: results.{md,csv,json}, implant.{md,json}, *.png',
            workdir)


def clean_accuracies(workdir: str, cells) -> dict[Any, float]:
  """seed -> ACC of the grid's clean model of that seed (trained for trojan
  and cl, on the grid's split); seeds without one are absent. The model
  seeds are those of the backdoored models' ('none') cells."""
  out = {}
  for seed in sorted({c['seed'] for c in cells if c['defense'] == 'none'}):
    done = rundir.job_results(os.path.join(workdir, f'seed{seed}', 'clean'))
    acc = record.RunRecord.from_json(done).metrics.get('test_acc') \
        if done else None
    if acc is not None:
      out[seed] = acc
  return out


def attention_figure(config, workdir: str, cells) -> None:
  """NAD-style figure: attention maps of a clean and a triggered test image,
  for the backdoored model and each defended one, per distillation layer."""
  cell = cells[0]
  seed, attack = cell['seed'], cell['attack']
  base = os.path.join(workdir, f'seed{seed}', attack)
  try:
    cfg = derive.cell_config(config, attack=attack, seed=seed, workdir=workdir)
    setup = defense_setup.DefenseSetup(cfg, os.path.join(base, 'backdoor'))
  except (FileNotFoundError, ValueError) as e:
    _LOG.info('attention maps skipped: %s', e)
    return
  # The first triggered test image and its clean original.
  images = {'clean': setup.sets.x_test[setup.sets.trig_index[0]],
            'triggered': setup.sets.x_trig[0]}
  models = {'backdoored': setup.variables}
  for name in ('ft', 'nad', 'nba'):
    ckpt_dir = os.path.join(base, name)
    if finished(ckpt_dir):
      ckpt = common.checkpointer(ckpt_dir)
      models[name] = jax.device_get(common.restore_variables_of(
          ckpt, setup.model, setup.dataset))
  layers = list(config.defense.nad.layers) or None
  maps, row_images = {}, {}
  for model_name, variables in models.items():
    for kind, img in images.items():
      _, feats = setup.model.apply(variables,
                                   training.to_float(img[None]), train=False)
      names = layers or [k for k in feats if k != 'final']
      row = f'{model_name} / {kind}'
      maps[row] = {n: np.asarray(losses.attention_map(feats[n])[0])
                   for n in names}
      row_images[row] = img
  path = os.path.join(workdir, f'attention_{attack}.png')
  report.plot_attention_maps(maps, path, images=row_images,
                             title=f'Attention maps, {attack} (seed {seed})')
  _LOG.info('attention maps in %s', path)
