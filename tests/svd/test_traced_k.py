"""A traced k with a static max_k: one compilation for every k, zeros beyond k."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _forward

MAX_K = 5


def _padded(x, k, axis):
    """Static-k result padded with zeros to MAX_K along `axis`."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, MAX_K - k)
    return np.pad(np.asarray(x), pad)


@pytest.mark.parametrize("method", ["dense", "iterative"])
def test_sweep_k_under_one_trace(rng, method):
    """k = 1..max_k through one jitted function: one trace, results equal static k, zero-padded."""
    a = helpers.make_matrix(rng, (2, 12, 9), "decaying")
    traces = []

    @jax.jit
    def f(x, k):
        traces.append(None)
        return rrae_fast.truncated_svd(x, k, max_k=MAX_K, method=method)

    for k in range(1, MAX_K + 1):
        u, s, vt = f(a, k)
        ru, rs, rvt = rrae_fast.truncated_svd(a, k, method=method)
        np.testing.assert_allclose(u, _padded(ru, k, -1), atol=1e-12)
        np.testing.assert_allclose(s, _padded(rs, k, -1), atol=1e-12)
        np.testing.assert_allclose(vt, _padded(rvt, k, -2), atol=1e-12)
    assert len(traces) == 1


@pytest.mark.parametrize("gradient", ["exact", "tangent"])
def test_rank_reduce_and_grad_match_static_k(rng, gradient):
    """rank_reduce and its gradient with a traced k equal those with the same static k."""
    a = rng.standard_normal((10, 7))
    t = rng.standard_normal((10, 7))

    def loss(x, k, max_k=None):
        return jnp.sum((rrae_fast.rank_reduce(x, k, max_k=max_k, gradient=gradient) - t) ** 2)

    g_traced = jax.jit(jax.grad(lambda x, k: loss(x, k, MAX_K)))
    for k in (1, 3, MAX_K):
        np.testing.assert_allclose(
            rrae_fast.rank_reduce(a, jnp.int32(k), max_k=MAX_K),
            rrae_fast.rank_reduce(a, k),
            atol=1e-12,
        )
        np.testing.assert_allclose(g_traced(a, k), jax.grad(loss)(a, k), rtol=1e-10, atol=1e-12)
    assert g_traced._cache_size() == 1


def test_factor_jvp_matches_static_k(rng):
    """The tangent of the factors is the static-k tangent, zero beyond k."""
    a, da = rng.standard_normal((2, 9, 6))
    k = 2
    _, tangents = jax.jvp(
        lambda x: rrae_fast.truncated_svd(x, jnp.int32(k), max_k=MAX_K), (a,), (da,)
    )
    _, ref = jax.jvp(lambda x: rrae_fast.truncated_svd(x, k), (a,), (da,))
    for t, r, axis in zip(tangents, ref, (-1, -1, -2)):
        np.testing.assert_allclose(t, _padded(r, k, axis), atol=1e-11)


def test_vmap_over_k(rng):
    """vmap over a batch of k values gives each member its own rank."""
    a = rng.standard_normal((8, 6))
    ks = jnp.array([1, 2, 4], jnp.int32)
    out = jax.vmap(lambda k: rrae_fast.rank_reduce(a, k, max_k=4))(ks)
    for i, k in enumerate([1, 2, 4]):
        np.testing.assert_allclose(out[i], rrae_fast.rank_reduce(a, k), atol=1e-12)


def test_xla_fallback_masks_beyond_k(rng):
    """The XLA path (other platforms) zeroes the columns beyond k as the kernel does."""
    a = jnp.asarray(rng.standard_normal((3, 7, 6)))
    ks = jnp.array([1, 3, 4], jnp.int32)
    kernel = _forward.ffi_call(a, ks, 4, None, "auto")[:3]
    for x, y in zip(kernel, _forward.xla_factors(a, ks, 4)):
        np.testing.assert_allclose(x, y, atol=1e-12)


@pytest.mark.parametrize("method", ["dense", "iterative"])
def test_traced_k_out_of_range_gives_nan_without_a_host_callback(rng, method):
    """A traced k outside [1, max_k] gives NaN outputs and derivatives (as a non-finite input
    does): checking it would stop every call for the host. In range, nothing changes."""
    a = jnp.asarray(rng.standard_normal((2, 9, 6)))

    def f(x, k):
        return rrae_fast.truncated_svd(x, k, max_k=3, method=method)

    def grad(x, k):
        return jax.grad(lambda y: rrae_fast.rank_reduce(y, k, max_k=3, method=method).sum())(x)

    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, k: f(x, k)[1].sum()))(a, jnp.int32(2)))
    assert "callback" not in jaxpr
    for k in (-1, 0, 4, 100):
        for out in (*jax.jit(f)(a, k), jax.jit(grad)(a, k)):
            assert np.isnan(np.asarray(out)).all(), k
    for k in (1, 3):
        np.testing.assert_allclose(jax.jit(f)(a, k)[1][:, :k], rrae_fast.truncated_svd(a, k)[1])
    # Per member under vmap: only the members whose k is out of range.
    s = jax.vmap(lambda k: f(a[0], k)[1])(jnp.array([1, 5, 0, 3], jnp.int32))
    assert np.isnan(s[1]).all() and np.isnan(s[2]).all()
    assert np.isfinite(s[0]).all() and np.isfinite(s[3]).all()


@pytest.mark.parametrize(
    "k,max_k,exc,match",
    [
        (4, 3, ValueError, "1 <= k <= max_k"),
        (0, 3, ValueError, "1 <= k <= max_k"),
        (1, 5, ValueError, "1 <= max_k <= min"),
        (1, 0, ValueError, "1 <= max_k <= min"),
        (1, 2.0, TypeError, "max_k must be an int"),
    ],
)
def test_bad_k_with_max_k(k, max_k, exc, match):
    """Concrete k and max_k are checked at trace time."""
    with pytest.raises(exc, match=match):
        rrae_fast.truncated_svd(jnp.ones((6, 4)), k, max_k=max_k)


def test_traced_float_k_rejected():
    """A traced k must be an integer scalar."""
    with pytest.raises(TypeError, match="integer scalar"):
        jax.jit(lambda k: rrae_fast.rank_reduce(jnp.ones((6, 4)), k, max_k=2))(1.0)
