"""Exact derivatives without the full SVD: the coupling with the discarded spectrum by one solve.

For each kept triplet i, the exact derivatives (:mod:`rrae_fast.svd._formulas`) need

    x_i = R_i (σ_i f_i + A g_i),  R_i = Q_U (σ_i² I − A Aᵀ)^{-1} Q_U,   f_i = Q_U dA v_i,
    y_i = S_i (σ_i g_i + Aᵀ f_i), S_i = Q_V (σ_i² I − Aᵀ A)^{-1} Q_V,   g_i = Q_V dAᵀ u_i,

with Q_U = I − U Uᵀ and Q_V = I − V Vᵀ over the kept vectors. Both are the halves of one solve
with the augmented (Jordan–Wielandt) operator of the deflated matrix A⊥ = A − U Σ Vᵀ:

    M_i [x; y] = [σ_i x − A⊥ y;  σ_i y − A⊥ᵀ x] = [f_i; g_i]

(eliminating y gives (σ_i² I − A⊥ A⊥ᵀ) x = σ_i f_i + A⊥ g_i, and A⊥ acts as A on the
complements). M_i is symmetric with eigenvalues σ_i ± σ_j(A⊥) ≥ σ_i − σ_{k+1} > 0, so
conjugate gradients solve it, all kept columns as one block with per-column step sizes. An
iteration costs one product with A and one with Aᵀ (the two normal-equation systems would cost
two of each, and two more to form their right-hand sides); CG reduces the error by
2·((√κ − 1)/(√κ + 1))^t with κ = (σ_i + σ_{k+1}) / (σ_i − σ_{k+1}), about (σ_{k+1} / 2σ_i)^t for
a large gap: RRAE latents, where σ_{k+1}/σ_k is small, need two or three iterations.

Blocks are held in row form ([..., c, m] and [..., c, n], one row per kept triplet): every
product with A is then a row-major block times A or Aᵀ, which XLA's CPU dot runs at full speed
(a transposed A as the left operand is ~1.5x slower), and no transposed copy of A is made.

CG stops at a relative residual of ``CG_RTOL`` (dtype-tied: 1e-2·√ε) within ``CG_MAX_ITERS``.
Before solving, the iterations CG will need are predicted from σ_k and an estimate of σ_{k+1}
(block Krylov on A⊥, :func:`cg_iterations_needed`); where the solves would cost more than the
full thin SVD (a flat spectrum, no gap after σ_k; :func:`worth_solving`), the planner
(:mod:`rrae_fast.svd._plan`) takes the full-SVD route instead. When CG does not get there
anyway (a tie or near-tie across the cut) the solve is done from a full thin SVD with the same
stabilisation as the dense rule (ties across the cut decoupled), so the result is never a
silently unconverged one. The solve sits inside ``jax.lax.custom_linear_solve``: the rule stays
linear in the tangent, reverse mode follows by transposition (the operator is symmetric), and
the solver itself is never differentiated.

Small float32 matrices on CPU (where the forward pass takes the Gram path; the planner's
:func:`rrae_fast.svd._plan.prefer_gram_solves`) skip CG and its prediction: with p = min(m, n)
the solve is eliminated onto the short side (for m ≥ n, y_i = S_i (σ_i g_i + A⊥ᵀ f_i) and
x_i = (f_i + A⊥ y_i) / σ_i; for m < n the mirror image), and the native kernel
``rrae_fast_shifted_gram_solve`` solves all k systems (σ_i² I − PAᵀAP) y_i = c_i, P = I − V Vᵀ,
exactly: one float64 Gram matrix, one tridiagonal reduction and k tridiagonal factorisations,
O(m·n·p + p³ + k·p²) against a full SVD's larger constant and its eigenvectors of the discarded
spectrum (which, clustered as the noise of an RRAE latent, are the expensive part). The kernel
checks positive definiteness with a margin of twice the dense rule's tie threshold
(σ_k² − σ_{k+1}² > 2τ·σ_1²); the planner checks that gap beforehand, from a forward pass at
k + 1 (:func:`rrae_fast.svd._spectrum.gap_above_ties`), so the kernel may try conjugate
gradients first, and where the kernel refuses anyway the rows come from the full thin SVD.
``rank_reduce`` takes a shorter form of the same solve (:func:`rank_reduce_tangent_by_gram`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from . import _native
from ._spectrum import (
    inverse_gaps,
    keep_mask,
    mT,
    same,
    stable_parts,
    stable_singular_values,
    tolerances,
)

CG_MAX_ITERS = 200
#: Largest min(m, n) whose derivative's solves go through the projected Gram matrix.
GRAM_SOLVE_MAX_SIDE = 256


def cg_rtol(dtype) -> float:
    return 1e-2 * float(jnp.finfo(dtype).eps) ** 0.5


def _deflated(
    a: Array, ut: Array, st: Array, vt: Array, rows: Array, left: bool, row_sum=same
) -> Array:
    """Rows of (A⊥ᵀ x)ᵀ for rows [..., c, m] (left) or of (A⊥ y)ᵀ for rows [..., c, n].
    ``row_sum`` is applied to the products that sum over the rows of ``a`` (a ``psum`` where
    they are split across devices: one all-reduce for both)."""
    if left:
        image, along_u = row_sum((rows @ a, rows @ mT(ut)))
        return image - (along_u * st[..., None, :]) @ vt
    return rows @ mT(a) - ((rows @ mT(vt)) * st[..., None, :]) @ ut


def _row_dots(x: tuple[Array, ...], y: tuple[Array, ...]) -> Array:
    """[..., c] inner products of matching rows, summed over the blocks of a pair."""
    return cast(Array, sum(jnp.sum(p * q, axis=-1) for p, q in zip(x, y, strict=True)))


def _block_cg(
    matvec, b: tuple[Array, ...], rtol: float, agree=same
) -> tuple[tuple[Array, ...], Array]:
    """Solves matvec(X) = B row by row (SPD per row); returns (X, converged).

    ``agree`` makes a flag the same on every device that runs the loop, where the operator's
    products cross devices (the loop's exit and the result's flag: devices that left the loop
    at different iterations would wait for each other at the next collective); the identity
    by default."""
    target = (rtol**2) * _row_dots(b, b)

    def scale(x, c):
        return tuple(p * c[..., :, None] for p in x)

    def add(x, y):
        return tuple(p + q for p, q in zip(x, y, strict=True))

    def go_on(rs, it):
        return agree((it < CG_MAX_ITERS) & jnp.any(rs > target))

    def body(state):
        x, r, p, rs, it, _ = state
        ap = matvec(p)
        pap = _row_dots(p, ap)
        alpha = jnp.where(pap > 0, rs / jnp.where(pap > 0, pap, 1), 0)
        x = add(x, scale(p, alpha))
        r = add(r, scale(ap, -alpha))
        rs_new = _row_dots(r, r)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1), 0)
        return x, r, add(r, scale(p, beta)), rs_new, it + 1, go_on(rs_new, it + 1)

    zero = tuple(jnp.zeros_like(p) for p in b)
    rs = _row_dots(b, b)
    state = (zero, b, b, rs, 0, go_on(rs, 0))
    x, _, _, rs, _, _ = jax.lax.while_loop(lambda state: state[-1], body, state)
    return x, agree(jnp.all(rs <= target))


def _full_svd_gaps(full_svd, k: Array, width: int, m: int, n: int):
    """``full_svd()``'s thin SVD ``(u, st, vt)`` (σ stabilised) and ``gaps`` [..., width, r]:
    entry [i, j] is 1 / (σ_i² − σ_j²) for i kept and j discarded, 0 elsewhere and on ties (as
    the dense rule)."""
    u, s, vt = full_svd()
    st, sq, tie, _ = stable_parts(s, m, n)
    drop = (~keep_mask(k, s.shape[-1])).astype(s.dtype)
    gaps = -inverse_gaps(sq[..., :width], sq, tie) * drop[..., None, :]
    return u, st, vt, gaps


def _dense_solve(a: Array, full_svd, k: Array, width: int, f: Array, g: Array):
    """The rows of x and y from a full thin SVD, stabilised as the dense rule."""
    u, st, vt, gaps = _full_svd_gaps(full_svd, k, width, *a.shape[-2:])
    phi, gam = f @ u, g @ mT(vt)  # u_jᵀ f_i, v_jᵀ g_i
    s_i, s_j = st[..., :width, None], st[..., None, :]
    inv = jnp.where(s_i > 0, 1 / jnp.where(s_i > 0, s_i, 1), 0)
    # On the discarded pair (u_j, v_j) M_i is [[σ_i, −σ_j], [−σ_j, σ_i]]; off all of them, σ_i.
    x = (gaps * (s_i * phi + s_j * gam)) @ mT(u) + (f - phi @ mT(u)) * inv
    y = (gaps * (s_i * gam + s_j * phi)) @ vt + (g - gam @ vt) * inv
    return x, y


def shifted_gram_solve(
    a: Array, basis: Array, s: Array, rhs: Array, margin: float, gap_checked: bool = False
) -> tuple[Array, Array]:
    """The native solves ``(s_j² I − P Yᵀ Y P) z_j = r_j`` (``csrc/cpu/shifted_gram_solve.h``).

    Args:
        a: [..., m, n] with p = min(m, n) ≤ GRAM_SOLVE_MAX_SIDE; Y = A (m ≥ n) or Aᵀ.
        basis: [..., c, p] orthonormal rows B, P = I − BᵀB.
        s: [..., c] shifts' square roots (rows with s_j = 0 give z_j = 0).
        rhs: [..., c, p] right-hand sides r_j as rows.
        margin: the systems count as solvable when every eigenvalue of P Yᵀ Y P lies at least
            margin·max s_j² below the smallest positive s_j².
        gap_checked: the caller has made sure of that gap; the kernel may then try matrix-free
            conjugate gradients first (to a relative residual of 1e-12; it falls back to the
            exact tridiagonal solve where they do not converge within their budget).

    Returns:
        ``(z, ok)``: [..., c, p] solutions as rows and [...] bool, False where the check failed
        (z is then unusable). CPU only. :func:`shifted_gram_solve_code` gives the kernel's
        code instead of ok (0 refused, 1 solved by the tridiagonal form, 2 by CG).
    """
    z, code = shifted_gram_solve_code(a, basis, s, rhs, margin, gap_checked)
    return z, code != 0


def shifted_gram_solve_code(
    a: Array, basis: Array, s: Array, rhs: Array, margin: float, gap_checked: bool = False
) -> tuple[Array, Array]:
    """:func:`shifted_gram_solve` with the kernel's int32 code in place of ok."""
    out = (
        jax.ShapeDtypeStruct(rhs.shape, a.dtype),
        jax.ShapeDtypeStruct(a.shape[:-2], jnp.int32),
    )
    call = jax.ffi.ffi_call(_native.SHIFTED_GRAM_SOLVE_TARGET, out, vmap_method="broadcast_all")
    z, code = call(a, basis, s, rhs, margin=np.float64(margin), gap_checked=bool(gap_checked))
    return z, code


