"""FT: plain fine-tuning on the clean subset.

The control every table shows (BackdoorBench found NAD close to it), and
how NAD's and NBA's teacher is made.
"""

import ml_collections

from nbajax import training
from nbajax.defenses.base import DefenseContext, finetune


def defend(ctx: DefenseContext, cfg: ml_collections.ConfigDict):
  """Cross-entropy fine-tuning of the backdoored model.

  Args:
    ctx: defense inputs.
    cfg: the defense config (optimizer fields).

  Returns:
    (defended variables, history).
  """
  return finetune(ctx, cfg, training.make_ce_loss(ctx.model))
