"""MCR's batch-norm re-estimation on the CIFAR-10 subset (validation split).

The check of `mcr.bn_augment` where it matters most: the subset's models
are trained 60 epochs on 4,576 images, so the defender's clean images
(drawn from those) are ones the model has memorized. Variants and rule as
in `digits_mcr_bn.py` (`mcr`: the images as they are; `mcr_augment`:
under the defense's crop 4, flip and cutout). MCR's sweep
records ACC / ASR along t, t = 0 being the backdoored weights with the
re-estimated statistics, so the cost of the re-estimation alone is read
off it.

  python -m experiments.ablate --config experiments/configs/cifar10_subset_mcr_bn.py \\
      --workdir runs/cifar10_subset_val

BadNets, one backdoored-model seed (the subset's validation sweep of NBA's
lr ran on the same model: `cifar10_subset_nba_lr.py`, same workdir). 2-core
CPU, one or two other runs beside it: 18 min for the model, 3-5 per MCR
run (26 min in all).
"""

import ml_collections

from experiments.configs import cifar10_subset, digits_mcr_bn


def get_config():
  """cifar10_subset on its validation split, MCR's batch-norm
  re-estimation as the ablation."""
  c = cifar10_subset.get_config()
  c.data.eval_split = 'val'
  c.ablation.attacks = ('badnets',)
  c.ablation.seeds = (0,)
  c.ablation.variants = ml_collections.ConfigDict(digits_mcr_bn.VARIANTS)
  c.ablation.run = ('mcr', 'mcr_augment')  # FT: the test grid has it.
  c.ablation.report = 'mcr_bn'
  return c
