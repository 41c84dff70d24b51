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
# epochs, what this config changes (each measured on validation; README,
# "GTSRB: does each attack implant?"):
# - WaNet trains 20 epochs (its own paper trains far longer still);
# - SIG, whose ASR stayed at 54-63 % whether trained 5 or 15 epochs at
#   delta 20/255, gets the stronger signal BackdoorBench uses, 40/255;
# - CL's PGD budget grows from 8/255 (47.5 % ASR) to 16/255 (74.3 %;
#   32/255 gave 53.2 %). Still not implanted: see README;
# - Refool's reflection weight grows from 0.3 (13.5 %) to 0.5 (52.9 %; 3
#   reflections instead of 10: 53.0 %). Still not implanted: see README.
#   (A JSON string, the form its validation run was given, so that run is
#   the one this config names.)
CHANGES = {'wanet': {'epochs': 20}, 'sig': {'params': {'delta': 40 / 255}},
           'cl': {'params': {'eps': 16 / 255}},
           'refool': {'params_json': '{"alpha": 0.5}'}}


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
