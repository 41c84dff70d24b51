"""Every shipped config loads, passes validation for every job, and says in
its docstring how to run it; every CLI's --help lists its flags."""

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import experiments.configs
from nbajax.pipeline import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(m.name for m in pkgutil.iter_modules(
    experiments.configs.__path__) if m.name != 'base')


def test_the_documented_configs_exist():
  assert {'digits', 'gtsrb', 'cifar10_wrn', 'cifar10_preact',
          'cifar10_subset'} <= set(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
class TestConfig:

  def test_validates_for_every_job(self, name):
    config = importlib.import_module(f'experiments.configs.{name}').get_config()
    for job in validate.JOBS:
      if config.data.name == 'npz':
        config.data.path = __file__  # Existence is all validate checks here.
      validate.validate_config(config, job=job)

  def test_docstring_gives_the_run_command(self, name):
    module = importlib.import_module(f'experiments.configs.{name}')
    assert 'python -m experiments.' in module.__doc__
    assert f'experiments/configs/{name}.py' in module.__doc__ or (
        name == 'digits')


@pytest.mark.parametrize('job, flags', [
    ('train', ('--config', '--workdir', '--[no]overwrite',
               '--compilation_cache')),
    ('attack', ('--config', '--workdir')),
    ('defend', ('--config', '--backdoor_dir')),
    ('reproduce', ('--config', '--workdir', '--only')),
    ('ablate', ('--config', '--workdir', '--only')),
    ('probe', ('--config', '--backdoor_dir', '--eps_255', '--steps')),
    ('benchmark', ('--config', '--models', '--batches', '--kinds',
                   '--[no]full_runs', '--out', '--compilation_cache')),
])
def test_cli_help_lists_its_flags(job, flags):
  proc = subprocess.run([sys.executable, '-m', f'experiments.{job}', '--help'],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  text = proc.stdout + proc.stderr  # absl's --help exits with 1.
  for flag in flags:
    assert f'  {flag}:' in text, (flag, text[-2000:])


def test_cifar10_subset_nba_trains_as_its_sweeps_winner():
  """The grid's NBA optimizer is the lr sweep's winner (lr01), and the
  sweep's own `nba` variant stays the setting it was run against."""
  from experiments.configs import cifar10_subset, cifar10_subset_nba_lr
  from nbajax.defenses import nba
  from nbajax.pipeline import ablation
  sweep = cifar10_subset_nba_lr.get_config()
  grid = nba.section(cifar10_subset.get_config().defense)
  winner = nba.section(ablation.variant_config(sweep, 'lr01').defense)
  before = nba.section(ablation.variant_config(sweep, 'nba').defense)
  keys = ('lr', 'schedule', 'boundaries', 'decay', 'epochs')
  assert {k: grid[k] for k in keys} == {k: winner[k] for k in keys}
  assert (before.lr, tuple(before.boundaries)) == (0.1, (2, 16))
