"""How well each attack implanted: the backdoored models before any defense.

A defense table says nothing about an attack whose backdoor never took, so
a grid also reports, for each attack and seed, the backdoored model's ACC
and ASR, its ACC against the clean model of the same seed, and whether it
passes the bar of docs/design.md §5 (ASR >= 90 % at <= 1 point of ACC below
the clean model), with the ASR and ACC per training epoch as a figure.
(`check_claim`'s 50 % is another rule: whether an attack can tell defenses
apart at all.)

Input: the grid's result cells (defense 'none' rows, see `nbajax.report`)
and `{seed: clean model ACC}` (fractions, the same split as the cells).
"""

from collections.abc import Iterable, Mapping
import json
import os
from typing import Any

from nbajax.atomic import write_text_atomic
from nbajax.report import cells as cells_lib
from nbajax.report import tables

MIN_ASR = 0.90  # An attack counts as implanted from this ASR ...
MAX_ACC_DROP = 0.01  # ... at most this far below the clean model's ACC.
IMPLANT_FIGSIZE = (11.0, 4.5)  # inches, as the training curves.
FILES = ('implant.md', 'implant.json', 'implant.png')


def implant_rows(cells: Iterable[Mapping[str, Any]],
                 clean_acc: Mapping[Any, float] | None = None
                 ) -> list[dict[str, Any]]:
  """One row per backdoored model ('none' cell), in table order.

  Args:
    cells: result cells; only defense 'none' is read.
    clean_acc: seed -> ACC of the clean model (fraction); a seed missing
      here gets no ACC drop and `implanted` None (cannot be judged).

  Returns:
    Dicts with 'attack', 'seed', 'acc', 'asr', 'epochs', 'clean_acc',
    'acc_drop' (clean - backdoored, fractions) and 'implanted' (bool or
    None).

  Raises:
    ValueError: invalid cells (see `nbajax.report.cells.validate_cells`).
  """
  cells = cells_lib.validate_cells(cells, metrics=('acc', 'asr'))
  clean_acc = dict(clean_acc or {})
  rows = []
  for attack in cells_lib.attack_order(cells):
    for cell in cells:
      if cell['attack'] != attack or cell['defense'] != 'none':
        continue
      seed = cell.get('seed')
      acc, asr = (cells_lib.value(cell, k) for k in ('acc', 'asr'))
      clean = clean_acc.get(seed)
      drop = None if clean is None or acc is None else clean - acc
      rows.append({
          'attack': attack, 'seed': seed, 'acc': acc, 'asr': asr,
          'epochs': len(cell.get('history') or []),
          'clean_acc': clean, 'acc_drop': drop,
          'implanted': None if drop is None or asr is None else bool(
              asr >= MIN_ASR and drop <= MAX_ACC_DROP + 1e-12)})
  return rows


def _pct(value: float | None) -> str:
  if value is None:
    return tables.MISSING
  text = f'{100 * value:.1f}'
  return '0.0' if text == '-0.0' else text  # A drop of -0.01 points.


def implant_markdown(rows: list[Mapping[str, Any]], *, split: str = 'test'
                     ) -> str:
  """The rows as a markdown table with a one-line verdict per attack."""
  lines = [
      f'# Backdoored models before any defense ({split} split)', '',
      f'Implanted: ASR >= {100 * MIN_ASR:.0f} % at <= '
      f'{100 * MAX_ACC_DROP:.0f} point of ACC below the clean model of the '
      f'same seed. ACC, ASR and the drop in %.', '',
      '| Attack | Seed | Epochs | ACC | ASR | Clean ACC | ACC drop | '
      'Implanted |', '|:--|--:|--:|--:|--:|--:|--:|:--|']
  for r in rows:
    verdict = {True: 'yes', False: 'no', None: tables.MISSING}[r['implanted']]
    label = tables.ATTACK_LABELS.get(r['attack'], r['attack'])
    lines.append(
        f"| {label} | {r['seed']} | {r['epochs']} | {_pct(r['acc'])} | "
        f"{_pct(r['asr'])} | {_pct(r['clean_acc'])} | "
        f"{_pct(r['acc_drop'])} | {verdict} |")
  done = sorted({r['attack'] for r in rows if r['implanted']})
  not_yet = sorted({r['attack'] for r in rows if r['implanted'] is False})
  lines += ['', f'Implanted in every seed: '
            f'{", ".join(a for a in done if a not in not_yet) or "none"}; '
            f'not (in some seed): {", ".join(not_yet) or "none"}.', '']
  return '\n'.join(lines)


