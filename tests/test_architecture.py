"""Dependencies point one way (docs/design.md §3).

Every import between the project's modules, function-level ones included,
must go from a higher layer to a lower one, or stay inside one package of
the same layer; the jobs import no other job; nothing forms a circle.
"""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the first entry that is it or a package
# above it.
LAYERS = (
    ('nbajax.errors', 'nbajax.atomic'),
    # The pure losses: the attacks (CL's PGD) and the generator use them.
    ('nbajax.losses',),
    ('nbajax.generator', 'nbajax.metrics', 'nbajax.models',
     'nbajax.attacks', 'nbajax.data'),
    ('nbajax.rundir', 'nbajax.checkpoint'),
    ('nbajax.training',),
    ('nbajax.defenses',),
    ('nbajax.bench',),
    ('nbajax.report',),
    # Config derivation, checks and the pieces every job uses.
    ('nbajax.pipeline.derive', 'nbajax.pipeline.fields'),
    ('nbajax.pipeline.common', 'nbajax.pipeline.evaluate'),
    ('nbajax.pipeline.validate', 'nbajax.pipeline.record'),
    ('nbajax.pipeline.model_runs', 'nbajax.pipeline.defense_setup'),
    # The jobs: none imports another.
    ('nbajax.pipeline.train', 'nbajax.pipeline.attack',
     'nbajax.pipeline.defend', 'nbajax.pipeline.probe'),
    # The only code that composes jobs; the ablation runs on a grid.
    ('nbajax.pipeline.reproduce',),
    ('nbajax.pipeline.ablation',),
    ('experiments',),
)
JOBS = next(e for e in LAYERS if 'nbajax.pipeline.train' in e)


def _modules() -> dict[str, pathlib.Path]:
  found = {}
  for top in ('nbajax', 'experiments'):
    for path in sorted((REPO / top).rglob('*.py')):
      name = '.'.join(path.relative_to(REPO).with_suffix('').parts)
      found[name.removesuffix('.__init__')] = path
  return found


def _group(name: str) -> tuple[int, str]:
  """(layer, the LAYERS entry) of a module."""
  for level, entries in enumerate(LAYERS):
    for entry in entries:
      if name == entry or name.startswith(entry + '.'):
        return level, entry
  if name in ('nbajax', 'nbajax.pipeline'):  # Packages that import nothing.
    return 0, name
  raise AssertionError(f'{name} is in no layer: add it to LAYERS')


def _imports(modules) -> dict[str, set[str]]:
  edges = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        for a in node.names:
          full = f'{node.module}.{a.name}'
          deps.add(full if full in modules else node.module)
    edges[name] = {d for d in deps if d in modules and d != name}
  return edges


def test_every_import_points_down():
  edges = _imports(_modules())
  upward = []
  for name, deps in edges.items():
    level, entry = _group(name)
    for dep in deps:
      dep_level, dep_entry = _group(dep)
      if dep in ('nbajax', 'nbajax.pipeline') or dep_level < level:
        continue
      if dep_level == level and dep_entry == entry and name not in JOBS:
        continue  # Inside one package (e.g. models.wrn -> models.common).
      upward.append(f'{name} -> {dep}')
  assert not upward, upward


def test_no_circles():
  edges = _imports(_modules())
  circles = []

  def visit(node, stack, done):
    if node in stack:
      circles.append(stack[stack.index(node):] + [node])
      return
    if node in done:
      return
    done.add(node)
    for dep in sorted(edges[node]):
      visit(dep, stack + [node], done)

  for name in edges:
    visit(name, [], set())
  assert not circles, [' -> '.join(c) for c in circles]


def test_report_writes_through_the_io_layer_only():
  edges = _imports(_modules())
  allowed = ('nbajax.report', 'nbajax.atomic', 'nbajax.rundir',
             'nbajax.errors')
  wrong = [f'{n} -> {d}' for n, deps in edges.items()
           if n.startswith('nbajax.report') for d in deps
           if not d.startswith(allowed)]
  assert not wrong, wrong
