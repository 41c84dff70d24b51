"""BadNets: a small fixed patch stamped onto the image (Gu et al., 2017).

Default as in the NAD code: a 3x3 black/white checkerboard in the
bottom-right corner (white pixels at the patch corners). Only the patch
pixels change.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import numpy as np

from nbajax.attacks import base

PATTERNS = ('checkerboard', 'white')


@dataclasses.dataclass(frozen=True, eq=False)
class BadNets(base.Attack):
  """Dirty-label patch attack.

  Attributes:
    size: patch side in pixels (default 3, or the given pattern's size).
    position: a corner ('bottom-right', 'bottom-left', 'top-left',
      'top-right') or the patch's top-left (row, col).
    pattern: 'checkerboard', 'white', or an array [h, w] / [h, w, C] in
      [0, 1]. A named pattern at a corner is oriented so that the pixel at
      the image corner is white.
  """

  name: ClassVar[str] = 'badnets'
  array_fields: ClassVar[tuple[str, ...]] = ('pattern',)

  size: int | None = None
  position: Any = 'bottom-right'
  pattern: Any = 'checkerboard'

  def __post_init__(self):
    object.__setattr__(self, 'position',
                       base.normalize_position(self.position))
    if isinstance(self.pattern, str):
      base.check_choice(self.pattern, 'pattern', PATTERNS)
      if self.size is not None and int(self.size) < 1:
        raise ValueError(f'badnets: size must be >= 1, got {self.size}')
      return
    arr = base.as_pattern_array(self.pattern, 'badnets pattern')
    if arr.ndim not in (2, 3):
      raise ValueError('badnets pattern must be [h, w] or [h, w, C], got '
                       f'shape {arr.shape}')
    if self.size is not None and arr.shape[:2] != (self.size, self.size):
      raise ValueError(f'badnets: size={self.size} disagrees with the pattern '
                       f'shape {arr.shape}')
    object.__setattr__(self, 'pattern',
                       arr if arr.ndim == 3 else arr[..., None])

  def patch(self) -> np.ndarray:
    """The patch [h, w, C or 1] as it is pasted (oriented for its corner)."""
    if not isinstance(self.pattern, str):
      return self.pattern
    size = 3 if self.size is None else int(self.size)
    patch = (base.checkerboard(size, size) if self.pattern == 'checkerboard'
             else np.ones((size, size, 1), np.float32))
    if isinstance(self.position, str):
      patch = base.corner_oriented(patch, self.position)
    return patch

  def apply(self, x: jax.Array) -> jax.Array:
    """Stamps the patch; see `Attack.apply`."""
    _, h, w, c = base.check_images(x, self.name)
    patch = self.patch()
    if patch.shape[-1] not in (1, c):
      raise ValueError(f'badnets: pattern has {patch.shape[-1]} channels, '
                       f'images have {c}')
    top, left = base.resolve_position(self.position, patch.shape[:2], (h, w),
                                      self.name)
    return base.stamp(x, patch, top, left)
