"""The ops on a matrix whose rows are split across devices (inside ``shard_map``).

A Rank Reduction Autoencoder's latent matrix is ``[batch, L]``: under data parallelism its rows
are split across devices, and the truncation must see the whole matrix, or the batch's common
basis would be each device's own. Here each device holds its block of rows ``A_d``
(``[m_d, n]``, the blocks stacked in device order along the named mesh axis), and gets back its
block of the global result, computed without gathering ``A``:

1. Forward, two routes (``method``, chosen as the one-device kernel chooses):
   - TSQR (:func:`_dense_top`, ``"dense"``): ``A_d = Q_d R_d`` on each device; the ``R_d``
     (``[min(m_d, n), n]`` each) are gathered (a ``psum`` of zero-padded blocks) and factored
     again, ``[R_1; …; R_D] = Q' R``; ``R`` (``[c, n]``, c = min(m, n)) has the singular
     values and right singular vectors of ``A``, and ``U_d = Q_d Q'_d U_R`` (``Q'_d`` the
     device's block of ``Q'``). Communication: one all-reduce of ``D · min(m_d, n) · n``
     numbers, small where ``n`` (the latent length) is small against the rows each device
     holds.
   - Subspace iteration (:func:`_iterate`, ``"iterative"``, and ``"auto"`` on large
     matrices): every product with ``A`` is local and each iteration all-reduces a ``[b, n]``
     block (b ≈ k + 8) and ``D`` triangular ``[b, b]`` factors; TSQR takes over where it
     does not converge within its budget.
   Both are backward stable: the accuracy contract holds for the global matrix.
2. Derivatives, the one-device rules with a ``psum`` over the devices on every product that
   sums over rows, so that ``jvp``, ``grad`` and ``vmap`` give the one-device derivatives:
   - where the forward pass iterated and converged and the gap after σ_k makes conjugate
     gradients short (:func:`_solve_route_forward`), the coupling with the discarded spectrum
     is solved by CG on the split matrix (:func:`rrae_fast.svd._solves.coupling_by_columns`:
     per iteration, local products and an all-reduce of a ``max_k × (n + max_k)`` block);
   - elsewhere, the rules of :mod:`rrae_fast.svd._formulas` on TSQR's full factors.

The sign convention is the one-device op's: the first largest-magnitude entry of each ``u_i``,
over all rows, is positive.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import AbstractMesh, PartitionSpec

from . import _formulas, _solves
from ._spectrum import all_kept_nonzero, cut_to_rank, factor_product, keep_mask, no_kept_ties


def _row_sum(axis_name: str):
    return lambda x: jax.lax.psum(x, axis_name)


def global_factors(a: Array, axis_name: str) -> tuple[Array, Array, Array]:
    """The thin SVD of the row-stacked matrix, from this device's rows ``a`` ([m_d, n]):
    ``(u_d, s, vt)`` of shapes [m_d, c], [c], [c, n] (c = min(m, n)); ``u_d`` is this
    device's rows of U, ``s`` and ``vt`` are the same on every device."""
    q, r = _tsqr(a, axis_name)  # [m_d, c], [c, n]
    u_r, s, vt = jnp.linalg.svd(r, full_matrices=False)  # [c, c], [c], [c, n]
    u, vt = _sign_convention(q @ u_r, vt, axis_name)
    return u, s, vt


def _tsqr(a: Array, axis_name: str) -> tuple[Array, Array]:
    """The QR factorisation of the row-stacked matrix (TSQR): this device's rows of ``Q``
    ([m_d, c], c = min(m, n)) and ``R`` ([c, n], the same on every device). A QR of each
    device's rows, one all-reduce of the D triangular factors, a QR of their stack."""
    q1, r1 = jnp.linalg.qr(a)  # [m_d, r], [r, n], r = min(m_d, n)
    q2, r2 = jnp.linalg.qr(_gather_rows(r1, axis_name))  # [D·r, c], [c, n]
    return q1 @ _own_block(q2, r1.shape[0], axis_name), r2


def _own_block(x: Array, r: int, axis_name: str) -> Array:
    """This device's block of ``r`` rows of a row-stacked ``x`` ([D·r, ...])."""
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis_name) * r, r, axis=0)


