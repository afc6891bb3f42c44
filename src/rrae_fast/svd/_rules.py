"""The ops as ``jax.custom_jvp`` functions, and their derivative: one function per route.

``k`` is an int32 array of the batch shape (possibly traced); ``max_k`` is static. Each JVP rule
asks :mod:`rrae_fast.svd._plan` for the route on each platform and runs it
(``jax.lax.platform_dependent`` where the platforms differ). A solve route runs the forward pass
without its fallback, asks the planner whether to go on (``_plan.accept``) and otherwise takes
the full-SVD route for primal and tangent together. The formulas are in
:mod:`rrae_fast.svd._formulas`, the solves in :mod:`rrae_fast.svd._solves`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.ad_checkpoint import checkpoint_name

from . import _formulas, _forward, _plan, _solves
from ._spectrum import cut_to_rank, factor_product, keep_mask

# ===========================================================================================
# The ops, differentiable
# ===========================================================================================


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def tsvd(a, k, init, max_k: int, method: str, gradient: str) -> tuple[Array, Array, Array]:
    """The top-``max_k`` factors (zero beyond k), differentiable by the rules below."""
    return _forward.factors(a, k, max_k, init, method)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def rank_reduce(a, k, init, max_k: int, method: str, gradient: str) -> Array:
    """``U_K Σ_K V_Kᵀ``, differentiable by the rules below."""
    return factor_product(*_forward.factors(a, k, max_k, init, method))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _attempt(
    a, k, init, width: int, method: str, chosen: str
) -> tuple[Array, Array, Array, Array]:
    """The forward pass of the solve route ``chosen`` (rrae_fast.svd._forward.attempt): no
    fallback after an iteration, so that the route takes the full SVD once, for primal and
    tangent, where the iteration gave up. Differentiable (where it converged) by the same
    solves, so that the rules themselves can be differentiated again."""
    return _forward.attempt(a, k, width, init, method)


# ===========================================================================================
# The derivative in a scaled frame
# ===========================================================================================

# Largest entries (as a power of two) for which the derivative rules run unscaled: their squares,
# fourth powers and tie thresholds (1e-9·σ_1²) stay normal numbers of the dtype for any
# shape LAPACK takes. Beyond, a matrix is scaled into that range first.
_UNSCALED_EXPONENT = {jnp.dtype(jnp.float32): 8, jnp.dtype(jnp.float64): 64}


def _unit_scale(a: Array) -> Array:
    """A power of two per matrix, ``[..., 1, 1]``: 1 where ``max|a|`` lies within
    2^±_UNSCALED_EXPONENT, else 2^-e with ``max|a| = f·2^e`` (0.5 ≤ f < 1). No derivative."""
    a = jax.lax.stop_gradient(a)
    _, e = jnp.frexp(jnp.max(jnp.abs(a), axis=(-2, -1), keepdims=True))
    bound = _UNSCALED_EXPONENT.get(jnp.dtype(a.dtype), 8)
    e = jnp.where(jnp.abs(e) > bound, e, 0)
    return jnp.ldexp(jnp.ones((), a.dtype), -e)


def _scale_invariant(rescale):
    """Decorates a JVP rule so that it is evaluated in a frame where ``max|a|`` is near 1.

    With ``c`` a power of two, the factors of ``c·A`` are ``(U, c·σ, Vᵀ)`` and its truncation is
    ``c·A_k``, so the derivatives in a direction ``dA`` are those at ``c·A`` in the same
    direction for σ and A_k (degree 0), and ``c`` times those for U and V (degree −1): the rule
    runs on ``c·A`` with ``dA`` as it is, and only σ, A_k and the tangents of U and V are scaled
    back, all exactly. The tangent (and in reverse mode the cotangent) is never scaled by ``c``
    going in, where it could underflow. Without the frame, σ² and σ_i² − σ_j² overflow or
    underflow in the working dtype at scales the forward pass handles (float32 σ_1 ≳ 2e19 or
    ≲ 4e-18; float64 near 1e±160), and the derivative is NaN or wrong there.
    ``rescale(primal, tangent, c)`` scales back for the rule's output structure (``c`` of the
    batch shape plus one axis).
    """

    def decorate(rule):
        @functools.wraps(rule)
        def scaled(max_k, method, gradient, primals, tangents):
            a, k, init = primals
            c = _unit_scale(a)
            primal, tangent = rule(max_k, method, gradient, (a * c, k, init), tangents)
            return rescale(primal, tangent, c[..., 0])

        return scaled

    return decorate


def _rescale_factors(primal, tangent, c):
    (u, s, vt), (du, ds, dvt) = primal, tangent
    return (u, s / c, vt), (du * c[..., None], ds, dvt * c[..., None])


def _rescale_product(primal, tangent, c):
    return primal / c[..., None], tangent


def _on_each_platform(a: Array, routes: dict[str, _plan.Route], run):
    """``run(route)`` with the route of the platform the computation runs on: one call where all
    platforms agree, else a ``platform_dependent`` (only the branch of the platform compiled
    for is lowered)."""
    if len(set(routes.values())) == 1:
        return run(routes["cpu"])
    branches = {p: (lambda _, r=r: run(r)) for p, r in routes.items()}
    return jax.lax.platform_dependent(a, **branches)


def _by_planned_route(routes, a, k, init, max_k, method, gradient, da):
    """The derivative by the route the planner gives each platform: ``routes`` holds an op's
    functions for ``"tangent"``, ``"full_svd"`` and the solve routes (``"cg"``, ``"gram"``)."""
    by_tangent_rule, by_full_svd, by_solves = routes

    def run(chosen: _plan.Route):
        if chosen == "tangent":
            return by_tangent_rule(a, k, init, max_k, method, da)
        if chosen == "full_svd":
            return by_full_svd(a, k, max_k, method, da)
        return by_solves(a, k, init, max_k, method, da, chosen)

    m, n = a.shape[-2:]
    return _on_each_platform(a, _plan.routes(m, n, a.dtype, max_k, method, gradient), run)


# ===========================================================================================
# truncated_svd: one function per route
# ===========================================================================================


def _full_factors(a, method):
    """Every singular triplet, through ``tsvd`` itself, so that the rules can be differentiated
    again (Hessians, ``jacfwd`` of ``grad``). ``"auto"`` picks the Gram path or LAPACK at
    k = min(m, n); an explicit ``"dense"`` or ``"gram"`` is kept."""
    r = min(a.shape[-2:])
    full = method if method in ("dense", "gram") else "auto"
    return tsvd(a, jnp.full(a.shape[:-2], r, jnp.int32), None, r, full, "exact")


def _saved_for_reverse(factors):
    """The full factors, named for the rematerialisation policy below."""
    return tuple(checkpoint_name(x, "full_factors") for x in factors)


def _tsvd_by_tangent_rule(a, k, init, max_k, method, da):
    """``"tangent"``: the factors of width max_k and the rule with the null space beyond."""
    u, s, vt = tsvd(a, k, init, max_k, method, "tangent")
    du, ds, dvt = _formulas.truncated_svd_jvp(u, s, vt, da, max_k)
    return cut_to_rank(k, max_k, u, s, vt), cut_to_rank(k, max_k, du, ds, dvt)


def _tsvd_by_full_svd(a, k, max_k, method, da):
    """``"full_svd"``: every triplet, and the dense rule restricted to the kept columns."""
    u, s, vt = _saved_for_reverse(_full_factors(a, method))
    du, ds, dvt = _formulas.truncated_svd_jvp(u, s, vt, da, max_k)
    return cut_to_rank(k, max_k, u, s, vt), cut_to_rank(k, max_k, du, ds, dvt)


def _solve_route_forward(op, a, k, init, max_k, method, chosen):
    """The forward pass of the solve route ``chosen`` (one column more for the Gram solves'
    check of the gap), cut to max_k columns, and whether the planner accepts it for ``op``."""
    m, n = a.shape[-2:]
    width = _plan.forward_width(chosen, m, n, max_k)
    k_fwd = jnp.minimum(k + 1, width) if chosen == "gram" else k
    u, s, vt, converged = _attempt(a, k_fwd, init, width, method, chosen)
    go_on = _plan.accept(chosen, op, a, u, s, vt, k, converged)
    return cut_to_rank(k, max_k, u, s, vt), go_on


def _tsvd_by_solves(a, k, init, max_k, method, da, chosen):
    """``"cg"`` / ``"gram"``: the forward pass, then the solves; the full-SVD route where the
    planner does not accept the forward pass."""
    (u, s, vt), go_on = _solve_route_forward("truncated_svd", a, k, init, max_k, method, chosen)

    def by_solves():
        full = lambda: _full_factors(a, method)
        tangent = _tsvd_tangent_by_solves(a, k, max_k, u, s, vt, da, full, chosen, True)
        return (u, s, vt), tangent

    by_full_svd = lambda: _lean_tsvd_by_full_svd(a, k, max_k, method, da)
    return jax.lax.cond(go_on, by_solves, by_full_svd)


def _tsvd_tangent_by_solves(a, k, width, u, s, vt, da, full, chosen, gap_checked):
    """The tangent of factors of ``width`` columns (zero beyond k) from the solves."""
    omega, x, y = _solves.coupling(a, u, s, vt, k, da, full, chosen, gap_checked)
    blocks = (omega, jnp.swapaxes(x, -1, -2), jnp.swapaxes(y, -1, -2))
    return cut_to_rank(k, width, *_formulas.truncated_svd_jvp(u, s, vt, da, width, blocks))


@tsvd.defjvp
@_scale_invariant(_rescale_factors)
def _tsvd_jvp(max_k, method, gradient, primals, tangents):
    (a, k, init), (da, _, _) = primals, tangents  # k and the warm start carry no derivative
    routes = (_tsvd_by_tangent_rule, _tsvd_by_full_svd, _tsvd_by_solves)
    return _by_planned_route(routes, a, k, init, max_k, method, gradient, da)


@_attempt.defjvp
def _attempt_jvp(width, method, chosen, primals, tangents):
    # Used only where the route accepted the attempt (it converged); the gap at the attempt's
    # own cut is not known here, so the Gram kernel checks it.
    (a, k, init), (da, _, _) = primals, tangents
    u, s, vt, converged = _attempt(a, k, init, width, method, chosen)
    full = lambda: _full_factors(a, method)
    solved = lambda: _tsvd_tangent_by_solves(a, k, width, u, s, vt, da, full, chosen, False)
    by_full_svd = lambda: _lean_tsvd_by_full_svd(a, k, width, method, da)[1]
    go_on = _plan.accept(chosen, "attempt", a, u, s, vt, k, converged)
    du, ds, dvt = jax.lax.cond(go_on, solved, by_full_svd)
    return (u, s, vt, converged), (du, ds, dvt, np.zeros(converged.shape, jax.dtypes.float0))


# ===========================================================================================
# rank_reduce: one function per route
# ===========================================================================================


def _rank_reduce_by_tangent_rule(a, k, init, max_k, method, da):
    """``"tangent"``: the projection ``P_U G + G P_V − P_U G P_V`` on the top-k factors."""
    u, s, vt = tsvd(a, k, init, max_k, method, "tangent")
    keep = keep_mask(k, max_k)
    return factor_product(u, s, vt), _formulas.rank_reduce_jvp(u, s, vt, da, keep, max_k)


def _rank_reduce_by_full_svd(a, k, max_k, method, da):
    """``"full_svd"``: written through the kept subspace, so that differentiating the rule again
    stays exact where singular values tie on one side of the cut (the factors' derivative inside
    a tied block is one frame's): the primal as ``U_K U_Kᵀ A`` to first order, the tangent
    likewise (:func:`rrae_fast.svd._formulas.rank_reduce_jvp_by_subspace`)."""
    u, s, vt = _saved_for_reverse(_full_factors(a, method))
    keep = keep_mask(k, s.shape[-1])
    still = jax.lax.stop_gradient
    u_k = u[..., :max_k] * keep[..., None, :max_k].astype(u.dtype)
    primal = factor_product(still(u_k), still(s[..., :max_k]), still(vt[..., :max_k, :]))
    projected = lambda a, u_k: u_k @ (jnp.swapaxes(u_k, -1, -2) @ a)
    primal = primal + _formulas.change(projected, a, u_k)
    return primal, _formulas.rank_reduce_jvp_by_subspace(a, u, s, vt, da, keep, max_k)


def _rank_reduce_by_solves(a, k, init, max_k, method, da, chosen):
    """``"cg"`` / ``"gram"``: the forward pass, then the solves
    (``dA_k = U Ω Vᵀ + X Σ Vᵀ + U Σ Yᵀ``); the full-SVD route where the planner does not accept
    the forward pass."""
    (u, s, vt), go_on = _solve_route_forward("rank_reduce", a, k, init, max_k, method, chosen)

    def by_solves():
        full = lambda: _full_factors(a, method)
        if chosen == "gram":
            tangent = _solves.rank_reduce_tangent_by_gram(a, u, s, vt, k, da, full)
        else:
            tangent = _solves.rank_reduce_tangent_by_cg(a, u, s, vt, k, da, full)
        return factor_product(u, s, vt), tangent

    by_full_svd = lambda: _lean_rank_reduce_by_full_svd(a, k, max_k, method, da)
    return jax.lax.cond(go_on, by_solves, by_full_svd)


@rank_reduce.defjvp
@_scale_invariant(_rescale_product)
def _rank_reduce_jvp(max_k, method, gradient, primals, tangents):
    (a, k, init), (da, _, _) = primals, tangents  # k and the warm start carry no derivative
    routes = (_rank_reduce_by_tangent_rule, _rank_reduce_by_full_svd, _rank_reduce_by_solves)
    return _by_planned_route(routes, a, k, init, max_k, method, gradient, da)


# The full-SVD routes as the fallback branch of a lax.cond: in reverse mode every residual of
# either branch is an output of the cond, allocated (uninitialised) in the branch that did not
# run, and the dense rule's are many r x r arrays. Rematerialised, they keep only the full
# factors.
_SAVE_FACTORS = jax.checkpoint_policies.save_only_these_names("full_factors")
_lean_rank_reduce_by_full_svd = jax.checkpoint(
    _rank_reduce_by_full_svd, policy=_SAVE_FACTORS, static_argnums=(2, 3)
)
_lean_tsvd_by_full_svd = jax.checkpoint(
    _tsvd_by_full_svd, policy=_SAVE_FACTORS, static_argnums=(2, 3)
)


def cpu_backward_route(op: str, a, k, init, max_k: int, method: str, gradient: str) -> str:
    """The route the derivative of ``op`` ("truncated_svd" or "rank_reduce") takes on CPU for
    these arguments, as the rules above decide it: the planner's route, with
    ``"_then_full_svd"`` appended where a solve route's forward pass is not accepted (for
    :func:`rrae_fast.diagnose`; runs the forward pass eagerly)."""
    m, n = a.shape[-2:]
    chosen = _plan.route(m, n, a.dtype, max_k, method, gradient, "cpu")
    if chosen in ("tangent", "full_svd"):
        return chosen
    _, go_on = _solve_route_forward(op, a * _unit_scale(a), k, init, max_k, method, chosen)
    return chosen if bool(go_on) else f"{chosen}_then_full_svd"
