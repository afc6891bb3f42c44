"""Forward pass of the SVD ops: the native kernel, XLA's fallback, and the platform choice.

``k`` travels as an int32 array of the batch shape (it may be traced) and ``max_k`` (static) is
the width of the outputs; entries beyond a matrix's ``k`` are zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from . import _native
from ._spectrum import keep_mask

#: The public methods; the kernels also take "auto" / "iterative" without the fallback after an
#: iteration that does not converge, for the derivative rules (see `attempt`), and the CUDA
#: kernel "dense_redo", for its redo of unconverged members (see `_cuda_factors`).
METHODS = ("auto", "dense", "iterative", "gram")
#: Path names of the kernels' ``info`` output (csrc/common/svd_types.h, read from the module).
#: "jacobi", "unconverged" and "solver_failed" come from the CUDA kernel only ("unconverged"
#: members are redone here); "gram" and "iterative_then_gram" from the CPU kernel only.
PATHS = _native.PATHS


def ffi_call(
    a: Array, k: Array, max_k: int, init: Array | None, method: str
) -> tuple[Array, Array, Array, Array]:
    """The native kernel (CPU or CUDA): factors of width max_k and ``info`` [..., 2]."""
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
    u, s, vt, info = call(
        a,
        k,
        init,
        max_k=np.int64(max_k),
        method=np.int64(_native.METHOD_CODES[method]),
    )
    return u, s, vt, info


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


@functools.cache
def _cuda_factors(max_k: int, method: str):
    """The CUDA kernel, with members it marks "unconverged" redone on its dense path.

    The kernel never synchronises with the host, so its iteration runs a fixed schedule and
    only flags the members whose residual test fails; the redo is a ``lax.cond`` on that flag.
    A ``custom_vmap`` keeps the condition one scalar for the whole batch under ``vmap`` (a
    batched condition would turn into a select that always runs the dense path). XLA copies a
    condition to the host and waits for it, so where the kernel's path cannot flag a member
    (its dense path: ``method="dense"``, or the shapes the kernel gives it) there is no
    condition, and no synchronisation. The redo factors only the members it is for (the
    kernel's "dense_redo" skips those whose k is -1), not the whole batch.
    """
    unconverged = PATHS.index("unconverged")

    @jax.custom_batching.custom_vmap
    def run(a, k, init):
        u, s, vt, info = ffi_call(a, k, max_k, init, method)
        if _native.cuda_path(*a.shape[-2:], max_k, a.dtype, method) == "dense":
            return u, s, vt  # pragma: no cover - needs a CUDA build
        redo = info[..., 0] == unconverged

        def dense(_):
            du, ds, dvt, _ = ffi_call(a, jnp.where(redo, k, -1), max_k, None, "dense_redo")
            return (
                jnp.where(redo[..., None, None], du, u),
                jnp.where(redo[..., None], ds, s),
                jnp.where(redo[..., None, None], dvt, vt),
            )

        return jax.lax.cond(jnp.any(redo), dense, lambda _: (u, s, vt), None)

    @run.def_vmap
    def _run_batched(axis_size, in_batched, a, k, init):
        a, k, init = (
            x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
            for x, batched in zip((a, k, init), in_batched)
        )
        return run(a, k, init), (True, True, True)

    return run


def attempt(
    a: Array, k: Array, max_k: int, init: Array | None = None, method: str = "auto"
) -> tuple[Array, Array, Array, Array]:
    """``factors`` without a fallback after an iteration: factors and a [...] bool, False where
    an iteration did not converge.

    There the factors are placeholders (finite, orthonormal, σ = 1) for the caller to replace;
    no dense fallback is computed. The derivative rules use this to take the full SVD once, for
    primal and tangent together, when the iteration fails. Platforms without our kernel return
    XLA's SVD, always "converged".
    """
    unconverged = PATHS.index("unconverged")
    code = f"{method}_no_fallback" if method in ("auto", "iterative") else method

    def native(x):
        u, s, vt, info = ffi_call(x, k, max_k, init, code)
        return u, s, vt, info[..., 0] != unconverged

    def default(x):
        return (*xla_factors(x, k, max_k), jnp.ones(x.shape[:-2], bool))

    branches = {"cpu": native, "default": default}
    if _native.cuda_available():  # pragma: no cover - needs a CUDA build
        branches["cuda"] = native
    return jax.lax.platform_dependent(a, **branches)


def factors(
    a: Array, k: Array, max_k: int, init: Array | None = None, method: str = "auto"
) -> tuple[Array, Array, Array]:
    """Factors of width max_k: the native kernels on CPU and CUDA, XLA's SVD elsewhere."""
    branches = {
        "cpu": lambda x: ffi_call(x, k, max_k, init, method)[:3],
        "default": lambda x: xla_factors(x, k, max_k),  # no method choice, no warm start
    }
    if _native.cuda_available():  # pragma: no cover - needs a CUDA build
        if init is None:
            init = jnp.zeros((*a.shape[:-1], 0), a.dtype)
        branches["cuda"] = lambda x: _cuda_factors(max_k, method)(x, k, init)
    return jax.lax.platform_dependent(a, **branches)
