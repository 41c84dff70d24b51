"""Reliability: bad input is refused loudly, and no finished work is lost.

Every bad input below asserts the error type and that the message names the
problem (the config field, the step and directory, the file); where files
are involved, that they are byte-identical afterwards. The subprocess tests
kill a real `experiments.train` run (SIGKILL during a save or an epoch,
SIGTERM) and check that it resumes to the parameters of an uninterrupted
run. Kept small for a shared 2-core CPU: the 8x8 digits, a TinyNet, and a
JAX compilation cache shared by the training subprocesses.
"""

import ast
import hashlib
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import digits as digits_config
from nbajax import atomic
from nbajax import data as data_lib
from nbajax import losses
from nbajax import training
from nbajax.errors import UserError
from nbajax.checkpoint import (CheckpointError, Checkpointer,
                               CorruptCheckpointError, restore_variables)
from nbajax.pipeline import fields, validate
from nbajax.pipeline import train as train_job
from nbajax.training.steps import classification_sums
from tests.tiny import TinyNet, digits, tiny_state as _state

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  """The digits config (not type-safe, so tests can put any value in)."""
  c = ml_collections.ConfigDict(digits_config.get_config().to_dict(),
                                type_safe=False)
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _snapshot(root) -> dict[str, str]:
  """sha256 of every file under `root`, by relative path."""
  root = pathlib.Path(root)
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob('*')) if p.is_file()}


# ------------------------------------------------------------ bad configs