def write_implant(cells: Iterable[Mapping[str, Any]], outdir: str, *,
                  clean_acc: Mapping[Any, float] | None = None,
                  split: str = 'test') -> dict[str, str]:
  """Writes implant.md, implant.json and implant.png into `outdir`.

  Args:
    cells: the grid's result cells.
    outdir: folder (created if missing).
    clean_acc: seed -> clean model ACC, see `implant_rows`.
    split: the split the cells were evaluated on (named in the table).

  Returns:
    Paths by kind ('md', 'json', 'png'); none when there is no 'none' cell.
  """
  rows = implant_rows(cells, clean_acc)
  if not rows:
    return {}
  os.makedirs(outdir, exist_ok=True)
  md, js, png = (os.path.join(outdir, f) for f in FILES)
  paths = {'md': write_text_atomic(md, implant_markdown(rows, split=split)),
           'json': write_text_atomic(js, json.dumps(
               {'split': split, 'min_asr': MIN_ASR,
                'max_acc_drop': MAX_ACC_DROP, 'rows': rows}, indent=1))}
  if plot_implant(cells, png, clean_acc=clean_acc):
    paths['png'] = png
  return paths


def plot_implant(cells: Iterable[Mapping[str, Any]], path: str, *,
                 clean_acc: Mapping[Any, float] | None = None) -> bool:
  """ACC and ASR per training epoch of every backdoored model (mean over
  seeds at the epochs all seeds logged); the clean models' mean ACC and the
  ASR bar as dashed lines. Returns whether anything was drawn."""
  from nbajax.report import figure, plots  # matplotlib only when plotting
  cells = cells_lib.validate_cells(cells, metrics=())
  groups = cells_lib.group_cells(cells)
  attacks = [a for a in cells_lib.attack_order(cells)
             if any(c.get('history') for c in groups.get((a, 'none'), []))]
  if not attacks:
    return False

  @figure.styled
  def draw():
    fig = figure.new_figure(IMPLANT_FIGSIZE)
    axes = fig.subplots(1, 2, sharex=True)
    clean = [v for v in (clean_acc or {}).values() if v is not None]
    if clean:
      axes[0].axhline(100 * sum(clean) / len(clean), color='0.35', ls='--',
                      label='clean model')
    axes[1].axhline(100 * MIN_ASR, color='0.35', ls=':',
                    label=f'{100 * MIN_ASR:.0f} % bar')
    for i, attack in enumerate(attacks):
      for ax, keys in ((axes[0], ('test_acc', 'acc')), (axes[1], ('asr',))):
        plots.draw_mean_band(ax, groups[(attack, 'none')], keys,
                             color=f'C{i % 10}',
                             label=tables.ATTACK_LABELS.get(attack, attack))
    for ax, metric in zip(axes, ('ACC', 'ASR')):
      plots.epoch_axis(ax, metric, f'{metric} of the backdoored model per '
                       'epoch')
    axes[1].set_ylim(-4.0, 104.0)
    handles, labels = axes[1].get_legend_handles_labels()
    for handle, label in zip(*axes[0].get_legend_handles_labels()):
      if label not in labels:
        handles.append(handle)
        labels.append(label)
    fig.legend(handles, labels, loc='outside right upper', title='Attack')
    fig.suptitle('How well each attack implanted')
    figure.save_png(fig, path)

  draw()
  return True

