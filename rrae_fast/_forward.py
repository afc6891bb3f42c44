"""Forward pass of the SVD ops: the native kernel, XLA's fallback, and the platform choice.

``k`` travels as an int32 array of the batch shape (it may be traced) and ``max_k`` (static) is
the width of the outputs; entries beyond a matrix's ``k`` are zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from . import _native

METHODS = {"auto": 0, "dense": 1, "iterative": 2}
PATHS = ("dense", "iterative", "iterative_then_dense", "non_finite")


def ffi_call(
    a: Array, k: Array, max_k: int, init: Array | None, method: str, fault: int = 0
) -> tuple[Array, Array, Array, Array]:
    """The native kernel (CPU): factors of width max_k and ``info`` [..., 2] (path, passes).

    ``fault`` is a test hook that makes LAPACK calls report failure; 0 otherwise.
    """
    *batch, m, n = a.shape
    if init is None:
        init = jnp.zeros((*batch, m, 0), a.dtype)
    out = (
        jax.ShapeDtypeStruct((*batch, m, max_k), a.dtype),
        jax.ShapeDtypeStruct((*batch, max_k), a.dtype),
        jax.ShapeDtypeStruct((*batch, max_k, n), a.dtype),
        jax.ShapeDtypeStruct((*batch, 2), jnp.int32),
    )
    call = jax.ffi.ffi_call(_native.TRUNCATED_SVD_TARGET, out, vmap_method="broadcast_all")
    return call(
        a,
        k,
        init,
        max_k=np.int64(max_k),
        method=np.int64(METHODS[method]),
        fault=np.int64(fault),
    )


def keep_mask(k: Array, width: int) -> Array:
    """[..., width] bool: True for the first k[...] columns."""
    columns = jnp.arange(width, dtype=jnp.int32).reshape((1,) * k.ndim + (width,))
    return columns < k[..., None]


def sign_convention(u: Array, vt: Array) -> tuple[Array, Array]:
    """Flips each (u_i, v_i) pair so that the largest-magnitude entry of u_i is positive."""
    idx = jnp.argmax(jnp.abs(u), axis=-2, keepdims=True)  # first maximum on ties
    sign = jnp.where(jnp.take_along_axis(u, idx, axis=-2) < 0, -1, 1).astype(u.dtype)
    return u * sign, vt * jnp.swapaxes(sign, -1, -2)


def xla_factors(a: Array, k: Array, max_k: int) -> tuple[Array, Array, Array]:
    """Factors from XLA's SVD: the path on platforms without our kernel."""
    finite = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    u, s, vt = jnp.linalg.svd(
        jnp.where(finite[..., None, None], a, jnp.zeros_like(a)), full_matrices=False
    )
    u, vt = sign_convention(u[..., :max_k], vt[..., :max_k, :])
    keep = keep_mask(k, max_k)
    zero = jnp.zeros((), a.dtype)
    nan = jnp.array(jnp.nan, a.dtype)
    u = jnp.where(keep[..., None, :], u, zero)
    s = jnp.where(keep, s[..., :max_k], zero)
    vt = jnp.where(keep[..., :, None], vt, zero)
    return (
        jnp.where(finite[..., None, None], u, nan),
        jnp.where(finite[..., None], s, nan),
        jnp.where(finite[..., None, None], vt, nan),
    )


def factors(
    a: Array, k: Array, max_k: int, init: Array | None = None, method: str = "auto"
) -> tuple[Array, Array, Array]:
    """Factors of width max_k: the native kernel on CPU, XLA's SVD elsewhere."""
    return jax.lax.platform_dependent(
        a,
        cpu=lambda x: ffi_call(x, k, max_k, init, method)[:3],
        default=lambda x: xla_factors(x, k, max_k),  # no method choice, no warm start
    )
