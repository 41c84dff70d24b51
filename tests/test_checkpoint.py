"""Tests of nbajax.checkpoint: round trip, plain-Orbax restore, errors."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from nbajax.checkpoint import CheckpointError, Checkpointer
from tests.tiny import tiny_state as _state


class TestCheckpointer:

  def test_round_trip_restores_every_array_and_the_metadata(self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck')
    state = _state(seed=1)
    meta = {'model': 'tiny', 'num_classes': 10, 'attack': {'name': 'badnets'}}
    ck.save(1, state, meta)
    restored, got = ck.restore(_state(seed=2))
    assert got == meta
    for a, b in zip(jax.tree_util.tree_leaves(state.to_tree()),
                    jax.tree_util.tree_leaves(restored.to_tree())):
      np.testing.assert_array_equal(a, b)
    # Optimizer state comes back in optax's own structure.
    assert (jax.tree_util.tree_structure(restored.opt_state) ==
            jax.tree_util.tree_structure(state.opt_state))

  def test_keeps_only_the_newest_steps(self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck', max_to_keep=2)
    for step in (1, 2, 3):
      ck.save(step, _state(), {'step': step})
    assert ck.all_steps() == [2, 3]
    assert ck.restore_meta() == {'step': 3}

  def test_restoring_into_another_number_of_classes_fails_clearly(
      self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck')
    ck.save(1, _state(num_classes=10), {})
    with pytest.raises(CheckpointError, match='another model'):
      ck.restore(_state(num_classes=7))

  def test_missing_step_names_the_complete_ones(self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck')
    with pytest.raises(CheckpointError, match='no complete checkpoint'):
      ck.restore(_state())
    ck.save(1, _state(), {})
    with pytest.raises(CheckpointError, match=r'complete steps: \[1\]'):
      ck.restore(_state(), step=5)

  def test_non_json_metadata_is_refused_before_writing(self, tmp_path):
    ck = Checkpointer(tmp_path / 'ck')
    with pytest.raises(TypeError):
      ck.save(1, _state(), {'bad': object()})
    assert ck.all_steps() == []


def test_model_variables_restore_with_plain_orbax(tmp_path):
  """The README snippet: no nbajax import, just Orbax."""
  state = _state(seed=3)
  Checkpointer(tmp_path / 'ck').save(4, state, {'model': 'tiny'})
  script = textwrap.dedent(f'''
      import sys
      import numpy as np
      import orbax.checkpoint as ocp
      tree = ocp.StandardCheckpointer().restore(
          {str(tmp_path / 'ck' / '4' / 'state')!r})
      variables = {{'params': tree['params'],
                    'batch_stats': tree['batch_stats']}}
      assert not any(m.startswith('nbajax') for m in sys.modules)
      np.save({str(tmp_path / 'kernel.npy')!r},
              np.asarray(variables['params']['head']['kernel']))
  ''')
  proc = subprocess.run([sys.executable, '-c', script], capture_output=True,
                        text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-2000:]
  np.testing.assert_array_equal(np.load(tmp_path / 'kernel.npy'),
                                state.params['head']['kernel'])
