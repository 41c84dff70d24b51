"""MCR's batch-norm re-estimation on digits, on the validation split.

MCR's result is a point of its curve with batch-norm statistics
re-estimated on the defender's clean subset (nbajax/defenses/mcr.py). The
subset is made of training images; re-estimated on them as they are, the
CIFAR-10 subset's BadNets model lost 9.0 points of validation ACC before
any curve was trained, 4.1 under the defense's augmentation (a one-off
diagnostic, docs/design.md §10), so re-estimating under the defense's
crop/flip/cutout (`mcr.bn_augment = True`) was planned as MCR's default.
This sweep is the check, on the validation split only, beside its
CIFAR-10 twin (`cifar10_subset_mcr_bn.py`):

* `mcr`: `bn_augment = False`, the images as they are (this project's MCR
  before the field, and the default the check kept);
* `mcr_augment`: `bn_augment = True`, under the defense's augmentation
  (digits: crop 1);
* `ft` for reference (MCR's second end point is the teacher, 10 epochs of
  fine-tuning).

  python -m experiments.ablate --config experiments/configs/digits_mcr_bn.py \\
      --workdir runs/digits_val_mcr

Rule, fixed before it ran: `bn_augment = True` becomes the default if
`mcr_augment`'s mean validation DER is at least `mcr`'s on digits and on
the CIFAR-10 subset; otherwise the default stays False (the outcome:
docs/validation.md, "MCR's batch-norm statistics"). The attacks and the
two backdoored-model seeds of `digits_nba_sweep.py`.
"""

import ml_collections

from experiments.configs import digits, digits_nba_sweep

VARIANTS = {
    'ft': {'name': 'ft'},
    'mcr': {'name': 'mcr', 'mcr': {'bn_augment': False}},
    'mcr_augment': {'name': 'mcr', 'mcr': {'bn_augment': True}},
}


def get_config():
  """digits on its validation split, MCR's batch-norm re-estimation as the
  ablation."""
  c = digits.get_config()
  c.data.eval_split = 'val'
  c.ablation.attacks = digits_nba_sweep.ATTACKS
  c.ablation.seeds = digits_nba_sweep.SEEDS
  c.ablation.variants = ml_collections.ConfigDict(VARIANTS)
  c.ablation.run = tuple(VARIANTS)
  c.ablation.report = 'mcr_bn'
  return c
