"""Tables (markdown, CSV, JSON) and figures of an experiment grid's results.

Pure NumPy + matplotlib; imports no JAX, Flax or config code, so results can
be re-tabulated anywhere: `python -m nbajax.report results.json`.

A result *cell* is one evaluated model (one attack x defense x seed)::

  {'attack': 'badnets',      # 'none' for a clean model's row
   'defense': 'nba',         # 'none' = the backdoored model before defense
   'seed': 0,                # optional; cells of one (attack, defense) and
                             # several seeds are shown as mean ± spread
   'acc': 0.961, 'acc_nontarget': 0.958, 'asr': 0.12, 'ra': 0.80,
   'der': 0.93,              # fractions in [0, 1]; None/NaN = not available
   'wall_seconds': 81.2,     # optional
   'history': [{'epoch': 1, 'test_acc': 0.95, 'asr': 0.5, ...}],  # optional
   'sweep': [{'value': 0.3, 'test_acc': 0.9, 'asr': 0.1}],  # optional
   'sweep_name': 't',        # what the sweep's value is (MCR, ANP)
   'fingerprint': '...',     # optional, becomes a CSV column
   'config': {...}}          # optional, JSON only

Entry points: `write_results`, `markdown_table`, `check_claim` and
`check_target` (the NBA claim and the removal target), `target_map` and
`plot_target` (every defense against the target), `plot_acc_vs_asr`,
`plot_curves`, `plot_sweeps`, `plot_attention_maps`, `write_implant` (how
well each attack implanted), `compare_cells` (does a run reproduce a
published one).
Plotting modules load matplotlib on first use, so table-only users never
import it.
"""

from nbajax.report.cells import CLEAN_ATTACK
from nbajax.report.claim import check_claim
from nbajax.report.claim import check_target
from nbajax.report.claim import target_map
from nbajax.report.compare import compare_cells
from nbajax.report.cells import DEFENSE_ORDER
from nbajax.report.cells import METRICS
from nbajax.report.cells import validate_cells
from nbajax.report.files import results_markdown
from nbajax.report.files import split_sentence
from nbajax.report.files import write_results
from nbajax.report.implant import implant_rows
from nbajax.report.implant import write_implant
from nbajax.report.tables import csv_text
from nbajax.report.tables import json_text
from nbajax.report.tables import markdown_table

_LAZY = {'plot_acc_vs_asr': 'plots', 'plot_curves': 'plots',
         'plot_target': 'plots',
         'plot_attention_maps': 'maps', 'plot_sweeps': 'sweeps'}


def __getattr__(name):
  """Loads the matplotlib-based plot functions on first access."""
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(f'nbajax.report.{_LAZY[name]}')
    return getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['CLEAN_ATTACK', 'DEFENSE_ORDER', 'METRICS', 'check_claim',
           'check_target', 'compare_cells', 'csv_text', 'implant_rows', 'json_text', 'markdown_table',
           'plot_acc_vs_asr', 'plot_attention_maps', 'plot_curves',
           'plot_sweeps', 'plot_target', 'results_markdown', 'split_sentence',
           'target_map', 'validate_cells', 'write_implant', 'write_results']
