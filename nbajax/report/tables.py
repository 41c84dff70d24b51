"""Paper-style markdown tables, CSV and JSON text of result cells.

Text builders only (no file I/O): `write_results` in `nbajax.report.files`
writes them. The markdown table has one row per attack (first-seen order),
one column per defense (before defense, FT, FP, NAD, NBA, then others) and a
final **Mean** row; a cell reads "ACC / ASR" in percent, "mean ± spread"
when several seeds share an (attack, defense).
"""

from collections.abc import Iterable, Mapping, Sequence
import csv
import io
import json
from typing import Any


from nbajax.atomic import json_default
from nbajax.report import cells as cells_lib

METRIC_LABELS = {'acc': 'ACC', 'acc_nontarget': 'ACC (non-target)',
                 'asr': 'ASR', 'ra': 'RA', 'der': 'DER'}
ATTACK_LABELS = {'none': 'Clean model', 'badnets': 'BadNets',
                 'trojan': 'Trojan', 'blend': 'Blend', 'cl': 'CL',
                 'sig': 'SIG', 'refool': 'Refool', 'wanet': 'WaNet'}
DEFENSE_LABELS = {'none': 'No defense', 'ft': 'FT', 'fp': 'FP', 'nad': 'NAD',
                  'nba': 'NBA', 'mcr': 'MCR', 'anp': 'ANP', 'ibau': 'I-BAU'}
MISSING = '—'
CSV_COLUMNS = ('attack', 'defense', 'seed') + cells_lib.METRICS + (
    'wall_seconds',)
SPREAD_NOTES = {'std': 'sample standard deviation (ddof = 1)',
                'half-range': 'half-range, (max − min) / 2'}


def format_summary(s: cells_lib.Summary, *, decimals: int = 1) -> str:
  """'96.1', '96.1 ± 0.3' (percent) or '—' when there is no value."""
  if s.mean is None:
    return MISSING
  text = f'{100 * s.mean:.{decimals}f}'
  if s.spread is not None:
    text += f' ± {100 * s.spread:.{decimals}f}'
  return text


def _row(texts: Sequence[str], widths: Sequence[int]) -> str:
  """One markdown row, cells padded (numbers right-aligned) for terminals."""
  padded = [texts[0].ljust(widths[0])]
  padded += [t.rjust(w) for t, w in zip(texts[1:], widths[1:])]
  return '| ' + ' | '.join(padded) + ' |'


def _render(header: list[str], rows: list[list[str]]) -> str:
  """Markdown table text: first column left-aligned, the others right."""
  widths = [max(3, *(len(r[j]) for r in [header] + rows))
            for j in range(len(header))]
  rule = ('|:' + '-' * (widths[0] + 1) + '|' +
          '|'.join('-' * (w + 1) + ':' for w in widths[1:]) + '|')
  return '\n'.join([_row(header, widths), rule] +
                   [_row(r, widths) for r in rows])


def _notes(groups, attacks: Sequence[str], *, spread: str, mean_row: bool,
           mean_over: Sequence[str]) -> list[str]:
  """The lines that say how to read the table (spread kind, Mean row)."""
  counts = sorted({len(g) for g in groups.values()})
  notes = []
  if counts[-1] > 1:
    n = (f'{counts[0]}' if len(counts) == 1
         else f'{counts[0]}–{counts[-1]}')
    notes.append(f'Mean ± {SPREAD_NOTES[spread]} over seeds (n = {n} '
                 'per cell).')
  if mean_row:
    excluded = ('; the clean-model row is excluded'
                if len(mean_over) < len(attacks) else '')
    notes.append(f'**Mean**: unweighted mean over the '
                 f'{cells_lib.count_of(len(mean_over), "attack")}{excluded}; '
                 f'{MISSING} where a defense lacks one.')
  return notes


