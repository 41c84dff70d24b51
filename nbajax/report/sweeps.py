"""ACC and ASR along a defense's own parameter: MCR's curve point t, ANP's
pruning threshold (a cell's 'sweep', recorded by the defense after its
run; the defended model is the one its config names, never the best point
of this figure).
"""

from collections.abc import Iterable, Mapping
import os
from typing import Any

import numpy as np

from nbajax.report import cells as cells_lib
from nbajax.report import figure
from nbajax.report import tables

SWEEP_FIGSIZE = (11.0, 4.5)  # inches: 1320 x 540 px at DPI.
# Labels of the swept parameters the defenses record.
PARAMETER_LABELS = {'t': 'Curve point t (0: backdoored, 1: fine-tuned)',
                    'threshold': 'Pruning threshold on the mask'}


def _points(group: list[Mapping[str, Any]], key: str) -> tuple[list, list]:
  """Values present in every seed's sweep and the mean of `key` (percent)."""
  sweeps = [{float(e['value']): e.get(key) for e in c['sweep']}
            for c in group]
  values = sorted(set.intersection(*(set(s) for s in sweeps)))
  means = [100 * float(np.mean([s[v] for s in sweeps])) for v in values
           if all(s[v] is not None for s in sweeps)]
  return values[:len(means)], means


@figure.styled
def _plot_defense(groups, defense, attacks, path, *, a_names, d_name,
                  parameter) -> None:
  fig = figure.new_figure(SWEEP_FIGSIZE)
  axes = fig.subplots(1, 2, sharex=True)
  for ax, key, metric in ((axes[0], 'test_acc', 'ACC'),
                          (axes[1], 'asr', 'ASR')):
    for i, attack in enumerate(attacks):
      values, means = _points(groups[(attack, defense)], key)
      if values:
        ax.plot(values, means, marker='.', color=f'C{i % 10}',
                label=a_names.get(attack, attack))
    ax.set_xlabel(PARAMETER_LABELS.get(parameter, parameter))
    ax.set_ylabel(f'{metric} (%)')
    ax.set_title(f'{metric} along {parameter}')
    ax.grid(alpha=0.3)
  axes[1].set_ylim(-4.0, 104.0)
  fig.legend(*axes[0].get_legend_handles_labels(), loc='outside right upper',
             title='Attack\n(mean over seeds)')
  fig.suptitle(f'{d_name}: test ACC and ASR along {parameter}')
  figure.save_png(fig, path)


def plot_sweeps(cells: Iterable[Mapping[str, Any]], outdir: str
                ) -> dict[str, str]:
  """One PNG per defense whose cells carry a sweep: `sweep_<defense>.png`.

  Args:
    cells: result cells; a cell's optional 'sweep' is a list of
      `{'value', 'test_acc', 'asr', ...}` and 'sweep_name' names the value.
    outdir: folder for the PNGs (created if missing).

  Returns:
    defense -> path written.
  """
  cells = cells_lib.validate_cells(cells, metrics=())
  groups = cells_lib.group_cells(c for c in cells if c.get('sweep'))
  paths = {}
  for defense in cells_lib.defense_order(cells):
    attacks = [a for a in cells_lib.attack_order(cells)
               if (a, defense) in groups]
    if not attacks:
      continue
    parameter = groups[(attacks[0], defense)][0].get('sweep_name') or 'value'
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f'sweep_{defense}.png')
    _plot_defense(groups, defense, attacks, path,
                  a_names=tables.ATTACK_LABELS,
                  d_name=tables.DEFENSE_LABELS.get(defense, defense),
                  parameter=parameter)
    paths[defense] = path
  return paths
