"""GTSRB backdoored models only, on the validation split: does each attack
implant (ASR >= 90 % at <= 1 point of ACC below the clean model)?

The gtsrb config's attacks with no defense, every number on the 10 %
validation split, and more training epochs for the attacks that implant
slowly at the gtsrb config's 5 (`attack.epochs` per attack; the clean model
keeps 5). Writes implant.{md,json,png} beside the usual report:

  python -m experiments.reproduce \
      --config experiments/configs/gtsrb_implant.py --workdir runs/gtsrb_implant

2-core CPU: ~10 min per 5 epochs of a backdoored model alone (22,575
training images, ~230 images/s), about twice that while another job runs.
"""

from experiments.configs import gtsrb

# Epochs of the backdoored model where 5 did not implant on validation
# (runs/gtsrb_implant/implant.md; WaNet's own paper trains far longer).
SLOW_ATTACKS = {'wanet': 20, 'sig': 15}


def get_config():
  """gtsrb.py on the validation split, backdoored models only."""
  c = gtsrb.get_config()
  c.data.eval_split = 'val'
  c.grid.defenses = ()
  c.grid.attention_maps = False
  for attack, epochs in SLOW_ATTACKS.items():
    override = c.grid.attack_overrides.get(attack)
    if override is None:
      c.grid.attack_overrides[attack] = {'epochs': epochs}
    else:
      override.epochs = epochs
  return c
