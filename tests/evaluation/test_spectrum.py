"""Normalised singular values of the latent matrix and the rank they reveal."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.evaluation import effective_rank, normalized_spectrum


def _with_singular_values(rng, n, latent, s):
    """codes [n, L] = U diag(s) Vᵀ with orthonormal U [n, r], V [L, r]."""
    u = np.linalg.qr(rng.standard_normal((n, len(s))))[0]
    v = np.linalg.qr(rng.standard_normal((latent, len(s))))[0]
    return u * np.asarray(s) @ v.T


@pytest.mark.parametrize("n,latent", [(40, 6), (5, 12)])
def test_known_spectrum(rng, n, latent):
    s = [4.0, 2.0, 1.0]
    spectrum = normalized_spectrum(jnp.asarray(_with_singular_values(rng, n, latent, s)))
    assert spectrum.shape == (min(n, latent),) and spectrum.dtype == np.float64
    expected = np.zeros(min(n, latent))
    expected[:3] = [1.0, 0.5, 0.25]
    np.testing.assert_allclose(spectrum, expected, atol=1e-12)


def test_scale_invariant(rng):
    codes = rng.standard_normal((30, 8))
    np.testing.assert_allclose(
        normalized_spectrum(1e-3 * codes), normalized_spectrum(codes), rtol=1e-12
    )


def test_effective_rank(rng):
    spectrum = normalized_spectrum(_with_singular_values(rng, 50, 10, [4.0, 2.0, 1.0]))
    assert effective_rank(spectrum, 1e-10) == 3
    assert effective_rank(spectrum, 0.3) == 2  # 1 and 0.5 exceed 0.3, 0.25 does not
    assert effective_rank(np.array([1.0, 0.5, 0.0, 0.0]), 0.0) == 2  # zeros never count
    assert effective_rank(4.0 * spectrum, 0.3) == 2  # relative to the largest value
    assert effective_rank(np.zeros(4), 0.1) == 0


@pytest.mark.parametrize(
    "codes,match",
    [
        (np.ones(5), r"\[n, L\]"),
        (np.ones((0, 3)), r"\[n, L\]"),
        (np.zeros((4, 3)), "zero"),
        (np.array([[1.0, np.nan]]), "finite"),
    ],
)
def test_spectrum_bad_input(codes, match):
    with pytest.raises(ValueError, match=match):
        normalized_spectrum(codes)


@pytest.mark.parametrize(
    "spectrum,tol,match",
    [
        (np.array([]), 0.1, "non-empty"),
        (np.array([1.0, -0.1]), 0.1, "non-negative"),
        (np.array([1.0, np.inf]), 0.1, "finite"),
        (np.array([1.0]), 1.0, "tol"),
        (np.array([1.0]), -0.1, "tol"),
    ],
)
def test_effective_rank_bad_input(spectrum, tol, match):
    with pytest.raises(ValueError, match=match):
        effective_rank(spectrum, tol)
