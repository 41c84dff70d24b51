"""Refool: clean-label reflection backdoor (Liu et al., ECCV 2020).

Target-class training images get a reflection of another image and keep
their labels. A reflection image r (resized to the images, channels
matched) is transformed by one of the paper's three reflection models K and
blended in:

    x' = clip((1 - alpha) * x + alpha * K(r)),  alpha = 0.3 by default;

* 'focus': both layers in focus, K(r) = r;
* 'blur' (default): out-of-focus reflection, K(r) = Gaussian blur of r with
  `sigma` pixels (edges replicated);
* 'ghost': double reflection from a thick glass, K(r) = (r + a * shift(r))
  / (1 + a), shifted by `offset` = (rows, cols) (None: an eighth of the
  image, at least 1) with attenuation a = `ghost_attenuation`.

We use a convex blend for all three models (the paper adds the reflection
and then corrects over-exposure), so outputs stay in range without
saturation. Reflection images: the `reflections` array [R, h, w, C] when
given; otherwise `prepare` draws `num_reflections` seeded training images
of the non-target classes (the paper uses an outside set such as PascalVOC;
use `select_reflections` on your own set to do the same). Each poisoned
image gets a seeded random one of them; the test-time trigger is always
reflections[0] under the same model. The array is stored in `to_config`.
We do not run the paper's adversarial selection of the most effective
reflections.
"""

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.attacks import base

MODELS = ('focus', 'blur', 'ghost')


def select_reflections(source: np.ndarray, *, num: int,
                       seed: int) -> np.ndarray:
  """Seeded choice of `num` reflection images from a set.

  Args:
    source: images [N, h, w, C], uint8 in [0, 255] or float in [0, 1].
    num: how many to keep (at most N).
    seed: selection seed.

  Returns:
    float32 [num, h, w, C] in [0, 1], in the drawn order.
  """
  source = np.asarray(source)
  if num < 1 or num > len(source):
    raise ValueError(f'refool: cannot select {num} reflections from '
                     f'{len(source)} images')
  pick = base.seeded_rng(seed, 4).choice(len(source), size=num, replace=False)
  chosen = source[pick]
  if chosen.dtype == np.uint8:
    return base.to_float(chosen)
  return base.as_pattern_array(chosen, 'reflections')


@functools.partial(jax.jit, static_argnames=('sigma',))
def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of images [B, H, W, C], edges replicated."""
  if sigma <= 0:
    return x
  radius = max(1, math.ceil(3 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma)**2)
  taps = (taps / taps.sum()).astype(np.float32)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode='edge')
    size = x.shape[axis]
    x = sum(float(t) * jax.lax.slice_in_dim(xp, i, i + size, axis=axis)
            for i, t in enumerate(taps))
  return x


def shift_image(x: jax.Array, rows: int, cols: int) -> jax.Array:
  """Moves images [B, H, W, C] down/right by (rows, cols), edges replicated."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x, [(0, 0), (max(rows, 0), max(-rows, 0)),
                   (max(cols, 0), max(-cols, 0)), (0, 0)], mode='edge')
  top, left = max(-rows, 0), max(-cols, 0)
  return xp[:, top:top + h, left:left + w, :]


@functools.partial(jax.jit, static_argnames=('model', 'alpha', 'sigma',
                                             'offset', 'attenuation'))
