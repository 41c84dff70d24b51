"""Two CPU processes on localhost (JAX's multi-process runtime, gloo
collectives) train to the parameters of one process with the same global
batch."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(out, num_processes, process_id, port):
  env = {**os.environ, 'XLA_FLAGS': ''}  # One CPU device per process.
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.multiprocess_worker', str(out),
       str(num_processes), str(process_id), str(port)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _finish(proc):
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]


def test_two_processes_reach_the_parameters_of_one(tmp_path):
  port = _free_port()
  pair = [_start(tmp_path / f'p{i}.npz', 2, i, port) for i in range(2)]
  single = _start(tmp_path / 'single.npz', 1, 0, 0)
  for proc in (*pair, single):
    _finish(proc)
  p0, p1, one = (np.load(tmp_path / f) for f in ('p0.npz', 'p1.npz',
                                                  'single.npz'))
  assert int(p0['devices']) == 2 and int(one['devices']) == 1
  names = [k for k in one.files if k not in ('preds', 'devices', 'loss')]
  assert names
  for name in names:
    # Both processes hold the same replicated parameters...
    np.testing.assert_array_equal(p0[name], p1[name])
    # ... which are those of one process (float reduction order aside).
    np.testing.assert_allclose(p0[name], one[name], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(p0['preds'], one['preds'])
  assert abs(float(p0['loss']) - float(one['loss'])) < 1e-4


def _cli(workdir, *extra):
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', f'--workdir={workdir}',
       '--config.train.epochs=2', '--compilation_cache=', *extra],
      cwd=REPO, env={**os.environ, 'XLA_FLAGS': ''},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_job_run_by_two_processes_writes_once(tmp_path):
  port = _free_port()
  both = tmp_path / 'both'
  pair = [_cli(both, '--num_processes=2', f'--process_id={i}',
               f'--coordinator_address=localhost:{port}') for i in range(2)]
  single = _cli(tmp_path / 'single')
  for proc in (*pair, single):
    _finish(proc)
  two = json.loads((both / 'results.json').read_text())
  one = json.loads((tmp_path / 'single' / 'results.json').read_text())
  assert abs(two['test_acc'] - one['test_acc']) <= 2 / 359  # Two images.
  # Process 0 wrote every file; no temporary file or lock is left.
  assert sorted(p.name for p in both.iterdir()) == sorted(
      p.name for p in (tmp_path / 'single').iterdir())
  assert not [p for p in both.rglob('*') if p.name.endswith('.tmp')
              or p.name == '.nbajax.lock']
  assert len(two['history']) == 2


def test_inconsistent_process_flags_are_one_line(tmp_path):
  proc = _cli(tmp_path / 'w', '--num_processes=2', '--process_id=2')
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 2
  assert out.strip().splitlines()[-1].startswith(
      'error: --num_processes/--process_id/--coordinator_address: '
      'process_id must lie in [0, 2)')
