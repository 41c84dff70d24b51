"""The user's files are never deleted or overwritten, and every mistake ends
with one line and exit status 2 (bugs keep their traceback).

Each case snapshots the files involved (sha256 of every file) before and
after and requires them byte-identical. The CLI cases run the real command
line in a subprocess; the rest call the jobs in-process (fast: every refusal
comes before any data is loaded or any model is built).
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from experiments import cli
from nbajax import attacks, rundir
from nbajax import data as data_lib
from nbajax.errors import UserError
from nbajax.pipeline import attack as attack_job
from nbajax.pipeline import derive
from nbajax.pipeline import defend as defend_job
from nbajax.pipeline import probe as probe_job
from nbajax.pipeline import reproduce
from nbajax.pipeline import train as train_job
from nbajax.report import __main__ as report_cli
from tests.test_reliability import _config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _snapshot(root) -> dict[str, str]:
  """sha256 of every file (and the name of every folder) under `root`."""
  root = pathlib.Path(root)
  return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                     if p.is_file() else 'dir')
          for p in sorted(root.rglob('*'))}


def _fake_step(ckpt_dir: pathlib.Path, step: int, fp: str = 'f' * 16):
  """A checkpoint step as nbajax writes it (only what the checks read)."""
  meta = ckpt_dir / str(step) / 'meta'
  meta.mkdir(parents=True)
  (meta / 'metadata').write_text(json.dumps(
      {'fingerprint': fp, 'nbajax_version': '0.1.0', 'role': 'backdoored'}))
  (ckpt_dir / str(step) / 'state').mkdir()
  (ckpt_dir / str(step) / 'state' / 'blob').write_bytes(b'\x00' * 64)


def _fake_attack_run(path: pathlib.Path, fp: str = 'f' * 16,
                     config=None) -> pathlib.Path:
  """A finished attack run's files (results.json + one checkpoint)."""
  path.mkdir(parents=True, exist_ok=True)
  (path / 'results.json').write_text(json.dumps({
      'fingerprint': fp, 'role': 'backdoored',
      'config': derive.to_dict(config or _config()),
      'attack_spec': {'attack': {'name': 'badnets'}, 'target': 0,
                      'mode': 'all-to-one'}}))
  _fake_step(path / 'checkpoints', 1, fp)
  return path


