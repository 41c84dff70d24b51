"""Probe NBA's pseudo samples: do they expose the backdoor, and does the
teacher share it?

For a backdoored model (the student before defense) and its teacher, crafts
pseudo samples from clean-subset images with `config.defense.nba`'s
generator at several radii and step counts, and measures how often each
model sends them to the attack's target (over images whose label is not the
target, as ASR is measured). A backdoor the generator finds shows as a
student rate far above the random-start (K = 0) rate; a teacher rate as high
means that aligning the student to the teacher *on the pseudo sample*
(`align_to='pseudo'`) cannot remove it.
"""

import functools
import logging
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbajax import atomic, generator, losses, rundir
from nbajax.attacks import poison
from nbajax.defenses.base import layer_betas
from nbajax.defenses.nba import behavior_weights
from nbajax.errors import UserError
from nbajax.pipeline import validate
from nbajax.pipeline import defense_setup
from nbajax.report import tables

_LOG = logging.getLogger(__name__)


def _rates(fn: Callable, x: jax.Array, want: jax.Array) -> float:
  """Fraction of `x` that `fn` classifies as `want`."""
  return float(jnp.mean(jnp.argmax(fn(x)[0], -1) == want))


def _check_probe_args(config, *, eps, steps, images, batch_size) -> None:
  """The probe's own arguments and its NBA config, before any work."""
  if not eps or not steps:
    raise UserError('eps and steps need at least one value each')
  if any(not 0 <= e <= 1 for e in eps) or any(
      isinstance(k, bool) or int(k) != k or k < 0 for k in steps):
    raise UserError(f'eps must lie in [0, 1] (0..255 in --eps_255) and steps '
                    f'be ints >= 0, got eps {tuple(eps)}, steps {tuple(steps)}')
  for name, value in (('images', images), ('batch_size', batch_size)):
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise UserError(f'{name} must be an int >= 1, got {value!r}')
  as_nba = config.copy_and_resolve_references()
  as_nba.defense.name = 'nba'  # The probe uses NBA's generator settings.
  validate.validate_config(as_nba, job='defend')


def probe_pseudo_samples(config: ml_collections.ConfigDict, *,
                         backdoor_dir: str, workdir: str | None = None,
                         eps: Sequence[float] = (0.0, 8 / 255, 16 / 255),
                         steps: Sequence[int] = (0, 3), images: int = 256,
                         batch_size: int = 64
                         ) -> list[dict[str, Any]]:
  """Target rates of student and teacher on pseudo samples.

  Args:
    config: config whose `defense` (generator, teacher, clean subset) and
      `seed` are used; data, model and attack come from the backdoor run.
    backdoor_dir: a finished `experiments.attack` workdir.
    workdir: if given, probe.json and probe.md are written there.
    eps: L-inf radii to try (fractions of the [0, 1] range).
    steps: PGD step counts K to try (0: the random start alone).
    images: how many non-target clean-subset images to use (at most).
    batch_size: images per crafted batch (a universal delta is per batch).

  Returns:
    One row per (eps, steps): `eps`, `steps`, `mode`, `images`,
    `student_target`, `teacher_target` (fractions) and `distance` (the
    generator's objective, mean over batches); first a row with `eps` None
    for the attack's own triggered test images.

  Raises:
    UserError: for a bad `defense.nba` field, no non-target image, or an
      empty `eps` / `steps`.
  """
  _check_probe_args(config, eps=eps, steps=steps, images=images,
                    batch_size=batch_size)
  if workdir:
    rundir.check_workdir(workdir, reads=(backdoor_dir,))
  nba = config.defense.nba
  setup = defense_setup.DefenseSetup(config, backdoor_dir)
  teacher = setup.teacher()
  apply = setup.model.apply
  student_fn = lambda z: apply(setup.variables, z, train=False)
  teacher_fn = lambda z: apply(teacher, z, train=False)
  x_all = setup.dataset.x_train[setup.idx]
  y_all = setup.dataset.y_train[setup.idx]
  want_all = poison.attack_labels(
      y_all, target=int(setup.spec['target']), mode=setup.spec['mode'],
      num_classes=setup.dataset.num_classes)
  keep = np.flatnonzero(y_all != want_all)[:images]
  if not len(keep):
    raise UserError('the clean subset has no image outside the target class')
  x = jnp.asarray(x_all[keep], jnp.float32) / 255.0
  want = jnp.asarray(want_all[keep])
  trig = jnp.asarray(setup.sets.x_trig[:images], jnp.float32) / 255.0
  trig_want = jnp.asarray(setup.sets.y_attack[:images])
  rows = [{'eps': None, 'steps': None, 'mode': 'triggered test images',
           'images': int(trig.shape[0]),
           'student_target': _rates(student_fn, trig, trig_want),
           'teacher_target': _rates(teacher_fn, trig, trig_want),
           'distance': None}]
  distance = functools.partial(
      losses.behavior_loss, betas=layer_betas(nba, setup.model_name),
      weights=behavior_weights(nba), p=float(nba.p))
  for e in eps:
    for k in steps:
      craft = jax.jit(functools.partial(
          generator.craft_pseudo_samples, student_fn, teacher_fn,
          eps=float(e), steps=int(k), alpha=float(nba.alpha) or None,
          mode=nba.mode, target=nba.generator_target,
          random_start=bool(nba.random_start), distance_fn=distance))
      s_hits = t_hits = dist = 0.0
      for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        xp = craft(xb, jax.random.fold_in(jax.random.key(config.seed), i))
        n = xb.shape[0]
        s_hits += n * _rates(student_fn, xp, want[i:i + batch_size])
        t_hits += n * _rates(teacher_fn, xp, want[i:i + batch_size])
        dist += n * float(distance(student_fn(xp)[1], teacher_fn(xb)[1]))
      n = x.shape[0]
      rows.append({'eps': float(e), 'steps': int(k), 'mode': nba.mode,
                   'images': int(n), 'student_target': s_hits / n,
                   'teacher_target': t_hits / n, 'distance': dist / n})
      _LOG.info('eps %.0f/255 K %d: student -> target %.1f %%, teacher -> '
                'target %.1f %%', 255 * e, k,
                100 * rows[-1]['student_target'],
                100 * rows[-1]['teacher_target'])
  if workdir:
    _write(rows, workdir, attack=setup.spec['attack']['name'])
  _LOG.info('\n' + probe_table(rows))
  return rows


def probe_table(rows: Sequence[dict[str, Any]]) -> str:
  """Markdown table of `probe_pseudo_samples` rows (rates in %)."""
  lines = ['| input | images | student -> target | teacher -> target | '
           'distance |', '|:--|--:|--:|--:|--:|']
  for r in rows:
    name = (r['mode'] if r['eps'] is None else
            f'{r["mode"]} ε {255 * r["eps"]:.0f}/255, K {r["steps"]}')
    dist = tables.MISSING if r['distance'] is None else f'{r["distance"]:.3f}'
    lines.append(f'| {name} | {r["images"]} | '
                 f'{100 * r["student_target"]:.1f} | '
                 f'{100 * r["teacher_target"]:.1f} | {dist} |')
  return '\n'.join(lines)


def _write(rows, workdir: str, *, attack: str) -> None:
  with rundir.locked(workdir):
    _write_files(rows, workdir, attack=attack)


def _write_files(rows, workdir: str, *, attack: str) -> None:
  atomic.write_json(os.path.join(workdir, 'probe.json'), rows)
  atomic.write_text_atomic(
      os.path.join(workdir, 'probe.md'),
      f'# Pseudo samples on {attack}: fraction sent to the target (%)\n\n'
      + probe_table(rows) + '\n')
