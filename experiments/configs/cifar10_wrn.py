"""TFDS CIFAR-10, WRN-16-1: the NAD paper's setting.

Needs CIFAR-10 prepared for TFDS (no download happens at run time): on a
machine with network, `tfds build cifar10 --data_dir DIR`, then copy DIR.

  python -m experiments.train --config experiments/configs/cifar10_wrn.py \
      --workdir runs/cifar10_clean --config.data.data_dir=DIR
"""

from experiments.configs import base


def get_config():
  """CIFAR-10 + wrn-16-1, 100 epochs SGD 0.1 step decay, crop + flip."""
  c = base.get_config()
  c.data.name = 'cifar10'
  c.model.name = 'wrn-16-1'
  c.train.epochs = 100
  c.train.batch_size = 128
  c.train.lr = 0.1
  c.train.schedule = 'step'
  c.train.boundaries = (50, 75)
  c.train.crop_padding = 4
  c.train.flip = True
  return c
