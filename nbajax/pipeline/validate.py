"""Config checks at the edge of every job, before any data or compute.

Researchers lose days to a typo that only shows up hours into a run (or
never, as a silently different experiment). Each job therefore checks its
config first and refuses bad values with a `UserError` that names the
field as written on the command line (`config.defense.nba.eps`) and the
allowed values or range:

    validate_config(config, job='attack')          # before anything else
    dataset = common.load_data(config.data)
    validate_against_data(config, dataset, job='attack')

`validate_config` needs no data; `validate_against_data` checks what only
the loaded data set can tell (target < number of classes, the trigger fits
the images, at least one batch of training images and of clean subset).

The modules that own a value already validate it (models, attacks, data,
losses, generator); where they do, this module calls them and prefixes
their message with the config field instead of repeating their rules.
"""

import os
from typing import Sequence

import ml_collections
import numpy as np

from nbajax import attacks, defenses, models, training
from nbajax.attacks import base as attack_base
from nbajax.attacks import poison
from nbajax.data import EVAL_SPLITS, clean_subset_indices
from nbajax.defenses import nba as nba_lib
from nbajax.errors import UserError
from nbajax.pipeline import derive, fields

JOBS = ('train', 'attack', 'defend', 'grid')


def validate_config(config: ml_collections.ConfigDict, *, job: str) -> None:
  """Checks the fields `job` uses.

  Args:
    config: an experiment config (`experiments/configs/*.py`).
    job: 'train' (seed, data, model, train), 'attack' (those and attack),
      'defend' (seed and defense; data, model and attack come from the
      backdoor run) or 'grid' (everything, every attack and defense listed
      in `grid`).

  Raises:
    UserError: naming the first bad field (`config.<path>`), its value and
      what is allowed.
  """
  if job not in JOBS:
    raise UserError(f'job must be one of {JOBS}, got {job!r}')
  _check_run(config)
  if job in ('train', 'attack', 'grid'):
    _check_data(config)
    _check_split(config)
    _check_model(config)
    _check_optimizer(config, 'train')
  if job == 'attack':
    _check_attack(config)
  if job == 'defend':
    _check_defense(config, (fields.choice(config, 'defense.name',
                                          defenses.DEFENSE_NAMES),))
  if job == 'grid':
    _check_grid(config)


def validate_against_data(config: ml_collections.ConfigDict, dataset, *,
                          job: str = 'grid') -> None:
  """Checks the config against the loaded data set.

  Args:
    config: a config that passed `validate_config` for `job`.
    dataset: the `nbajax.data.Dataset` the job trains on.
    job: as in `validate_config`; 'train' checks the training batch,
      'attack' also the target, trigger and poisoned count, 'defend' the
      clean subset, 'grid' all of them.

  Raises:
    UserError: naming the field that does not fit the data set.
  """
  if job not in JOBS:
    raise UserError(f'job must be one of {JOBS}, got {job!r}')
  if job in ('train', 'attack', 'grid'):
    _check_batch_fits(config, 'train', len(dataset.y_train),
                      f'the training set of {dataset.name}')
  if job in ('attack', 'grid'):
    _check_attack_fits(config, dataset)
  if job in ('defend', 'grid'):
    _check_clean_subset(config, dataset, job=job)


# --------------------------------------------------------------- sections


def _check_run(config) -> None:
  fields.integer(config, 'seed', low=0)
  fields.integer(config, 'eval_every', low=1)
  fields.integer(config, 'eval_batch_size', low=1)
  fields.integer(config, 'keep_checkpoints', low=1)


def _check_data(config) -> None:
  name = fields.get(config, 'data.name')
  if not isinstance(name, str) or not name.strip():
    raise UserError(
        f"config.data.name must be 'digits', 'npz' (with config.data.path) "
        f'or a prepared TFDS name such as cifar10, got {name!r}')
  if name == 'npz':
    path = fields.get(config, 'data.path', default='')
    if not path:
      raise UserError("config.data.path must name the .npz file when "
                      "config.data.name='npz'")
    full = os.path.expanduser(path)
    if not os.path.isfile(full):
      raise UserError(f'config.data.path={path!r}: no such file (looked at '
                      f'{os.path.abspath(full)})')


def _check_split(config) -> None:
  fields.number(config, 'data.val_fraction', low=0.0, high=1.0, high_open=True)
  split = fields.choice(config, 'data.eval_split', EVAL_SPLITS)
  if split == 'val' and not fields.get(config, 'data.val_fraction') > 0:
    raise UserError("config.data.eval_split='val' needs a validation split: "
                    'set config.data.val_fraction > 0')


def _check_model(config) -> None:
  fields.choice(config, 'model.name', models.MODEL_NAMES)
  fields.choice(config, 'model.compute_dtype', models.COMPUTE_DTYPES,
                default='float32')