def _gram_solve(
    a: Array, u: Array, st: Array, vt: Array, f: Array, g: Array, gap_checked: bool = False
) -> tuple[Array, Array, Array]:
    """The rows of x and y from the short side's projected Gram matrix, and the kernel's check.

    f, g: [..., c, m] and [..., c, n] right-hand sides as rows (zero beyond k, as st).
    gap_checked: as :func:`shifted_gram_solve` (the caller has checked it: CG may go first).
    """
    m, n = a.shape[-2:]
    inv = jnp.where(st > 0, 1 / jnp.where(st > 0, st, 1), 0)[..., :, None]
    margin = 2 * tolerances(a.dtype, m, n)[1]
    if m >= n:  # y on the short side: (σ² − A⊥ᵀA⊥) y = σ g + A⊥ᵀ f, then x = (f + A⊥ y) / σ
        atf = f @ a
        rhs = st[..., :, None] * g + atf - (atf @ mT(vt)) @ vt
        y, ok = shifted_gram_solve(a, vt, st, rhs, margin, gap_checked)
        x = (f + y @ mT(a)) * inv
    else:  # the mirror image: x on the short side
        ag = g @ mT(a)
        rhs = st[..., :, None] * f + ag - (ag @ u) @ mT(u)
        x, ok = shifted_gram_solve(a, mT(u), st, rhs, margin, gap_checked)
        y = (g + x @ a) * inv
    return x, y, jnp.all(ok)