def reflect_blend(x: jax.Array, refl: jax.Array, *, model: str, alpha: float,
                  sigma: float, offset: tuple[int, int],
                  attenuation: float) -> jax.Array:
  """clip((1 - alpha) x + alpha K(r)) with the chosen reflection model K.

  Args:
    x: float images [B, H, W, C] in [0, 1].
    refl: reflections [B or 1, h, w, c] in [0, 1] (resized, channels
      matched to x).
    model: 'focus', 'blur' or 'ghost'.
    alpha: reflection weight.
    sigma: blur width in pixels ('blur').
    offset: (rows, cols) ghost shift ('ghost').
    attenuation: ghost copy strength ('ghost').

  Returns:
    Images with the reflection [B, H, W, C].
  """
  _, h, w, c = x.shape
  r = base.fit_image(refl, h, w, c).astype(x.dtype)
  if model == 'blur':
    r = gaussian_blur(r, sigma)
  elif model == 'ghost':
    r = (r + attenuation * shift_image(r, *offset)) / (1.0 + attenuation)
  return jnp.clip((1.0 - alpha) * x + alpha * r, 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class Refool(base.Attack):
  """Clean-label reflection attack (see the module docstring).

  Attributes:
    reflections: float [R, h, w, C] in [0, 1], or None (drawn by prepare).
    num_reflections: R drawn by `prepare` when reflections is None.
    model: 'focus', 'blur' or 'ghost'.
    alpha: weight of the reflection in [0, 1].
    sigma: blur width in pixels ('blur').
    offset: (rows, cols) shift of the ghost, or None for (H//8, W//8) >= 1.
    ghost_attenuation: relative strength of the shifted copy ('ghost').
  """

  name: ClassVar[str] = 'refool'
  clean_label: ClassVar[bool] = True
  array_fields: ClassVar[tuple[str, ...]] = ('reflections',)

  reflections: Any = None
  num_reflections: int = 10
  model: str = 'blur'
  alpha: float = 0.3
  sigma: float = 1.0
  offset: Any = None
  ghost_attenuation: float = 0.5

  def __post_init__(self):
    base.check_choice(self.model, 'reflection model', MODELS)
    object.__setattr__(self, 'alpha',
                       base.check_fraction(self.alpha, 'refool alpha'))
    object.__setattr__(self, 'ghost_attenuation', base.check_fraction(
        self.ghost_attenuation, 'ghost_attenuation'))
    if self.sigma < 0 or int(self.num_reflections) < 1:
      raise ValueError('refool: need sigma >= 0 and num_reflections >= 1')
    if self.offset is not None:
      offset = tuple(int(o) for o in self.offset)
      if len(offset) != 2:
        raise ValueError(f'refool offset must be (rows, cols), got '
                         f'{self.offset!r}')
      object.__setattr__(self, 'offset', offset)
    if self.reflections is not None:
      arr = base.as_pattern_array(self.reflections, 'refool reflections')
      if arr.ndim == 3:       # one reflection [h, w, C]
        arr = arr[None]
      if arr.ndim != 4:
        raise ValueError('refool reflections must be [R, h, w, C], got '
                         f'{arr.shape}')
      object.__setattr__(self, 'reflections', arr)

  def _blend(self, x: jax.Array, refl: np.ndarray) -> jax.Array:
    _, h, w, _ = base.check_images(x, self.name)
    offset = self.offset or (max(1, h // 8), max(1, w // 8))
    if self.model == 'ghost' and (abs(offset[0]) >= h or abs(offset[1]) >= w):
      raise ValueError(f'refool: ghost offset {offset} does not fit a {h}x{w}'
                       ' image')
    return reflect_blend(x, refl, model=self.model, alpha=self.alpha,
                         sigma=float(self.sigma), offset=tuple(offset),
                         attenuation=self.ghost_attenuation)

  def _require(self) -> np.ndarray:
    if self.reflections is None:
      raise ValueError('refool has no reflections yet: pass reflections=... '
                       'or call prepare(x_train, y_train, ...) first')
    return self.reflections

  def apply(self, x: jax.Array) -> jax.Array:
    """Blends reflections[0] into every image; see `Attack.apply`."""
    return self._blend(x, self._require()[:1])

  def prepare(self, x, y, *, target, seed, clean_fn=None):
    """Draws reflections from non-target training images if none given."""
    del clean_fn
    if self.reflections is not None:
      return self
    pool = np.asarray(x)[np.asarray(y) != target]
    refl = select_reflections(pool, num=min(self.num_reflections, len(pool)),
                              seed=seed)
    return dataclasses.replace(self, reflections=refl)

  def poison(self, x, y, *, seed, clean_fn=None):
    """Blends a seeded random reflection into each image."""
    del y, clean_fn
    refl = self._require()
    pick = base.seeded_rng(seed, 5).randint(len(refl), size=x.shape[0])
    return self._blend(x, refl[pick])
