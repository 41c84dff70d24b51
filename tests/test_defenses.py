"""Tests of nbajax.defenses: FT, FP, NAD, NBA and their shared helpers.

Everything runs the real 'cnn' (narrow widths, so it is quick on a loaded
CPU) on 8x8 digits with batches of 16 and one or two epochs.
"""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import digits as digits_config
from nbajax import defenses, models, training
from nbajax.defenses import fp, nad, nba
from tests.tiny import digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTHS = (8, 16, 16)
BATCH = 16
BETAS = {'group1': 500.0, 'group2': 1000.0, 'group3': 1000.0}  # NAD's.


def _config(**overrides) -> ml_collections.ConfigDict:
  """The digits defense config, made tiny: 1 epoch, batch 16, 1 PGD step."""
  cfg = digits_config.get_config().defense
  cfg.epochs = 1
  cfg.batch_size = BATCH
  cfg.crop_padding = 1
  cfg.nba.steps = 1  # One PGD step keeps the traced program small.
  cfg.update(overrides)
  return cfg


def _model():
  return models.get_model('cnn', 10, widths=WIDTHS)


@functools.cache
def _variables():
  """(backdoored, teacher) variables of `_model()`, drawn with NumPy.

  He-normal kernels, zero biases and means, unit scales and variances, as
  `model.init` gives, but without compiling it (seconds on a loaded CPU,
  paid again in the 8-device subprocess).
  """
  shapes = jax.eval_shape(functools.partial(_model().init, train=False),
                          jax.random.key(0), jnp.zeros((1, 8, 8, 1)))

  def draw(seed):
    rng = np.random.default_rng(seed)

    def leaf(path, shape):
      name = path[-1].key
      if name == 'kernel':
        std = np.sqrt(2.0 / np.prod(shape.shape[:-1]))
        return jnp.asarray(rng.normal(0.0, std, shape.shape), jnp.float32)
      return jnp.full(shape.shape, float(name in ('scale', 'var')),
                      jnp.float32)  # Not weak-typed: no retrace.

    return jax.tree_util.tree_map_with_path(leaf, shapes)

  return draw(0), draw(1)


def _context(*, teacher: bool = True, n: int = 48) -> defenses.DefenseInputs:
  """Backdoored = init seed 0, teacher = init seed 1 (so the two differ)."""
  x, y = digits(n)
  backdoored, fine_tuned = _variables()
  return defenses.DefenseInputs(
      model=_model(), model_name='cnn', variables=backdoored, x_clean=x,
      y_clean=y, key=jax.random.key(2),
      teacher=fine_tuned if teacher else None)


def _defend(name, inputs, cfg):
  return defenses.defend(name, inputs, cfg)


def _batch(n=BATCH):
  x, y = digits(n)
  return jnp.asarray(x, jnp.float32) / 255.0, jnp.asarray(y)


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), tree)


def _max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


class TestGetDefense:

  @pytest.mark.parametrize('name', ['ft', 'fp', 'nad', 'nba'])
  def test_runs_end_to_end_and_keeps_the_variable_tree(self, name):
    ctx = _context(n=32)
    out, history = _defend(name, ctx, _config(epochs=2))
    assert (jax.tree_util.tree_structure(out) ==
            jax.tree_util.tree_structure(ctx.variables))
    assert _shapes(out) == _shapes(ctx.variables)
    assert _max_abs_diff(out['params'], ctx.variables['params']) > 0
    assert [h['epoch'] for h in history] == [1, 2]
    assert all(np.isfinite(h['train_loss']) for h in history)
    assert all(h['train_seen'] == 32 for h in history)

  @pytest.mark.parametrize('name', ['nad', 'nba'])
  def test_distillation_without_a_teacher_is_an_error(self, name):
    with pytest.raises(ValueError, match='teacher'):
      defenses.get_defense(name)(_context(teacher=False), _config())

  def test_unknown_name_lists_the_known_ones(self):
    with pytest.raises(ValueError, match="'ft', 'fp', 'nad', 'nba'"):
      defenses.get_defense('spectral')


