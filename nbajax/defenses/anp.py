"""ANP: adversarial neuron pruning (Wu & Wang, NeurIPS 2021).

A neuron is a channel of a batch-norm layer, whose output is
scale * x_hat + bias. ANP learns a mask m in [0, 1] per neuron, under
adversarial multiplicative perturbations of the neurons:

    scale * (m + delta),  bias * (1 + xi),  |delta|, |xi| <= eps,

by minimizing  alpha * CE(m, 0) + (1 - alpha) * CE(m, delta*, xi*)  on the
clean subset, where (delta*, xi*) come from `steps` signed-gradient ascent
steps of size eps / steps from a uniform random start (batch norm in train
mode, its statistics updates discarded; mask optimizer SGD, momentum 0.9,
clipped to [0, 1]). Then the neurons whose mask is below `threshold` are
pruned: their scale is set to zero (the others keep their weights).
Defaults are the paper's: eps 0.4, one step, alpha 0.2, mask lr 0.2,
2,000 iterations of batch 128, threshold 0.2.

The model's own batch-norm parameters carry the mask (no model change):
the neurons are the modules holding batch-norm statistics. ACC/ASR against
the threshold (`anp.sweep`) are recorded for the report's plot, never used
to choose. The mask search runs in `plan` (it trains masks, not the model),
so it is not checkpointed; nothing is fine-tuned after pruning.
"""

import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from nbajax import losses, training
from nbajax.defenses.base import (DefenseInputs, Plan, check_integer,
                                  check_number)
from nbajax.errors import check_range

PRUNE_BY = ('threshold', 'number')
LOG_EVERY = 200  # Mask iterations between progress lines.

_LOG = logging.getLogger(__name__)


def neurons(batch_stats: Any) -> dict[tuple[str, ...], int]:
  """`{module path: channels}` of every batch-norm module."""
  flat = traverse_util.flatten_dict(batch_stats)
  return {path[:-1]: int(value.shape[-1]) for path, value in flat.items()
          if path[-1] == 'mean'}


def masked_params(params: Any, masks: dict[Any, jax.Array],
                  noise: dict[Any, tuple[jax.Array, jax.Array]] | None = None
                  ) -> Any:
  """params with every masked module's scale * (m + delta) and
  bias * (1 + xi) (no `noise`: scale * m).

  Args:
    params: the model's 'params'.
    masks: `{module path: float [C]}`.
    noise: `{module path: (delta [C], xi [C])}` or None.
  """
  flat = dict(traverse_util.flatten_dict(params))
  for path, m in masks.items():
    delta, xi = noise[path] if noise is not None else (0.0, 0.0)
    flat[path + ('scale',)] = flat[path + ('scale',)] * (m + delta)
    flat[path + ('bias',)] = flat[path + ('bias',)] * (1.0 + xi)
  return traverse_util.unflatten_dict(flat)


def prune(params: Any, masks: dict[Any, Any], *, by: str = 'threshold',
          threshold: float = 0.2, number: int = 0) -> tuple[Any, int]:
  """params with the pruned neurons' scale set to zero.

  Args:
    params: the model's 'params'.
    masks: learnt masks `{module path: [C]}`.
    by: 'threshold' (masks below it) or 'number' (the `number` smallest
      masks over all layers, ties broken by layer order then channel).
    threshold, number: the amount.

  Returns:
    (pruned params, neurons pruned).
  """
  paths = list(masks)
  values = np.concatenate([np.asarray(masks[p]) for p in paths])
  if by == 'threshold':
    cut = values < threshold
  elif by == 'number':
    cut = np.zeros(values.size, bool)
    cut[np.argsort(values, kind='stable')[:number]] = True
  else:
    raise ValueError(f'anp.prune_by must be one of {PRUNE_BY}, got {by!r}')
  keep, start = {}, 0
  for p in paths:
    size = np.asarray(masks[p]).size
    keep[p] = jnp.asarray(~cut[start:start + size], jnp.float32)
    start += size
  return masked_params(params, keep), int(cut.sum())


def check(cfg: ml_collections.ConfigDict) -> None:
  """The `anp` fields.

  Raises:
    ValueError: naming the field out of range.
  """
  c = cfg.anp
  for name in ('eps', 'alpha', 'threshold'):
    check_number(c, 'anp', name, low=0.0, high=1.0)
  for name in ('steps', 'iterations', 'batch_size'):
    check_integer(c, 'anp', name, low=1)
  check_number(c, 'anp', 'mask_lr', low=0.0, low_open=True)
  if c.prune_by not in PRUNE_BY:
    raise ValueError(f'anp.prune_by must be one of {PRUNE_BY}, got '
                     f'{c.prune_by!r}')
  check_integer(c, 'anp', 'number', low=0)
  for i, t in enumerate(c.sweep):
    check_range(t, f'anp.sweep[{i}]', low=0.0, high=1.0)


