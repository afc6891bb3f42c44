"""The public ops: ``truncated_svd`` and ``rank_reduce``.

Each op validates its input, then runs one jitted implementation (cached per shape, dtype, ``k``
and gradient mode, so repeated calls never retrace). The forward pass is our XLA FFI kernel on
CPU, our CUDA kernel on a CUDA device where the package was built with it, and XLA's own SVD on
every other platform (``jax.lax.platform_dependent``); derivatives come from ``jax.custom_jvp``
rules in :mod:`rrae_fast._svd_grad`, so forward and reverse mode both work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import ArrayLike, Float, Int

from . import _checks, _forward, _native, _resolvent, _svd_grad

# ===========================================================================================
# Derivative rules. k is an int32 array of the batch shape (possibly traced); max_k is static.
# ===========================================================================================


def _jvp_factors(a, k, max_k, init, method, gradient):
    # Exact mode needs every singular triplet (the coupling with the discarded spectrum);
    # tangent mode treats everything beyond k as null space. The factors come through _tsvd
    # itself, so that the rules can be differentiated again (Hessians, jacfwd of grad).
    if gradient == "exact":
        r = min(a.shape[-2:])
        full = method if method in ("dense", "gram") else "auto"  # auto: gram or dense, k = r
        return _tsvd(a, jnp.full(a.shape[:-2], r, jnp.int32), None, r, full, "exact")
    return _tsvd(a, k, init, max_k, method, "tangent")


def _backward_solver(a, max_k: int, method: str) -> str | None:
    """How exact derivatives get the discarded spectrum's coupling (rrae_fast._resolvent):

    ``"cg"`` (solves by CG) where the forward pass iterates; ``"gram"`` (the short side's
    projected Gram matrix, one native call) for small float32 matrices and small k where the
    forward pass takes the Gram path (``_resolvent.prefer_gram_solves``); ``None`` (a full
    SVD) otherwise. Where the forward pass is LAPACK's SVD (float64, ``method="dense"``) its
    cost does not depend on k, and one full SVD for primal and tangent is cheaper.
    """
    m, n = a.shape[-2:]
    if method == "iterative" or (method == "auto" and _native.prefer_iterative(m, n, max_k)):
        return "cg"
    forward_gram = a.dtype == jnp.float32 and (
        method == "gram" or (method == "auto" and _native.prefer_gram(m, n, max_k + 1))
    )
    if forward_gram and _resolvent.prefer_gram_solves(m, n, max_k):
        return "gram"
    return None


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _tsvd(a, k, init, max_k: int, method: str, gradient: str) -> tuple[Array, Array, Array]:
    return _forward.factors(a, k, max_k, init, method)


def _cut(k, max_k, u, s, vt):
    """The first max_k columns, zero beyond k."""
    keep = _forward.keep_mask(k, max_k)
    zero = jnp.zeros((), u.dtype)
    return (
        jnp.where(keep[..., None, :], u[..., :max_k], zero),
        jnp.where(keep, s[..., :max_k], zero),
        jnp.where(keep[..., :, None], vt[..., :max_k, :], zero),
    )


def _solved_tangent(a, k, max_k, u, s, vt, da, solver, solvable=None, gap_checked=False):
    """Tangent of the top-k factors from the solves (no full SVD), width max_k."""
    omega, x, y = _resolvent.coupling(a, u, s, vt, k, da, solvable, solver, gap_checked)
    blocks = (omega, jnp.swapaxes(x, -1, -2), jnp.swapaxes(y, -1, -2))
    return _svd_grad.truncated_svd_jvp(u, s, vt, da, max_k, complement=blocks)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _attempt(
    a, k, init, max_k: int, method: str, solver: str
) -> tuple[Array, Array, Array, Array]:
    """The forward pass without a fallback after an iteration (rrae_fast._forward.attempt),
    differentiable where it converged: the derivative rules take the full SVD only when it did
    not, once for primal and tangent, instead of after the forward pass's own fallback."""
    return _forward.attempt(a, k, max_k, init, method)


