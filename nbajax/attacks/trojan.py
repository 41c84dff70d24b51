"""Trojan: a patch optimized to excite chosen neurons (Liu et al., TrojanNN,
NDSS 2018).

TrojanNN (1) picks neurons of an internal layer that the trigger region can
drive strongly, then (2) optimizes the trigger pixels by gradient ascent so
that those neurons fire high. A clean model is seen here only through
`clean_fn(x) -> (logits, features)`, without its weights, so step (1)
measures each channel's connection to the trigger region directly:

* `selection='gradient'` (default): score of channel c = the L2 norm of
  d(mean activation of c) / d(patch pixels) at a random patch: the channels
  the patch region is most strongly connected to (TrojanNN's "largest
  summed weight" criterion, measured end to end instead of on one layer's
  weights);
* `selection='activation'`: the channels with the highest mean activation
  under a random patch;
* or pass `neurons=` explicitly (e.g. chosen from the weights yourself).

A "neuron" is a channel of the feature map `layer`; its activation is the
spatial mean. Step (2) is sign-gradient ascent of the selected channels'
mean activation over the patch pixels, clipped to [0, 1]. The model is not
retrained: the attack then poisons data with the patch like BadNets.
"""

import dataclasses
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.attacks import base

SELECTIONS = ('gradient', 'activation')
_PROBE_IMAGES = 32       # background images drawn from the training set
_SELECTION_IMAGES = 4    # jacobian over C channels: keep its batch small