def make_mask_step(model, cfg: ml_collections.ConfigDict, batch_stats: Any):
  """One ANP mask update `(params, masks, opt_state, x, y, key) ->
  (masks, opt_state, {'loss', 'natural', 'robust'})`, jitted."""
  eps, steps = float(cfg.eps), int(cfg.steps)
  alpha = float(cfg.alpha)
  tx = optax.sgd(float(cfg.mask_lr), momentum=0.9)

  def ce(params, masks, noise, x, y):
    logits, _ = model.apply(
        {'params': masked_params(params, masks, noise),
         'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])[0]
    return losses.cross_entropy(logits, y)

  @jax.jit
  def step(params, masks, opt_state, x, y, key):
    x = training.to_float(x)
    keys = jax.random.split(key, 2 * len(masks)).reshape(len(masks), 2)
    noise = {p: (jax.random.uniform(k[0], m.shape, minval=-eps, maxval=eps),
                 jax.random.uniform(k[1], m.shape, minval=-eps, maxval=eps))
             for (p, m), k in zip(masks.items(), keys)}
    for _ in range(steps):  # Signed ascent on the perturbation.
      grad = jax.grad(ce, argnums=2)(params, masks, noise, x, y)
      noise = jax.tree_util.tree_map(
          lambda n, g: jnp.clip(n + eps / steps * jnp.sign(g), -eps, eps),
          noise, grad)
    noise = jax.lax.stop_gradient(noise)

    def objective(m):
      natural = ce(params, m, None, x, y)
      robust = ce(params, m, noise, x, y)
      return alpha * natural + (1 - alpha) * robust, (natural, robust)

    (loss, (natural, robust)), grad = jax.value_and_grad(
        objective, has_aux=True)(masks)
    updates, opt_state = tx.update(grad, opt_state, masks)
    masks = jax.tree_util.tree_map(lambda m: jnp.clip(m, 0.0, 1.0),
                                   optax.apply_updates(masks, updates))
    return masks, opt_state, {'loss': loss, 'natural': natural,
                              'robust': robust}

  return step, tx


def learn_masks(inputs: DefenseInputs, cfg: ml_collections.ConfigDict
                ) -> tuple[dict[Any, jax.Array], dict[str, float]]:
  """ANP's masks on the clean subset (`cfg` is `defense.anp`).

  Returns:
    (`{module path: float [C]}`, the last iteration's losses).
  """
  params = inputs.variables['params']
  batch_stats = inputs.variables['batch_stats']
  masks = {p: jnp.ones(c, jnp.float32)
           for p, c in neurons(batch_stats).items()}
  if not masks:
    raise ValueError('anp needs a model with batch norm (no neurons to mask)')
  step, tx = make_mask_step(inputs.model, cfg, batch_stats)
  opt_state = tx.init(masks)
  n, batch = len(inputs.y_clean), int(cfg.batch_size)
  if n < batch:
    raise ValueError(f'anp.batch_size={batch} exceeds the {n} clean images')
  y_all = np.asarray(inputs.y_clean, np.int32)
  order_key, noise_key = jax.random.split(inputs.key)
  per_pass = n // batch
  order = None
  total, start = int(cfg.iterations), time.perf_counter()
  for i in range(total):
    if i % per_pass == 0:  # A new shuffle of the subset for every pass.
      order = np.asarray(jax.random.permutation(
          jax.random.fold_in(order_key, i // per_pass), n))
    rows = order[(i % per_pass) * batch:(i % per_pass + 1) * batch]
    masks, opt_state, last = step(params, masks, opt_state,
                                  inputs.x_clean[rows], y_all[rows],
                                  jax.random.fold_in(noise_key, i))
    if (i + 1) % LOG_EVERY == 0 or i + 1 == total:
      _log_progress(i + 1, total, last, batch, time.perf_counter() - start)
  return masks, {k: float(v) for k, v in last.items()}


def _log_progress(done: int, total: int, last: dict[str, Any], batch: int,
                  seconds: float) -> None:
  """One line per `LOG_EVERY` mask iterations: the search runs outside
  the training loop (minutes on a CPU) and would otherwise be silent."""
  _LOG.info('[anp] mask iteration %d/%d | loss %.4f | natural %.4f | '
            'robust %.4f | %.0f img/s | %.1fs', done, total,
            float(last['loss']), float(last['natural']),
            float(last['robust']), done * batch / max(seconds, 1e-9),
            seconds)


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """ANP with the fields of `cfg.anp` (see module docstring).

  Returns:
    The plan: the pruned model, nothing to train; notes give the pruned
    count and the mask search's last losses, the sweep ACC/ASR against the
    threshold.
  """
  c = cfg.anp
  check(cfg)
  masks, last = learn_masks(inputs, c)
  variables = jax.device_get(inputs.variables)
  params, pruned = prune(variables['params'], masks, by=c.prune_by,
                         threshold=float(c.threshold), number=int(c.number))
  total = sum(int(np.asarray(m).size) for m in masks.values())

  def sweep(trained, evaluate):
    del trained  # Every point prunes the backdoored model anew.
    out = []
    for t in c.sweep:
      swept, count = prune(variables['params'], masks, threshold=float(t))
      out.append({'value': float(t), 'pruned': count / total,
                  **evaluate({**variables, 'params': swept})})
    return out

  masks_host = {'/'.join(p): np.asarray(m).round(4).tolist()
                for p, m in masks.items()}
  return Plan(
      loss_fn=None, start={**variables, 'params': params},
      notes={'pruned': pruned, 'neurons': total, 'masks': masks_host,
             **{f'mask_{k}': v for k, v in last.items()}},
      summary=(f'pruned {pruned}/{total} neurons (mask < {c.threshold}' if
               c.prune_by == 'threshold' else
               f'pruned the {pruned}/{total} smallest-mask neurons (') +
      f'; last mask loss {last["loss"]:.3f})',
      sweep=sweep, sweep_name='threshold')
