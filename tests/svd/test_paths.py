"""The kernel's two paths: selection, warm start, fallback; every path meets the contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast


def rrae_like(rng, m, n, k, noise=1e-3, dtype=np.float32):
    """Rank-k part with σ from 10 to 1 plus a residual of relative Frobenius size `noise`."""
    low = helpers.planted(rng, m, n, np.linspace(10.0, 1.0, k))
    e = rng.standard_normal((m, n))
    e *= noise * np.linalg.norm(low) / np.linalg.norm(e)
    return (low + e).astype(dtype)


def test_auto_selects_by_shape(rng):
    """auto: iterative for k well below min(m, n), else the Gram path for small float32
    matrices (test_gram_path.py) and dense otherwise."""
    big = rrae_like(rng, 600, 400, 10)
    assert rrae_fast.diagnose(big, 10)["path"] == "iterative"
    assert rrae_fast.diagnose(big, 200)["path"] == "dense"
    assert rrae_fast.diagnose(big[:100, :64], 5)["path"] == "gram"
    assert rrae_fast.diagnose(big[:100, :64].astype(np.float64), 5)["path"] == "dense"
    assert rrae_fast.diagnose(big, 10, method="dense")["path"] == "dense"


@pytest.mark.parametrize("dtype, k", [(np.float32, 12), (np.float64, 12), (np.float32, 40)])
def test_iterative_converges_fast_on_rrae_like(rng, dtype, k):
    """A rank-k-plus-noise matrix converges at the first residual test and meets the contract,
    from a dense random start (block width 20, too wide for a sparse Ω over 300 columns to
    hit every column) and, in float32, from the sparse sketch (48).

    The test asks for residuals at the dtype's precision, so the noise that one power step
    removes is smaller in float64.
    """
    noise = 1e-3 if dtype == np.float32 else 1e-7
    a = rrae_like(rng, 500, 300, k, noise=noise, dtype=dtype)
    info = rrae_fast.diagnose(a, k, method="iterative")
    assert info["path"] == "iterative" and info["passes"] == 4
    helpers.assert_contract(a, *rrae_fast.truncated_svd(a, k, method="iterative"), k)


@pytest.mark.parametrize(
    "m, n, k",
    [
        (517, 301, 1),
        (301, 517, 7),
        (777, 263, 17),
        (263, 777, 41),
        (1000, 264, 105),
        (650, 530, 160),
    ],
)
def test_iterative_odd_sizes(rng, m, n, k):
    """float32 products with A run through tiled kernels (rows in blocks of 24, columns in
    strips of 32 and pieces of 8, block columns in panels of 1 to 3 and of 8 to 24): sizes
    that are multiples of none of these, block widths 9 to 176 (9, 15, 25, 49, 113, 176),
    meet the contract and agree with LAPACK."""
    a = rrae_like(rng, m, n, k)
    info = rrae_fast.diagnose(a, k, method="iterative")
    assert info["path"] == "iterative"
    u, s, vt = rrae_fast.truncated_svd(a, k, method="iterative")
    helpers.assert_contract(a, u, s, vt, k)
    s_ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)[:k]
    np.testing.assert_allclose(s, s_ref, rtol=0, atol=2e-5 * s_ref[0])


@pytest.mark.parametrize(
    "spectrum, k",
    [("gapped", 16), ("gapped", 64), ("geometric", 30)],
)
def test_iterative_float32_converges_over_several_tests(rng, spectrum, k):
    """float32 tests take their Ritz pairs from PᵀP's eigenvectors (float64), not from P's QR:
    the Ritz vectors P·Z·Σ⁻¹ are used as they are where σ_1/σ_k is small (gapped: σ from 3 to
    1, then a tail at 0.05; σ_1/σ_k = 3) and orthonormalised first otherwise (geometric 0.8^j:
    646), and become the next block, orthonormalised, when the test fails. These spectra
    converge after two tests or more (6 passes or more) and meet the contract."""
    m, n = 1000, 800
    if spectrum == "gapped":
        sigma = np.r_[np.linspace(3.0, 1.0, k), 0.05 * 0.99 ** np.arange(n - k)]
    else:
        sigma = 0.8 ** np.arange(n)
    a = helpers.planted(rng, m, n, sigma).astype(np.float32)
    info = rrae_fast.diagnose(a, k, method="iterative")
    assert info["path"] == "iterative" and info["passes"] >= 6
    u, s, vt = rrae_fast.truncated_svd(a, k, method="iterative")
    helpers.assert_contract(a, u, s, vt, k)
    np.testing.assert_allclose(s, sigma[:k], rtol=0, atol=2e-5 * sigma[0])


def test_slow_spectrum_falls_back_to_dense(rng):
    """A flat spectrum does not converge within the budget: the dense result is returned."""
    a = rng.standard_normal((600, 400)).astype(np.float32)
    info = rrae_fast.diagnose(a, 10, method="iterative")
    assert info["path"] == "iterative_then_dense" and info["passes"] >= 4
    out = rrae_fast.truncated_svd(a, 10, method="iterative")
    helpers.assert_contract(a, *out, 10)
    for x, y in zip(out, rrae_fast.truncated_svd(a, 10, method="dense")):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_budget_tests_a_flat_first_pass(rng, dtype):
    """Where the block is wide against min(m, n) (here b = 72 for r = 400: two iterations of
    budget), a cold start whose first product shows a flat tail (P's Cholesky factor: entry b at
    least half entry k) tests at once: a Gaussian matrix gives up after the sketch, AᵀB and
    the k-th pair's check (3 passes, was 4 and a full orthonormalisation more); a matrix with all
    σ equal converges there (the width-1 check and the test of width k: 4); a rank-k-plus-noise
    matrix is not flat and converges as usual (4)."""
    k = 64
    gauss = rng.standard_normal((600, 400)).astype(dtype)
    info = rrae_fast.diagnose(gauss, k, method="iterative")
    assert info["path"] == "iterative_then_dense" and info["passes"] == 3
    helpers.assert_contract(gauss, *rrae_fast.truncated_svd(gauss, k, method="iterative"), k)
    equal = np.linalg.qr(rng.standard_normal((600, 400)))[0].astype(dtype)
    info = rrae_fast.diagnose(equal, k, method="iterative")
    assert info["path"] == "iterative" and info["passes"] == 4
    helpers.assert_contract(equal, *rrae_fast.truncated_svd(equal, k, method="iterative"), k)
    noise = 1e-3 if dtype == np.float32 else 1e-8
    low = rrae_like(rng, 600, 400, k, noise=noise, dtype=dtype)
    info = rrae_fast.diagnose(low, k, method="iterative")
    assert info["path"] == "iterative" and info["passes"] == 4
    helpers.assert_contract(low, *rrae_fast.truncated_svd(low, k, method="iterative"), k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_ritz_values_do_not_give_up_a_converged_start(rng, dtype):
    """All singular values equal: the Ritz values predict no contraction at all, but every
    k-dimensional subspace is exact. The k-th Ritz pair's residual, checked first on such a
    spectrum (a pass of width 1), is ~0, so the full test runs and the iteration converges."""
    a = np.linalg.qr(rng.standard_normal((600, 400)))[0].astype(dtype)
    info = rrae_fast.diagnose(a, 10, method="iterative")
    assert info["path"] == "iterative" and info["passes"] == 5  # 4 and the width-1 check
    helpers.assert_contract(a, *rrae_fast.truncated_svd(a, 10, method="iterative"), 10)


def test_batch_mixes_paths_and_non_finite(rng):
    """Each member reports its own path; a NaN member is flagged and the others are exact."""
    a = np.stack([rrae_like(rng, 300, 260, 6), rng.standard_normal((300, 260)).astype(np.float32)])
    a = np.concatenate([a, a[:1]])
    a[2, 5, 5] = np.nan
    info = rrae_fast.diagnose(a, 6, method="iterative")
    assert list(info["path"]) == ["iterative", "iterative_then_dense", "non_finite"]
    u, s, vt = rrae_fast.truncated_svd(a, 6, method="iterative")
    helpers.assert_contract(a[:2], u[:2], s[:2], vt[:2], 6)
    assert np.all(np.isnan(s[2]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (123, 77), (599, 399)])
def test_iterative_non_finite_entry_is_flagged(rng, dtype, bad, where):
    """The iteration's first sweep over A doubles as the NaN/Inf check: the random sketch on
    a cold start or one with fewer start columns than k; AᵀB where init fills the start block
    (k columns or more), or a separate check where some row of that block is zero. One bad
    entry anywhere gives NaN outputs and the non_finite path."""
    a = rrae_like(rng, 600, 400, 10, dtype=dtype)
    a[where] = bad
    inits = [np.linalg.qr(rng.standard_normal((600, c)))[0].astype(dtype) for c in (5, 10, 30)]
    inits.append(np.eye(600, 10, dtype=dtype))  # rows 10.. of the block are zero
    for kwargs in [{}] + [{"init": init} for init in inits]:
        info = rrae_fast.diagnose(a, 10, method="iterative", **kwargs)
        assert info["path"] == "non_finite"
        u, s, vt = rrae_fast.truncated_svd(a, 10, method="iterative", **kwargs)
        assert np.all(np.isnan(u)) and np.all(np.isnan(s)) and np.all(np.isnan(vt))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_sparse_sketch_non_finite_entry_is_flagged(rng, bad):
    """A float32 cold start at k = 30 (block width 38) sketches with the sparse Ω: a bad entry
    anywhere, the last columns' partial piece of 8 included, is still caught by its check."""
    for where in [(0, 0), (321, 200), (599, 391), (599, 397)]:
        a = rrae_like(rng, 600, 398, 30)
        a[where] = bad
        info = rrae_fast.diagnose(a, 30, method="iterative")
        assert info["path"] == "non_finite"
        assert np.all(np.isnan(rrae_fast.truncated_svd(a, 30, method="iterative")[1]))


