"""The public ops: ``truncated_svd`` and ``rank_reduce``.

Each op validates its input, then runs one jitted implementation (cached per shape, dtype, ``k``
and gradient mode, so repeated calls never retrace). The forward pass is our XLA FFI kernel on
CPU and XLA's own SVD on every other platform (``jax.lax.platform_dependent``); derivatives come
from ``jax.custom_jvp`` rules in :mod:`rrae_fast._svd_grad`, so forward and reverse mode both work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jaxtyping import ArrayLike, Float

from . import _checks, _native, _svd_grad

# ===========================================================================================
# Forward: the kernel, the fallback and the platform choice
# ===========================================================================================


def _ffi_factors(a: Array, k: int, fault: int = 0) -> tuple[Array, Array, Array]:
    """Top-k factors from the native kernel (CPU). ``fault`` is a test hook; 0 otherwise."""
    *batch, m, n = a.shape
    out = (
        jax.ShapeDtypeStruct((*batch, m, k), a.dtype),
        jax.ShapeDtypeStruct((*batch, k), a.dtype),
        jax.ShapeDtypeStruct((*batch, k, n), a.dtype),
    )
    call = jax.ffi.ffi_call(_native.TRUNCATED_SVD_TARGET, out, vmap_method="broadcast_all")
    return call(a, k=np.int64(k), fault=np.int64(fault))


def _sign_convention(u: Array, vt: Array) -> tuple[Array, Array]:
    """Flips each (u_i, v_i) pair so that the largest-magnitude entry of u_i is positive."""
    idx = jnp.argmax(jnp.abs(u), axis=-2, keepdims=True)  # first maximum on ties
    sign = jnp.where(jnp.take_along_axis(u, idx, axis=-2) < 0, -1, 1).astype(u.dtype)
    return u * sign, vt * jnp.swapaxes(sign, -1, -2)


def _xla_factors(a: Array, k: int) -> tuple[Array, Array, Array]:
    """Top-k factors from XLA's SVD: the path on platforms without our kernel."""
    finite = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    u, s, vt = jnp.linalg.svd(
        jnp.where(finite[..., None, None], a, jnp.zeros_like(a)), full_matrices=False
    )
    u, vt = _sign_convention(u[..., :k], vt[..., :k, :])
    nan = jnp.array(jnp.nan, a.dtype)
    return (
        jnp.where(finite[..., None, None], u, nan),
        jnp.where(finite[..., None], s[..., :k], nan),
        jnp.where(finite[..., None, None], vt, nan),
    )


def _factors(a: Array, k: int) -> tuple[Array, Array, Array]:
    return jax.lax.platform_dependent(
        a, cpu=functools.partial(_ffi_factors, k=k), default=functools.partial(_xla_factors, k=k)
    )


# ===========================================================================================
# Derivative rules
# ===========================================================================================


