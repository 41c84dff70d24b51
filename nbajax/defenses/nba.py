"""NBA: Neural Behavior Alignment (Ying & Wu, Cybersecurity 2023), our form.

Only the paper's abstract is available. From it: distillation that
(1) transfers high-level representations of neural behavior rather than
outputs, and (2) crafts pseudo samples that make the student show its
backdoor behavior, then aligns that behavior with the teacher's benign one.
Everything concrete below is OUR formulation (docs/design.md §7), each choice a
field of `cfg.nba`:

* behavior of a layer: weighted `spatial` (NAD's attention map), `channel`
  (normalized per-channel activation) and `relation` (channel Gram matrix)
  representations (`weights`), over `layers` with `betas`;
* pseudo samples x~: `steps` sign-PGD steps (size `alpha`, default eps/2)
  in the L-inf ball `eps`, `mode` 'universal' or 'per_sample', maximizing
  the student-teacher behavior distance, both models in eval mode
  (`nbajax.generator`); `generator_target` says whether the teacher sees
  the clean x or x~ while crafting;
* loss: CE(S(x), y) + sum_l beta_l D_l(S(x), T(x))
        + gamma * sum_l beta_l D_l(S(x~), T(align))
        + lam * CE(S(x~), y) + kd * KD(S(x~), T(align)),
  with `align_to` 'clean' (T on x) or 'pseudo' (T on x~);
* `pseudo_bn`: the student sees x~ in train mode with its batch-norm update
  discarded ('train', the running statistics stay those of clean data) or
  in eval mode ('eval');
* `optimizer`: changes of the defense's optimizer fields NBA trains with
  (the default: lr x 0.1 for the last 4 of 20 epochs);
* `pseudo_epochs`: the epochs that use pseudo samples; the ones after them
  train on the clean terms alone (CE + behavior on x) (0, the default:
  every epoch).

With weights spatial-only and gamma = lam = kd = 0 this is NAD exactly.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import ml_collections

from nbajax import generator, losses
from nbajax.defenses.base import (DefenseInputs, Plan, check_integer,
                                  check_number, layer_betas)
from nbajax.training import classification_sums

ALIGN_TO = ('clean', 'pseudo')
PSEUDO_BN = ('train', 'eval')


def behavior_weights(cfg: ml_collections.ConfigDict) -> dict[str, float]:
  """Non-zero `{kind: weight}` of `cfg.weights` (spatial/channel/relation).

  Raises:
    ValueError: see `losses.check_behavior_weights`.
  """
  try:
    return losses.check_behavior_weights(cfg.weights)
  except ValueError as e:
    raise ValueError(f'nba.{e}') from e


def check(cfg: ml_collections.ConfigDict) -> None:
  """The `nba` fields NBA itself reads (its layers, betas and optimizer
  changes are checked with the sections they belong to).

  The generator's and the behavior loss's own checks decide `steps`,
  `mode`, `generator_target` and `weights`.

  Raises:
    ValueError: naming the first bad field ('nba.eps must ...').
  """
  c = cfg.nba
  eps = c.eps
  if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps > 1:
    raise ValueError(f'nba.eps must be in [0, 1] (units of [0, 1] pixels), '
                     f'got {eps}: did you mean {eps:g}/255?')
  check_number(c, 'nba', 'eps', low=0.0, high=1.0)
  check_number(c, 'nba', 'alpha', low=0.0)
  for name in ('gamma', 'lam', 'kd'):
    check_number(c, 'nba', name, low=0.0)
  check_number(c, 'nba', 'kd_temperature', low=0.0, low_open=True)
  behavior_weights(c)
  try:
    generator.check_settings(c.eps, c.steps, c.mode, c.generator_target)
  except ValueError as e:
    # The generator names its argument; only 'target' is another field.
    arg = str(e).split(' ', 1)[0]
    field = 'generator_target' if arg == 'target' else arg
    raise ValueError(f'nba.{field}: {e}') from e
  for name, allowed in (('align_to', ALIGN_TO), ('pseudo_bn', PSEUDO_BN)):
    if c[name] not in allowed:
      raise ValueError(f'nba.{name}={c[name]!r} is not allowed; allowed: '
                       f'{list(allowed)}')
  if not isinstance(c.random_start, bool):
    raise ValueError('nba.random_start must be True or False, got '
                     f'{c.random_start!r}')
  check_integer(c, 'nba', 'pseudo_epochs', low=0)
  check_pseudo_epochs(c.pseudo_epochs, section(cfg).epochs)


def check_pseudo_epochs(pseudo_epochs: int, epochs: int) -> None:
  """A phased NBA (`pseudo_epochs` > 0) must leave an epoch without pseudo
  samples.

  Raises:
    ValueError: when `pseudo_epochs` is not below the `epochs` NBA trains.
  """
  if pseudo_epochs and pseudo_epochs >= epochs:
    raise ValueError(
        f'nba.pseudo_epochs={pseudo_epochs} leaves none of the {epochs} '
        'epochs NBA trains without pseudo samples: use 0 for pseudo samples '
        'in every epoch')


def make_nba_loss(model, cfg: ml_collections.ConfigDict, *,
                  betas: dict[str, float], phased: bool = False):
  """Loss `(params, batch_stats, x, y, key, aux) -> (loss, aux_out)`.

  Args:
    model: linen module shared by student and teacher.
    cfg: `defense.nba` config.
    betas: layer -> beta.
    phased: False: `aux` is the teacher's variables and every step uses
      the pseudo samples. True: `aux` is `{'teacher': variables, 'pseudo':
      bool[]}` and a step whose `pseudo` is False does not use the pseudo
      samples: its loss and gradient are `cfg`'s with gamma = lam = kd = 0,
      the same terms logged (the pseudo ones at 0).

  Raises:
    ValueError: for an unknown `align_to`, `pseudo_bn` or generator field.
  """
  if cfg.align_to not in ALIGN_TO:
    raise ValueError(f'nba.align_to must be one of {ALIGN_TO}, got '
                     f'{cfg.align_to!r}')
  if cfg.pseudo_bn not in PSEUDO_BN:
    raise ValueError(f'nba.pseudo_bn must be one of {PSEUDO_BN}, got '
                     f'{cfg.pseudo_bn!r}')
  weights = behavior_weights(cfg)
  p = float(cfg.p)
  gamma, lam, kd = float(cfg.gamma), float(cfg.lam), float(cfg.kd)
  distance = functools.partial(losses.behavior_loss, betas=betas,
                               weights=weights, p=p)
  craft = functools.partial(
      generator.craft_pseudo_samples, eps=float(cfg.eps),
      steps=int(cfg.steps), alpha=float(cfg.alpha) or None, mode=cfg.mode,
      target=cfg.generator_target, random_start=bool(cfg.random_start),
      distance_fn=distance)

  def outputs(params, batch_stats, x, key, teacher):
    """Student and teacher outputs every term is computed from."""
    variables = {'params': params, 'batch_stats': batch_stats}
    frozen = jax.lax.stop_gradient(variables)
    teacher_fn = lambda z: model.apply(teacher, z, train=False)
    x_pseudo = craft(lambda z: model.apply(frozen, z, train=False),
                     teacher_fn, x, key)
    (logits, feats), updates = model.apply(variables, x, train=True,
                                           mutable=['batch_stats'])
    t_logits, t_feats = teacher_fn(x)
    if cfg.pseudo_bn == 'train':  # Its BN update is dropped on purpose.
      (p_logits, p_feats), _ = model.apply(variables, x_pseudo, train=True,
                                           mutable=['batch_stats'])
    else:
      p_logits, p_feats = model.apply(variables, x_pseudo, train=False)
    if cfg.align_to == 'clean':
      a_logits, a_feats = t_logits, t_feats
    else:
      a_logits, a_feats = teacher_fn(x_pseudo)
    return (logits, feats, t_feats, p_logits, p_feats, a_logits, a_feats,
            updates['batch_stats'])

  def full_loss(logits, feats, t_feats, y, p_logits, p_feats, a_logits,
                a_feats):
    return losses.nba_loss(
        logits, feats, t_feats, y, p_logits, p_feats, a_logits, a_feats,
        betas=betas, weights=weights, gamma=gamma, lam=lam, kd_weight=kd,
        temperature=float(cfg.kd_temperature), p=p)

  def loss_fn(params, batch_stats, x, y, key, teacher):
    (logits, feats, t_feats, p_logits, p_feats, a_logits, a_feats,
     new_stats) = outputs(params, batch_stats, x, key, teacher)
    loss, terms = full_loss(logits, feats, t_feats, y, p_logits, p_feats,
                            a_logits, a_feats)
    sums = classification_sums(logits, y, loss, terms)
    return loss, (new_stats, sums)

  if not phased:
    return loss_fn

  def phased_loss_fn(params, batch_stats, x, y, key, aux):
    # Both losses are computed and one is selected: on XLA:CPU a lax.cond
    # around the crafting ran every step 2-4x slower than plain NBA's
    # (docs/design.md §7), more than the crafting a clean step would skip.
    (logits, feats, t_feats, p_logits, p_feats, a_logits, a_feats,
     new_stats) = outputs(params, batch_stats, x, key, aux['teacher'])
    full, full_terms = full_loss(logits, feats, t_feats, y, p_logits,
                                 p_feats, a_logits, a_feats)
    clean, clean_terms = losses.nba_loss(logits, feats, t_feats, y,
                                         betas=betas, weights=weights, p=p)
    on = aux['pseudo']
    loss = jnp.where(on, full, clean)
    terms = jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b),
                                   full_terms, clean_terms)
    sums = classification_sums(logits, y, loss, terms)
    return loss, (new_stats, sums)

  return phased_loss_fn


def pseudo_phase(teacher, pseudo_epochs: int):
  """`epoch_aux` of a phased NBA: `(variables, epoch) -> {'teacher',
  'pseudo'}`, pseudo samples on in epochs `0 .. pseudo_epochs - 1`."""
  def aux(variables, epoch):
    del variables  # The phase depends on the epoch alone.
    return {'teacher': teacher, 'pseudo': jnp.asarray(epoch < pseudo_epochs)}
  return aux


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """NBA with the fields of `cfg.nba` (see module docstring).

  Raises:
    ValueError: without a teacher, or for a bad `cfg.nba` field.
  """
  if inputs.teacher is None:
    raise ValueError('nba needs a teacher (the fine-tuned backdoored model)')
  betas = layer_betas(cfg.nba, inputs.model_name)
  trained = section(cfg)
  teacher = jax.device_get(inputs.teacher)
  pseudo_epochs = int(cfg.nba.pseudo_epochs)
  if not pseudo_epochs:
    return Plan(loss_fn=make_nba_loss(inputs.model, cfg.nba, betas=betas),
                start=inputs.variables, aux=teacher, section=trained)
  check_pseudo_epochs(pseudo_epochs, trained.epochs)
  return Plan(
      loss_fn=make_nba_loss(inputs.model, cfg.nba, betas=betas, phased=True),
      start=inputs.variables, section=trained,
      epoch_aux=pseudo_phase(teacher, pseudo_epochs))


def section(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The defense's optimizer section with `cfg.nba.optimizer`'s changes.

  Raises:
    ValueError: a change names no optimizer field of the section.
  """
  changes = cfg.nba.optimizer.to_dict()
  unknown = [k for k in changes
             if k not in cfg or isinstance(cfg[k], ml_collections.ConfigDict)]
  if unknown:
    raise ValueError(f'nba.optimizer: {unknown} are not optimizer fields of '
                     'the defense section')
  merged = cfg.copy_and_resolve_references()
  for key, value in changes.items():
    merged[key] = value
  return merged
