"""Re-tabulates a grid: `python -m nbajax.report results.json [--outdir D]`.

Prints the ACC / ASR table to the terminal; with --outdir also writes
results.json/.csv/.md there (and the plots with --plots).
"""

import argparse
import json
import sys
from collections.abc import Sequence

from nbajax.report import files
from nbajax.report import tables


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog='python -m nbajax.report',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('results', help='a results.json (a list of cells)')
  parser.add_argument('--outdir', help='write results.* (and plots) here')
  parser.add_argument('--title', default='', help='heading of results.md')
  parser.add_argument('--spread', default='std',
                      choices=('std', 'half-range'))
  parser.add_argument('--per-seed', action='store_true',
                      help='one table per seed instead of mean ± spread')
  parser.add_argument('--plots', action='store_true',
                      help='with --outdir: also write the PNG figures')
  args = parser.parse_args(argv)
  with open(args.results, encoding='utf-8') as f:
    cells = json.load(f)
  try:
    print(tables.markdown_table(cells, spread=args.spread))
    if args.outdir:
      paths = files.write_results(
          cells, args.outdir, title=args.title, spread=args.spread,
          seeds_aggregate=not args.per_seed, plots=args.plots)
      print('\n'.join(f'wrote {p}' for p in paths.values()))
  except ValueError as e:
    print(f'error: {args.results}: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
