"""The NBA ablation: variant configs, where they run, and one tiny CLI run."""

import functools
import importlib
import json
import os
import subprocess
import sys

from flax import traverse_util
import pytest

from experiments.configs import base, digits
from nbajax.defenses import nba
from nbajax.pipeline import ablation, derive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cell_config(tmp_path):
  return derive.cell_config(digits.get_config(), attack='badnets', seed=0,
                               workdir=str(tmp_path))


class TestVariantConfig:

  def test_changes_only_the_named_fields(self, tmp_path):
    cfg = _cell_config(tmp_path)
    v = ablation.variant_config(cfg, 'align_clean_lam1')
    assert (v.defense.nba.align_to, v.defense.nba.lam) == ('clean', 1.0)
    assert cfg.defense.nba.lam != 1.0  # The variant changed something.
    v.defense.nba.align_to = cfg.defense.nba.align_to
    v.defense.nba.lam = cfg.defense.nba.lam
    assert v.defense.to_dict() == cfg.defense.to_dict()

  def test_a_nested_dict_changes_one_sub_field(self, tmp_path):
    cfg = _cell_config(tmp_path)
    v = ablation.variant_config(cfg, 'nad_pseudo')
    assert v.defense.nba.weights.to_dict() == {
        'spatial': 1.0, 'channel': 0.0, 'relation': 0.0}
    assert v.defense.nba.gamma == cfg.defense.nba.gamma

  def test_the_cell_config_is_not_modified(self, tmp_path):
    cfg = _cell_config(tmp_path)
    ablation.variant_config(cfg, 'eps8')
    assert cfg.defense.nba.eps == 16 / 255

  def test_every_listed_variant_builds(self, tmp_path):
    cfg = _cell_config(tmp_path)
    assert tuple(cfg.ablation.run) == base.ABLATION_ORDER
    for name in cfg.ablation.run:
      ablation.variant_config(cfg, name)

  @pytest.mark.parametrize('sweep', ['digits_nba_sweep3',
                                     'gtsrb_nba_sweep3'])
  def test_round_three_moves_only_when_nba_s_rate_drops(self, tmp_path,
                                                        sweep):
    config = importlib.import_module(
        f'experiments.configs.{sweep}').get_config()
    cfg = derive.cell_config(config, attack='badnets', seed=0,
                             workdir=str(tmp_path))
    fields = ('schedule', 'boundaries', 'decay', 'lr', 'epochs')
    opt = {v: nba.section(ablation.variant_config(cfg, v).defense)
           for v in ('nba', 's12', 'cos')}
    got = {v: tuple(o[k] for k in fields) for v, o in opt.items()}
    assert got['nba'] == ('step', (16,), 0.1, cfg.defense.lr, 20)
    assert got['s12'] == ('step', (12,), 0.1, cfg.defense.lr, 20)
    assert got['cos'][0] == 'cosine' and got['cos'][3:] == got['nba'][3:]

  # Each round's candidates: the `config.defense.nba` fields each changes
  # (dotted paths) with their values; the default's value in DEFAULTS.
  ROUNDS = {
      'nba_sweep3': {'s12': {'optimizer.boundaries': (12,)},
                     'cos': {'optimizer.schedule': 'cosine'}},
      'nba_sweep4': {'f16': {'pseudo_epochs': 16},
                     'f12': {'pseudo_epochs': 12}},
      'nba_sweep5': {'ps': {'mode': 'per_sample'},
                     'sp': {'weights.channel': 0.0}},
      'nba_sweep6': {'c05': {'weights.channel': 0.5},
                     'c1': {'weights.channel': 1.0}},
  }
  DEFAULTS = {'optimizer.boundaries': (16,), 'optimizer.schedule': 'step',
              'pseudo_epochs': 0, 'mode': 'universal',
              'weights.channel': 0.2}

  @pytest.mark.parametrize('data', ['digits', 'gtsrb'])
  @pytest.mark.parametrize('sweep', sorted(ROUNDS))
  def test_each_round_changes_only_its_candidates_fields(self, tmp_path,
                                                         sweep, data):
    config = importlib.import_module(
        f'experiments.configs.{data}_{sweep}').get_config()
    cfg = derive.cell_config(config, attack='badnets', seed=0,
                             workdir=str(tmp_path))
    assert config.ablation.report == sweep

    flat = functools.partial(traverse_util.flatten_dict, sep='.')
    default = flat(ablation.variant_config(cfg, 'nba').defense.to_dict())
    for path, value in self.DEFAULTS.items():
      assert default[f'nba.{path}'] == value
    for variant, changes in self.ROUNDS[sweep].items():
      defense = ablation.variant_config(cfg, variant).defense
      got = flat(defense.to_dict())
      moved = {k[len('nba.'):]: v for k, v in got.items() if default[k] != v}
      assert moved == changes, variant
      nba.check(defense)

  def test_unknown_variant_names_the_known_ones(self, tmp_path):
    with pytest.raises(ValueError, match="'nope'.*align_clean"):
      ablation.variant_config(_cell_config(tmp_path), 'nope')

  def test_unknown_field_names_its_path(self, tmp_path):
    cfg = _cell_config(tmp_path)
    cfg.ablation.variants.bad = {'nba': {'gama': 0.0}}
    with pytest.raises(ValueError, match=r'variants\.bad\.nba\.gama'):
      ablation.variant_config(cfg, 'bad')

  def test_dict_for_a_plain_field_is_refused(self, tmp_path):
    cfg = _cell_config(tmp_path)
    cfg.ablation.variants.bad = {'lr': {'value': 0.1}}
    with pytest.raises(ValueError, match="'lr' is a plain field"):
      ablation.variant_config(cfg, 'bad')


