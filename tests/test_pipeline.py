"""End-to-end tests of the jobs: the real CLIs in subprocesses, on digits.

Each CLI run is made a few seconds long by config overrides (one epoch,
small batches, a 10 % clean subset, one PGD step); the runs of one module
share a train and an attack workdir so that every model is trained once.
"""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import digits as digits_config
from nbajax.checkpoint import Checkpointer
from nbajax import defenses
from nbajax.pipeline import attack as attack_job
from nbajax.pipeline import defend as defend_job
from nbajax.pipeline import common, defense_setup, derive
from nbajax.pipeline import train as train_job
from tests.tiny import tiny_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join('experiments', 'configs', 'digits.py')
TINY = {
    'train': ['--config.train.epochs=1'],
    'attack': ['--config.train.epochs=1'],
    'probe': ['--config.defense.teacher.epochs=1',
              '--config.defense.teacher.batch_size=16',
              '--config.defense.clean_fraction=0.1',
              '--eps_255=0,32', '--steps=0,2', '--images=64'],
    'defend': ['--config.defense.name=nba', '--config.defense.epochs=1',
               '--config.defense.teacher.epochs=1',
               '--config.defense.batch_size=16',
               '--config.defense.teacher.batch_size=16',
               '--config.defense.clean_fraction=0.1',
               '--config.defense.nba.steps=1'],
}
METRICS = ('acc', 'acc_nontarget', 'asr', 'ra')


def _cli(job: str, workdir, *flags: str) -> subprocess.CompletedProcess:
  """Runs `python -m experiments.<job>` with the tiny overrides."""
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  env.pop('NBAJAX_TRACEBACK', None)
  cmd = [sys.executable, '-m', f'experiments.{job}', f'--config={CONFIG}',
         f'--workdir={workdir}', *TINY[job], *flags]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _results(workdir) -> dict:
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def _steps(workdir) -> list[int]:
  ckpt = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())


def _meta(workdir) -> dict:
  """The JSON metadata saved with the newest checkpoint step."""
  return Checkpointer(os.path.join(workdir, 'checkpoints')).restore_meta()


def _is_fraction(value) -> bool:
  return isinstance(value, float) and 0.0 <= value <= 1.0


@pytest.fixture(scope='module')
def train_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('pipeline') / 'train'
  _ok(_cli('train', workdir))
  return workdir


@pytest.fixture(scope='module')
def attack_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('pipeline') / 'attack'
  _ok(_cli('attack', workdir))
  return workdir


class TestTrainCli:

  def test_writes_results_and_a_checkpoint(self, train_dir):
    r = _results(train_dir)
    assert {'fingerprint', 'role', 'dataset', 'model', 'test_acc', 'epochs',
            'history', 'wall_seconds', 'config'} <= set(r)
    assert (r['role'], r['dataset'], r['model'], r['epochs']) == (
        'clean', 'digits', 'cnn', 1)
    assert _is_fraction(r['test_acc'])
    assert r['history'][-1]['test_acc'] == r['test_acc']
    assert r['config']['train']['epochs'] == 1
    assert _steps(train_dir) == [1]
    meta = _meta(train_dir)
    assert (meta['role'], meta['model'], meta['num_classes']) == (
        'clean', 'cnn', 10)
    assert meta['fingerprint'] == r['fingerprint']

  def test_same_config_reuses_the_finished_run(self, train_dir):
    path = os.path.join(train_dir, 'results.json')
    before = (open(path).read(), os.stat(path).st_mtime_ns)
    proc = _ok(_cli('train', train_dir))
    assert 'reusing' in proc.stderr
    assert 'epoch 1/1' not in proc.stderr  # Nothing was trained again.
    assert (open(path).read(), os.stat(path).st_mtime_ns) == before
    assert _steps(train_dir) == [1]

  def test_defense_fields_do_not_change_a_trained_model(self, train_dir):
    proc = _ok(_cli('train', train_dir, '--config.defense.epochs=3',
                    '--config.grid.seeds=(0,1)'))
    assert 'reusing' in proc.stderr

  def test_other_config_refuses_and_names_overwrite(self, train_dir):
    before = _results(train_dir)
    proc = _cli('train', train_dir, '--config.seed=1')
    assert proc.returncode != 0
    assert '--overwrite' in proc.stderr, proc.stderr[-2000:]
    assert _results(train_dir) == before


