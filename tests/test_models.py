"""Tests for nbajax.models: shapes, variables, normalization, architecture pins.

Inputs are tiny (batch 2, 8x8 or 16x16) so the file runs in well under a
minute on CPU; the large models run once each, and parameter counts use
`jax.eval_shape` (no computation).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbajax import models
from nbajax.models import common
from nbajax.models.wrn import WideBasicBlock

# Known totals of trainable parameters (conv, BN affine, dense) of the PyTorch
# reference networks with 10 classes.
WRN_16_1_PYTORCH_PARAMS = 175_066
PREACT_RESNET18_PYTORCH_PARAMS = 11_171_146


def _images(hw: int, channels: int, seed: int = 0) -> jax.Array:
  """Uniform [0, 1) images [2, hw, hw, channels]."""
  return jax.random.uniform(jax.random.key(seed), (2, hw, hw, channels))


# Models whose variables come from a real `init`; the others get
# `_numpy_variables` with the same tree, because initializing with JAX RNG
# compiles slowly on CPU. The real inits use the 'rbg' key implementation,
# about 3x faster to compile than the default threefry and equally random.
_REAL_INIT = (('cnn', 8, 1), ('wrn-16-1', 8, 3))


def _numpy_variables(model, x, seed: int = 0):
  """Variables with init's exact tree, filled cheaply without JAX RNG.

  BN entries take their init values (scale 1, bias 0, running mean 0,
  running var 1); kernels are N(0, 1/fan_in) so activations stay O(1).
  """
  shapes = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0), x)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    last = path[-1].key
    if last in ('scale', 'var'):
      return np.ones(leaf.shape, np.float32)
    if last in ('bias', 'mean'):
      return np.zeros(leaf.shape, np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / math.sqrt(fan_in)).astype(
        np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.cache
def _init(name: str, hw: int, channels: int):
  """Model, variables and input for one (name, size, channels); cached."""
  model = models.get_model(name, 10)
  x = _images(hw, channels)
  if (name, hw, channels) in _REAL_INIT:
    variables = model.init(jax.random.key(1, impl='rbg'), x, train=False)
  else:
    variables = _numpy_variables(model, x)
  return model, variables, x


def _count(tree) -> int:
  """Number of scalars in a tree of arrays (or shape structs)."""
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _abstract_params(name: str, hw: int = 32, channels: int = 3):
  """Shapes of a model's params for 10 classes, computed without running."""
  model = models.get_model(name, 10)
  x = jax.ShapeDtypeStruct((2, hw, hw, channels), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x)['params']


def _check_forward(name: str, hw: int, channels: int,
                   expected: dict[str, tuple[int, ...]]) -> None:
  """Shapes, dtypes, collections and batch-stat updates of one model."""
  model, variables, x = _init(name, hw, channels)
  assert set(variables) == {'params', 'batch_stats'}
  head = variables['params']['head']
  final_channels = expected['final'][-1]
  assert head['kernel'].shape == (final_channels, 10)
  assert head['bias'].shape == (10,)

  logits, features = model.apply(variables, x, train=False)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert {k: v.shape for k, v in features.items()} == {
      k: (2,) + v for k, v in expected.items()}
  assert all(v.dtype == jnp.float32 for v in features.values())
  assert set(models.distill_layers(name)) <= set(features)

  (train_logits, _), updates = model.apply(
      variables, x, train=True, mutable=['batch_stats'])
  assert train_logits.shape == (2, 10)
  assert set(updates) == {'batch_stats'}
  old = jax.tree.leaves(variables['batch_stats'])
  new = jax.tree.leaves(updates['batch_stats'])
  assert len(old) == len(new)
  assert all(not np.allclose(a, b) for a, b in zip(old, new))
  assert bool(jnp.isfinite(logits).all() & jnp.isfinite(train_logits).all())


