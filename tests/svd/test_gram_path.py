"""The Gram path (csrc/cpu/gram_svd.cc): small and tall-skinny float32 matrices.

Its accuracy on the shared grid of shapes and spectra is in test_forward.py (method "gram"); here:
the spectra that stress an eigensolver, orientation, the selector, the fallback when its own
checks fail, batches and gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _cpu_testing, _forward, _native


def _gram(a, k):
    return rrae_fast.truncated_svd(np.asarray(a, np.float32), k, method="gram")


SPECTRA = {
    # all equal: one cluster holding the whole spectrum
    "orthogonal": lambda r: np.ones(r),
    # tight clusters just above the eigensolver's cluster tolerance and far below it
    "clusters": lambda r: (
        np.repeat([4.0, 2.0, 1.0, 0.5], -(-r // 4))[:r] * (1 + 1e-7 * np.arange(r))
    ),
    "near_ties": lambda r: 1.0 + 1e-4 * np.arange(r)[::-1],
    # the squares span 1e-40: the Gram matrix's small eigenvalues are pure rounding
    "graded": lambda r: 10.0 ** (-20.0 * np.arange(r) / max(r - 1, 1)),
    "rank_one": lambda r: np.concatenate([[7.0], np.zeros(r - 1)]),
    "two_values": lambda r: np.where(np.arange(r) % 2 == 0, 1.0, 1e-3),
}


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (200, 64), (17, 17), (300, 9), (9, 300)])
@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
def test_hard_spectra_meet_the_contract(rng, shape, spectrum):
    m, n = shape
    r = min(m, n)
    a = helpers.planted(rng, m, n, SPECTRA[spectrum](r)).astype(np.float32)
    # k = 1 and r // 8: eigenvalues by multisection; r // 4 and r: by the QL iteration
    for k in sorted({1, max(1, r // 8), max(1, r // 4), r}):
        helpers.assert_contract(a, *_gram(a, k), k)
        assert rrae_fast.diagnose(a, k, method="gram")["path"] == "gram"


@pytest.mark.parametrize("scale", [1e-32, 1e-20, 1e20, 1e36])
def test_scales_near_the_float32_range(rng, scale):
    """Entries near float32's limits: the float64 Gram matrix neither overflows nor underflows.

    (Not below ~1e-32: XLA's CPU threads read subnormal float32 entries as zero, on every path.)
    """
    a = (helpers.make_matrix(rng, (50, 20), "decaying") * scale).astype(np.float32)
    assert np.all(np.isfinite(a)) and np.any(a != 0)
    helpers.assert_contract(a, *_gram(a, 6), 6)


def test_tiny_and_degenerate_shapes(rng):
    for shape in [(1, 1), (1, 7), (7, 1), (2, 2), (2, 3), (3, 2)]:
        a = rng.standard_normal(shape).astype(np.float32)
        for k in range(1, min(shape) + 1):
            helpers.assert_contract(a, *_gram(a, k), k)
    zero = np.zeros((10, 4), np.float32)
    u, s, vt = _gram(zero, 4)
    helpers.assert_contract(zero, u, s, vt, 4)
    np.testing.assert_array_equal(s, 0)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (200, 64), (40, 24), (17, 17)])
def test_generic_build_agrees_with_avx2(rng, shape):
    """With the AVX2 loops turned off (as on a CPU without them), the generic build of the same
    code (Gram matrix by GEMM, tridiagonalisation, multisection, back-transformation) meets the
    contract and gives the AVX2 build's singular values to float32 rounding."""
    a = helpers.make_matrix(rng, shape, "decaying").astype(np.float32)
    r = min(shape)
    avx2 = _cpu_testing.allow_avx2(True)
    try:
        for k in sorted({1, max(1, r // 8), r}):
            wide = _gram(a, k)
            assert _cpu_testing.allow_avx2(False) is False
            generic = _gram(a, k)
            _cpu_testing.allow_avx2(True)
            helpers.assert_contract(a, *generic, k)
            if avx2:
                np.testing.assert_allclose(generic[1], wide[1], rtol=0, atol=1e-6 * wide[1][0])
    finally:
        _cpu_testing.allow_avx2(True)


def test_agrees_with_the_dense_path(rng):
    """Same singular values and subspaces as LAPACK, to float32 accuracy."""
    a = helpers.make_matrix(rng, (4, 200, 64), "decaying").astype(np.float32)
    ug, sg, vtg = _gram(a, 16)
    ud, sd, vtd = rrae_fast.truncated_svd(a, 16, method="dense")
    np.testing.assert_allclose(sg, sd, rtol=0, atol=2e-6 * float(np.max(sd)))
    # Decaying σ_i = 10^(-i/8): each of the first 16 is separated, so each vector is determined.
    np.testing.assert_allclose(np.abs(np.sum(ug * ud, axis=-2)), 1, atol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(vtg * vtd, axis=-1)), 1, atol=1e-4)


def test_batch_members_equal_single_calls(rng):
    """Batched, vmapped and single calls give identical bits (one code path per member)."""
    a = rng.standard_normal((6, 40, 24)).astype(np.float32)
    batched = _gram(a, 5)
    mapped = jax.vmap(lambda x: rrae_fast.truncated_svd(x, 5, method="gram"))(jnp.asarray(a))
    for i in range(len(a)):
        single = _gram(a[i], 5)
        for x, y, z in zip(batched, mapped, single):
            np.testing.assert_array_equal(x[i], z)
            np.testing.assert_array_equal(y[i], z)


def test_failed_checks_fall_back_to_dense(rng):
    """When the Gram path's checks fail (forced), the dense result is returned and reported."""
    a = jnp.asarray(rng.standard_normal((3, 30, 12)).astype(np.float32))
    ks = jnp.full((3,), 4, jnp.int32)
    with helpers.injected_fault("gram_fails"):
        *faulted, info = jax.block_until_ready(_forward.ffi_call(a, ks, 4, None, "gram"))
    *dense, _ = _forward.ffi_call(a, ks, 4, None, "dense")
    assert [_forward.PATHS[i] for i in np.asarray(info[:, 0])] == ["dense"] * 3
    for x, y in zip(faulted, dense):
        np.testing.assert_array_equal(x, y)


def test_float64_is_refused():
    with pytest.raises(ValueError, match="needs float32"):
        rrae_fast.truncated_svd(np.ones((4, 3)), 2, method="gram")
    with pytest.raises(ValueError, match="needs float32"):
        rrae_fast.rank_reduce(np.ones((4, 3)), 2, method="gram")


def test_half_precision_takes_it_in_float32(rng):
    a = rng.standard_normal((30, 10)).astype(np.float16)
    u, s, vt = rrae_fast.truncated_svd(a, 3, method="gram")
    assert u.dtype == s.dtype == vt.dtype == np.float16
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)[:3]
    np.testing.assert_allclose(np.asarray(s, np.float64), ref, rtol=2e-3)


def test_selector():
    """auto: Gram for float32 up to p = 128 and tall-skinny up to 256, LAPACK for k above p / 2
    on squarer matrices beyond p = 128."""
    assert _native.prefer_gram(64, 32, 8) and _native.prefer_gram(32, 64, 32)
    assert _native.prefer_gram(200, 64, 64) and _native.prefer_gram(4096, 128, 128)
    assert _native.prefer_gram(64, 64, 64) and _native.prefer_gram(128, 128, 128)
    assert _native.prefer_gram(512, 256, 256) and _native.prefer_gram(256, 256, 128)
    assert not _native.prefer_gram(256, 256, 129) and not _native.prefer_gram(192, 300, 192)
    assert not _native.prefer_gram(300, 300, 2)  # beyond the largest side it takes


def test_auto_paths(rng):
    a = rng.standard_normal((200, 64))
    assert rrae_fast.diagnose(a.astype(np.float32), 16)["path"] == "gram"
    assert rrae_fast.diagnose(a, 16)["path"] == "dense"  # float64
    assert rrae_fast.diagnose(a.astype(np.float32), 16, method="dense")["path"] == "dense"
    # p = 256: the iteration is preferred; on a flat spectrum it gives up (at its first pass:
    # the budget is short, see test_paths.py) and the Gram path (not LAPACK) finishes the job.
    flat = rng.standard_normal((300, 256)).astype(np.float32)
    info = rrae_fast.diagnose(flat, 10)
    assert info["path"] == "iterative_then_gram" and info["passes"] == 3
    helpers.assert_contract(flat, *rrae_fast.truncated_svd(flat, 10), 10)


def test_explicit_iterative_still_falls_back_to_dense(rng):
    flat = rng.standard_normal((300, 256)).astype(np.float32)
    assert rrae_fast.diagnose(flat, 10, method="iterative")["path"] == "iterative_then_dense"


@pytest.mark.parametrize("fn", ["truncated_svd", "rank_reduce"])
def test_gradients_match_the_dense_path(rng, fn):
    """The exact gradient through the Gram path's factors equals the dense path's."""
    a = jnp.asarray(helpers.make_matrix(rng, (40, 16), "decaying").astype(np.float32))
    target = jnp.asarray(rng.standard_normal((40, 16)).astype(np.float32))

    def loss(x, method):
        if fn == "rank_reduce":
            return jnp.sum((rrae_fast.rank_reduce(x, 4, method=method) - target) ** 2)
        u, s, vt = rrae_fast.truncated_svd(x, 4, method=method)
        return jnp.sum(s**2) + jnp.sum((u @ vt[:, :4]) ** 2)

    g_gram = jax.grad(loss)(a, "gram")
    g_dense = jax.grad(loss)(a, "dense")
    scale = float(jnp.max(jnp.abs(g_dense)))
    np.testing.assert_allclose(g_gram, g_dense, rtol=0, atol=2e-4 * scale)