def _check_optimizer(config, section: str) -> None:
  """Fields `nbajax.training.from_config` reads."""
  fields.choice(config, f'{section}.optimizer', training.OPTIMIZERS)
  fields.number(config, f'{section}.lr', low=0.0, low_open=True)
  fields.integer(config, f'{section}.epochs', low=1)
  fields.batch_size(config, f'{section}.batch_size')
  fields.number(config, f'{section}.momentum', low=0.0, high=1.0,
                high_open=True)
  fields.number(config, f'{section}.weight_decay', low=0.0)
  schedule = fields.choice(config, f'{section}.schedule', training.SCHEDULES)
  if schedule == 'step':
    for b in fields.get(config, f'{section}.boundaries'):
      if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0:
        raise UserError(f'config.{section}.boundaries must be epochs (ints '
                        '>= 0), got '
                        f'{fields.get(config, f"{section}.boundaries")!r}')
    fields.number(config, f'{section}.decay', low=0.0, low_open=True)
  fields.choice(config, f'{section}.loop', training.LOOPS)
  fields.integer(config, f'{section}.crop_padding', low=0)
  fields.integer(config, f'{section}.cutout', low=0)


def _check_attack(config) -> None:
  """The attack section (also of each grid cell)."""
  name = fields.choice(config, 'attack.name', attacks.ATTACK_NAMES)
  fields.number(config, 'attack.rate', low=0.0, high=1.0, low_open=True)
  fields.integer(config, 'attack.target', low=0)
  mode = fields.choice(config, 'attack.mode', poison.MODES)
  fields.integer(config, 'attack.seed', low=0)
  if attacks.attack_class(name).clean_label and mode != 'all-to-one':
    raise UserError(f"config.attack.mode={mode!r}: clean-label attack "
                    f"{name!r} supports only 'all-to-one'")
  _build_attack(config)
  fields.integer(config, 'attack.epochs', low=0)


def _build_attack(config):
  """The configured attack, built by `nbajax.attacks` (its own checks)."""
  with fields.prefixed('config.attack.params'):
    params = derive.attack_params(config.attack)
    return attacks.get_attack(config.attack.name, **params)


def _check_defense(config, names: Sequence[str]) -> None:
  """The defense section for the defenses in `names`."""
  fields.number(config, 'defense.clean_fraction', low=0.0, high=1.0,
                low_open=True)
  fields.integer(config, 'defense.clean_seed', low=0)
  _check_optimizer(config, 'defense')
  fields.integer(config, 'defense.eval_every', low=1)
  if any(n in defenses.NEEDS_TEACHER for n in names):
    _check_optimizer(config, 'defense.teacher')
  if 'nad' in names:
    _check_layers(config, 'defense.nad')
  if 'nba' in names:
    _check_nba(config)
  for name in names:
    for path in defenses.OPTIMIZER_SECTIONS.get(name, ()):
      _check_optimizer(config, f'defense.{path}')
    if name in defenses.CHECKS:
      # The owner's own check; its messages start with the field's path
      # inside the defense section ('anp.eps must ...').
      try:
        defenses.CHECKS[name](config.defense)
      except (ValueError, TypeError) as e:
        raise UserError(f'config.defense.{e}') from e
      except (KeyError, AttributeError) as e:
        raise UserError(f'config.defense.{name}: a field is missing ({e}); '
                        'see experiments/configs/base.py for every field'
                        ) from e


def _check_layers(config, section: str) -> None:
  fields.number(config, f'{section}.p', low=0.0, low_open=True)
  # Defending, the backdoor run's model decides; every model's default
  # layers are three, so any valid name counts the betas right.
  model = fields.get(config, 'model.name', default='cnn')
  model = model if model in models.MODEL_NAMES else 'cnn'
  with fields.prefixed(f'config.{section}.betas'):
    defenses.layer_betas(fields.get(config, section), model)


def _check_nba(config) -> None:
  s = 'defense.nba'
  _check_layers(config, s)
  # NBA trains with the defense's optimizer fields and its own changes.
  with fields.prefixed(f'config.{s}.optimizer'):
    merged = config.copy_and_resolve_references()
    merged.defense = nba_lib.section(config.defense)
  try:
    _check_optimizer(merged, 'defense')
  except UserError as e:
    raise UserError(f'{e} (with config.{s}.optimizer applied)') from e


def _seed_list(value) -> bool:
  """A list or tuple of ints >= 0 (no bools), possibly empty."""
  return fields.is_sequence(value) and all(
      isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
      for s in value)


