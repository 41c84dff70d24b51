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
