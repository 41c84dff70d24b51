"""Re-tabulates a grid: `python -m nbajax.report results.json [--outdir D]`.

Prints the ACC / ASR table to the terminal; with --outdir also writes
results.json/.csv/.md there (and the plots with --plots). Several files
(e.g. a grid's results.json and an ablation's JSON) are merged: a cell found
in more than one with equal metrics is kept once; `--claim METHOD` checks
the NBA claim for that defense against NAD and FT.

  python -m nbajax.report runs/gtsrb/results.json runs/gtsrb/align_clean.json \
      --claim align_clean
"""

import argparse
import json
import sys
from collections.abc import Sequence

from nbajax.report import cells as cells_lib
from nbajax.report import claim
from nbajax.report import files
from nbajax.report import tables


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog='python -m nbajax.report',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('results', nargs='+',
                      help='results.json files (lists of cells)')
  parser.add_argument('--outdir', help='write results.* (and plots) here')
  parser.add_argument('--title', default='', help='heading of results.md')
  parser.add_argument('--spread', default='std',
                      choices=('std', 'half-range'))
  parser.add_argument('--per-seed', action='store_true',
                      help='one table per seed instead of mean ± spread')
  parser.add_argument('--plots', action='store_true',
                      help='with --outdir: also write the PNG figures')
  parser.add_argument('--claim', metavar='METHOD',
                      help='check the NBA claim for this defense name')
  args = parser.parse_args(argv)
  try:
    cells = merge_cells(args.results)
    print(tables.markdown_table(cells, spread=args.spread))
    if args.claim:
      print('\n' + '\n'.join(claim.check_claim(cells,
                                                method=args.claim).lines))
    if args.outdir:
      paths = files.write_results(
          cells, args.outdir, title=args.title, spread=args.spread,
          seeds_aggregate=not args.per_seed, plots=args.plots)
      print('\n'.join(f'wrote {p}' for p in paths.values()))
  except (OSError, ValueError) as e:  # JSON errors are ValueErrors.
    print(f'error: {", ".join(args.results)}: {e}', file=sys.stderr)
    return 2
  return 0


def merge_cells(paths: Sequence[str]) -> list[dict]:
  """The cells of several JSON files, repeated equal cells kept once.

  Raises:
    ValueError: when two files hold the same (attack, defense, seed) with
      different metrics, or a file is not a list.
  """
  merged: dict[tuple, dict] = {}
  for path in paths:
    with open(path, encoding='utf-8') as f:
      cells = json.load(f)
    if not isinstance(cells, list):
      raise ValueError(f'{path} is not a list of cells')
    for cell in cells:
      key = tuple(cell.get(k) for k in ('attack', 'defense', 'seed'))
      metrics = tuple(cell.get(m) for m in cells_lib.METRICS)
      if key in merged:
        if tuple(merged[key].get(m) for m in cells_lib.METRICS) != metrics:
          raise ValueError(f'{path}: cell {key} differs from an earlier '
                           'file\'s cell of the same attack, defense, seed')
        continue
      merged[key] = cell
  return list(merged.values())


if __name__ == '__main__':
  sys.exit(main())
