"""Shared GTSRB subset (32x32, 43 classes), WRN-16-1, NAD's setting.

The data file lives beside the project (`../shared/data/gtsrb32.npz`, see
its README); point `--config.data.path` elsewhere on your machine.
On a 2-core CPU one epoch of WRN-16-1 over 25,087 images takes ~70-80 s.

  python -m experiments.train --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb_clean --config.train.epochs=5
"""

from experiments.configs import base


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
  return c
