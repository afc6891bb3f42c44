"""Bad input raises a clear exception; native failures surface as errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _forward


def _ffi(a, k, fault):
    """The native kernel's factors with the named LAPACK fault injected."""
    ks = jnp.full(a.shape[:-2], k, jnp.int32)
    with helpers.injected_fault(fault):
        call = jax.jit(lambda x, ks: _forward.ffi_call(x, ks, k, None, "dense")[:3])
        return jax.block_until_ready(call(a, ks))


OPS = [rrae_fast.truncated_svd, rrae_fast.rank_reduce]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "k,exc,match",
    [
        (0, ValueError, "1 <= k <= min"),
        (5, ValueError, "1 <= k <= min"),
        (-1, ValueError, "1 <= k <= min"),
        (2.0, TypeError, "k must be an int"),
        ("2", TypeError, "k must be an int"),
        (True, TypeError, "bool"),
        (None, TypeError, "k must be an int"),
    ],
)
def test_bad_k(op, k, exc, match):
    """k out of range or not an int."""
    with pytest.raises(exc, match=match):
        op(jnp.ones((6, 4)), k)


@pytest.mark.parametrize("op", OPS)
def test_traced_k_rejected(op):
    """A traced k without max_k is rejected with a message that says how to allow it."""
    with pytest.raises(TypeError, match="traced value; pass max_k="):
        jax.jit(lambda k: op(jnp.ones((6, 4)), k))(2)


def test_numpy_integer_k_accepted():
    """NumPy integer k is accepted."""
    assert rrae_fast.truncated_svd(jnp.ones((6, 4)), np.int32(2))[1].shape == (2,)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(5,), ()])
def test_bad_ndim(op, shape):
    """Fewer than two dimensions."""
    with pytest.raises(ValueError, match=r"\[\.\.\., m, n\]"):
        op(jnp.ones(shape), 1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 3, 3)])
def test_empty_axis(op, shape):
    """A zero-size axis."""
    with pytest.raises(ValueError, match="non-empty"):
        op(jnp.ones(shape), 1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int64, jnp.bool_, jnp.complex64, jnp.complex128])
def test_bad_dtype(op, dtype):
    """Integer, boolean and complex inputs are rejected."""
    with pytest.raises(TypeError, match="floating-point"):
        op(jnp.ones((4, 3), dtype), 1)


@pytest.mark.parametrize("op", OPS)
def test_bad_gradient_mode(op):
    """Unknown gradient mode."""
    with pytest.raises(ValueError, match="gradient must be one of"):
        op(jnp.ones((4, 3)), 1, gradient="fast")


@pytest.mark.parametrize("op", OPS)
def test_check_finite_eager(op):
    """check_finite=True raises on NaN/Inf eagerly and passes finite input."""
    a = np.ones((4, 3))
    op(a, 1, check_finite=True)
    a[2, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        op(a, 1, check_finite=True)


@pytest.mark.parametrize("op", OPS)
def test_check_finite_traced(op):
    """check_finite=True raises at run time under jit."""
    f = jax.jit(lambda a: op(a, 1, check_finite=True))
    f(jnp.ones((4, 3)))
    with pytest.raises(Exception, match="input has NaN or Inf"):  # error type: jit vs filter_jit
        jax.block_until_ready(f(jnp.full((4, 3), jnp.nan)))


def test_gesdd_failure_falls_back_to_gesvd(rng):
    """When gesdd reports non-convergence, the kernel recovers with gesvd."""
    a = jnp.asarray(rng.standard_normal((2, 9, 6)))
    u, s, vt = _ffi(a, 3, "gesdd_fails")
    ref = rrae_fast.truncated_svd(a, 3)
    for x, y in zip((u, s, vt), ref):
        np.testing.assert_allclose(x, y, atol=1e-12)


@pytest.mark.parametrize("dtype,routine", [(np.float64, "dgesdd"), (np.float32, "sgesdd")])
def test_lapack_failure_raises(rng, dtype, routine):
    """LAPACK failure on finite input raises an error naming the routine and code."""
    a = jnp.asarray(rng.standard_normal((2, 9, 6)).astype(dtype))
    with pytest.raises(Exception, match=rf"{routine} failed to converge \(info=1\).*gesvd"):
        _ffi(a, 3, "all_fail")
