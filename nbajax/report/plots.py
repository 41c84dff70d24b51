"""PNG figures of a grid: ACC vs. ASR scatter, per-epoch training curves.

Matplotlib's object API on the Agg canvas, no pyplot (see
`nbajax.report.figure`); fixed sizes and fonts; files written atomically.
"""

from collections.abc import Iterable, Mapping, Sequence
import os
import re
from typing import Any

from matplotlib import ticker
import numpy as np

from nbajax.report import cells as cells_lib
from nbajax.report import claim
from nbajax.report import figure
from nbajax.report import tables

ACC_ASR_FIGSIZE = (7.0, 5.0)  # inches: 840 x 600 px at DPI.
CURVES_FIGSIZE = (11.0, 4.5)  # inches: 1320 x 540 px at DPI.
# Fixed styles so a defense looks the same in every figure of a paper.
_STYLES = {'none': ('0.35', 'X'), 'ft': ('C0', 'o'), 'fp': ('C1', 's'),
           'nad': ('C2', '^'), 'nba': ('C3', '*'), 'mcr': ('C4', 'D'),
           'anp': ('C5', 'v'), 'ibau': ('C6', 'P')}
_EXTRA = tuple(zip(('C8', 'C9', 'C7'), ('h', '<', '>')))
# History keys of the test accuracy, in order of preference.
_ACC_KEYS = ('test_acc', 'acc')


def defense_style(defense: str, defenses: Sequence[str]) -> tuple[str, str]:
  """(colour, marker) of a defense, stable for the known ones."""
  if defense in _STYLES:
    return _STYLES[defense]
  others = [d for d in defenses if d not in _STYLES]
  return _EXTRA[others.index(defense) % len(_EXTRA)]


def _points(groups, attacks, defense, *, spread):
  """[(attack, acc Summary, asr Summary)] of one defense with both means."""
  out = []
  for attack in attacks:
    group = groups.get((attack, defense), [])
    acc, asr = (cells_lib.group_summary(group, k, spread=spread)
                for k in ('acc', 'asr'))
    if acc.mean is not None and asr.mean is not None:
      out.append((attack, acc, asr))
  return out


def _errors(summaries) -> np.ndarray | None:
  """Error-bar half-lengths in percent (0 where one seed), None if none."""
  spreads = [s.spread for s in summaries]
  if all(s is None for s in spreads):
    return None
  return 100 * np.array([s or 0.0 for s in spreads])


@figure.styled
def plot_acc_vs_asr(cells: Iterable[Mapping[str, Any]], path: str, *,
                    title: str = '', spread: str = 'std',
                    attack_labels: Mapping[str, str] | None = None,
                    defense_labels: Mapping[str, str] | None = None) -> str:
  """Scatter of ACC (x) vs. ASR (y), one marker per defense, attacks named.

  Args:
    cells: result cells; seeds are averaged, error bars show the spread.
    path: PNG file to write (ACC_ASR_FIGSIZE at DPI).
    title: prefix of the figure title.
    spread: 'std' or 'half-range' over seeds, for the error bars.
    attack_labels: display names of attacks (over `tables.ATTACK_LABELS`).
    defense_labels: display names of defenses (over `tables.DEFENSE_LABELS`).

  Returns:
    `path`.

  Raises:
    ValueError: invalid cells or `spread`, or no cell with both ACC and ASR.
  """
  cells_lib.check_spread(spread)
  cells = cells_lib.validate_cells(cells, metrics=('acc', 'asr'))
  a_names = {**tables.ATTACK_LABELS, **(attack_labels or {})}
  d_names = {**tables.DEFENSE_LABELS, **(defense_labels or {})}
  groups = cells_lib.group_cells(cells)
  attacks, defenses = (cells_lib.attack_order(cells),
                       cells_lib.defense_order(cells))
  fig = figure.new_figure(ACC_ASR_FIGSIZE)
  ax = fig.add_subplot()
  xs, bars = [], False
  for defense in defenses:
    pts = _points(groups, attacks, defense, spread=spread)
    if not pts:
      continue
    color, marker = defense_style(defense, defenses)
    x = [100 * p[1].mean for p in pts]
    y = [100 * p[2].mean for p in pts]
    xerr, yerr = _errors([p[1] for p in pts]), _errors([p[2] for p in pts])
    bars = bars or xerr is not None or yerr is not None
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, color=color, ms=9,
                capsize=3, label=d_names.get(defense, defense))
    for (attack, _, _), xi, yi in zip(pts, x, y):
      # Alternate above/below by attack so labels of close points separate.
      up = attacks.index(attack) % 2 == 0
      ax.annotate(a_names.get(attack, attack), (xi, yi),
                  xytext=(6, 5 if up else -12), textcoords='offset points',
                  fontsize=8, color=color)
    xs += x
  if not xs:
    raise ValueError('no cell has both ACC and ASR: nothing to plot')
  ax.set_xlim(max(0.0, min(xs) - 4.0), min(101.0, max(xs) + 4.0))
  ax.set_ylim(-4.0, 104.0)
  ax.set_xlabel('ACC on the clean test set (%)')
  ax.set_ylabel('ASR on triggered non-target images (%)')
  ax.set_title(f'{title + ": " if title else ""}ACC vs. ASR per defense '
               '(lower right is better)')
  ax.grid(alpha=0.3)
  ax.legend(title='Defense' + (f' (bars: ± {spread} over seeds)'
                               if bars else ''), loc='best')
  return figure.save_png(fig, path)