def _gather_rows(x: Array, axis_name: str) -> Array:
    """Every device's ``x`` ([r, n]) stacked in device order, [D·r, n], as a ``psum`` of
    zero-padded blocks: its result is known to be the same on every device (what follows
    from it, ``s`` and ``vt``, may then leave ``shard_map`` replicated), where an
    ``all_gather``'s is not."""
    size = jax.lax.axis_size(axis_name)
    blocks = jnp.zeros((size, *x.shape), x.dtype)
    blocks = jax.lax.dynamic_update_index_in_dim(blocks, x, jax.lax.axis_index(axis_name), 0)
    return jax.lax.psum(blocks, axis_name).reshape(size * x.shape[0], x.shape[1])


def _sign_convention(u: Array, vt: Array, axis_name: str) -> tuple[Array, Array]:
    """Flips (u_i, v_i) so that the first largest-magnitude entry of u_i over every device's
    rows is positive (rows are in device order, so the first device with the largest wins)."""
    idx = jnp.argmax(jnp.abs(u), axis=0)  # [c], first maximum on this device
    local = jnp.take_along_axis(u, idx[None, :], axis=0)[0]  # [c]
    everywhere = _gather_rows(local[None, :], axis_name)  # [D, c]
    winner = jnp.argmax(jnp.abs(everywhere), axis=0)  # first device on ties
    value = jnp.take_along_axis(everywhere, winner[None, :], axis=0)[0]
    sign = jnp.where(value < 0, -1, 1).astype(u.dtype)
    return u * sign[None, :], vt * sign[:, None]