# (job, overrides, words the message must contain). All raise ValueError.
BAD_CONFIGS = [
    ('train', {'model.name': 'resnet9'}, ['config.model.name', 'wrn-16-1']),
    ('train', {'model.compute_dtype': 'float16'},
     ['config.model.compute_dtype', 'bfloat16']),
    ('attack', {'attack.name': 'badnet'}, ['config.attack.name', 'badnets']),
    ('defend', {'defense.name': 'spectral'}, ['config.defense.name', 'nad']),
    ('grid', {'grid.defenses': ('ft', 'nda')}, ['config.grid.defenses',
                                                'nda']),
    ('grid', {'grid.attacks': ()}, ['config.grid.attacks', 'non-empty']),
    ('grid', {'grid.seeds': (0, -1)}, ['config.grid.seeds']),
    ('grid', {'grid.attack_overrides.sgi': {'rate': 0.5}},
     ['config.grid.attack_overrides.sgi', 'unknown attack']),
    ('grid', {'grid.attack_overrides.sig': {'rate': 2.0}},
     ['config.grid.attack_overrides.sig', 'config.attack.rate', '(0, 1]']),
    ('train', {'data.name': ''}, ['config.data.name', 'digits']),
    ('train', {'data.name': 'npz', 'data.path': ''}, ['config.data.path']),
    ('train', {'data.name': 'npz', 'data.path': '/nonexistent/gtsrb.npz'},
     ['config.data.path', 'no such file']),
    ('attack', {'attack.rate': 0.0}, ['config.attack.rate', '(0, 1]']),
    ('attack', {'attack.rate': 1.5}, ['config.attack.rate', '(0, 1]']),
    ('attack', {'attack.mode': 'one-to-all'}, ['config.attack.mode',
                                               'all-to-all']),
    ('attack', {'attack.target': -1}, ['config.attack.target', '>= 0']),
    ('attack', {'attack.target': 1.5}, ['config.attack.target', 'int']),
    ('attack', {'attack.name': 'sig', 'attack.mode': 'all-to-all'},
     ['config.attack.mode', 'clean-label']),
    ('attack', {'attack.params_json': '{"alpha": '},
     ['config.attack.params', 'JSON']),
    ('attack', {'attack.name': 'blend', 'attack.params_json': '{"alpah": 1}'},
     ['config.attack.params', 'alpah']),
    ('attack', {'attack.name': 'blend', 'attack.params_json': '{"alpha": 2}'},
     ['config.attack.params', 'alpha']),
    ('defend', {'defense.clean_fraction': 0.0},
     ['config.defense.clean_fraction', '(0, 1]']),
    ('defend', {'defense.clean_fraction': 1.5},
     ['config.defense.clean_fraction', '(0, 1]']),
    ('defend', {'defense.nba.eps': 16.0}, ['config.defense.nba.eps',
                                           '16/255']),
    ('defend', {'defense.nba.eps': -0.1}, ['config.defense.nba.eps',
                                           '[0, 1]']),
    ('defend', {'defense.nba.alpha': -1.0}, ['config.defense.nba.alpha',
                                             '>= 0']),
    ('defend', {'defense.nba.steps': -1}, ['config.defense.nba.steps',
                                           'non-negative int']),
    ('defend', {'defense.nba.steps': 2.5}, ['config.defense.nba.steps',
                                            'int']),
    ('defend', {'defense.nba.gamma': -1.0}, ['config.defense.nba.gamma']),
    ('defend', {'defense.nba.lam': -0.5}, ['config.defense.nba.lam']),
    ('defend', {'defense.nba.kd': -1.0}, ['config.defense.nba.kd']),
    ('defend', {'defense.nba.betas': (500.0, -1.0, 1000.0)},
     ['config.defense.nba.betas', '>= 0']),
    ('defend', {'defense.nba.betas': (1.0, 2.0)},
     ['config.defense.nba.betas', 'one value per layer']),
    ('defend', {'defense.nba.weights': {'spatial': 0.0, 'channel': 0.0}},
     ['config.defense.nba.weights', 'at least one']),
    ('defend', {'defense.nba.weights': {'spatial': -1.0}},
     ['config.defense.nba.weights.spatial', '>= 0']),
    ('defend', {'defense.nba.weights': {'temporal': 1.0}},
     ['config.defense.nba.weights.temporal', 'spatial']),
    ('defend', {'defense.nba.mode': 'global'}, ['config.defense.nba.mode',
                                                'universal']),
    ('defend', {'defense.nba.align_to': 'teacher'},
     ['config.defense.nba.align_to', 'pseudo']),
    ('defend', {'defense.nba.generator_target': 'x'},
     ['config.defense.nba.generator_target', 'clean']),
    ('defend', {'defense.nba.pseudo_bn': 'frozen'},
     ['config.defense.nba.pseudo_bn', 'eval']),
    ('defend', {'defense.name': 'nad', 'defense.nad.betas': (-5.0,)},
     ['config.defense.nad.betas']),
    ('defend', {'defense.name': 'nad', 'defense.teacher.lr': 0.0},
     ['config.defense.teacher.lr', '> 0']),
    ('defend', {'defense.name': 'fp', 'defense.fp.max_ratio': 1.5},
     ['config.defense.fp.max_ratio', '[0, 1]']),
    ('train', {'train.lr': 0.0}, ['config.train.lr', '> 0']),
    ('train', {'train.lr': float('nan')}, ['config.train.lr']),
    ('train', {'train.epochs': 0}, ['config.train.epochs', '>= 1']),
    ('train', {'train.batch_size': 0}, ['config.train.batch_size', '>= 1']),
    ('train', {'train.momentum': 1.0}, ['config.train.momentum', '[0, 1)']),
    ('train', {'train.weight_decay': -1e-4}, ['config.train.weight_decay']),
    ('train', {'train.schedule': 'linear'}, ['config.train.schedule',
                                             'cosine']),
    ('train', {'train.loop': 'while'}, ['config.train.loop', 'scan']),
    ('train', {'eval_every': 0}, ['config.eval_every', '>= 1']),
    ('defend', {'defense.eval_every': 0}, ['config.defense.eval_every']),
    ('defend', {'defense.epochs': 0}, ['config.defense.epochs', '>= 1']),
    ('train', {'seed': -1}, ['config.seed', '>= 0']),
    ('defend', {'defense.nba.optimizer': {'schedul': 'step'}},
     ['config.defense.nba.optimizer', 'schedul']),
    ('defend', {'defense.nba.optimizer': {'schedule': 'step',
                                          'boundaries': (-1,)}},
     ['config.defense.boundaries', 'config.defense.nba.optimizer applied']),
    ('train', {'train.optimizer': 'rmsprop'}, ['config.train.optimizer',
                                               'adam']),
    ('train', {'data.val_fraction': 1.0}, ['config.data.val_fraction']),
    ('train', {'data.eval_split': 'train'}, ['config.data.eval_split',
                                             'val']),
    ('train', {'data.eval_split': 'val', 'data.val_fraction': 0.0},
     ['config.data.eval_split', 'val_fraction > 0']),
    ('defend', {'defense.name': 'anp', 'defense.anp.eps': 2.0},
     ['config.defense.anp.eps must be a number in [0, 1]']),
    ('defend', {'defense.name': 'anp', 'defense.anp.prune_by': 'size'},
     ['config.defense.anp.prune_by', 'threshold']),
    ('defend', {'defense.name': 'mcr', 'defense.mcr.t': 1.5},
     ['config.defense.mcr.t']),
    ('defend', {'defense.name': 'ibau', 'defense.ibau.portion': 0.0},
     ['config.defense.ibau.portion', '(0, 1]']),
    ('defend', {'defense.name': 'ibau',
                'defense.ibau.outer.optimizer': 'rmsprop'},
     ['config.defense.ibau.outer.optimizer']),
]


