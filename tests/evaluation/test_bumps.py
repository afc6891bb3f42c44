"""The bump-fit score: exact bumps score 0 at their centre; known residuals give known scores."""

from __future__ import annotations

import numpy as np
import pytest

from rrae_fast.data._synthetic import SIGMA, gaussian_bumps, grid
from rrae_fast.evaluation import BumpFit, fit_bumps, mean_std

MEAN, STD = 0.060778, 0.163545  # the synthetic training set's standardisation (SPEC §6.1)


def _standardise(raw):
    return ((raw - MEAN) / STD)[:, None]  # [n, 1, 64, 64] as the decoder outputs them


def _tangent_basis(centres):
    """Orthonormal bases [n, 4096, 3] of span{g_c, ∂g_c/∂x₀, ∂g_c/∂y₀} at each centre."""
    g = gaussian_bumps(centres[:, 0], centres[:, 1])
    pix = grid(64)
    dx = g * (pix[None, None, :] - centres[:, 0, None, None]) / SIGMA**2
    dy = g * (pix[None, :, None] - centres[:, 1, None, None]) / SIGMA**2
    return np.linalg.qr(np.stack([g, dx, dy], axis=-1).reshape(len(centres), -1, 3))[0]


def test_exact_bumps_off_grid(rng):
    centres = rng.uniform(-0.95, 0.95, (12, 2))
    assert np.all(np.abs(centres / 0.005 - np.round(centres / 0.005)) > 1e-3)  # off the grid
    fit = fit_bumps(_standardise(gaussian_bumps(centres[:, 0], centres[:, 1])), MEAN, STD)
    assert isinstance(fit, BumpFit)
    assert fit.errors.shape == (12,) and fit.centres.shape == (12, 2)
    np.testing.assert_allclose(fit.centres, centres, atol=1e-6)
    assert np.all(fit.errors < 1e-6)


def test_exact_bumps_at_and_near_the_border():
    """‖g_c‖² shrinks where the bump leaves the image; the separable norm must follow."""
    centres = np.array([[1.0, -1.0], [-0.9993, 0.9991], [0.3, 0.9987], [-1.0, 0.0]])
    fit = fit_bumps(gaussian_bumps(centres[:, 0], centres[:, 1]), 0.0, 1.0)  # [n, 64, 64]
    np.testing.assert_allclose(fit.centres, centres, atol=1e-6)
    assert np.all(fit.errors < 1e-6)


def test_grid_search_matches_brute_force(rng):
    """Without refinement the centre is the best of the grid, found by building every g_c."""
    centres = rng.uniform(-1.0, 1.0, (3, 2))
    raw = gaussian_bumps(centres[:, 0], centres[:, 1]) + 0.3 * rng.standard_normal((3, 64, 64))
    raw[2] = rng.uniform(0, 1, (64, 64))  # garbage: the best bump may sit on the border
    c1 = np.linspace(-1.0, 1.0, 21)
    cx, cy = np.meshgrid(c1, c1)
    templates = gaussian_bumps(cx.ravel(), cy.ravel())  # [441, 64, 64]
    fit = fit_bumps(_standardise(raw), MEAN, STD, grid_points=21, newton_steps=0)
    for k in range(3):
        best = np.argmin(np.sum((raw[k] - templates) ** 2, axis=(1, 2)))
        np.testing.assert_allclose(fit.centres[k], [cx.ravel()[best], cy.ravel()[best]])
        t = templates[best]
        assert fit.errors[k] == pytest.approx(
            100 * np.linalg.norm(raw[k] - t) / np.linalg.norm(t), rel=1e-10
        )


def test_refinement_improves_on_the_grid(rng):
    centres = rng.uniform(-0.9, 0.9, (6, 2))
    images = gaussian_bumps(centres[:, 0], centres[:, 1])
    coarse = fit_bumps(images, 0.0, 1.0, newton_steps=0)
    step = 2.0 / 400
    np.testing.assert_allclose(coarse.centres / step, np.round(coarse.centres / step), atol=1e-9)
    assert np.all(np.abs(coarse.centres - centres) <= step)
    assert np.all(coarse.errors > 1e-3)
    one = fit_bumps(images, 0.0, 1.0, newton_steps=1)
    assert np.all(one.errors < coarse.errors)


