"""Shared figure plumbing: Agg canvas without pyplot, fonts, atomic PNG.

Figures are built with matplotlib's object API on the Agg canvas
(`Figure` + `FigureCanvasAgg`), never through pyplot: nothing here switches
the user's backend, needs a display, or leaves figures open in pyplot's
registry during a long grid.
"""

import functools

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nbajax import atomic

DPI = 120
# Readable at the size a paper or a screen shows these PNGs.
RC = {'font.size': 11, 'axes.titlesize': 12, 'axes.labelsize': 11,
      'legend.fontsize': 9, 'figure.titlesize': 13, 'xtick.labelsize': 10,
      'ytick.labelsize': 10}


def styled(fn):
  """Runs a plot function under `RC` (fonts are read when drawing too)."""
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with matplotlib.rc_context(RC):
      return fn(*args, **kwargs)
  return wrapper


def new_figure(figsize: tuple[float, float]) -> Figure:
  """A constrained-layout figure of `figsize` inches on an Agg canvas."""
  fig = Figure(figsize=figsize, dpi=DPI, layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def save_png(fig: Figure, path: str) -> str:
  """Writes the figure as a PNG of figsize x DPI pixels, atomically.

  No `bbox_inches='tight'`: the pixel size stays what the caller asked for.

  Returns:
    `path`.
  """
  return atomic.write_atomic(
      path, lambda f: fig.savefig(f, format='png', dpi=DPI))