class TestValidateConfig:

  @pytest.mark.parametrize(
      'job, overrides, words', BAD_CONFIGS,
      ids=[f'{j}-{"-".join(o)}' for j, o, _ in BAD_CONFIGS])
  def test_bad_field_is_named_with_what_is_allowed(self, job, overrides,
                                                   words):
    with pytest.raises(ValueError) as e:
      validate.validate_config(_config(**overrides), job=job)
    for word in words:
      assert word in str(e.value), (word, str(e.value))

  @pytest.mark.parametrize('name', ['digits', 'gtsrb', 'cifar10_wrn'])
  def test_shipped_configs_pass(self, name, monkeypatch):
    monkeypatch.chdir(REPO)  # gtsrb's data path is relative to the repo.
    import importlib
    c = importlib.import_module(f'experiments.configs.{name}').get_config()
    if name == 'gtsrb' and not os.path.exists(c.data.path):
      c.data.path = __file__  # Only the file's existence is checked.
    for job in validate.JOBS:
      validate.validate_config(c, job=job)

  def test_batch_not_divisible_by_devices_says_how_to_fix(self, monkeypatch):
    monkeypatch.setattr(fields.jax, 'device_count', lambda: 4)
    with pytest.raises(ValueError) as e:
      validate.validate_config(_config(**{'train.batch_size': 30}),
                               job='train')
    for word in ('config.train.batch_size=30', '4 devices',
                 '--config.train.batch_size=28 or 32'):
      assert word in str(e.value)

  def test_missing_field_is_named(self):
    c = _config()
    del c.train['lr']
    with pytest.raises(ValueError, match=r'config\.train\.lr is missing'):
      validate.validate_config(c, job='train')

  def test_unknown_job(self):
    with pytest.raises(ValueError, match='job must be one of'):
      validate.validate_config(_config(), job='evaluate')


# ----------------------------------------------------- bad data for a config


def _tiny_dataset(n=100, hw=8, classes=10):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (n, hw, hw, 1), dtype=np.uint8)
  y = np.arange(n) % classes
  return data_lib.from_arrays('tiny', x, y, x[:20], y[:20],
                              num_classes=classes)


BAD_FOR_DATA = [
    ('attack', {'attack.target': 10}, {}, ['config.attack.target=10',
                                           '10 classes']),
    ('attack', {'attack.params_json': '{"size": 9}'}, {},
     ['config.attack', 'badnets trigger does not fit', '8x8x1']),
    ('attack', {'attack.name': 'trojan', 'attack.params_json': '{"size": 12}'},
     {}, ['trojan trigger does not fit', 'too small']),
    ('attack', {'attack.rate': 0.001}, {}, ['config.attack.rate',
                                            'poisons no sample']),
    ('train', {'train.batch_size': 64}, {'n': 40},
     ['config.train.batch_size=64', '40 images']),
    ('defend', {'defense.clean_fraction': 0.05, 'defense.batch_size': 32},
     {}, ['config.defense.clean_fraction', 'config.defense.batch_size=32']),
    ('defend', {'defense.name': 'nad', 'defense.clean_fraction': 0.5,
                'defense.batch_size': 16, 'defense.teacher.batch_size': 64},
     {}, ['config.defense.teacher.batch_size=64', '50 images']),
]