class TestGetModel:

  def test_model_names(self):
    assert set(models.MODEL_NAMES) == {
        'cnn', 'wrn-16-1', 'wrn-16-2', 'wrn-40-2', 'preact-resnet18'}

  def test_unknown_name_lists_allowed(self):
    with pytest.raises(ValueError, match='wrn-16-1.*preact-resnet18'):
      models.get_model('resnet50', 10)
    with pytest.raises(ValueError, match='allowed'):
      models.distill_layers('wrn-28-10')

  @pytest.mark.parametrize('num_classes', [1, 0, -3, 2.5, True])
  def test_bad_num_classes(self, num_classes):
    with pytest.raises(ValueError, match='num_classes'):
      models.get_model('cnn', num_classes)

  def test_two_classes_ok(self):
    assert models.get_model('cnn', 2).num_classes == 2

  def test_bad_option(self):
    with pytest.raises(TypeError, match='dropout_rate'):
      models.get_model('preact-resnet18', 10, dropout_rate=0.3)

  @pytest.mark.parametrize('mean,std', [
      ((0.5,), (0.0,)), ((0.5, 0.5), (0.2, 0.2, 0.2)), ((), None),
      (None, (-1.0,)), ((float('nan'),), None)])
  def test_bad_mean_std(self, mean, std):
    with pytest.raises(ValueError):
      models.get_model('cnn', 10, mean=mean, std=std)

  def test_distill_layers(self):
    for name in ('cnn', 'wrn-16-1', 'wrn-16-2', 'wrn-40-2'):
      assert models.distill_layers(name) == ('group1', 'group2', 'group3')
    assert models.distill_layers('preact-resnet18') == (
        'layer2', 'layer3', 'layer4')

  def test_input_checks(self):
    model, variables, x = _init('cnn', 8, 1)
    with pytest.raises(ValueError, match='255'):
      model.apply(variables, jnp.zeros((2, 8, 8, 1), jnp.uint8))
    with pytest.raises(ValueError, match='NHWC'):
      model.apply(variables, x[0])
    rgb_stats = models.get_model('cnn', 10, mean=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match='channels'):
      rgb_stats.apply(variables, x)

  @pytest.mark.parametrize('mean,std', [
      ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3)), ((0.5,), None), (None, (0.3,))])
  def test_normalization_inside_model(self, mean, std):
    neutral, variables, x = _init('cnn', 8, 3)
    normed = models.get_model('cnn', 10, mean=mean, std=std)
    manual = x
    if mean is not None:
      manual = manual - jnp.asarray(mean)
    if std is not None:
      manual = manual / jnp.asarray(std)
    got_logits, got_feats = normed.apply(variables, x)
    want_logits, want_feats = neutral.apply(variables, manual)
    np.testing.assert_allclose(got_logits, want_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_feats['group3'], want_feats['group3'],
                               rtol=1e-5, atol=1e-5)
    # And it really changes the output (the defaults are neutral).
    assert not np.allclose(got_logits, neutral.apply(variables, x)[0])

  def test_jit_matches_eager(self):
    model, variables, x = _init('cnn', 8, 1)
    apply = jax.jit(functools.partial(model.apply, train=False))
    np.testing.assert_allclose(apply(variables, x)[0],
                               model.apply(variables, x)[0], atol=1e-5)


