"""Result cells: validation, grid order and aggregation over seeds.

A *cell* is one evaluated model of the experiment grid, one attack x defense
x seed (see `nbajax.report`). Metrics are fractions in [0, 1]; None or NaN
means "not available" (e.g. DER of the model before defense, ASR of a clean
model). Every table and plot goes through `validate_cells` first, so bad input
fails here, once, with a message that names the cell and the key.
"""

from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import math
import numbers
from typing import Any

import numpy as np

Cell = Mapping[str, Any]

# Fractions in [0, 1]; the order of the CSV columns.
METRICS = ('acc', 'acc_nontarget', 'asr', 'ra', 'der')
# Paper order: the model before defense, the fine-tuning control, then the
# baselines and the methods; any other defense follows in first-seen order.
DEFENSE_ORDER = ('none', 'ft', 'fp', 'mcr', 'anp', 'ibau', 'nad', 'nba')
# The attack name of a clean (never poisoned) model's row.
CLEAN_ATTACK = 'none'
SPREADS = ('std', 'half-range')


@dataclasses.dataclass(frozen=True)
class Summary:
  """One metric of one (attack, defense) group, over its seeds.

  Attributes:
    mean: mean over the available values (None when there are none).
    spread: spread over seeds (None when fewer than two values).
    n: number of values the mean is over.
  """
  mean: float | None
  spread: float | None
  n: int


def _where(index: int, cell: Any) -> str:
  """'cell 3 (badnets / nba, seed 1)' for error messages."""
  if not isinstance(cell, Mapping):
    return f'cell {index}'
  return (f'cell {index} ({cell.get("attack", "?")} / '
          f'{cell.get("defense", "?")}, seed {cell.get("seed")})')


def _check_fraction(value: Any, key: str, where: str) -> None:
  """Raises unless value is None, NaN or a real number in [0, 1]."""
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'{where}: metric {key!r} = {value!r} is not a number')
  value = float(value)
  if math.isnan(value) or 0.0 <= value <= 1.0:
    return
  hint = (' (it looks like a percentage: cells hold fractions)'
          if 1.0 < value <= 100.0 else '')
  raise ValueError(f'{where}: metric {key!r} = {value} is not a fraction '
                   f'in [0, 1]{hint}')


def _check_cell(index: int, cell: Any, metrics: Sequence[str]) -> None:
  """Raises ValueError naming the cell and the offending key."""
  where = _where(index, cell)
  if not isinstance(cell, Mapping):
    raise ValueError(f'{where} is a {type(cell).__name__}, not a dict')
  for key in ('attack', 'defense'):
    if key not in cell:
      raise ValueError(f'{where}: missing key {key!r}')
    if not isinstance(cell[key], str) or not cell[key]:
      raise ValueError(f'{where}: {key!r} must be a non-empty string, got '
                       f'{cell[key]!r}')
  seed = cell.get('seed')
  if seed is not None and (isinstance(seed, bool) or
                           not isinstance(seed, (numbers.Integral, str))):
    raise ValueError(f'{where}: seed must be an int, a string or None, got '
                     f'{seed!r}')
  for key in metrics:
    if key not in cell:
      raise ValueError(f'{where}: missing metric key {key!r} (needed: '
                       f'{", ".join(metrics)}; use None if not available)')
    _check_fraction(cell[key], key, where)
  wall = cell.get('wall_seconds')
  if wall is not None and (isinstance(wall, bool) or not isinstance(
      wall, numbers.Real) or not float(wall) >= 0.0):
    raise ValueError(f'{where}: wall_seconds = {wall!r} is not a number >= 0')
  if not _list_of_dicts(cell.get('history') or []):
    raise ValueError(f'{where}: history must be a list of dicts')
  sweep = cell.get('sweep') or []
  if not (_list_of_dicts(sweep) and all(
      isinstance(e.get('value'), numbers.Real) for e in sweep)):
    raise ValueError(f'{where}: sweep must be a list of dicts with a number '
                     "'value'")


def _list_of_dicts(value: Any) -> bool:
  return (isinstance(value, Sequence) and not isinstance(value, str) and
          all(isinstance(entry, Mapping) for entry in value))