@pytest.mark.parametrize('job, overrides, data_kw, words', BAD_FOR_DATA,
                         ids=[f'{j}-{"-".join(o)}'
                              for j, o, _, _ in BAD_FOR_DATA])
def test_config_that_does_not_fit_the_data(job, overrides, data_kw, words):
  config = _config(**overrides)
  validate.validate_config(config, job=job)  # Fine without the data...
  with pytest.raises(ValueError) as e:  # ...but not for this data set.
    validate.validate_against_data(config, _tiny_dataset(**data_kw), job=job)
  for word in words:
    assert word in str(e.value), (word, str(e.value))


# -------------------------------------------------------- bad .npz files


class _Unpickled:
  """Unpickling this would create the file `marker` (it must never run)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, 'w'))


def _npz_arrays(**changes):
  rng = np.random.default_rng(0)
  arrays = {'x_train': rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
            'y_train': np.arange(40) % 4,
            'x_test': rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
            'y_test': np.arange(8) % 4}
  arrays.update(changes)
  return {k: v for k, v in arrays.items() if v is not None}


BAD_NPZ = [
    ('float images', _npz_arrays(x_train=np.zeros((40, 8, 8, 3), np.float32)),
     {}, ValueError, 'x_train must hold integer pixels'),
    ('pixels above 255', _npz_arrays(
        x_train=np.full((40, 8, 8, 3), 300, np.int16)), {}, ValueError,
     r'x_train pixels must lie in 0\.\.255'),
    ('negative labels', _npz_arrays(y_train=np.arange(40) % 4 - 1), {},
     ValueError, 'y_train labels must be non-negative'),
    ('label >= num_classes', _npz_arrays(), {'num_classes': 3}, ValueError,
     r'y_train labels must lie in \[0, 3\)'),
    ('float labels', _npz_arrays(y_train=np.zeros(40, np.float32)), {},
     ValueError, 'y_train must hold integer labels'),
    ('label count differs', _npz_arrays(y_train=np.arange(39) % 4), {},
     ValueError, 'x_train has 40 images but y_train has 39 labels'),
    ('images not NHWC', _npz_arrays(x_train=np.zeros((40, 64), np.uint8)),
     {}, ValueError, r'x_train must be \[N, H, W\]'),
    ('test images of another size', _npz_arrays(
        x_test=np.zeros((8, 16, 16, 3), np.uint8)), {}, ValueError,
     'x_test images have shape'),
    ('missing keys', _npz_arrays(x_test=None, y_test=None), {}, UserError,
     'expected x_train, y_train, x_test, y_test'),
]


@pytest.mark.parametrize('what, arrays, kwargs, error, match', BAD_NPZ,
                         ids=[b[0] for b in BAD_NPZ])
def test_bad_npz_is_refused_and_left_intact(tmp_path, what, arrays, kwargs,
                                            error, match):
  del what
  path = tmp_path / 'data.npz'
  np.savez(path, **arrays)
  before = _snapshot(tmp_path)
  with pytest.raises(error, match=match):
    data_lib.load_dataset('npz', path=path, **kwargs)
  assert _snapshot(tmp_path) == before


def test_npz_with_pickled_objects_is_never_unpickled(tmp_path):
  marker = tmp_path / 'unpickled'
  payload = np.array([_Unpickled(str(marker))], dtype=object)
  path = tmp_path / 'evil.npz'
  np.savez(path, **_npz_arrays(x_train=payload))
  with pytest.raises(UserError, match='never unpickles'):
    data_lib.load_dataset('npz', path=path)
  assert not marker.exists()


def test_missing_npz_file():
  with pytest.raises(UserError, match='no .npz file at'):
    data_lib.load_dataset('npz', path='/nonexistent/data.npz')


def test_nothing_in_the_project_unpickles():
  """No pickle import or call, and every np.load passes allow_pickle=False."""
  banned = re.compile(r'\bimport (c?pickle|dill|joblib|cloudpickle)\b|'
                      r'\bfrom (c?pickle|dill|joblib|cloudpickle) import|'
                      r'pickle\.loads?\(|allow_pickle\s*=\s*True|'
                      r'read_pickle|torch\.load')
  offenders = []
  for path in sorted((REPO / 'nbajax').rglob('*.py')) + sorted(
      (REPO / 'experiments').rglob('*.py')):
    text = path.read_text()
    offenders += [f'{path}: {m.group(0)}' for m in banned.finditer(text)]
    for node in ast.walk(ast.parse(text)):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == 'load' and isinstance(node.func.value,
                                                      ast.Name)
          and node.func.value.id in ('np', 'numpy', 'jnp')):
        safe = any(k.arg == 'allow_pickle' and isinstance(k.value,
                                                          ast.Constant)
                   and k.value.value is False for k in node.keywords)
        if not safe:
          offenders.append(f'{path}:{node.lineno}: np.load without '
                           'allow_pickle=False')
  assert not offenders, offenders


def test_unprepared_tfds_fails_at_once_with_how_to_prepare(tmp_path):
  start = time.monotonic()
  with pytest.raises(data_lib.DatasetNotPreparedError) as e:
    data_lib.load_dataset('cifar10', data_dir=str(tmp_path))
  assert time.monotonic() - start < 10
  assert 'tfds build cifar10' in str(e.value)
  assert os.listdir(tmp_path) == []  # Nothing downloaded or created.


def test_finished_workdir_of_other_settings_is_not_overwritten(tmp_path):
  atomic.write_json(str(tmp_path / 'results.json'),
                    {'fingerprint': 'another-run', 'role': 'clean',
                     'test_acc': 0.9})
  before = _snapshot(tmp_path)
  with pytest.raises(UserError, match='--overwrite'):
    train_job.train_clean(_config(), str(tmp_path))
  assert _snapshot(tmp_path) == before


# ------------------------------------------------------------ checkpoints


def _leaves_equal(a, b):
  return all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.fixture
def three_steps(tmp_path):
  """A checkpoint directory with steps 1, 2, 3 (different parameters)."""
  ck = Checkpointer(tmp_path / 'ck', max_to_keep=5)
  states = {s: _state(seed=s) for s in (1, 2, 3)}
  for s, state in states.items():
    ck.save(s, state, {'step': s})
  yield ck, states
  ck.close()


def _corrupt_arrays(step_dir):
  """Truncates every array data file of a step, as a torn disk write does."""
  hit = 0
  for p in pathlib.Path(step_dir, 'state').rglob('*'):
    if p.is_file() and p.parent.name == 'd':
      p.write_bytes(p.read_bytes()[:7])
      hit += 1
  assert hit


def _overwrite_metadata(step_dir):
  (pathlib.Path(step_dir) / 'state' / '_METADATA').write_text('{not json')


# Reading a corrupted step, TensorStore's reads still in flight report
# 'Event loop is closed' once Orbax has given up (see _read_state).
_ORBAX_NOISE = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')


@_ORBAX_NOISE
class TestCheckpointFailures:

  @pytest.mark.parametrize('template, words', [
      (lambda: _state(num_classes=7), ["['params']['head']['bias']",
                                       '(10,)', '(7,)', 'another model']),
      (lambda: training.create_train_state(
          _WideTiny(), _state().tx, jax.random.key(0), (8, 8, 1)),
       ["['BatchNorm_0']", '(8,)', '(4,)', 'another model']),
  ], ids=['other-num-classes', 'other-model'])
  def test_restore_into_another_model_names_the_variable(self, three_steps,
                                                         template, words):
    ck, _ = three_steps
    before = _snapshot(ck.directory)
    for step in (3, None):  # No silent fallback: every step would differ.
      with pytest.raises(CheckpointError) as e:
        ck.restore(template(), step=step)
      assert not isinstance(e.value, CorruptCheckpointError)
      for word in words + ['step 3', ck.directory]:
        assert word in str(e.value), (word, str(e.value))
    with pytest.raises(CheckpointError, match='another model'):
      ck.restore_variables(jax.eval_shape(lambda: template().variables))
    assert _snapshot(ck.directory) == before

  def test_restore_with_another_optimizer_says_so(self, three_steps):
    ck, _ = three_steps
    tx = training.make_optimizer(training.make_schedule(
        lr=0.1, schedule='constant', steps_per_epoch=1, epochs=1),
                                 momentum=0.0)
    plain_sgd = training.create_train_state(TinyNet(10), tx,
                                            jax.random.key(0), (8, 8, 1))
    with pytest.raises(CheckpointError) as e:
      ck.restore(plain_sgd)
    assert not isinstance(e.value, CorruptCheckpointError)
    for word in ('step 3', ck.directory, 'another optimizer',
                 '14 arrays saved, this one needs 9'):
      assert word in str(e.value), (word, str(e.value))

  def test_missing_step_names_the_complete_ones(self, three_steps):
    ck, _ = three_steps
    with pytest.raises(CheckpointError,
                       match=r'step 7 .*no such step; complete steps: '
                       r'\[1, 2, 3\]'):
      ck.restore(_state(), step=7)

  def test_partial_step_from_a_crash_is_named_and_ignored(self, three_steps):
    ck, states = three_steps
    # What Orbax leaves when a save of step 4 dies half-way.
    partial = pathlib.Path(ck.directory, '4.orbax-checkpoint-tmp')
    (partial / 'state').mkdir(parents=True)
    (partial / 'state' / '_METADATA').write_text('{"tree_meta')
    ck = Checkpointer(ck.directory, max_to_keep=5)
    assert ck.all_steps() == [1, 2, 3]
    assert ck.partial_steps() == {4: str(partial)}
    with pytest.raises(CheckpointError,
                       match=r'step 4 .*interrupted before it completed'):
      ck.restore(_state(), step=4)
    restored, meta = ck.restore(_state())
    assert meta == {'step': 3} and _leaves_equal(restored.params,
                                                 states[3].params)
    ck.save(4, _state(seed=4), {'step': 4})  # The partial one is replaced.
    assert ck.all_steps() == [1, 2, 3, 4] and not partial.exists()

  @pytest.mark.parametrize('damage', [_corrupt_arrays, _overwrite_metadata],
                           ids=['truncated-arrays', 'overwritten-metadata'])
  def test_corrupted_step_is_named_and_older_steps_stay_usable(
      self, three_steps, damage, caplog):
    ck, states = three_steps
    damage(ck.step_dir(3))
    intact = {s: _snapshot(ck.step_dir(s)) for s in (1, 2)}
    with pytest.raises(CorruptCheckpointError) as e:
      ck.restore(_state(), step=3)
    for word in ('step 3', ck.directory, 'unusable',
                 'other complete steps: [1, 2]'):
      assert word in str(e.value), (word, str(e.value))
    with pytest.raises(CorruptCheckpointError, match='step 3'):
      ck.restore_variables(jax.eval_shape(lambda: _state().variables), 3)
    with caplog.at_level(logging.WARNING):
      restored, meta = ck.restore(_state())  # Falls back to step 2.
    assert meta == {'step': 2}
    assert _leaves_equal(restored.params, states[2].params)
    assert 'skipping checkpoint step 3' in caplog.text
    assert {s: _snapshot(ck.step_dir(s)) for s in (1, 2)} == intact

  def test_every_step_corrupted_lists_each_reason(self, three_steps):
    ck, _ = three_steps
    for step in (1, 2, 3):
      _corrupt_arrays(ck.step_dir(step))
    with pytest.raises(CorruptCheckpointError,
                       match=r'no step in .* can be restored:\nstep 3'):
      ck.restore(_state())

  def test_existing_step_is_never_overwritten(self, three_steps):
    ck, _ = three_steps
    before = _snapshot(ck.step_dir(2))
    with pytest.raises(CheckpointError, match='step 2 already exists'):
      ck.save(2, _state(seed=9), {})
    assert _snapshot(ck.step_dir(2)) == before

  def test_crash_during_a_save_keeps_the_previous_step(self, tmp_path):
    """A process killed inside Orbax's save of step 2 (after the arrays,
    while writing the metadata) leaves step 1 complete and restorable."""
    ck_dir = tmp_path / 'ck'
    Checkpointer(ck_dir).save(1, _state(seed=1), {'step': 1})
    before = _snapshot(ck_dir / '1')
    script = textwrap.dedent(f'''
        import os, signal
        import orbax.checkpoint as ocp
        from tests.tiny import tiny_state as _state
        from nbajax.checkpoint import Checkpointer
        async def die(*args, **kwargs):
          os.kill(os.getpid(), signal.SIGKILL)
        ocp.JsonCheckpointHandler._save_fn = die
        Checkpointer({str(ck_dir)!r}).save(2, _state(seed=2), {{'step': 2}})
    ''')
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ck = Checkpointer(ck_dir)
    assert ck.all_steps() == [1]
    assert list(ck.partial_steps()) == [2]
    assert _snapshot(ck_dir / '1') == before
    restored, meta = ck.restore(_state())
    assert meta == {'step': 1}
    assert _leaves_equal(restored.params, _state(seed=1).params)


class _WideTiny(nn.Module):
  """TinyNet's layer names with 4 channels instead of 8: another model."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.relu(nn.BatchNorm(use_running_average=not train)(
        nn.Conv(4, (3, 3), use_bias=False)(x)))
    return nn.Dense(self.num_classes, name='head')(h.mean((1, 2))), {
        'group1': h}


