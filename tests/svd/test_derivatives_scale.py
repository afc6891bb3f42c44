"""Derivatives are scale-invariant over the range the forward pass supports.

A_k(c·A) = c·A_k(A) and the factors of c·A are (U, c·σ, Vᵀ), so the gradient of
sum(W ⊙ rank_reduce(A)) does not depend on c, that of σ neither, and those of U and V scale
by 1/c. The rules once formed σ² in the working dtype and returned NaN or wrong values for
float32 σ_1 ≳ 2e19 or ≲ 4e-18 and float64 near 1e±160.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rrae_fast

# Powers of two near 1e±30 (float32) and 1e±300 (float64), and a few in between: exact scalings.
SCALES = {
    np.float32: [2.0**e for e in (-99, -60, 64, 99)],
    np.float64: [2.0**e for e in (-996, -530, 530, 996)],
}
# (shape, k, method): the dense rule, the Gram solves (small float32, 3k ≤ min(m, n)), the
# conjugate-gradient solves (an iterating forward pass).
ROUTES = [((12, 7), 2, "auto"), ((80, 40), 3, "auto"), ((600, 300), 4, "iterative")]


def _case(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    m, n = shape
    r = min(m, n)
    q1, _ = np.linalg.qr(rng.standard_normal((m, r)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, r)))
    sigma = np.concatenate([[5.0, 3.0, 2.0, 1.5, 1.2], 0.1 * np.linspace(1, 0.5, r - 5)])
    a = ((q1 * sigma) @ q2.T).astype(dtype)
    w = rng.standard_normal(shape).astype(dtype)
    return a, w


def _tol(dtype):
    return 2e-4 if dtype == np.float32 else 1e-10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,method", ROUTES)
def test_rank_reduce_gradient_is_scale_invariant(dtype, shape, k, method):
    if method == "iterative" and dtype == np.float32:
        pytest.skip("covered in float64; float32 iterates the same way")
    a, w = _case(shape, dtype)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(w * rrae_fast.rank_reduce(x, k, method=method))))
    g1 = np.asarray(grad(a), np.float64)
    assert np.all(np.isfinite(g1))
    for c in SCALES[dtype]:
        gc = np.asarray(grad(a * dtype(c)), np.float64)
        err = np.max(np.abs(gc - g1)) / np.max(np.abs(g1))
        assert err <= _tol(dtype), (c, err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,method", ROUTES[:2])
def test_truncated_svd_gradients_scale_as_the_factors(dtype, shape, k, method):
    a, w = _case(shape, dtype)
    wu = w[:, :k]
    wv = w[:k, :]

    def parts(x):
        u, s, vt = rrae_fast.truncated_svd(x, k, method=method)
        return jnp.sum(wu * u), jnp.sum(s), jnp.sum(wv * vt)

    grads = [jax.jit(jax.grad(lambda x, i=i: parts(x)[i])) for i in range(3)]
    ref = [np.asarray(g(a), np.float64) for g in grads]
    for c in SCALES[dtype]:
        x = a * dtype(c)
        for i, g in enumerate(grads):
            got = np.asarray(g(x), np.float64)
            expected = ref[i] if i == 1 else ref[i] / c  # dσ: degree 0; dU, dV: degree -1
            # dU, dV at 2^±996 reach below the normal range, which XLA flushes to zero.
            excess = np.abs(got - expected) - 4 * np.finfo(dtype).tiny
            err = max(np.max(excess), 0.0) / np.max(np.abs(expected))
            assert err <= _tol(dtype), (c, i, err)


@pytest.mark.parametrize("shape,k,method", ROUTES[:2])
def test_check_grads_at_unit_scale_and_scaled_frame(shape, k, method):
    """The rules pass check_grads (both modes, second order) at unit scale and at 2^±700,
    where the derivative is evaluated in the scaled frame."""
    a, _ = _case(shape, np.float64)
    for c in (1.0, 2.0**-700, 2.0**700):
        f = lambda x, c=c: rrae_fast.rank_reduce(x * c, k, method=method) / c
        check_grads(f, (a,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