class TestComputeDtype:
  """`dtype='bfloat16'`: bf16 convolutions and matmuls (GPU/TPU), float32
  parameters, statistics and outputs; the default is the float32 net."""

  def test_bfloat16_computes_in_bf16_and_returns_float32(self):
    model, variables, x = _init('wrn-16-1', 8, 3)
    fast = models.get_model('wrn-16-1', 10, dtype='bfloat16')
    # Same parameter tree and dtypes: a float32 checkpoint serves both.
    assert jax.tree.structure(jax.eval_shape(
        functools.partial(fast.init, train=False), jax.random.key(0),
        x)) == jax.tree.structure(variables)
    jaxpr = str(jax.make_jaxpr(functools.partial(fast.apply, train=False))(
        variables, x))
    assert 'conv_general_dilated' in jaxpr and 'bf16' in jaxpr
    want, want_feats = model.apply(variables, x, train=False)
    got, got_feats = fast.apply(variables, x, train=False)
    assert got.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in got_feats.values())
    # bf16 keeps 8 bits of mantissa: close to float32, not equal.
    scale = float(jnp.abs(want).max())
    assert float(jnp.abs(got - want).max()) < 0.05 * scale
    assert not np.array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_allclose(got_feats['group3'], want_feats['group3'],
                               atol=0.05 * float(
                                   jnp.abs(want_feats['group3']).max()))

  def test_gradients_and_statistics_stay_float32(self):
    _, variables, x = _init('cnn', 8, 1)
    fast = models.get_model('cnn', 10, dtype='bfloat16')

    def loss(params):
      (logits, _), updates = fast.apply(
          {**variables, 'params': params}, x, train=True,
          mutable=['batch_stats'])
      return jnp.mean(logits ** 2), updates

    grads, updates = jax.grad(loss, has_aux=True)(variables['params'])
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    assert all(s.dtype == jnp.float32
               for s in jax.tree.leaves(updates['batch_stats']))

  def test_float32_by_name_is_the_default_network(self):
    assert models.get_model('wrn-16-1', 10, dtype='float32') == (
        models.get_model('wrn-16-1', 10))
    assert models.get_model('cnn', 10, dtype=jnp.bfloat16).dtype == (
        jnp.bfloat16)

  @pytest.mark.parametrize('dtype', ['float16', 'int8', 'fp8', 3])
  def test_other_dtypes_are_refused_by_name(self, dtype):
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', "
                       r"'bfloat16'\)"):
      models.get_model('preact-resnet18', 10, dtype=dtype)


class TestSmallCNN:

  def test_forward_8x8_gray(self):
    _check_forward('cnn', 8, 1, {'group1': (8, 8, 32), 'group2': (4, 4, 64),
                                 'group3': (2, 2, 128), 'final': (2, 2, 128)})

  @pytest.mark.parametrize('hw,channels,out', [(28, 1, 7), (32, 3, 8)])
  def test_larger_inputs(self, hw, channels, out):
    model, variables, x = _init('cnn', 8, channels)  # params are size-free
    logits, feats = model.apply(variables, _images(hw, channels))
    assert logits.shape == (2, 10)
    assert feats['final'].shape == (2, out, out, 128)

  def test_final_is_group3_and_nonnegative(self):
    model, variables, x = _init('cnn', 8, 1)
    _, feats = model.apply(variables, x)
    np.testing.assert_array_equal(feats['final'], feats['group3'])
    assert all(bool((feats[k] >= 0).all()) for k in ('group1', 'group2'))

  def test_widths_option(self):
    model = models.get_model('cnn', 3, widths=[8, 16, 24])
    x = _images(8, 1)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert variables['params']['head']['kernel'].shape == (24, 3)
    with pytest.raises(ValueError, match='widths'):
      jax.eval_shape(models.get_model('cnn', 3, widths=(8, 16)).init,
                     jax.random.key(0), x)


def _wrn_params_by_hand(depth: int, k: int, num_classes: int,
                        in_channels: int = 3) -> int:
  """Trainable parameters of WRN-depth-k, from its conv/BN/dense shapes."""
  n = (depth - 4) // 6
  conv3 = lambda cin, cout: 9 * cin * cout
  bn = lambda c: 2 * c  # scale and bias
  total = conv3(in_channels, 16)
  cin = 16
  for width in (16 * k, 32 * k, 64 * k):
    for _ in range(n):
      total += bn(cin) + conv3(cin, width) + bn(width) + conv3(width, width)
      total += cin * width if cin != width else 0  # 1x1 shortcut
      cin = width
  return total + bn(cin) + cin * num_classes + num_classes


