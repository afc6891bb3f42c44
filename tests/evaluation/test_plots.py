"""PNG figures: files exist, are PNGs of the expected pixel size, and show the grid in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread

from rrae_fast.evaluation import plot_spectra, plot_spectrum, plot_strip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path):
    assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
    return imread(path)


def test_plot_spectrum(tmp_path):
    spectrum = np.array([1.0, 0.5, 1e-3, 1e-9, 0.0])  # a zero cannot go on the log panel
    path = plot_spectrum(spectrum, tmp_path / "sub" / "spectrum.png", title="RRAE")
    assert path == tmp_path / "sub" / "spectrum.png"
    image = _read_png(path)
    assert image.shape[:2] == (400, 1000)  # 10×4 inches at 100 dpi
    assert image[..., :3].std() > 0.05  # something was drawn


def test_plot_spectrum_bad_input(tmp_path):
    for spectrum in (np.array([]), np.zeros(3)):
        with pytest.raises(ValueError, match="positive"):
            plot_spectrum(spectrum, tmp_path / "s.png")


def test_plot_spectra_draws_one_labelled_curve_each(tmp_path):
    spectra = {"RRAE": [1.0, 1e-2, 1e-6], "Long": np.linspace(1.0, 0.1, 50)}
    image = _read_png(plot_spectra(spectra, tmp_path / "all.png", max_index=20))
    assert image.shape[:2] == (400, 1000)
    one = _read_png(plot_spectra({"RRAE": spectra["RRAE"]}, tmp_path / "one.png"))
    assert not np.array_equal(image, one)  # the second curve and the legend change it
    with pytest.raises(ValueError, match="no spectrum"):
        plot_spectra({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="'Long' needs at least one positive"):
        plot_spectra({"RRAE": [1.0], "Long": [0.0]}, tmp_path / "bad.png")


def _cell_centre(image, rows, cols, r, c):
    """The pixel at the centre of grid cell (r, c) of a figure without title."""
    h, w = image.shape[:2]
    return image[int((r + 0.5) * h / rows), int((c + 0.5) * w / cols)]


def test_plot_strip_grey_row_major(tmp_path):
    """Cell k shows image k: the bright image 4 lands in row 1, column 1 of a 2×3 grid."""
    images = np.zeros((6, 1, 8, 8))
    images[4] = 5.0
    images[0] = -1.0  # min-max over the whole grid maps this one to black, the zeros to grey
    image = _read_png(plot_strip(images, tmp_path / "strip.png", rows=2, cols=3))
    assert image.shape[:2] == (200, 300)  # 100 px per cell
    np.testing.assert_allclose(_cell_centre(image, 2, 3, 1, 1)[:3], 1.0, atol=0.01)
    np.testing.assert_allclose(_cell_centre(image, 2, 3, 0, 0)[:3], 0.0, atol=0.01)
    np.testing.assert_allclose(_cell_centre(image, 2, 3, 0, 1)[:3], 1 / 6, atol=0.01)


def test_plot_strip_rgb_with_title(tmp_path):
    images = np.zeros((4, 3, 5, 5))
    images[0, 0] = 1.0  # red
    images[3, 2] = 1.0  # blue
    path = plot_strip(images, tmp_path / "rgb.png", rows=2, cols=2, title="samples")
    image = _read_png(path)
    assert image.shape[:2] == (240, 200)  # 40 px for the title
    body = image[40:]
    np.testing.assert_allclose(_cell_centre(body, 2, 2, 0, 0)[:3], [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(_cell_centre(body, 2, 2, 1, 1)[:3], [0, 0, 1], atol=0.01)
    np.testing.assert_allclose(_cell_centre(body, 2, 2, 0, 1)[:3], [0, 0, 0], atol=0.01)


def test_plot_strip_constant_and_non_finite(tmp_path):
    constant = _read_png(plot_strip(np.ones((2, 1, 4, 4)), tmp_path / "c.png", 1, 2))
    np.testing.assert_allclose(_cell_centre(constant, 1, 2, 0, 1)[:3], 0.0, atol=0.01)
    nan = np.full((2, 1, 4, 4), np.nan)
    assert _read_png(plot_strip(nan, tmp_path / "n.png", 2, 1)).shape[:2] == (200, 100)
    mixed = np.stack([np.full((1, 4, 4), np.inf), np.full((1, 4, 4), 2.0)])
    mixed[1, 0, 0, 0] = 1.0
    assert _read_png(plot_strip(mixed, tmp_path / "m.png", 1, 2)).shape[:2] == (100, 200)


@pytest.mark.parametrize(
    "shape,rows,cols,match",
    [
        ((4, 2, 5, 5), 2, 2, "c = 1 or 3"),
        ((4, 5, 5), 2, 2, "c = 1 or 3"),
        ((5, 1, 5, 5), 2, 2, "do not fill"),
        ((4, 1, 5, 5), 0, 4, "do not fill"),
    ],
)
def test_plot_strip_bad_input(tmp_path, shape, rows, cols, match):
    with pytest.raises(ValueError, match=match):
        plot_strip(np.zeros(shape), tmp_path / "x.png", rows, cols)


def test_plot_strip_column_labels(tmp_path):
    images = np.zeros((6, 1, 8, 8))
    plain = _read_png(plot_strip(images, tmp_path / "plain.png", rows=2, cols=3))
    labelled = _read_png(
        plot_strip(images, tmp_path / "l.png", rows=2, cols=3, col_labels=["a", "t = 1/2", "b"])
    )
    assert labelled.shape[0] == plain.shape[0] + 30  # a 0.3-inch band at 100 dpi
    assert labelled[:30, :, :3].min() < 0.5  # the labels are drawn in it
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        plot_strip(images, tmp_path / "x.png", rows=2, cols=3, col_labels=["a", "b"])
