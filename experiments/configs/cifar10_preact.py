"""TFDS CIFAR-10, PreAct-ResNet18: BackdoorBench's setting.

BackdoorBench trains the backdoored PreAct-ResNet18 for 100 epochs with SGD
(lr 0.01, momentum 0.9, wd 5e-4), cosine annealing, batch 128, 10 %
poisoning, target 0, and defends with 5 % clean data. NAD distils
layer2..layer4 (our `distill_layers('preact-resnet18')`) with betas
500/1000/1000; the teacher and the defenses run 20 epochs at lr 0.01 here.

Needs CIFAR-10 prepared for TFDS (see `cifar10_wrn.py`).

  python -m experiments.reproduce \
      --config experiments/configs/cifar10_preact.py \
      --workdir runs/cifar10_preact --config.data.data_dir=DIR

Run time: PreAct-ResNet18 has 64x the parameters of WRN-16-1 (11.2 M vs
175 k); on a 2-core CPU a grid is days. Meant for a GPU/TPU (not measured
here: no accelerator was lent while this config was written).
"""

from experiments.configs import base


def get_config():
  """CIFAR-10 + preact-resnet18, BackdoorBench's recipe."""
  c = base.get_config()
  c.data.name = 'cifar10'
  c.model.name = 'preact-resnet18'
  c.train.epochs = 100
  c.train.batch_size = 128
  c.train.lr = 0.01
  c.train.schedule = 'cosine'
  c.train.weight_decay = 5e-4
  c.train.crop_padding = 4
  c.train.flip = True

  c.attack.target = 0
  c.attack.rate = 0.1

  c.defense.clean_fraction = 0.05
  c.defense.epochs = 20
  c.defense.batch_size = 128
  c.defense.lr = 0.01
  c.defense.schedule = 'cosine'
  c.defense.weight_decay = 5e-4
  c.defense.crop_padding = 4
  c.defense.flip = True
  c.defense.eval_every = 5
  c.defense.teacher.epochs = 20
  c.defense.teacher.batch_size = 128
  c.defense.teacher.weight_decay = 5e-4
  c.defense.teacher.flip = True
  return c