class TestAttackCli:

  def test_writes_backdoored_results_trigger_and_checkpoint(self, attack_dir):
    r = _results(attack_dir)
    assert (r['role'], r['attack'], r['dataset']) == (
        'backdoored', 'badnets', 'digits')
    assert all(_is_fraction(r[m]) for m in METRICS), r
    # 10 % of digits' 1,293 training images (1,438 less the validation
    # tenth, which is never poisoned).
    assert r['poisoned'] == r['attack_spec']['poisoned'] == 129
    assert {'attack', 'rate', 'target', 'mode', 'seed',
            'indices_sha256'} <= set(r['attack_spec'])
    assert os.path.getsize(os.path.join(attack_dir, 'trigger.png')) > 0
    assert _steps(attack_dir) == [1]
    meta = _meta(attack_dir)
    assert meta['role'] == 'backdoored'
    assert meta['attack'] == r['attack_spec']  # Enough to rebuild the test.


  def test_attack_epochs_train_the_backdoored_model_only(self, tmp_path):
    workdir = tmp_path / 'cl'
    _ok(_cli('attack', workdir, '--config.attack.name=cl',
             '--config.attack.epochs=2',
             '--config.attack.params_json={"steps": 1}'))
    r = _results(workdir)
    assert [h['epoch'] for h in r['history']] == [1, 2]
    assert r['config']['train']['epochs'] == 2
    # The clean model CL perturbs with keeps train.epochs (1 here).
    assert _results(workdir / 'clean')['epochs'] == 1


def test_backdoor_fingerprint_ignores_where_the_clean_model_lives(tmp_path):
  config = digits_config.get_config()
  config.attack.clean_model_dir = 'runs/grid/seed0/clean'
  moved = config.copy_and_resolve_references()
  moved.attack.clean_model_dir = 'elsewhere/grid/seed0/clean'
  empty = str(tmp_path / 'none')
  assert attack_job.fingerprint(config, empty) == attack_job.fingerprint(
      moved, empty)
  config.attack.epochs = 3
  assert derive.backdoor_config(config).train.epochs == 3
  assert attack_job.fingerprint(config, empty) != attack_job.fingerprint(
      moved, empty)


def test_a_run_with_the_older_fingerprint_keeps_it(tmp_path):
  # Runs made before the fingerprint left out attack.clean_model_dir (and
  # before attack.epochs existed) hashed the whole attack section.
  config = digits_config.get_config()
  older = config.copy_and_resolve_references()
  del older.attack['epochs']
  older.attack.clean_model_dir = 'old/grid/seed0/clean'
  legacy = common.training_fingerprint(older, older.attack, 'backdoored')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  results = {'role': 'backdoored', 'fingerprint': legacy,
             'config': derive.to_dict(older)}
  (workdir / 'results.json').write_text(json.dumps(results))
  config.attack.clean_model_dir = 'new/grid/seed0/clean'  # It moved.
  assert attack_job.fingerprint(config, str(workdir)) == legacy
  # Other settings: the current fingerprint, which the run then refuses.
  config.attack.rate = 0.2
  assert attack_job.fingerprint(config, str(workdir)) != legacy


def test_a_defense_fingerprint_hashes_only_the_fields_it_reads(tmp_path):
  config = digits_config.get_config()
  empty = str(tmp_path / 'none')
  fp = lambda c: defend_job.fingerprint(c, 'backdoor-fp', empty)
  for name in ('ft', 'nad', 'nba'):
    config.defense.name = name
    base = fp(config)
    other = config.copy_and_resolve_references()
    other.defense.anp.threshold = 0.5  # ANP's section: no one else's.
    assert fp(other) == base
    other.defense.teacher.epochs = 3  # Only the teacher's defenses.
    assert (fp(other) == base) == (name not in defenses.NEEDS_TEACHER)
    other.defense.clean_seed = 7  # Every defense's.
    assert fp(other) != base
  config.defense.name = 'nba'
  other = config.copy_and_resolve_references()
  other.defense.nba.eps = 0.1
  assert fp(other) != fp(config)
  assert defend_job.fingerprint(config, 'another-backdoor', empty) != fp(
      config)


