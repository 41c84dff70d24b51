"""The design document the code cites is in the repository, and so is
every section it cites (users have no other design file)."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def _sources():
  for folder in ('nbajax', 'experiments', 'tests'):
    yield from sorted((REPO / folder).rglob('*.py'))


def test_cited_sections_exist():
  design = (REPO / 'docs' / 'design.md').read_text(encoding='utf-8')
  sections = set(re.findall(r'^## (\d+)\. ', design, flags=re.M))
  cited = {}
  for path in _sources():
    for number in re.findall(r'docs/design\.md §(\d+)', path.read_text()):
      cited.setdefault(number, []).append(path.name)
  assert cited, 'no module cites docs/design.md'
  missing = {n: files for n, files in cited.items() if n not in sections}
  assert not missing, missing


def test_no_citation_of_a_file_outside_the_repository():
  offenders = [str(p) for p in _sources()
               if 'DESIGN' + '.md' in p.read_text()]
  assert not offenders, offenders


def _table_lines(text: str) -> list[str]:
  """The lines of the first markdown table in `text`."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith('|'))
  end = next((i for i in range(start, len(lines))
              if not lines[i].startswith('|')), len(lines))
  return lines[start:end]


def test_readme_digits_table_is_the_committed_run():
  """The README quotes docs/digits/results.md, which is what
  docs/digits/results.json tabulates (the files `python -m
  experiments.reproduce` writes; compare a fresh run's with them)."""
  import json
  from nbajax import report
  readme = (REPO / 'README.md').read_text(encoding='utf-8')
  section = readme.split('### Digits (the default job)', 1)[1]
  quoted = _table_lines(section)
  committed = (REPO / 'docs' / 'digits' / 'results.md').read_text(
      encoding='utf-8')
  assert quoted == _table_lines(committed.split('## ACC / ASR', 1)[1])
  cells = json.loads((REPO / 'docs' / 'digits' / 'results.json').read_text())
  assert quoted == _table_lines(report.markdown_table(
      cells, metrics=('acc', 'asr')))


# README sections (### or ####) whose first table quotes a committed merged
# report.
_QUOTED_REPORTS = {
    'Digits over three seeds': 'docs/digits_seeds/results.md',
    'GTSRB, test split (this revision': 'docs/gtsrb_test/results.md',
    'GTSRB, test split, models trained 10 epochs':
        'docs/gtsrb_test/models_10epochs/results.md',
    'GTSRB: WaNet': 'docs/gtsrb_test/wanet/results.md',
    'CIFAR-10 subset (test split': 'docs/cifar10_subset/results.md',
    'Blend and SIG again, with ANP':
        'docs/cifar10_subset/blend_sig_rerun/results.md',
}


def _cells(lines: list[str]) -> dict[str, list[str]]:
  """'header' -> the column names, and row label -> stripped cells for every
  row but the bold ones (the README may average over fewer attacks)."""
  def split(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]
  rows = {'header': split(lines[0])[1:]}
  for line in lines[2:]:
    label, *cells = split(line)
    if not label.startswith('**'):
      rows[label] = cells
  return rows


def test_readme_tables_quote_the_committed_reports():
  """Each README table that quotes a merged report (`python -m
  nbajax.report` over the committed JSONs) has its cells, defense by defense
  and attack by attack; a regenerated report must be requoted."""
  readme = (REPO / 'README.md').read_text(encoding='utf-8')
  sections = {s.splitlines()[0]: s
              for s in re.split(r'\n#{3,4} ', readme)[1:]}
  for heading, path in _QUOTED_REPORTS.items():
    matches = [s for title, s in sections.items() if title.startswith(heading)]
    assert len(matches) == 1, heading
    quoted = _cells(_table_lines(matches[0]))
    report_md = (REPO / path).read_text(encoding='utf-8')
    committed = _cells(_table_lines(report_md.split('## ACC / ASR', 1)[1]))
    assert quoted == committed, heading
