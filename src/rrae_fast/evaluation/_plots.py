"""PNG figures: the latent spectrum and image grids (matplotlib's Agg canvas, no pyplot).

matplotlib is imported when a figure is drawn, so the rest of the package does not need it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jax.typing import ArrayLike

_DPI = 100
_CELL_INCHES = 1.0  # one image of a grid is drawn 100×100 pixels at _DPI
_TITLE_INCHES = 0.4  # room above a grid for its title
_LABEL_INCHES = 0.3  # room above a grid for its column labels
_GAP = 1  # pixels of white between the images of a grid (in image pixels)


def _save(fig, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def plot_spectrum(
    spectrum: ArrayLike, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Plots normalised singular values `σ_i/σ_1` against `i` on linear and log axes.

    Args:
        spectrum: `[r]` values, e.g. from `normalized_spectrum`.
        path: the PNG file to write (parent folders are created).
        title: optional figure title.

    Returns:
        `path` as a `Path`.
    """
    return plot_spectra({"": spectrum}, path, title=title)


def plot_spectra(
    spectra: Mapping[str, ArrayLike],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    max_index: int | None = None,
) -> Path:
    """Plots several normalised spectra `σ_i/σ_1` against `i` in one figure, linear and log
    axes, one labelled curve each (the paper's comparison of the models' latent spaces).

    Args:
        spectra: label → `[r]` values (lengths may differ); an empty label draws no legend.
        path: the PNG file to write (parent folders are created).
        title: optional figure title.
        max_index: show only `i ≤ max_index` (default: all).

    Returns:
        `path` as a `Path`.

    Raises:
        ValueError: no spectrum, or one without a positive value.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not spectra:
        raise ValueError("no spectrum to plot")
    fig = Figure(figsize=(10, 4))
    lin, log = fig.subplots(1, 2)
    for label, spectrum in spectra.items():
        s = np.asarray(spectrum, dtype=np.float64).reshape(-1)[:max_index]
        if s.size == 0 or not np.any(s > 0):
            raise ValueError(f"the spectrum {label!r} needs at least one positive value")
        index = np.arange(1, s.size + 1)
        style = {"marker": "." if len(spectra) == 1 else None, "label": label or None}
        lin.plot(index, s, **style)
        positive = s > 0  # zeros have no place on a log axis
        log.semilogy(index[positive], s[positive], **style)
    lin.set_title("linear scale")
    log.set_title("log scale")
    for ax in (lin, log):
        ax.set_xlabel("index i")
        ax.set_ylabel(r"$\sigma_i / \sigma_1$")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if any(spectra):
        log.legend(fontsize="small")
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _to_unit_range(a: np.ndarray) -> np.ndarray:
    """Min–max scaling of the whole grid to [0, 1]; non-finite pixels become 0."""
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    lo, hi = a[finite].min(), a[finite].max()
    scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(np.where(finite, scaled, 0.0), 0.0, 1.0)


def _mosaic(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`[rows·cols, h, w, c]` → one `[H, W, c]` picture, white gaps between the images."""
    _, h, w, c = images.shape
    out = np.ones((rows * (h + _GAP) - _GAP, cols * (w + _GAP) - _GAP, c))
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        out[r * (h + _GAP) : r * (h + _GAP) + h, q * (w + _GAP) : q * (w + _GAP) + w] = img
    return out


def plot_strip(
    images: ArrayLike,
    path: str | os.PathLike,
    rows: int,
    cols: int,
    title: str | None = None,
    *,
    col_labels: Sequence[str] | None = None,
) -> Path:
    """Draws `rows × cols` images as one grid, filled row by row.

    Used for the interpolation strips (a row per pair, a column per point, in the pair-major
    order of `interpolate`) and for grids of random samples. The whole grid is scaled to
    [0, 1] by its own minimum and maximum, so the images share one colour scale.

    Args:
        images: `[rows·cols, c, h, w]` with c = 1 (grey) or c = 3 (RGB).
        path: the PNG file to write (parent folders are created).
        rows: number of rows.
        cols: number of columns.
        title: optional title above the grid.
        col_labels: optional label above each column (e.g. the interpolation weights).

    Returns:
        `path` as a `Path`.
    """
    from matplotlib.figure import Figure

    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [n, c, h, w] with c = 1 or 3, got {a.shape}")
    if rows < 1 or cols < 1 or a.shape[0] != rows * cols:
        raise ValueError(f"{a.shape[0]} images do not fill a {rows}×{cols} grid")
    picture = _mosaic(_to_unit_range(a).transpose(0, 2, 3, 1), rows, cols)
    title_inches = _TITLE_INCHES if title is not None else 0.0
    label_inches = _LABEL_INCHES if col_labels is not None else 0.0
    height = rows * _CELL_INCHES + label_inches + title_inches
    fig = Figure(figsize=(cols * _CELL_INCHES, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, rows * _CELL_INCHES / height))
    # Fill the axes, no smoothing.
    style: dict[str, Any] = {"interpolation": "nearest", "aspect": "auto"}
    if picture.shape[-1] == 1:
        ax.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0, **style)
    else:
        ax.imshow(picture, **style)
    ax.set_axis_off()
    for q, label in enumerate(col_labels or ()):
        y = (rows * _CELL_INCHES + 0.5 * label_inches) / height
        fig.text((q + 0.5) / cols, y, label, ha="center", va="center", fontsize="small")
    if title is not None:
        fig.suptitle(title, y=1.0 - 0.5 * title_inches / height, va="center")
    return _save(fig, path)