@jax.custom_batching.custom_vmap
def every_member(flag: Array) -> Array:
    """``flag`` (a scalar bool); under ``vmap``, one unbatched flag: whether it holds for every
    member. A condition on it stays a ``lax.cond`` (a batched one turns into a select that runs
    both branches: the full-SVD fallback for every member). Only for conditions where the
    False branch is correct for every member too."""
    return flag


@every_member.def_vmap
def _every_member_vmap(axis_size, in_batched, flag):
    del axis_size
    return (jnp.all(flag) if in_batched[0] else flag), False


def _dense_short_side(a: Array, full_svd, k: Array, width: int, rhs: Array) -> Array:
    """Rows y_i = Σ_{j discarded} v_j (v_jᵀ c_i) / (σ_i² − σ_j²) from a full thin SVD (m ≥ n),
    ties masked as in the dense rule: the solves of rank_reduce_tangent_by_gram where the
    kernel refused them."""
    _, _, vt, gaps = _full_svd_gaps(full_svd, k, width, *a.shape[-2:])
    return (gaps * (rhs @ mT(vt))) @ vt


def rank_reduce_tangent_by_gram(
    a: Array, u: Array, s: Array, vt: Array, k: Array, da: Array, full_svd
) -> Array:
    """Tangent of ``A_k`` by the Gram solves, for small matrices.

    For m ≥ n (m < n by transposition), the rows y_i of the short side's block solve
    ``(σ_i² I − H) y_i = c_i`` with ``H = Q_V Aᵀ A Q_V`` and
    ``c_i = Q_V (σ_i dAᵀ u_i + Aᵀ dA v_i)``; then ``x_i = (Q_U dA v_i + A y_i) / σ_i`` and

        dA_k = U Ω Vᵀ + X Σ Vᵀ + U Σ Yᵀ = (dA V + A Yᵀ) Vᵀ + U Σ Yᵀ

    (``U Ω Vᵀ + Q_U dA P_V = dA P_V``): four products of width k besides the solve. The solve
    sits in ``custom_linear_solve`` with its operator, so reverse mode and higher derivatives
    follow. The caller has checked the gap (:func:`rrae_fast.svd._spectrum.gap_above_ties`); the
    kernel checks it again
    with half the margin, and where it refuses the rows come from a full SVD.

    Args:
        a: [..., m, n], ``min(m, n) ≤ GRAM_SOLVE_MAX_SIDE``.
        u, s, vt: [..., m, w], [..., w], [..., w, n] the top factors, zero beyond k.
        k: [...] int32.
        da: [..., m, n] the tangent.
        full_svd: a function of no arguments that returns the full thin SVD ``(u, s, vt)`` of
            ``a`` (all ``min(m, n)`` columns), for the rows the kernel refuses.

    Returns:
        [..., m, n] the tangent of the rank-k approximation.
    """
    m, n = a.shape[-2:]
    if m < n:

        def transposed():  # the factors of Aᵀ
            u_all, s_all, vt_all = full_svd()
            return mT(vt_all), s_all, mT(u_all)

        return mT(rank_reduce_tangent_by_gram(mT(a), mT(vt), s, mT(u), k, mT(da), transposed))
    st = stable_singular_values(s, m, n)[..., :, None]
    v = mT(vt)

    def complement(rows):  # Q_V on rows
        return rows - (rows @ v) @ vt

    c = complement(st * (mT(u) @ da) + (vt @ mT(da)) @ a)

    def matvec(y):
        h = (complement(y) @ mT(a)) @ a
        return st * st * y - complement(h)

    margin = tolerances(a.dtype, m, n)[1]

    def solve(_, rhs):
        z, ok = shifted_gram_solve(a, vt, st[..., 0], rhs, margin, gap_checked=True)
        dense = lambda: _dense_short_side(a, full_svd, k, s.shape[-1], rhs)
        return jax.lax.cond(every_member(jnp.all(ok)), lambda: z, dense)

    y = jax.lax.custom_linear_solve(matvec, c, solve, symmetric=True)
    return (da @ v + a @ mT(y)) @ vt + u @ (st * y)


