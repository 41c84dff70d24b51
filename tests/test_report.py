"""Tests for `nbajax.report`: exact tables, CSV/JSON round trips, PNGs."""

import contextlib
import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from nbajax import atomic
from nbajax import report
from nbajax.report import __main__ as report_cli
from nbajax.report import implant
from nbajax.report import maps
from nbajax.report import plots

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _cell(attack, defense, acc, asr, *, seed=0, ra=0.5, der=None, **extra):
  return dict(attack=attack, defense=defense, seed=seed, acc=acc,
              acc_nontarget=acc, asr=asr, ra=ra, der=der, wall_seconds=1.5,
              **{'history': [], **extra})


def _grid():
  """2 attacks x 3 defenses, one seed, defenses given out of paper order."""
  return [
      _cell('badnets', 'nba', 0.950, 0.116, der=0.92),
      _cell('badnets', 'none', 0.962, 1.000),
      _cell('badnets', 'ft', 0.960, 0.323, der=0.83),
      _cell('blend', 'ft', 0.954, 0.985, der=0.50),
      _cell('blend', 'none', 0.958, 1.000),
      _cell('blend', 'nba', 0.944, 0.166, der=0.91),
  ]


def _seeded_grid():
  """2 attacks x 1 defense x 2 seeds."""
  return [
      _cell('badnets', 'nba', 0.95, 0.10, seed=0),
      _cell('badnets', 'nba', 0.93, 0.14, seed=1),
      _cell('blend', 'nba', 0.90, 0.20, seed=0),
      _cell('blend', 'nba', 0.94, 0.30, seed=1),
  ]


class _TestCase(absltest.TestCase):
  """absltest's create_tempdir needs parsed flags, which pytest skips."""

  def _tempdir(self):
    path = tempfile.mkdtemp(prefix='nbajax_report_')
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def _png_size(path):
  """(width, height) from the IHDR chunk; checks the PNG signature."""
  with open(path, 'rb') as f:
    head = f.read(24)
  assert head[:8] == PNG_SIGNATURE, f'{path} is not a PNG'
  assert head[12:16] == b'IHDR'
  return struct.unpack('>II', head[16:24])


class MarkdownTableTest(_TestCase):

  def test_exact_table_with_hand_computed_mean(self):
    # Mean row by hand: No defense (96.2 + 95.8) / 2 = 96.0, ASR 100.0;
    # FT (96.0 + 95.4) / 2 = 95.7, (32.3 + 98.5) / 2 = 65.4;
    # NBA (95.0 + 94.4) / 2 = 94.7, (11.6 + 16.6) / 2 = 14.1.
    expected = '\n'.join([
        '| ACC / ASR (%) |   No defense |          FT |         NBA |',
        '|:--------------|-------------:|------------:|------------:|',
        '| BadNets       | 96.2 / 100.0 | 96.0 / 32.3 | 95.0 / 11.6 |',
        '| Blend         | 95.8 / 100.0 | 95.4 / 98.5 | 94.4 / 16.6 |',
        '| **Mean**      | 96.0 / 100.0 | 95.7 / 65.4 | 94.7 / 14.1 |',
    ])
    self.assertEqual(report.markdown_table(_grid(), notes=False), expected)

  def test_notes_of_a_single_seed_grid(self):
    text = report.markdown_table(_grid())
    self.assertTrue(text.endswith(
        '\n\n**Mean**: unweighted mean over the 2 attacks; — where a '
        'defense lacks one.'), text)
    self.assertNotIn('±', text)
    one = report.markdown_table([c for c in _grid() if c['attack'] == 'blend'])
    self.assertIn('unweighted mean over the 1 attack; ', one)

  def test_defense_order_baselines_then_nad_nba_then_first_seen(self):
    cells = [_cell('badnets', d, 0.9, 0.1)
             for d in ('zeta', 'nba', 'abl', 'ibau', 'nad', 'none', 'anp',
                       'fp', 'ft', 'mcr')]
    header = report.markdown_table(cells, notes=False).splitlines()[0]
    names = [h.strip() for h in header.strip('|').split('|')]
    self.assertEqual(names, ['ACC / ASR (%)', 'No defense', 'FT', 'FP', 'MCR',
                             'ANP', 'I-BAU', 'NAD', 'NBA', 'zeta', 'abl'])

  def test_attacks_first_seen_and_clean_row_not_in_mean(self):
    cells = [_cell('none', 'none', 0.97, None)] + _grid()
    lines = report.markdown_table(cells, notes=True).splitlines()
    self.assertEqual([l.split('|')[1].strip() for l in lines[2:6]],
                     ['Clean model', 'BadNets', 'Blend', '**Mean**'])
    self.assertIn('| 97.0 / — |', ' '.join(lines[2].split()))
    self.assertIn('96.0 / 100.0', lines[5])  # Same as without the clean row.
    self.assertIn('the clean-model row is excluded', lines[-1])

  def test_multi_seed_mean_and_std(self):
    # std (ddof 1) of two values = |a - b| / sqrt(2). Mean row: per-seed
    # means over attacks are 92.5 / 15.0 and 93.5 / 22.0.
    expected = '\n'.join([
        '| ACC / ASR (%) |                     NBA |',
        '|:--------------|------------------------:|',
        '| BadNets       | 94.0 ± 1.4 / 12.0 ± 2.8 |',
        '| Blend         | 92.0 ± 2.8 / 25.0 ± 7.1 |',
        '| **Mean**      | 93.0 ± 0.7 / 18.5 ± 4.9 |',
        '',
        'Mean ± sample standard deviation (ddof = 1) over seeds (n = 2 per '
        'cell).',
        '**Mean**: unweighted mean over the 2 attacks; — where a defense '
        'lacks one.',
    ])
    self.assertEqual(report.markdown_table(_seeded_grid()), expected)

  def test_multi_seed_half_range(self):
    text = report.markdown_table(_seeded_grid(), spread='half-range')
    self.assertIn('| 94.0 ± 1.0 / 12.0 ± 2.0 |', text)
    self.assertIn('| 92.0 ± 2.0 / 25.0 ± 5.0 |', text)
    self.assertIn('| 93.0 ± 0.5 / 18.5 ± 3.5 |', text)
    self.assertIn('Mean ± half-range, (max − min) / 2 over seeds', text)

  def test_mean_is_missing_when_a_defense_lacks_an_attack(self):
    cells = _grid()[:-1]  # No NBA on blend.
    mean = report.markdown_table(cells, notes=False).splitlines()[-1]
    self.assertEqual(mean.split('|')[-2].strip(), '—')

  def test_ra_der_table(self):
    text = report.markdown_table(_grid(), metrics=('ra', 'der'), notes=False)
    lines = text.splitlines()
    self.assertTrue(lines[0].startswith('| RA / DER (%) |'))
    self.assertIn('| 50.0 / — |', ' '.join(lines[2].split()))
    self.assertTrue(lines[2].endswith('| 50.0 / 83.0 | 50.0 / 92.0 |'))

  def test_labels_override(self):
    text = report.markdown_table(_grid(), defense_labels={'none': 'Before'},
                                 attack_labels={'blend': 'Blended'})
    self.assertIn('Before', text)
    self.assertIn('| Blended ', text)


