"""FT: plain fine-tuning on the clean subset.

The control every table shows (BackdoorBench found NAD close to it), and
how NAD's and NBA's teacher is made.
"""

import ml_collections

from nbajax import training
from nbajax.defenses.base import DefenseInputs, Plan


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """Cross-entropy fine-tuning of the backdoored model.

  Args:
    inputs: defense inputs.
    cfg: the defense config (optimizer fields).

  Returns:
    The plan: plain cross entropy from the backdoored variables.
  """
  del cfg  # Only its optimizer fields, which `run` reads.
  return Plan(loss_fn=training.make_ce_loss(inputs.model),
              start=inputs.variables)