#: Depth (blocks) and block width of the Krylov space that estimates σ_{k+1}.
GAP_STEPS = 6
GAP_WIDTH = 4


def _orthonormal_rows(x: Array) -> Array:
    """[..., w, w] C with C x of orthonormal rows spanning x's numerically independent rows
    (the others map to zero), from the eigendecomposition of the Gram matrix x xᵀ."""
    lam, w = jnp.linalg.eigh(x @ mT(x))
    ok = lam > jnp.finfo(x.dtype).eps * lam[..., -1:] * x.shape[-2]
    return mT(w * jnp.where(ok, 1 / jnp.sqrt(jnp.where(ok, lam, 1)), 0)[..., None, :])


def cg_iterations_needed(a: Array, u: Array, s: Array, vt: Array, k: Array) -> Array:
    """[...] predicted CG iterations for the worst-conditioned kept system (i = k).

    σ_{k+1} is the largest Ritz value of A⊥ on the block Krylov space of A⊥ᵀ A⊥ from GAP_WIDTH
    fixed random rows, GAP_STEPS blocks deep (a Lanczos-type estimate: on a flat spectrum much
    closer than as many power steps; 2·GAP_STEPS − 1 products with A of width GAP_WIDTH); the
    estimate is a lower bound, so the prediction errs towards solving (CG still falls back
    when it does not converge). The system for σ_k has condition number
    κ = (σ_k + σ_{k+1}) / (σ_k − σ_{k+1}), and CG reduces its error by 2·((√κ − 1)/(√κ + 1))^t.
    """
    m, n = a.shape[-2:]
    st = stable_singular_values(s, m, n)
    ut = mT(u)

    def step(x, _):  # a block of the Krylov space (orthonormal rows) and its image under A⊥
        y = _deflated(a, ut, st, vt, x, False)
        z = _deflated(a, ut, st, vt, y, True)
        for _ in range(2):  # twice, as CholeskyQR2
            z = _orthonormal_rows(z) @ z
        return z, (x, y)

    x = jax.random.normal(jax.random.key(0), (*a.shape[:-2], GAP_WIDTH, n), a.dtype)
    x = _orthonormal_rows(x) @ x
    last, (xs, ys) = jax.lax.scan(step, x, None, length=GAP_STEPS - 1)  # [GAP_STEPS − 1, ...]
    krylov = jnp.concatenate([*jnp.unstack(xs), last], axis=-2)
    image = jnp.concatenate([*jnp.unstack(ys), _deflated(a, ut, st, vt, last, False)], axis=-2)
    # Rayleigh–Ritz on the span of the blocks: with C making C·krylov orthonormal, the Ritz
    # values are the singular values of C·image.
    c = _orthonormal_rows(krylov)
    est = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(c @ (image @ mT(image)) @ mT(c))[..., -1], 0))
    s_k = jnp.take_along_axis(s, (k - 1)[..., None], axis=-1)[..., 0]
    return cg_iterations_for(est, s_k, a.dtype)