# --------------------------------------------------------------- training


def _scaled_ce(model):
  """Cross entropy times `aux` (nan makes the loss non-finite on purpose)."""
  def loss_fn(params, batch_stats, x, y, key, aux):
    del key
    (logits, _), upd = model.apply({'params': params,
                                    'batch_stats': batch_stats}, x,
                                   train=True, mutable=['batch_stats'])
    loss = losses.cross_entropy(logits, y) * aux
    return loss, (upd['batch_stats'], classification_sums(logits, y, loss))
  return loss_fn


def _fit(ck, epochs, scale):
  x, y = digits(64)
  model = TinyNet(10)
  trainer = training.Trainer(_scaled_ce(model), batch_size=32, loop='step')
  state = training.create_train_state(
      model, training.make_optimizer(training.make_schedule(
          lr=0.05, schedule='constant', steps_per_epoch=2, epochs=epochs)),
      jax.random.key(0), (8, 8, 1))
  return training.fit(state, x, y, trainer=trainer, epochs=epochs,
                      key=jax.random.key(1), aux=jnp.float32(scale),
                      checkpointer=ck, meta={})


class TestTrainingFailures:

  def test_non_finite_loss_names_the_epoch_and_last_good_checkpoint(
      self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck')
    _fit(ck, 1, 1.0)
    before = _snapshot(ck.step_dir(1))
    with pytest.raises(FloatingPointError) as e:
      _fit(ck, 2, float('nan'))
    assert 'epoch 2' in str(e.value)
    assert f'last good checkpoint: {ck.step_dir(1)}' in str(e.value)
    assert ck.all_steps() == [1] and _snapshot(ck.step_dir(1)) == before

  def test_first_signal_waits_for_the_epoch_a_second_stops_at_once(self):
    from nbajax.training.fit import _StopOnSignal
    before = signal.getsignal(signal.SIGTERM)
    with _StopOnSignal() as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      assert stop.received == signal.SIGTERM  # Training goes on to the save.
      with pytest.raises(training.TrainingInterrupted) as e:
        os.kill(os.getpid(), signal.SIGINT)
    assert e.value.signum == signal.SIGINT
    assert 'stopped at once' in str(e.value)
    assert signal.getsignal(signal.SIGTERM) is before  # Handlers restored.

  @_ORBAX_NOISE
  def test_resume_skips_a_corrupted_newest_step_and_keeps_it_aside(
      self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck', max_to_keep=3)
    _fit(ck, 2, 1.0)
    _corrupt_arrays(ck.step_dir(2))
    _, history = _fit(ck, 3, 1.0)  # Resumes from 1, redoes 2, then 3.
    assert [h['epoch'] for h in history] == [1, 2, 3]
    assert ck.all_steps() == [1, 2, 3]
    aside = [p for p in os.listdir(ck.directory)
             if p.startswith('unusable-2-')]
    assert len(aside) == 1  # Kept for inspection, never deleted.
    reference = Checkpointer(tmp_path / 'ref', max_to_keep=3)
    final, _ = _fit(reference, 3, 1.0)
    restored = ck.restore_variables(jax.eval_shape(lambda: final.variables))
    assert _leaves_equal(restored, final.variables)


# ------------------------------------------- killed training subprocesses

EPOCHS = 14
_TRAIN = [sys.executable, '-m', 'experiments.train', '--config',
          'experiments/configs/digits.py', f'--config.train.epochs={EPOCHS}',
          f'--config.eval_every={EPOCHS}']


def _env(cache_dir=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  if cache_dir:  # Later runs reuse the first run's compiled steps.
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  return env


def _train(workdir, cache_dir, timeout=240):
  proc = subprocess.run(_TRAIN + [f'--workdir={workdir}'], cwd=REPO,
                        env=_env(cache_dir), capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _start(workdir, cache_dir, log):
  return subprocess.Popen(_TRAIN + [f'--workdir={workdir}'], cwd=REPO,
                          env=_env(cache_dir), stdout=log,
                          stderr=subprocess.STDOUT)


def _entries(ck_dir):
  try:
    return os.listdir(ck_dir)
  except FileNotFoundError:
    return []


def _final_params(workdir, step=EPOCHS):
  return restore_variables(os.path.join(workdir, 'checkpoints', str(step)))


@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  return tmp_path_factory.mktemp('jax_cache')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, jax_cache):
  """Final variables of a run that nothing interrupted."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  _train(workdir, jax_cache)
  return _final_params(workdir)


def test_sigkill_during_training_resumes_to_the_same_parameters(
    tmp_path, jax_cache, uninterrupted):
  workdir, ck_dir = tmp_path / 'run', tmp_path / 'run' / 'checkpoints'
  with open(tmp_path / 'log', 'w') as log:
    proc = _start(workdir, jax_cache, log)
    seen, deadline = [], time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
      names = _entries(ck_dir)
      steps = [int(n) for n in names if n.isdigit()]
      saving = any('orbax-checkpoint-tmp' in n for n in names)
      # Kill in the middle of a save once a previous step exists, or
      # mid-run at the latest after step 4.
      if (saving and steps) or max(steps, default=0) >= 4:
        proc.send_signal(signal.SIGKILL)
        seen = names
        print('killed with', sorted(names))
        break
      time.sleep(0.003)
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, (tmp_path / 'log').read_text()
  ck = Checkpointer(ck_dir)
  assert ck.all_steps() and ck.latest_step() < EPOCHS, seen
  for step in ck.all_steps():  # Whatever was complete stays readable.
    restore_variables(ck.step_dir(step))
  _train(workdir, jax_cache)
  assert _leaves_equal(_final_params(workdir), uninterrupted)


def test_sigterm_exits_non_zero_keeping_a_restorable_checkpoint(
    tmp_path, jax_cache, uninterrupted):
  workdir, ck_dir = tmp_path / 'run', tmp_path / 'run' / 'checkpoints'
  with open(tmp_path / 'log', 'w') as log:
    proc = _start(workdir, jax_cache, log)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
      if any(n.isdigit() and int(n) >= 2 for n in _entries(ck_dir)):
        proc.send_signal(signal.SIGTERM)
        break
      time.sleep(0.01)
    proc.wait(timeout=60)
  out = (tmp_path / 'log').read_text()
  assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
  assert 'Traceback' not in out
  last = out.strip().splitlines()[-1]
  assert last.startswith('interrupted: signal 15 after epoch'), last
  ck = Checkpointer(ck_dir)
  assert 2 <= ck.latest_step() < EPOCHS
  restore_variables(ck.step_dir(ck.latest_step()))
  _train(workdir, jax_cache)
  assert _leaves_equal(_final_params(workdir), uninterrupted)


def test_cli_without_prepared_tfds_data_fails_fast(tmp_path):
  start = time.monotonic()
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.train', f'--workdir={tmp_path}/w',
       '--config.data.name=cifar10', f'--config.data.data_dir={tmp_path}'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
  assert time.monotonic() - start < 20
  assert proc.returncode == 2
  assert 'tfds build cifar10' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_cli_bad_config_is_one_line_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.train', f'--workdir={tmp_path}/w',
       '--config.train.momentum=1.5'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert 'Traceback' not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: config.train.momentum must be a number in [0, 1), got 1.5')
  assert not os.path.exists(tmp_path / 'w')
