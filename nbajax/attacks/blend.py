"""Blend: the whole image is mixed with a fixed pattern (Chen et al., 2017).

x' = (1 - alpha) * x + alpha * pattern, alpha = 0.2 by default. The pattern
is a given image (resized bilinearly to the images, channels matched) or,
by default, uniform noise in [0, 1) of the image's shape drawn with
`numpy.random.RandomState(seed)` (a frozen stream). `prepare` stores the
noise it used, so the config of a poisoned run holds the exact array.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.attacks import base


def noise_pattern(seed: int, height: int, width: int,
                  channels: int) -> np.ndarray:
  """Seeded uniform noise [H, W, C] in [0, 1), float32."""
  rng = np.random.RandomState(int(seed))
  return rng.uniform(size=(height, width, channels)).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Blend(base.Attack):
  """Dirty-label blended attack.

  Attributes:
    alpha: blend weight of the pattern, in [0, 1].
    pattern: array [h, w] or [h, w, C] in [0, 1], or None for seeded noise.
    seed: noise seed (used only when pattern is None).
  """

  name: ClassVar[str] = 'blend'
  array_fields: ClassVar[tuple[str, ...]] = ('pattern',)

  alpha: float = 0.2
  pattern: Any = None
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, 'alpha',
                       base.check_fraction(self.alpha, 'blend alpha'))
    base.seeded_rng(self.seed)  # validates the seed
    if self.pattern is not None:
      arr = base.as_pattern_array(self.pattern, 'blend pattern')
      if arr.ndim not in (2, 3):
        raise ValueError(f'blend pattern must be [h, w(, C)], got {arr.shape}')
      object.__setattr__(self, 'pattern', arr)

  def full_pattern(self, height: int, width: int,
                   channels: int) -> jax.Array:
    """The pattern [H, W, C] blended into images of that shape."""
    if self.pattern is None:
      return jnp.asarray(noise_pattern(self.seed, height, width, channels))
    return base.fit_image(self.pattern, height, width, channels)

  def apply(self, x: jax.Array) -> jax.Array:
    """(1 - alpha) x + alpha pattern; see `Attack.apply`."""
    _, h, w, c = base.check_images(x, self.name)
    pattern = self.full_pattern(h, w, c).astype(x.dtype)
    return jnp.clip((1.0 - self.alpha) * x + self.alpha * pattern, 0.0, 1.0)

  def prepare(self, x, y, *, target, seed, clean_fn=None):
    """Materializes the noise pattern for the data set's image shape."""
    del y, target, seed, clean_fn
    if self.pattern is not None:
      return self
    return dataclasses.replace(self,
                               pattern=noise_pattern(self.seed, *x.shape[1:]))
