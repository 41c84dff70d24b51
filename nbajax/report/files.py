"""A grid's results: results.json, results.csv, results.md (and plots).

Every file is written by `nbajax.atomic` (temporary file, then rename), so
a reader, or a crash, never sees half a file and an older complete file
survives a failed write.
"""

from collections.abc import Iterable, Mapping
import os
from typing import Any

from nbajax.atomic import write_text_atomic
from nbajax.report import cells as cells_lib
from nbajax.report import claim
from nbajax.report import tables

RESULTS_JSON = 'results.json'
RESULTS_CSV = 'results.csv'
RESULTS_MD = 'results.md'

DER_FORMULA = ('DER = (max(0, ASR_before − ASR_after) − '
               'max(0, ACC_before − ACC_after) + 1) / 2')
# Metric definitions of docs/design.md §5, word for word
# where it defines them, so tables never leave a metric ambiguous.
LEGEND = """\
## Metrics

All values are percentages. "No defense" is the backdoored model before any
defense; {missing} means not available.

- **ACC**: accuracy on the clean test set (all images). `acc_nontarget` in
  results.csv is ACC on the non-target images only (the number the NAD code
  prints).
- **ASR**: among test images whose label ≠ target, the fraction classified as
  the target after the trigger is applied (all-to-one). All-to-all: the
  target of an image of label y is (y + 1) % K.
- **RA**: the same triggered non-target images classified as their true
  label.
- **DER**, defense effectiveness rating, "before" being the backdoored model
  of the same attack and seed (50 % means no change, higher is better):
  {der}.
""".format(missing=tables.MISSING, der=DER_FORMULA)


SPLIT_NAMES = {'test': 'the test set', 'val': 'the validation split'}


def split_sentence(cells: Iterable[Mapping[str, Any]]) -> str:
  """Which split the numbers come from, as the cells' 'split' keys say."""
  splits = sorted({c.get('split') or 'unrecorded' for c in cells})
  names = [SPLIT_NAMES.get(s, f'split {s!r}') for s in splits]
  if splits == ['val']:
    return ('Evaluated on the validation split (held out of training): '
            'numbers to choose settings with, not to report.')
  return f'Evaluated on {" and ".join(names)}.'


def _section(cells, heading: str, *, spread: str) -> list[str]:
  """The ACC / ASR and RA / DER tables of some cells under a heading."""
  out = []
  for metrics in (('acc', 'asr'), ('ra', 'der')):
    label = ' / '.join(tables.METRIC_LABELS[m] for m in metrics)
    out += [f'## {label}{heading}', '',
            tables.markdown_table(cells, metrics=metrics, spread=spread), '']
  return out


def results_markdown(cells: Iterable[Mapping[str, Any]], *, title: str = '',
                     seeds_aggregate: bool = True,
                     spread: str = 'std') -> str:
  """The text of results.md: title, tables, metric legend.

  Args:
    cells: result cells (see `nbajax.report`).
    title: first heading ('Results' if empty).
    seeds_aggregate: one table per metric pair with "mean ± spread" over
      seeds; if False, one set of tables per seed.
    spread: 'std' or 'half-range' (see `tables.markdown_table`).

  Raises:
    ValueError: as `nbajax.report.cells.validate_cells`.
  """
  cells = cells_lib.validate_cells(cells)
  seeds = cells_lib.seeds_of(cells)
  lines = [f'# {title or "Results"}', '',
           f'{len(cells)} cells. Attacks: '
           f'{", ".join(cells_lib.attack_order(cells))}. Defenses: '
           f'{", ".join(cells_lib.defense_order(cells))}. Seeds: '
           f'{", ".join(str(s) for s in seeds)}. '
           f'{split_sentence(cells)}', '']
  if seeds_aggregate or len(seeds) == 1:
    lines += _section(cells, '', spread=spread)
  else:
    for seed in seeds:
      lines += _section([c for c in cells if c.get('seed') == seed],
                        f', seed {seed}', spread=spread)
  present = set(cells_lib.defense_order(cells))
  if {'none', 'nba', 'nad', 'ft'} <= present:
    lines += ['## The NBA claim', '', *claim.check_claim(cells).lines, '',
              '## The removal target', '', *claim.check_target(cells).lines,
              '']
  return '\n'.join(lines) + '\n' + LEGEND


def write_results(cells: Iterable[Mapping[str, Any]], outdir: str, *,
                  title: str = '', seeds_aggregate: bool = True,
                  spread: str = 'std', plots: bool = False) -> dict[str, str]:
  """Writes results.json, results.csv and results.md (and plots) atomically.

  Args:
    cells: result cells (see `nbajax.report`); all are validated before any
      file is written.
    outdir: folder, created if missing.
    title: heading of results.md.
    seeds_aggregate: see `results_markdown`.
    spread: 'std' or 'half-range' over seeds.
    plots: also write acc_vs_asr.png and curves_<attack>.png.

  Returns:
    Paths by name: 'json', 'csv', 'md' (and 'acc_vs_asr', 'curves_<attack>'
    when `plots`).

  Raises:
    ValueError: empty cells, a missing metric key, a metric outside [0, 1],
      duplicate cells or an unknown `spread`.
  """
  cells = cells_lib.validate_cells(cells)
  # Build every text first: a bad input must not leave a partial set.
  texts = {'json': (RESULTS_JSON, tables.json_text(cells)),
           'csv': (RESULTS_CSV, tables.csv_text(cells)),
           'md': (RESULTS_MD, results_markdown(
               cells, title=title, seeds_aggregate=seeds_aggregate,
               spread=spread))}
  os.makedirs(outdir, exist_ok=True)
  paths = {key: write_text_atomic(os.path.join(outdir, name), text)
           for key, (name, text) in texts.items()}
  if plots:
    from nbajax.report import plots as plots_lib  # matplotlib only if asked
    if any(cells_lib.value(c, 'acc') is not None and
           cells_lib.value(c, 'asr') is not None for c in cells):
      paths['acc_vs_asr'] = plots_lib.plot_acc_vs_asr(
          cells, os.path.join(outdir, 'acc_vs_asr.png'), title=title)
    for attack, path in plots_lib.plot_curves(cells, outdir).items():
      paths[f'curves_{attack}'] = path
    from nbajax.report import sweeps  # matplotlib only if asked
    for defense, path in sweeps.plot_sweeps(cells, outdir).items():
      paths[f'sweep_{defense}'] = path
  return paths
