"""A validation sweep of I-BAU on digits, so that NBA (whose default came
from a validation sweep) is compared with an adversarial-unlearning
baseline given the same chance.

Same validation split, attacks and two backdoored-model seeds as
`digits_nba_sweep.py`; the test set is not read. The published setting
(perturbation step 10, no norm bound, 5 rounds of Adam at lr 1e-3) is the
first row; the others shrink the perturbation step, add rounds, or raise
the unlearning lr:

  python -m experiments.ablate --config experiments/configs/digits_ibau_sweep.py \\
      --workdir runs/digits_val_ibau

Rule, fixed before it ran: the lowest mean validation ASR among the
settings whose mean validation ACC is at most 1 point below NAD's (the
NBA sweep's 'nad' row, same models); if none is, the highest mean DER.
"""

import ml_collections

from experiments.configs import digits_nba_sweep


def _ibau(outer=None, **ibau):
  change = {'name': 'ibau', 'ibau': dict(ibau)}
  if outer:
    change['ibau']['outer'] = outer
  return change


VARIANTS = {
    'nad': {'name': 'nad'},
    'ibau_published': _ibau(),
    'ibau_pert1': _ibau(pert_lr=1.0),
    'ibau_pert01': _ibau(pert_lr=0.1),
    'ibau_pert1_r10': _ibau(outer={'epochs': 10}, pert_lr=1.0),
    'ibau_pert1_lr1e-2': _ibau(outer={'lr': 0.01}, pert_lr=1.0),
    'ibau_pert01_lr1e-2': _ibau(outer={'lr': 0.01}, pert_lr=0.1),
}


def get_config():
  c = digits_nba_sweep.get_config()
  c.ablation.variants = ml_collections.ConfigDict(VARIANTS)
  c.ablation.run = tuple(VARIANTS)
  c.ablation.report = 'ibau_sweep'
  return c
