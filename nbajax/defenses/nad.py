"""NAD: Neural Attention Distillation (Li et al., ICLR 2021).

Student = backdoored model fine-tuned with CE + sum_l beta_l * AT_l, where
AT_l is the attention-map loss between the student's and the frozen
teacher's layer l (the teacher is the backdoored model fine-tuned on the
same clean subset, in eval mode). The attention term keeps its gradient: the
official code once detached it, which made "NAD" plain fine-tuning.
"""

import jax
import ml_collections

from nbajax import losses
from nbajax.defenses.base import DefenseInputs, Plan, layer_betas
from nbajax.training import classification_sums


def make_nad_loss(model, *, betas: dict[str, float], p: float = 2.0):
  """Loss `(params, batch_stats, x, y, key, teacher) -> (loss, aux)`.

  Args:
    model: linen module shared by student and teacher.
    betas: layer name -> beta (NAD: group1..3 -> 500/1000/1000).
    p: attention power.
  """

  def loss_fn(params, batch_stats, x, y, key, teacher):
    del key
    (logits, feats), updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])
    _, t_feats = model.apply(teacher, x, train=False)
    ce = losses.cross_entropy(logits, y)
    at = losses.nad_loss(feats, t_feats, betas=betas, p=p)
    loss = ce + at
    sums = classification_sums(logits, y, loss, {'ce': ce, 'at': at})
    return loss, (updates['batch_stats'], sums)

  return loss_fn


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """NAD with `cfg.nad.layers`, `cfg.nad.betas`, `cfg.nad.p`.

  Raises:
    ValueError: without a teacher.
  """
  if inputs.teacher is None:
    raise ValueError('nad needs a teacher (the fine-tuned backdoored model)')
  betas = layer_betas(cfg.nad, inputs.model_name)
  loss_fn = make_nad_loss(inputs.model, betas=betas, p=float(cfg.nad.p))
  return Plan(loss_fn=loss_fn, start=inputs.variables,
              aux=jax.device_get(inputs.teacher))
