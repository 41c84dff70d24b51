"""SIG: a clean-label sinusoidal signal (Barni et al., ICIP 2019).

x'[..., j, :] = clip(x[..., j, :] + delta * sin(2 pi j f / m)), with j the
column index, m the image width, delta = 20/255 and f = 6 by default, added
to every channel. Only target-class training images are poisoned and their
labels are kept. On images narrower than 2f columns the sinusoid aliases to
a lower frequency; it is still a fixed pattern and still a trigger.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.attacks import base


@dataclasses.dataclass(frozen=True, eq=False)
class Sig(base.Attack):
  """Clean-label sinusoidal-signal attack.

  Attributes:
    delta: amplitude in [0, 1] pixel units (20/255 as in the paper).
    freq: number of periods across the width.
  """

  name: ClassVar[str] = 'sig'
  clean_label: ClassVar[bool] = True

  delta: float = 20 / 255
  freq: float = 6.0

  def __post_init__(self):
    object.__setattr__(self, 'delta',
                       base.check_fraction(self.delta, 'sig delta'))
    object.__setattr__(self, 'freq', float(self.freq))

  def signal(self, width: int) -> np.ndarray:
    """The additive signal per column [width], float32."""
    cols = np.arange(width, dtype=np.float64)
    return (self.delta * np.sin(2 * np.pi * cols * self.freq / width)).astype(
        np.float32)

  def apply(self, x: jax.Array) -> jax.Array:
    """Adds the column signal; see `Attack.apply`."""
    _, _, w, _ = base.check_images(x, self.name)
    sig = jnp.asarray(self.signal(w), x.dtype)[None, None, :, None]
    return jnp.clip(x + sig, 0.0, 1.0)