@pytest.mark.parametrize(
    "scale, path",
    [(1e-30, "iterative"), (1e37, "iterative"), (3e38, "iterative_then_dense")],
)
def test_iterative_extreme_finite_scale_is_not_flagged(rng, scale, path):
    """σ_1 near the ends of float32's range: the sketch's NaN/Inf check lets the finite input
    through, and where the iteration's products overflow (σ_1 = 3e38), the dense path takes
    over; the contract holds either way."""
    a = rrae_like(rng, 600, 400, 10)
    a = (a * (np.float32(scale) / np.linalg.norm(a, 2))).astype(np.float32)
    assert np.all(np.isfinite(a))
    assert rrae_fast.diagnose(a, 10, method="iterative")["path"] == path
    helpers.assert_contract(a, *rrae_fast.truncated_svd(a, 10, method="iterative"), 10)


@pytest.mark.parametrize("spread, scale", [(10.0, 1.0), (10.0, 1e-30), (10.0, 1e37), (1e3, 1.0)])
def test_wide_float32_test_meets_contract(rng, spread, scale):
    """Blocks of 512 columns and more take their Ritz pairs from PᵀP's eigenvectors in float32
    where σ_1/σ_k <= 32 (in float64 otherwise, here spread 1e3): the pairs pass the first
    residual test at any scale (PᵀP's entries reach σ_1², beyond float32's range at
    1e37), and meet the contract."""
    m, n, k = 1400, 900, 500  # block 536
    sigma = np.geomspace(1.0, 1.0 / spread, k)
    low = helpers.planted(rng, m, n, sigma)
    e = rng.standard_normal((m, n))
    e *= 1e-3 / spread * np.linalg.norm(low) / np.linalg.norm(e)
    a = ((low + e) * scale).astype(np.float32)
    assert np.all(np.isfinite(a))
    info = rrae_fast.diagnose(a, k, method="iterative")
    assert info["path"] == "iterative" and info["passes"] == 4
    helpers.assert_contract(a, *rrae_fast.truncated_svd(a, k, method="iterative"), k)