def _run(*args, cwd=REPO, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  env.pop('NBAJAX_TRACEBACK', None)
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _one_line_exit_2(proc) -> str:
  """The single stderr line of a refused command (after absl's log lines)."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines()
           if l.startswith('error:')]
  assert len(lines) == 1, proc.stderr
  return lines[0]


# ------------------------------------------------------------- data loss


class TestOverwriteRemovesOnlyOurs:

  def test_cli_overwrite_keeps_checkpoints_nbajax_did_not_write(self,
                                                               tmp_path):
    user = tmp_path / 'U'
    (user / 'checkpoints').mkdir(parents=True)
    (user / 'checkpoints' / 'model_final.pt').write_text('w')
    before = _snapshot(tmp_path)
    line = _one_line_exit_2(_run('-m', 'experiments.train',
                                 '--config.train.epochs=1',
                                 f'--workdir={user}', '--overwrite'))
    assert 'model_final.pt' in line and 'did not write' in line
    assert _snapshot(tmp_path) == before

  def test_overwrite_removes_its_own_run(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    (run / 'teacher-abc').mkdir()
    (run / 'teacher-abc' / 'results.json').write_text(json.dumps(
        {'fingerprint': 't' * 16, 'role': 'teacher'}))
    _fake_step(run / 'teacher-abc' / 'checkpoints', 3)
    (run / 'notes.txt').write_text('mine')
    removed = rundir.remove_own(str(run), teachers=True)
    assert sorted(os.path.basename(p) for p in removed) == [
        'checkpoints', 'teacher-abc']
    assert sorted(os.listdir(run)) == ['notes.txt', 'results.json']

  def test_a_foreign_teacher_folder_stops_everything(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    (run / 'teacher-mine').mkdir()
    (run / 'teacher-mine' / 'weights.npz').write_bytes(b'w')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='teacher-mine'):
      rundir.remove_own(str(run), teachers=True)
    assert _snapshot(tmp_path) == before  # Its checkpoints too.

  def test_a_step_without_our_metadata_is_foreign(self, tmp_path):
    ckpt = tmp_path / 'w' / 'checkpoints'
    (ckpt / '7').mkdir(parents=True)
    (ckpt / '7' / 'data').write_text('someone else')
    assert rundir.own_checkpoints(str(ckpt)) == ([], ['7'])
    with pytest.raises(UserError, match='did not write'):
      rundir.remove_own(str(tmp_path / 'w'))

  def test_cli_defend_into_the_backdoor_run_is_refused(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    before = _snapshot(tmp_path)
    line = _one_line_exit_2(_run(
        '-m', 'experiments.defend', f'--backdoor_dir={run}',
        f'--workdir={run}', '--overwrite'))
    assert 'is the run it reads' in line
    assert _snapshot(tmp_path) == before

  @pytest.mark.parametrize('workdir', ['X/defense', '.'])
  def test_defend_inside_or_around_the_backdoor_run(self, tmp_path, workdir):
    run = _fake_attack_run(tmp_path / 'X')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='the run it reads'):
      defend_job.run_defense(_config(), str(tmp_path / workdir),
                             backdoor_dir=str(run), overwrite=True)
    assert _snapshot(tmp_path) == before

  def test_results_without_checkpoints_are_not_reused(self, tmp_path):
    config = _config(**{'attack.name': 'blend'})
    fp = attack_job.fingerprint(config, str(tmp_path / 'none'))
    run = _fake_attack_run(tmp_path / 'X', fp=fp)
    for step in (run / 'checkpoints').iterdir():
      for p in sorted(step.rglob('*'), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
      step.rmdir()
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='checkpoints are gone'):
      attack_job.run_attack(config, str(run))
    assert _snapshot(tmp_path) == before

  def test_foreign_results_json_is_never_replaced(self, tmp_path):
    (tmp_path / 'results.json').write_text('[1, 2, 3]')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='not the results of an nbajax job'):
      train_job.train_clean(_config(), str(tmp_path), overwrite=True)
    assert _snapshot(tmp_path) == before


class TestReportOutdir:

  def _cells(self, tmp_path):
    path = tmp_path / 'cells.json'
    path.write_text(json.dumps([
        {'attack': 'badnets', 'defense': d, 'seed': 0, 'acc': 0.9,
         'acc_nontarget': 0.9, 'asr': a, 'ra': 0.1, 'der': None}
        for d, a in (('none', 1.0), ('nad', 0.1))]))
    return str(path)

  def test_into_a_job_run_is_refused(self, tmp_path, capsys):
    cells = self._cells(tmp_path)
    run = _fake_attack_run(tmp_path / 'X')
    before = _snapshot(tmp_path)
    assert report_cli.main([cells, '--outdir', str(run)]) == 2
    assert "is a job's run directory" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before

  def test_over_a_grid_report_is_refused_own_outdir_rewritten(self, tmp_path,
                                                              capsys):
    cells = self._cells(tmp_path)
    grid = tmp_path / 'grid'
    grid.mkdir()
    (grid / 'results.json').write_text(pathlib.Path(cells).read_text())
    before = _snapshot(tmp_path)
    assert report_cli.main([cells, '--outdir', str(grid)]) == 2
    assert 'not written by nbajax.report' in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    out = tmp_path / 'out'
    assert report_cli.main([cells, '--outdir', str(out)]) == 0
    assert report_cli.main([cells, '--outdir', str(out)]) == 0  # Its own.

  @pytest.mark.parametrize('content, words', [
      ('{"fingerprint": "x", "role": "backdoored"}', 'not a list of cells'),
      ('[{"attack": "badnets"}]', "missing key 'defense'"),
      ('[{"attack": "a", "defense": "d", "acc": "high"}]', 'not a number'),
      ('[1, 2]', 'not a dict'),
      ('{broken', 'not a readable JSON'),
      (b'\xff\xfe\x00', 'not a readable JSON'),
  ])
  def test_bad_report_inputs(self, tmp_path, capsys, content, words):
    path = tmp_path / 'in.json'
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(
        content)
    assert report_cli.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count('\n') == 1, err

  def test_missing_report_input(self, tmp_path, capsys):
    assert report_cli.main([str(tmp_path / 'nope.json')]) == 2
    assert 'no such results file' in capsys.readouterr().err


# ------------------------------------------------------------- workdirs


class TestWorkdir:

  def test_a_file(self, tmp_path):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(UserError, match='is a file'):
      rundir.check_workdir(str(tmp_path / 'f'))
    with pytest.raises(UserError, match='is a file'):
      rundir.check_workdir(str(tmp_path / 'f' / 'below'))

  def test_root(self):
    with pytest.raises(UserError, match='root'):
      rundir.check_workdir('/')

  def test_too_long(self, tmp_path):
    with pytest.raises(UserError, match='bytes; this file system allows'):
      rundir.check_workdir(str(tmp_path / ('a' * 300)))
    with pytest.raises(UserError, match='too long'):
      rundir.check_workdir(str(tmp_path / '/'.join(['b' * 200] * 25)))

  def test_not_writable(self, tmp_path, monkeypatch):
    # As root every directory is writable, so the check is shown by asking
    # it about a directory that os.access reports read-only.
    monkeypatch.setattr(os, 'access', lambda p, mode: p != str(tmp_path))
    with pytest.raises(UserError, match='not writable'):
      rundir.check_workdir(str(tmp_path / 'new'))

  def test_inside_another_run(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    with pytest.raises(UserError, match='lies inside another run'):
      rundir.check_workdir(str(run / 'sub' / 'w'))
    # ... unless it is that run's own part (an attack's clean model).
    rundir.check_workdir(str(run / 'clean'), part_of=str(run))

  def test_a_grid_never_writes_into_a_job_run(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="is a job's run, not a grid"):
      reproduce.run_grid(_config(), str(run))
    assert _snapshot(tmp_path) == before

  def test_creates_nothing(self, tmp_path):
    rundir.check_workdir(str(tmp_path / 'a' / 'b'))
    assert os.listdir(tmp_path) == []

  def test_cli_workdir_is_a_file(self, tmp_path):
    (tmp_path / 'f').write_text('x')
    before = _snapshot(tmp_path)
    line = _one_line_exit_2(_run('-m', 'experiments.train',
                                 f'--workdir={tmp_path / "f"}'))
    assert 'is a file' in line
    assert _snapshot(tmp_path) == before


class TestLock:

  def test_second_process_is_refused_naming_the_holder(self, tmp_path):
    work = tmp_path / 'w'
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sys\nfrom nbajax import rundir\n'
         f'with rundir.locked({str(work)!r}):\n'
         '  print("held", flush=True)\n  sys.stdin.read()'],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
      assert holder.stdout.readline().strip() == 'held'
      before = _snapshot(tmp_path)
      with pytest.raises(UserError, match=f'in use by pid {holder.pid}'):
        train_job.train_clean(_config(), str(work))
      assert _snapshot(tmp_path) == before
    finally:
      holder.communicate('', timeout=30)
    assert not work.exists()  # The holder made it and left nothing.
    with rundir.locked(str(work)):  # Free again.
      pass

  def test_reentrant_in_one_process(self, tmp_path):
    with rundir.locked(str(tmp_path)):
      with rundir.locked(str(tmp_path)):
        assert os.path.exists(tmp_path / rundir.LOCK_FILE)
      assert os.path.exists(tmp_path / rundir.LOCK_FILE)
    assert not os.path.exists(tmp_path / rundir.LOCK_FILE)


# ------------------------------------------------------- config and flags


class TestCommandLine:

  def test_mistyped_field_is_named_with_the_closest(self, tmp_path):
    line = _one_line_exit_2(_run('-m', 'experiments.train',
                                 '--config.defense.nba.epz=0.1',
                                 f'--workdir={tmp_path}/w'))
    assert line == ("error: --config.defense.nba.epz: config.defense.nba has "
                    "no field 'epz' (did you mean 'defense.nba.eps'?)")
    assert not (tmp_path / 'w').exists()

  @pytest.mark.parametrize('args, words', [
      (['--config.train.epochs=1e9'], 'config.train.epochs=1e9'),
      (['--config=nosuch.py'], 'nosuch.py: no such config file'),
      (['--config', 'nosuch.py', '--config.seed=1'], 'no such config file'),
      (['stray'], 'unexpected arguments'),
      (['--no_such_flag=1'], 'no_such_flag'),
  ])
  def test_bad_flags(self, tmp_path, args, words):
    line = _one_line_exit_2(_run('-m', 'experiments.train', *args,
                                 f'--workdir={tmp_path}/w'))
    assert words in line, line
    assert not (tmp_path / 'w').exists()

  def test_missing_required_flag(self, tmp_path):
    line = _one_line_exit_2(_run('-m', 'experiments.defend',
                                 f'--workdir={tmp_path}/w'))
    assert '--backdoor_dir' in line

  def test_override_problem_without_a_subprocess(self):
    assert cli.override_problem(['x', '--config.train.lr=0.1']) is None
    assert 'did you mean' in cli.override_problem(['x', '--config.trian.lr=1'])

  def test_only_typo_is_refused_with_a_suggestion(self):
    with pytest.raises(UserError, match="no attack 'badnet'.*'badnets'"):
      reproduce.run_grid(_config(), '/nonexistent/never-made',
                         only='attack=badnet')
    assert not os.path.exists('/nonexistent/never-made')

  def test_a_bug_keeps_its_traceback(self):
    def buggy():
      raise ValueError('internal bug')
    with pytest.raises(ValueError, match='internal bug'):
      cli.run_job(buggy)

  def test_a_user_error_exits_2(self, capsys):
    def bad():
      raise UserError('bad thing')
    with pytest.raises(SystemExit) as e:
      cli.run_job(bad)
    assert e.value.code == 2
    assert capsys.readouterr().err == 'error: bad thing\n'


# ------------------------------------------------------------ bad inputs


class TestCorruptFiles:

  def _npz(self, path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8, 1), np.uint8),
             y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (8, 8, 8, 1), np.uint8),
             y_test=np.arange(8) % 4)
    return path

  def _damage(self, path, how):
    data = bytearray(path.read_bytes())
    if how == 'truncated':
      path.write_bytes(bytes(data[:len(data) // 2]))
    elif how == 'bad crc':
      # Flip a byte inside the first member's stored data.
      with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
      offset = info.header_offset + 30 + len(info.filename) + 200
      data[offset] ^= 0xFF
      path.write_bytes(bytes(data))
    elif how == 'npy renamed':
      np.save(str(path) + '.npy', np.zeros(3))
      os.replace(str(path) + '.npy', path)
    elif how == 'random bytes':
      path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif how == 'empty':
      path.write_bytes(b'')

  @pytest.mark.parametrize('how, words', [
      ('truncated', 'damaged or unsupported .npz'),
      ('bad crc', 'damaged or unsupported .npz'),
      ('npy renamed', 'a .npy array'),
      ('random bytes', 'not a zip archive'),
      ('empty', 'an empty file'),
  ])
  def test_damaged_npz(self, tmp_path, how, words):
    path = self._npz(tmp_path / 'd.npz')
    self._damage(path, how)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match=words) as e:
      data_lib.load_dataset('npz', path=path)
    assert str(path) in str(e.value) and 'allow_pickle' not in str(e.value)
    assert _snapshot(tmp_path) == before

  def test_one_absurd_label(self, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    y[17] = 2_000_000_000
    np.savez(tmp_path / 'd.npz', x_train=rng.integers(0, 256, (40, 8, 8, 1),
                                                      np.uint8),
             y_train=y, x_test=np.zeros((4, 8, 8, 1), np.uint8),
             y_test=np.arange(4))
    with pytest.raises(UserError, match=r'labels run up to 2000000000 '
                       r'\(y_train\[17\]\)'):
      data_lib.load_dataset('npz', path=tmp_path / 'd.npz')

  @pytest.mark.parametrize('content', ['[1, 2]', '"text"', '{"a": 1}',
                                       '{not json'])
  def test_backdoor_results_of_the_wrong_type(self, tmp_path, content):
    run = _fake_attack_run(tmp_path / 'X')
    (run / 'results.json').write_text(content)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='results.json'):
      defend_job.run_defense(_config(), str(tmp_path / 'D'),
                             backdoor_dir=str(run))
    assert _snapshot(tmp_path) == before

  def test_broken_tfds_dataset_info(self, tmp_path):
    version = tmp_path / 'mnist' / '3.0.1'
    version.mkdir(parents=True)
    (version / 'dataset_info.json').write_text('{"name": "mnist", broken')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match='cannot be opened'):
      data_lib.load_dataset('mnist', data_dir=str(tmp_path))
    assert _snapshot(tmp_path) == before


class TestAttackParameters:

  @pytest.mark.parametrize('params, words', [
      ({'size': True}, 'size must be an int or null, got True'),
      ({'size': 2.5}, 'size must be an int or null, got 2.5'),
  ])
  def test_wrong_types_are_not_truncated(self, params, words):
    with pytest.raises(ValueError, match=words):
      attacks.get_attack('badnets', **params)

  def test_params_json_must_be_an_object(self):
    config = _config(**{'attack.params_json': '[1, 2]'})
    with pytest.raises(UserError, match='must be a JSON object'):
      derive.attack_params(config.attack)

  def test_trojan_clean_model_of_other_settings(self, tmp_path):
    other = tmp_path / 'clean'
    other.mkdir()
    (other / 'results.json').write_text(json.dumps(
        {'fingerprint': 'another-clean', 'role': 'clean'}))
    before = _snapshot(tmp_path)
    config = _config(**{'attack.name': 'trojan',
                        'attack.clean_model_dir': str(other)})
    with pytest.raises(UserError) as e:
      attack_job.clean_model_fn(config, str(tmp_path / 'A'), None)
    assert 'clean_model_dir' in str(e.value)
    assert '--overwrite' not in str(e.value)
    assert _snapshot(tmp_path) == before


class TestProbeArguments:

  @pytest.mark.parametrize('kwargs, words', [
      ({'eps': (300 / 255,)}, 'eps must lie in'),
      ({'steps': (-1,)}, 'steps'),
      ({'images': 0}, 'images must be an int >= 1'),
      ({'batch_size': 0}, 'batch_size must be an int >= 1'),
  ])
  def test_checked_before_any_teacher_is_trained(self, tmp_path, kwargs,
                                                 words):
    run = _fake_attack_run(tmp_path / 'X')
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match=words):
      probe_job.probe_pseudo_samples(_config(), backdoor_dir=str(run),
                                     **kwargs)
    assert _snapshot(tmp_path) == before

  def test_bad_nba_config_before_any_teacher(self, tmp_path):
    run = _fake_attack_run(tmp_path / 'X')
    with pytest.raises(UserError, match='config.defense.nba.eps'):
      probe_job.probe_pseudo_samples(
          _config(**{'defense.nba.eps': 16.0}), backdoor_dir=str(run))
    assert not any(p.name.startswith('teacher-') for p in run.iterdir())