def cg_iterations_for(next_s: Array, s_k: Array, dtype, normal: bool = False) -> Array:
    """[...] CG iterations predicted for the worst-conditioned kept system from σ_k and (an
    estimate of) σ_{k+1}: with κ = (σ_k + σ_{k+1}) / (σ_k − σ_{k+1}) (the augmented operator;
    ``normal``: κ = σ_k² / (σ_k² − σ_{k+1}²), the system of one side,
    :func:`coupling_by_columns`), CG reduces the error by 2·((√κ − 1)/(√κ + 1))^t; at least
    1, ∞ where σ_{k+1} ≥ σ_k (or σ_k = 0)."""
    ratio = jnp.where(s_k > 0, next_s / jnp.where(s_k > 0, s_k, 1), jnp.inf)
    r = jnp.minimum(ratio, 1)
    if normal:
        kappa = jnp.where(ratio < 1, 1 / (1 - r * r), jnp.inf)
    else:
        kappa = jnp.where(ratio < 1, (1 + r) / (1 - r), jnp.inf)
    q = (jnp.sqrt(kappa) - 1) / (jnp.sqrt(kappa) + 1)
    needed = jnp.log(cg_rtol(dtype) / 2) / jnp.log(jnp.where(q > 0, q, 0.5))
    return jnp.where(q > 0, jnp.maximum(needed, 1), 1)