def test_wide_float32_warm_start_converges_at_once(rng):
    """A warm start of 520 columns (the previous U of a matrix 1e-6 away entrywise) tests its first
    pass with float32 Ritz pairs and converges there."""
    m, n, k = 1400, 900, 520
    a0 = rrae_like(rng, m, n, k)
    a1 = (a0 + 1e-6 * rng.standard_normal((m, n))).astype(np.float32)
    u_prev = rrae_fast.truncated_svd(a0, k, method="iterative")[0]
    info = rrae_fast.diagnose(a1, k, method="iterative", init=u_prev)
    assert info["path"] == "iterative" and info["passes"] == 2
    helpers.assert_contract(
        a1, *rrae_fast.truncated_svd(a1, k, method="iterative", init=u_prev), k
    )


def test_kept_workspace_does_not_change_results(rng):
    """The workspace kept between calls holds what earlier calls left (non-finite entries from
    an iteration whose products overflowed, eigenvectors in the lower triangle of a factor's
    buffer): a later call reads none of it, and gives the same result, bit for bit, as from a
    fresh workspace."""
    m, n, k = 1400, 900, 400  # block 432: a short budget, the first pass's factor is tested
    low = helpers.planted(rng, m, n, np.geomspace(1.0, 0.1, k))
    e = rng.standard_normal((m, n))
    a = (low + e * (1e-4 * np.linalg.norm(low) / np.linalg.norm(e))).astype(np.float32)
    big = rrae_like(rng, 600, 400, 10)
    big = (big * (np.float32(3e38) / np.linalg.norm(big, 2))).astype(np.float32)
    rrae_fast.release_workspace()
    fresh = rrae_fast.diagnose(a, k, method="iterative")
    out = rrae_fast.truncated_svd(a, k, method="iterative")
    assert fresh["path"] == "iterative"
    for earlier in (big, a[:, :600]):
        rrae_fast.truncated_svd(earlier, 10 if earlier is big else k, method="iterative")
        assert rrae_fast.diagnose(a, k, method="iterative") == fresh
        for x, y in zip(rrae_fast.truncated_svd(a, k, method="iterative"), out):
            np.testing.assert_array_equal(x, y)


