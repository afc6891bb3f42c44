"""Forward pass of truncated_svd and rank_reduce against SciPy's float64 LAPACK."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _forward

SHAPES = [(7, 4), (4, 7), (6, 6), (1, 5), (5, 1), (2, 2), (200, 64), (513, 300), (3, 2, 9, 5)]
DTYPES = [np.float32, np.float64]
METHODS = ["auto", "dense", "iterative", "gram"]


def _ks(shape):
    r = min(shape[-2:])
    return sorted({1, max(1, r // 2), r})


CASES = [
    (shape, k, dtype, spectrum)
    for shape, dtype, spectrum in itertools.product(SHAPES, DTYPES, helpers.SPECTRA)
    for k in _ks(shape)
    if not (shape == (513, 300) and spectrum in ("repeated", "zero"))  # keep the grid quick
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape,k,dtype,spectrum", CASES)
def test_contract(rng, shape, k, dtype, spectrum, method):
    """Every shape × dtype × spectrum × k × path meets the accuracy contract and signs."""
    a = helpers.make_matrix(rng, shape, spectrum).astype(dtype)
    if method == "gram" and dtype == np.float64:
        with pytest.raises(ValueError, match="needs float32"):
            rrae_fast.truncated_svd(a, k, method=method)
        return
    u, s, vt = rrae_fast.truncated_svd(a, k, method=method)
    assert u.dtype == s.dtype == vt.dtype == dtype
    helpers.assert_contract(a, u, s, vt, k)


SCALES = {np.float32: (1e30, 1e-30), np.float64: (1e200, 1e-200)}


@pytest.mark.parametrize(
    "dtype,method",
    [(d, m) for d, m in itertools.product(DTYPES, METHODS) if (d, m) != (np.float64, "gram")],
)
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("spectrum", ["flat", "decaying"])
def test_extreme_scales(rng, dtype, which, spectrum, method):
    """Matrices scaled by 1e±30 (float32) and 1e±200 (float64) meet the contract."""
    scale = SCALES[dtype][which]
    a = (helpers.make_matrix(rng, (40, 25), spectrum) * scale).astype(dtype)
    assert np.all(np.isfinite(a)) and np.any(a != 0)
    u, s, vt = rrae_fast.truncated_svd(a, 7, method=method)
    helpers.assert_contract(a, u, s, vt, 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", [((30, 20), 5), ((2, 20, 30), 20), ((1, 8), 1)])
def test_rank_reduce_matches_reference(rng, dtype, shape, k):
    """rank_reduce equals the float64 reference U_k Σ_k V_kᵀ to the contract's tolerance."""
    a = rng.standard_normal(shape).astype(dtype)
    u, s, vt = helpers.reference_svd(a)
    ref = (u[..., :k] * s[..., None, :k]) @ vt[..., :k, :]
    out = rrae_fast.rank_reduce(a, k)
    assert out.shape == a.shape and out.dtype == dtype
    tol = 4 * helpers.contract_constant(*shape[-2:]) * np.finfo(dtype).eps * s[..., :1].max()
    assert np.max(np.abs(np.asarray(out, np.float64) - ref)) <= tol


def test_rank_reduce_of_low_rank_is_identity(rng):
    """A matrix of rank k is its own rank-k approximation."""
    a = helpers.planted(rng, 50, 30, [4.0, 2.0, 1.0])
    np.testing.assert_allclose(rrae_fast.rank_reduce(a, 3), a, atol=1e-13)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_computed_in_float32(rng, dtype):
    """float16/bfloat16 inputs are computed in float32 and cast back."""
    a32 = rng.standard_normal((12, 8)).astype(np.float32)
    a = jnp.asarray(a32, dtype)
    u, s, vt = rrae_fast.truncated_svd(a, 3)
    assert u.dtype == s.dtype == vt.dtype == dtype
    _, s_ref, _ = rrae_fast.truncated_svd(a.astype(jnp.float32), 3)
    np.testing.assert_allclose(np.asarray(s, np.float32), s_ref, rtol=1e-2)
    assert rrae_fast.rank_reduce(a, 3).dtype == dtype


def test_deterministic(rng):
    """Repeated calls give bit-identical results."""
    a = rng.standard_normal((4, 40, 30))
    first = rrae_fast.truncated_svd(a, 6)
    for _ in range(3):
        again = rrae_fast.truncated_svd(a, 6)
        for x, y in zip(first, again):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_member_leaves_others_exact(rng, dtype):
    """A batch member with NaN/Inf gets NaN outputs; the other members are unaffected."""
    a = rng.standard_normal((4, 20, 10)).astype(dtype)
    bad = a.copy()
    bad[1, 3, 4] = np.nan
    bad[2, 0, 0] = np.inf
    u, s, vt = rrae_fast.truncated_svd(bad, 4)
    ref = rrae_fast.truncated_svd(a, 4)
    for out, good in zip((u, s, vt), ref):
        out, good = np.asarray(out), np.asarray(good)
        assert np.all(np.isnan(out[1])) and np.all(np.isnan(out[2]))
        np.testing.assert_array_equal(out[[0, 3]], good[[0, 3]])
    ak = np.asarray(rrae_fast.rank_reduce(bad, 4))
    assert np.all(np.isnan(ak[1])) and np.all(np.isfinite(ak[[0, 3]]))


@pytest.mark.parametrize("shape,k", [((9, 6), 3), ((6, 9), 6), ((2, 3, 7, 5), 2)])
def test_xla_fallback_matches_kernel(rng, shape, k):
    """The XLA path used on other platforms gives the kernel's results and signs."""
    a = rng.standard_normal(shape)
    kernel = rrae_fast.truncated_svd(a, k)
    ks = jnp.full(shape[:-2], k, jnp.int32)
    fallback = jax.jit(_forward.xla_factors, static_argnums=2)(jnp.asarray(a), ks, k)
    for x, y in zip(kernel, fallback):
        np.testing.assert_allclose(x, y, atol=1e-12)


def test_xla_fallback_nan_member(rng):
    """The XLA path also confines NaN to the non-finite member."""
    a = rng.standard_normal((3, 6, 4))
    a[0, 1, 1] = np.nan
    u, s, vt = _forward.xla_factors(jnp.asarray(a), jnp.full((3,), 2, jnp.int32), 2)
    assert np.all(np.isnan(s[0])) and np.all(np.isfinite(s[1:]))
    helpers.assert_contract(a[1:], u[1:], s[1:], vt[1:], 2)


def test_accepts_lists_and_numpy(rng):
    """Array-likes are accepted: nested lists and NumPy arrays."""
    _, s, _ = rrae_fast.truncated_svd([[3.0, 0.0], [0.0, 1.0]], 1)
    np.testing.assert_allclose(s, [3.0])
    a = rng.standard_normal((5, 3))
    np.testing.assert_allclose(
        rrae_fast.truncated_svd(a, 2)[1], np.linalg.svd(a, compute_uv=False)[:2], rtol=1e-13
    )
