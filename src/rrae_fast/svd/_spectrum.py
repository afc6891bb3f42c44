"""The stabilisation every derivative rule shares: when a singular value counts as zero, when
two count as tied, and the kept set as a mask (pure ``jnp``).

Paper, Appendix A, made scale-invariant:

* singular values ``σ_i ≤ ζ·σ_1`` are treated as exact zeros, ``ζ = max(1e-11, ε·max(m, n))``
  (1e-11 is the paper's threshold; ``ε·max(m, n)`` is the numerical-rank floor of the dtype);
* a pair with ``|σ_i² − σ_j²| ≤ τ·σ_1²`` is a tie and its coupling is set to 0,
  ``τ = max(1e-9, 100·ε)`` (the paper masks ``|Δ| ≤ 1e-9`` in absolute terms);
* ``1/σ_i`` of a zero singular value is replaced by 0.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

ZERO_RTOL_FLOOR = 1e-11  # the paper's threshold for "exactly zero" singular values
TIE_RTOL_FLOOR = 1e-9  # the paper's threshold for tied squared singular values


def mT(x: Array) -> Array:
    """The last two axes swapped."""
    return jnp.swapaxes(x, -1, -2)


def same(x):
    """``x`` itself: the row sum, agreement or cast of one device, where the rules take those
    of a matrix split across devices."""
    return x


def tolerances(dtype, m: int, n: int) -> tuple[float, float]:
    """``(ζ, τ)``: the relative zero threshold on σ and the relative tie threshold on σ²."""
    eps = float(jnp.finfo(dtype).eps)
    return max(ZERO_RTOL_FLOOR, eps * max(m, n)), max(TIE_RTOL_FLOOR, 100.0 * eps)


def stable_parts(s: Array, m: int, n: int) -> tuple[Array, Array, Array, Array]:
    """Thresholded σ, squared σ, the tie threshold on squares ``τ·σ_1²`` ([..., 1]), and the
    guarded 1/σ, for ``s`` [..., c] descending."""
    zero_tol, tie_tol = tolerances(s.dtype, m, n)
    top = s[..., :1]
    st = jnp.where(s > zero_tol * top, s, jnp.zeros_like(s))
    sinv = jnp.where(st > 0, 1 / jnp.where(st > 0, st, 1), 0)
    return st, st * st, tie_tol * top * top, sinv


def stable_singular_values(s: Array, m: int, n: int) -> Array:
    """σ with values below the zero threshold set to 0."""
    return stable_parts(s, m, n)[0]


def inverse_gaps(sq_rows: Array, sq_cols: Array, tie: Array) -> Array:
    """``1 / (sq_cols[j] − sq_rows[i])`` as a [..., i, j] matrix, 0 where the pair is tied.

    Row i and column i are the same singular value, so the diagonal is 0 by construction, not
    through the tie threshold (a fused multiply-add can leave σ_i·σ_i − σ_i² ≠ 0).
    """
    d = sq_cols[..., None, :] - sq_rows[..., :, None]
    rows, cols = sq_rows.shape[-1], sq_cols.shape[-1]
    off_diagonal = jnp.arange(rows)[:, None] != jnp.arange(cols)[None, :]
    off_diagonal = off_diagonal.reshape((1,) * (d.ndim - 2) + (rows, cols))
    ok = (jnp.abs(d) > tie[..., None]) & off_diagonal
    return jnp.where(ok, 1 / jnp.where(ok, d, 1), 0)


def keep_mask(k: Array, width: int) -> Array:
    """[..., width] bool: True for the first k[...] columns (``k`` int32 of the batch shape)."""
    columns = jnp.arange(width, dtype=jnp.int32).reshape((1,) * k.ndim + (width,))
    return columns < k[..., None]


def cut_to_rank(k: Array, max_k: int, u: Array, s: Array, vt: Array):
    """The first max_k columns of factors ``u`` [..., m, c], ``s`` [..., c], ``vt`` [..., c, n],
    zero beyond ``k`` ([...] int32)."""
    keep = keep_mask(k, max_k)
    zero = jnp.zeros((), u.dtype)
    return (
        jnp.where(keep[..., None, :], u[..., :max_k], zero),
        jnp.where(keep, s[..., :max_k], zero),
        jnp.where(keep[..., :, None], vt[..., :max_k, :], zero),
    )


def factor_product(u: Array, s: Array, vt: Array) -> Array:
    """``U diag(s) Vt`` of factors [..., m, c], [..., c], [..., c, n]."""
    return (u * s[..., None, :]) @ vt


def all_kept_nonzero(s: Array, k: Array, m: int, n: int) -> Array:
    """[...] whether every kept σ is above the zero threshold (else a kept system of the solves
    is singular)."""
    keep = keep_mask(k, s.shape[-1])
    return jnp.all(jnp.where(keep, stable_singular_values(s, m, n) > 0, True), axis=-1)


def no_kept_ties(s: Array, k: Array, m: int, n: int) -> Array:
    """[...] whether no two kept σ are tied (σ_i² − σ_{i+1}² > τ·σ_1² for i < k)."""
    w = s.shape[-1]
    st = stable_singular_values(s, m, n)
    tie = tolerances(s.dtype, m, n)[1]
    sq = st * st
    inside = keep_mask(k, w)[..., 1:]  # the pair (i, i + 1) lies in K
    apart = sq[..., :-1] - sq[..., 1:] > tie * sq[..., :1]
    return jnp.all(jnp.where(inside, apart | (st[..., 1:] == 0), True), axis=-1)


def gap_above_ties(s: Array, k: Array, m: int, n: int) -> Array:
    """[...] whether σ_k² − σ_{k+1}² > 2τ·σ_1²: no tie or near-tie across the cut, so the dense
    rule masks no pair there and the solves are well posed. ``s``: [..., w] with σ_{k+1} in
    column k where k < w (else σ_{k+1} is taken as 0)."""
    w = s.shape[-1]
    st = stable_singular_values(s, m, n)
    tie = tolerances(s.dtype, m, n)[1]
    at = lambda i: jnp.take_along_axis(st, jnp.clip(i, 0, w - 1)[..., None], axis=-1)[..., 0]
    s_k, s_next = at(k - 1), jnp.where(k < w, at(k), 0)
    return s_k * s_k - s_next * s_next > 2 * tie * st[..., 0] * st[..., 0]