def subspace_width(m: int, n: int, k: int) -> int:
    """The iteration's block width for the top ``k`` of an m x n matrix: the native kernels'
    (``SubspaceWidth`` in ``csrc/common/svd_types.h``)."""
    rounded = (k + 8 + k // 16) // 8 * 8
    return min(max(rounded, k + 8), min(m, n))


def prefer_iterative(m: int, n: int, k: int) -> bool:
    """``method="auto"``'s choice for the whole m x n matrix, the CPU kernel's rule: iterate
    where the block is at most a third of min(m, n) ≥ 256; below, the dense route is cheap."""
    r = min(m, n)
    return r >= 256 and 3 * subspace_width(m, n, k) <= r


def _iteration_budget(m: int, n: int, width: int) -> int:
    """Iterations (a product with Aᵀ and one with A each) before the dense route takes over:
    about a tenth of a dense SVD's flops, as the CPU kernel."""
    return int(np.clip(int(0.2 * min(m, n) / width), 2, 30))


def _tolerance(m: int, n: int, dtype) -> float:
    """The iteration's stopping test, relative to σ₁: a quarter of the accuracy contract's
    residual bound (20·√max(m, n)·ε), as the native kernels."""
    return 5.0 * math.sqrt(max(m, n)) * float(jnp.finfo(dtype).eps)


def may_iterate(rows: int, n: int, max_k: int, method: str) -> bool:
    """Whether the forward pass tries the subspace iteration (``"iterative"``, or ``"auto"``
    where :func:`prefer_iterative` says so); otherwise it takes TSQR directly."""
    return method == "iterative" or (method == "auto" and prefer_iterative(rows, n, max_k))


def top_factors(
    a: Array, k: Array, max_k: int, axis_name: str, rows: int, method: str
) -> tuple[Array, Array, Array]:
    """The whole matrix's top ``max_k`` factors from this device's rows ``a`` ([m_d, n]):
    ``u_d`` [m_d, max_k] (this device's rows), ``s`` [max_k], ``vt`` [max_k, n], with the
    sign convention. ``method``: ``"dense"`` (TSQR, :func:`_dense_top`), ``"iterative"``
    (:func:`_iterate`, the dense route where it does not converge within its budget) or
    ``"auto"`` (:func:`prefer_iterative` chooses)."""
    return _top(a, k, max_k, axis_name, rows, method)[:3]


def _top(
    a: Array, k: Array, max_k: int, axis_name: str, rows: int, method: str
) -> tuple[Array, Array, Array, Array, Array]:
    """:func:`top_factors` and, for the derivative's choice of route, ``next_s`` (the
    iteration's estimate of σ_{k+1}, a Ritz value) and ``iterated`` (whether the factors are
    the iteration's, converged; False where TSQR gave them, ``next_s`` is then 0)."""
    if not may_iterate(rows, a.shape[-1], max_k, method):
        u, s, vt = _dense_top(a, max_k, axis_name)
        return u, s, vt, jnp.zeros((), s.dtype), jnp.zeros((), bool)

    @jax.custom_batching.custom_vmap
    def iterate_or_dense(a, k):
        u, s, vt, converged, _, next_s = _iterate(a, k, max_k, axis_name, rows)
        iterated = lambda: (u, s, vt, next_s, jnp.ones((), bool))
        dense = lambda: (*_dense_top(a, max_k, axis_name), next_s * 0, jnp.zeros((), bool))
        return jax.lax.cond(converged, iterated, dense)

    @iterate_or_dense.def_vmap
    def one_member_at_a_time(axis_size, in_batched, a, k):
        # XLA's CPU runtime can stall on the batched form (a loop with a batched exit
        # condition followed by a conditional with collectives); members one after the
        # other each take their own route, and the products of one member are as large.
        a = a if in_batched[0] else jnp.broadcast_to(a, (axis_size, *a.shape))
        k = k if in_batched[1] else jnp.broadcast_to(k, (axis_size, *k.shape))
        return jax.lax.map(lambda ak: iterate_or_dense(*ak), (a, k)), (True,) * 5

    return iterate_or_dense(a, k)


def _dense_top(a: Array, max_k: int, axis_name: str) -> tuple[Array, Array, Array]:
    """TSQR as :func:`global_factors`, but the factorisation of the stacked triangular factors
    (a QR and an SVD, the same on every device) runs on the first device of the axis only,
    and its top ``max_k`` factors reach the others by a ``psum`` with zeros: the devices of
    one host (CPU devices, simulated or not) then do not each repeat it. Where those factors
    (``max_k · (D·r + n)`` numbers) are more than a quarter of the gathered ones, every
    device factors instead. The result is the one every device would have computed."""
    q1, r1 = jnp.linalg.qr(a)  # [m_d, r], [r, n]
    stacked = _gather_rows(r1, axis_name)  # [D·r, n]

    def factor():
        q2, r2 = jnp.linalg.qr(stacked)
        u_r, s, vt = jnp.linalg.svd(r2, full_matrices=False)
        return q2 @ u_r[:, :max_k], s[:max_k], vt[:max_k]  # [D·r, max_k], [max_k], [max_k, n]

    def nothing():  # zeros of factor()'s shapes, typed as `stacked` (varying where it is)
        return stacked[:, :max_k] * 0, stacked[0, :max_k] * 0, stacked[:max_k] * 0

    size = stacked.size
    if 4 * max_k * (stacked.shape[0] + stacked.shape[1]) <= size:
        first = jax.lax.axis_index(axis_name) == 0
        left, s, vt = jax.lax.psum(jax.lax.cond(first, factor, nothing), axis_name)
    else:  # sending the factors would cost more than a quarter of the gather: all compute
        left, s, vt = factor()
    u, vt = _sign_convention(q1 @ _own_block(left, r1.shape[0], axis_name), vt, axis_name)
    return u, s, vt


def _iterate(
    a: Array, k: Array, max_k: int, axis_name: str, rows: int
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Randomized subspace iteration on the row-split matrix: ``(u_d, s, vt, converged,
    iterations, next_s)``, ``next_s`` the Ritz value that estimates σ_{k+1} (0 where the
    block has no column beyond k).

    From a random ``Ω`` [n, b] (the same on every device), ``Y = A Ω``; then each iteration:
    ``Q = orth(Y)`` (TSQR), ``B = Qᵀ A`` [b, n] (a ``psum`` of the devices' products: the
    iteration's one all-reduce of a block of the operand's width), ``Bᵀ = Q_B R_B``,
    ``R_Bᵀ = X Σ Wᵀ`` (small, the same on every device), Ritz vectors ``U = Q X`` and
    ``V = Q_B Wᵀ``, and ``P = A Q_B`` (local), which is both the next ``Y`` and, as
    ``A V = P Wᵀ``, the residual ``A v_i − σ_i u_i`` of the test; ``Aᵀ u_i − σ_i v_i``
    vanishes by construction. It stops once every kept column's residual is within the
    native kernels' tolerance of σ₁, or gives up when the rate of the last iteration cannot
    get there within the budget (or the input is not finite). Every product with ``A`` is
    local; what crosses devices is ``b·n`` numbers, ``D·b²`` for TSQR and ``b`` for the test,
    per iteration.
    """
    n = a.shape[-1]
    width = subspace_width(rows, n, max_k)
    tol = _tolerance(rows, n, a.dtype)
    budget = _iteration_budget(rows, n, width)
    tested = jnp.arange(width, dtype=jnp.int32) < k

    def ritz(y):
        q, _ = _tsqr(y, axis_name)  # [m_d, b], orthonormal over all rows
        bt = jax.lax.psum(q.T @ a, axis_name)  # [b, n]
        qb, rb = jnp.linalg.qr(bt.T)  # [n, b], [b, b]
        x, s, wt = jnp.linalg.svd(rb.T)
        u, vt = q @ x, wt @ qb.T
        p = a @ qb  # [m_d, b]
        residual = jax.lax.psum(jnp.sum(jnp.square(p @ wt.T - u * s[None, :]), axis=0), axis_name)
        worst = jnp.sqrt(jnp.max(jnp.where(tested, residual, 0)))
        ratio = jnp.where(worst > 0, worst / jnp.where(s[0] > 0, s[0], 1), 0)
        ratio = jnp.where((s[0] > 0) | (worst == 0), ratio, jnp.inf)
        return p, (u, s, vt), ratio

    def decide(ratio, give_up):
        """(done, converged), each the same on every device (one integer all-reduce)."""
        converged = ratio <= tol
        return _everywhere(jnp.stack([converged | give_up, converged]), axis_name)

    def body(state):
        y, _, previous, it, _, _ = state
        p, factors, ratio = ritz(y)
        rate = ratio / previous
        needed = jnp.log(tol / ratio) / jnp.log(jnp.where(rate < 1, rate, 0.5))
        late = needed > (budget - 1 - it).astype(needed.dtype)
        done, converged = decide(ratio, ~jnp.isfinite(ratio) | (rate >= 1) | late)
        return p, factors, ratio, it + 1, done, converged

    def go_on(state):
        *_, it, done, _ = state
        return (it < budget) & ~done

    omega = jax.random.normal(jax.random.key(0), (n, width), a.dtype)
    p, factors, ratio = ritz(a @ omega)  # the first iteration, outside: the loop's types
    start = (p, factors, ratio, 1, *decide(ratio, ~jnp.isfinite(ratio)))
    _, (u, s, vt), _, iterations, _, converged = jax.lax.while_loop(go_on, body, start)
    u, vt = _sign_convention(u[:, :max_k], vt[:max_k], axis_name)
    next_s = jnp.concatenate([s, jnp.zeros(1, s.dtype)])[k]
    return u, s[:max_k], vt, converged, iterations, next_s


def _everywhere(flags: Array, axis_name: str) -> tuple[Array, ...]:
    """Whether each of ``flags`` holds on every device. Each device computes its tests from
    the same all-reduced numbers, but an all-reduce may round differently on different
    devices; a decision that some devices took and others not would leave them waiting for
    each other at the next collective. An integer sum is exact, so these answers are the same
    everywhere. (One all-reduce for all the flags, on the data path of what follows: XLA's CPU
    runtime may start two independent collectives in a different order on different devices,
    and then waits for ever.)"""
    size = jax.lax.axis_size(axis_name)
    return tuple(jax.lax.psum(flags.astype(jnp.int32), axis_name) == size)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def truncated_svd(a: Array, k: Array, max_k: int, axis_name: str, rows: int, method: str):
    """This device's part of the global top-k factors: ``(u_d, s, vt)``, [m_d, max_k],
    [max_k], [max_k, n], zero beyond ``k`` (an int32 scalar, possibly traced)."""
    return cut_to_rank(k, max_k, *top_factors(a, k, max_k, axis_name, rows, method))


@truncated_svd.defjvp
def _truncated_svd_jvp(max_k, axis_name, rows, method, primals, tangents):
    a, k = primals
    da, _ = tangents

    def by_full_factors():
        u, s, vt = global_factors(a, axis_name)
        du, ds, dvt = _formulas.truncated_svd_jvp(
            u, s, vt, da, max_k, row_sum=_row_sum(axis_name), rows=rows
        )
        return cut_to_rank(k, max_k, u, s, vt), cut_to_rank(k, max_k, du, ds, dvt)

    if not may_iterate(rows, a.shape[-1], max_k, method):
        return by_full_factors()
    (u, s, vt), go_on = _solve_route_forward("truncated_svd", a, k, max_k, axis_name, rows, method)

    def by_solves():
        omega, x, y = _solves.coupling_by_columns(
            a, u, s, vt, k, da, *_solve_parts(a, axis_name, rows)
        )
        blocks = (omega, x.T, y.T)
        tangent = _formulas.truncated_svd_jvp(u, s, vt, da, max_k, blocks, rows=rows)
        return (u, s, vt), cut_to_rank(k, max_k, *tangent)

    return jax.lax.cond(go_on, by_solves, by_full_factors)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def rank_reduce(a: Array, k: Array, max_k: int, axis_name: str, rows: int, method: str) -> Array:
    """This device's rows of the global rank-k approximation, [m_d, n]."""
    return factor_product(
        *cut_to_rank(k, max_k, *top_factors(a, k, max_k, axis_name, rows, method))
    )


@rank_reduce.defjvp
def _rank_reduce_jvp(max_k, axis_name, rows, method, primals, tangents):
    a, k = primals
    da, _ = tangents

    def by_full_factors():
        u, s, vt = global_factors(a, axis_name)
        keep = keep_mask(k, s.shape[-1])
        primal = factor_product(*cut_to_rank(k, max_k, u, s, vt))
        tangent = _formulas.rank_reduce_jvp(
            u, s, vt, da, keep, max_k, row_sum=_row_sum(axis_name), rows=rows
        )
        return primal, tangent

    if not may_iterate(rows, a.shape[-1], max_k, method):
        return by_full_factors()
    (u, s, vt), go_on = _solve_route_forward("rank_reduce", a, k, max_k, axis_name, rows, method)

    def by_solves():
        parts = _solve_parts(a, axis_name, rows)
        blocks = _solves.coupling_by_columns(a, u, s, vt, k, da, *parts)
        tangent = _solves.rank_reduce_tangent_by_cg(a, u, s, vt, k, da, parts[0], blocks, rows)
        return factor_product(u, s, vt), tangent

    return jax.lax.cond(go_on, by_solves, by_full_factors)


def _solve_route_forward(
    op: str, a: Array, k: Array, max_k: int, axis_name: str, rows: int, method: str
):
    """The derivative's route where the forward pass may iterate: ``((u, s, vt), go_on)``,
    the forward pass's factors cut to ``k`` and whether the exact rule's coupling with the
    discarded spectrum is solved by conjugate gradients on the split matrix
    (:func:`rrae_fast.svd._solves.coupling_by_columns`: per iteration, local products and an
    all-reduce of ``max_k × (n + max_k)`` numbers) rather than from TSQR's full factors
    (an all-reduce of ``D · min(m_d, n) · n``). The solves are taken where the iteration
    converged, every kept σ is nonzero (and, for ``rank_reduce``, no two kept σ are tied, as
    on one device: :func:`rrae_fast.svd._plan.accept`) and the CG iterations predicted from
    σ_k and the iteration's estimate of σ_{k+1} are few enough: at most half the solver's cap,
    their products at most a tenth of a dense SVD's flops (as on one device), their
    all-reduces at most those of the full factors. One flag, the same on every device and,
    under ``vmap``, for every member (:func:`rrae_fast.svd._solves.every_member`)."""
    n = a.shape[-1]
    u, s, vt, next_s, iterated = _top(a, k, max_k, axis_name, rows, method)
    u, s, vt = cut_to_rank(k, max_k, u, s, vt)
    s_k = jnp.take(s, k - 1)
    needed = _solves.cg_iterations_for(next_s, s_k, a.dtype, normal=True)
    gathered = jax.lax.axis_size(axis_name) * min(a.shape[-2], n)  # rows of TSQR's stack
    limit = min(_solves.CG_MAX_ITERS / 2, 10 * min(rows, n) / (4 * max_k), gathered / max_k)
    ok = iterated & all_kept_nonzero(s, k, rows, n) & (needed <= limit)
    if op == "rank_reduce":
        ok = ok & no_kept_ties(s, k, rows, n)
    (ok,) = _everywhere(ok[None], axis_name)
    return (u, s, vt), _solves.every_member(ok)


def _solve_parts(a: Array, axis_name: str, rows: int):
    """The arguments of :func:`rrae_fast.svd._solves.coupling_by_columns` after ``da`` for
    the split matrix: the full factors from TSQR (where CG does not converge) and the split.
    The solve's result is made replicated by a ``pmean`` (one all-reduce of its ``max_k × n``
    numbers: JAX offers no cast from varying to replicated)."""
    split = _solves.RowSplit(
        row_sum=_row_sum(axis_name),
        rows=rows,
        agree=lambda flag: _everywhere(flag[None], axis_name)[0],
        replicated=lambda y: jax.lax.pmean(y, axis_name),
    )
    return lambda: global_factors(a, axis_name), split


def global_rows(a: Array, axis_name: str) -> int:
    """The rows of the whole matrix: this device's times the size of the mesh axis (the
    blocks are equal, as ``shard_map`` splits them)."""
    return a.shape[-2] * jax.lax.axis_size(axis_name)


def check(
    a: Array, method: str, init, gradient: str, check_finite: bool, fn: str, how: str = "axis_name"
) -> None:
    """The limits of the row-split ops, as errors that name them; `how` says how the split was
    asked for (``axis_name``, or an input whose type is split by rows)."""
    if a.ndim != 2:
        raise ValueError(
            f"{fn}: with {how}, `a` is this device's rows of one matrix [m_d, n], got "
            f"shape {a.shape} (vmap the call for a batch)"
        )
    if method not in ("auto", "dense", "iterative"):
        raise ValueError(
            f"{fn}: with {how}, method must be 'auto', 'dense' or 'iterative', got {method!r}"
        )
    if init is not None:
        raise ValueError(f"{fn}: with {how}, no warm start (init) is taken")
    if gradient != "exact":
        raise ValueError(f"{fn}: with {how}, gradient must be 'exact', got {gradient!r}")
    if check_finite:
        raise ValueError(
            f"{fn}: with {how}, check_finite is not available: a NaN or Inf in any "
            "device's rows gives NaN outputs on every device"
        )


def typed_spec(a: Array) -> tuple | None:
    """The partition spec in ``a``'s type, one entry per axis, where ``a`` is sharded over
    mesh axes of type Explicit; None otherwise."""
    sharding = getattr(jax.typeof(a), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if sharding is None or mesh is None or mesh.empty or not mesh.explicit_axes:
        return None
    spec = tuple(sharding.spec)
    return spec + (None,) * (a.ndim - len(spec))


def typed_row_split(a: Array) -> tuple[AbstractMesh, tuple[str, ...], PartitionSpec] | None:
    """How ``a``'s type says its rows are split: ``(mesh, row axes, spec)``, or None.

    JAX carries a sharding in an array's type over mesh axes of type Explicit (the default of
    :func:`jax.make_mesh`). Where the rows (axis -2) of such an array are split over some of
    those axes, the ops run the split route inside ``shard_map`` over them. Over Auto axes the
    sharding is not known when the op is traced; XLA then gathers the operand for the custom
    call, which is correct but not split.
    """
    spec = typed_spec(a)
    if spec is None or a.ndim < 2 or spec[-2] is None:
        return None
    rows = spec[-2]
    axes = (rows,) if isinstance(rows, str) else tuple(rows)
    return jax.typeof(a).sharding.mesh, axes, PartitionSpec(*spec)