def worth_solving(a: Array, u: Array, s: Array, vt: Array, k: Array) -> Array:
    """Whether the solves are cheaper than a full thin SVD, for every batch member.

    CG costs 4·m·n·k flops per iteration (one product of width k per side); a full thin SVD
    about 30·m·n·min(m, n) at a better flop rate. Solve when iterations·4·k <= 10·min(m, n)
    and the predicted iterations leave CG half its cap (the prediction is optimistic).
    """
    r = min(a.shape[-2:])
    needed = cg_iterations_needed(a, u, s, vt, k)
    return jnp.all((needed * 4 * k.astype(a.dtype) <= 10 * r) & (needed <= CG_MAX_ITERS / 2))


def _right_hand_sides(a, u, s, vt, k, da, row_sum, m: int):
    """What the solves start from: σ stabilised (for the whole matrix's ``m`` rows), the kept
    rows' mask [..., c, 1], Uᵀ, ``Ω = Uᵀ dA V`` and the rows of ``f_i = Q_U dA v_i`` and
    ``g_i = Q_V dAᵀ u_i`` (``row_sum`` on the product over the rows of ``da``)."""
    st = stable_singular_values(s, m, a.shape[-1])
    keep = keep_mask(k, s.shape[-1])[..., :, None]
    ut = mT(u)
    pr = vt @ mT(da)  # rows (dA v_i)ᵀ
    qr = row_sum(ut @ da)  # rows (dAᵀ u_i)ᵀ
    omega = qr @ mT(vt)
    f = pr - mT(omega) @ ut  # rows of Q_U dA v_i
    g = qr - omega @ vt  # rows of Q_V dAᵀ u_i
    return st, keep, ut, omega, f, g