@_attempt.defjvp
def _attempt_jvp(max_k, method, solver, primals, tangents):
    (a, k, init), (da, _, _) = primals, tangents
    u, s, vt, converged = _attempt(a, k, init, max_k, method, solver)
    du, ds, dvt = _cut(k, max_k, *_solved_tangent(a, k, max_k, u, s, vt, da, solver))
    return (u, s, vt, converged), (du, ds, dvt, np.zeros(converged.shape, jax.dtypes.float0))


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


@_tsvd.defjvp
@_scale_invariant(_rescale_factors)
def _tsvd_jvp(max_k, method, gradient, primals, tangents):
    (a, k, init), (da, _, _) = primals, tangents  # k and the warm start carry no derivative
    solver = _backward_solver(a, max_k, method) if gradient == "exact" else None

    def by_rule():  # the factors with all columns, and the dense rule
        u, s, vt = _jvp_factors(a, k, max_k, init, method, gradient)
        du, ds, dvt = _svd_grad.truncated_svd_jvp(u, s, vt, da, max_k)
        return _cut(k, max_k, u, s, vt), _cut(k, max_k, du, ds, dvt)

    def by_attempt():  # the forward pass at k (k + 1 for the Gram solves), then the solves
        if solver == "gram":
            u, s, vt, solvable = _gram_forward(a, k, init, max_k, method)
            solved = lambda: _solved_tangent(a, k, max_k, u, s, vt, da, solver, solvable, True)
        else:
            u, s, vt, converged = _attempt(a, k, init, max_k, method, solver)
            solvable = _resolvent.every_member(jnp.all(converged))
            solved = lambda: _solved_tangent(a, k, max_k, u, s, vt, da, solver)

        def by_solves():
            return (u, s, vt), solved()

        def by_full_svd():  # the iteration gave up, or a tie: one full SVD for both
            return _lean_full_tsvd_jvp(a, k, max_k, init, method, da)

        (u, s, vt), (du, ds, dvt) = jax.lax.cond(solvable, by_solves, by_full_svd)
        return _cut(k, max_k, u, s, vt), _cut(k, max_k, du, ds, dvt)

    if solver == "gram":
        return _cpu_only(a, by_attempt, by_rule)
    return by_attempt() if solver else by_rule()


def _cpu_only(a, on_cpu, elsewhere):
    """``on_cpu()`` on CPU, where the Gram solves' kernel is; ``elsewhere()`` on other
    platforms (both return the same structure)."""
    return jax.lax.platform_dependent(a, cpu=lambda _: on_cpu(), default=lambda _: elsewhere())


def _saved_for_reverse(factors):
    """The full factors, named for the rematerialisation policy below."""
    return tuple(checkpoint_name(x, "full_factors") for x in factors)


def _full_tsvd_jvp(a, k, max_k, init, method, da):
    u, s, vt = _saved_for_reverse(_jvp_factors(a, k, max_k, init, method, "exact"))
    tangent = _svd_grad.truncated_svd_jvp(u, s, vt, da, max_k)
    return (u[..., :max_k], s[..., :max_k], vt[..., :max_k, :]), tangent


def _product(u: Array, s: Array, vt: Array) -> Array:
    return (u * s[..., None, :]) @ vt


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _rank_reduce(a, k, init, max_k: int, method: str, gradient: str) -> Array:
    return _product(*_forward.factors(a, k, max_k, init, method))


