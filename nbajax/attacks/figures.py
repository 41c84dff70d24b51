"""A PNG grid of clean vs. triggered images, to check a trigger by eye.

Rows: clean images, triggered images, and |triggered - clean| amplified so
that its largest value is white (subtle triggers such as WaNet or SIG
become visible). Uses matplotlib's Agg canvas directly, so importing this
module never changes the global plotting backend.
"""

import os

import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg


def _show(ax, img: np.ndarray) -> None:
  """Draws one uint8 [H, W, C] image without axes."""
  if img.shape[-1] == 1:
    ax.imshow(img[..., 0], cmap='gray', vmin=0, vmax=255,
              interpolation='nearest')
  else:
    ax.imshow(img, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])


def amplified_difference(x_clean: np.ndarray, x_trig: np.ndarray) -> np.ndarray:
  """|x_trig - x_clean| scaled to [0, 255] per image, uint8 [n, H, W, C]."""
  diff = np.abs(x_trig.astype(np.int16) - x_clean.astype(np.int16))
  peak = np.maximum(diff.max(axis=(1, 2, 3), keepdims=True), 1)
  return (diff * (255.0 / peak)).round().astype(np.uint8)


def save_trigger_figure(x_clean: np.ndarray, x_trig: np.ndarray,
                        path: str | os.PathLike, *, title: str = '',
                        max_images: int = 8) -> str:
  """Writes the clean / triggered / difference grid as a PNG.

  Args:
    x_clean: uint8 clean images [n, H, W, C] (C = 1 or 3).
    x_trig: uint8 triggered versions of the same images [n, H, W, C].
    path: output file (parent directories are created).
    title: figure title, e.g. the attack's name and parameters.
    max_images: columns shown at most.

  Returns:
    The path written, as a string.

  Raises:
    ValueError: shapes differ, are not NHWC uint8, or n == 0.
  """
  x_clean, x_trig = np.asarray(x_clean), np.asarray(x_trig)
  if (x_clean.shape != x_trig.shape or x_clean.ndim != 4 or
      x_clean.dtype != np.uint8 or x_trig.dtype != np.uint8 or
      not len(x_clean)):
    raise ValueError('expected two equal-shape non-empty uint8 [n, H, W, C] '
                     f'arrays, got {x_clean.dtype}{x_clean.shape} and '
                     f'{x_trig.dtype}{x_trig.shape}')
  n = min(len(x_clean), max_images)
  rows = (('clean', x_clean[:n]), ('triggered', x_trig[:n]),
          ('|diff|, amplified', amplified_difference(x_clean[:n], x_trig[:n])))
  fig = mpl_figure.Figure(figsize=(1.4 * n + 0.6, 4.6))
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(3, n, squeeze=False)
  for r, (label, imgs) in enumerate(rows):
    for col in range(n):
      _show(axes[r, col], imgs[col])
    axes[r, 0].set_ylabel(label, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, format='png', dpi=100)
  return path
