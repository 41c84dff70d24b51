"""FP: fine-pruning (Liu et al., RAID 2018), then fine-tuning.

Prunes channels of the last activation map (the model's 'final' feature,
whose global average feeds the classifier 'head') in order of increasing
mean activation on the clean subset, as long as clean-subset accuracy stays
within `max_acc_drop` of the unpruned model and at most `max_ratio` of the
channels go; then fine-tunes with the pruned channels held at zero.

Pruning a channel of the pooled map is exactly zeroing its row of the head
kernel (logits = pooled @ W + b), so every candidate count is evaluated from
one forward pass, and the mask stays exact during fine-tuning because the
loss sees `W * mask` (pruned rows get no gradient and weight decay keeps a
zero at zero).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbajax import training
from nbajax.defenses.base import DefenseInputs, Plan, check_number


def pooled_features(model, variables, x: np.ndarray, *,
                    batch_size: int = 512) -> np.ndarray:
  """Global-average 'final' activations, float32 [n, C] (eval mode)."""
  fn = jax.jit(lambda v, z: model.apply(v, training.to_float(z),
                                        train=False)[1]['final'].mean((1, 2)))
  return np.concatenate([np.asarray(fn(variables, x[i:i + batch_size]))
                         for i in range(0, len(x), batch_size)])


def choose_pruning(pooled: np.ndarray, y: np.ndarray, kernel: np.ndarray,
                   bias: np.ndarray, *, max_acc_drop: float,
                   max_ratio: float) -> tuple[np.ndarray, list[float]]:
  """Pruning mask and the accuracy of every candidate count.

  Args:
    pooled: [n, C] pooled activations on clean data.
    y: int [n] labels.
    kernel: head kernel [C, K].
    bias: head bias [K].
    max_acc_drop: largest allowed fall in clean accuracy (fraction).
    max_ratio: largest fraction of channels to prune.

  Returns:
    (float32 mask [C] with 0 for pruned channels, accuracies for 0..k).
  """
  order = np.argsort(pooled.mean(0), kind='stable')  # Least active first.
  n, c = len(y), kernel.shape[0]
  # Limits as whole counts, with a tolerance for float error (0.57 * 100 is
  # 56.99999999999999), so that a drop of exactly `max_acc_drop` is allowed.
  most = int(np.floor(max_ratio * c + 1e-6))
  may_lose = int(np.floor(max_acc_drop * n + 1e-6))
  corrects = []
  mask = np.ones(c, np.float32)
  for k in range(most + 1):
    trial = np.ones(c, np.float32)
    trial[order[:k]] = 0.0
    logits = pooled @ (kernel * trial[:, None]) + bias
    corrects.append(int(np.sum(np.argmax(logits, -1) == y)))
    if corrects[0] - corrects[-1] > may_lose:
      break
    mask = trial
  return mask, [correct / n for correct in corrects]


def _masked_params(params: Any, mask: jax.Array) -> Any:
  head = dict(params['head'])
  head['kernel'] = head['kernel'] * mask[:, None]
  return {**params, 'head': head}


def make_masked_ce_loss(model):
  """CE loss of the model whose head rows are multiplied by `aux['mask']`."""
  ce = training.make_ce_loss(model)

  def loss_fn(params, batch_stats, x, y, key, aux):
    return ce(_masked_params(params, aux['mask']), batch_stats, x, y, key,
              None)

  return loss_fn


def check(cfg: ml_collections.ConfigDict) -> None:
  """The `fp` fields.

  Raises:
    ValueError: naming the field out of range.
  """
  for name in ('max_acc_drop', 'max_ratio'):
    check_number(cfg.fp, 'fp', name, low=0.0, high=1.0)


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """Prune by `cfg.fp.max_acc_drop` / `cfg.fp.max_ratio`, then fine-tune.

  Returns:
    The plan: masked cross entropy from the pruned model; its notes
    ('pruned', 'prune_accs') go into history[0].
  """
  variables = jax.device_get(inputs.variables)
  head = variables['params']['head']
  pooled = pooled_features(inputs.model, variables, inputs.x_clean)
  mask, accs = choose_pruning(
      pooled, np.asarray(inputs.y_clean), np.asarray(head['kernel']),
      np.asarray(head['bias']), max_acc_drop=float(cfg.fp.max_acc_drop),
      max_ratio=float(cfg.fp.max_ratio))
  pruned = int((mask == 0).sum())
  start = {'params': _masked_params(variables['params'], jnp.asarray(mask)),
           'batch_stats': variables['batch_stats']}
  return Plan(
      loss_fn=make_masked_ce_loss(inputs.model), start=start,
      aux={'mask': jnp.asarray(mask)},
      notes={'pruned': pruned, 'prune_accs': accs},
      summary=(f'pruned {pruned}/{mask.size} channels of the last layer; '
               f'clean-subset accuracy {100 * accs[0]:.1f}% -> '
               f'{100 * accs[min(pruned, len(accs) - 1)]:.1f}%'))