@_rank_reduce.defjvp
@_scale_invariant(_rescale_product)
def _rank_reduce_jvp(max_k, method, gradient, primals, tangents):
    (a, k, init), (da, _, _) = primals, tangents  # k and the warm start carry no derivative
    solver = _backward_solver(a, max_k, method) if gradient == "exact" else None
    if solver == "gram":
        return _cpu_only(
            a,
            lambda: _rank_reduce_jvp_by_gram(a, k, init, max_k, method, da),
            lambda: _full_rank_reduce_jvp(a, k, max_k, init, method, gradient, da),
        )
    if solver:
        u, s, vt, converged = _attempt(a, k, init, max_k, method, solver)  # zero beyond k
        solvable = jnp.all(converged) & _resolvent.use_solves(a, u, s, vt, k, solver)
        solvable = _resolvent.every_member(solvable) & _kept_apart(a, s, k)

        def by_solves():
            # dA_k = U Ω Vᵀ + X Σ Vᵀ + U Σ Yᵀ, with X and Y as rows: two products of width k.
            omega, x, y = _resolvent.coupling(a, u, s, vt, k, da, solvable, solver)
            st = _resolvent.stable_singular_values(s, *a.shape[-2:])[..., :, None]
            tangent = u @ (omega @ vt + st * y) + jnp.swapaxes(st * x, -1, -2) @ vt
            return _product(u, s, vt), tangent

        # The iteration gave up (then one full SVD gives primal and tangent), or the rank is
        # below k or the solves would cost more (the dense rule's convention).
        def by_full_svd():
            return _lean_full_rank_reduce_jvp(a, k, max_k, init, method, "exact", da)

        return jax.lax.cond(solvable, by_solves, by_full_svd)
    return _full_rank_reduce_jvp(a, k, max_k, init, method, gradient, da)


def _kept_apart(a, s, k):
    """One flag for the batch: no tie inside any member's kept set, where the solves' rule for
    ``rank_reduce`` serves (its second derivative needs the full-SVD rule at such a tie)."""
    m, n = a.shape[-2:]
    return _resolvent.every_member(jnp.all(_resolvent.no_kept_ties(s, k, m, n)))


def _gram_forward(a, k, init, max_k, method):
    """The forward pass at k + 1 for the Gram solves: the factors of width max_k (zero beyond
    k) and whether the solves apply (every kept σ nonzero, no tie across the cut:
    σ_k² − σ_{k+1}² > 2τ·σ_1²), one flag for the batch."""
    m, n = a.shape[-2:]
    width = min(max_k + 1, min(m, n))
    u, s, vt, converged = _attempt(a, jnp.minimum(k + 1, width), init, width, method, "gram")
    solvable = (
        jnp.all(converged)
        & _resolvent.all_kept_nonzero(s, k, m, n)
        & jnp.all(_resolvent.gram_gap_ok(s, k, m, n))
    )
    return (*_cut(k, max_k, u, s, vt), _resolvent.every_member(solvable))


def _rank_reduce_jvp_by_gram(a, k, init, max_k, method, da):
    """The exact rule for small matrices: the forward pass at k + 1 (σ_{k+1} for the check of
    the gap), the tangent from the Gram solves; one full SVD where the gap is a tie."""
    u, s, vt, solvable = _gram_forward(a, k, init, max_k, method)
    solvable = solvable & _kept_apart(a, s, k)

    def by_solves():
        return _product(u, s, vt), _resolvent.rank_reduce_tangent_by_gram(a, u, s, vt, k, da)

    def by_full_svd():
        return _lean_full_rank_reduce_jvp(a, k, max_k, init, method, "exact", da)

    return jax.lax.cond(solvable, by_solves, by_full_svd)


def _full_rank_reduce_jvp(a, k, max_k, init, method, gradient, da):
    u, s, vt = _saved_for_reverse(_jvp_factors(a, k, max_k, init, method, gradient))
    keep = _forward.keep_mask(k, s.shape[-1])
    if gradient != "exact":
        primal = _product(u * keep[..., None, :].astype(u.dtype), s, vt)
        return primal, _svd_grad.rank_reduce_jvp(u, s, vt, da, keep, max_k)
    # Written through the kept subspace, so that differentiating the rule again stays exact
    # where singular values tie on one side of the cut (the factors' derivative inside a tied
    # block is one frame's): the primal as U_K U_Kᵀ A to first order, the tangent likewise.
    still = jax.lax.stop_gradient
    u_k = u[..., :max_k] * keep[..., None, :max_k].astype(u.dtype)
    primal = _product(still(u_k), still(s[..., :max_k]), still(vt[..., :max_k, :]))
    projected = lambda a, u_k: u_k @ (jnp.swapaxes(u_k, -1, -2) @ a)
    primal = primal + _svd_grad.change(projected, a, u_k)
    return primal, _svd_grad.rank_reduce_jvp_by_subspace(a, u, s, vt, da, keep, max_k)


