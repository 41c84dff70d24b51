"""WaNet: an imperceptible warping trigger (Nguyen & Tran, ICLR 2021).

The trigger is a fixed smooth warp of the image:

1. noise: a k x k x 2 grid drawn uniform in [-1, 1] (seeded, frozen
   NumPy stream), divided by its mean absolute value;
2. upsampled to H x W (bicubic, a = -0.75, corner-aligned: output pixel i
   samples the control grid at i (k-1)/(H-1); the same as PyTorch's
   `interpolate(..., mode='bicubic', align_corners=True)` in the WaNet
   code, done in NumPy float64 because the grid is a constant);
3. grid = clip((identity + s * noise / H) * grid_rescale, -1, 1), in
   normalized coordinates (x = column, y = row, -1 and 1 the outer pixel
   centres);
4. x' = bilinear sample of x at grid (our `grid_sample`, align_corners=True).

Noise mode: when a data set is poisoned, `cross_ratio` x (number poisoned)
other samples get the warp plus an extra per-pixel uniform [-1, 1] / H
perturbation and KEEP their labels, so the network learns that only the
exact warp means "target". The paper re-draws poisoned and cross samples in
every batch; we poison a fixed set once (deterministic, like the other
attacks). With s = 0 (and grid_rescale = 1) the warp is exactly the
identity: pixel coordinates are computed in float64 so that they land on
whole pixels.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.attacks import base


def grid_noise(k: int, seed: int) -> np.ndarray:
  """Seeded control-grid noise [k, k, 2] with mean |noise| = 1, float32."""
  ins = base.seeded_rng(seed).uniform(-1.0, 1.0, size=(k, k, 2))
  return (ins / np.mean(np.abs(ins))).astype(np.float32)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys cubic weights [..., 4] of the taps at offsets -1, 0, 1, 2."""
  def near(d):  # |d| <= 1
    return ((a + 2) * d - (a + 3)) * d * d + 1
  def far(d):  # 1 < |d| < 2
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] corner-aligned bicubic interpolation matrix."""
  pos = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
  i0 = np.floor(pos).astype(np.int64)
  weights = _cubic_weights(pos - i0)
  mat = np.zeros((n_out, n_in))
  for tap in range(4):
    # Border taps are clamped onto the edge samples, as PyTorch does.
    np.add.at(mat, (np.arange(n_out), np.clip(i0 - 1 + tap, 0, n_in - 1)),
              weights[:, tap])
  return mat


def upsample_corners(grid: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bicubic upsampling [k, k, D] -> [H, W, D], float64, corners aligned.

  Same kernel (a = -0.75), corner alignment and border clamping as
  PyTorch's `interpolate(mode='bicubic', align_corners=True)` used by the
  WaNet code; computed on the host since the grid is a constant.
  """
  rows = _cubic_matrix(grid.shape[0], height)
  cols = _cubic_matrix(grid.shape[1], width)
  return np.einsum('hk,kld,wl->hwd', rows, np.asarray(grid, np.float64), cols)


def identity_grid(height: int, width: int) -> np.ndarray:
  """Normalized identity grid [H, W, 2] (x = column, y = row), float64."""
  cols = np.broadcast_to(np.linspace(-1.0, 1.0, width)[None, :],
                         (height, width))
  rows = np.broadcast_to(np.linspace(-1.0, 1.0, height)[:, None],
                         (height, width))
  return np.stack([cols, rows], axis=-1)


@jax.jit
def sample_pixels(x: jax.Array, coords: jax.Array) -> jax.Array:
  """Bilinear sampling at pixel coordinates.

  Args:
    x: images [B, H, W, C].
    coords: (row, col) positions [G, H', W', 2] in pixel units, G = 1
      (shared) or B; positions outside the image are clamped to its border.

  Returns:
    Sampled images [B, H', W', C].
  """
  h, w = x.shape[1:3]

  def one(img, rc):
    r = jnp.clip(rc[..., 0], 0.0, h - 1.0)
    c = jnp.clip(rc[..., 1], 0.0, w - 1.0)
    r0, c0 = jnp.floor(r), jnp.floor(c)
    wr, wc = (r - r0)[..., None], (c - c0)[..., None]
    r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)
    r1, c1 = jnp.minimum(r0 + 1, h - 1), jnp.minimum(c0 + 1, w - 1)
    # Written so that zero weights give the pixel itself, bit-exactly.
    top = img[r0, c0] * (1.0 - wc) + img[r0, c1] * wc
    bottom = img[r1, c0] * (1.0 - wc) + img[r1, c1] * wc
    return top * (1.0 - wr) + bottom * wr

  coords = jnp.asarray(coords, x.dtype)
  if coords.shape[0] == 1:
    return jax.vmap(one, in_axes=(0, None))(x, coords[0])
  return jax.vmap(one)(x, coords)