def markdown_table(cells: Iterable[Mapping[str, Any]], *,
                   metrics: Sequence[str] = ('acc', 'asr'),
                   decimals: int = 1, spread: str = 'std',
                   mean_row: bool = True, notes: bool = True,
                   attack_labels: Mapping[str, str] | None = None,
                   defense_labels: Mapping[str, str] | None = None,
                   transpose: bool = False) -> str:
  """A paper-style table: rows attacks, columns defenses, "ACC / ASR" cells.

  Args:
    cells: result cells (see `nbajax.report`); seeds of the same (attack,
      defense) are aggregated into "mean ± spread".
    metrics: metric keys shown in each table cell, joined by ' / '.
    decimals: decimals of the percentages.
    spread: 'std' (sample std over seeds) or 'half-range' ((max - min) / 2).
    mean_row: append a **Mean** row over attacks (a clean row excluded).
    notes: append lines saying what the spread and the Mean row are.
    attack_labels: display names of attacks (merged over `ATTACK_LABELS`).
    defense_labels: display names of defenses (over `DEFENSE_LABELS`).
    transpose: rows defenses, columns attacks (the Mean row becomes a last
      **Mean** column): the shape of an ablation with many variants.

  Returns:
    Markdown text (no trailing newline); the header's first cell names the
    metrics, e.g. 'ACC / ASR (%)'.

  Raises:
    ValueError: empty cells, a missing metric key, a metric outside [0, 1],
      duplicate cells, an unknown `spread`, or an empty `metrics`.
  """
  if not metrics:
    raise ValueError('metrics is empty: name at least one metric')
  cells_lib.check_spread(spread)
  cells = cells_lib.validate_cells(cells, metrics=metrics)
  a_names = {**ATTACK_LABELS, **(attack_labels or {})}
  d_names = {**DEFENSE_LABELS, **(defense_labels or {})}
  groups = cells_lib.group_cells(cells)
  attacks = cells_lib.attack_order(cells)
  defenses = cells_lib.defense_order(cells)

  def text(summaries):
    if all(s.mean is None for s in summaries):
      return MISSING
    return ' / '.join(format_summary(s, decimals=decimals) for s in summaries)

  header = [' / '.join(METRIC_LABELS[m] for m in metrics) + ' (%)']
  header += [d_names.get(d, d) for d in defenses]
  rows = [[a_names.get(a, a)] + [
      text([cells_lib.group_summary(groups.get((a, d), []), m, spread=spread)
            for m in metrics]) for d in defenses] for a in attacks]
  mean_over = cells_lib.mean_attacks(attacks)
  if mean_row:
    rows.append(['**Mean**'] + [text([cells_lib.mean_over_attacks(
        groups, mean_over, d, m, spread=spread) for m in metrics])
                                 for d in defenses])
  if transpose:  # The header's first cell stays the metric label.
    header, rows = ([header[0]] + [r[0] for r in rows],
                    [[header[j]] + [r[j] for r in rows]
                     for j in range(1, len(header))])
  table = _render(header, rows)
  if not notes:
    return table
  lines = _notes(groups, attacks, spread=spread, mean_row=mean_row,
                 mean_over=mean_over)
  return table + ('\n\n' + '\n'.join(lines) if lines else '')


def _csv_value(cell: Mapping[str, Any], key: str) -> str:
  """Metrics in percent with 2 decimals; '' for None/NaN/missing."""
  if key in cells_lib.METRICS:
    v = cells_lib.value(cell, key)
    return '' if v is None else f'{100 * v:.2f}'
  v = cell.get(key)
  if v is None:
    return ''
  if key == 'wall_seconds':
    return f'{float(v):.2f}'
  return str(v)


def csv_text(cells: Iterable[Mapping[str, Any]]) -> str:
  """CSV, one row per cell; metrics in percent; no config, no history.

  Columns: attack, defense, seed, acc, acc_nontarget, asr, ra, der,
  wall_seconds, and 'fingerprint' when any cell carries one.

  Raises:
    ValueError: as `nbajax.report.cells.validate_cells`.
  """
  cells = cells_lib.validate_cells(cells)
  columns = list(CSV_COLUMNS)
  if any('fingerprint' in c for c in cells):
    columns.append('fingerprint')
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(columns)
  for cell in cells:
    writer.writerow([_csv_value(cell, k) for k in columns])
  return out.getvalue()


def json_text(cells: Iterable[Mapping[str, Any]]) -> str:
  """All cells as given, as a JSON list (NumPy values become Python ones).

  NaN stays NaN (Python's json reads it back); history of a diverged run may
  hold one.
  """
  return json.dumps(list(cells), indent=1, default=json_default) + '\n'
