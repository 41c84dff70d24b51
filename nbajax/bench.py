"""Throughput of the training steps, measured the way the jobs run them.

For a model and batch size, `measure_step` times the library's own epoch
loop (`training.Trainer.run_epoch`, the code every job trains with) on
synthetic data: one epoch that includes the compilation, then timed epochs
after it. Kinds of step:

* `train`: plain cross entropy (training from scratch, FT);
* `nad`: NAD's loss against a frozen teacher;
* `nba`: NBA's loss with the config's generator (its K PGD steps included).

`full_run` times a whole NAD or NBA defense as the jobs do it: the teacher
(`teacher_epochs` of fine-tuning) then the defense, on `images` synthetic
images. Numbers are the caller's machine's; nothing here asserts a speed.
"""

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbajax import defenses, models, training
from nbajax.defenses import nad, nba
from nbajax.training import seeds as seeds_lib

KINDS = ('train', 'nad', 'nba')


@dataclasses.dataclass(frozen=True)
class StepTiming:
  """One measured (model, batch, kind).

  Attributes:
    model, kind, batch: what was measured.
    images_per_s: steady-state throughput (timed epochs, after compiling).
    first_epoch_s: wall time of the first epoch (compilation included).
    compile_s: `first_epoch_s` minus one steady epoch (the compile share).
    steps: optimizer steps per timed epoch; epochs: timed epochs.
    seeds: runs trained at once (`training.seeds`); images_per_s counts
      the images of all of them.
    dtype: the model's compute dtype (`models.get_model`'s `dtype`).
  """
  model: str
  kind: str
  batch: int
  images_per_s: float
  first_epoch_s: float
  compile_s: float
  steps: int
  epochs: int
  seeds: int = 1
  dtype: str = 'float32'