# The dense rules as the fallback branch of a lax.cond: in reverse mode every residual of either
# branch is an output of the cond, allocated (uninitialised) in the branch that did not run, and
# the dense rule's are many r x r arrays. Rematerialised, they keep only the full factors.
_SAVE_FACTORS = jax.checkpoint_policies.save_only_these_names("full_factors")
_lean_full_rank_reduce_jvp = jax.checkpoint(
    _full_rank_reduce_jvp, policy=_SAVE_FACTORS, static_argnums=(2, 4, 5)
)
_lean_full_tsvd_jvp = jax.checkpoint(_full_tsvd_jvp, policy=_SAVE_FACTORS, static_argnums=(2, 4))

_STATIC = ("max_k", "method", "gradient")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _truncated_svd_jit(a, k, init, max_k, method, gradient) -> tuple[Array, Array, Array]:
    k = jnp.broadcast_to(k, a.shape[:-2]).astype(jnp.int32)
    return _tsvd(a, k, jax.lax.stop_gradient(init), max_k, method, gradient)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _rank_reduce_jit(a, k, init, max_k, method, gradient) -> Array:
    k = jnp.broadcast_to(k, a.shape[:-2]).astype(jnp.int32)
    return _rank_reduce(a, k, jax.lax.stop_gradient(init), max_k, method, gradient)


# ===========================================================================================
# Public API
# ===========================================================================================


def truncated_svd(
    a: Float[ArrayLike, "*batch m n"],
    k: int | Int[Array, ""],
    *,
    max_k: int | None = None,
    method: str = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
    gradient: str = "exact",
    check_finite: bool = False,
) -> tuple[Float[Array, "*batch m k"], Float[Array, "*batch k"], Float[Array, "*batch k n"]]:
    """The ``k`` largest singular triplets of a (batch of) matrices.

    Works eagerly and under ``jit``, ``vmap`` (any ``in_axes``), ``grad``, ``jvp``,
    ``jacfwd``/``jacrev`` and their compositions. On CPU the forward pass runs rrae_fast's native
    kernel, on a CUDA device its CUDA kernel (where built; :func:`rrae_fast.cuda_status`);
    elsewhere it runs XLA's SVD and keeps the top ``k``, with the same results and the same
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
        k: number of triplets, a Python int with ``1 <= k <= min(m, n)``; or, together with
            ``max_k``, an int with ``1 <= k <= max_k`` that may be traced (e.g. the adaptive
            bottleneck of an aRRAE): changing it then never recompiles.
        max_k: static width of the outputs when ``k`` may vary; columns beyond ``k`` are zero
            and carry zero derivative. Default: ``k`` (which must then be a concrete int).
        method: ``"auto"`` (default) picks per shape between ``"dense"`` (LAPACK's SVD, cost
            independent of k), ``"iterative"`` (randomized subspace iteration stopped by a
            residual test that enforces the contract above, falling back to dense if it does
            not converge within its budget) and, for float32 with ``min(m, n) <= 256``,
            ``"gram"`` (the float64 Gram matrix of the smaller side and a tridiagonal
            eigensolver, in cache: the fast path for small and tall-skinny matrices; float32
            only; asked for explicitly it also runs on larger matrices, at a cost that grows
            like ``min(m, n)³``). Where it iterates, ``"auto"`` falls back to ``"gram"`` when
            that is admissible. :func:`diagnose` shows the choice.
        init: optional warm start, [..., m, c] (or [m, c] for every batch member) with
            ``1 <= c <= min(m, n)``, e.g. the previous training step's ``u``. It only seeds the
            iterative path; the results meet the contract whatever it holds (a NaN or
            degenerate basis is ignored or repaired). It carries no derivative.
        gradient: ``"exact"`` (default) or ``"tangent"``.
        check_finite: raise if ``a`` has NaN or Inf entries. By default a matrix with such
            entries gets NaN in all its outputs and the other batch members are unaffected.

    Returns:
        ``(u, s, vt)``: ``u`` [..., m, k] with orthonormal columns, ``s`` [..., k] descending
        and ≥ 0, ``vt`` [..., k, n] with orthonormal rows (``max_k`` in place of ``k`` when
        given, with zeros beyond ``k``).

    Raises:
        TypeError: ``a`` is not floating point, or ``k`` is neither an int nor (with
            ``max_k``) a traced integer scalar.
        ValueError: ``a.ndim < 2``, an axis of ``a`` is empty, ``k`` or ``max_k`` is out of
            range, an unknown ``gradient`` or ``method``, a malformed ``init``, or
            (``check_finite=True``) a non-finite entry. A traced ``k`` outside ``[1, max_k]``
            raises when the computation runs.

    Examples:
        >>> import jax.numpy as jnp
        >>> import rrae_fast
        >>> a = jnp.array([[3.0, 0.0], [0.0, -2.0], [0.0, 0.0]])
        >>> u, s, vt = rrae_fast.truncated_svd(a, 1)
        >>> u.shape, s.tolist(), vt.shape
        ((3, 1), [3.0], (1, 2))
    """
    a, k, init, dtype, static = _prepare(
        "truncated_svd", a, k, max_k, method, init, gradient, check_finite
    )
    u, s, vt = _truncated_svd_jit(a, k, init, **static)
    return u.astype(dtype), s.astype(dtype), vt.astype(dtype)