def test_a_defense_run_with_the_whole_section_fingerprint_keeps_it(tmp_path):
  # Runs made before the defense fingerprint left out the other defenses'
  # sections hashed all of config.defense.
  config = digits_config.get_config()
  config.defense.name = 'ft'
  legacy = common.fingerprint(config.defense, config.seed, 'bfp', 'ft')
  for where, record in (
      ('done', {'fingerprint': legacy, 'role': 'defended',
                'config': derive.to_dict(config.defense)}),
      ('meta', {'fingerprint': legacy, 'role': 'defended',
                'config': derive.to_dict(config)})):
    workdir = tmp_path / where
    workdir.mkdir()
    if where == 'done':
      (workdir / 'results.json').write_text(json.dumps(record))
    else:  # A run stopped before its end: only its checkpoint's metadata.
      ckpt = Checkpointer(str(workdir / 'checkpoints'))
      ckpt.save(1, tiny_state(), meta=record)
      ckpt.close()
    changed = config.copy_and_resolve_references()
    changed.defense.nba.eps = 0.1  # Another defense's field moved since.
    assert defend_job.fingerprint(changed, 'bfp', str(workdir)) == legacy
    changed.defense.epochs = 3  # One of its own: the current fingerprint.
    assert defend_job.fingerprint(changed, 'bfp', str(workdir)) != legacy


def test_a_float32_model_keeps_the_fingerprint_it_had_before_compute_dtype(
    tmp_path):
  config = digits_config.get_config()
  assert config.model.compute_dtype == 'float32'
  older = config.copy_and_resolve_references()
  del older.model['compute_dtype']  # A run saved before the field.
  empty = str(tmp_path / 'none')
  assert attack_job.fingerprint(config, empty) == attack_job.fingerprint(
      older, empty)
  assert common.training_fingerprint(config, 'clean') == (
      common.training_fingerprint(older, 'clean'))
  config.model.compute_dtype = 'bfloat16'  # Other numerics: another model.
  assert attack_job.fingerprint(config, empty) != attack_job.fingerprint(
      older, empty)


@pytest.mark.parametrize('defense, field, earlier, other', [
    ('mcr', 'bn_augment', False, True),  # Other statistics: another run.
    ('nba', 'pseudo_epochs', 0, 16),  # A clean finish: another run.
])
def test_a_field_added_later_keeps_the_earlier_fingerprint_at_its_old_value(
    tmp_path, defense, field, earlier, other):
  config = digits_config.get_config()
  config.defense.name = defense
  older = config.copy_and_resolve_references()
  del older.defense[defense][field]  # A run saved before the field.
  empty = str(tmp_path / 'none')
  fp = lambda c: defend_job.fingerprint(c, 'bfp', empty)
  # The default does what the earlier runs did.
  assert config.defense[defense][field] == earlier
  assert defend_job.ADDED_FIELDS[(defense, field)] == earlier
  assert fp(config) == fp(older)
  config.defense[defense][field] = other
  assert fp(config) != fp(older)


def test_build_model_computes_in_the_configs_dtype():
  config = digits_config.get_config()
  dataset = common.load_data(config.data)
  x = jnp.asarray(dataset.x_test[:2], jnp.float32) / 255.0
  for dtype, want in (('float32', jnp.float32), ('bfloat16', jnp.bfloat16)):
    config.model.compute_dtype = dtype
    model = common.build_model(config.model, dataset)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), x, train=False))
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(
        variables)
    assert ('bf16[' in str(jaxpr)) == (want == jnp.bfloat16)
    assert jaxpr.out_avals[0].dtype == jnp.float32  # The logits.
  del config.model['compute_dtype']  # A config saved before the field.
  assert common.build_model(config.model, dataset).dtype is None