def test_a_model_s_setup_is_held_until_its_last_run():
  plan = [(0, 'badnets', 'full', 0, '0/0'), (0, 'badnets', 'full', 1, '0/1'),
          (0, 'badnets', 'noise', 0, '0/0'), (0, 'badnets', 'noise', 1, '0/1'),
          (0, 'blend', 'full', 0, '0/0'), (1, 'badnets', 'full', 1, '1/1')]
  assert ablation.last_uses(plan) == {
      (0, 'badnets', 0): 2, (0, 'badnets', 1): 3, (0, 'blend', 0): 4,
      (1, 'badnets', 1): 5}


class TestReportName:

  @pytest.mark.parametrize('name', ['', '../x', 'a/b', '.hidden'])
  def test_only_plain_file_names(self, tmp_path, name):
    cfg = _cell_config(tmp_path)
    cfg.ablation.report = name
    with pytest.raises(ValueError, match='config.ablation.report'):
      ablation.report_name(cfg.ablation)

  def test_default(self, tmp_path):
    assert ablation.report_name(_cell_config(tmp_path).ablation) == 'ablation'


class TestVariantDir:

  def test_a_variant_equal_to_a_grid_defense_is_that_grid_cell(
      self, tmp_path):
    cfg = _cell_config(tmp_path)
    for name, defense in (('full', 'nba'), ('nad', 'nad')):
      v = ablation.variant_config(cfg, name)
      assert ablation.variant_dir(str(tmp_path), cfg, v, variant=name,
                                  seed=0, attack='badnets') == os.path.join(
                                      str(tmp_path), 'seed0', 'badnets',
                                      defense)

  def test_a_changed_variant_gets_its_own_dir(self, tmp_path):
    cfg = _cell_config(tmp_path)
    v = ablation.variant_config(cfg, 'eps8')
    assert ablation.variant_dir(str(tmp_path), cfg, v, variant='eps8',
                                seed=0, attack='badnets') == os.path.join(
                                    str(tmp_path), 'ablation', 'eps8',
                                    'seed0', 'badnets')

  def test_a_defense_seed_other_than_the_model_s_gets_its_own_dirs(
      self, tmp_path):
    cfg = derive.defense_seed_config(_cell_config(tmp_path), 2)
    full = ablation.variant_config(cfg, 'full')
    eps8 = ablation.variant_config(cfg, 'eps8')
    assert ablation.variant_dir(
        str(tmp_path), cfg, full, variant='full', seed=0, attack='badnets',
        defense_seed=2) == os.path.join(str(tmp_path), 'seed0', 'badnets',
                                        'nba-dseed2')
    assert ablation.variant_dir(
        str(tmp_path), cfg, eps8, variant='eps8', seed=0, attack='badnets',
        defense_seed=2) == os.path.join(str(tmp_path), 'ablation', 'eps8',
                                        'seed0-dseed2', 'badnets')