def test_residual_orthogonal_to_template_and_tangents(rng):
    """G = g_c + e with e ⟂ {g_c, ∂g_c}: c stays the optimum and the score is 100‖e‖/‖g_c‖."""
    centres = rng.uniform(-0.8, 0.8, (8, 2))
    g = gaussian_bumps(centres[:, 0], centres[:, 1])
    q = _tangent_basis(centres)
    e = rng.standard_normal((8, 4096))
    e -= np.einsum("npk,nk->np", q, np.einsum("npk,np->nk", q, e))
    e *= (
        0.05
        * np.linalg.norm(g.reshape(8, -1), axis=1, keepdims=True)
        / np.linalg.norm(e, axis=1, keepdims=True)
    )  # 5 % of the bump's norm
    fit = fit_bumps(_standardise(g + e.reshape(g.shape)), MEAN, STD)
    np.testing.assert_allclose(fit.centres, centres, atol=1e-6)
    np.testing.assert_allclose(fit.errors, 5.0, rtol=1e-6)


def test_white_noise_score_close_to_noise_level(rng):
    centres = rng.uniform(-0.5, 0.5, (8, 2))
    g = gaussian_bumps(centres[:, 0], centres[:, 1])
    noise = 0.05 * rng.standard_normal(g.shape)
    fit = fit_bumps(_standardise(g + noise), MEAN, STD)
    level = 100 * np.linalg.norm(noise, axis=(1, 2)) / np.linalg.norm(g, axis=(1, 2))
    # Fitting two parameters removes ~2/4096 of the noise energy; ‖g_c*‖ moves by ~1e-4.
    np.testing.assert_allclose(fit.errors, level, rtol=2e-3)
    assert np.all(np.abs(fit.centres - centres) < 0.01)


def test_blank_and_garbage_images(rng):
    raw = np.stack([np.zeros((64, 64)), rng.uniform(0.0, 1.0, (64, 64))])
    fit = fit_bumps(_standardise(raw), MEAN, STD)
    assert fit.errors[0] == pytest.approx(100.0, rel=1e-12)  # ‖0 − g‖/‖g‖ for every centre
    assert fit.errors[1] > 100.0


def test_non_finite_image_scores_inf(rng):
    centres = np.array([[0.1, -0.2], [0.3, 0.4]])
    images = gaussian_bumps(centres[:, 0], centres[:, 1])
    images[0, 5, 7] = np.nan
    fit = fit_bumps(images, 0.0, 1.0)
    assert fit.errors[0] == np.inf and np.all(np.isnan(fit.centres[0]))
    np.testing.assert_allclose(fit.centres[1], centres[1], atol=1e-6)


def test_more_images_than_one_block(rng):
    """Images past the first block of the grid search are fitted too."""
    centres = rng.uniform(-0.9, 0.9, (37, 2))
    fit = fit_bumps(gaussian_bumps(centres[:, 0], centres[:, 1]), 0.0, 1.0)
    np.testing.assert_allclose(fit.centres, centres, atol=1e-6)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((2, 3, 64, 64), "one channel"),
        ((2, 64, 32), "expected images"),
        ((64, 64), "expected"),
        ((0, 64, 64), "expected images"),
    ],
)
def test_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        fit_bumps(np.zeros(shape), 0.0, 1.0)


@pytest.mark.parametrize("std", [0.0, -1.0, np.nan, np.inf])
def test_bad_std(std):
    with pytest.raises(ValueError, match="std"):
        fit_bumps(np.zeros((1, 64, 64)), 0.0, std)


def test_bad_search_settings():
    with pytest.raises(ValueError, match="grid_points"):
        fit_bumps(np.zeros((1, 64, 64)), 0.0, 1.0, grid_points=1)
    with pytest.raises(ValueError, match="newton_steps"):
        fit_bumps(np.zeros((1, 64, 64)), 0.0, 1.0, newton_steps=-1)


def test_mean_std():
    mean, std = mean_std(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (mean, std) == pytest.approx((2.5, np.sqrt(1.25)), rel=1e-15)
    with pytest.raises(ValueError, match="no values"):
        mean_std(np.array([]))
