"""GTSRB backdoored models only, on the validation split: does each attack
implant (ASR >= 90 % at <= 1 point of ACC below the clean model)?

The gtsrb config's attacks with no defense, every number on the 10 %
validation split, and more training epochs for the attacks that implant
slowly at the gtsrb config's 5 (`attack.epochs` per attack; the clean model
keeps 5) or a stronger trigger where more epochs did not help (see
CHANGES). Writes implant.{md,json,png} beside the usual report:

  python -m experiments.reproduce \
      --config experiments/configs/gtsrb_implant.py --workdir runs/gtsrb_implant

2-core CPU: ~10 min per 5 epochs of a backdoored model alone (22,575
training images, ~230 images/s), about twice that while another job runs.
"""

from experiments.configs import gtsrb

# Where the gtsrb config's attack does not implant on validation in 5
# epochs (runs/gtsrb_implant/implant.md), what this config changes:
# WaNet trains longer (its own paper trains far longer still); SIG, whose
# ASR stayed at 54-63 % whether trained 5 or 15 epochs (delta 20/255),
# gets the stronger signal BackdoorBench uses, delta 40/255; CL (47.5 % ASR
# at PGD eps 8/255) the larger of the label-consistent paper's budgets it
# reports, eps 16/255.
CHANGES = {'wanet': {'epochs': 20}, 'sig': {'params': {'delta': 40 / 255}},
           'cl': {'params': {'eps': 16 / 255}}}


def get_config():
  """gtsrb.py on the validation split, backdoored models only."""
  c = gtsrb.get_config()
  c.data.eval_split = 'val'
  c.grid.defenses = ()
  c.grid.attention_maps = False
  for attack, change in CHANGES.items():
    override = c.grid.attack_overrides.get(attack)
    if override is None:
      c.grid.attack_overrides[attack] = change
    else:
      override.update(change)
  return c
