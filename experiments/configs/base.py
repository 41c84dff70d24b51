"""Defaults shared by every config; variants import and change a few fields.

Not a runnable config by itself (it has no data set of its own): see
`digits.py`, `gtsrb.py`, `cifar10_wrn.py`.
"""

import ml_collections


def optimizer_section(*, epochs: int, lr: float, batch_size: int = 64,
                      schedule: str = 'constant', weight_decay: float = 1e-4,
                      crop_padding: int = 4, flip: bool = False,
                      optimizer: str = 'sgd') -> ml_collections.ConfigDict:
  """The fields `nbajax.training.from_config` reads, with their defaults.

  Args:
    epochs: epochs to train.
    lr: initial learning rate.
    batch_size: global batch size.
    schedule: 'constant', 'step' (x `decay` at each epoch in `boundaries`)
      or 'cosine'.
    weight_decay: L2 added to the gradient, as torch's SGD.
    crop_padding: random-crop padding in pixels (0: off).
    flip: random horizontal flips.
    optimizer: 'sgd' (momentum, nesterov) or 'adam'.

  Returns:
    A ConfigDict; change `boundaries`, `decay`, `momentum`, `nesterov`,
    `cutout` or `loop` ('auto': 'step' on CPU, 'scan' on GPU/TPU) on it.
  """
  return ml_collections.ConfigDict(dict(
      optimizer=optimizer, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
      boundaries=(), decay=0.1, momentum=0.9, nesterov=True,
      weight_decay=weight_decay, crop_padding=crop_padding, flip=flip,
      cutout=0, loop='auto'))


