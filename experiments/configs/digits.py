"""scikit-learn digits (8x8, 1,797 real images), small CNN: the CPU default.

The README's main job (all attacks x defenses; a few minutes on 2 cores):

  python -m experiments.reproduce

A clean model (well under a minute):

  python -m experiments.train --config experiments/configs/digits.py \
      --workdir runs/digits_clean
"""

from experiments.configs import base


def get_config():
  """Digits + cnn; 8x8 images need small crops and no flips."""
  c = base.get_config()
  c.data.name = 'digits'
  c.model.name = 'cnn'
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.crop_padding = 1  # 4 px on an 8x8 digit would crop half of it.
  c.train.flip = False  # Mirrored digits are other digits.

  c.attack.target = 0
  c.attack.rate = 0.1

  # 1,438 training images: 10 % (144) keeps a few batches per epoch.
  c.defense.clean_fraction = 0.1
  c.defense.batch_size = 32
  c.defense.crop_padding = 1
  c.defense.teacher.batch_size = 32
  c.defense.teacher.crop_padding = 1
  return c