class TestNad:

  def test_attention_term_reaches_the_student_gradient(self):
    # The official code once detached this term: NAD was then plain FT.
    ctx = _context()
    x, y = _batch()
    student, teacher = ctx.variables, ctx.teacher

    @jax.jit
    def grads(betas):  # Traced betas: both cases share one compilation.
      loss_fn = nad.make_nad_loss(ctx.model, betas=betas)
      return jax.grad(lambda p: loss_fn(p, student['batch_stats'], x, y,
                                        jax.random.key(0), teacher)[0])(
                                            student['params'])

    layers = models.distill_layers('cnn')
    with_at = grads(dict.fromkeys(layers, 1000.0))
    without = grads(dict.fromkeys(layers, 0.0))
    assert _max_abs_diff(with_at, without) > 1e-3

  def test_loss_is_ce_plus_weighted_attention_sums(self):
    ctx = _context()
    x, y = _batch()
    loss_fn = nad.make_nad_loss(ctx.model, betas={'group3': 1000.0})
    v = ctx.variables
    loss, (_, sums) = loss_fn(v['params'], v['batch_stats'], x, y,
                              jax.random.key(0), ctx.teacher)
    assert float(sums['at']) > 0
    np.testing.assert_allclose(float(sums['loss']),
                               float(sums['ce'] + sums['at']), rtol=1e-5)
    np.testing.assert_allclose(float(sums['loss']), BATCH * float(loss),
                               rtol=1e-6)


def _call(loss_fn, ctx, key=5):
  """`loss_fn` jitted on the backdoored params and one digits batch."""
  v = ctx.variables
  x, y = _batch()
  return jax.jit(loss_fn)(v['params'], v['batch_stats'], x, y,
                          jax.random.key(key), ctx.teacher)


def _nba_loss(ctx, cfg, betas):
  return _call(nba.make_nba_loss(ctx.model, cfg, betas=betas), ctx)


def _nad_like():
  """NBA config that should reduce to NAD: spatial only, no pseudo terms."""
  cfg = _config().nba
  cfg.weights = ml_collections.ConfigDict(
      dict(spatial=1.0, channel=0.0, relation=0.0))
  cfg.gamma, cfg.lam, cfg.kd = 0.0, 0.0, 0.0
  return cfg


@functools.cache
def _nad_like_value() -> float:
  """The NAD-like NBA loss on `_batch()`, compiled once for two tests."""
  return float(_nba_loss(_context(), _nad_like(), BETAS)[0])


class TestNba:

  def test_spatial_only_without_pseudo_terms_is_exactly_nad(self):
    ctx = _context()
    nad_value, _ = _call(nad.make_nad_loss(ctx.model, betas=BETAS), ctx)
    assert _nad_like_value() == float(nad_value)

  def test_pseudo_samples_change_the_loss(self):
    cfg = _nad_like()
    cfg.gamma = 1.0
    with_pseudo, (_, sums) = _nba_loss(_context(), cfg, BETAS)
    without = _nad_like_value()
    assert float(sums['pseudo_align']) > 0
    assert float(with_pseudo) != without
    np.testing.assert_allclose(
        float(with_pseudo) - without,
        float(sums['pseudo_align']) / BATCH, rtol=1e-4)

  def test_defense_step_traces_once(self):
    ctx = _context(n=64)
    loss_fn = nba.make_nba_loss(ctx.model, _config().nba, betas=BETAS)
    trainer = training.Trainer(loss_fn, batch_size=BATCH)
    tx = training.make_optimizer(training.make_schedule(
        lr=0.01, schedule='constant', steps_per_epoch=4, epochs=2))
    state = training.create_train_state(ctx.model, tx, ctx.key, (8, 8, 1),
                                        variables=ctx.variables)
    state = training.replicate(state, trainer.mesh)
    x, y = jnp.asarray(ctx.x_clean), jnp.asarray(ctx.y_clean)
    for epoch in range(2):
      state, metrics = trainer.run_epoch(state, x, y, epoch, ctx.key,
                                         ctx.teacher)
      assert metrics['seen'] == 64
    assert trainer.trace_count == 1

  @pytest.mark.parametrize('field, value', [
      ('align_to', 'noise'), ('pseudo_bn', 'frozen'), ('mode', 'patch')])
  def test_bad_choice_names_the_field(self, field, value):
    cfg = _config().nba
    cfg[field] = value
    with pytest.raises(ValueError, match=field):
      _nba_loss(_context(), cfg, BETAS)

  def test_all_zero_behavior_weights_are_an_error(self):
    cfg = _config().nba
    cfg.weights = ml_collections.ConfigDict(
        dict(spatial=0.0, channel=0.0, relation=0.0))
    with pytest.raises(ValueError, match='weights'):
      nba.make_nba_loss(_model(), cfg, betas=BETAS)