class TestWideResNet:

  def test_forward_wrn_16_1(self):
    _check_forward('wrn-16-1', 8, 3, {
        'group1': (8, 8, 16), 'group2': (4, 4, 32), 'group3': (2, 2, 64),
        'final': (2, 2, 64)})

  def test_forward_wrn_16_2_gray(self):
    _check_forward('wrn-16-2', 8, 1, {
        'group1': (8, 8, 32), 'group2': (4, 4, 64), 'group3': (2, 2, 128),
        'final': (2, 2, 128)})

  def test_forward_wrn_40_2(self):
    _check_forward('wrn-40-2', 16, 3, {
        'group1': (16, 16, 32), 'group2': (8, 8, 64), 'group3': (4, 4, 128),
        'final': (4, 4, 128)})

  def test_param_count_wrn_16_1(self):
    by_hand = _wrn_params_by_hand(16, 1, 10)
    assert by_hand == WRN_16_1_PYTORCH_PARAMS
    assert _count(_abstract_params('wrn-16-1')) == by_hand

  @pytest.mark.parametrize('name,depth,k', [('wrn-16-2', 16, 2),
                                            ('wrn-40-2', 40, 2)])
  def test_param_count_other_wrns(self, name, depth, k):
    assert _count(_abstract_params(name)) == _wrn_params_by_hand(depth, k, 10)

  def test_shortcut_only_when_width_changes(self):
    narrow = _abstract_params('wrn-16-1')
    assert 'shortcut' not in narrow['group1_block0']
    assert narrow['group2_block0']['shortcut']['kernel'].shape == (1, 1, 16, 32)
    assert 'shortcut' not in narrow['group2_block1']
    wide = _abstract_params('wrn-16-2')
    assert wide['group1_block0']['shortcut']['kernel'].shape == (1, 1, 16, 32)

  def _zero_branch_block(self, cin: int, cout: int, stride: int):
    """A block whose residual branch is zeroed, so it outputs its shortcut."""
    block = WideBasicBlock(cout, stride)
    x = -_images(4, cin)  # all <= 0: ReLU(BN(x)) at init is exactly 0
    variables = _numpy_variables(block, x)
    params = dict(variables['params'])
    for conv_name in ('conv1', 'conv2'):
      params[conv_name] = {'kernel': jnp.zeros_like(
          params[conv_name]['kernel'])}
    return block, {**variables, 'params': params}, x

  def test_equal_in_out_shortcut_is_raw_input(self):
    block, variables, x = self._zero_branch_block(8, 8, 1)
    np.testing.assert_array_equal(
        block.apply(variables, x, train=False), x)

  def test_projection_shortcut_takes_activated_input(self):
    # The 1x1 conv sees ReLU(BN(x)) = 0 for x <= 0; fed the raw x instead it
    # would give a non-zero output.
    block, variables, x = self._zero_branch_block(8, 16, 2)
    out = block.apply(variables, x, train=False)
    assert out.shape == (2, 2, 2, 16)
    np.testing.assert_array_equal(out, jnp.zeros_like(out))

  def test_final_is_bn_relu_of_group3(self):
    model, variables, x = _init('wrn-16-1', 8, 3)
    _, feats = model.apply(variables, x)
    # At init the running stats are mean 0 / var 1 and BN is the identity up
    # to 1/sqrt(1 + eps).
    want = jax.nn.relu(feats['group3'] / math.sqrt(1 + common.BN_EPSILON))
    np.testing.assert_allclose(feats['final'], want, rtol=1e-6, atol=1e-6)
    assert bool((feats['group3'] < 0).any())  # group3 is pre-activation

  def test_init(self):
    params = _init('wrn-16-1', 8, 3)[1]['params']
    assert not np.any(params['head']['bias'])
    bn = params['bn_final']
    np.testing.assert_array_equal(bn['scale'], np.ones(64))
    np.testing.assert_array_equal(bn['bias'], np.zeros(64))
    kernel = params['group3_block1']['conv2']['kernel']  # [3, 3, 64, 64]
    want_std = math.sqrt(2.0 / (9 * 64))  # He normal, fan_out
    assert abs(float(jnp.std(kernel)) / want_std - 1) < 0.05

  def test_dropout(self):
    model = models.get_model('wrn-16-1', 10, dropout_rate=0.5)
    plain, variables, x = _init('wrn-16-1', 8, 3)  # same variables
    # Evaluation ignores dropout.
    np.testing.assert_array_equal(model.apply(variables, x)[0],
                                  plain.apply(variables, x)[0])
    # Training draws a mask from the 'dropout' rng (checked on one block,
    # the only place the rate is used, to keep compilation small).
    block = WideBasicBlock(8, dropout_rate=0.5)
    x = _images(4, 8)
    block_vars = _numpy_variables(block, x)
    run = lambda seed: block.apply(
        block_vars, x, train=True, mutable=['batch_stats'],
        rngs={'dropout': jax.random.key(seed)})[0]
    assert not np.allclose(run(0), run(1))
    assert model.dropout_rate == 0.5

  def test_bad_depth(self):
    model = models.WideResNet(10, depth=15)
    with pytest.raises(ValueError, match='depth'):
      model.init(jax.random.key(0), _images(8, 3))