def default_size(height: int, width: int) -> int:
  """Patch side used when none is given: about a quarter of the image."""
  return max(3, min(height, width) // 4)


@dataclasses.dataclass(frozen=True, eq=False)
class Trojan(base.Attack):
  """Dirty-label attack with an optimized patch.

  Attributes:
    pattern: the optimized patch [s, s, C] in [0, 1]; None until generated
      by `make_trojan_trigger` or `prepare`.
    position: corner name or (row, col) of the patch.
    size: patch side for generation (None: max(3, min(H, W) // 4)).
    layer: feature name whose channels are the neurons (None: 'final').
    neurons: channel indices (None: chosen by `selection`).
    num_neurons: how many channels to select.
    selection: 'gradient' or 'activation' (see the module docstring).
    steps: ascent steps.
    lr: sign-gradient step size (pixel units in [0, 1]).
  """

  name: ClassVar[str] = 'trojan'
  array_fields: ClassVar[tuple[str, ...]] = ('pattern',)

  pattern: Any = None
  position: Any = 'bottom-right'
  size: int | None = None
  layer: str | None = None
  neurons: Any = None
  num_neurons: int = 1
  selection: str = 'gradient'
  steps: int = 100
  lr: float = 0.02

  def __post_init__(self):
    object.__setattr__(self, 'position',
                       base.normalize_position(self.position))
    base.check_choice(self.selection, 'selection', SELECTIONS)
    if self.neurons is not None:
      object.__setattr__(self, 'neurons', tuple(int(n) for n in self.neurons))
    if int(self.num_neurons) < 1 or int(self.steps) < 0 or self.lr <= 0:
      raise ValueError('trojan: need num_neurons >= 1, steps >= 0, lr > 0')
    if self.pattern is None:
      return
    arr = base.as_pattern_array(self.pattern, 'trojan pattern')
    if arr.ndim == 2:
      arr = arr[..., None]
    if arr.ndim != 3:
      raise ValueError(f'trojan pattern must be [s, s, C], got {arr.shape}')
    if self.size is not None and arr.shape[:2] != (self.size, self.size):
      raise ValueError(f'trojan: size={self.size} disagrees with the pattern '
                       f'shape {arr.shape}')
    object.__setattr__(self, 'pattern', arr)

  def apply(self, x: jax.Array) -> jax.Array:
    """Stamps the optimized patch; see `Attack.apply`."""
    _, h, w, c = base.check_images(x, self.name)
    if self.pattern is None:
      raise ValueError('trojan has no pattern yet: build it with '
                       'make_trojan_trigger(...), prepare(..., clean_fn=...) '
                       "or get_attack('trojan', pattern=...)")
    if self.pattern.shape[-1] not in (1, c):
      raise ValueError(f'trojan pattern has {self.pattern.shape[-1]} '
                       f'channels, images have {c}')
    top, left = base.resolve_position(self.position, self.pattern.shape[:2],
                                      (h, w), self.name)
    return base.stamp(x, self.pattern, top, left)

  def prepare(self, x, y, *, target, seed, clean_fn=None):
    """Generates the pattern with `clean_fn` on seeded training images."""
    del y, target
    if self.pattern is not None:
      return self
    if clean_fn is None:
      raise ValueError('trojan needs clean_fn to generate its pattern (or '
                       'pass pattern=...)')
    rng = base.seeded_rng(seed, 3)
    pick = rng.choice(len(x), size=min(_PROBE_IMAGES, len(x)), replace=False)
    return make_trojan_trigger(
        clean_fn, x.shape[1:], images=base.to_float(x[np.sort(pick)]),
        layer=self.layer, neurons=self.neurons, num_neurons=self.num_neurons,
        selection=self.selection, size=self.size, position=self.position,
        steps=self.steps, lr=self.lr, key=jax.random.key(seed))


def _resolve_layer(clean_fn: base.CleanFn, background: jax.Array,
                   layer: str | None) -> tuple[str, int]:
  """Returns (layer name, number of channels), checking it exists."""
  feats = jax.eval_shape(clean_fn, background)[1]
  if layer is None:
    layer = 'final'
  if layer not in feats:
    raise ValueError(f'trojan: layer {layer!r} not among the features '
                     f'{sorted(feats)}; pass layer=...')
  return layer, int(feats[layer].shape[-1])


def _channel_means(clean_fn, background, layer, top, left):
  """Returns f(patch) -> mean activation of every channel of `layer` [C]."""
  def fn(patch):
    feat = clean_fn(base.stamp(background, patch, top, left))[1][layer]
    return jnp.mean(feat, axis=tuple(range(feat.ndim - 1)))
  return fn


def select_neurons(clean_fn: base.CleanFn, background: jax.Array,
                   patch0: jax.Array, *, layer: str, num_neurons: int,
                   selection: str, top: int, left: int) -> tuple[int, ...]:
  """Chooses the channels the patch region drives most (module docstring).

  Args:
    clean_fn: clean model closure.
    background: float images [B, H, W, C] the patch is pasted on.
    patch0: the random starting patch [s, s, C].
    layer: feature name.
    num_neurons: how many channels to return.
    selection: 'gradient' or 'activation'.
    top: patch row.
    left: patch column.

  Returns:
    Channel indices, best first.
  """
  means = _channel_means(clean_fn, background[:_SELECTION_IMAGES], layer, top,
                         left)
  if selection == 'activation':
    score = jax.jit(means)(patch0)
  else:
    jac = jax.jit(jax.jacrev(means))(patch0)        # [C, s, s, C_in]
    score = jnp.sqrt(jnp.sum(jac**2, axis=(1, 2, 3)))
  order = np.argsort(-np.asarray(score), kind='stable')
  return tuple(int(i) for i in order[:num_neurons])


def make_trojan_trigger(clean_fn: base.CleanFn, image_shape: Sequence[int], *,
                        key: jax.Array, layer: str | None = None,
                        neurons: Sequence[int] | None = None,
                        num_neurons: int = 1, selection: str = 'gradient',
                        size: int | None = None,
                        position: Any = 'bottom-right', steps: int = 100,
                        lr: float = 0.02,
                        images: np.ndarray | None = None) -> Trojan:
  """Optimizes a TrojanNN patch against a clean model.

  Args:
    clean_fn: x_float[B,H,W,C] -> (logits, {name: feature}), jit-able.
    image_shape: (H, W, C) of the images.
    key: PRNG key for the random starting patch.
    layer: feature name holding the neurons (None: 'final').
    neurons: channel indices; None selects `num_neurons` by `selection`.
    num_neurons: channels to select when `neurons` is None.
    selection: 'gradient' or 'activation'.
    size: patch side (None: max(3, min(H, W) // 4)).
    position: corner name or (row, col).
    steps: sign-gradient ascent steps.
    lr: step size in [0, 1] pixel units.
    images: optional float backgrounds [B, H, W, C] in [0, 1]; default one
      black image (TrojanNN's blank canvas).

  Returns:
    A `Trojan` attack holding the pattern [s, s, C], layer and neurons.

  Raises:
    ValueError: unknown layer, bad sizes, or an image too small.
  """
  h, w, c = (int(d) for d in image_shape)
  size = default_size(h, w) if size is None else int(size)
  attack = Trojan(position=position, size=size, layer=layer, neurons=neurons,
                  num_neurons=num_neurons, selection=selection, steps=steps,
                  lr=lr)
  top, left = base.resolve_position(attack.position, (size, size), (h, w),
                                    'trojan')
  background = (jnp.zeros((1, h, w, c), jnp.float32) if images is None
                else jnp.asarray(images, jnp.float32))
  layer, channels = _resolve_layer(clean_fn, background, layer)
  patch = jax.random.uniform(key, (size, size, c), jnp.float32)
  if neurons is None:
    neurons = select_neurons(clean_fn, background, patch, layer=layer,
                             num_neurons=num_neurons, selection=selection,
                             top=top, left=left)
  if any(not 0 <= n < channels for n in neurons):
    raise ValueError(f'trojan: neurons {tuple(neurons)} outside the '
                     f'{channels} channels of {layer!r}')
  patch = _ascend(clean_fn, background, patch, layer=layer,
                  neurons=tuple(neurons), top=top, left=left, steps=steps,
                  lr=lr)
  return dataclasses.replace(attack, pattern=np.asarray(patch), layer=layer,
                             neurons=tuple(neurons))


def _ascend(clean_fn, background, patch, *, layer, neurons, top, left,
            steps, lr):
  """Sign-gradient ascent of the neurons' mean activation over the patch."""
  idx = jnp.asarray(neurons)

  def objective(p):
    feat = clean_fn(base.stamp(background, p, top, left))[1][layer]
    return jnp.mean(feat[..., idx])

  @jax.jit
  def step(p):
    # One jitted step in a Python loop: loops around convolutions run far
    # slower inside lax loops on CPU (docs/design.md §8).
    return jnp.clip(p + lr * jnp.sign(jax.grad(objective)(p)), 0.0, 1.0)

  for _ in range(int(steps)):
    patch = step(patch)
  return jax.lax.stop_gradient(patch)