class TestDefendCli:

  def test_nba_writes_before_after_der_and_a_checkpoint(self, attack_dir,
                                                         tmp_path):
    workdir = tmp_path / 'nba'
    _ok(_cli('defend', workdir, f'--backdoor_dir={attack_dir}'))
    r = _results(workdir)
    assert (r['role'], r['defense'], r['attack']) == (
        'defended', 'nba', 'badnets')
    for when in ('before', 'after'):
      assert all(_is_fraction(r[when][m]) for m in METRICS), r[when]
    assert r['before'] == {k: _results(attack_dir)[k] for k in r['before']}
    assert _is_fraction(r['der'])
    # 10 % of the 1,293 training images, class-stratified.
    assert r['clean_subset']['count'] == pytest.approx(129, abs=2)
    assert len(r['history']) == 1
    assert _steps(workdir) == [1]
    assert _meta(workdir)['defense'] == 'nba'
    teachers = [d for d in os.listdir(attack_dir) if d.startswith('teacher-')]
    assert len(teachers) == 1
    assert _results(attack_dir / teachers[0])['role'] == 'teacher'

  def test_other_defenses_fields_do_not_block_reusing_a_run(self, attack_dir,
                                                             tmp_path):
    workdir = tmp_path / 'ft'
    _ok(_cli('defend', workdir, f'--backdoor_dir={attack_dir}',
             '--config.defense.name=ft'))
    before = _results(workdir)
    proc = _ok(_cli('defend', workdir, f'--backdoor_dir={attack_dir}',
                    '--config.defense.name=ft', '--config.defense.nba.eps=0.1',
                    '--config.defense.teacher.epochs=2',
                    '--config.defense.anp.threshold=0.3'))
    assert 'reusing' in proc.stderr, proc.stderr[-2000:]
    assert _results(workdir) == before
    # Its own fields still count.
    proc = _cli('defend', workdir, f'--backdoor_dir={attack_dir}',
                '--config.defense.name=ft', '--config.defense.lr=0.02')
    assert proc.returncode == 2 and 'other settings' in proc.stderr

  def test_a_teacher_of_another_backdoored_model_is_refused(
      self, attack_dir, tmp_path):
    teacher = tmp_path / 'teacher'
    teacher.mkdir()
    with open(teacher / 'results.json', 'w') as f:
      json.dump({'fingerprint': 'of-another-model', 'role': 'teacher'}, f)
    proc = _cli('defend', tmp_path / 'nad', f'--backdoor_dir={attack_dir}',
                f'--teacher_dir={teacher}', '--config.defense.name=nad')
    assert proc.returncode != 0
    assert 'another backdoored model' in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / 'nad' / 'results.json').exists()

  def test_backdoor_dir_without_attack_run_names_results_json(self,
                                                              tmp_path):
    empty = tmp_path / 'no_attack'
    empty.mkdir()
    proc = _cli('defend', tmp_path / 'out', f'--backdoor_dir={empty}')
    assert proc.returncode != 0
    assert os.path.join(str(empty), 'results.json') in proc.stderr, (
        proc.stderr[-2000:])
    assert not (tmp_path / 'out' / 'results.json').exists()


class TestProbeCli:

  def test_rates_per_radius_and_steps(self, attack_dir, tmp_path):
    out = tmp_path / 'probe'
    _ok(_cli('probe', out, f'--backdoor_dir={attack_dir}'))
    with open(out / 'probe.json') as f:
      rows = json.load(f)
    assert [(r['eps'], r['steps']) for r in rows] == [
        (None, None), (0.0, 0), (0.0, 2), (32 / 255, 0), (32 / 255, 2)]
    for r in rows:
      assert _is_fraction(r['student_target'])
      assert _is_fraction(r['teacher_target'])
    # A zero radius leaves nothing to perturb: PGD steps change nothing.
    assert rows[1] == {**rows[2], 'steps': 0}
    assert rows[4]['distance'] > rows[3]['distance']  # Ascent.
    assert '| universal ε 32/255, K 2 |' in (out / 'probe.md').read_text()

  def test_bad_steps_fail_before_any_work(self, attack_dir, tmp_path):
    proc = _cli('probe', tmp_path / 'p', f'--backdoor_dir={attack_dir}',
                '--steps=0,-1')
    assert proc.returncode == 2
    assert 'steps be ints >= 0' in proc.stderr
    assert not (tmp_path / 'p').exists()


class TestLoadBackdoor:

  def test_a_clean_run_is_not_a_backdoored_one(self, train_dir):
    with pytest.raises(ValueError, match="'clean' run"):
      defense_setup.load_backdoor(str(train_dir))


class TestEvalSets:

  @pytest.mark.parametrize('mode', ['all-to-one', 'all-to-all'])
  def test_trig_index_points_at_each_triggered_image_s_original(self, mode):
    from nbajax import attacks, data
    from nbajax.attacks import base
    from nbajax.pipeline import evaluate
    dataset = data.load_dataset('digits')
    sets = evaluate.make_eval_sets(dataset, attacks.get_attack('badnets'),
                                   target=3, mode=mode)
    np.testing.assert_array_equal(sets.y_test[sets.trig_index], sets.y_true)
    originals = base.to_float(sets.x_test[sets.trig_index])
    np.testing.assert_array_equal(
        base.to_uint8(attacks.get_attack('badnets').apply(originals)),
        sets.x_trig)
    if mode == 'all-to-one':
      assert not np.any(sets.y_true == 3)


class TestTrainClean:

  def test_digits_reach_ninety_percent_in_ten_epochs(self, tmp_path):
    config = digits_config.get_config()
    config.train.epochs = 10
    t0 = time.perf_counter()
    r = train_job.train_clean(config, str(tmp_path))
    seconds = time.perf_counter() - t0
    print(f'train_clean: {r["test_acc"]:.4f} test accuracy in {seconds:.1f}s')
    assert r['epochs'] == 10
    assert r['test_acc'] >= 0.90, r['history']
