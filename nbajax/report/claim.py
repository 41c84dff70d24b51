"""The NBA paper's claim and the removal target, checked on result cells.

Two bars, each checked on the means over seeds and, when the cells hold two
or more seeds, on every seed alone and paired (the per-seed differences
between the method and a baseline, mean ± std, and on how many seeds the
bar is met):

- **The claim** (`check_claim`, issue #4, after the NBA abstract): the
  method leaves a lower mean ASR than each baseline (NAD and FT), at no
  more than `max_extra_acc_loss` more accuracy loss than each.
- **The target** (`check_target`, issue #14): the method's mean ASR is at
  most half of each baseline's and at most 5 % absolute, at no more than 1
  point of extra accuracy loss against NAD (FT, which keeps accuracy by
  keeping the backdoor, is compared on ASR only).

Means are unweighted over the attacks every compared defense has. Only
implanted backdoors count, judged per backdoored model: a model whose ASR
before defense is under `min_implanted_asr` cannot tell defenses apart
(e.g. WaNet after too few epochs, or one seed of an attack that did not
take), so its cells (and its defense cells, labelled '<seed>/<defense
seed>' with defense seeds) are left out and named; an attack is left out
when none of its models is implanted.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
import dataclasses
from typing import Any

import numpy as np

from nbajax.report import cells as cells_lib


@dataclasses.dataclass(frozen=True)
class ClaimCheck:
  """Outcome of `check_claim` or `check_target`.

  Attributes:
    holds: True when the bar is met on the means; None when it cannot be
      checked (a defense missing on every implanted attack).
    attacks: the attacks the means are over.
    lines: a verdict line, one line per baseline, then (with two or more
      seeds) one line per seed and one paired line per baseline (markdown).
    per_seed: seed -> whether the bar is met on that seed's cells alone;
      empty with fewer than two seeds.
  """
  holds: bool | None
  attacks: tuple[str, ...]
  lines: tuple[str, ...]
  per_seed: Mapping[Any, bool] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Means:
  """Mean ASR and ACC over the attacks, per defense, of one set of cells."""
  asr: Mapping[str, float]
  acc: Mapping[str, float]


# A bar: (means, method) -> (met, one line per baseline / condition).
_Bar = Callable[[_Means, str], tuple[bool, list[str]]]


def _means(groups, attacks, defenses) -> _Means | None:
  """Means over `attacks` of grouped cells (`cells.group_cells`)."""
  asr, acc = {}, {}
  for d in defenses:
    for key, out in (('asr', asr), ('acc', acc)):
      out[d] = cells_lib.mean_over_attacks(groups, attacks, d, key,
                                           spread='std').mean
      if out[d] is None:
        return None
  return _Means(asr, acc)


def _implanted(cells, groups, defenses) -> tuple[str, ...]:
  """The attacks with a model before defense and every compared defense
  (`cells` already without the models that did not implant)."""
  return tuple(
      a for a in cells_lib.mean_attacks(cells_lib.attack_order(cells))
      if all(groups.get((a, d)) for d in ('none', *defenses)))


def _model(cell) -> tuple[str, str]:
  """(attack, model seed) of the backdoored model a cell belongs to; the
  model seed of a seed label '0/2' is '0'."""
  return cell['attack'], str(cell.get('seed')).split('/')[0]


def _drop_unimplanted(cells, min_implanted_asr
                      ) -> tuple[list[Any], dict[tuple[str, str], float]]:
  """`cells` without those of backdoored models ('none' cells) whose ASR is
  under `min_implanted_asr`, and {(attack, model seed): ASR} of those."""
  asr = {_model(c): cells_lib.value(c, 'asr') or 0.0
         for c in cells if c['defense'] == 'none'}
  weak = {model: a for model, a in asr.items() if a < min_implanted_asr}
  kept = [c for c in cells if _model(c) not in weak]
  return kept, weak


def _common_seeds(cells, groups, attacks, defenses) -> list[Any]:
  """Seeds every (attack, compared defense) has, in first-seen order (the
  models before defense may be labelled otherwise: a grid with defense
  seeds labels its defense cells '<seed>/<defense seed>')."""
  have = [{c.get('seed') for c in groups.get((a, d), [])}
          for a in attacks for d in defenses]
  return [s for s in cells_lib.seeds_of(cells)
          if s is not None and all(s in h for h in have)]


def _check(cells, *, name: str, rule: str, method: str,
           baselines: Sequence[str], bar: _Bar,
           min_implanted_asr: float) -> ClaimCheck:
  cells, dropped = _drop_unimplanted(cells_lib.validate_cells(cells),
                                     min_implanted_asr)
  groups = cells_lib.group_cells(cells)
  defenses = (method, *baselines)
  attacks = _implanted(cells, groups, defenses)
  if not attacks:
    return ClaimCheck(None, (), (
        f'{name} not checkable: no attack with ASR ≥ '
        f'{100 * min_implanted_asr:.0f} % before defense has all of '
        f'{", ".join(defenses)}.',))
  means = _means(groups, attacks, defenses)
  if means is None:
    return ClaimCheck(None, attacks, (
        f'{name} not checkable: a mean ACC or ASR of {", ".join(defenses)} '
        f'over {", ".join(attacks)} is missing (a cell without the metric).',))
  holds, lines = bar(means, method)
  lines += [f'- left out, not implanted: {a} seed {s} (ASR {100 * asr:.1f} '
            '% before defense)' for (a, s), asr in dropped.items()
            if a in attacks]
  verdict = (f'**{name} {"holds" if holds else "does not hold"}** '
             f'({rule}), over '
             f'{cells_lib.count_of(len(attacks), "implanted attack")}: '
             f'{", ".join(attacks)}.')
  seeds = _common_seeds(cells, groups, attacks, defenses)
  if len(seeds) < 2:
    return ClaimCheck(holds, attacks, (verdict, *lines))
  per_seed, seed_means, seed_lines = {}, {}, []
  for seed in seeds:
    means = _means(cells_lib.group_cells(
        c for c in cells if c.get('seed') == seed), attacks, defenses)
    if means is None:
      seed_lines.append(f'- seed {seed}: not checkable (a cell without ACC '
                        'or ASR)')
      continue
    met, parts = bar(means, method)
    per_seed[seed], seed_means[seed] = met, means
    seed_lines.append(f'- seed {seed}: {"holds" if met else "does not hold"}'
                      f' ({"; ".join(p.removeprefix("- ") for p in parts)})')
  lines += [f'- on each seed alone: holds on {sum(per_seed.values())} of '
            f'{len(seeds)}', *seed_lines]
  if len(seed_means) < 2:  # No pairs to take a spread over.
    return ClaimCheck(holds, attacks, (verdict, *lines), per_seed)
  for b in baselines:
    d_asr = [100 * (m.asr[method] - m.asr[b]) for m in seed_means.values()]
    d_acc = [100 * (m.acc[b] - m.acc[method]) for m in seed_means.values()]
    lines.append(
        f'- paired over {len(seed_means)} seeds, {method} − {b}: ASR '
        f'{np.mean(d_asr):+.1f} ± {np.std(d_asr, ddof=1):.1f} points, '
        f'extra ACC loss {np.mean(d_acc):+.2f} ± '
        f'{np.std(d_acc, ddof=1):.2f} points (mean ± std over seeds)')
  return ClaimCheck(holds, attacks, (verdict, *lines), per_seed)


def check_claim(cells: Iterable[Mapping[str, Any]], *, method: str = 'nba',
                baselines: Sequence[str] = ('nad', 'ft'),
                max_extra_acc_loss: float = 0.01,
                min_implanted_asr: float = 0.5) -> ClaimCheck:
  """Checks "lower mean ASR than each baseline at <= 1 point extra ACC loss".

  Args:
    cells: result cells (see `nbajax.report`), with 'none' cells for the
      models before defense.
    method: the defense the claim is about.
    baselines: the defenses it must beat.
    max_extra_acc_loss: fraction of accuracy the method may lose beyond a
      baseline (0.01 = 1 point).
    min_implanted_asr: backdoored models whose 'none' ASR is below this
      fraction are left out with their defense cells (and an attack with
      no model left).

  Returns:
    A `ClaimCheck`.

  Raises:
    ValueError: as `nbajax.report.cells.validate_cells`.
  """
  def bar(m: _Means, method: str) -> tuple[bool, list[str]]:
    lines, holds = [], True
    for b in baselines:
      extra = m.acc[b] - m.acc[method]
      ok = m.asr[method] < m.asr[b] and extra <= max_extra_acc_loss + 1e-12
      holds = holds and ok
      lines.append(
          f'- {method} vs {b}: mean ASR {100 * m.asr[method]:.1f} vs '
          f'{100 * m.asr[b]:.1f} %, extra ACC loss {100 * extra:+.2f} points '
          f'(allowed {100 * max_extra_acc_loss:.2f}): '
          f'{"beaten" if ok else "not beaten"}')
    return holds, lines

  rule = (f'{method} leaves a lower mean ASR than {" and ".join(baselines)} '
          f'at ≤ {100 * max_extra_acc_loss:g} point extra ACC loss')
  return _check(cells, name='Claim', rule=rule, method=method,
                baselines=baselines, bar=bar,
                min_implanted_asr=min_implanted_asr)


def _check_acc_baseline(acc_baseline: str, baselines: Sequence[str]) -> None:
  """Raises ValueError unless `acc_baseline` is one of `baselines`."""
  if acc_baseline not in baselines:
    raise ValueError(f'acc_baseline {acc_baseline!r} is not one of the '
                     f'baselines {tuple(baselines)}')


def check_target(cells: Iterable[Mapping[str, Any]], *, method: str = 'nba',
                 baselines: Sequence[str] = ('nad', 'ft'),
                 asr_ratio: float = 0.5, max_asr: float = 0.05,
                 acc_baseline: str = 'nad',
                 max_extra_acc_loss: float = 0.01,
                 min_implanted_asr: float = 0.5) -> ClaimCheck:
  """Checks "mean ASR <= half of each baseline's and <= 5 %, ACC within 1
  point of NAD's".

  Args:
    cells: result cells (see `nbajax.report`), with 'none' cells.
    method: the defense the target is about.
    baselines: the defenses whose mean ASR it must cut by `asr_ratio`.
    asr_ratio: the method's mean ASR may be at most this times a
      baseline's.
    max_asr: and at most this fraction absolute.
    acc_baseline: the baseline whose accuracy it must keep (must be one of
      `baselines`).
    max_extra_acc_loss: fraction of accuracy it may lose beyond
      `acc_baseline`.
    min_implanted_asr: as in `check_claim`.

  Returns:
    A `ClaimCheck`.

  Raises:
    ValueError: `acc_baseline` not among `baselines`; as
      `nbajax.report.cells.validate_cells`.
  """
  _check_acc_baseline(acc_baseline, baselines)

  def bar(m: _Means, method: str) -> tuple[bool, list[str]]:
    lines, holds = [], True
    for b in baselines:
      ok = m.asr[method] <= asr_ratio * m.asr[b] + 1e-12
      line = (f'- {method} vs {b}: mean ASR {100 * m.asr[method]:.1f} vs '
              f'{100 * m.asr[b]:.1f} % (at most {100 * asr_ratio * m.asr[b]:.1f})')
      if b == acc_baseline:
        extra = m.acc[b] - m.acc[method]
        ok = ok and extra <= max_extra_acc_loss + 1e-12
        line += (f', extra ACC loss {100 * extra:+.2f} points (allowed '
                 f'{100 * max_extra_acc_loss:.2f})')
      holds = holds and ok
      lines.append(f'{line}: {"met" if ok else "not met"}')
    ok = m.asr[method] <= max_asr + 1e-12
    lines.append(f'- {method} mean ASR {100 * m.asr[method]:.1f} % (at most '
                 f'{100 * max_asr:g}): {"met" if ok else "not met"}')
    return holds and ok, lines

  rule = (f'{method}\'s mean ASR ≤ {asr_ratio:g} x that of '
          f'{" and ".join(baselines)} and ≤ {100 * max_asr:g} %, at ≤ '
          f'{100 * max_extra_acc_loss:g} point extra ACC loss against '
          f'{acc_baseline}')
  return _check(cells, name='Target', rule=rule, method=method,
                baselines=baselines, bar=bar,
                min_implanted_asr=min_implanted_asr)


@dataclasses.dataclass(frozen=True)
class TargetMap:
  """Where each defense stands against the removal target (`target_map`).

  Attributes:
    attacks: the implanted attacks the means are over (those every
      baseline has).
    points: defense -> (extra ACC loss against the accuracy baseline, mean
      ASR), fractions, for every defense with all of `attacks` (the
      baselines included; the accuracy baseline's loss is 0).
    max_asr: the largest mean ASR the target allows: `max_asr`, and
      `asr_ratio` x each baseline's mean ASR.
    max_extra_acc_loss: the largest extra ACC loss it allows.
    missing: defenses left out, lacking a mean over `attacks`.
  """
  attacks: tuple[str, ...]
  points: Mapping[str, tuple[float, float]]
  max_asr: float
  max_extra_acc_loss: float
  missing: tuple[str, ...] = ()


def target_map(cells: Iterable[Mapping[str, Any]], *,
               baselines: Sequence[str] = ('nad', 'ft'),
               asr_ratio: float = 0.5, max_asr: float = 0.05,
               acc_baseline: str = 'nad', max_extra_acc_loss: float = 0.01,
               min_implanted_asr: float = 0.5) -> TargetMap | None:
  """Every defense's means against `check_target`'s bar (same arguments).

  A defense at `points[d] = (loss, asr)` meets the target exactly when
  `loss <= max_extra_acc_loss` and `asr <= max_asr` of the result, which
  is how `check_target(cells, method=d)` judges it on the means. Meant for
  comparing many candidates at once (a validation sweep's variants).

  Returns:
    A `TargetMap`, or None when no implanted attack has the models before
    defense and every baseline.

  Raises:
    ValueError: `acc_baseline` not among `baselines`; as
      `nbajax.report.cells.validate_cells`.
  """
  _check_acc_baseline(acc_baseline, baselines)
  cells, _ = _drop_unimplanted(cells_lib.validate_cells(cells),
                               min_implanted_asr)
  groups = cells_lib.group_cells(cells)
  attacks = _implanted(cells, groups, tuple(baselines))
  base = _means(groups, attacks, tuple(baselines)) if attacks else None
  if base is None:
    return None
  points, missing = {}, []
  for d in cells_lib.defense_order(cells):
    if d == 'none':
      continue
    m = _means(groups, attacks, (d,))
    if m is None:
      missing.append(d)
      continue
    points[d] = (base.acc[acc_baseline] - m.acc[d], m.asr[d])
  bound = min([max_asr] + [asr_ratio * base.asr[b] for b in baselines])
  return TargetMap(attacks, points, bound, max_extra_acc_loss,
                   tuple(missing))
