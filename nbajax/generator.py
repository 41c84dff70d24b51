"""NBA pseudo-sample generator: PGD that exposes the student's backdoor.

Pseudo samples `x~ = clip(x + delta, 0, 1)` are crafted by K sign-gradient
ascent steps (projected gradient descent, Madry et al. 2018, arXiv
1706.06083) on `delta` in the L-inf ball of radius `eps`, *maximizing* the
distance between the student's behavior on `x~` and the teacher's benign
behavior: the inputs where the student still behaves like the backdoored
model ([NBA], Ying & Wu 2023, arXiv 2406.10846; the formulation is ours,
see docs/design.md §7).

The functions are pure and jit-able; the module imports only JAX, so the
generator can be called from any JAX training step. Models enter as
closures `fn(x) -> (logits, features)` that the caller builds in eval mode
(batch-norm statistics neither used from the batch nor updated).
"""

from collections.abc import Callable, Mapping
import operator
from typing import Any

import jax
import jax.numpy as jnp

ArrayLike = jax.typing.ArrayLike
ModelFn = Callable[[jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
DistanceFn = Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array]],
                      jax.Array]

MODES = ('universal', 'per_sample')
TARGETS = ('clean', 'pseudo')


def project_linf(delta: ArrayLike, eps: ArrayLike) -> jax.Array:
  """Projects `delta` onto the L-inf ball of radius `eps` (element clip).

  Args:
    delta: perturbation of any shape.
    eps: radius, scalar `>= 0`.

  Returns:
    `delta` clipped to `[-eps, eps]`, same shape.
  """
  return jnp.clip(delta, -eps, eps)


def check_settings(eps: Any, steps: Any, mode: str, target: str) -> int:
  """Checks the generator's static arguments; returns `steps` as an int.

  Raises:
    ValueError: naming the argument (`eps`, `steps`, `mode`, `target`).
  """
  try:
    eps_value = float(eps)
  except TypeError:  # Traced (ConcretizationTypeError): cannot check here.
    eps_value = None
  if eps_value is not None and not eps_value >= 0:
    raise ValueError(f'eps must be >= 0, got {eps!r}.')
  if isinstance(steps, bool):
    raise ValueError(f'steps must be a non-negative int, got {steps!r}.')
  try:
    steps = operator.index(steps)
  except TypeError:
    raise ValueError(
        f'steps must be a static non-negative int, got {steps!r}.') from None
  if steps < 0:
    raise ValueError(f'steps must be a non-negative int, got {steps}.')
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}.')
  if target not in TARGETS:
    raise ValueError(f'target must be one of {TARGETS}, got {target!r}.')
  return steps


def _initial_delta(x: jax.Array, key: jax.Array, eps: Any, mode: str,
                   random_start: bool) -> jax.Array:
  """`[1,H,W,C]` (universal) or `[B,H,W,C]` start, uniform in the ball."""
  shape = (1,) + x.shape[1:] if mode == 'universal' else x.shape
  if not random_start:
    return jnp.zeros(shape, x.dtype)
  return jax.random.uniform(key, shape, x.dtype, minval=-eps, maxval=eps)


def _apply(x: jax.Array, delta: jax.Array) -> jax.Array:
  return jnp.clip(x + delta, 0.0, 1.0)


def craft_pseudo_samples(
    student_fn: ModelFn,
    teacher_fn: ModelFn,
    x: ArrayLike,
    key: jax.Array,
    *,
    eps: float,
    steps: int,
    distance_fn: DistanceFn,
    alpha: float | None = None,
    mode: str = 'universal',
    target: str = 'clean',
    random_start: bool = True,
    unroll: bool = True,
    axis_name: str | None = None,
) -> jax.Array:
  """Crafts NBA pseudo samples by PGD ascent on a behavior distance.

  Starting from `delta` uniform in `[-eps, eps]` (or 0), takes `steps`
  steps `delta <- project_linf(delta + alpha * sign(grad), eps)` of

      distance_fn(S(clip(x + delta, 0, 1)).features, T(target_input).features)

  with `target_input = x` (`target='clean'`: teacher features computed
  once, before the loop) or `x + delta` (`'pseudo'`). Gradients flow only
  where `distance_fn` lets them: the `nbajax.losses` distances stop the
  teacher's, so the ascent moves the student's behavior. In `'per_sample'`
  mode `delta` is also cut so that `x + delta` stays in `[0, 1]`; a
  `'universal'` delta is shared by the batch, so only the sample is clipped.

  Jit-able with `eps` (may also be traced), `steps`, `mode`, `target`,
  `random_start`, `unroll` and `axis_name` static (bind them with
  `functools.partial`).

  Args:
    student_fn: `x[B,H,W,C] -> (logits[B,K], features)`, eval mode.
    teacher_fn: the same for the frozen teacher.
    x: `[B, H, W, C]` float images in `[0, 1]`.
    key: PRNG key for the random start.
    eps: L-inf radius, `>= 0`.
    steps: number of PGD steps K, a static int `>= 0`; 0 returns the start.
    distance_fn: `(student_features, teacher_features) -> scalar`, e.g.
      `functools.partial(losses.behavior_loss, betas=..., weights=...)`.
    alpha: step size; default `eps / 2`.
    mode: `'universal'` (one `delta[1,H,W,C]` for the batch, trigger-like)
      or `'per_sample'` (`delta[B,H,W,C]`).
    target: teacher input, `'clean'` (x) or `'pseudo'` (x + delta).
    random_start: start uniform in the ball (else at 0).
    unroll: run the K steps as an unrolled Python loop (fast on XLA:CPU,
      where a conv inside a while loop is ~17x slower, docs/design.md §8); False
      uses `lax.fori_loop` (smaller program, for GPU/TPU).
    axis_name: under `shard_map`/`vmap` with this batch axis, a universal
      delta's gradient is summed over it, so every shard shares one delta
      (pass every shard the same key). Unused in per-sample mode.

  Returns:
    `x~ = clip(x + delta, 0, 1)`, `[B, H, W, C]`, under `stop_gradient`.

  Raises:
    ValueError: for `eps < 0`, `steps` not a non-negative int, or an unknown
      `mode` / `target` (the message names the field).
  """
  steps = check_settings(eps, steps, mode, target)
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f'x must be [B, H, W, C], got shape {x.shape}.')
  x = jax.lax.stop_gradient(x)
  alpha = eps / 2 if alpha is None else alpha
  clean_target = None
  if target == 'clean':
    clean_target = jax.lax.stop_gradient(teacher_fn(x)[1])

  def objective(delta):
    x_adv = _apply(x, delta)
    teacher_features = (teacher_fn(x_adv)[1] if clean_target is None
                        else clean_target)
    return distance_fn(student_fn(x_adv)[1], teacher_features)

  def step(_, delta):
    grad = jax.grad(objective)(delta)
    if axis_name is not None and mode == 'universal':
      grad = jax.lax.psum(grad, axis_name)
    delta = project_linf(delta + alpha * jnp.sign(grad), eps)
    if mode == 'per_sample':
      delta = _apply(x, delta) - x
    return delta

  delta = _initial_delta(x, key, eps, mode, random_start)
  if unroll:
    for i in range(steps):
      delta = step(i, delta)
  else:
    delta = jax.lax.fori_loop(0, steps, step, delta)
  return jax.lax.stop_gradient(_apply(x, delta))

