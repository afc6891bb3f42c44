"""Which route the derivative of the ops takes: decided here, and only here.

Routes (each is one function of :mod:`rrae_fast.svd._rules`):

``"tangent"``
    ``gradient="tangent"``: the rule on the top-k factors alone (no coupling with the discarded
    spectrum).
``"full_svd"``
    One full thin SVD gives primal and tangent together (the dense rule); the route of the exact
    derivative wherever the forward pass costs as much as a full SVD anyway.
``"cg"``
    The forward pass (an iteration, without its own fallback) and the coupling with the
    discarded spectrum by conjugate gradients (:mod:`rrae_fast.svd._solves`).
``"gram"``
    CPU, small float32 matrices: the forward pass at k + 1 (on the Gram path) and the coupling
    by the native shifted Gram solves.

:func:`routes` decides from what is static (shape, dtype, ``max_k``, method, gradient) for each
platform, reading each kernel's own policy; :func:`accept` decides, from the forward pass's
outcome, whether a solve route may go on: where it says no (an iteration that did not converge,
a kept singular value at zero, solves dearer than a full SVD, a tie at the cut or, for
``rank_reduce``, inside the kept set), the route falls back to ``"full_svd"`` for primal and
tangent alike. That is the only fallback after an unconverged iteration in the derivative: the
forward pass's own (the CPU kernel's dense path, the CUDA kernel's redo in
:mod:`rrae_fast.svd._forward`) never runs under a derivative.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jax import Array

from . import _native, _solves
from ._spectrum import all_kept_nonzero, gap_above_ties, no_kept_ties

Route = Literal["tangent", "full_svd", "cg", "gram"]
#: The platforms with a route of their own; "default" is every other one (XLA's SVD).
PLATFORMS = ("cpu", "cuda", "default")


def prefer_gram_solves(m: int, n: int, max_k: int) -> bool:
    """Whether the exact derivative of a small m x n matrix at rank max_k should take the Gram
    solves rather than one full SVD for primal and tangent (the solves come on top of the
    forward pass at k + 1, the full SVD replaces it). With p = min(m, n), the solves' cost grows
    with k (one shifted solve per kept column, after one tridiagonal reduction of the short
    side's Gram matrix) and the full SVD's does not, so the solves win at small k and lose as k
    nears p/3 (the measured crossover is in benchmarks/RESULTS.md, "The Gram solves against one
    full SVD").
    """
    p = min(m, n)
    return 32 <= p <= _solves.GRAM_SOLVE_MAX_SIDE and 3 * max_k <= p


def route(m: int, n: int, dtype, max_k: int, method: str, gradient: str, platform: str) -> Route:
    """The route of the derivative for an m x n matrix of ``dtype`` at rank ``max_k`` on
    ``platform`` ("cpu", "cuda" or "default").

    The exact derivative solves where the forward pass iterates (the kernel's own policy for
    ``method="auto"``), takes the Gram solves where the CPU forward pass takes the Gram path
    and :func:`prefer_gram_solves` holds, and takes one full SVD otherwise: where the forward
    pass is a full SVD (LAPACK's or cuSOLVER's) its cost does not depend on k, and one full SVD
    for primal and tangent is cheaper than that plus solves. On other platforms (XLA's SVD)
    the CPU's route is taken where it runs there.
    """
    if gradient == "tangent":
        return "tangent"
    if platform == "cpu":
        if method == "iterative" or (method == "auto" and _native.prefer_iterative(m, n, max_k)):
            return "cg"
        gram_forward = jnp.dtype(dtype) == jnp.float32 and (
            method == "gram" or (method == "auto" and _native.prefer_gram(m, n, max_k + 1))
        )
        if gram_forward and prefer_gram_solves(m, n, max_k):
            return "gram"
        return "full_svd"
    if platform == "cuda":
        # The CUDA kernel treats "gram" as "auto"; the Gram solves are a CPU kernel.
        kernel_method = "auto" if method == "gram" else method
        if method == "iterative" or _native.cuda_iterates(m, n, max_k, dtype, kernel_method):
            return "cg"
        return "full_svd"
    # Elsewhere the forward pass is XLA's SVD and every route but the Gram solves (a CPU kernel)
    # runs; the CPU's is taken, because platforms whose routes differ need a platform_dependent,
    # and in reverse mode outside jit that keeps the residuals of every branch (for the CG route
    # beside the full-SVD one, a second set of full factors).
    on_cpu = route(m, n, dtype, max_k, method, gradient, "cpu")
    return "full_svd" if on_cpu == "gram" else on_cpu


def routes(m: int, n: int, dtype, max_k: int, method: str, gradient: str) -> dict[str, Route]:
    """:func:`route` for each platform this build can run on (``"cuda"`` with the CUDA
    module only)."""
    platforms = PLATFORMS if _native.cuda_available() else ("cpu", "default")
    return {p: route(m, n, dtype, max_k, method, gradient, p) for p in platforms}


def forward_width(chosen: Route, m: int, n: int, max_k: int) -> int:
    """Columns the forward pass of a solve route computes: max_k, and one more for the Gram
    solves (σ_{k+1}, for the check of the gap)."""
    return min(max_k + 1, min(m, n)) if chosen == "gram" else max_k


def accept(
    chosen: Route,
    op: Literal["truncated_svd", "rank_reduce", "attempt"],
    a: Array,
    u: Array,
    s: Array,
    vt: Array,
    k: Array,
    converged: Array,
) -> Array:
    """Whether the solve route ``chosen`` goes on after its forward pass, one flag for the batch
    (under ``vmap`` too: a batched condition would run the fallback for every member).

    Args:
        chosen: ``"cg"`` or ``"gram"``.
        op: the op being differentiated; ``rank_reduce``'s solves weigh each kept triplet by its
            own σ_i, right to first order, and its second derivative at a tie inside the kept
            set needs the full-SVD route's form through the kept subspace. ``"attempt"``: the
            forward pass of a solve route, differentiated again; the gap at its own cut is not
            known (the Gram kernel checks it itself).
        a: [..., m, n] the input.
        u, s, vt: the forward pass's factors, zero beyond k, of :func:`forward_width` columns
            (the Gram route's carry σ_{k+1}).
        k: [...] int32.
        converged: [...] bool, False where the iteration did not converge.

    Returns:
        A scalar bool: False sends primal and tangent to the full-SVD route.
    """
    m, n = a.shape[-2:]
    ok = jnp.all(converged) & jnp.all(all_kept_nonzero(s, k, m, n))
    if chosen == "gram":
        if op != "attempt":
            ok = ok & jnp.all(gap_above_ties(s, k, m, n))
    else:
        ok = ok & _solves.worth_solving(a, u, s, vt, k)
    if op == "rank_reduce":
        ok = ok & jnp.all(no_kept_ties(s, k, m, n))
    return _solves.every_member(ok)