def _warm_cases(rng, m, n, k, u_prev):
    return {
        "previous_basis": u_prev,
        "random": rng.standard_normal((m, k)),
        "nan": np.full((m, k), np.nan),
        "zeros": np.zeros((m, k)),
        "rank_one": np.outer(rng.standard_normal(m), np.ones(k)),
        "wide": rng.standard_normal((m, 2 * k)),
    }


@pytest.mark.parametrize("case", ["previous_basis", "random", "nan", "zeros", "rank_one", "wide"])
def test_warm_start_any_init_meets_contract(rng, case):
    """Whatever init holds, results meet the contract; an exact basis converges at once."""
    m, n, k = 400, 300, 8
    a1 = rrae_like(rng, m, n, k)
    u_prev = np.asarray(rrae_fast.truncated_svd(a1, k)[0])
    init = _warm_cases(rng, m, n, k, u_prev)[case].astype(np.float32)
    out = rrae_fast.truncated_svd(a1, k, method="iterative", init=init)
    helpers.assert_contract(a1, *out, k)
    info = rrae_fast.diagnose(a1, k, method="iterative", init=init)
    assert info["path"] == "iterative"
    cold = rrae_fast.diagnose(a1, k, method="iterative")["passes"]
    if case == "previous_basis":  # two products of width k, no sketch: converged at once
        assert info["passes"] == 2 < cold
    ak = rrae_fast.rank_reduce(a1, k, init=init, method="iterative")
    np.testing.assert_allclose(ak, rrae_fast.rank_reduce(a1, k, method="dense"), atol=2e-5)


@pytest.mark.parametrize("spread", [10.0, 1e4])
def test_warm_start_from_rotated_exact_basis(rng, spread):
    """init spans the top-k subspace exactly, but rotated: the Ritz pairs from PᵀP mix P's
    columns across the whole spectrum (P·Z·Σ⁻¹ cancels like σ_1/σ_j in float32), so where
    σ_1/σ_k is large (1e4) those Ritz vectors are orthonormalised before their test (without
    it, that test fails and the iteration goes on); either way the start converges at once and
    meets the contract."""
    m, n, k = 500, 400, 24
    sigma = np.r_[np.geomspace(1.0, 1.0 / spread, k), 1e-3 / spread * np.ones(n - k)]
    q1 = np.linalg.qr(rng.standard_normal((m, n)))[0]
    q2 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    a = ((q1 * sigma) @ q2.T).astype(np.float32)
    init = (q1[:, :k] @ np.linalg.qr(rng.standard_normal((k, k)))[0]).astype(np.float32)
    info = rrae_fast.diagnose(a, k, method="iterative", init=init)
    assert info["path"] == "iterative" and info["passes"] == 2
    helpers.assert_contract(a, *rrae_fast.truncated_svd(a, k, method="iterative", init=init), k)