def synthetic(n: int, *, image_size: int = 32, channels: int = 3,
              classes: int = 10, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
  """n random uint8 images [n, s, s, c] and int32 labels [n]."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (n, image_size, image_size, channels), np.uint8)
  return x, (np.arange(n) % classes).astype(np.int32)


def _loss(kind: str, model, model_name: str,
          defense: ml_collections.ConfigDict):
  if kind == 'train':
    return training.make_ce_loss(model)
  if kind == 'nad':
    return nad.make_nad_loss(
        model, betas=defenses.layer_betas(defense.nad, model_name),
        p=float(defense.nad.p))
  if kind == 'nba':
    return nba.make_nba_loss(
        model, defense.nba, betas=defenses.layer_betas(defense.nba,
                                                       model_name))
  raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')


def measure_step(model_name: str, kind: str, batch: int, *,
                 defense: ml_collections.ConfigDict, steps: int = 5,
                 epochs: int = 1, image_size: int = 32, classes: int = 10,
                 loop: str = 'auto', seeds: int = 1,
                 dtype: str = 'float32') -> StepTiming:
  """Times `kind`'s training step for `model_name` at batch size `batch`.

  Args:
    model_name: a `models.MODEL_NAMES` entry.
    kind: one of `KINDS`.
    batch: global batch size (a multiple of the device count).
    defense: a `config.defense` section (NAD's and NBA's settings).
    steps: optimizer steps per epoch.
    epochs: timed epochs after the first (which compiles).
    image_size, classes: synthetic data shape.
    loop: 'auto', 'step' or 'scan' (see `training.resolve_loop`).
    seeds: > 1 times `training.seeds.SeedTrainer` (one device, the 'step'
      loop) training that many runs at once.
    dtype: compute dtype, 'float32' or 'bfloat16' (parameters float32).

  Returns:
    The timing.
  """
  model = models.get_model(model_name, classes, dtype=dtype)
  x, y = synthetic(batch * steps, image_size=image_size, classes=classes)
  loss_fn = _loss(kind, model, model_name, defense)
  tx = training.make_optimizer(training.make_schedule(
      lr=0.01, schedule='constant', steps_per_epoch=steps, epochs=epochs + 1))
  key = jax.random.key(0)
  shape = tuple(x.shape[1:])
  if seeds > 1:
    trainer = seeds_lib.SeedTrainer(loss_fn, batch_size=batch)
    state = seeds_lib.stack([training.create_train_state(
        model, tx, jax.random.key(s), shape) for s in range(seeds)])
    key = jax.random.split(key, seeds)
    mesh = None
  else:
    trainer = training.Trainer(loss_fn, batch_size=batch, loop=loop)
    mesh = trainer.mesh
    state = training.replicate(
        training.create_train_state(model, tx, key, shape), mesh)
  teacher = None
  if kind != 'train':
    teacher = training.create_train_state(
        model, tx, jax.random.key(1), shape).variables
    teacher = training.replicate(teacher, mesh) if mesh else teacher
  x_all, y_all = jnp.asarray(x), jnp.asarray(y)
  if mesh:
    x_all, y_all = training.replicate((x_all, y_all), mesh)
  t0 = time.perf_counter()
  state, _ = trainer.run_epoch(state, x_all, y_all, 0, key, teacher)
  jax.block_until_ready(state)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for epoch in range(1, epochs + 1):
    state, _ = trainer.run_epoch(state, x_all, y_all, epoch, key, teacher)
  jax.block_until_ready(state)
  steady = (time.perf_counter() - t0) / epochs
  return StepTiming(model=model_name, kind=kind, batch=batch,
                    images_per_s=seeds * batch * steps / steady,
                    first_epoch_s=first, compile_s=max(0.0, first - steady),
                    steps=steps, epochs=epochs, seeds=seeds, dtype=dtype)


def full_run(model_name: str, kind: str, *,
             defense: ml_collections.ConfigDict, images: int = 2500,
             image_size: int = 32, classes: int = 10,
             dtype: str = 'float32') -> dict[str, Any]:
  """Wall time of a whole defense as the jobs run it: teacher, then defense.

  Args:
    model_name: the model.
    kind: 'nad' or 'nba'.
    defense: a `config.defense` section (its teacher and optimizer fields,
      epochs included, are used as they are).
    images: synthetic clean-subset size.
    dtype: compute dtype, 'float32' or 'bfloat16' (parameters float32).

  Returns:
    {'model', 'kind', 'images', 'dtype', 'teacher_epochs', 'epochs',
     'teacher_s', 'defense_s', 'total_s'}.
  """
  model = models.get_model(model_name, classes, dtype=dtype)
  x, y = synthetic(images, image_size=image_size, classes=classes, seed=1)
  start = jax.device_get(model.init(jax.random.key(0), jnp.zeros(
      (1, *x.shape[1:]), jnp.float32), train=False))
  inputs = defenses.DefenseInputs(model=model, model_name=model_name,
                                  variables=start, x_clean=x, y_clean=y,
                                  key=jax.random.key(1))
  t0 = time.perf_counter()
  teacher, _ = defenses.defend('ft', inputs, defense.teacher, name='teacher')
  teacher_s = time.perf_counter() - t0
  inputs = dataclasses.replace(inputs, teacher=teacher)
  t0 = time.perf_counter()
  defenses.defend(kind, inputs, defense, name=kind)
  defense_s = time.perf_counter() - t0
  return {'model': model_name, 'kind': kind, 'images': images,
          'dtype': dtype, 'teacher_epochs': int(defense.teacher.epochs),
          'epochs': int(defense.epochs), 'teacher_s': teacher_s,
          'defense_s': defense_s, 'total_s': teacher_s + defense_s}


def device_info() -> dict[str, Any]:
  """Backend, device count and kind, peak memory where reported, and the
  XLA flags the process runs with."""
  devices = jax.devices()
  stats = devices[0].memory_stats() or {}
  return {'backend': jax.default_backend(), 'jax': jax.__version__,
          'device_count': len(devices), 'device_kind': devices[0].device_kind,
          'peak_bytes_in_use': stats.get('peak_bytes_in_use'),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}