class BadInputTest(_TestCase):

  def test_empty_cells(self):
    with self.assertRaisesRegex(ValueError, 'cells is empty'):
      report.markdown_table([])

  def test_missing_metric_key_names_cell_and_key(self):
    cells = _grid()
    del cells[2]['asr']
    with self.assertRaisesRegex(
        ValueError, r"cell 2 \(badnets / ft, seed 0\): missing metric key "
        r"'asr'"):
      report.markdown_table(cells)

  def test_percent_instead_of_fraction(self):
    cells = _grid()
    cells[0]['acc'] = 95.0
    with self.assertRaisesRegex(ValueError, "'acc' = 95.0 .*percentage"):
      report.write_results(cells, self._tempdir())

  def test_duplicate_cell(self):
    with self.assertRaisesRegex(ValueError, 'duplicate of cell 0'):
      report.markdown_table(_grid()[:1] * 2)

  def test_missing_attack_and_bad_spread(self):
    cells = _grid()
    del cells[1]['attack']
    with self.assertRaisesRegex(ValueError, "missing key 'attack'"):
      report.markdown_table(cells)
    with self.assertRaisesRegex(ValueError, 'spread must be one of'):
      report.markdown_table(_grid(), spread='iqr')

  def test_bad_input_writes_nothing(self):
    outdir = self._tempdir()
    cells = _grid()
    del cells[-1]['der']
    with self.assertRaisesRegex(ValueError, "missing metric key 'der'"):
      report.write_results(cells, outdir)
    self.assertEmpty(os.listdir(outdir))