def _phased_call(cfg, pseudo: bool):
  """The phased NBA loss of `cfg` on `_batch()`, its phase set to `pseudo`."""
  ctx = _context()
  loss_fn = nba.make_nba_loss(ctx.model, cfg, betas=BETAS, phased=True)
  x, y = _batch()
  v = ctx.variables
  aux = {'teacher': ctx.teacher, 'pseudo': jnp.asarray(pseudo)}
  return jax.jit(loss_fn)(v['params'], v['batch_stats'], x, y,
                          jax.random.key(5), aux)  # `_call`'s key.


class TestNbaPhases:
  """`nba.pseudo_epochs`: pseudo samples in the first epochs only."""

  def test_a_pseudo_step_is_the_unphased_loss(self):
    cfg = _config().nba
    phased, (_, phased_sums) = _phased_call(cfg, True)
    plain, (_, plain_sums) = _nba_loss(_context(), cfg, BETAS)
    np.testing.assert_allclose(float(phased), float(plain), rtol=1e-6)
    assert float(phased_sums['pseudo_ce']) > 0
    np.testing.assert_allclose(float(phased_sums['pseudo_ce']),
                               float(plain_sums['pseudo_ce']), rtol=1e-6)

  def test_a_clean_step_drops_every_pseudo_term(self):
    cfg = _config().nba
    cfg.kd = 0.5  # Every pseudo term on, so that each must be dropped.
    phased, (_, sums) = _phased_call(cfg, False)
    clean = cfg.copy_and_resolve_references()
    clean.gamma, clean.lam, clean.kd = 0.0, 0.0, 0.0
    expected, _ = _nba_loss(_context(), clean, BETAS)
    np.testing.assert_allclose(float(phased), float(expected), rtol=1e-6)
    for term in ('pseudo_align', 'pseudo_ce', 'pseudo_kd'):
      assert float(sums[term]) == 0.0
    assert float(sums['align']) > 0

  def test_the_phase_follows_the_epoch(self):
    aux = nba.pseudo_phase({'w': 1}, 3)
    assert [bool(aux(None, e)['pseudo']) for e in range(5)] == [
        True, True, True, False, False]
    assert aux(None, 0)['teacher'] == {'w': 1}

  def test_plan_is_phased_only_when_asked(self):
    cfg = _config(epochs=2)
    assert nba.plan(_context(), cfg).epoch_aux is None
    cfg.nba.pseudo_epochs = 1
    plan = nba.plan(_context(), cfg)
    assert plan.aux is None and plan.epoch_aux is not None

  def test_the_defense_crafts_in_its_first_epochs_only(self):
    cfg = _config(epochs=3)
    cfg.nba.pseudo_epochs = 2
    _, history = _defend('nba', _context(n=32), cfg)
    assert [h['train_pseudo_ce'] > 0 for h in history] == [True, True, False]
    assert all(h['train_align'] > 0 for h in history)

  @pytest.mark.parametrize('value, words', [
      (-1, 'nba.pseudo_epochs'), (1.5, 'nba.pseudo_epochs'),
      (2, 'nba.pseudo_epochs=2 leaves none of the 2 epochs')])
  def test_check_names_a_bad_count(self, value, words):
    cfg = _config(epochs=2)
    # A fresh section: a config file may hold any type in any field.
    cfg.nba = ml_collections.ConfigDict({**cfg.nba.to_dict(),
                                         'pseudo_epochs': value})
    with pytest.raises(ValueError, match=words):
      nba.check(cfg)