def test_warm_start_from_moved_basis(rng):
    """A basis from a slightly different matrix (the previous batch) is a valid start."""
    m, n, k = 400, 300, 8
    a0 = rrae_like(rng, m, n, k)
    a1 = (a0 + 1e-4 * rng.standard_normal((m, n))).astype(np.float32)
    u_prev = rrae_fast.truncated_svd(a0, k)[0]
    helpers.assert_contract(a1, *rrae_fast.truncated_svd(a1, k, init=u_prev), k)
    warm = rrae_fast.diagnose(a1, k, method="iterative", init=u_prev)
    cold = rrae_fast.diagnose(a1, k, method="iterative")
    # Its first test (a sweep of width k) may fail where a cold start does not test at all.
    assert warm["path"] == "iterative" and warm["passes"] <= cold["passes"] + 1


@pytest.mark.parametrize("extra", [0, 3])
def test_warm_start_widens_when_its_first_test_fails(rng, extra):
    """A warm start with k to b − 1 columns begins with those alone; from a basis too far off
    for its first test it adds random columns up to the block width and goes on."""
    m, n, k = 400, 300, 8
    a0 = rrae_like(rng, m, n, k)
    a1 = (a0 + 1e-3 * np.linalg.norm(a0, 2) * rng.standard_normal((m, n)) / np.sqrt(n)).astype(
        np.float32
    )
    u0 = np.linalg.svd(a0.astype(np.float64), full_matrices=False)[0]
    init = np.concatenate([u0[:, :k], rng.standard_normal((m, extra))], axis=1).astype(np.float32)
    helpers.assert_contract(a1, *rrae_fast.truncated_svd(a1, k, method="iterative", init=init), k)
    info = rrae_fast.diagnose(a1, k, method="iterative", init=init)
    cold = rrae_fast.diagnose(a1, k, method="iterative")
    assert info["path"] == "iterative" and 2 < info["passes"] <= cold["passes"] + 1


def test_init_broadcasts_over_batch_and_works_under_jit(rng):
    """A [m, c] init serves every batch member; init is a traced argument under jit."""
    a = np.stack([rrae_like(rng, 300, 280, 5) for _ in range(3)])
    init = rng.standard_normal((300, 5)).astype(np.float32)
    f = jax.jit(lambda x, i: rrae_fast.truncated_svd(x, 5, method="iterative", init=i))
    helpers.assert_contract(a, *f(a, init), 5)
    g = jax.grad(lambda x, i: jnp.sum(rrae_fast.rank_reduce(x, 5, init=i) ** 2))(a[0], init)
    np.testing.assert_allclose(g, 2 * rrae_fast.rank_reduce(a[0], 5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "init,exc,match",
    [
        (np.ones((7, 2)), ValueError, r"shape \[\.\.\., m=8, c\]"),
        (np.ones(8), ValueError, r"shape \[\.\.\., m=8, c\]"),
        (np.ones((8, 0)), ValueError, "1 <= c <= min"),
        (np.ones((8, 6)), ValueError, "1 <= c <= min"),
        (np.ones((3, 8, 2)), ValueError, "does not broadcast"),
        (np.ones((8, 2), np.int32), TypeError, "floating point"),
    ],
)
def test_bad_init(init, exc, match):
    """A malformed init raises at trace time."""
    with pytest.raises(exc, match=match):
        rrae_fast.truncated_svd(jnp.ones((2, 8, 5)), 2, init=init)


def test_bad_method():
    """Unknown method."""
    with pytest.raises(ValueError, match="method must be one of"):
        rrae_fast.rank_reduce(jnp.ones((8, 5)), 2, method="qr")


@pytest.mark.parametrize("method", ["dense", "iterative"])
def test_gradients_agree_across_paths(rng, method):
    """The derivative rule does not depend on the forward path."""
    a = rrae_like(rng, 300, 260, 6, dtype=np.float64)
    t = rng.standard_normal((300, 260))
    loss = lambda x, m: jnp.sum((rrae_fast.rank_reduce(x, 6, method=m) - t) ** 2)
    np.testing.assert_allclose(
        jax.grad(loss)(a, method), jax.grad(loss)(a, "auto"), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clustered_spectrum_meets_contract(rng, dtype):
    """A cluster of near-equal singular values across the cut: correct on either path taken."""
    sigma = np.concatenate([1.0 + 1e-6 * np.arange(30)[::-1], 0.1 * 0.9 ** np.arange(270)])
    a = helpers.planted(rng, 400, 300, sigma).astype(dtype)
    out = rrae_fast.truncated_svd(a, 10, method="iterative")
    helpers.assert_contract(a, *out, 10)
    assert rrae_fast.diagnose(a, 10, method="iterative")["path"] in (
        "iterative",
        "iterative_then_dense",
    )