class WriteResultsTest(_TestCase):

  def setUp(self):
    super().setUp()
    self.outdir = self._tempdir()
    self.cells = _grid()
    self.cells[0]['fingerprint'] = 'abc123'
    self.cells[0]['config'] = {'defense': {'name': 'nba', 'eps': 16 / 255}}
    self.cells[0]['history'] = [{'epoch': 1, 'test_acc': 0.9, 'asr': 0.5}]
    self.paths = report.write_results(self.cells, self.outdir, title='Demo')

  def test_paths_and_no_temp_files(self):
    self.assertEqual(self.paths, {
        k: os.path.join(self.outdir, f'results.{k}')
        for k in ('json', 'csv', 'md')})
    self.assertCountEqual(os.listdir(self.outdir),
                          ['results.json', 'results.csv', 'results.md'])

  def test_json_equals_cells(self):
    with open(self.paths['json']) as f:
      self.assertEqual(json.load(f), self.cells)

  def test_json_converts_numpy_scalars(self):
    cells = [_cell('badnets', 'ft', np.float32(0.5), np.float64(0.25),
                   seed=np.int64(3))]
    report.write_results(cells, self.outdir)
    with open(self.paths['json']) as f:
      self.assertEqual(json.load(f)[0]['seed'], 3)

  def test_csv_round_trip(self):
    with open(self.paths['csv'], newline='') as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, 6)
    self.assertEqual(list(rows[0]), [
        'attack', 'defense', 'seed', 'acc', 'acc_nontarget', 'asr', 'ra',
        'der', 'wall_seconds', 'fingerprint'])
    self.assertEqual(rows[0], {
        'attack': 'badnets', 'defense': 'nba', 'seed': '0', 'acc': '95.00',
        'acc_nontarget': '95.00', 'asr': '11.60', 'ra': '50.00',
        'der': '92.00', 'wall_seconds': '1.50', 'fingerprint': 'abc123'})
    self.assertEqual((rows[1]['der'], rows[1]['fingerprint']), ('', ''))
    for row, cell in zip(rows, self.cells):
      self.assertAlmostEqual(float(row['asr']) / 100, cell['asr'], places=4)

  def test_csv_without_fingerprint_column(self):
    self.assertNotIn('fingerprint', report.csv_text(_grid()).splitlines()[0])

  def test_markdown_file(self):
    with open(self.paths['md']) as f:
      text = f.read()
    self.assertTrue(text.startswith('# Demo\n'))
    self.assertIn(report.markdown_table(self.cells), text)
    self.assertIn(report.markdown_table(self.cells, metrics=('ra', 'der')),
                  text)
    self.assertIn('## Metrics', text)
    self.assertIn('DER = (max(0, ASR_before − ASR_after) − max(0, '
                  'ACC_before − ACC_after) + 1) / 2.', text)
    self.assertIn('among test images whose label ≠ target', text)

  def test_per_seed_tables(self):
    text = report.results_markdown(_seeded_grid(), seeds_aggregate=False)
    for heading in ('## ACC / ASR, seed 0', '## ACC / ASR, seed 1',
                    '## RA / DER, seed 1'):
      self.assertIn(heading, text)
    self.assertNotIn('±', text)

  def test_overwrite_and_failed_write_keep_old_file(self):
    path = self.paths['csv']

    def fail(f):
      f.write(b'partial')
      raise RuntimeError('disk full')

    with open(path, 'rb') as f:
      before = f.read()
    with self.assertRaises(RuntimeError):
      atomic.write_atomic(path, fail)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(), before)
    self.assertLen(os.listdir(self.outdir), 3)

  def test_cli_prints_table_and_writes(self):
    out = os.path.join(self.outdir, 'again')
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      code = report_cli.main([self.paths['json'], '--outdir', out])
    self.assertEqual(code, 0)
    self.assertIn(report.markdown_table(self.cells), stdout.getvalue())
    self.assertCountEqual(os.listdir(out),
                          ['results.json', 'results.csv', 'results.md',
                           '.nbajax-report'])