def validate_cells(cells: Iterable[Cell], *,
                   metrics: Sequence[str] = METRICS) -> list[Cell]:
  """Checks the cells of a grid and returns them as a list.

  Args:
    cells: cell dicts; each needs 'attack' and 'defense' (non-empty strings)
      and every key of `metrics` (a fraction in [0, 1], None or NaN);
      'seed' is optional (None), 'wall_seconds' must be >= 0 if present.
    metrics: the metric keys the caller will read.

  Returns:
    The cells, as a list (the dicts themselves, not copies).

  Raises:
    ValueError: no cells, a cell that is not a dict, a missing key, a metric
      outside [0, 1], or two cells with the same attack, defense and seed.
  """
  if isinstance(cells, (Mapping, str, bytes)):
    raise ValueError('cells must be a list of cell dicts, got a '
                     f'{type(cells).__name__}')
  cells = list(cells)
  if not cells:
    raise ValueError('cells is empty: there is nothing to report')
  unknown = [m for m in metrics if m not in METRICS]
  if unknown:
    raise ValueError(f'unknown metric(s) {unknown}; known: {METRICS}')
  seen = {}
  for index, cell in enumerate(cells):
    _check_cell(index, cell, metrics)
    ident = (cell['attack'], cell['defense'], cell.get('seed'))
    if ident in seen:
      raise ValueError(f'{_where(index, cell)}: duplicate of cell '
                       f'{seen[ident]} (same attack, defense and seed)')
    seen[ident] = index
  return cells


def value(cell: Cell, key: str) -> float | None:
  """The metric as a float, None when missing, None or NaN."""
  v = cell.get(key)
  if v is None or math.isnan(float(v)):
    return None
  return float(v)


def count_of(n: int, noun: str) -> str:
  """'1 attack', '4 attacks': a count with its noun (plural by a trailing s)."""
  return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def attack_order(cells: Iterable[Cell]) -> list[str]:
  """Attacks in first-seen order."""
  return list(dict.fromkeys(c['attack'] for c in cells))


def defense_order(cells: Iterable[Cell]) -> list[str]:
  """'none', 'ft', 'fp', 'nad', 'nba' (those present), then first-seen."""
  seen = list(dict.fromkeys(c['defense'] for c in cells))
  return ([d for d in DEFENSE_ORDER if d in seen] +
          [d for d in seen if d not in DEFENSE_ORDER])


def seeds_of(cells: Iterable[Cell]) -> list[Any]:
  """Distinct seeds in first-seen order (None for cells without one)."""
  return list(dict.fromkeys(c.get('seed') for c in cells))


def group_cells(cells: Iterable[Cell]) -> dict[tuple[str, str], list[Cell]]:
  """Cells grouped by (attack, defense), groups and members in input order."""
  groups: dict[tuple[str, str], list[Cell]] = {}
  for cell in cells:
    groups.setdefault((cell['attack'], cell['defense']), []).append(cell)
  return groups


def check_spread(kind: str) -> None:
  """Raises ValueError unless `kind` is one of SPREADS."""
  if kind not in SPREADS:
    raise ValueError(f'spread must be one of {SPREADS}, got {kind!r}')


def spread_of(values: Sequence[float], kind: str) -> float:
  """Sample std (ddof = 1) or half-range (max - min) / 2 of >= 2 values."""
  if kind == 'std':
    return float(np.std(values, ddof=1))
  check_spread(kind)
  return (max(values) - min(values)) / 2.0


def summarize(values: Sequence[float | None], *, spread: str) -> Summary:
  """Mean and spread of the available (not None) values."""
  vals = [v for v in values if v is not None]
  if not vals:
    return Summary(None, None, 0)
  sp = spread_of(vals, spread) if len(vals) > 1 else None
  return Summary(float(np.mean(vals)), sp, len(vals))


def group_summary(group: Sequence[Cell], key: str, *,
                  spread: str) -> Summary:
  """One metric of one (attack, defense) group over its seeds."""
  return summarize([value(c, key) for c in group], spread=spread)


def mean_attacks(attacks: Sequence[str]) -> list[str]:
  """The attacks a Mean row averages: all but a clean-model row."""
  return [a for a in attacks if a != CLEAN_ATTACK] or list(attacks)


def mean_over_attacks(groups: Mapping[tuple[str, str], Sequence[Cell]],
                      attacks: Sequence[str], defense: str, key: str, *,
                      spread: str) -> Summary:
  """Unweighted mean over attacks of the per-attack seed means.

  The spread is that of the per-seed means over attacks, and only when every
  attack has the same two or more seeds; otherwise it is None. If an attack
  lacks this defense or the metric, the mean is None: a mean over a different
  set of attacks would not be comparable with its neighbours.
  """
  per_attack = []
  for attack in attacks:
    by_seed = {c.get('seed'): value(c, key)
               for c in groups.get((attack, defense), [])}
    by_seed = {s: v for s, v in by_seed.items() if v is not None}
    if not by_seed:
      return Summary(None, None, 0)
    per_attack.append(by_seed)
  mean = float(np.mean([np.mean(list(d.values())) for d in per_attack]))
  seeds = set(per_attack[0])
  if len(seeds) < 2 or any(set(d) != seeds for d in per_attack):
    return Summary(mean, None, len(attacks))
  per_seed = [float(np.mean([d[s] for d in per_attack])) for s in seeds]
  return Summary(mean, spread_of(per_seed, spread), len(attacks))