_SHARDED_SCRIPT = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax, jax.numpy as jnp, numpy as np
    from nbajax import training
    from nbajax.defenses import nad, nba
    from tests import test_defenses as t
    assert len(jax.devices()) == 8, jax.devices()
    ctx = t._context()
    cfg = t._config().nba
    cfg.mode = 'universal'
    betas = t.BETAS
    losses = {'nba': nba.make_nba_loss(ctx.model, cfg, betas=betas),
              'nad': nad.make_nad_loss(ctx.model, betas=betas)}
    x, y = ctx.x_clean, ctx.y_clean
    for name, loss_fn in losses.items():
      out = []
      for devices in (jax.devices()[:1], jax.devices()):
        mesh = training.make_mesh(devices)
        trainer = training.Trainer(loss_fn, batch_size=t.BATCH, mesh=mesh)
        tx = training.make_optimizer(training.make_schedule(
            lr=0.05, schedule='constant', steps_per_epoch=3, epochs=1))
        state = training.create_train_state(ctx.model, tx, ctx.key, (8, 8, 1),
                                            variables=ctx.variables)
        state = training.replicate(state, mesh)
        state, _ = trainer.run_epoch(
            state, training.replicate(x, mesh), training.replicate(y, mesh),
            0, ctx.key, training.replicate(ctx.teacher, mesh))
        out.append(jax.device_get(state.variables))
      print('MAXDIFF', name, t._max_abs_diff(*[o['params'] for o in out]))
      stats = [o['batch_stats'] for o in out]
      scale = max(float(np.abs(a).max()) for a in jax.tree_util.tree_leaves(
          stats[0]))
      print('BNDIFF', name, t._max_abs_diff(*stats) / scale)
