"""Every shipped config loads, passes validation for every job, and says in
its docstring how to run it."""

import importlib
import pkgutil

import pytest

import experiments.configs
from nbajax.pipeline import validate

CONFIGS = sorted(m.name for m in pkgutil.iter_modules(
    experiments.configs.__path__) if m.name != 'base')


def test_the_documented_configs_exist():
  assert {'digits', 'gtsrb', 'cifar10_wrn', 'cifar10_preact'} <= set(CONFIGS)


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
