"""The grid job: --only parsing, and kill -9 midway + restart == one run."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from nbajax.checkpoint import Checkpointer
from nbajax.pipeline import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    '--config.grid.attacks=("badnets",)',
    '--config.grid.defenses=("ft","fp","anp")',
    '--config.defense.anp.iterations=2',
    '--config.defense.anp.batch_size=16',
    '--config.grid.attention_maps=False',
    '--config.train.epochs=3',
    '--config.defense.epochs=3',
]


class TestParseOnly:

  def test_values_join_with_plus_and_keys_with_commas(self):
    assert reproduce.parse_only('attack=badnets+blend,defense=nba') == {
        'attack': {'badnets', 'blend'}, 'defense': {'nba'}}

  @pytest.mark.parametrize('text', ['attack', 'model=cnn', 'attack='])
  def test_malformed_items_are_refused(self, text):
    with pytest.raises(ValueError, match='KEY=V1'):
      reproduce.parse_only(text)


def _grid(workdir):
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.reproduce', f'--workdir={workdir}',
       *TINY], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))


def _cells(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    cells = json.load(f)
  return {(c['attack'], c['defense']): {k: c[k] for k in (
      'acc', 'acc_nontarget', 'asr', 'ra', 'der')} for c in cells}


def test_progress_lines_name_the_cell_and_estimate_from_computed_cells(
    caplog, monkeypatch):
  clock = iter([100.0, 100.0, 160.0, 400.0])
  # Only the module's clock: logging keeps the real one.
  monkeypatch.setattr(reproduce, 'time',
                      types.SimpleNamespace(time=lambda: next(clock)))
  caplog.set_level(logging.INFO, logger='nbajax')
  progress = reproduce.Progress(3, label='ablation')
  progress.begin('seed 0 | badnets | ft')
  progress.end(60.0)
  progress.begin('seed 0 | badnets | nad')
  progress.end(None)  # A reused cell: not counted in the estimate.
  progress.begin('seed 0 | blend | ft')
  assert caplog.messages == [
      '[ablation 1/3] seed 0 | badnets | ft | elapsed 0h00m00s | ETA unknown',
      '[ablation 2/3] seed 0 | badnets | nad | elapsed 0h01m00s | ETA '
      '0h02m00s',
      '[ablation 3/3] seed 0 | blend | ft | elapsed 0h05m00s | ETA 0h01m00s']


def test_killed_grid_resumes_to_the_uninterrupted_result(tmp_path):
  full, cut = tmp_path / 'full', tmp_path / 'cut'
  proc = _grid(full)
  assert proc.wait(timeout=400) == 0, proc.stderr.read()[-3000:]
  first = _cells(full)
  # A finished grid started again reuses every cell (ANP, which trains
  # nothing after pruning, included) and writes the same report.
  proc = _grid(full)
  assert proc.wait(timeout=400) == 0, proc.stderr.read()[-3000:]
  assert _cells(full) == first
  # So does a finished grid moved to another directory.
  moved = tmp_path / 'moved'
  full.rename(moved)
  runs = sorted(moved.glob('seed0/badnets/*/results.json'))
  stamps = [p.stat().st_mtime_ns for p in runs]
  proc = _grid(moved)
  assert proc.wait(timeout=400) == 0, proc.stderr.read()[-3000:]
  assert _cells(moved) == first
  assert [p.stat().st_mtime_ns for p in runs] == stamps  # Reused, not redone.
  moved.rename(full)

  proc = _grid(cut)
  backdoor = cut / 'seed0' / 'badnets' / 'backdoor' / 'results.json'
  ft_ckpt = cut / 'seed0' / 'badnets' / 'ft' / 'checkpoints'
  deadline = time.time() + 400
  # Kill once the backdoored model is finished and FT has started.
  while not (backdoor.exists() and ft_ckpt.exists()):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, 'grid did not reach the FT cell'
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (cut / 'results.json').exists()
  finished_at = backdoor.stat().st_mtime_ns

  proc = _grid(cut)
  assert proc.wait(timeout=400) == 0, proc.stderr.read()[-3000:]
  assert backdoor.stat().st_mtime_ns == finished_at  # Reused, not redone.
  assert _cells(cut) == _cells(full)
  assert set(_cells(full)) == {('badnets', 'none'), ('badnets', 'ft'),
                               ('badnets', 'fp'), ('badnets', 'anp')}
  # FP shares FT's DefenseSetup; its checkpoints record FP's own config.
  meta = Checkpointer(str(full / 'seed0' / 'badnets' / 'fp' /
                          'checkpoints')).restore_meta()
  assert meta['config']['defense']['name'] == 'fp'
  for name in ('results.md', 'results.csv', 'acc_vs_asr.png', 'implant.md'):
    assert (cut / name).stat().st_size > 0


def test_defense_seeds_defend_one_model_per_seed_and_reuse_its_own(tmp_path):
  from experiments.configs import digits
  from nbajax.pipeline import defend, derive
  config = digits.get_config()
  config.grid.attacks = ('badnets',)
  config.grid.defenses = ('ft',)
  config.grid.attention_maps = False
  config.train.epochs = 1
  config.defense.epochs = 1
  config.defense.teacher.epochs = 1
  config.grid.defense_seeds = (0, 1)
  grid = tmp_path / 'grid'
  cells = reproduce.run_grid(config, str(grid))
  assert [(c['defense'], c['seed']) for c in cells] == [
      ('none', 0), ('ft', '0/0'), ('ft', '0/1')]
  base = grid / 'seed0' / 'badnets'
  assert sorted(p.name for p in base.iterdir()
                if not p.name.startswith('teacher')) == [
                    'backdoor', 'ft', 'ft-dseed1']
  ft1 = json.loads((base / 'ft-dseed1' / 'results.json').read_text())
  ft0 = json.loads((base / 'ft' / 'results.json').read_text())
  assert ft1['clean_subset']['seed'] == 1
  assert (ft1['clean_subset']['indices_sha256'] !=
          ft0['clean_subset']['indices_sha256'])

  # Defense seed 1 is `experiments.defend` with seed and clean_seed 1 on the
  # same backdoored model.
  alone = derive.defense_seed_config(
      derive.cell_config(config, attack='badnets', seed=0,
                         workdir=str(grid)), 1)
  alone.defense.name = 'ft'
  res = defend.run_defense(alone, str(tmp_path / 'alone'),
                           backdoor_dir=str(base / 'backdoor'))
  assert res['after'] == ft1['after']
  assert res['fingerprint'] == ft1['fingerprint']

  # Without defense seeds the grid is the d = s run: reused, same numbers.
  config.grid.defense_seeds = ()
  stamp = (base / 'ft' / 'results.json').stat().st_mtime_ns
  again = reproduce.run_grid(config, str(grid))
  assert [(c['defense'], c['seed']) for c in again] == [('none', 0),
                                                        ('ft', 0)]
  assert (base / 'ft' / 'results.json').stat().st_mtime_ns == stamp
  metric = lambda c: {k: c[k] for k in ('acc', 'asr', 'ra', 'der')}
  assert metric(again[1]) == metric(cells[1])


@pytest.mark.parametrize('value', [(0, 0), (-1,), (0.5,), (True,)])
def test_bad_defense_seeds_are_named(value, tmp_path):
  from experiments.configs import digits
  from nbajax.errors import UserError
  config = digits.get_config()
  config.grid.defense_seeds = value
  with pytest.raises(UserError, match='config.grid.defense_seeds must be a '
                     'list of distinct ints'):
    reproduce.run_grid(config, str(tmp_path / 'grid'))