def get_config() -> ml_collections.ConfigDict:
  """Base config: seed, data, model, training, attack and defense fields."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.eval_batch_size = 512
  c.eval_every = 1  # Epochs between test evaluations while training.
  c.keep_checkpoints = 2

  c.data = ml_collections.ConfigDict()
  c.data.name = 'digits'  # 'digits', 'npz' (with path) or a TFDS name.
  c.data.path = ''
  c.data.data_dir = ''  # TFDS data_dir.
  c.data.split_seed = 0  # For sources without a fixed test split.
  # Held out of the training set (class-stratified, seeded): never poisoned
  # nor trained on. Defaults are chosen with eval_split='val'; the tables
  # report eval_split='test'.
  c.data.val_fraction = 0.1
  c.data.eval_split = 'test'  # Or 'val': every evaluation on validation.

  c.model = ml_collections.ConfigDict()
  c.model.name = 'cnn'
  c.model.normalize = True  # Per-dataset mean/std inside the model.
  # Compute dtype of convolutions and matmuls: 'float32' or 'bfloat16'
  # (float32 parameters, batch statistics, gradients, logits and features
  # either way; models.get_model's `dtype`). For accelerators: on XLA:CPU
  # bfloat16 is slower. A float32 model's fingerprint leaves it out, so
  # runs saved before the field existed are reused.
  c.model.compute_dtype = 'float32'

  # Training from scratch (clean and backdoored models).
  c.train = optimizer_section(epochs=30, lr=0.1, schedule='cosine',
                              weight_decay=5e-4, flip=True)

  # The backdoor attack (nbajax.attacks); params go to get_attack().
  c.attack = ml_collections.ConfigDict()
  c.attack.name = 'badnets'
  c.attack.params = ml_collections.ConfigDict()
  # JSON merged over params, for the command line:
  # --config.attack.params_json='{"alpha": 0.1}'
  c.attack.params_json = ''
  c.attack.rate = 0.1  # Dirty-label: of all images; clean-label: of target.
  c.attack.target = 0
  c.attack.mode = 'all-to-one'  # Or 'all-to-all'.
  c.attack.seed = 0
  # Clean model that trojan and cl need: trained with `train` unless a
  # checkpoint directory (a `experiments.train` workdir) is given.
  c.attack.clean_model_dir = ''
  # Epochs of the backdoored model when > 0 (an attack that implants
  # slowly); 0: train.epochs. The clean model keeps train.epochs.
  c.attack.epochs = 0

  # The defense (nbajax.defenses): an optimizer section plus its own fields.
  c.defense = optimizer_section(epochs=20, lr=0.01)
  c.defense.name = 'nba'
  c.defense.clean_fraction = 0.05  # Of the training set, class-stratified.
  c.defense.clean_seed = 0
  c.defense.eval_every = 1

  # Teacher of NAD/NBA: the backdoored model fine-tuned (CE) on the subset.
  c.defense.teacher = optimizer_section(epochs=10, lr=0.01)

  c.defense.fp = ml_collections.ConfigDict()
  c.defense.fp.max_acc_drop = 0.05  # Clean-subset accuracy we may lose.
  c.defense.fp.max_ratio = 0.9  # At most this fraction of channels pruned.

  c.defense.nad = ml_collections.ConfigDict()
  c.defense.nad.layers = ()  # Empty: the model's distill_layers().
  c.defense.nad.betas = (500.0, 1000.0, 1000.0)
  c.defense.nad.p = 2.0

  # Our formulation of NBA (docs/design.md §7); every choice is a field.
  # Defaults: the setting the validation sweep on digits chose
  # (experiments/configs/digits_nba_sweep.py, docs/digits_val/).
  c.defense.nba = ml_collections.ConfigDict()
  c.defense.nba.layers = ()
  c.defense.nba.betas = (500.0, 1000.0, 1000.0)
  c.defense.nba.p = 2.0
  c.defense.nba.weights = ml_collections.ConfigDict(
      dict(spatial=1.0, channel=0.2, relation=0.0))
  c.defense.nba.gamma = 0.3  # Pseudo-sample behavior alignment.
  c.defense.nba.lam = 4.0  # CE on pseudo samples.
  c.defense.nba.kd = 0.0  # KD(T(align) || S(x~)) weight.
  c.defense.nba.kd_temperature = 4.0
  c.defense.nba.eps = 16 / 255
  c.defense.nba.alpha = 0.0  # 0: eps / 2.
  c.defense.nba.steps = 3  # 0 with random_start: random-noise control.
  c.defense.nba.mode = 'universal'  # Or 'per_sample'.
  c.defense.nba.random_start = True
  c.defense.nba.generator_target = 'clean'  # Teacher input while crafting.
  c.defense.nba.align_to = 'clean'  # Teacher input of the alignment.
  c.defense.nba.pseudo_bn = 'train'  # Or 'eval'.
  # Changes of the defense's optimizer fields for NBA alone: the lr x 0.1
  # for the last 4 of the 20 epochs ({} trains NBA as the others).
  c.defense.nba.optimizer = ml_collections.ConfigDict(
      dict(schedule='step', boundaries=(16,), decay=0.1))
  # Epochs that craft and use pseudo samples; the rest train on the clean
  # terms alone. 0: every epoch.
  c.defense.nba.pseudo_epochs = 0

  # MCR (Zhao et al. 2020): the curve between the backdoored model and the
  # teacher, trained with the defense's optimizer fields.
  c.defense.mcr = ml_collections.ConfigDict()
  c.defense.mcr.t = 0.3  # The point on the curve that is the result.
  c.defense.mcr.sweep = tuple(i / 10 for i in range(11))  # Recorded only.
  # True: the result's batch-norm statistics re-estimated on the clean
  # subset under the defense's crop/flip/cutout; False: on the images as
  # they are (kept by the validation check, configs/digits_mcr_bn.py).
  c.defense.mcr.bn_augment = False

  # ANP (Wu & Wang 2021), the paper's defaults; nothing fine-tuned after.
  c.defense.anp = ml_collections.ConfigDict()
  c.defense.anp.eps = 0.4  # Neuron perturbation bound.
  c.defense.anp.steps = 1  # Ascent steps on the perturbation.
  c.defense.anp.alpha = 0.2  # Weight of the unperturbed loss.
  c.defense.anp.mask_lr = 0.2  # SGD, momentum 0.9.
  c.defense.anp.iterations = 2000
  c.defense.anp.batch_size = 128
  c.defense.anp.prune_by = 'threshold'  # Or 'number'.
  c.defense.anp.threshold = 0.2
  c.defense.anp.number = 0  # With prune_by='number'.
  c.defense.anp.sweep = tuple(i / 20 for i in range(19))  # Recorded only.

  # I-BAU (Zeng et al. 2022), the authors' defaults: 5 rounds of Adam.
  c.defense.ibau = ml_collections.ConfigDict()
  c.defense.ibau.K = 5  # Fixed-point iterations of the hypergradient.
  c.defense.ibau.inner_lr = 0.1  # Step of the fixed-point map.
  c.defense.ibau.pert_lr = 10.0  # Perturbation search, one pass a round.
  c.defense.ibau.reg = 0.001  # L2 penalty of the perturbation.
  c.defense.ibau.portion = 0.01  # Of each batch unlearned with it.
  c.defense.ibau.outer = optimizer_section(
      epochs=5, lr=0.001, batch_size=100, weight_decay=0.0, crop_padding=0,
      optimizer='adam')

  # The grid of experiments.reproduce.
  c.grid = ml_collections.ConfigDict()
  c.grid.attacks = ('badnets', 'trojan', 'blend', 'sig', 'cl', 'refool',
                    'wanet')
  c.grid.defenses = ('ft', 'fp', 'nad', 'nba', 'mcr', 'anp', 'ibau')
  c.grid.seeds = (0,)
  # Defense seeds (clean subset, teacher, the defense's own randomness) for
  # every backdoored model: each model seed's model is defended once per
  # defense seed, cells labelled '<seed>/<defense seed>'. Empty: once, with
  # the model's seed (cells labelled '<seed>').
  c.grid.defense_seeds = ()
  c.grid.attention_maps = True
  # Per-attack changes of the attack fields, e.g. {'sig': {'rate': 0.5,
  # 'params': {'delta': 0.1}}}.
  c.grid.attack_overrides = ml_collections.ConfigDict()

  # The NBA ablation (experiments.ablate): named changes of `defense`, run on
  # the grid's backdoored models and teachers. A variant whose config equals
  # a grid defense reuses that grid cell.
  c.ablation = ml_collections.ConfigDict()
  c.ablation.attacks = ('badnets', 'blend')
  c.ablation.seeds = (0,)
  c.ablation.defense_seeds = ()  # As grid.defense_seeds.
  c.ablation.run = ABLATION_ORDER
  c.ablation.variants = ml_collections.ConfigDict(ablation_variants())
  c.ablation.report = 'ablation'  # Report files: <report>.{md,json,png}.
  return c


# Table order of the ablation: NAD, what each NBA part adds, then one change
# of the full NBA at a time, then controls.
ABLATION_ORDER = ('nad', 'nad_channel', 'nad_pseudo', 'full', 'per_sample',
                  'eps8', 'align_clean', 'lam1', 'align_clean_lam1',
                  'align_clean_step', 'random_noise', 'align_clean_noise')


def ablation_variants() -> dict[str, dict]:
  """The issue's NBA ablation as `{variant: changes of config.defense}`."""
  no_channel = {'spatial': 1.0, 'channel': 0.0, 'relation': 0.0}
  return {
      'nad': {'name': 'nad'},
      # NAD's clean-sample alignment with the channel behavior added.
      'nad_channel': {'name': 'nba', 'nba': {'gamma': 0.0}},
      # NAD plus pseudo samples: spatial behavior only.
      'nad_pseudo': {'name': 'nba', 'nba': {'weights': no_channel}},
      'full': {'name': 'nba'},  # Our NBA as configured (the defaults).
      'per_sample': {'name': 'nba', 'nba': {'mode': 'per_sample'}},
      'eps8': {'name': 'nba', 'nba': {'eps': 8 / 255}},
      'align_clean': {'name': 'nba', 'nba': {'align_to': 'clean'}},
      'lam1': {'name': 'nba', 'nba': {'lam': 1.0}},
      'align_clean_lam1': {'name': 'nba',
                           'nba': {'align_to': 'clean', 'lam': 1.0}},
      # align_clean with the lr x 0.1 for the last fifth of the epochs, to
      # give back accuracy.
      'align_clean_step': {'name': 'nba', 'nba': {'align_to': 'clean'},
                           'schedule': 'step', 'boundaries': (16,),
                           'decay': 0.1},
      # Not in the measured run order: the student sees x~ with its running
      # batch-norm statistics (as at test time), not the perturbed batch's.
      'bn_eval': {'name': 'nba', 'nba': {'pseudo_bn': 'eval'}},
      # Controls: the random start alone, no PGD step.
      'random_noise': {'name': 'nba', 'nba': {'steps': 0}},
      'align_clean_noise': {'name': 'nba',
                            'nba': {'align_to': 'clean', 'steps': 0}},
  }
