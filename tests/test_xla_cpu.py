"""nbajax.training.xla_cpu: which flags are added, and that XLA obeys them."""

import os
import subprocess
import sys

import jaxlib
import pytest

from nbajax.training import xla_cpu

FLAG = xla_cpu.CPU_FLAGS[0]
NAME = FLAG.split('=')[0]


def test_adds_flags_to_an_empty_environment():
  env = {}
  assert xla_cpu.tune(env, '0.10.2') == xla_cpu.CPU_FLAGS
  assert env['XLA_FLAGS'].split() == list(xla_cpu.CPU_FLAGS)


def test_keeps_the_users_flags_and_their_values():
  env = {'XLA_FLAGS': f'--xla_force_host_platform_device_count=2 {NAME}=+dot'}
  assert xla_cpu.tune(env, '0.10.2') == ()
  assert env['XLA_FLAGS'] == (
      f'--xla_force_host_platform_device_count=2 {NAME}=+dot')
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  xla_cpu.tune(env, '0.10.2')
  assert env['XLA_FLAGS'].split() == [
      '--xla_force_host_platform_device_count=2', *xla_cpu.CPU_FLAGS]


@pytest.mark.parametrize('version', ['0.9.2', '0.12.0', '1.0.0', 'dev'])
def test_adds_nothing_on_an_unmeasured_jaxlib(version):
  env = {}
  assert xla_cpu.tune(env, version) == ()
  assert env == {}


def test_adding_twice_adds_once():
  env = {}
  xla_cpu.tune(env, '0.10.2')
  assert xla_cpu.tune(env, '0.10.2') == ()
  assert env['XLA_FLAGS'].split() == list(xla_cpu.CPU_FLAGS)


_COMPILE_CONV = '''
import sys
from nbajax.training import xla_cpu
if sys.argv[1] == 'tuned':
  xla_cpu.tune()
import jax, jax.numpy as jnp
def loss(w, x):
  y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jnp.sum(y * y)
w, x = jnp.ones((3, 3, 16, 16)), jnp.ones((64, 32, 32, 16))
print(jax.jit(jax.grad(loss)).lower(w, x).compile().as_text())
'''


@pytest.mark.skipif(
    tuple(int(p) for p in jaxlib.__version__.split('.')[:2])
    not in xla_cpu.MEASURED_ON, reason='flags measured on another jaxlib')
def test_xla_compiles_convolutions_off_ynnpack_when_tuned():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'

  def compiled(mode):
    return subprocess.run([sys.executable, '-c', _COMPILE_CONV, mode],
                          env=env, capture_output=True, text=True,
                          check=True).stdout

  plain, tuned = compiled('plain'), compiled('tuned')
  # The control: untuned, XLA:CPU fuses the convolutions for YNNPACK.
  assert '__ynn_fusion' in plain and 'convolution(' in plain
  assert '__ynn_fusion' not in tuned and 'convolution(' in tuned
