"""Exact derivatives without the full SVD: the coupling with the discarded spectrum by solves.

For each kept triplet i, the derivatives of the project's gradient notes need

    x_i = R_i b_i,  R_i = Q_U (σ_i² I − A Aᵀ)^{-1} Q_U,   b_i = σ_i dA v_i + A dAᵀ u_i
    y_i = S_i c_i,  S_i = Q_V (σ_i² I − Aᵀ A)^{-1} Q_V,   c_i = σ_i dAᵀ u_i + Aᵀ dA v_i

with Q_U = I − U Uᵀ and Q_V = I − V Vᵀ over the kept vectors. On the range of Q_U the operator
σ_i² I − A Aᵀ has eigenvalues σ_i² − σ_j² ≥ σ_i² − σ_{k+1}² > 0, so each column is a symmetric
positive definite system, solved by conjugate gradients on the whole m x k block at once (each
column its own step sizes), two products with A per iteration and no m x m matrix formed. CG
converges like (√κ − 1)/(√κ + 1) per iteration with κ = σ_i²/(σ_i² − σ_{k+1}²); RRAE
latents, where σ_{k+1}/σ_k is small, need a handful.

CG stops at a relative residual of ``CG_RTOL`` (dtype-tied: 1e-2·√ε) within ``CG_MAX_ITERS``.
Before solving, the iterations CG will need are predicted from σ_k and an estimate of σ_{k+1}
(a few power steps on the deflated matrix, :func:`cg_iterations_needed`); where the solves
would cost more than the full thin SVD (a flat spectrum, no gap after σ_k), the full-SVD route
below is taken directly (:func:`worth_solving`). When CG does not get there anyway (a tie or
near-tie across the cut, or singular values below the zero threshold among the kept ones) the
solve is done instead from a full thin SVD with the same stabilisation as the dense rule (ties
across the cut decoupled), so the result is never a silently unconverged one. The solves sit
inside ``jax.lax.custom_linear_solve``: the rule stays linear in the tangent, reverse mode
follows by transposition (the operator is symmetric), and the solver itself is never
differentiated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from . import _forward, _svd_grad

CG_MAX_ITERS = 100


def cg_rtol(dtype) -> float:
    return 1e-2 * float(jnp.finfo(dtype).eps) ** 0.5


def _mT(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def transposed(a: Array) -> Array:
    """[..., n, m] aᵀ as an array of its own (a copy in row-major layout).

    XLA's CPU dot is several times slower with a transposed operand than with a row-major one
    (4096 x 4096 times a block of 4 / 16 / 256 columns: ~29 / 29 / 65 ms against 3 / 3 / 44 ms),
    so the products with aᵀ of the estimate and the solves below use a copy made once (~38 ms at
    4096 x 4096, an extra m x n array while the derivative runs). The barrier keeps XLA from
    folding the copy back into the products.
    """
    return jax.lax.optimization_barrier(_mT(a))


def _project_out(w: Array, x: Array) -> Array:
    """(I − W Wᵀ) X."""
    return x - w @ (_mT(w) @ x)


def _block_cg(matvec, b: Array, rtol: float) -> tuple[Array, Array]:
    """Solves matvec(X) = B column by column (SPD per column); returns (X, converged)."""
    target = (rtol**2) * jnp.sum(b * b, axis=-2)

    def cond(state):
        _, _, _, rs, it = state
        return (it < CG_MAX_ITERS) & jnp.any(rs > target)

    def body(state):
        x, r, p, rs, it = state
        ap = matvec(p)
        pap = jnp.sum(p * ap, axis=-2)
        alpha = jnp.where(pap > 0, rs / jnp.where(pap > 0, pap, 1), 0)
        x = x + p * alpha[..., None, :]
        r = r - ap * alpha[..., None, :]
        rs_new = jnp.sum(r * r, axis=-2)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1), 0)
        return x, r, r + p * beta[..., None, :], rs_new, it + 1

    rs0 = jnp.sum(b * b, axis=-2)
    x, _, _, rs, _ = jax.lax.while_loop(cond, body, (jnp.zeros_like(b), b, b, rs0, 0))
    return x, jnp.all(rs <= target)


def _dense_resolvent(a: Array, k: Array, width: int, rhs: Array, left: bool) -> Array:
    """R_i (left) or S_i applied to the columns of rhs from a full thin SVD, stabilised."""
    m, n = a.shape[-2:]
    u, s, vt = _forward.factors(a, jnp.full(a.shape[:-2], min(m, n), jnp.int32), min(m, n))
    w = u if left else _mT(vt)  # the side's singular vectors, all r of them
    st, sq, tie, _ = _svd_grad._stable_parts(s, m, n)
    keep = _forward.keep_mask(k, s.shape[-1])
    drop = (~keep).astype(a.dtype)
    # [j, i]: 1 / (σ_i² − σ_j²) for j discarded, i kept; 0 on ties (as the dense rule).
    gaps = _svd_grad._inverse_gaps(sq, sq[..., :width], tie) * drop[..., :, None]
    inv_sq = jnp.where(st > 0, 1 / jnp.where(st > 0, sq, 1), 0)[..., :width]
    coeff = (_mT(w) @ rhs) * gaps  # u_jᵀ b_i / (σ_i² − σ_j²) over discarded j
    return w @ coeff + _project_out(w, rhs) * inv_sq[..., None, :]


def stable_singular_values(s: Array, m: int, n: int) -> Array:
    """σ with values below the zero threshold set to 0, as in the dense rule."""
    return _svd_grad._stable_parts(s, m, n)[0]


def all_kept_nonzero(s: Array, k: Array, m: int, n: int) -> Array:
    """Whether every kept σ is above the zero threshold; otherwise a kept system is singular
    and the dense rule applies."""
    keep = _forward.keep_mask(k, s.shape[-1])
    return jnp.all(jnp.where(keep, stable_singular_values(s, m, n) > 0, True))


#: Power steps of the estimate of σ_{k+1} (block of GAP_WIDTH columns).
GAP_ITERS = 8
GAP_WIDTH = 4


def cg_iterations_needed(
    a: Array, u: Array, s: Array, vt: Array, k: Array, at: Array | None = None
) -> Array:
    """[...] predicted CG iterations for the worst-conditioned kept system (i = k).

    σ_{k+1} is estimated by GAP_ITERS block power steps on (I − UUᵀ) A (I − VVᵀ) from a fixed
    random start; the estimate is a lower bound, so the prediction errs towards solving (CG
    still falls back when it does not converge). The system for σ_k has condition number
    κ = σ_k² / (σ_k² − σ_{k+1}²), and CG reduces its error by 2·((√κ − 1)/(√κ + 1))^t.
    """
    n = a.shape[-1]
    v = _mT(vt)
    if at is None:
        at = transposed(a)
    tiny = jnp.finfo(a.dtype).tiny
    x = jax.random.normal(jax.random.key(0), (*a.shape[:-2], n, GAP_WIDTH), a.dtype)

    def deflated(x):
        return _project_out(u, a @ _project_out(v, x))

    def step(_, x):
        x = _project_out(v, at @ deflated(x))
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-2, keepdims=True), tiny)

    x = jax.lax.fori_loop(0, GAP_ITERS, step, x / jnp.linalg.norm(x, axis=-2, keepdims=True))
    est = jnp.max(jnp.linalg.norm(deflated(x), axis=-2), axis=-1)
    s_k = jnp.take_along_axis(s, (k - 1)[..., None], axis=-1)[..., 0]
    ratio = jnp.where(s_k > 0, est / jnp.where(s_k > 0, s_k, 1), jnp.inf)
    kappa = jnp.where(ratio < 1, 1 / (1 - jnp.minimum(ratio, 1) ** 2), jnp.inf)
    q = (jnp.sqrt(kappa) - 1) / (jnp.sqrt(kappa) + 1)
    needed = jnp.log(cg_rtol(a.dtype) / 2) / jnp.log(jnp.where(q > 0, q, 0.5))
    return jnp.where(q > 0, jnp.maximum(needed, 1), 1)


def worth_solving(
    a: Array, u: Array, s: Array, vt: Array, k: Array, at: Array | None = None
) -> Array:
    """Whether the solves are cheaper than a full thin SVD, for every batch member.

    CG costs 8·m·n·k flops per iteration (two products of width k per side); a full thin SVD
    about 30·m·n·min(m, n) at a better flop rate. Solve when iterations·8·k <= 10·min(m, n).
    """
    r = min(a.shape[-2:])
    return jnp.all(cg_iterations_needed(a, u, s, vt, k, at) * 8 * k.astype(a.dtype) <= 10 * r)


def use_solves(
    a: Array, u: Array, s: Array, vt: Array, k: Array, at: Array | None = None
) -> Array:
    """Whether the exact derivative should come from the solves (else from a full SVD).
    ``at``: :func:`transposed` of ``a`` where the caller has it."""
    m, n = a.shape[-2:]
    return all_kept_nonzero(s, k, m, n) & worth_solving(a, u, s, vt, k, at)


def complement(
    a: Array,
    u: Array,
    s: Array,
    vt: Array,
    k: Array,
    da: Array,
    solvable: Array | None = None,
    at: Array | None = None,
) -> tuple[Array, Array]:
    """The blocks ``X = [R_i b_i]`` (m x c) and ``Y = [S_i c_i]`` (n x c) for the kept columns.

    Args:
        a: [..., m, n] the input.
        u, s, vt: [..., m, c], [..., c], [..., c, n] its top factors (zero beyond k).
        k: [...] int32, the number of kept columns.
        da: [..., m, n] the tangent.
        solvable: scalar bool, :func:`use_solves` (computed here when not given). False: every
            block comes from the full thin SVD.
        at: [..., n, m] :func:`transposed` of ``a`` (made here when not given).
    """
    m, n = a.shape[-2:]
    width = s.shape[-1]
    st = stable_singular_values(s, m, n)
    keep = _forward.keep_mask(k, width)
    v = _mT(vt)
    sig = st[..., None, :]
    b = _project_out(u, (da @ v) * sig + a @ (_mT(da) @ u))
    if at is None:
        at = transposed(a)
    c = _project_out(v, (_mT(da) @ u) * sig + at @ (da @ v))
    zero = jnp.zeros((), a.dtype)
    b = jnp.where(keep[..., None, :], b, zero)
    c = jnp.where(keep[..., None, :], c, zero)
    shift = jnp.where(keep, st * st, jnp.ones((), a.dtype))[..., None, :]
    rtol = cg_rtol(a.dtype)
    if solvable is None:
        solvable = use_solves(a, u, s, vt, k, at)

    def solve_side(left: bool, rhs: Array) -> Array:
        w = u if left else v

        def matvec(x):
            px = _project_out(w, x)
            big = a @ (at @ px) if left else at @ (a @ px)
            return x * shift - _project_out(w, big)

        def solve(_, rhs):
            def dense():
                return _dense_resolvent(a, k, width, rhs, left)

            def by_cg():
                x, converged = _block_cg(matvec, rhs, rtol)
                return jax.lax.cond(converged, lambda: x, dense)

            return jax.lax.cond(solvable, by_cg, dense)

        return jax.lax.custom_linear_solve(matvec, rhs, solve, symmetric=True)

    return solve_side(True, b), solve_side(False, c)
