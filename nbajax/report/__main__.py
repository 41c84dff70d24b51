"""Re-tabulates a grid: `python -m nbajax.report results.json [--outdir D]`.

Prints the ACC / ASR table to the terminal; with --outdir also writes
results.json/.csv/.md there (and the plots with --plots). Several files
(e.g. a grid's results.json and an ablation's JSON) are merged: a cell found
in more than one with equal metrics is kept once; `--claim METHOD` checks
the NBA claim and the removal target for that defense against NAD and FT.

  python -m nbajax.report runs/gtsrb/results.json runs/gtsrb/align_clean.json \
      --claim align_clean

With `--plots` and `--claim`, `target.png` draws every defense's mean ASR
against its extra ACC loss beyond NAD, with the target's region: how far
each candidate of a sweep is from it:

  python -m nbajax.report docs/gtsrb_val/nba_sweep*.json --outdir OUT \
      --plots --claim nba

`--attacks A,B` keeps only those attacks' cells (of the results and of a
`--compare` reference), for a table or a check over a subset (e.g. the
attacks that pass a stricter implant bar):

  python -m nbajax.report docs/gtsrb_test/models_10epochs/grid_seed0.json \
      --attacks badnets,blend,trojan --claim nba

`--compare REFERENCE` checks that the results reproduce a published run
(`nbajax.report.compare`): every reference cell present with equal metrics
(within `--tolerance` points); exit 1 when not, 2 for a bad input:

  python -m nbajax.report runs/reproduce_digits/results.json \
      --compare docs/digits/results.json
"""

import argparse
import os
import sys
from collections.abc import Sequence

from nbajax import rundir
from nbajax.errors import UserError, check_range
from nbajax.report import cells as cells_lib
from nbajax.report import claim
from nbajax.report import compare
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
                      help='check the NBA claim and the removal target for '
                      'this defense')
  parser.add_argument('--attacks', metavar='A,B',
                      help='keep only the cells of these attacks '
                      '(comma-separated)')
  parser.add_argument('--compare', metavar='REFERENCE',
                      help='a published results.json: list the cells the '
                      'results do not reproduce; exit 1 if any')
  parser.add_argument('--tolerance', type=float, default=0.0,
                      help='with --compare: largest absolute difference of a '
                      'metric counted as equal, in points (default 0)')
  args = parser.parse_args(argv)
  try:
    cells = merge_cells(args.results)
    if args.attacks is not None:
      cells = select_attacks(cells, args.attacks)
    if args.compare:  # Read and checked before any output, as the outdir.
      check_range(args.tolerance, '--tolerance (points)', low=0.0,
                  high=100.0, high_open=True, error=UserError)
      reference = merge_cells([args.compare])
      if args.attacks is not None:  # The same subset on both sides.
        kept = {c['attack'] for c in cells}
        reference = [c for c in reference if c['attack'] in kept]
    if args.outdir:  # Before any output: a refused outdir changes nothing.
      rundir.check_report_outdir(args.outdir, OUTPUTS)
    print(tables.markdown_table(cells, spread=args.spread))
    if args.claim:
      for check in (claim.check_claim, claim.check_target):
        print('\n' + '\n'.join(check(cells, method=args.claim).lines))
    if args.outdir:
      rundir.mark_report_outdir(args.outdir)
      with rundir.locked(args.outdir):
        paths = files.write_results(
            cells, args.outdir, title=args.title, spread=args.spread,
            seeds_aggregate=not args.per_seed, plots=args.plots)
        if args.plots and args.claim:
          paths.update(_target_plot(cells, args.outdir, args.claim,
                                    args.title))
      print('\n'.join(f'wrote {p}' for p in paths.values()))
    if args.compare:
      return _compare(cells, reference, args.compare, args.tolerance)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


def _target_plot(cells: list[dict], outdir: str, method: str,
                 title: str) -> dict[str, str]:
  """{'target': path} of target.png, or {} (saying why) when the cells
  have no implanted attack with NAD and FT to draw the target from."""
  from nbajax.report import plots  # pylint: disable=g-import-not-at-top
  try:
    path = plots.plot_target(cells, os.path.join(outdir, TARGET_PNG),
                             method=method, title=title)
  except plots.NoTargetError as e:
    print(f'no {TARGET_PNG}: {e}')
    return {}
  return {'target': path}


def _compare(cells: list[dict], reference: list[dict], reference_path: str,
             tolerance: float) -> int:
  """Prints how `cells` differ from the reference file's; 1 if they do."""
  differences, extra = compare.compare_cells(cells, reference,
                                             tolerance=tolerance / 100)
  print(f'\nCompared with {reference_path} ({len(reference)} cells, '
        f'tolerance {tolerance:g} points):')
  for line in differences + extra:
    print(f'- {line}')
  if differences:
    print(f'{len(differences)} of {len(reference)} reference cells not '
          'reproduced')
    return 1
  print(f'all {len(reference)} reference cells reproduced')
  return 0


# What `files.write_results` may write (the curves' names depend on cells).
TARGET_PNG = 'target.png'  # With --plots and --claim.
OUTPUTS = (files.RESULTS_JSON, files.RESULTS_CSV, files.RESULTS_MD,
           'acc_vs_asr.png', TARGET_PNG)


def merge_cells(paths: Sequence[str]) -> list[dict]:
  """The cells of several JSON files, repeated equal cells kept once.

  Raises:
    UserError: a file that cannot be read, is not JSON or not a list of
      valid cells (named with the cell and key), or two files holding the
      same (attack, defense, seed) with different metrics.
  """
  merged: dict[tuple, dict] = {}
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f'{path}: no such results file')
    cells = rundir.read_results(path)
    if not isinstance(cells, list):
      hint = (' (a single job\'s results: give the grid\'s results.json)'
              if isinstance(cells, dict) else '')
      raise UserError(f'{path} is not a list of cells but a JSON '
                      f'{type(cells).__name__}{hint}')
    try:
      cells_lib.validate_cells(cells)
    except ValueError as e:
      raise UserError(f'{path}: {e}') from e
    for cell in cells:
      key = tuple(cell.get(k) for k in ('attack', 'defense', 'seed'))
      metrics = tuple(cell.get(m) for m in cells_lib.METRICS)
      if key in merged:
        if tuple(merged[key].get(m) for m in cells_lib.METRICS) != metrics:
          raise UserError(f'{path}: cell {key} differs from an earlier '
                           'file\'s cell of the same attack, defense, seed')
        continue
      merged[key] = cell
  return list(merged.values())


def select_attacks(cells: list[dict], attacks: str) -> list[dict]:
  """The cells whose attack is one of the comma-separated `attacks`.

  Raises:
    UserError: an empty list, or an attack no cell has (the error names
      the attacks the cells have).
  """
  wanted = [a.strip() for a in attacks.split(',') if a.strip()]
  have = sorted({c['attack'] for c in cells})
  if not wanted:
    raise UserError(f'--attacks {attacks!r} names no attack; the results '
                    f'have {have}')
  missing = [a for a in wanted if a not in have]
  if missing:
    raise UserError(f'--attacks: no cells of {missing}; the results have '
                    f'{have}')
  return [c for c in cells if c['attack'] in wanted]


def run() -> int:
  """`main` for the command line: a reader that closes the pipe early
  (`| head`) ends the report quietly, as a shell tool, with 128 + SIGPIPE.
  """
  try:
    code = main()
    sys.stdout.flush()  # A closed pipe shows here, not at exit.
    return code
  except BrokenPipeError:
    # Python would report the failed flush of stdout again at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


if __name__ == '__main__':
  sys.exit(run())