class NoTargetError(ValueError):
  """The cells hold nothing the removal target can be drawn from."""


TARGET_FIGSIZE = (7.0, 5.0)  # inches: 840 x 600 px at DPI.
# Mean ASRs below this (in %) are drawn at it on the log axis.
TARGET_ASR_FLOOR = 0.1


@figure.styled
def plot_target(cells: Iterable[Mapping[str, Any]], path: str, *,
                method: str = 'nba', title: str = '',
                defense_labels: Mapping[str, str] | None = None) -> str:
  """Each defense's mean ASR (y, log) against its extra ACC loss beyond
  NAD (x), with the removal target's region shaded (`claim.target_map`,
  `check_target`'s defaults): how far each candidate of a sweep is from
  the target, and on which side.

  Args:
    cells: result cells with 'none' cells and the baselines NAD and FT.
    path: PNG file to write (TARGET_FIGSIZE at DPI).
    method: the defense drawn as the reference (a filled star).
    title: prefix of the figure title.
    defense_labels: display names of defenses (over `tables.DEFENSE_LABELS`).

  Returns:
    `path`.

  Raises:
    NoTargetError: no implanted attack with the models before defense,
      NAD and FT.
    ValueError: invalid cells.
  """
  tmap = claim.target_map(cells)
  if tmap is None:
    raise NoTargetError('no implanted attack has the models before '
                        'defense, nad and ft to draw the target from')
  d_names = {**tables.DEFENSE_LABELS, **(defense_labels or {})}
  fig = figure.new_figure(TARGET_FIGSIZE)
  ax = fig.add_subplot()
  xs = [100 * loss for loss, _ in tmap.points.values()]
  x_low = min(xs + [0.0]) - 0.5
  x_high = max(xs + [100 * tmap.max_extra_acc_loss]) + 0.5
  bound = max(100 * tmap.max_asr, TARGET_ASR_FLOOR)
  ax.fill_between([x_low, 100 * tmap.max_extra_acc_loss],
                  TARGET_ASR_FLOOR / 2, bound, color='C2', alpha=0.15,
                  linewidth=0, label='target met')
  for i, (d, (loss, asr)) in enumerate(tmap.points.items()):
    # The reference as NBA is drawn everywhere; other candidates in grey.
    color, marker = (_STYLES['nba'] if d == method
                     else _STYLES.get(d, ('0.25', 'o')))
    y = max(100 * asr, TARGET_ASR_FLOOR)
    ax.plot([100 * loss], [y], marker=marker, color=color,
            ms=14 if d == method else 8, linestyle='none')
    ax.annotate(d_names.get(d, d), (100 * loss, y),
                xytext=(6, 5 if i % 2 == 0 else -12),
                textcoords='offset points', fontsize=8, color=color)
  ax.set_yscale('log')
  ax.set_ylim(TARGET_ASR_FLOOR / 2, 150.0)
  ax.set_xlim(x_low, x_high)
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
  ax.set_xlabel('extra ACC loss against NAD (points; left is better)')
  ax.set_ylabel(f'mean ASR (%, log; < {TARGET_ASR_FLOOR:g} drawn at it)')
  ax.set_title(f'{title + ": " if title else ""}the removal target over '
               f'{len(tmap.attacks)} implanted attacks')
  ax.grid(alpha=0.3, which='both')
  ax.legend(loc='upper right')
  return figure.save_png(fig, path)