def coupling(
    a: Array,
    u: Array,
    s: Array,
    vt: Array,
    k: Array,
    da: Array,
    full_svd,
    solver: str = "cg",
    gap_checked: bool = False,
) -> tuple[Array, Array, Array]:
    """``Ω = Uᵀ dA V`` and the rows of the solved blocks ``X = [x_i]``, ``Y = [y_i]``.

    Args:
        a: [..., m, n] the input.
        u, s, vt: [..., m, c], [..., c], [..., c, n] its top factors (zero beyond k).
        k: [...] int32, the number of kept columns.
        da: [..., m, n] the tangent.
        full_svd: a function of no arguments that returns the full thin SVD ``(u, s, vt)`` of
            ``a``: the blocks come from it where the solves do not converge (or the Gram
            kernel refuses them), stabilised as the dense rule.
        solver: ``"cg"`` (block CG on the augmented operator) or ``"gram"`` (the projected
            Gram matrix of the short side, ``min(m, n) ≤ GRAM_SOLVE_MAX_SIDE``; the CPU kernel,
            so only on CPU).
        gap_checked: (``"gram"``) the caller has checked σ_k² − σ_{k+1}²
            (:func:`rrae_fast.svd._spectrum.gap_above_ties`), so the kernel may try conjugate
            gradients first.

    Returns:
        ``(omega, xr, yr)`` of shapes [..., c, c], [..., c, m] (row i is x_iᵀ) and [..., c, n]
        (row i is y_iᵀ); rows beyond k are zero.
    """
    width = s.shape[-1]
    st, keep, ut, omega, f, g = _right_hand_sides(a, u, s, vt, k, da, same, a.shape[-2])
    zero = jnp.zeros((), a.dtype)
    shift = jnp.where(keep, st[..., :, None], jnp.ones((), a.dtype))

    def matvec(z):
        x, y = z
        return (
            x * shift - _deflated(a, ut, st, vt, y, False),
            y * shift - _deflated(a, ut, st, vt, x, True),
        )

    def solve(_, rhs):
        rhs = tuple(jnp.where(keep, p, zero) for p in rhs)  # rows beyond k stay zero
        dense = lambda: _dense_solve(a, full_svd, k, width, *rhs)
        if solver == "gram":
            x, y, ok = _gram_solve(a, u, st, vt, *rhs, gap_checked)
            return jax.lax.cond(every_member(ok), lambda: (x, y), dense)
        x, converged = _block_cg(matvec, rhs, cg_rtol(a.dtype))
        return jax.lax.cond(every_member(converged), lambda: x, dense)

    x, y = jax.lax.custom_linear_solve(matvec, (f, g), solve, symmetric=True)
    # Back onto the complements (A⊥ leaves a trace of the forward pass's residual along U, V).
    x = x - (x @ u) @ ut
    y = y - (y @ mT(vt)) @ vt
    return omega, x, y


class RowSplit(NamedTuple):
    """How the rows of the operand are split across devices, for :func:`coupling_by_columns`
    (:mod:`rrae_fast.svd._sharded` builds it)."""

    #: Applied to every product that sums over the rows (a ``psum``; tuples in one go).
    row_sum: Callable
    #: The whole matrix's number of rows.
    rows: int
    #: Makes a scalar flag the same on every device.
    agree: Callable
    #: Types a value computed alike on every device as replicated (the solve's result).
    replicated: Callable