TINY = ['--config.train.epochs=1', '--config.defense.epochs=1',
        '--config.defense.teacher.epochs=1',
        '--config.defense.nba.steps=1',
        '--config.ablation.attacks=("badnets",)',
        '--config.ablation.run=("full","random_noise")']


def _ablate(workdir, *flags):
  return subprocess.run(
      [sys.executable, '-m', 'experiments.ablate', f'--workdir={workdir}',
       *TINY, *flags], cwd=REPO, capture_output=True, text=True,
      timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))


def test_ablate_cli_runs_reuses_and_reports(tmp_path):
  proc = _ablate(tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  grid_cell = tmp_path / 'seed0' / 'badnets' / 'nba' / 'results.json'
  own_cell = (tmp_path / 'ablation' / 'random_noise' / 'seed0' / 'badnets' /
              'results.json')
  assert grid_cell.exists() and own_cell.exists()
  with open(tmp_path / 'ablation.json') as f:
    cells = json.load(f)
  assert [c['defense'] for c in cells] == ['none', 'full', 'random_noise']
  assert cells[2]['variant'] == {'name': 'nba', 'nba': {'steps': 0}}
  with open(own_cell) as f:
    assert json.load(f)['config']['nba']['steps'] == 0
  md = (tmp_path / 'ablation.md').read_text()
  assert '| random_noise ' in md and '| No defense ' in md
  assert (tmp_path / 'ablation.png').stat().st_size > 0

  before = own_cell.read_bytes()
  again = _ablate(tmp_path)  # Everything finished: only reused.
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'epoch 1/1' not in again.stderr
  assert own_cell.read_bytes() == before

  named = _ablate(tmp_path, '--config.ablation.report=noise_only',
                  '--only=variant=random_noise')
  assert named.returncode == 0, named.stderr[-3000:]
  with open(tmp_path / 'noise_only.json') as f:
    assert [c['defense'] for c in json.load(f)] == ['none', 'random_noise']
  assert (tmp_path / 'ablation.json').exists()  # The full report stays.

  bad = _ablate(tmp_path, '--only=variant=nope')
  assert bad.returncode == 2
  assert "this run has no variant 'nope'" in bad.stderr

  # Defense seeds: seed 0's runs are the ones above (reused), seed 1's new.
  seeded = _ablate(tmp_path, '--config.ablation.defense_seeds=(0,1)',
                   '--config.ablation.report=seeded')
  assert seeded.returncode == 0, seeded.stderr[-3000:]
  assert own_cell.read_bytes() == before
  with open(tmp_path / 'seeded.json') as f:
    assert [(c['defense'], c['seed']) for c in json.load(f)] == [
        ('none', 0), ('full', '0/0'), ('full', '0/1'),
        ('random_noise', '0/0'), ('random_noise', '0/1')]
  with open(tmp_path / 'ablation' / 'random_noise' / 'seed0-dseed1' /
            'badnets' / 'results.json') as f:
    assert json.load(f)['clean_subset']['seed'] == 1
  assert (tmp_path / 'seed0' / 'badnets' / 'nba-dseed1' /
          'results.json').exists()
