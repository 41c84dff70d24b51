"""Does a run reproduce a published one? Cell-by-cell metric comparison.

`python -m nbajax.report NEW/results.json --compare docs/digits/results.json`
prints every cell of the reference that the new results lack or whose
metrics differ by more than `--tolerance` (absolute, as a fraction), and
exits 1 when there is any (0 when every reference cell is reproduced).
Cells are matched by (attack, defense, seed); cells only in the new
results are listed but do not count as differences.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nbajax.errors import check_range
from nbajax.report import cells as cells_lib

Key = tuple[Any, Any, Any]


def _key(cell: Mapping[str, Any]) -> Key:
  return (cell['attack'], cell['defense'], cell.get('seed'))


def _name(key: Key) -> str:
  attack, defense, seed = key
  return f'{attack} / {defense}, seed {seed}'


def compare_cells(cells: Iterable[Mapping[str, Any]],
                  reference: Iterable[Mapping[str, Any]], *,
                  tolerance: float = 0.0,
                  metrics: Sequence[str] = cells_lib.METRICS
                  ) -> tuple[list[str], list[str]]:
  """The differences of `cells` from `reference`, one line each.

  Args:
    cells: result cells of the new run.
    reference: result cells of the published run.
    tolerance: largest absolute difference of a metric (a fraction: 0.005
      is half a point) still counted as equal; 0 asks for equality.
    metrics: the metrics compared; a metric missing (None / NaN) in both
      cells is equal, in one of them a difference.

  Returns:
    (differences, extra): a line per reference cell that is missing or
    differs (naming each metric, both values in %), and a line per new
    cell the reference does not have.

  Raises:
    ValueError: invalid cells (as `validate_cells`, which also refuses two
      cells of one (attack, defense, seed)), or a negative tolerance.
  """
  check_range(tolerance, 'tolerance', low=0.0)
  new = _by_key(cells, 'results')
  ref = _by_key(reference, 'reference')
  differences = []
  for key, want in ref.items():
    got = new.get(key)
    if got is None:
      differences.append(f'{_name(key)}: missing')
      continue
    parts = []
    for m in metrics:
      a, b = cells_lib.value(got, m), cells_lib.value(want, m)
      if a is None and b is None:
        continue
      if a is None or b is None or abs(a - b) > tolerance:
        fmt = lambda v: '—' if v is None else f'{100 * v:.2f}'
        parts.append(f'{m} {fmt(a)} (reference {fmt(b)})')
    if parts:
      differences.append(f'{_name(key)}: {", ".join(parts)}')
  extra = [f'{_name(key)}: not in the reference'
           for key in new if key not in ref]
  return differences, extra


def _by_key(cells, what) -> dict[Key, Mapping[str, Any]]:
  """Cells by (attack, defense, seed); validation refuses duplicates."""
  try:
    cells = cells_lib.validate_cells(cells)
  except ValueError as e:
    raise ValueError(f'{what}: {e}') from e
  return {_key(cell): cell for cell in cells}