''')


def test_nba_and_nad_steps_match_on_one_and_eight_fake_devices():
  """Three steps, batch 16 (2 per device): params agree to ~1e-5.

  NBA runs in universal mode: its one delta is crafted from the gradient of
  the whole (sharded) batch, so a per-shard delta would show here. Batch
  statistics are compared relative to their size (running variances ~3e2).
  """
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _SHARDED_SCRIPT], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  diffs = {tuple(line.split()[:2]): float(line.split()[2])
           for line in proc.stdout.splitlines() if 'DIFF' in line}
  print(diffs)  # Shown with -s; the report quotes it.
  assert len(diffs) == 4, proc.stdout
  for (what, name), diff in diffs.items():
    assert diff < (1e-4 if what == 'MAXDIFF' else 1e-5), (name, diffs)


class TestChoosePruning:
  """Four channels, two classes; logits = pooled @ kernel + bias.

  Channels 0, 2 vote for class 0 and 1, 3 for class 1; the bias leans to
  class 1, so a class-0 example whose only channel is pruned is lost.
  Mean activity 0.1, 0.2, 0.05, 0.15: pruning order 2, 0, 3, 1, accuracy
  1, 3/4, 1/2, 1/2, 1/2.
  """

  POOLED = np.array([[0.0, 0.0, 0.2, 0.0],   # class 0, needs channel 2
                     [0.4, 0.0, 0.0, 0.0],   # class 0, needs channel 0
                     [0.0, 0.8, 0.0, 0.0],   # class 1
                     [0.0, 0.0, 0.0, 0.6]],  # class 1
                    np.float32)
  Y = np.array([0, 0, 1, 1])
  KERNEL = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
  BIAS = np.array([0.0, 0.05], np.float32)

  def _choose(self, **kwargs):
    return fp.choose_pruning(self.POOLED, self.Y, self.KERNEL, self.BIAS,
                             **kwargs)

  def test_prunes_least_active_first_and_stops_at_the_threshold(self):
    mask, accs = self._choose(max_acc_drop=0.3, max_ratio=1.0)
    np.testing.assert_array_equal(mask, [1, 1, 0, 1])
    assert accs == [1.0, 0.75, 0.5]  # Stops at the first count too far.

  def test_a_drop_equal_to_the_threshold_is_allowed(self):
    mask, accs = self._choose(max_acc_drop=0.5, max_ratio=1.0)
    np.testing.assert_array_equal(mask, [0, 0, 0, 0])
    assert accs == [1.0, 0.75, 0.5, 0.5, 0.5]

  def test_max_ratio_caps_the_count(self):
    mask, accs = self._choose(max_acc_drop=1.0, max_ratio=0.5)
    np.testing.assert_array_equal(mask, [0, 1, 0, 1])
    assert accs == [1.0, 0.75, 0.5]

  def test_max_ratio_is_not_cut_by_float_error(self):
    # 0.57 * 100 = 56.99999999999999 in floats: still 57 channels.
    c = 100
    pooled = np.tile(np.arange(1.0, c + 1, dtype=np.float32), (2, 1))
    kernel = np.zeros((c, 2), np.float32)
    mask, accs = fp.choose_pruning(pooled, np.zeros(2, int), kernel,
                                   np.zeros(2, np.float32), max_acc_drop=0.0,
                                   max_ratio=0.57)
    assert len(accs) == 58
    np.testing.assert_array_equal(mask, np.arange(c) >= 57)

  def test_drop_of_exactly_the_threshold_survives_float_error(self):
    # Accuracy 0.8 -> 0.7 with max_acc_drop 0.1, where 0.8 - 0.1 is
    # 0.7000000000000001 in floats: the drop is allowed all the same.
    pooled = np.zeros((10, 2), np.float32)
    pooled[:, 1] = 1.0
    pooled[0] = [0.5, 0.0]  # The one example that needs channel 0.
    y = np.array([0] * 8 + [1] * 2)  # The last two are always wrong.
    kernel = np.array([[1, 0], [1, 0]], np.float32)
    mask, accs = fp.choose_pruning(pooled, y, kernel,
                                   np.array([0.0, 0.1], np.float32),
                                   max_acc_drop=0.1, max_ratio=0.5)
    np.testing.assert_array_equal(mask, [0, 1])
    assert accs == [0.8, 0.7]

  def test_no_room_prunes_nothing(self):
    mask, accs = self._choose(max_acc_drop=0.1, max_ratio=1.0)
    np.testing.assert_array_equal(mask, [1, 1, 1, 1])
    assert accs == [1.0, 0.75]


class TestFinePruning:

  def test_pruned_head_rows_stay_exactly_zero_after_fine_tuning(self):
    ctx = _context()
    cfg = _config(epochs=2)
    cfg.fp.max_acc_drop, cfg.fp.max_ratio = 1.0, 0.5
    out, history = _defend('fp', ctx, cfg)
    kernel = np.asarray(out['params']['head']['kernel'])  # [C, K]
    zero_rows = np.flatnonzero(~kernel.any(axis=1))
    assert history[0]['pruned'] == WIDTHS[-1] // 2 == len(zero_rows)
    # The pruned channels are the least active ones on the clean subset.
    pooled = fp.pooled_features(ctx.model, ctx.variables, ctx.x_clean)
    least = np.argsort(pooled.mean(0), kind='stable')[:len(zero_rows)]
    np.testing.assert_array_equal(np.sort(least), zero_rows)
    # Everything else did train.
    start = np.asarray(ctx.variables['params']['head']['kernel'])
    kept = np.setdiff1d(np.arange(len(kernel)), zero_rows)
    assert not np.array_equal(kernel[kept], start[kept])


class TestLayerBetas:

  def _cfg(self, layers, betas):
    return ml_collections.ConfigDict(dict(layers=layers, betas=betas))

  def test_one_beta_is_broadcast_to_every_layer(self):
    assert defenses.layer_betas(self._cfg((), (7.0,)), 'cnn') == {
        'group1': 7.0, 'group2': 7.0, 'group3': 7.0}

  def test_default_layers_come_from_the_model(self):
    for name in ('cnn', 'wrn-16-1', 'preact-resnet18'):
      got = defenses.layer_betas(self._cfg((), (1.0, 2.0, 3.0)), name)
      assert tuple(got) == models.distill_layers(name)
      assert list(got.values()) == [1.0, 2.0, 3.0]

  def test_explicit_layers(self):
    assert defenses.layer_betas(self._cfg(('group3',), (5000.0,)),
                                'cnn') == {'group3': 5000.0}

  def test_count_mismatch_is_an_error(self):
    with pytest.raises(ValueError, match='one value per layer'):
      defenses.layer_betas(self._cfg((), (500.0, 1000.0)), 'cnn')

  def test_a_repeated_layer_is_an_error(self):
    # Not silently {'group3': 2.0}: the first beta would vanish.
    with pytest.raises(ValueError, match='more than once'):
      defenses.layer_betas(self._cfg(('group3', 'group3'), (1.0, 2.0)),
                           'cnn')

  def test_negative_beta_is_an_error(self):
    with pytest.raises(ValueError, match='>= 0'):
      defenses.layer_betas(self._cfg((), (-1.0,)), 'cnn')


def test_nba_check_accepts_the_defaults():
  nba.check(_config())


@pytest.mark.parametrize('field,value,words', [
    ('eps', 8, ['nba.eps', 'did you mean 8/255']),
    ('eps', -0.1, ['nba.eps must be a number in [0, 1]']),
    ('alpha', -1.0, ['nba.alpha must be a number >= 0']),
    ('gamma', float('nan'), ['nba.gamma']),
    ('kd_temperature', 0.0, ['nba.kd_temperature must be a number > 0']),
    ('steps', 1.5, ['nba.steps:', 'steps must be']),
    ('mode', 'global', ['nba.mode:', 'universal']),
    ('generator_target', 'x', ['nba.generator_target:', 'pseudo']),
    ('align_to', 'teacher', ["nba.align_to='teacher'", 'clean']),
    ('pseudo_bn', 'off', ["nba.pseudo_bn='off'", 'eval']),
    ('random_start', 1, ['nba.random_start must be True or False']),
    ('weights', {'spatial': 0.0}, ['nba.weights needs at least one']),
])
def test_nba_check_names_the_bad_field(field, value, words):
  cfg = _config()
  # A fresh section: a config file may hold any type in any field.
  cfg.nba = ml_collections.ConfigDict({**cfg.nba.to_dict(), field: value})
  with pytest.raises(ValueError) as e:
    nba.check(cfg)
  for word in words:
    assert word in str(e.value)


def test_nba_is_checked_through_the_registry():
  assert defenses.CHECKS['nba'] is nba.check


def test_every_declared_optimizer_section_exists_in_the_defaults():
  cfg = _config()
  for name, paths in defenses.OPTIMIZER_SECTIONS.items():
    assert name in defenses.DEFENSES
    for path in paths:
      node = cfg
      for part in path.split('.'):
        node = node[part]
      assert {'lr', 'epochs', 'batch_size', 'optimizer'} <= set(node)


@pytest.mark.parametrize('value', [-0.1, 1.5, True, 'x'])
def test_fp_check_names_the_field(value):
  cfg = _config()
  cfg.fp = ml_collections.ConfigDict({**cfg.fp.to_dict(), 'max_ratio': value})
  with pytest.raises(ValueError, match=r'fp\.max_ratio must be a number in'):
    fp.check(cfg)
