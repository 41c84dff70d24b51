"""On-device training augmentation: random crop, horizontal flip, cutout.

The NAD recipe (random crop after 4-pixel zero padding, horizontal flip with
p = 0.5, a small cutout) written as one pure, jit-able JAX function so that
the whole data set can stay on the device and no host pipeline is needed.
Every image gets its own random draw; the same key gives the same batch.
"""

from __future__ import annotations

import jax
from jax import lax
import jax.numpy as jnp


def _to_float(x: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]; floats are only cast to float32."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def random_crop(x: jax.Array, key: jax.Array, *, padding: int) -> jax.Array:
  """Zero-pads every side by `padding`, then crops back at a random offset.

  Args:
    x: float32[B, H, W, C].
    key: PRNG key.
    padding: pixels of zero padding per side (0 returns x).

  Returns:
    float32[B, H, W, C]; each image shifted by its own offset in
    [-padding, padding]^2, with zeros shifted in.
  """
  if padding == 0:
    return x
  b, h, w, c = x.shape
  padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding),
                       (0, 0)))
  offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

  def crop_one(image, offset):
    return lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return jax.vmap(crop_one)(padded, offsets)


def random_flip(x: jax.Array, key: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2.

  Args:
    x: float32[B, H, W, C].
    key: PRNG key.

  Returns:
    float32[B, H, W, C].
  """
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1, :], x)


def random_cutout(x: jax.Array, key: jax.Array, *, size: int) -> jax.Array:
  """Sets a `size` x `size` square to 0 at a random centre per image.

  The centre is uniform over all pixels and the square is clipped at the
  border (as in DeVries & Taylor's cutout, used by the NAD code), so squares
  near the edge are partly outside the image. 0 is black in [0, 1] units.

  Args:
    x: float32[B, H, W, C].
    key: PRNG key.
    size: side of the square in pixels (0 returns x).

  Returns:
    float32[B, H, W, C].
  """
  if size == 0:
    return x
  b, h, w, _ = x.shape
  key_y, key_x = jax.random.split(key)
  top = jax.random.randint(key_y, (b, 1, 1), 0, h) - size // 2
  left = jax.random.randint(key_x, (b, 1, 1), 0, w) - size // 2
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  inside = ((rows >= top) & (rows < top + size)
            & (cols >= left) & (cols < left + size))
  return jnp.where(inside[..., None], 0.0, x)


def augment(x: jax.Array, key: jax.Array, *, crop_padding: int = 4,
            flip: bool = True, cutout: int = 0) -> jax.Array:
  """Random crop, then horizontal flip, then cutout, each image on its own.

  Hyper-parameters are Python values: under `jax.jit` mark them static,
  e.g. `jax.jit(augment, static_argnames=('crop_padding', 'flip', 'cutout'))`.
  The key is split into three fixed sub-keys, so switching one transform on
  or off does not change the draws of the others. Pass flip=False for data
  whose mirror image changes the class (digits, traffic signs).

  Args:
    x: uint8[B, H, W, C] in [0, 255] or float[B, H, W, C] in [0, 1].
    key: PRNG key; the same key gives the same output.
    crop_padding: zero padding per side before the random crop (0 = off).
    flip: whether to mirror left-right with probability 1/2.
    cutout: side of the zeroed square in pixels (0 = off).

  Returns:
    float32[B, H, W, C] in [0, 1].

  Raises:
    ValueError: if x is not 4-D or a size is negative.
  """
  if x.ndim != 4:
    raise ValueError(f'x must be [B, H, W, C], got shape {x.shape}')
  if crop_padding < 0 or cutout < 0:
    raise ValueError(f'crop_padding and cutout must be >= 0, got '
                     f'{crop_padding} and {cutout}')
  key_crop, key_flip, key_cut = jax.random.split(key, 3)
  x = random_crop(_to_float(jnp.asarray(x)), key_crop, padding=crop_padding)
  if flip:
    x = random_flip(x, key_flip)
  return random_cutout(x, key_cut, size=cutout)
