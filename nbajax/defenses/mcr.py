"""MCR: mode connectivity repair (Zhao et al., ICLR 2020).

End points: w0, the backdoored model, and w1, the backdoored model
fine-tuned on the clean subset (the teacher NAD and NBA use, made once per
backdoored model). A quadratic Bezier curve between them,

    phi_theta(t) = (1 - t)^2 w0 + 2 t (1 - t) theta + t^2 w1,

is trained on the clean subset: the middle point theta (from (w0 + w1) / 2)
minimizes E_{t ~ U(0, 1)} CE(f_{phi_theta(t)}(x), y), batch norm in train
mode. The defended model is the curve at `mcr.t` (the paper's range
0.2-0.4; default 0.3) with its batch-norm statistics re-estimated on the
clean subset (running statistics learnt along the curve describe no single
point); with `mcr.bn_augment`, under the defense's augmentation (the
subset is made of images the model was trained on, whose plain
statistics need not be those of unseen images; docs/design.md §10 has
what that changes and why it is not the default). ACC/ASR along t
(`mcr.sweep`) are recorded for the report's plot; nothing is chosen from
them.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbajax import losses, training
from nbajax.defenses.base import DefenseInputs, Plan, check_number
from nbajax.errors import check_range
from nbajax.models.common import BN_MOMENTUM
from nbajax.training import from_config

# fold_in tag of the augmentation draws of the batch-norm re-estimation, apart
# from the training's draws of the same run key.
_BN_KEY = 0x6d6372


def bezier(w0: Any, theta: Any, w1: Any, t: jax.typing.ArrayLike) -> Any:
  """The quadratic Bezier point `(1-t)^2 w0 + 2t(1-t) theta + t^2 w1`
  (pytrees of one structure; t a scalar)."""
  a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
  return jax.tree_util.tree_map(lambda p, q, r: a * p + b * q + c * r,
                                w0, theta, w1)


def reestimate_batch_stats(model, params: Any, batch_stats: Any,
                           x: np.ndarray, *, batch_size: int = 256,
                           augment_fn: Callable | None = None,
                           key: jax.Array | None = None) -> Any:
  """Batch-norm statistics of `params` on x: the mean over batches of each
  batch's statistics, weighted by its size.

  A train-mode pass from zero running statistics leaves
  (1 - momentum) * batch statistic, so one pass per batch reads them
  exactly.

  Args:
    model: the linen module.
    params: its 'params'.
    batch_stats: a 'batch_stats' tree (its structure only).
    x: uint8 [n, H, W, C] images.
    batch_size: images per pass.
    augment_fn: `(x, key) -> float x` applied to each batch before its pass
      (`from_config.augment_fn`), or None for the images as they are.
    key: PRNG key of the augmentation (batch i draws from
      `fold_in(key, i)`, so the same key gives the same statistics);
      required with augment_fn.

  Returns:
    The new 'batch_stats' tree (empty when the model has none).

  Raises:
    ValueError: augment_fn without a key.
  """
  if augment_fn is not None and key is None:
    raise ValueError('reestimate_batch_stats: augment_fn needs a key')
  if not jax.tree_util.tree_leaves(batch_stats):
    return batch_stats
  zeros = jax.tree_util.tree_map(jnp.zeros_like, batch_stats)
  total = zeros
  for i, start in enumerate(range(0, len(x), batch_size)):
    chunk = x[start:start + batch_size]
    if augment_fn is not None:
      chunk = augment_fn(jnp.asarray(chunk), jax.random.fold_in(key, i))
    total = jax.tree_util.tree_map(lambda a, s: a + len(chunk) * s, total,
                                   _batch_statistics(model, params, zeros,
                                                     chunk))
  return jax.tree_util.tree_map(lambda a: a / len(x), total)


@functools.partial(jax.jit, static_argnums=0)
def _batch_statistics(model, params, zeros, x):
  """One batch's own batch-norm statistics (compiled once per model)."""
  _, updates = model.apply({'params': params, 'batch_stats': zeros},
                           training.to_float(x), train=True,
                           mutable=['batch_stats'])
  return jax.tree_util.tree_map(lambda u: u / (1 - BN_MOMENTUM),
                                updates['batch_stats'])


def check(cfg: ml_collections.ConfigDict) -> None:
  """The `mcr` fields.

  Raises:
    ValueError: t or a sweep value outside [0, 1].
  """
  check_number(cfg.mcr, 'mcr', 't', low=0.0, high=1.0)
  for i, t in enumerate(cfg.mcr.sweep):
    check_range(t, f'mcr.sweep[{i}]', low=0.0, high=1.0)


def make_curve_loss(model):
  """CE at a uniform random point of the curve, `aux = {'w0', 'w1'}`."""

  def loss_fn(params, batch_stats, x, y, key, aux):
    t = jax.random.uniform(key)
    point = bezier(aux['w0'], params, aux['w1'], t)
    (logits, _), updates = model.apply(
        {'params': point, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])
    loss = losses.cross_entropy(logits, y)
    return loss, (updates['batch_stats'],
                  training.classification_sums(logits, y, loss))

  return loss_fn


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """MCR with `cfg.mcr.t`, `cfg.mcr.sweep` and `cfg.mcr.bn_augment` (see
  module docstring; the augmentation is the defense section's crop_padding,
  flip and cutout).

  Raises:
    ValueError: without a teacher (the fine-tuned end point), or t
      outside [0, 1].
  """
  if inputs.teacher is None:
    raise ValueError('mcr needs the fine-tuned end point (the teacher)')
  check(cfg)
  w0 = jax.device_get(inputs.variables['params'])
  w1 = jax.device_get(inputs.teacher['params'])
  start = {'params': jax.tree_util.tree_map(lambda a, b: (a + b) / 2, w0, w1),
           'batch_stats': inputs.variables['batch_stats']}
  x = inputs.x_clean
  augment = from_config.augment_fn(cfg) if cfg.mcr.bn_augment else None
  if augment is not None:
    augment = jax.jit(augment)
  bn_key = jax.random.fold_in(inputs.key, _BN_KEY)

  def point(trained: dict[str, Any], t: float) -> dict[str, Any]:
    params = bezier(w0, trained['params'], w1, t)
    return {'params': params, 'batch_stats': reestimate_batch_stats(
        inputs.model, params, trained['batch_stats'], x, augment_fn=augment,
        key=bn_key)}

  def sweep(trained, evaluate):
    return [{'value': float(t), **evaluate(point(trained, float(t)))}
            for t in cfg.mcr.sweep]

  t_chosen = float(cfg.mcr.t)
  return Plan(loss_fn=make_curve_loss(inputs.model), start=start,
              aux={'w0': w0, 'w1': w1},
              view=lambda trained: point(trained, t_chosen), sweep=sweep,
              sweep_name='t')