def coupling_by_columns(
    a: Array,
    u: Array,
    s: Array,
    vt: Array,
    k: Array,
    da: Array,
    full_svd,
    split: RowSplit | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`coupling` with the solve eliminated onto the column side, for a matrix whose rows
    may be split across devices (``split``; :mod:`rrae_fast.svd._sharded`).

    Eliminating x from the augmented system leaves, for each kept i,

        (σ_i² I − A⊥ᵀ A⊥) y_i = c_i = σ_i g_i + A⊥ᵀ f_i,   then   x_i = (f_i + A⊥ y_i) / σ_i.

    The system is n × n whatever the split of the rows, so CG's vectors are the same on every
    device and only its products with A⊥ᵀ cross devices (one all-reduce of ``c × (n + c)``
    numbers per iteration; the product with A⊥ is local). It is better conditioned than the
    augmented one (κ = σ_i² / (σ_i² − σ_{k+1}²) against (σ_i + σ_{k+1}) / (σ_i − σ_{k+1}))
    at the same two products per iteration, plus one with A⊥ to recover x. Where CG does not
    converge, y comes from the full thin SVD, stabilised as the dense rule (x follows from y
    as above; at a tie across the cut, where the dense rule drops the coupling, that x keeps
    f's part, but such a spectrum is never sent to the solves: their predicted iterations are
    unbounded).

    Arguments and returns as :func:`coupling` (``"cg"``); with ``split``, ``a``, ``u``, ``da``
    and the returned ``xr`` are one device's rows (``xr`` [..., c, m_d]).
    """
    row_sum, m, agree, replicated = split or RowSplit(same, a.shape[-2], same, same)
    n = a.shape[-1]
    width = s.shape[-1]
    st, keep, ut, omega, f, g = _right_hand_sides(a, u, s, vt, k, da, row_sum, m)
    inv = jnp.where(keep & (st[..., :, None] > 0), 1 / jnp.where(st > 0, st, 1)[..., :, None], 0)
    shift = jnp.where(keep, st[..., :, None] ** 2, jnp.ones((), a.dtype))

    def normal(y):  # rows of (A⊥ᵀ A⊥ y)ᵀ
        return _deflated(a, ut, st, vt, _deflated(a, ut, st, vt, y, False), True, row_sum)

    def matvec(y):
        return y * shift - normal(y)

    def dense(rhs):  # y_i = Σ_j v_j (v_jᵀ c_i) / (σ_i² − σ_j²) over the discarded j (ties
        _, _, vt_all, gaps = _full_svd_gaps(full_svd, k, width, m, n)  # masked), and c_i's
        gam = rhs @ mT(vt_all)  # part off the thin V over σ_i²
        return (gaps * gam) @ vt_all + (rhs - gam @ vt_all) * inv * inv

    def solve(_, rhs):
        rhs = jnp.where(keep, rhs, jnp.zeros((), a.dtype))  # rows beyond k stay zero
        (y,), converged = _block_cg(lambda z: (matvec(z[0]),), (rhs,), cg_rtol(a.dtype), agree)
        return jax.lax.cond(every_member(converged), lambda: y, lambda: dense(rhs))

    c = st[..., :, None] * g + _deflated(a, ut, st, vt, f, True, row_sum)
    # The solve closes over this device's rows, so JAX types its result as varying across
    # devices although every device computes the same: typed back as replicated before use.
    y = replicated(jax.lax.custom_linear_solve(matvec, c, solve, symmetric=True))
    x = (f + _deflated(a, ut, st, vt, y, False)) * inv
    # Back onto the complements (A⊥ leaves a trace of the forward pass's residual along U, V).
    x = x - row_sum(x @ u) @ ut
    y = y - (y @ mT(vt)) @ vt
    return omega, x, y


def rank_reduce_tangent_by_cg(
    a: Array,
    u: Array,
    s: Array,
    vt: Array,
    k: Array,
    da: Array,
    full_svd,
    blocks=None,
    rows: int | None = None,
) -> Array:
    """Tangent of ``A_k`` from the blocks of :func:`coupling` (CG):
    ``dA_k = U Ω Vᵀ + X Σ Vᵀ + U Σ Yᵀ``, with X and Y as rows: two products of width k.
    Arguments as :func:`coupling`; ``blocks``: ``(omega, xr, yr)`` computed already (e.g. by
    :func:`coupling_by_columns` on one device's rows, ``rows`` then the whole matrix's);
    returns [..., m, n] (this device's rows, where split)."""
    omega, x, y = coupling(a, u, s, vt, k, da, full_svd, "cg") if blocks is None else blocks
    st = stable_singular_values(s, rows or a.shape[-2], a.shape[-1])[..., :, None]
    return u @ (omega @ vt + st * y) + mT(st * x) @ vt
