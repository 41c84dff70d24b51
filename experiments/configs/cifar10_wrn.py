"""TFDS CIFAR-10, WRN-16-1: the NAD paper's setting.

Attack as in the NAD code: 10 % poisoning, all-to-one, target 5 (BadNets'
3x3 checkerboard by default). Defenses on a 5 % clean subset (2,500 images);
NAD's published student recipe: 20 epochs, SGD Nesterov, wd 1e-4, batch 64,
lr 0.1 for 2 epochs then 0.01, random crop (pad 4) + flip + 3-px cutout; the
teacher is 10 epochs of fine-tuning. (On the shared GTSRB subset the 0.1
start collapsed ACC: see `gtsrb.py`, which uses 0.01.)

Needs CIFAR-10 prepared for TFDS; nothing is downloaded at run time. On a
machine with network: `tfds build cifar10 --data_dir DIR --file_format
array_record`, then copy DIR.

  python -m experiments.reproduce --config experiments/configs/cifar10_wrn.py \
      --workdir runs/cifar10_wrn --config.data.data_dir=DIR

Run time: WRN-16-1 trains at ~300-440 images/s on a 2-core CPU (measured
here), so one 100-epoch backdoored model is ~3-4 h there and the grid about
a day; on a GPU expect minutes per model (not measured: no GPU was lent
while this config was written).
"""

from experiments.configs import base


def get_config():
  """CIFAR-10 + wrn-16-1, NAD's attack and defense recipe."""
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

  c.attack.target = 5
  c.attack.rate = 0.1

  c.defense.clean_fraction = 0.05
  c.defense.epochs = 20
  c.defense.batch_size = 64
  c.defense.lr = 0.1
  c.defense.schedule = 'step'
  c.defense.boundaries = (2,)
  c.defense.decay = 0.1
  c.defense.crop_padding = 4
  c.defense.flip = True
  c.defense.cutout = 3
  c.defense.eval_every = 5
  c.defense.teacher.epochs = 10
  c.defense.teacher.lr = 0.1
  c.defense.teacher.schedule = 'step'
  c.defense.teacher.boundaries = (2,)
  c.defense.teacher.flip = True
  c.defense.teacher.cutout = 3
  return c