def _full_factors(a: Array) -> tuple[Array, Array, Array]:
    return _factors(a, min(a.shape[-2:]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _tsvd(a: Array, k: int, gradient: str) -> tuple[Array, Array, Array]:
    return _factors(a, k)


@_tsvd.defjvp
def _tsvd_jvp(k, gradient, primals, tangents):
    (a,), (da,) = primals, tangents
    # Exact mode needs every singular triplet (the coupling with the discarded spectrum);
    # tangent mode treats everything beyond k as null space.
    u, s, vt = _full_factors(a) if gradient == "exact" else _factors(a, k)
    du, ds, dvt = _svd_grad.truncated_svd_jvp(u, s, vt, da, k)
    return (u[..., :k], s[..., :k], vt[..., :k, :]), (du, ds, dvt)


def _product(u: Array, s: Array, vt: Array) -> Array:
    return (u * s[..., None, :]) @ vt


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _rank_reduce(a: Array, k: int, gradient: str) -> Array:
    return _product(*_factors(a, k))


@_rank_reduce.defjvp
def _rank_reduce_jvp(k, gradient, primals, tangents):
    (a,), (da,) = primals, tangents
    u, s, vt = _full_factors(a) if gradient == "exact" else _factors(a, k)
    primal = _product(u[..., :k], s[..., :k], vt[..., :k, :])
    return primal, _svd_grad.rank_reduce_jvp(u, s, vt, da, k)


@functools.partial(jax.jit, static_argnames=("k", "gradient"))
def _truncated_svd_jit(a: Array, k: int, gradient: str) -> tuple[Array, Array, Array]:
    return _tsvd(a, k, gradient)


@functools.partial(jax.jit, static_argnames=("k", "gradient"))
def _rank_reduce_jit(a: Array, k: int, gradient: str) -> Array:
    return _rank_reduce(a, k, gradient)


# ===========================================================================================
# Public API
# ===========================================================================================


def truncated_svd(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    gradient: str = "exact",
    check_finite: bool = False,
) -> tuple[Float[Array, "*batch m k"], Float[Array, "*batch k"], Float[Array, "*batch k n"]]:
    """The ``k`` largest singular triplets of a (batch of) matrices.

    Works eagerly and under ``jit``, ``vmap`` (any ``in_axes``), ``grad``, ``jvp``,
    ``jacfwd``/``jacrev`` and their compositions. On CPU the forward pass runs rrae_fast's native
    kernel; elsewhere it runs XLA's SVD and keeps the top ``k``, with the same results and the same
    derivative rule.

    Accuracy contract, per matrix, with ``ε`` the dtype's machine epsilon, ``a = ‖A‖₂`` and
    ``c = 20·√max(m, n)``: ``|σ_i − σ_i^ref| ≤ c·ε·a``; ``‖A v_i − σ_i u_i‖ ≤ c·ε·a``;
    ``‖Aᵀ u_i − σ_i v_i‖ ≤ c·ε·a``; ``‖UᵀU − I‖₂ ≤ c·ε`` and ``‖V Vᵀ − I‖₂ ≤ c·ε``.

    Sign convention: the entry of largest magnitude in each column of ``U`` is positive (the
    first such entry on a tie); the matching row of ``Vt`` carries the sign, so ``U diag(s) Vt``
    is unchanged and results are deterministic.

    Derivatives: by default (``gradient="exact"``) they equal those of the full thin SVD sliced
    to ``k`` columns, including the coupling with the discarded singular values, with the paper's
    stabilisation (tied singular values decoupled, tiny ones treated as zero) so that ties and
    rank deficiency give finite values; see :mod:`rrae_fast._svd_grad` for the thresholds.
    ``gradient="tangent"`` ignores the discarded spectrum (cheaper, no full SVD); it is exact
    only when ``rank(A) ≤ k``.

    Args:
        a: [..., m, n] float32 or float64 (float16/bfloat16 are computed in float32 and cast
            back). Leading axes are a batch.
        k: number of triplets, a Python int with ``1 <= k <= min(m, n)``.
        gradient: ``"exact"`` (default) or ``"tangent"``.
        check_finite: raise if ``a`` has NaN or Inf entries. By default a matrix with such
            entries gets NaN in all its outputs and the other batch members are unaffected.

    Returns:
        ``(u, s, vt)``: ``u`` [..., m, k] with orthonormal columns, ``s`` [..., k] descending
        and ≥ 0, ``vt`` [..., k, n] with orthonormal rows.

    Raises:
        TypeError: ``a`` is not floating point, or ``k`` is not a concrete int.
        ValueError: ``a.ndim < 2``, an axis of ``a`` is empty, ``k`` is out of range, an
            unknown ``gradient``, or (``check_finite=True``) a non-finite entry.

    Examples:
        >>> import jax.numpy as jnp
        >>> import rrae_fast
        >>> a = jnp.array([[3.0, 0.0], [0.0, -2.0], [0.0, 0.0]])
        >>> u, s, vt = rrae_fast.truncated_svd(a, 1)
        >>> u.shape, s.tolist(), vt.shape
        ((3, 1), [3.0], (1, 2))
    """
    fn = "truncated_svd"
    a, dtype = _checks.check_matrix(a, fn)
    k = _checks.check_k(k, a.shape, fn)
    gradient = _checks.check_gradient(gradient, fn)
    if check_finite:
        a = _checks.check_finite(a, fn)
    u, s, vt = _truncated_svd_jit(a, k, gradient)
    return u.astype(dtype), s.astype(dtype), vt.astype(dtype)


def rank_reduce(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    gradient: str = "exact",
    check_finite: bool = False,
) -> Float[Array, "*batch m n"]:
    """The best rank-``k`` approximation ``A_k = U diag(s) Vt`` of a (batch of) matrices.

    This is the operation a Rank Reduction Autoencoder applies to its latent matrix. Its
    derivative is the self-adjoint cross-gap formula (see :mod:`rrae_fast._svd_grad`): repeated
    or zero singular values inside the kept set or inside the discarded set are harmless; only a
    tie across the cut (``σ_k = σ_{k+1}``, where ``A_k`` is not differentiable) is regularised.
    Works under the same transformations as :func:`truncated_svd`.

    Args:
        a: [..., m, n] float32 or float64 (float16/bfloat16 computed in float32).
        k: rank, a Python int with ``1 <= k <= min(m, n)``.
        gradient: ``"exact"`` (default) or ``"tangent"``: the projection
            ``P_U G + G P_V − P_U G P_V``, exact only when ``rank(A) ≤ k``.
        check_finite: raise if ``a`` has NaN or Inf entries (default: NaN output for that
            matrix only).

    Returns:
        [..., m, n], the same shape and dtype as ``a``.

    Raises:
        TypeError, ValueError: as :func:`truncated_svd`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import rrae_fast
        >>> a = jnp.array([[3.0, 0.0], [0.0, 1.0]])
        >>> rrae_fast.rank_reduce(a, 1).tolist()
        [[3.0, 0.0], [0.0, 0.0]]
    """
    fn = "rank_reduce"
    a, dtype = _checks.check_matrix(a, fn)
    k = _checks.check_k(k, a.shape, fn)
    gradient = _checks.check_gradient(gradient, fn)
    if check_finite:
        a = _checks.check_finite(a, fn)
    return _rank_reduce_jit(a, k, gradient).astype(dtype)
