"""Stable derivatives of the truncated SVD and of the rank-k approximation (pure ``jnp``).

Derivation (paper, Appendix A). Let ``A = Σ_i σ_i u_i v_iᵀ`` with
factors ``U_c, σ_c, V_c`` of ``c ≥ k`` columns, ordered by decreasing σ. The first ``k`` form the
kept set K, the next ``c − k`` the discarded set D; everything orthogonal to the ``c`` columns is
treated as null space of A. With ``c = min(m, n)`` (all singular triplets) the formulas below are
exact; with ``c = k`` they are the cheap "tangent" approximation, exact when ``rank(A) ≤ k``.

With ``Ω = U_cᵀ dA V_c`` and ``F_ij = 1 / (σ_j² − σ_i²)`` (``F_ii = 0``), for ``i ∈ K``:

    dσ_i = Ω_ii
    du_i = Σ_j u_j F_ji (Ω_ji σ_i + σ_j Ω_ij) + (I − U_c U_cᵀ) dA v_i / σ_i
    dv_i = Σ_j v_j F_ji (σ_j Ω_ji + Ω_ij σ_i) + (I − V_c V_cᵀ) dAᵀ u_i / σ_i

which is the derivative of the full thin SVD restricted to the kept columns (the discarded
triplets enter through ``F`` for ``j ∈ D``). For ``A_k = U_K Σ_K V_Kᵀ``, rotations inside K or D
cancel and only cross-gap terms remain (``i ∈ K``, ``j ∈ D``, ``g_ij = σ_i / (σ_i² − σ_j²)``;
K is given as a mask, so that k may be a traced value):

    dA_k = U_K Ω_KK V_Kᵀ
         + Σ u_j g_ij (σ_i Ω_ji + σ_j Ω_ij) v_iᵀ + Σ u_i g_ij (σ_i Ω_ij + σ_j Ω_ji) v_jᵀ
         + (I − U_c U_cᵀ) dA V_K V_Kᵀ + U_K U_Kᵀ dA (I − V_c V_cᵀ)

This map is self-adjoint and linear in ``dA``, so reverse mode follows by transposition.

Stabilisation (paper Appendix A, made scale-invariant; the thresholds are in
:mod:`rrae_fast.svd._spectrum`): singular values below a relative zero threshold count as exact
zeros (``1/σ`` of them as 0), and pairs whose squares lie within a relative tie threshold are
decoupled.

Ties inside K or inside D then give finite derivatives; a tie across the cut (``σ_k ≈ σ_{k+1}``),
where truncation is genuinely not differentiable, gives a finite value that drops that coupling.

Second order: the decoupled factors of a tied block are one frame of it, so a rule that weighs
each triplet by its own σ_i is exact to first order but its own derivative is not.
:func:`rank_reduce_jvp_by_subspace` (the exact rule of ``rank_reduce``) has the same value and
is written through the kept subspace, so that differentiating it gives the Hessian of ``A_k``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from ._spectrum import inverse_gaps, mT, same, stable_parts


def truncated_svd_jvp(
    u: Array,
    s: Array,
    vt: Array,
    da: Array,
    k: int,
    complement=None,
    row_sum: Callable[[Array], Array] = same,
    rows: int | None = None,
) -> tuple[Array, Array, Array]:
    """Tangent of the top-k factors from factors with ``c ≥ k`` columns.

    With ``complement = (Ω, X, Y)`` (``Uᵀ dA V`` and the solved blocks of
    :mod:`rrae_fast.svd._solves`, [..., c, c], [..., m, c], [..., n, c]; then ``c = k``), those
    blocks replace the null-space terms: the exact derivative without the full SVD.

    Args:
        u: [..., m, c] left singular vectors (orthonormal columns).
        s: [..., c] singular values, descending.
        vt: [..., c, n] right singular vectors (orthonormal rows).
        da: [..., m, n] tangent of the input.
        k: number of kept triplets, ``k ≤ c``.
        row_sum: applied to every product that sums over the rows of ``da``; with ``u`` and
            ``da`` one device's rows of matrices split by rows, a ``psum`` over the devices
            (:mod:`rrae_fast.svd._sharded`). The identity by default.
        rows: the number of rows of the whole matrix (default: ``da``'s).

    Returns:
        ``(du, ds, dvt)`` of shapes [..., m, k], [..., k], [..., k, n].
    """
    m, n = rows or da.shape[-2], da.shape[-1]
    st, sq, tie, sinv = stable_parts(s, m, n)
    v = mT(vt)
    omega = row_sum(mT(u) @ da) @ v if complement is None else complement[0]  # [..., c, c]
    omega_k = omega[..., :, :k]  # Ω_jk: column i of Ω for i in K
    f = inverse_gaps(sq[..., :k], sq, tie)  # [..., i∈K, j] = 1/(σ_j² − σ_i²)
    ft = mT(f)  # [..., j, i]
    s_k, sinv_k = st[..., :k], sinv[..., :k]
    # u-rotation coefficients: F_ji (Ω_ji σ_i + σ_j Ω_ij); F_ji = 1/(σ_i² − σ_j²) = −ft.
    omega_t_k = mT(omega[..., :k, :])  # [..., j, i] = Ω_ij
    rot_u = -ft * (omega_k * s_k[..., None, :] + st[..., :, None] * omega_t_k)
    rot_v = -ft * (st[..., :, None] * omega_k + omega_t_k * s_k[..., None, :])
    v_k = v[..., :, :k]
    u_k = u[..., :, :k]
    if complement is None:
        du = u @ rot_u + (da @ v_k - u @ omega_k) * sinv_k[..., None, :]
        dv = v @ rot_v + (mT(row_sum(mT(u_k) @ da)) - v @ omega_t_k) * sinv_k[..., None, :]
    else:
        du = u @ rot_u + complement[1]
        dv = v @ rot_v + complement[2]
    ds = jnp.diagonal(omega, axis1=-2, axis2=-1)[..., :k]
    return du, ds, mT(dv)


def rank_reduce_jvp(
    u: Array,
    s: Array,
    vt: Array,
    da: Array,
    keep: Array,
    width: int | None = None,
    row_sum: Callable[[Array], Array] = same,
    rows: int | None = None,
) -> Array:
    """Tangent of ``A_k = U_K Σ_K V_Kᵀ`` from factors with ``c`` columns, K given by a mask.

    Every term has a kept index on one side, so the rule is evaluated on blocks of ``w``
    columns (``K`` lies in the first ``w``): with ``P = dA V_K``, ``Qᵀ = U_Kᵀ dA``,
    ``Ω_{:,K} = Uᵀ P`` and ``Ω_{K,:} = Qᵀ V``,

        dA_k = [U (L − Ω_{:,K}) + U_K Ω_KK + P] V_Kᵀ + U_K [(R − Ω_{K,:}) Vᵀ + Qᵀ]

    where ``L[j, i] = g_ij (σ_i Ω_ji + σ_j Ω_ij)`` and ``R[i, j] = g_ij (σ_i Ω_ij + σ_j Ω_ji)``
    (``j ∈ D``; the null-space terms folded in), O((m + n)·c·w) work instead of O((m + n)·c²).

    Args:
        u: [..., m, c] left singular vectors.
        s: [..., c] singular values, descending.
        vt: [..., c, n] right singular vectors.
        da: [..., m, n] tangent (or, the map being self-adjoint, cotangent) of the input.
        keep: [..., c] bool, the kept set K (the first k columns); the other columns form D.
        width: static bound on k (default c): K lies in the first ``width`` columns.
        row_sum, rows: as in :func:`truncated_svd_jvp` (rows split across devices).

    Returns:
        [..., m, n] tangent of the rank-k approximation.
    """
    m, n = rows or da.shape[-2], da.shape[-1]
    w = s.shape[-1] if width is None else width
    st, sq, tie, _ = stable_parts(s, m, n)
    dtype = s.dtype
    v = mT(vt)
    kept = keep[..., :w].astype(dtype)
    drop = (~keep).astype(dtype)
    u_k = u[..., :w] * kept[..., None, :]  # U_K, zero columns outside K
    v_k = v[..., :w] * kept[..., None, :]
    s_k = st[..., :w]
    p = da @ v_k  # [..., m, w]
    qt = row_sum(mT(u_k) @ da)  # [..., w, n]
    omega_cw = row_sum(mT(u) @ p)  # [..., c, w]: Ω_ji, i ∈ K
    omega_wc_t = mT(qt @ v)  # [..., c, w]: Ω_ij, i ∈ K
    # g[j, i] = σ_i / (σ_i² − σ_j²) for j ∈ D, i ∈ K (0 elsewhere); _inverse_gaps gives
    # [a, b] = 1 / (σ_b² − σ_a²).
    g = inverse_gaps(sq, sq[..., :w], tie) * s_k[..., None, :] * drop[..., :, None]
    g = g * kept[..., None, :]
    left = g * (s_k[..., None, :] * omega_cw + st[..., :, None] * omega_wc_t)  # L
    right_t = g * (s_k[..., None, :] * omega_wc_t + st[..., :, None] * omega_cw)  # Rᵀ
    x = u @ (left - omega_cw) + u_k @ omega_cw[..., :w, :] + p
    y = mT(v @ (right_t - omega_wc_t)) + qt
    return x @ mT(v_k) + u_k @ y


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def change(fn, *args):
    """Zeros shaped like ``fn(*args)`` whose derivative is that of ``fn``: a correction that
    vanishes where it is evaluated and costs nothing unless differentiated. (The zeros take one
    entry of each argument, times 0, so that under ``vmap`` they are batched as ``fn``'s
    output would be.)"""
    out = jax.eval_shape(fn, *args)
    zero = sum(jnp.ravel(x)[0] * 0 for x in args).astype(out.dtype)
    return jnp.broadcast_to(zero, out.shape)


@change.defjvp
def _change_jvp(fn, primals, tangents):
    return change(fn, *primals), jax.jvp(fn, primals, tangents)[1]


def rank_reduce_jvp_by_subspace(
    a: Array, u: Array, s: Array, vt: Array, da: Array, keep: Array, width: int
) -> Array:
    """Tangent of ``A_k`` from all the factors, written through the kept subspace, so that its
    own derivative is the second derivative of ``A_k`` (where σ_k > σ_{k+1} and σ_k > 0).

    ``A_k = P A`` with ``P = U_K U_Kᵀ``, so ``dA_k = dP A + P dA`` with ``dP = Z U_Kᵀ + U_K Zᵀ``;
    ``Z`` (in the complement of K) solves ``M_⊥ Z − Z Λ_K = −(I − P) dM U_K`` for ``M = A Aᵀ``,
    ``dM = dA Aᵀ + A dAᵀ``, ``Λ_K = U_Kᵀ M U_K``: on the discarded columns
    ``X = B ⊙ G + (E_D X − X E_K) ⊙ G`` (``B = U_Dᵀ dM U_K``, ``G_ji = 1/(σ_i² − σ_j²)``,
    ``E = Λ − diag(σ²)``); worked on the wide orientation (``Aᵀ`` for tall ``A``), ``U`` is
    square and the complement of K is spanned by D alone. The value
    is that of :func:`rank_reduce_jvp`. What differs is what a second differentiation sees:
    each σ-dependent weight acts as a matrix function of the blocks ``Λ_K``, ``Λ_D``, whose
    off-diagonal derivative a tied block has (``E``, zero where evaluated, to first order), and
    ``V Σ`` acts as ``Aᵀ U``; the factors' derivative inside a tied block is one frame's (the
    tie is decoupled), and a rule that weighs each triplet by its own σ_i would inherit it.
    The corrections cost nothing unless differentiated (:func:`change`).

    Args:
        a: [..., m, n] the matrix.
        u: [..., m, c] its left singular vectors, all of them (c = min(m, n)).
        s: [..., c] its singular values.
        vt: [..., c, n] its right singular vectors.
        da: [..., m, n] tangent of the input.
        keep: [..., c] bool, the kept set K (within the first ``width`` columns).
        width: static bound on k.

    Returns:
        [..., m, n] the tangent of the rank-k approximation.
    """
    m, n = da.shape[-2:]
    if m > n:  # A_kᵀ = (Aᵀ)_k: work where U is square and has no null space
        return mT(rank_reduce_jvp_by_subspace(mT(a), mT(vt), s, mT(u), mT(da), keep, width))
    still = jax.lax.stop_gradient
    st, sq, tie, _ = stable_parts(still(s), m, n)
    dtype = st.dtype
    kept = keep[..., :width].astype(dtype)
    drop = (~keep).astype(dtype)
    u_k = u[..., :width] * kept[..., None, :]  # [..., m, w]
    u_d = u * drop[..., None, :]  # [..., m, m]
    v = mT(still(vt))
    # Aᵀ U at the point is V Σ (taken from the factors); its derivative is that of Aᵀ U.
    r_k = v[..., :width] * (st[..., :width] * kept)[..., None, :] + change(
        lambda a, u_k: mT(a) @ u_k, a, u_k
    )
    r_d = v * (st * drop)[..., None, :] + change(lambda a, u_d: mT(a) @ u_d, a, u_d)
    gram = lambda a, x: mT(x) @ a @ (mT(a) @ x)
    e_k = change(gram, a, u_k)  # [..., w, w]
    e_d = change(gram, a, u_d)  # [..., m, m]
    # G[j, i] = 1 / (σ_i² − σ_j²) for j ∈ D, i ∈ K; _inverse_gaps gives [a, b] = 1/(σ_b² − σ_a²).
    g = inverse_gaps(sq, sq[..., :width], tie) * drop[..., :, None] * kept[..., None, :]
    qt = mT(u_k) @ da  # [..., w, n]
    x = (mT(u_d) @ (da @ r_k) + mT(r_d) @ mT(qt)) * g  # [..., m, w]
    x = x + (e_d @ x - x @ e_k) * g
    # dA_k = Z R_Kᵀ + U_K (Zᵀ A + U_Kᵀ dA) with Z = U_D X (U is square: no null space).
    return (u_d @ x) @ mT(r_k) + u_k @ (mT(x) @ mT(r_d) + qt)
