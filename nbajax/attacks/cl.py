"""CL: label-consistent backdoor (Turner, Tsipras & Madry, 2019).

Clean-label: only target-class training images are poisoned and keep their
labels. So that the network must rely on the trigger, each poisoned image
is first made hard to classify with an L-inf PGD perturbation against a
clean model (maximizing the cross-entropy of its true label; eps = 8/255,
10 steps of eps/4, no random start, so poisoning is deterministic), then
stamped with the trigger: a checkerboard patch in each of the four corners
(white pixel at every image corner), 3x3 on images of 16 pixels or more,
min(H, W) // 4 on smaller ones (2x2 on 8x8 digits). `amplitude` < 1 gives
Turner et al.'s reduced-visibility trigger. The test-time trigger is the
four patches alone (no PGD).
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nbajax import losses
from nbajax.attacks import base


def default_size(height: int, width: int) -> int:
  """Corner patch side used when none is given."""
  side = min(height, width)
  return 3 if side >= 16 else max(1, side // 4)


def project_linf(x_adv: jax.Array, x: jax.Array, eps: float) -> jax.Array:
  """Projects x_adv onto the L-inf ball of radius eps around x, in [0, 1]."""
  return jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0.0, 1.0)


def pgd_hard_examples(clean_fn: base.CleanFn, x: np.ndarray, y: np.ndarray,
                      *, eps: float, steps: int,
                      step_size: float | None = None,
                      batch_size: int = 128) -> np.ndarray:
  """Untargeted L-inf PGD that raises the clean model's loss on (x, y).

  Args:
    clean_fn: x_float[B,H,W,C] -> (logits[B,K], features), jit-able.
    x: float images [N, H, W, C] in [0, 1].
    y: true labels int [N].
    eps: L-inf radius in [0, 1] pixel units.
    steps: sign-gradient steps (no random start).
    step_size: step length (None: eps / 4).
    batch_size: images per jitted call; the last batch is padded so that
      one compilation serves every batch.

  Returns:
    Perturbed float32 images [N, H, W, C], |x_adv - x| <= eps, in [0, 1].
  """
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int32)
  if eps == 0 or steps == 0 or len(x) == 0:
    return x
  alpha = eps / 4 if step_size is None else float(step_size)
  # The sum over the batch keeps each sample's gradient independent of B.
  grad_fn = jax.grad(lambda xa, yb: jnp.sum(
      losses.cross_entropy_per_example(clean_fn(xa)[0], yb)))

  @jax.jit
  def step(x_adv, x0, yb):
    # One jitted step per call: lax loops around convolutions are slow on
    # CPU (docs/design.md §8).
    x_adv = x_adv + alpha * jnp.sign(grad_fn(x_adv, yb))
    return project_linf(x_adv, x0, eps)

  n, bs = len(x), min(batch_size, len(x))
  out = []
  for start in range(0, n, bs):
    xb, yb = x[start:start + bs], y[start:start + bs]
    pad = bs - len(xb)
    xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
    yb = np.concatenate([yb, np.zeros((pad,), yb.dtype)])
    x_adv = jnp.asarray(xb)
    for _ in range(int(steps)):
      x_adv = step(x_adv, xb, yb)
    out.append(np.asarray(x_adv)[:bs - pad])
  return np.concatenate(out)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelConsistent(base.Attack):
  """Clean-label attack: PGD-hardened target images + four corner patches.

  Attributes:
    eps: PGD L-inf radius in [0, 1] units (0 disables PGD).
    steps: PGD steps.
    step_size: PGD step (None: eps / 4).
    size: corner patch side (None: see `default_size`).
    amplitude: patch strength in [0, 1] (1: stamp the checkerboard).
    batch_size: PGD batch size.
  """

  name: ClassVar[str] = 'cl'
  clean_label: ClassVar[bool] = True

  eps: float = 8 / 255
  steps: int = 10
  step_size: float | None = None
  size: int | None = None
  amplitude: float = 1.0
  batch_size: int = 128

  def __post_init__(self):
    object.__setattr__(self, 'eps', base.check_fraction(self.eps, 'cl eps'))
    object.__setattr__(self, 'amplitude',
                       base.check_fraction(self.amplitude, 'cl amplitude'))
    if int(self.steps) < 0 or int(self.batch_size) < 1:
      raise ValueError('cl: need steps >= 0 and batch_size >= 1')
    if self.size is not None and int(self.size) < 1:
      raise ValueError(f'cl: size must be >= 1, got {self.size}')

  def apply(self, x: jax.Array) -> jax.Array:
    """Stamps the four corner patches; see `Attack.apply`."""
    _, h, w, _ = base.check_images(x, self.name)
    size = default_size(h, w) if self.size is None else int(self.size)
    if 2 * size > min(h, w):
      raise ValueError(f'cl: image {h}x{w} is too small for four {size}x{size}'
                       f' corner patches (needs at least {2 * size}x'
                       f'{2 * size}); use a smaller size')
    board = base.checkerboard(size, size)
    for corner in base.CORNERS:
      top, left = base.resolve_position(corner, (size, size), (h, w),
                                        self.name)
      x = base.stamp(x, base.corner_oriented(board, corner), top, left,
                     amplitude=self.amplitude)
    return x

  def poison(self, x, y, *, seed, clean_fn=None):
    """PGD against `clean_fn` (needed when eps > 0), then the trigger."""
    del seed
    if self.eps > 0 and self.steps > 0 and clean_fn is None:
      raise ValueError('cl needs clean_fn (a clean model) for its PGD step; '
                       'pass clean_fn=... or set eps=0')
    x_hard = pgd_hard_examples(clean_fn, np.asarray(x), np.asarray(y),
                               eps=self.eps, steps=self.steps,
                               step_size=self.step_size,
                               batch_size=self.batch_size)
    return self.apply(jnp.asarray(x_hard))
