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