def rank_reduce(
    a: Float[ArrayLike, "*batch m n"],
    k: int | Int[Array, ""],
    *,
    max_k: int | None = None,
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
        k: rank, a Python int with ``1 <= k <= min(m, n)``, or a possibly traced int with
            ``1 <= k <= max_k`` when ``max_k`` is given (no recompilation when it changes).
        max_k: static upper bound on ``k``; required for a traced ``k``.
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
    a, k, init, dtype, static = _prepare(
        "rank_reduce", a, k, max_k, method, init, gradient, check_finite
    )
    return _rank_reduce_jit(a, k, init, **static).astype(dtype)


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
        method: ``"auto"``, ``"dense"``, ``"iterative"`` or ``"gram"``.
        init: optional warm start [..., m, c].

    Returns:
        ``{"path": [...] array of str, "passes": [...] int array}``. ``passes`` counts the
        iterative path's products with ``A`` or ``Aᵀ`` (its random sketch included; 0 on the
        dense path); a cold start that converges at its first test needs 4, a warm start 2 or 3
        (one more, of width 1, where flat Ritz values first had the k-th pair checked alone).
        A path is one of
        ``"dense"``, ``"iterative"``, ``"iterative_then_dense"`` (did not converge within its
        budget; the dense result was returned), ``"gram"``, ``"iterative_then_gram"`` (the
        Gram path's result after an iteration that did not converge) or ``"non_finite"`` (NaN
        output). A Gram-path result that fails its own checks is redone on the dense path and
        reported as such.
    """
    a, k, init, _, static = _prepare("diagnose", a, k, None, method, init, "exact", False)
    cpu = jax.devices("cpu")[0]
    a = jax.device_put(a, cpu)
    init = None if init is None else jax.device_put(init, cpu)
    ks = jnp.full(a.shape[:-2], k, jnp.int32)
    info = np.asarray(_forward.ffi_call(a, ks, static["max_k"], init, static["method"])[3])
    return {"path": np.array(_forward.PATHS)[info[..., 0]], "passes": info[..., 1]}


def _prepare(fn, a, k, max_k, method, init, gradient, check_finite):
    a, dtype = _checks.check_matrix(a, fn)
    k, max_k = _checks.check_rank(k, max_k, a.shape, fn)
    method = _checks.check_method(method, fn, a.dtype)
    gradient = _checks.check_gradient(gradient, fn)
    init = _checks.check_init(init, a, fn)
    if check_finite:
        a = _checks.check_finite(a, fn)
    static = {"max_k": max_k, "method": method, "gradient": gradient}
    return a, jnp.asarray(k, jnp.int32), init, dtype, static
