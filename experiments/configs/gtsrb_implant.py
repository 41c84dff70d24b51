"""GTSRB backdoored models only, on the validation split: does each attack
implant (ASR >= 90 % at <= 1 point of ACC below the clean model)?

The gtsrb config's attacks with no defense, every number on the 10 %
validation split. The attack settings gtsrb.py has (`ATTACK_CHANGES`: more
epochs for WaNet, stronger triggers for SIG, CL and Refool) were chosen
with this config. Writes implant.{md,json,png} beside the usual report:

  python -m experiments.reproduce \
      --config experiments/configs/gtsrb_implant.py --workdir runs/gtsrb_implant

2-core CPU: ~10 min per 5 epochs of a backdoored model alone (22,575
training images, ~230 images/s), about twice that while another job runs.
"""

from experiments.configs import gtsrb


def get_config():
  """gtsrb.py on the validation split, backdoored models only."""
  c = gtsrb.get_config()
  c.data.eval_split = 'val'
  c.grid.defenses = ()
  c.grid.attention_maps = False
  return c