def check_defense_seeds(config, section: str) -> None:
  """`config.<section>.defense_seeds` ('grid' or 'ablation'): distinct
  ints >= 0, possibly none."""
  dseeds = fields.get(config, f'{section}.defense_seeds')
  if not _seed_list(dseeds) or len(set(dseeds)) != len(dseeds):
    raise UserError(f'config.{section}.defense_seeds must be a list of '
                    f'distinct ints >= 0 (empty: each model defended with '
                    f'its own seed), got {dseeds!r}')


def _check_grid(config) -> None:
  attack_names = fields.names(config, 'grid.attacks', attacks.ATTACK_NAMES,
                              allow_empty=False)
  defense_names = fields.names(config, 'grid.defenses',
                               defenses.DEFENSE_NAMES, allow_empty=True)
  seeds = fields.get(config, 'grid.seeds')
  if not _seed_list(seeds) or not seeds:
    raise UserError(f'config.grid.seeds must be a non-empty list of ints '
                    f'>= 0, got {seeds!r}')
  check_defense_seeds(config, 'grid')
  overrides = fields.get(config, 'grid.attack_overrides')
  for key in overrides.keys():
    if key not in attacks.ATTACK_NAMES:
      raise UserError(f'config.grid.attack_overrides.{key}: unknown attack; '
                      f'allowed: {list(attacks.ATTACK_NAMES)}')
  for name in attack_names:
    # The cell's attack fields are the overrides applied to config.attack.
    where = (f'config.grid.attack_overrides.{name}' if name in overrides
             else f'grid attack {name!r}')
    with fields.prefixed(where):
      cell = derive.cell_config(config, attack=name, seed=int(seeds[0]),
                                   workdir='')
      _check_attack(cell)
  _check_defense(config, defense_names)


# ------------------------------------------------------- against the data


def _check_batch_fits(config, section: str, n: int, what: str) -> None:
  batch = fields.get(config, f'{section}.batch_size')
  if n < batch:
    raise UserError(
        f'config.{section}.batch_size={batch} is larger than {what} ({n} '
        'images): no full batch to train on; lower the batch size')


def _check_attack_fits(config, dataset) -> None:
  a = config.attack
  k = int(dataset.num_classes)
  if a.target >= k:
    raise UserError(
        f'config.attack.target={a.target} is not a class of {dataset.name} '
        f'({k} classes: 0..{k - 1})')
  attack = _build_attack(config)
  h, w, c = dataset.x_train.shape[1:]
  with fields.prefixed(f'config.attack: the {a.name} trigger does not fit '
                       f'{dataset.name} images ({h}x{w}x{c})'):
    attack = _ready_for_shape(attack, dataset, target=int(a.target),
                              seed=int(a.seed))
    attack.apply(attack_base.to_float(dataset.x_train[:1]))
  with fields.prefixed(f'config.attack.rate={a.rate} on {dataset.name}'):
    poison.select_poison_indices(
        dataset.y_train, clean_label=attack.clean_label, rate=float(a.rate),
        target=int(a.target), mode=a.mode, seed=int(a.seed))


def _ready_for_shape(attack, dataset, *, target: int, seed: int):
  """An attack whose `apply` can run without a clean model.

  A Trojan patch is generated from a clean model later; a stand-in patch of
  the size it will have is enough to know whether it fits. Other attacks
  prepare from a few training images (Refool picks reflections there).
  """
  if isinstance(attack, attacks.Trojan):
    if attack.pattern is not None:
      return attack
    from nbajax.attacks import trojan  # Only its default size is needed.
    h, w = dataset.x_train.shape[1:3]
    size = trojan.default_size(h, w) if attack.size is None else attack.size
    stand_in = np.zeros((int(size), int(size), 1), np.float32)
    return attacks.get_attack('trojan', pattern=stand_in,
                              position=attack.position)
  few = slice(0, min(256, len(dataset.y_train)))
  return attack.prepare(dataset.x_train[few], dataset.y_train[few],
                        target=target, seed=seed, clean_fn=None)


def _check_clean_subset(config, dataset, *, job: str) -> None:
  d = config.defense
  names = (tuple(config.grid.defenses) if job == 'grid' else (d.name,))
  idx = clean_subset_indices(dataset.y_train,
                             fraction=float(d.clean_fraction),
                             seed=int(d.clean_seed))
  sections = ['defense'] + (['defense.teacher'] if any(
      n in defenses.NEEDS_TEACHER for n in names) else [])
  for section in sections:
    batch = fields.get(config, f'{section}.batch_size')
    if len(idx) < batch:
      raise UserError(
          f'config.defense.clean_fraction={d.clean_fraction} gives a clean '
          f'subset of {len(idx)} images of {dataset.name}, fewer than one '
          f'batch of config.{section}.batch_size={batch}: raise '
          'clean_fraction or lower the batch size')