def grid_sample(x: jax.Array, grid: jax.Array) -> jax.Array:
  """Bilinear `grid_sample` with align_corners=True semantics.

  Args:
    x: images [B, H, W, C].
    grid: normalized sampling positions [G, H', W', 2], G = 1 or B;
      grid[..., 0] = x (column), grid[..., 1] = y (row), -1 and 1 are the
      centres of the outer pixels; outside positions are clamped (border
      padding, unlike PyTorch's default zeros).

  Returns:
    Sampled images [B, H', W', C].
  """
  h, w = x.shape[1:3]
  grid = jnp.asarray(grid, x.dtype)
  rows = (grid[..., 1] + 1.0) * 0.5 * (h - 1)
  cols = (grid[..., 0] + 1.0) * 0.5 * (w - 1)
  return sample_pixels(x, jnp.stack([rows, cols], axis=-1))


def _to_pixels(grid: np.ndarray) -> np.ndarray:
  """Normalized (x, y) grid [..., H, W, 2] -> float32 (row, col) pixels."""
  h, w = grid.shape[-3:-1]
  rows = (grid[..., 1] + 1.0) * 0.5 * (h - 1)
  cols = (grid[..., 0] + 1.0) * 0.5 * (w - 1)
  return np.stack([rows, cols], axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class WaNet(base.Attack):
  """Dirty-label warping attack (see the module docstring).

  Attributes:
    k: control grid side.
    s: warp strength (0: identity).
    grid_rescale: grid scale factor (1 in the paper).
    cross_ratio: cross (noise-mode) samples per poisoned sample.
    seed: noise seed (used when `noise` is None).
    noise: the normalized control noise [k, k, 2]; drawn from `seed` when
      None and always stored in `to_config`.
  """

  name: ClassVar[str] = 'wanet'
  array_fields: ClassVar[tuple[str, ...]] = ('noise',)

  k: int = 4
  s: float = 0.5
  grid_rescale: float = 1.0
  cross_ratio: float = 2.0
  seed: int = 0
  noise: Any = None

  def __post_init__(self):
    if int(self.k) < 2 or self.s < 0 or self.grid_rescale <= 0:
      raise ValueError('wanet: need k >= 2, s >= 0 and grid_rescale > 0')
    if self.cross_ratio < 0:
      raise ValueError(f'wanet: cross_ratio must be >= 0, got '
                       f'{self.cross_ratio}')
    if self.noise is None:
      object.__setattr__(self, 'noise', grid_noise(int(self.k), self.seed))
      return
    noise = np.asarray(self.noise, np.float32)
    if noise.shape != (self.k, self.k, 2) or not np.all(np.isfinite(noise)):
      raise ValueError(f'wanet noise must be finite [k, k, 2] = '
                       f'[{self.k}, {self.k}, 2], got {noise.shape}')
    object.__setattr__(self, 'noise', noise)

  def grid(self, height: int, width: int) -> np.ndarray:
    """The warping grid [H, W, 2] in normalized (x, y) coordinates."""
    if min(height, width) < self.k:
      raise ValueError(f'wanet: image {height}x{width} is smaller than the '
                       f'{self.k}x{self.k} control grid; use a smaller k')
    up = upsample_corners(self.noise, height, width)
    grid = identity_grid(height, width) + self.s * up / height
    return np.clip(grid * self.grid_rescale, -1.0, 1.0)

  def apply(self, x: jax.Array) -> jax.Array:
    """Warps every image with the fixed grid; see `Attack.apply`."""
    _, h, w, _ = base.check_images(x, self.name)
    coords = _to_pixels(self.grid(h, w)[None])
    return jnp.clip(sample_pixels(x, coords), 0.0, 1.0)

  def num_cross(self, num_poisoned: int) -> int:
    """round(cross_ratio * num_poisoned) noise-mode samples."""
    return int(round(self.cross_ratio * num_poisoned))

  def cross(self, x: jax.Array, *, seed: int) -> jax.Array:
    """The warp plus seeded per-pixel noise / H (labels are kept).

    Args:
      x: float images [B, H, W, C] in [0, 1].
      seed: poisoning seed.

    Returns:
      Warped float images [B, H, W, C] in [0, 1].
    """
    b, h, w, _ = base.check_images(x, self.name)
    extra = base.seeded_rng(seed, 6).uniform(-1.0, 1.0, size=(b, h, w, 2))
    grid = np.clip(self.grid(h, w)[None] + extra / h, -1.0, 1.0)
    return jnp.clip(sample_pixels(x, _to_pixels(grid)), 0.0, 1.0)