def _preact18_params_by_hand(num_classes: int, in_channels: int = 3) -> int:
  """Trainable parameters of PreAct-ResNet18 from its layer shapes."""
  total = 9 * in_channels * 64
  cin = 64
  for width, stride in zip((64, 128, 256, 512), (1, 2, 2, 2)):
    for b in range(2):
      total += 2 * cin + 9 * cin * width + 2 * width + 9 * width * width
      if b == 0 and (stride != 1 or cin != width):
        total += cin * width
      cin = width
  return total + cin * num_classes + num_classes


class TestPreActResNet18:

  def test_forward(self):
    _check_forward('preact-resnet18', 16, 3, {
        'layer1': (16, 16, 64), 'layer2': (8, 8, 128), 'layer3': (4, 4, 256),
        'layer4': (2, 2, 512), 'final': (2, 2, 512)})

  def test_no_final_bn_relu(self):
    # BackdoorBench pools layer4's output directly.
    model, variables, x = _init('preact-resnet18', 16, 3)
    _, feats = model.apply(variables, x)
    np.testing.assert_array_equal(feats['final'], feats['layer4'])
    assert not any(k.startswith('bn') for k in variables['params'])

  def test_param_count(self):
    by_hand = _preact18_params_by_hand(10)
    assert by_hand == PREACT_RESNET18_PYTORCH_PARAMS
    assert _count(_abstract_params('preact-resnet18')) == by_hand

  def test_shortcuts(self):
    params = _abstract_params('preact-resnet18')
    assert 'shortcut' not in params['layer1_block0']
    assert params['layer2_block0']['shortcut']['kernel'].shape == (
        1, 1, 64, 128)
    assert 'shortcut' not in params['layer4_block1']

  def test_torch_default_init(self):
    kernel = common.torch_default_kernel(jax.random.key(0), (3, 3, 64, 64))
    bias = common.torch_default_bias(64)(jax.random.key(1), (4096,))
    bound = 1 / math.sqrt(9 * 64)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for a, b in ((kernel, bound), (bias, 1 / 8)):
      assert float(jnp.abs(a).max()) <= b
      assert float(jnp.abs(a).max()) > 0.95 * b

  def test_gray_and_8x8_input(self):
    model = models.get_model('preact-resnet18', 10)
    x = _images(8, 1)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    logits, feats = jax.eval_shape(model.apply, shapes, x)
    assert logits.shape == (2, 10)
    assert feats['layer4'].shape == (2, 1, 1, 512)
