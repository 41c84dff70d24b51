"""The student loss of our NBA formulation (docs/design.md §7)."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from nbajax.losses._behavior import behavior_loss
from nbajax.losses._classification import cross_entropy, kd_loss
from nbajax.losses._common import ArrayLike, Features, is_static_zero


def _require(value, name: str, term: str):
  if value is None:
    raise ValueError(f'nba_loss: {term} needs {name}, got None.')
  return value


def nba_loss(
    student_logits: ArrayLike,
    student_features: Features,
    teacher_features: Features,
    labels: ArrayLike,
    pseudo_logits: ArrayLike | None = None,
    pseudo_features: Features | None = None,
    target_logits: ArrayLike | None = None,
    target_features: Features | None = None,
    *,
    betas: Mapping[str, float],
    weights: Mapping[str, float],
    gamma: float = 0.0,
    lam: float = 0.0,
    kd_weight: float = 0.0,
    temperature: float = 1.0,
    pseudo_betas: Mapping[str, float] | None = None,
    p: float = 2.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The student loss of our NBA formulation (docs/design.md §7), from outputs.

      loss = CE(S(x), y) + behavior_loss(S(x), T(x))
           + gamma * behavior_loss(S(x~), T(target))
           + lam * CE(S(x~), y)
           + kd_weight * kd_loss(S(x~), T(target))

  where `x~` are the pseudo samples (`nbajax.generator`) and `target` is
  `x` or `x~` (the caller's `align_to` choice: it decides which teacher
  outputs are passed as `target_*`). Both behavior terms are beta-weighted
  over layers. A term whose weight is a Python zero is skipped, so it needs
  no inputs and NAD (`weights={'spatial': 1.0}`, gamma = lam = kd_weight =
  0) is exactly `cross_entropy + nad_loss`.

  Args:
    student_logits: `[B, K]`, student on clean `x`.
    student_features: layer -> `[B, H, W, C]`, student on `x`.
    teacher_features: layer -> `[B, H, W, C]`, teacher on `x`.
    labels: `int[B]` true labels of `x` (and so of `x~`).
    pseudo_logits: `[B, K]`, student on `x~` (for `lam`).
    pseudo_features: layer -> `[B, H, W, C]`, student on `x~` (for `gamma`).
    target_logits: `[B, K]`, teacher on the target input (for `kd_weight`).
    target_features: layer -> `[B, H, W, C]`, teacher on the target input
      (for `gamma`).
    betas: layer -> weight of the clean alignment term.
    weights: behavior kind -> weight, see `behavior_distance`.
    gamma: weight of the pseudo-sample alignment term.
    lam: weight of the CE on pseudo samples.
    kd_weight: weight of the KD term on pseudo samples.
    temperature: KD temperature.
    pseudo_betas: layer -> weight of the pseudo alignment; default `betas`.
    p: power for `'spatial'` and `'channel'`.

  Returns:
    `(loss, terms)`: scalar loss and the unweighted terms `'ce'`, `'align'`,
    `'pseudo_align'`, `'pseudo_ce'`, `'pseudo_kd'` (skipped terms are 0).

  Raises:
    ValueError: if a term with a nonzero weight lacks its inputs, or as
      `behavior_loss`.
    KeyError: as `behavior_loss`.
  """
  zero = jnp.zeros((), jnp.float32)
  terms = dict(pseudo_align=zero, pseudo_ce=zero, pseudo_kd=zero)
  terms['ce'] = cross_entropy(student_logits, labels)
  terms['align'] = behavior_loss(
      student_features, teacher_features, betas=betas, weights=weights, p=p)
  loss = terms['ce'] + terms['align']
  if not is_static_zero(gamma):
    terms['pseudo_align'] = behavior_loss(
        _require(pseudo_features, 'pseudo_features', 'gamma'),
        _require(target_features, 'target_features', 'gamma'),
        betas=betas if pseudo_betas is None else pseudo_betas,
        weights=weights, p=p)
    loss = loss + gamma * terms['pseudo_align']
  if not is_static_zero(lam):
    terms['pseudo_ce'] = cross_entropy(
        _require(pseudo_logits, 'pseudo_logits', 'lam'), labels)
    loss = loss + lam * terms['pseudo_ce']
  if not is_static_zero(kd_weight):
    terms['pseudo_kd'] = kd_loss(
        _require(pseudo_logits, 'pseudo_logits', 'kd_weight'),
        _require(target_logits, 'target_logits', 'kd_weight'),
        temperature=temperature)
    loss = loss + kd_weight * terms['pseudo_kd']
  return loss, terms