class MergeCliTest(_TestCase):

  def _write(self, name, cells):
    path = os.path.join(self._tempdir(), name)
    with open(path, 'w') as f:
      json.dump(cells, f)
    return path

  def _run(self, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = report_cli.main(list(args))
    return code, out.getvalue(), err.getvalue()

  def test_equal_repeats_are_kept_once_and_the_claim_is_checked(self):
    cells = _claim_cells()
    variant = [dict(c, defense='nba2') for c in cells if c['defense'] == 'nba']
    first = self._write('a.json', cells)
    second = self._write('b.json', [c for c in cells
                                    if c['defense'] == 'none'] + variant)
    code, out, _ = self._run(first, second, '--claim', 'nba2')
    self.assertEqual(code, 0)
    header = [c.strip() for c in out.splitlines()[0].split('|')[1:-1]]
    self.assertEqual(header[-2:], ['NBA', 'nba2'])  # 'none' once, no error.
    self.assertIn('**Claim holds** (nba2 leaves', out)

  def test_a_reader_that_closes_the_pipe_gets_no_traceback(self):
    # `... | head -1`: the reader is gone before the table is printed.
    path = self._write('a.json', _grid())
    proc = subprocess.Popen(
        [sys.executable, '-m', 'nbajax.report', path, '--claim', 'nba'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    self.assertEqual(proc.wait(timeout=120), 141, err)
    self.assertNotIn('Traceback', err)

  def test_conflicting_repeats_are_refused(self):
    cells = _claim_cells()
    changed = [dict(cells[1], asr=0.5)]
    code, _, err = self._run(self._write('a.json', cells),
                             self._write('b.json', changed))
    self.assertEqual(code, 2)
    self.assertIn("('badnets', 'nba', 0) differs", err)

  def test_attacks_keeps_only_their_cells_for_the_table_and_checks(self):
    cells = _claim_cells() + [
        _cell('sig', d, 0.9, a) for d, a in
        (('none', 1.0), ('nba', 0.9), ('nad', 0.9), ('ft', 0.9))]
    path = self._write('a.json', cells)
    code, out, _ = self._run(path, '--claim', 'nba')
    self.assertEqual(code, 0)
    self.assertIn('**Target does not hold**', out)  # SIG's 90 % counts.
    code, out, _ = self._run(path, '--attacks', 'badnets, blend', '--claim',
                             'nba')
    self.assertEqual(code, 0)
    self.assertNotIn('SIG', out)
    self.assertIn('**Target holds**', out)
    self.assertIn('over 2 implanted attacks: badnets, blend', out)

  def test_attacks_narrow_a_comparison_on_both_sides(self):
    cells = _claim_cells()
    reference = self._write('ref.json', cells)
    moved = self._write('moved.json', [
        dict(c, asr=0.9) if c['attack'] == 'blend' else c for c in cells])
    code, out, _ = self._run(moved, '--compare', reference)
    self.assertEqual(code, 1)
    code, out, _ = self._run(moved, '--attacks', 'badnets', '--compare',
                             reference)
    self.assertEqual(code, 0)
    self.assertIn('all 4 reference cells reproduced', out)

  def test_attacks_the_results_lack_are_a_clear_error(self):
    path = self._write('a.json', _claim_cells())
    for value, words in (('badnets,wanet', "no cells of ['wanet']; the "
                          "results have ['badnets', 'blend']"),
                         (',', 'names no attack')):
      code, _, err = self._run(path, '--attacks', value)
      self.assertEqual(code, 2)
      self.assertIn(words, err)
      self.assertEqual(len(err.strip().splitlines()), 1)

  def test_a_missing_file_is_a_clear_error(self):
    code, _, err = self._run('/nonexistent/results.json')
    self.assertEqual(code, 2)
    self.assertIn('no such results file', err)


  def test_compare_passes_on_the_same_cells_and_names_each_difference(self):
    cells = _claim_cells()
    reference = self._write('ref.json', cells)
    code, out, _ = self._run(self._write('same.json', cells), '--compare',
                             reference)
    self.assertEqual(code, 0)
    self.assertIn('all 8 reference cells reproduced', out)
    moved = [dict(c, asr=0.06) if c['defense'] == 'nba' else c
             for c in cells if c['attack'] != 'blend' or c['defense'] != 'ft']
    code, out, _ = self._run(self._write('moved.json', moved), '--compare',
                             reference)
    self.assertEqual(code, 1)
    self.assertIn('- badnets / nba, seed 0: asr 6.00 (reference 5.00)', out)
    self.assertIn('- blend / ft, seed 0: missing', out)
    self.assertIn('3 of 8 reference cells not reproduced', out)
    # One point of tolerance covers the moved ASR, not the missing cell.
    code, out, _ = self._run(self._write('moved2.json', moved), '--compare',
                             reference, '--tolerance', '1')
    self.assertEqual(code, 1)
    self.assertIn('1 of 8 reference cells not reproduced', out)

  def test_compare_refuses_a_bad_tolerance_or_reference(self):
    path = self._write('a.json', _claim_cells())
    code, _, err = self._run(path, '--compare', path, '--tolerance', '-1')
    self.assertEqual(code, 2)
    self.assertIn('--tolerance (points) must be a number in [0, 100), got '
                  '-1.0', err)
    outdir = os.path.join(self._tempdir(), 'out')
    code, out, err = self._run(path, '--compare', '/nonexistent/ref.json',
                               '--outdir', outdir)
    self.assertEqual(code, 2)
    self.assertIn('/nonexistent/ref.json: no such results file', err)
    # Refused before any output: no table printed, no folder made.
    self.assertEqual(out, '')
    self.assertFalse(os.path.exists(outdir))


class CompareCellsTest(absltest.TestCase):

  def test_missing_metrics_and_extra_cells(self):
    ref = [_cell('badnets', 'none', 0.96, 1.0, der=None)]
    new = [_cell('badnets', 'none', 0.96, 1.0, der=0.5),
           _cell('badnets', 'nba', 0.95, 0.0)]
    differences, extra = report.compare_cells(new, ref)
    self.assertEqual(differences,
                     ['badnets / none, seed 0: der 50.00 (reference —)'])
    self.assertEqual(extra, ['badnets / nba, seed 0: not in the reference'])
    self.assertEqual(report.compare_cells(new, ref, metrics=('acc', 'asr')),
                     ([], extra))

  def test_duplicate_cells_are_refused(self):
    cell = _cell('badnets', 'none', 0.96, 1.0)
    with self.assertRaisesRegex(ValueError, 'reference: cell 1 .* '
                                'duplicate of cell 0'):
      report.compare_cells([cell], [cell, cell])

class PlotTest(_TestCase):

  def setUp(self):
    super().setUp()
    self.outdir = self._tempdir()

  def test_acc_vs_asr(self):
    path = report.plot_acc_vs_asr(_seeded_grid() + _grid()[1:2],
                                  os.path.join(self.outdir, 'scatter.png'),
                                  title='Demo')
    self.assertEqual(_png_size(path), (840, 600))  # (7, 5) in at 120 dpi.
    self.assertEqual(plots.ACC_ASR_FIGSIZE, (7.0, 5.0))

  def test_acc_vs_asr_without_points(self):
    with self.assertRaisesRegex(ValueError, 'no cell has both ACC and ASR'):
      report.plot_acc_vs_asr([_cell('none', 'none', 0.97, None)],
                             os.path.join(self.outdir, 'x.png'))
    self.assertEmpty(os.listdir(self.outdir))

  def test_curves(self):
    cells = _seeded_grid() + [_cell('badnets', 'none', 0.96, 1.0),
                              _cell('odd/name', 'ft', 0.9, 0.5)]
    for i, cell in enumerate(cells[:3]):
      cell['history'] = [{'epoch': e, 'test_acc': 0.8 + 0.05 * e + 0.01 * i,
                          'asr': 0.9 - 0.3 * e, 'train_loss': 1.0}
                         for e in (1, 2, 3)]
    cells[5]['history'] = [{'epoch': 1, 'acc': 0.9, 'asr': 0.5}]
    paths = report.plot_curves(cells, self.outdir)
    self.assertEqual(paths, {
        'badnets': os.path.join(self.outdir, 'curves_badnets.png'),
        'blend': os.path.join(self.outdir, 'curves_blend.png'),
        'odd/name': os.path.join(self.outdir, 'curves_odd_name.png')})
    for path in paths.values():
      self.assertEqual(_png_size(path), (1320, 540))  # (11, 4.5) in.

  def test_write_results_with_plots(self):
    cells = _grid()
    cells[0]['history'] = [{'epoch': 1, 'test_acc': 0.9, 'asr': 0.5}]
    paths = report.write_results(cells, self.outdir, plots=True)
    self.assertCountEqual(paths, ['json', 'csv', 'md', 'acc_vs_asr',
                                  'curves_badnets'])
    self.assertEqual(_png_size(paths['acc_vs_asr']), (840, 600))
    self.assertLen(os.listdir(self.outdir), 5)  # No temporary files left.

  def test_sweeps_one_png_per_defense_with_a_sweep(self):
    cells = _seeded_grid() + [_cell('badnets', 'mcr', 0.9, 0.5),
                              _cell('blend', 'mcr', 0.9, 0.5)]
    for cell in cells[-2:]:
      cell['sweep_name'] = 't'
      cell['sweep'] = [{'value': t, 'test_acc': 0.9 - 0.1 * t,
                        'asr': 1.0 - t} for t in (0.0, 0.5, 1.0)]
    paths = report.plot_sweeps(cells, self.outdir)
    self.assertEqual(paths, {'mcr': os.path.join(self.outdir,
                                                 'sweep_mcr.png')})
    self.assertEqual(_png_size(paths['mcr']), (1320, 540))
    cells[-1]['sweep'] = [{'t': 0.3}]  # No 'value'.
    with self.assertRaisesRegex(ValueError, 'sweep must be a list of dicts'):
      report.plot_sweeps(cells, self.outdir)

  def test_bad_history(self):
    cells = _grid()
    cells[0]['history'] = [1, 2]
    with self.assertRaisesRegex(ValueError, 'history must be a list of dicts'):
      report.plot_curves(cells, self.outdir)

  def test_curves_without_history_write_nothing(self):
    self.assertEqual(report.plot_curves(_grid(), self.outdir), {})
    self.assertEmpty(os.listdir(self.outdir))

  def test_attention_maps(self):
    rng = np.random.default_rng(0)
    rows = [f'{m} / {x}' for m in ('before', 'after')
            for x in ('clean', 'triggered')]
    grid = {r: {'group1': rng.random((8, 8)), 'group2': rng.random((1, 4, 4)),
                'group3': rng.random((2, 2))} for r in rows}
    images = {r: rng.random((8, 8, 3)) for r in rows[:3]}
    path = report.plot_attention_maps(
        grid, os.path.join(self.outdir, 'att.png'), title='NAD-style',
        images=images)
    # 4 columns x 4 rows of 2-inch panels + 1 x 1.5 inches of margins.
    self.assertEqual(maps.attention_figsize(4, 4), (9.0, 9.5))
    self.assertEqual(_png_size(path), (1080, 1140))
    del grid[rows[0]]['group3']  # A missing panel stays blank.
    path = report.plot_attention_maps(grid, os.path.join(self.outdir, 'b.png'))
    self.assertEqual(_png_size(path), (840, 1140))
    self.assertCountEqual(os.listdir(self.outdir), ['att.png', 'b.png'])

  def test_attention_maps_bad_input(self):
    path = os.path.join(self.outdir, 'x.png')
    with self.assertRaisesRegex(ValueError, 'non-empty dict'):
      report.plot_attention_maps({}, path)
    with self.assertRaisesRegex(ValueError, r"maps\['a'\]\['g1'\]: expected"):
      report.plot_attention_maps({'a': {'g1': np.zeros(4)}}, path)
    with self.assertRaisesRegex(ValueError, "rows \\['b'\\]"):
      report.plot_attention_maps({'a': {'g1': np.zeros((2, 2))}}, path,
                                 images={'b': np.zeros((4, 4, 3))})


class ImplantTest(_TestCase):

  def _cells(self):
    history = [{'epoch': e, 'test_acc': 0.9 + 0.02 * e, 'asr': 0.3 * e}
               for e in (1, 2, 3)]
    return [
        _cell('badnets', 'none', 0.965, 0.95, seed=0, history=history),
        _cell('badnets', 'none', 0.945, 0.99, seed=1, history=history),
        _cell('badnets', 'nba', 0.95, 0.01, seed=0),
        _cell('blend', 'none', 0.97, 0.85, seed=0, history=history),
        _cell('blend', 'none', 0.97, 0.95, seed=2),
    ]

  def test_rows_judge_asr_and_the_drop_against_the_same_seed(self):
    rows = report.implant_rows(self._cells(), {0: 0.97, 1: 0.96})
    got = [(r['attack'], r['seed'], r['implanted']) for r in rows]
    # badnets seed 1 drops 1.5 points; blend seed 0 is at 85 % ASR; seed 2
    # has no clean model, so it cannot be judged.
    self.assertEqual(got, [('badnets', 0, True), ('badnets', 1, False),
                           ('blend', 0, False), ('blend', 2, None)])
    self.assertAlmostEqual(rows[0]['acc_drop'], 0.005)
    self.assertEqual(rows[0]['epochs'], 3)

  def test_a_tiny_negative_drop_shows_as_zero(self):
    rows = report.implant_rows(
        [_cell('badnets', 'none', 0.99802, 0.95, seed=0)], {0: 0.998})
    self.assertIn('| 99.8 | 0.0 | yes |', implant.implant_markdown(rows))

  def test_exactly_one_point_and_ninety_percent_pass(self):
    rows = report.implant_rows(
        [_cell('badnets', 'none', 0.95, 0.90, seed=0)], {0: 0.96})
    self.assertTrue(rows[0]['implanted'])

  def test_markdown_verdict(self):
    rows = report.implant_rows(self._cells(), {0: 0.97, 1: 0.96})
    text = implant.implant_markdown(rows, split='val')
    self.assertIn('(val split)', text)
    self.assertIn('| BadNets | 0 | 3 | 96.5 | 95.0 | 97.0 | 0.5 | yes |',
                  text)
    self.assertIn('| Blend | 2 | 0 | 97.0 | 95.0 | — | — | — |', text)
    self.assertIn('Implanted in every seed: none; not (in some seed): '
                  'badnets, blend.', text)

  def test_write_implant_files(self):
    outdir = self._tempdir()
    paths = report.write_implant(self._cells(), outdir,
                                 clean_acc={0: 0.97, 1: 0.96}, split='val')
    self.assertEqual(sorted(paths), ['json', 'md', 'png'])
    self.assertEqual(_png_size(paths['png']), (1320, 540))
    with open(paths['json'], encoding='utf-8') as f:
      saved = json.load(f)
    self.assertEqual(saved['split'], 'val')
    self.assertEqual([r['implanted'] for r in saved['rows']],
                     [True, False, False, None])

  def test_nothing_without_backdoored_models(self):
    outdir = self._tempdir()
    self.assertEqual(report.write_implant(
        [_cell('badnets', 'nba', 0.95, 0.01)], outdir), {})
    self.assertEmpty(os.listdir(outdir))


class ImportTest(_TestCase):

  def test_no_jax_no_pyplot(self):
    code = ('import sys; from nbajax import report; '
            'assert "matplotlib" not in sys.modules; '
            'from nbajax.report import plots, maps; '
            'bad = [m for m in ("jax", "flax", "ml_collections", '
            '"matplotlib.pyplot") if m in sys.modules]; '
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)




class TransposedTableTest(absltest.TestCase):

  def test_rows_are_defenses_and_the_mean_is_a_column(self):
    text = report.markdown_table(_grid(), transpose=True, notes=False)
    lines = text.splitlines()
    self.assertEqual([c.strip() for c in lines[0].split('|')[1:-1]],
                     ['ACC / ASR (%)', 'BadNets', 'Blend', '**Mean**'])
    rows = {l.split('|')[1].strip(): [c.strip() for c in l.split('|')[2:-1]]
            for l in lines[2:]}
    self.assertEqual(list(rows), ['No defense', 'FT', 'NBA'])
    self.assertEqual(rows['NBA'], ['95.0 / 11.6', '94.4 / 16.6',
                                   '94.7 / 14.1'])

  def test_same_cells_as_the_untransposed_table(self):
    plain = report.markdown_table(_grid(), notes=False).splitlines()
    flipped = report.markdown_table(_grid(), transpose=True,
                                    notes=False).splitlines()
    cell = lambda lines, i, j: lines[i].split('|')[j + 1].strip()
    for i in range(2, len(plain)):
      for j in range(1, 4):
        self.assertEqual(cell(plain, i, j), cell(flipped, j + 1, i - 1))


def _claim_cells(nba=(0.95, 0.05), nad=(0.955, 0.30), ft=(0.96, 0.50),
                 extra=(), seed=0):
  cells = []
  for attack in ('badnets', 'blend'):
    cells += [_cell(attack, 'none', 0.96, 1.0, seed=seed),
              _cell(attack, 'nba', *nba, seed=seed),
              _cell(attack, 'nad', *nad, seed=seed),
              _cell(attack, 'ft', *ft, seed=seed)]
  return cells + list(extra)


class CheckClaimTest(absltest.TestCase):

  def test_lower_asr_within_one_point_holds(self):
    check = report.check_claim(_claim_cells())
    self.assertTrue(check.holds)
    self.assertEqual(check.attacks, ('badnets', 'blend'))
    self.assertIn('mean ASR 5.0 vs 30.0 %, extra ACC loss +0.50 points',
                  check.lines[1])

  def test_more_than_one_point_of_accuracy_fails(self):
    check = report.check_claim(_claim_cells(ft=(0.962, 0.5)))
    self.assertFalse(check.holds)
    self.assertIn('nba vs ft', check.lines[2])
    self.assertIn('not beaten', check.lines[2])
    self.assertIn('beaten', check.lines[1])

  def test_equal_asr_is_not_lower(self):
    self.assertFalse(report.check_claim(_claim_cells(nad=(0.95, 0.05))).holds)

  def test_attacks_that_did_not_implant_are_left_out(self):
    weak = [_cell('wanet', 'none', 0.96, 0.08), _cell('wanet', 'nba', 0.5, 0.9),
            _cell('wanet', 'nad', 0.96, 0.0), _cell('wanet', 'ft', 0.96, 0.0)]
    check = report.check_claim(_claim_cells(extra=weak))
    self.assertTrue(check.holds)
    self.assertNotIn('wanet', check.attacks)

  def test_a_model_that_did_not_implant_is_left_out_with_its_defenses(self):
    # BadNets' seed-1 model is at 20 % ASR: its defense cells (labelled
    # '1/<defense seed>') would pull NAD's and FT's mean ASR down.
    weak = [_cell('badnets', 'none', 0.96, 0.20, seed=1)] + [
        _cell('badnets', d, 0.96, 0.02, seed=f'1/{dseed}')
        for d in ('nba', 'nad', 'ft') for dseed in (0, 1)]
    check = report.check_claim(_claim_cells(extra=weak))
    self.assertEqual(check.attacks, ('badnets', 'blend'))
    self.assertIn('mean ASR 5.0 vs 30.0 %', check.lines[1])
    self.assertEqual(check.lines[-1], '- left out, not implanted: badnets '
                     'seed 1 (ASR 20.0 % before defense)')
    # Kept, the weak model's cells would move NAD's mean ASR.
    kept = report.check_claim(_claim_cells(extra=weak), min_implanted_asr=0.1)
    self.assertNotIn('mean ASR 5.0 vs 30.0 %', kept.lines[1])

  def test_without_a_baseline_it_is_not_checkable(self):
    cells = [c for c in _claim_cells() if c['defense'] != 'nad']
    check = report.check_claim(cells)
    self.assertIsNone(check.holds)
    self.assertIn('not checkable', check.lines[0])

  def test_one_implanted_attack_is_named_in_the_singular(self):
    cells = [c for c in _claim_cells() if c['attack'] == 'blend']
    self.assertTrue(report.check_claim(cells).lines[0].endswith(
        'over 1 implanted attack: blend.'))

  def test_results_md_has_the_claim_only_with_all_defenses(self):
    text = report.results_markdown(_claim_cells())
    self.assertIn('## The NBA claim\n\n**Claim holds**', text)
    self.assertIn('## The removal target\n\n**Target holds**', text)
    self.assertNotIn('NBA claim', report.results_markdown(_grid()))
    self.assertNotIn('removal target', report.results_markdown(_grid()))

  def test_one_seed_has_no_per_seed_lines(self):
    check = report.check_claim(_claim_cells())
    self.assertEqual(check.per_seed, {})
    self.assertLen(check.lines, 3)

  def test_each_seed_is_checked_alone_and_paired(self):
    # Seed 0 beats both; seed 1 loses 2 points of ACC against FT. The mean
    # (ACC 0.94 vs 0.955 for FT: 1.5 points) does not hold either.
    cells = (_claim_cells(nba=(0.95, 0.05), seed=0) +
             _claim_cells(nba=(0.93, 0.15), nad=(0.955, 0.40), seed=1))
    check = report.check_claim(cells)
    self.assertFalse(check.holds)
    self.assertEqual(check.per_seed, {0: True, 1: False})
    self.assertIn('on each seed alone: holds on 1 of 2', check.lines[3])
    self.assertTrue(check.lines[4].startswith('- seed 0: holds (nba vs nad'))
    self.assertTrue(check.lines[5].startswith('- seed 1: does not hold'))
    # nba - nad ASR per seed: -25 and -25 points; extra ACC loss vs nad
    # +0.5 and +2.5 points.
    self.assertEqual(
        check.lines[6], '- paired over 2 seeds, nba − nad: ASR -25.0 ± 0.0 '
        'points, extra ACC loss +1.50 ± 1.41 points (mean ± std over seeds)')
    self.assertIn('nba − ft: ASR -40.0 ± 7.1 points, extra ACC loss '
                  '+2.00 ± 1.41', check.lines[7])

  def test_a_cell_without_its_metric_makes_it_not_checkable(self):
    cells = _claim_cells()
    next(c for c in cells if c['defense'] == 'nba')['acc'] = float('nan')
    check = report.check_claim(cells)
    self.assertIsNone(check.holds)
    self.assertIn('not checkable: a mean ACC or ASR of nba, nad, ft',
                  check.lines[0])

  def test_a_seed_without_a_metric_is_named_and_not_paired(self):
    cells = _claim_cells(seed=0) + _claim_cells(seed=1)
    next(c for c in cells
         if c['defense'] == 'nba' and c['seed'] == 1)['asr'] = None
    check = report.check_claim(cells)
    self.assertEqual(check.per_seed, {0: True})
    self.assertIn('- seed 1: not checkable (a cell without ACC or ASR)',
                  check.lines)
    self.assertFalse(any('paired' in line for line in check.lines))

  def test_seeds_some_defense_lacks_are_not_checked_alone(self):
    cells = (_claim_cells(seed=0) + _claim_cells(seed=1)
             + [_cell('badnets', 'nba', 0.95, 0.05, seed=2)])
    self.assertEqual(set(report.check_claim(cells).per_seed), {0, 1})


class CheckTargetTest(absltest.TestCase):

  def test_half_of_each_baseline_and_five_percent_within_a_point_of_nad(self):
    check = report.check_target(_claim_cells(nba=(0.95, 0.05),
                                             nad=(0.955, 0.10)))
    self.assertTrue(check.holds)
    self.assertIn('mean ASR 5.0 vs 10.0 % (at most 5.0), extra ACC loss '
                  '+0.50 points (allowed 1.00): met', check.lines[1])
    # FT is compared on ASR only: 1 point more ACC than NBA is allowed.
    self.assertEqual(check.lines[2],
                     '- nba vs ft: mean ASR 5.0 vs 50.0 % (at most 25.0): met')

  def test_each_condition_can_fail_it(self):
    for nba, nad in (((0.95, 0.06), (0.955, 0.30)),   # above 5 %
                     ((0.95, 0.05), (0.955, 0.09)),   # above half of NAD's
                     ((0.94, 0.01), (0.955, 0.30))):  # 1.5 points below NAD
      with self.subTest(nba=nba, nad=nad):
        self.assertFalse(
            report.check_target(_claim_cells(nba=nba, nad=nad)).holds)

  def test_per_seed(self):
    cells = (_claim_cells(nba=(0.95, 0.01), seed=0) +
             _claim_cells(nba=(0.95, 0.08), seed=1))
    check = report.check_target(cells)
    # Mean ASR 4.5 % meets it; seed 1's 8 % alone does not.
    self.assertTrue(check.holds)
    self.assertEqual(check.per_seed, {0: True, 1: False})
    self.assertTrue(check.lines[6].startswith('- seed 1: does not hold'))

  def test_the_accuracy_baseline_must_be_a_baseline(self):
    for fn in (report.check_target, report.target_map):
      with self.subTest(fn=fn.__name__), \
          self.assertRaisesRegex(ValueError, 'acc_baseline'):
        fn(_claim_cells(), acc_baseline='fp')


def _target_cells():
  """NBA, NAD, FT and three candidates on two attacks; 'half' lacks blend,
  SIG's model is not implanted (ASR 40 % before defense)."""
  cands = [_cell(a, d, acc, asr) for a in ('badnets', 'blend')
           for d, acc, asr in (('low_asr', 0.93, 0.01),   # 2.5 points lost
                               ('keeps_acc', 0.952, 0.06))]
  return _claim_cells(
      nba=(0.95, 0.04), nad=(0.955, 0.30), ft=(0.96, 0.50),
      extra=cands + [_cell('badnets', 'half', 0.95, 0.0),
                     _cell('sig', 'none', 0.96, 0.40),
                     _cell('sig', 'nba', 0.90, 0.30)])


class TargetMapTest(_TestCase):

  def test_points_bound_and_missing(self):
    tmap = report.target_map(_target_cells())
    self.assertEqual(tmap.attacks, ('badnets', 'blend'))  # SIG left out.
    self.assertEqual(tmap.missing, ('half',))
    expected = {'ft': (-0.005, 0.5), 'nad': (0.0, 0.3), 'nba': (0.005, 0.04),
                'low_asr': (0.025, 0.01), 'keeps_acc': (0.003, 0.06)}
    self.assertCountEqual(tmap.points, expected)
    for d, (loss, asr) in expected.items():
      np.testing.assert_allclose(tmap.points[d], (loss, asr), atol=1e-12)
    self.assertAlmostEqual(tmap.max_asr, 0.05)  # min(5 %, 15 %, 25 %)
    self.assertAlmostEqual(tmap.max_extra_acc_loss, 0.01)

  def test_the_bound_follows_a_low_baseline(self):
    tmap = report.target_map(_claim_cells(nad=(0.955, 0.06)))
    self.assertAlmostEqual(tmap.max_asr, 0.03)  # Half of NAD's 6 %.

  def test_a_point_in_the_region_is_what_check_target_calls_met(self):
    cells = _target_cells()
    tmap = report.target_map(cells)
    for d in ('nba', 'low_asr', 'keeps_acc'):
      loss, asr = tmap.points[d]
      inside = loss <= tmap.max_extra_acc_loss and asr <= tmap.max_asr
      with self.subTest(defense=d):
        self.assertEqual(report.check_target(cells, method=d).holds, inside)
    self.assertTrue(report.check_target(cells, method='nba').holds)

  def test_nothing_to_draw_without_the_baselines(self):
    cells = [c for c in _claim_cells() if c['defense'] != 'ft']
    self.assertIsNone(report.target_map(cells))
    with self.assertRaises(plots.NoTargetError):
      report.plot_target(cells, os.path.join(self._tempdir(), 't.png'))

  def test_png(self):
    path = report.plot_target(_target_cells(),
                              os.path.join(self._tempdir(), 'target.png'),
                              title='Demo')
    self.assertEqual(_png_size(path), (840, 600))

  def test_cli_writes_it_with_plots_and_a_claim(self):
    results = os.path.join(self._tempdir(), 'r.json')
    with open(results, 'w') as f:
      json.dump(_target_cells(), f)
    for extra, written in ((['--claim', 'nba'], True), ([], False)):
      outdir = os.path.join(self._tempdir(), 'out')
      with self.subTest(extra=extra), \
          contextlib.redirect_stdout(io.StringIO()) as out:
        code = report_cli.main([results, '--outdir', outdir, '--plots',
                                *extra])
        self.assertEqual(code, 0)
        self.assertEqual(
            os.path.exists(os.path.join(outdir, 'target.png')), written)
        self.assertEqual('target.png' in out.getvalue(), written)

  def test_cli_says_why_there_is_no_target(self):
    results = os.path.join(self._tempdir(), 'r.json')
    with open(results, 'w') as f:
      json.dump([c for c in _claim_cells() if c['defense'] != 'nad'], f)
    outdir = os.path.join(self._tempdir(), 'out')
    with contextlib.redirect_stdout(io.StringIO()) as out:
      code = report_cli.main([results, '--outdir', outdir, '--plots',
                              '--claim', 'nba'])
    self.assertEqual(code, 0)
    self.assertIn('no target.png: no implanted attack', out.getvalue())
    self.assertFalse(os.path.exists(os.path.join(outdir, 'target.png')))


if __name__ == '__main__':
  absltest.main()
