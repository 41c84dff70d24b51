"""scikit-learn digits (8x8, 1,797 real images), small CNN: the CPU default.

Runs in well under a minute on a 2-core CPU:

  python -m experiments.train --config experiments/configs/digits.py \
      --workdir runs/digits_clean
"""

from experiments.configs import base


def get_config():
  """Digits + cnn, 30 epochs, batch 64, light crop augmentation, no flip."""
  c = base.get_config()
  c.data.name = 'digits'
  c.model.name = 'cnn'
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.crop_padding = 1  # 4 px on an 8x8 digit would crop half of it.
  c.train.flip = False  # Mirrored digits are other digits.
  return c