def _series(cell: Mapping[str, Any], keys: Sequence[str]) -> dict[int, float]:
  """epoch -> value in percent of the first key a history entry has."""
  out = {}
  for i, entry in enumerate(cell.get('history') or []):
    key = next((k for k in keys if entry.get(k) is not None), None)
    if key is not None:
      out[int(entry.get('epoch', i + 1))] = 100 * float(entry[key])
  return out


def draw_mean_band(ax, group, keys, *, color, label) -> bool:
  """Mean over seeds at the common epochs, min-max band; False if no data."""
  series = [s for s in (_series(c, keys) for c in group) if s]
  epochs = sorted(set.intersection(*(set(s) for s in series))) if series \
      else []
  if not epochs:
    return False
  values = np.array([[s[e] for e in epochs] for s in series])
  ax.plot(epochs, values.mean(0), color=color, marker='.', label=label)
  if len(series) > 1:
    ax.fill_between(epochs, values.min(0), values.max(0), color=color,
                    alpha=0.2, linewidth=0)
  return True


def epoch_axis(ax, metric: str, title: str) -> None:
  """Labels, integer epoch ticks and a light grid of a per-epoch panel."""
  ax.set_xlabel('Epoch')
  ax.set_ylabel(f'{metric} (%)')
  ax.set_title(title)
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.grid(alpha=0.3)


def _safe_name(name: str) -> str:
  """A file-name-safe version of an attack name."""
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', name)


@figure.styled
def _plot_attack_curves(groups, attack, trained, path, *, defenses, a_name,
                        d_names):
  """Two panels (ACC, ASR) of one attack; returns whether anything was drawn."""
  fig = figure.new_figure(CURVES_FIGSIZE)
  axes = fig.subplots(1, 2, sharex=True)
  drawn = False
  for ax, keys, metric in ((axes[0], _ACC_KEYS, 'ACC'),
                           (axes[1], ('asr',), 'ASR')):
    before = cells_lib.summarize(
        [cells_lib.value(c, keys[-1]) for c in groups.get((attack, 'none'),
                                                          [])], spread='std')
    if before.mean is not None:
      ax.axhline(100 * before.mean, color=_STYLES['none'][0], ls='--',
                 label=f'{d_names.get("none", "none")} (before)')
    for defense in trained:
      drawn |= draw_mean_band(ax, groups.get((attack, defense), []), keys,
                             color=defense_style(defense, defenses)[0],
                             label=d_names.get(defense, defense))
    epoch_axis(ax, metric, f'{metric} per epoch')
  axes[1].set_ylim(-4.0, 104.0)
  # Outside the panels: ASR curves start near the 100 % reference line.
  fig.legend(*axes[1].get_legend_handles_labels(), loc='outside right upper',
             title='Defense\n(band: min–max\nover seeds)')
  fig.suptitle(f'{a_name}: training curves of the defenses')
  if drawn:
    figure.save_png(fig, path)
  return drawn


def plot_curves(cells: Iterable[Mapping[str, Any]],
                outdir: str, *,
                attack_labels: Mapping[str, str] | None = None,
                defense_labels: Mapping[str, str] | None = None
                ) -> dict[str, str]:
  """Per-epoch ACC and ASR of every defense, one PNG per attack.

  A defense's line is its mean over seeds at the epochs all seeds logged
  (history keys 'epoch', 'test_acc' or 'acc', 'asr'), with a min-max band
  when there are several seeds. Defense 'none' (the backdoored model) is a
  dashed line at its final ACC / ASR; its own history is not drawn.

  Args:
    cells: result cells; those without history are skipped.
    outdir: folder for `curves_<attack>.png` (created if missing).
    attack_labels: display names of attacks.
    defense_labels: display names of defenses.

  Returns:
    attack -> path of the PNG written; attacks with no history are absent.

  Raises:
    ValueError: invalid cells (see `nbajax.report.cells.validate_cells`).
  """
  cells = cells_lib.validate_cells(cells, metrics=())
  a_names = {**tables.ATTACK_LABELS, **(attack_labels or {})}
  d_names = {**tables.DEFENSE_LABELS, **(defense_labels or {})}
  groups = cells_lib.group_cells(cells)
  defenses = cells_lib.defense_order(cells)
  paths = {}
  for attack in cells_lib.attack_order(cells):
    trained = [d for d in defenses if d != 'none' and any(
        c.get('history') for c in groups.get((attack, d), []))]
    if not trained:
      continue
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f'curves_{_safe_name(attack)}.png')
    if _plot_attack_curves(groups, attack, trained, path, defenses=defenses,
                           a_name=a_names.get(attack, attack),
                           d_names=d_names):
      paths[attack] = path
  return paths
