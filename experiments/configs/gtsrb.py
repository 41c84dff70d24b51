"""Shared GTSRB subset (32x32, 43 classes), WRN-16-1, NAD's setting.

The data file lives beside the project (`../shared/data/gtsrb32.npz`, see
its README); point `--config.data.path` elsewhere on your machine.

Settings (docs/design.md §7): 10 % poisoning to class 1, 5 training epochs;
clean subset 5 % (1,254 images); teacher = 10 epochs of fine-tuning; every
defense 20 epochs of SGD Nesterov at a constant lr 0.01 (NAD's published 0.1
start collapsed ACC to 20-38 % here), wd 1e-4, batch 64; NBA with the
project's defaults (configs/base.py). The attacks that did not implant in 5
epochs at our first settings were changed on the validation split
(configs/gtsrb_implant.py; docs/validation.md, "GTSRB: does each attack
implant?"): WaNet trains 20 epochs, SIG's delta is 40/255, CL's PGD eps 16/255,
Refool's alpha 0.5 (`ATTACK_CHANGES`; before them: commit 9c38361).

Train a clean model (2-core CPU: ~75 s an epoch, plus ~10 s of evaluation):

  python -m experiments.train --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb_clean

The grid (2-core CPU: ~8 min per backdoored model, ~15 min for one attack's
five defenses; measured: 266 min summed over all runs of the seven attacks
with the CPU shared by other jobs). Keep one CPU device for long
runs: with `--xla_force_host_platform_device_count=2` on a busy 2-core
machine XLA:CPU aborted after a cross-device all-reduce waited 40 s.

  python -m experiments.reproduce --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb

The NBA ablation (config.ablation: 11 variants on BadNets and Blend, using
the grid's backdoored models and teachers; ~3 min per NBA run alone on 2
cores, ~1 h in all):

  python -m experiments.ablate --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb
"""

import ml_collections

from experiments.configs import base


# Where an attack did not implant on validation in 5 epochs at our first
# settings, what changed (each measured on validation; docs/validation.md,
# "GTSRB: does each attack implant?"):
# - WaNet trains 20 epochs (its own paper trains far longer still);
# - SIG, whose ASR stayed at 54-63 % whether trained 5 or 15 epochs at
#   delta 20/255, gets the stronger signal BackdoorBench uses, 40/255;
# - CL's PGD budget grows from 8/255 (47.5 % ASR) to 16/255 (74.3 %;
#   32/255 gave 53.2 %). Still not implanted: see docs/validation.md;
# - Refool's reflection weight grows from 0.3 (13.5 %) to 0.5 (52.9 %; 3
#   reflections instead of 10: 53.0 %). Still not implanted: see
#   docs/validation.md.
#   (A JSON string, the form its validation run was given, so that the runs
#   made with it are the ones this config names.)
ATTACK_CHANGES = {'wanet': {'epochs': 20},
                  'sig': {'params': {'delta': 40 / 255}},
                  'cl': {'params': {'eps': 16 / 255}},
                  'refool': {'params_json': '{"alpha": 0.5}'}}


def get_config():
  """GTSRB npz + wrn-16-1; no horizontal flip (signs are not symmetric)."""
  c = base.get_config()
  c.data.name = 'npz'
  c.data.path = '../shared/data/gtsrb32.npz'
  c.model.name = 'wrn-16-1'
  c.train.epochs = 5
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.schedule = 'cosine'
  c.train.crop_padding = 4
  c.train.flip = False

  c.attack.target = 1
  c.attack.rate = 0.1
  # Clean-label attacks poison a fraction of the TARGET class; class 1 is
  # ~6 % of this training set, so they poison 80 % of it (as clean-label
  # papers commonly do) rather than 10 %.
  c.grid.attack_overrides = ml_collections.ConfigDict({
      'sig': {'rate': 0.8}, 'cl': {'rate': 0.8}, 'refool': {'rate': 0.8}})
  for attack, change in ATTACK_CHANGES.items():
    override = c.grid.attack_overrides.get(attack)
    if override is None:
      c.grid.attack_overrides[attack] = change
    else:
      override.update(change)

  c.defense.clean_fraction = 0.05
  c.defense.epochs = 20
  c.defense.lr = 0.01
  c.defense.schedule = 'constant'
  c.defense.flip = False
  c.defense.eval_every = 5  # Test sets are ~16k images: ~10 s per check.
  c.defense.teacher.epochs = 10
  c.defense.teacher.flip = False
  return c
