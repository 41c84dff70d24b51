"""A grid of attention-map heatmaps (rows: model / input, columns: layers).

Like NAD's attention figure: e.g. rows 'before / clean', 'before / triggered',
'after / clean', 'after / triggered', columns 'group1'..'group3', with the
input images as an optional first column. Each layer column shares one colour
scale, so before/after and clean/triggered are comparable within a layer.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from nbajax.report import figure

IMAGE_COLUMN = 'input'
MAP_PANEL_INCHES = 2.0


def attention_figsize(n_rows: int, n_cols: int) -> tuple[float, float]:
  """Figure size in inches: square panels plus room for labels and bars."""
  side = MAP_PANEL_INCHES
  return (side * n_cols + 1.0, side * n_rows + 1.5)


def _as_map(array: Any, where: str) -> np.ndarray:
  """A finite float [H, W] array; a size-1 batch or channel axis is dropped."""
  a = np.asarray(array, dtype=np.float64)
  if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
    a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:-1])
  if a.ndim != 2 or a.size == 0:
    raise ValueError(f'{where}: expected an [H, W] map, got shape {a.shape}')
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{where}: map has non-finite values')
  return a


def _as_image(array: Any, where: str) -> np.ndarray:
  """An [H, W] or [H, W, 3] float image in [0, 1] (uint8 is divided by 255)."""
  a = np.asarray(array)
  a = a / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
    raise ValueError(f'{where}: expected an [H, W, C] image with C in (1, 3),'
                     f' got shape {np.shape(array)}')
  return np.clip(a, 0.0, 1.0)


def _checked(maps, images):
  """Rows, layer columns, maps as arrays, images as arrays; raises if bad."""
  if not isinstance(maps, Mapping) or not maps:
    raise ValueError('maps must be a non-empty dict row -> {column: map}')
  rows = list(maps)
  arrays = {}
  for row in rows:
    if not isinstance(maps[row], Mapping) or not maps[row]:
      raise ValueError(f'maps[{row!r}] must be a non-empty dict column -> map')
    for col, m in maps[row].items():
      arrays[row, col] = _as_map(m, f'maps[{row!r}][{col!r}]')
  cols = list(dict.fromkeys(c for row in rows for c in maps[row]))
  images = dict(images or {})
  extra = [r for r in images if r not in maps]
  if extra:
    raise ValueError(f'images has rows {extra} that maps does not have')
  pics = {r: _as_image(a, f'images[{r!r}]') for r, a in images.items()}
  return rows, cols, arrays, pics


def _blank(ax) -> None:
  """No ticks; the frame stays only on panels that hold something."""
  ax.set_xticks([])
  ax.set_yticks([])


@figure.styled
def plot_attention_maps(maps: Mapping[str, Mapping[str, Any]], path: str, *,
                        title: str = '',
                        images: Mapping[str, Any] | None = None,
                        cmap: str = 'viridis',
                        interpolation: str = 'nearest') -> str:
  """Heatmap grid of attention maps, one colour scale per layer column.

  Args:
    maps: {row_label: {column_label: array [H, W]}} (a size-1 leading or
      trailing axis is dropped); columns in first-seen order, a missing
      (row, column) is left blank.
    path: PNG file to write (`attention_figsize(rows, columns)` at DPI).
    title: figure title.
    images: optional {row_label: array [H, W, C] in [0, 1] (or uint8)},
      shown as a first 'input' column.
    cmap: matplotlib colormap of the maps.
    interpolation: imshow interpolation ('nearest' shows the real pixels of
      small maps).

  Returns:
    `path`.

  Raises:
    ValueError: empty maps, a map that is not 2-D or not finite, an image of
      the wrong shape, or an image row that maps lacks.
  """
  rows, cols, arrays, pics = _checked(maps, images)
  lead = 1 if pics else 0
  fig = figure.new_figure(attention_figsize(len(rows), len(cols) + lead))
  axes = fig.subplots(len(rows), len(cols) + lead, squeeze=False)
  for ax in axes.flat:
    _blank(ax)
  for i, row in enumerate(rows):
    axes[i, 0].set_ylabel(row)
    if row in pics:
      axes[i, 0].imshow(pics[row], cmap='gray', vmin=0.0, vmax=1.0,
                        interpolation=interpolation)
    elif lead:
      axes[i, 0].set_frame_on(False)
  if lead:
    axes[0, 0].set_title(IMAGE_COLUMN)
  for j, col in enumerate(cols, start=lead):
    present = [r for r in rows if (r, col) in arrays]
    lo = min(arrays[r, col].min() for r in present)
    hi = max(arrays[r, col].max() for r in present)
    image = None
    for i, row in enumerate(rows):
      if (row, col) in arrays:
        image = axes[i, j].imshow(arrays[row, col], cmap=cmap, vmin=lo,
                                  vmax=hi, interpolation=interpolation)
      else:
        axes[i, j].set_frame_on(False)
    axes[0, j].set_title(col)
    fig.colorbar(image, ax=list(axes[:, j]), location='bottom', shrink=0.85,
                 aspect=12).ax.tick_params(labelsize=8)
  if title:
    fig.suptitle(title)
  return figure.save_png(fig, path)
