"""The benchmark measures the jobs' own steps (speed is never asserted)."""

import json
import pathlib
import subprocess
import sys

import jaxlib
import pytest

from experiments.configs import digits
from nbajax import bench
from nbajax.training import xla_cpu

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_measure_step_with_a_teacher():
  # NBA: the teacher, the generator and the full loss; the CLI test below
  # covers the plain step.
  t = bench.measure_step('cnn', 'nba', 8, defense=digits.get_config().defense,
                         steps=2, image_size=8, classes=4)
  assert (t.kind, t.batch, t.steps) == ('nba', 8, 2)
  assert t.images_per_s > 0 and t.first_epoch_s > 0 and t.compile_s >= 0


def test_measure_step_in_bfloat16():
  t = bench.measure_step('cnn', 'train', 8,
                         defense=digits.get_config().defense, steps=1,
                         image_size=8, classes=4, dtype='bfloat16')
  assert t.dtype == 'bfloat16' and t.images_per_s > 0


def test_unknown_kind():
  with pytest.raises(ValueError, match='kind must be one of'):
    bench.measure_step('cnn', 'ibau', 8, defense=digits.get_config().defense)


def test_cli_json_and_table(tmp_path):
  out = tmp_path / 'bench.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark',
       '--config=experiments/configs/digits.py', '--models=cnn',
       '--batches=8', '--kinds=train', '--steps=2', f'--out={out}',
       '--seeds=1,2', '--compilation_cache='],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert '| cnn | train | 8 | 1 |' in proc.stdout
  assert '| cnn | train | 8 | 2 |' in proc.stdout  # Two runs, one program.
  result = json.loads(out.read_text())
  assert result['device']['device_count'] >= 1
  # The CLI ran with its XLA:CPU flags (--tune_cpu), and says so.
  if tuple(int(p) for p in jaxlib.__version__.split('.')[:2]) in (
      xla_cpu.MEASURED_ON):
    assert xla_cpu.CPU_FLAGS[0] in result['device']['xla_flags'].split()
  assert [(s['kind'], s['seeds']) for s in result['steps']] == [
      ('train', 1), ('train', 2)]


def test_cli_bad_kind_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--kinds=ibau'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --kinds: unknown kind 'ibau'; known: ['train', 'nad', 'nba']")


def test_cli_keeps_an_existing_out_file(tmp_path):
  out = tmp_path / 'bench.json'
  out.write_text('mine')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: --out: {out} exists; pass --overwrite to replace it')
  assert out.read_text() == 'mine'


def test_cli_bad_compute_dtype_is_one_line():
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--compute_dtype=fp16'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --compute_dtype must be one of ['float32', 'bfloat16'], got "
      "'fp16'")


def _conv_weight_grad_script():
  """docs/bench/conv_weight_grad.py as a module (it is not a package)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = REPO / 'docs' / 'bench' / 'conv_weight_grad.py'
  spec = importlib.util.spec_from_file_location('conv_weight_grad', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_hand_written_weight_gradients_equal_xlas():
  # The design note's timings compare like with like only if the
  # hand-written gradients are the convolution's weight gradient.
  import jax  # pylint: disable=g-import-not-at-top
  script = _conv_weight_grad_script()
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(keys[0], (2, 5, 6, 3))
  w = jax.random.normal(keys[1], (3, 3, 3, 4))
  g = jax.random.normal(keys[2], (2, 5, 6, 4))
  ref = script.weight_grad_xla(x, w, g)
  assert ref.shape == w.shape
  for fn in (script.weight_grad_im2col, script.weight_grad_shifted):
    assert jax.numpy.allclose(fn(x, w, g), ref, rtol=1e-5, atol=1e-5)
