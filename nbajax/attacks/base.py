"""The `Attack` base class and the image helpers every attack shares.

An attack is a frozen dataclass whose fields are its hyper-parameters (plus
any arrays it generated, e.g. a Trojan patch). It offers:

* `apply(x)`: the deterministic test-time trigger on float32 NHWC images in
  [0, 1]; output clipped to [0, 1], same shape and dtype;
* `prepare(x_uint8, y, *, target, seed, clean_fn)`: returns a ready copy of
  the attack (generated arrays filled in) before a data set is poisoned;
* `poison(x, y, *, seed, clean_fn)`: the training-time transform of the
  selected images (the trigger by default; CL adds PGD, Refool picks one
  reflection per image);
* `to_config()`: a JSON-able dict (`name` + every field, arrays as nested
  lists) that `nbajax.attacks.attack_from_config` turns back into an equal
  attack.

Seeded arrays are drawn with `numpy.random.RandomState`, whose streams NumPy
keeps frozen across versions, so a seed means the same trigger on every
machine and library version.

Only jax, numpy and `nbajax.errors` are imported here (no Flax, no config).
"""

import dataclasses
import functools
from typing import Any, Callable, ClassVar, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nbajax import errors

# clean_fn(x_float[B,H,W,C]) -> (logits[B,K], {name: feature[B,h,w,c]}),
# an eval-mode closure over a clean (or any) model.
CleanFn = Callable[[jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]

CORNERS = ('top-left', 'top-right', 'bottom-left', 'bottom-right')


@dataclasses.dataclass(frozen=True, eq=False)
class Attack:
  """Base class of every attack; subclasses add their fields.

  Class attributes:
    name: registry name, e.g. 'badnets'.
    clean_label: True when poisoning keeps every label (then only
      target-class images are poisoned).
    array_fields: fields that hold arrays (lists in `to_config`).
  """

  name: ClassVar[str] = ''
  clean_label: ClassVar[bool] = False
  array_fields: ClassVar[tuple[str, ...]] = ()

  def apply(self, x: jax.Array) -> jax.Array:
    """Applies the test-time trigger.

    Args:
      x: float images [B, H, W, C] in [0, 1].

    Returns:
      Triggered images [B, H, W, C], same dtype, clipped to [0, 1].
    """
    raise NotImplementedError

  def prepare(self, x: np.ndarray, y: np.ndarray, *, target: int, seed: int,
              clean_fn: CleanFn | None = None) -> 'Attack':
    """Returns a copy with every generated array filled in.

    Args:
      x: the training images, uint8 [N, H, W, C].
      y: their labels, int [N].
      target: the attack's target class.
      seed: the poisoning seed.
      clean_fn: clean model closure, for attacks that need one.

    Returns:
      The ready attack (`self` when nothing needs generating).
    """
    del x, y, target, seed, clean_fn
    return self

  def poison(self, x: jax.Array, y: jax.Array, *, seed: int,
             clean_fn: CleanFn | None = None) -> jax.Array:
    """Training-time transform of the images chosen for poisoning.

    Args:
      x: float images [B, H, W, C] in [0, 1].
      y: their true labels, int [B].
      seed: the poisoning seed (for per-image randomness).
      clean_fn: clean model closure, for attacks that need one.

    Returns:
      Poisoned float images [B, H, W, C] in [0, 1].
    """
    del y, seed, clean_fn
    return self.apply(x)

  def num_cross(self, num_poisoned: int) -> int:
    """Number of extra label-keeping "cross" samples (WaNet's noise mode)."""
    del num_poisoned
    return 0

  def cross(self, x: jax.Array, *, seed: int) -> jax.Array:
    """Transforms the cross samples (only attacks with `num_cross` > 0)."""
    raise NotImplementedError(f'{self.name} has no cross samples')

  def params(self) -> dict[str, Any]:
    """The dataclass fields as a dict (arrays as numpy arrays)."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

  def to_config(self) -> dict[str, Any]:
    """JSON-able dict: `name` plus every field, arrays as nested lists."""
    cfg = {'name': self.name}
    cfg.update({k: _jsonable(v) for k, v in self.params().items()})
    return cfg


def _jsonable(value: Any) -> Any:
  """Converts arrays, tuples and numpy scalars to plain JSON types."""
  if isinstance(value, (np.ndarray, jax.Array)):
    return np.asarray(value).tolist()
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


# ----------------------------------------------------------------- checks


def check_images(x: jax.Array, name: str) -> tuple[int, int, int, int]:
  """Returns (B, H, W, C) of a float NHWC batch or raises ValueError."""
  if x.ndim != 4:
    raise ValueError(f'{name}: expected float images [B, H, W, C], got shape '
                     f'{tuple(x.shape)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'{name}: expected float images in [0, 1], got dtype '
                     f'{x.dtype} (divide uint8 images by 255)')
  return tuple(int(d) for d in x.shape)


def check_fraction(value: float, what: str, *, low: float = 0.0,
                   high: float = 1.0) -> float:
  """Returns float(value) if it is a real in [low, high], else raises
  ValueError (the project's one range rule, `errors.check_range`)."""
  errors.check_range(value, what, low=low, high=high)
  return float(value)


def check_choice(value: str, what: str, allowed: Sequence[str]) -> str:
  """Returns value if it is one of `allowed`, else raises ValueError."""
  if value not in allowed:
    raise ValueError(f'unknown {what} {value!r}; allowed: {list(allowed)}')
  return value


def as_pattern_array(value: Any, what: str) -> np.ndarray:
  """float32 array with values in [0, 1], or ValueError."""
  arr = np.asarray(value, dtype=np.float32)
  if arr.size == 0 or not np.all(np.isfinite(arr)):
    raise ValueError(f'{what} must be a non-empty finite array')
  if arr.min() < 0.0 or arr.max() > 1.0:
    raise ValueError(f'{what} values must lie in [0, 1] (got '
                     f'[{arr.min()}, {arr.max()}]); divide uint8 by 255')
  return arr


def seeded_rng(seed: int, stream: int = 0) -> np.random.RandomState:
  """A frozen-stream generator for (seed, stream); seed must be >= 0."""
  if int(seed) != seed or seed < 0:
    raise ValueError(f'seed must be a non-negative int, got {seed!r}')
  return np.random.RandomState([int(seed), int(stream)])


# ---------------------------------------------------------------- patches


def checkerboard(height: int, width: int) -> np.ndarray:
  """Black/white checkerboard [height, width, 1], white at (0, 0)."""
  rows, cols = np.indices((height, width))
  return ((rows + cols) % 2 == 0).astype(np.float32)[..., None]


def corner_oriented(pattern: np.ndarray, corner: str) -> np.ndarray:
  """Flips a pattern made for the top-left corner onto `corner`.

  Why: a checkerboard then has its white pixel at the image corner whatever
  its size or corner (NAD's 3x3 has white corners).
  """
  if corner.startswith('bottom'):
    pattern = pattern[::-1]
  if corner.endswith('right'):
    pattern = pattern[:, ::-1]
  return np.ascontiguousarray(pattern)


def resolve_position(position: str | tuple[int, int],
                     patch_hw: tuple[int, int], image_hw: tuple[int, int],
                     name: str) -> tuple[int, int]:
  """Top-left pixel of a patch placed at a corner or at (row, col).

  Args:
    position: a corner name from `CORNERS` or the patch's (row, col).
    patch_hw: (height, width) of the patch.
    image_hw: (H, W) of the image.
    name: attack name for error messages.

  Returns:
    (top, left) such that the patch lies inside the image.

  Raises:
    ValueError: when the patch does not fit in the image.
  """
  (ph, pw), (h, w) = patch_hw, image_hw
  if ph > h or pw > w:
    raise ValueError(f'{name}: image {h}x{w} is too small for a {ph}x{pw} '
                     'trigger patch; use a smaller size')
  if isinstance(position, str):
    top = 0 if position.startswith('top') else h - ph
    left = 0 if position.endswith('left') else w - pw
    return top, left
  top, left = position
  if top < 0 or left < 0 or top + ph > h or left + pw > w:
    raise ValueError(f'{name}: a {ph}x{pw} patch at (row, col) = '
                     f'({top}, {left}) does not fit in a {h}x{w} image')
  return top, left


def normalize_position(position: Any) -> str | tuple[int, int]:
  """Validates a corner name or (row, col) pair (lists from JSON too)."""
  if isinstance(position, str):
    return check_choice(position, 'position', CORNERS)
  pos = tuple(int(p) for p in position)
  if len(pos) != 2:
    raise ValueError(f'position must be a corner name {list(CORNERS)} or '
                     f'(row, col), got {position!r}')
  return pos


@functools.partial(jax.jit, static_argnames=('top', 'left', 'amplitude'))
def stamp(x: jax.Array, pattern: jax.Array | np.ndarray, top: int,
          left: int, *, amplitude: float = 1.0) -> jax.Array:
  """Pastes `pattern` [h, w, C or 1] into x [B, H, W, C] at (top, left).

  With amplitude a < 1 the patch pixels move only a fraction a of the way
  to the pattern (Turner et al.'s reduced-amplitude trigger).
  """
  x = jnp.asarray(x)
  h, w = pattern.shape[:2]
  region = x[:, top:top + h, left:left + w, :]
  pattern = jnp.asarray(pattern, x.dtype)
  new = pattern if amplitude == 1.0 else region + amplitude * (
      pattern - region)
  new = jnp.broadcast_to(jnp.clip(new, 0.0, 1.0), region.shape)
  return x.at[:, top:top + h, left:left + w, :].set(new)


def fit_image(img: jax.Array | np.ndarray, height: int, width: int,
              channels: int) -> jax.Array:
  """Resizes images [..., h, w, c] (bilinear) and matches the channels.

  One channel is repeated to `channels`; several channels become their
  mean when `channels` is 1. Used for given blend patterns and reflections.
  """
  img = jnp.asarray(img, jnp.float32)
  if img.ndim == 2:
    img = img[..., None]
  if img.shape[-3:-1] != (height, width):
    shape = img.shape[:-3] + (height, width, img.shape[-1])
    img = jax.image.resize(img, shape, method='linear')
  c = img.shape[-1]
  if c == channels:
    return jnp.clip(img, 0.0, 1.0)
  if c == 1:
    return jnp.clip(jnp.repeat(img, channels, axis=-1), 0.0, 1.0)
  if channels == 1:
    return jnp.clip(jnp.mean(img, axis=-1, keepdims=True), 0.0, 1.0)
  raise ValueError(f'cannot map a {c}-channel pattern onto {channels}-channel '
                   'images')


def to_float(x_uint8: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [0, 1]."""
  return np.asarray(x_uint8, np.float32) / np.float32(255.0)


def to_uint8(x: jax.Array | np.ndarray) -> np.ndarray:
  """float [0, 1] -> uint8 [0, 255], rounding to the nearest level."""
  x = np.asarray(x, np.float32)
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
