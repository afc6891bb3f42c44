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


METHODS = {"auto": 0, "dense": 1, "iterative": 2}
PATHS = ("dense", "iterative", "iterative_then_dense", "non_finite")


def _ffi_call(
    a: Array, k: int, init: Array | None, method: str, fault: int = 0
) -> tuple[Array, Array, Array, Array]:
    """The native kernel (CPU): top-k factors and a per-matrix ``info`` [..., 2] (path, passes).

    ``fault`` is a test hook that makes LAPACK calls report failure; 0 otherwise.
    """
    *batch, m, n = a.shape
    if init is None:
        init = jnp.zeros((*batch, m, 0), a.dtype)
    out = (
        jax.ShapeDtypeStruct((*batch, m, k), a.dtype),
        jax.ShapeDtypeStruct((*batch, k), a.dtype),
        jax.ShapeDtypeStruct((*batch, k, n), a.dtype),
        jax.ShapeDtypeStruct((*batch, 2), jnp.int32),
    )
    call = jax.ffi.ffi_call(_native.TRUNCATED_SVD_TARGET, out, vmap_method="broadcast_all")
    return call(a, init, k=np.int64(k), method=np.int64(METHODS[method]), fault=np.int64(fault))


def _ffi_factors(
    a: Array, k: int, init: Array | None = None, method: str = "auto", fault: int = 0
) -> tuple[Array, Array, Array]:
    """Top-k factors from the native kernel (CPU)."""
    return _ffi_call(a, k, init, method, fault)[:3]


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


def _factors(
    a: Array, k: int, init: Array | None = None, method: str = "auto"
) -> tuple[Array, Array, Array]:
    return jax.lax.platform_dependent(
        a,
        cpu=lambda x: _ffi_factors(x, k, init, method),
        default=lambda x: _xla_factors(x, k),  # XLA's SVD: no method choice, no warm start
    )


# ===========================================================================================
# Derivative rules
# ===========================================================================================


def _full_factors(a: Array) -> tuple[Array, Array, Array]:
    return _factors(a, min(a.shape[-2:]), method="dense")


def _jvp_factors(a, k, init, method, gradient):
    # Exact mode needs every singular triplet (the coupling with the discarded spectrum);
    # tangent mode treats everything beyond k as null space.
    return _full_factors(a) if gradient == "exact" else _factors(a, k, init, method)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 3, 4))
def _tsvd(a: Array, k: int, init, method: str, gradient: str) -> tuple[Array, Array, Array]:
    return _factors(a, k, init, method)


@_tsvd.defjvp
def _tsvd_jvp(k, method, gradient, primals, tangents):
    (a, init), (da, _) = primals, tangents  # the warm start carries no derivative
    u, s, vt = _jvp_factors(a, k, init, method, gradient)
    du, ds, dvt = _svd_grad.truncated_svd_jvp(u, s, vt, da, k)
    return (u[..., :k], s[..., :k], vt[..., :k, :]), (du, ds, dvt)


def _product(u: Array, s: Array, vt: Array) -> Array:
    return (u * s[..., None, :]) @ vt


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 3, 4))
def _rank_reduce(a: Array, k: int, init, method: str, gradient: str) -> Array:
    return _product(*_factors(a, k, init, method))


@_rank_reduce.defjvp
def _rank_reduce_jvp(k, method, gradient, primals, tangents):
    (a, init), (da, _) = primals, tangents  # the warm start carries no derivative
    u, s, vt = _jvp_factors(a, k, init, method, gradient)
    primal = _product(u[..., :k], s[..., :k], vt[..., :k, :])
    return primal, _svd_grad.rank_reduce_jvp(u, s, vt, da, k)


_STATIC = ("k", "method", "gradient")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _truncated_svd_jit(a, init, k, method, gradient) -> tuple[Array, Array, Array]:
    return _tsvd(a, k, jax.lax.stop_gradient(init), method, gradient)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _rank_reduce_jit(a, init, k, method, gradient) -> Array:
    return _rank_reduce(a, k, jax.lax.stop_gradient(init), method, gradient)


# ===========================================================================================
# Public API
# ===========================================================================================


def truncated_svd(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    method: str = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
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
        method: ``"auto"`` (default) picks per shape between ``"dense"`` (LAPACK's SVD, cost
            independent of k) and ``"iterative"`` (randomized subspace iteration stopped by a
            residual test that enforces the contract above, falling back to dense if it does
            not converge within its budget). :func:`diagnose` shows the choice.
        init: optional warm start, [..., m, c] (or [m, c] for every batch member) with
            ``1 <= c <= min(m, n)``, e.g. the previous training step's ``u``. It only seeds the
            iterative path; the results meet the contract whatever it holds (a NaN or
            degenerate basis is ignored or repaired). It carries no derivative.
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
    a, init, dtype, static = _prepare("truncated_svd", a, k, method, init, gradient, check_finite)
    u, s, vt = _truncated_svd_jit(a, init, **static)
    return u.astype(dtype), s.astype(dtype), vt.astype(dtype)


def rank_reduce(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    method: str = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
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
        method: as in :func:`truncated_svd`.
        init: warm start, as in :func:`truncated_svd`.
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
    a, init, dtype, static = _prepare("rank_reduce", a, k, method, init, gradient, check_finite)
    return _rank_reduce_jit(a, init, **static).astype(dtype)


def diagnose(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    method: str = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
) -> dict[str, np.ndarray]:
    """Which path the CPU kernel takes for each matrix, and how many products with A it used.

    Runs the forward kernel eagerly on CPU with the same arguments as :func:`truncated_svd`.

    Args:
        a: [..., m, n] input, as for :func:`truncated_svd`.
        k: number of triplets.
        method: ``"auto"``, ``"dense"`` or ``"iterative"``.
        init: optional warm start [..., m, c].

    Returns:
        ``{"path": [...] array of str, "passes": [...] int array}``. ``passes`` counts the
        iterative path's products with ``A`` or ``Aᵀ`` (its random sketch included; 0 on the
        dense path); a cold start that converges at its first test needs 4, a warm start 2 or 3.
        A path is one of
        ``"dense"``, ``"iterative"``, ``"iterative_then_dense"`` (did not converge within its
        budget; the dense result was returned) or ``"non_finite"`` (NaN output).
    """
    a, init, _, static = _prepare("diagnose", a, k, method, init, "exact", False)
    cpu = jax.devices("cpu")[0]
    a = jax.device_put(a, cpu)
    init = None if init is None else jax.device_put(init, cpu)
    info = np.asarray(_ffi_call(a, static["k"], init, static["method"])[3])
    return {"path": np.array(PATHS)[info[..., 0]], "passes": info[..., 1]}


def _prepare(fn, a, k, method, init, gradient, check_finite):
    a, dtype = _checks.check_matrix(a, fn)
    k = _checks.check_k(k, a.shape, fn)
    method = _checks.check_method(method, fn)
    gradient = _checks.check_gradient(gradient, fn)
    init = _checks.check_init(init, a, fn)
    if check_finite:
        a = _checks.check_finite(a, fn)
    return a, init, dtype, {"k": k, "method": method, "gradient": gradient}
