"""The public ops: ``truncated_svd``, ``rank_reduce`` and ``diagnose``.

Each op validates its input (:mod:`rrae_fast.svd._checks`), then runs one jitted
implementation, cached per shape, dtype, ``k`` and gradient mode, so that repeated calls never
retrace. The forward pass is the XLA FFI kernel on CPU, the CUDA kernel on a CUDA device where
the package was built with it, and XLA's own SVD on every other platform
(:mod:`rrae_fast.svd._forward`); derivatives come from the ``jax.custom_jvp`` rules of
:mod:`rrae_fast.svd._rules`, so forward and reverse mode both work.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import PartitionSpec
from jaxtyping import ArrayLike, Float, Int

from . import _checks, _forward, _rules, _sharded

#: The forward pass's path choice (see `truncated_svd`).
Method = Literal["auto", "dense", "iterative", "gram"]
#: The derivative rule (see `truncated_svd`).
Gradient = Literal["exact", "tangent"]

_STATIC = ("max_k", "method", "gradient")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _truncated_svd_jit(a, k, init, max_k, method, gradient) -> tuple[Array, Array, Array]:
    k = jnp.broadcast_to(k, a.shape[:-2]).astype(jnp.int32)
    return _rules.tsvd(a, k, jax.lax.stop_gradient(init), max_k, method, gradient)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _rank_reduce_jit(a, k, init, max_k, method, gradient) -> Array:
    k = jnp.broadcast_to(k, a.shape[:-2]).astype(jnp.int32)
    return _rules.rank_reduce(a, k, jax.lax.stop_gradient(init), max_k, method, gradient)


# ===========================================================================================
# Public API
# ===========================================================================================


def truncated_svd(
    a: Float[ArrayLike, "*batch m n"],
    k: int | Int[Array, ""],
    *,
    max_k: int | None = None,
    method: Method = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
    gradient: Gradient = "exact",
    check_finite: bool = False,
    axis_name: str | None = None,
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
    rank deficiency give finite values; see :mod:`rrae_fast.svd._spectrum` for the thresholds.
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
        axis_name: inside ``jax.shard_map``, the mesh axis over which the rows of one matrix
            are split: ``a`` is this device's block of rows ``[m_d, n]`` (blocks in device
            order), ``k`` is checked against the whole matrix, and the result is this
            device's part of the whole matrix's: ``u`` [m_d, k] (its rows), ``s`` and ``vt``
            the same on every device. Computed without gathering ``a``: by subspace
            iteration with all-reduces of ``[b, n]`` blocks (b ≈ k + 8), or by TSQR (a QR of
            each block, one all-reduce of the ``[min(m_d, n), n]`` triangular factors), chosen
            by ``method`` as on one device; with the one-device derivatives. ``method``
            ``"auto"``, ``"dense"`` or ``"iterative"``, no ``init``, ``gradient="exact"``, no
            ``check_finite`` (a NaN or Inf in any device's rows gives NaN outputs on every
            device). See :mod:`rrae_fast.svd._sharded`. Without
            ``axis_name``, an input whose type says its rows are split (sharded over mesh axes
            of type Explicit) takes the same route inside ``shard_map`` over those axes; its
            outputs keep that split of the rows.

    Returns:
        ``(u, s, vt)``: ``u`` [..., m, k] with orthonormal columns, ``s`` [..., k] descending
        and ≥ 0, ``vt`` [..., k, n] with orthonormal rows (``max_k`` in place of ``k`` when
        given, with zeros beyond ``k``).

    Raises:
        TypeError: ``a`` is not floating point, or ``k`` is neither an int nor (with
            ``max_k``) a traced integer scalar.
        ValueError: ``a.ndim < 2``, an axis of ``a`` is empty, ``k`` or ``max_k`` is out of
            range, an unknown ``gradient`` or ``method``, a malformed ``init``, or
            (``check_finite=True``) a non-finite entry. A traced ``k`` cannot be checked
            without stopping the computation for the host: outside ``[1, max_k]`` it is
            treated as a non-finite input, NaN in every output and derivative, not an error.

    Examples:
        >>> import jax.numpy as jnp
        >>> import rrae_fast
        >>> a = jnp.array([[3.0, 0.0], [0.0, -2.0], [0.0, 0.0]])
        >>> u, s, vt = rrae_fast.truncated_svd(a, 1)
        >>> u.shape, s.tolist(), vt.shape
        ((3, 1), [3.0], (1, 2))
    """
    if axis_name is not None:
        a, k, dtype, max_k, rows = _prepare_split(
            "truncated_svd", a, k, max_k, method, init, gradient, check_finite, axis_name
        )
        u, s, vt = _sharded.truncated_svd(a, k, max_k, axis_name, rows, method)
        return u.astype(dtype), s.astype(dtype), vt.astype(dtype)
    a, how = _typed_split(a)
    if how is not None:
        return _split_by_type(
            "truncated_svd", a, k, max_k, method, init, gradient, check_finite, how
        )
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
    method: Method = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
    gradient: Gradient = "exact",
    check_finite: bool = False,
    axis_name: str | None = None,
) -> Float[Array, "*batch m n"]:
    """The best rank-``k`` approximation ``A_k = U diag(s) Vt`` of a (batch of) matrices.

    This is the operation a Rank Reduction Autoencoder applies to its latent matrix. Its
    derivative is the self-adjoint cross-gap formula (see :mod:`rrae_fast.svd._formulas`): repeated
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
        axis_name: as in :func:`truncated_svd`: this device's rows ``[m_d, n]`` of a matrix
            split by rows over that mesh axis (inside ``jax.shard_map``), and its rows of the
            whole matrix's rank-``k`` approximation back.

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
    if axis_name is not None:
        a, k, dtype, max_k, rows = _prepare_split(
            "rank_reduce", a, k, max_k, method, init, gradient, check_finite, axis_name
        )
        return _sharded.rank_reduce(a, k, max_k, axis_name, rows, method).astype(dtype)
    a, how = _typed_split(a)
    if how is not None:
        return _split_by_type(
            "rank_reduce", a, k, max_k, method, init, gradient, check_finite, how
        )
    a, k, init, dtype, static = _prepare(
        "rank_reduce", a, k, max_k, method, init, gradient, check_finite
    )
    return _rank_reduce_jit(a, k, init, **static).astype(dtype)


def diagnose(
    a: Float[ArrayLike, "*batch m n"],
    k: int,
    *,
    method: Method = "auto",
    init: Float[ArrayLike, "*batch m c"] | None = None,
    gradient: Gradient = "exact",
    op: Literal["rank_reduce", "truncated_svd"] = "rank_reduce",
) -> dict[str, np.ndarray]:
    """Which path the CPU kernel takes for each matrix, how many products with A it used, and
    which route the derivative takes.

    Runs the forward kernel eagerly on CPU with the same arguments as :func:`truncated_svd`.

    Args:
        a: [..., m, n] input, as for :func:`truncated_svd`.
        k: number of triplets.
        method: ``"auto"``, ``"dense"``, ``"iterative"`` or ``"gram"``.
        init: optional warm start [..., m, c].
        gradient: ``"exact"`` or ``"tangent"``, for the derivative's route.
        op: ``"rank_reduce"`` or ``"truncated_svd"``, the op whose derivative's route is shown
            (they differ only where kept singular values tie: ``rank_reduce`` then takes the
            full SVD, so that its second derivative is exact there).

    Returns:
        ``{"path": [...] array of str, "passes": [...] int array, "backward": [...] array of
        str}``. ``passes`` counts the iterative path's products with ``A`` or ``Aᵀ`` (its random
        sketch included; 0 on the dense path); a cold start that converges at its first test
        needs 4, a warm start 2 or 3 (one more, of width 1, where flat Ritz values first had the
        k-th pair checked alone). A path is one of ``"dense"``, ``"iterative"``,
        ``"iterative_then_dense"`` (did not converge within its budget; the dense result was
        returned), ``"gram"``, ``"iterative_then_gram"`` (the Gram path's result after an
        iteration that did not converge) or ``"non_finite"`` (NaN output). A Gram-path result
        that fails its own checks is redone on the dense path and reported as such.
        ``backward`` is the derivative's route on CPU, one for the whole batch:
        ``"full_svd"`` (one full SVD for primal and tangent), ``"cg"`` (the forward pass and
        conjugate-gradient solves), ``"gram"`` (the forward pass and the native shifted Gram
        solves), ``"cg_then_full_svd"`` / ``"gram_then_full_svd"`` (the solves' preconditions
        failed for some member: an iteration that did not converge, a zero or tied singular
        value, solves dearer than the full SVD) or ``"tangent"``.
    """
    if op not in ("rank_reduce", "truncated_svd"):
        raise ValueError(f"diagnose: op must be 'rank_reduce' or 'truncated_svd', got {op!r}")
    x, _, init, _, static = _prepare("diagnose", a, k, None, method, init, gradient, False)
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(x, cpu)
    init = None if init is None else jax.device_put(init, cpu)
    ks = jnp.full(x.shape[:-2], k, jnp.int32)
    info = np.asarray(_forward.ffi_call(x, ks, static["max_k"], init, static["method"])[3])
    backward = _rules.cpu_backward_route(op, x, ks, init, **static)
    return {
        "path": np.array(_forward.PATHS)[info[..., 0]],
        "passes": info[..., 1],
        "backward": np.full(info.shape[:-1], backward)[()],
    }


def _typed_split(a):
    """``(a, how)``: ``how`` is `a`'s row split from its type (Explicit mesh axes), or None.

    Columns split over Explicit axes are gathered first (``jax.sharding.reshard``): every
    route needs whole rows. Inputs that are not JAX arrays or tracers carry no sharding."""
    if not isinstance(a, (jax.Array, jax.core.Tracer)) or a.ndim < 2:
        return a, None
    spec = _sharded.typed_spec(a)
    if spec is not None and spec[-1] is not None:
        whole_rows = jax.typeof(a).sharding.update(spec=PartitionSpec(*spec[:-1], None))
        a = jax.sharding.reshard(a, whole_rows)
    return a, _sharded.typed_row_split(a)


def _split_by_type(fn, a, k, max_k, method, init, gradient, check_finite, how):
    """The op on an input whose type says its rows are split across devices: the split route
    (as with ``axis_name``) inside ``shard_map`` over those mesh axes, ``vmap`` ped over the
    batch axes. Rows keep the input's split; ``s`` and ``vt`` are replicated over the row
    axes."""
    mesh, axes, spec = how
    a, dtype = _checks.check_matrix(a, fn)
    _checks.check_gradient(gradient, fn)
    _checks.check_method(method, fn, a.dtype)
    one = jax.ShapeDtypeStruct(a.shape[-2:], a.dtype)  # each member is split alike
    how_asked = f"rows split over the mesh axes {axes} (the input's sharding)"
    _sharded.check(one, method, init, gradient, check_finite, fn, how_asked)
    k, max_k = _checks.check_rank(k, max_k, a.shape[-2:], fn)
    axis = axes[0] if len(axes) == 1 else axes
    op = {"truncated_svd": truncated_svd, "rank_reduce": rank_reduce}[fn]
    batch = tuple(spec[:-2])

    def local(a_d, k):
        f = functools.partial(op, max_k=max_k, method=method, axis_name=axis)
        for _ in batch:
            f = jax.vmap(f, in_axes=(0, None))
        return f(a_d, k)

    rows = PartitionSpec(*batch, spec[-2], None)
    if fn == "rank_reduce":
        out_specs: Any = rows
    else:
        out_specs = (rows, PartitionSpec(*batch, None), PartitionSpec(*batch, None, None))
    split = jax.shard_map(local, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=out_specs)
    out = split(a, jnp.asarray(k, jnp.int32))
    return jax.tree_util.tree_map(lambda x: x.astype(dtype), out)  # float16 in, float16 out


def _prepare_split(
    fn, a, k, max_k, method, init, gradient, check_finite, axis_name
) -> tuple[Array, Array, jnp.dtype, int, int]:
    """``_prepare`` for a matrix split by rows over the mesh axis ``axis_name`` (inside
    ``shard_map``): the rank is checked against the whole matrix's shape."""
    a, dtype = _checks.check_matrix(a, fn)
    _checks.check_gradient(gradient, fn)
    _checks.check_method(method, fn, a.dtype)
    _sharded.check(a, method, init, gradient, check_finite, fn)
    rows = _sharded.global_rows(a, axis_name)
    k, max_k = _checks.check_rank(k, max_k, (rows, a.shape[-1]), fn)
    a, k = _nan_if_out_of_range(a, k, max_k)
    return a, k, dtype, max_k, rows


def _prepare(
    fn, a, k, max_k, method, init, gradient, check_finite
) -> tuple[Array, Array, Array | None, jnp.dtype, dict[str, Any]]:
    a, dtype = _checks.check_matrix(a, fn)
    k, max_k = _checks.check_rank(k, max_k, a.shape, fn)
    method = _checks.check_method(method, fn, a.dtype)
    gradient = _checks.check_gradient(gradient, fn)
    init = _checks.check_init(init, a, fn)
    if check_finite:
        a = _checks.check_finite(a, fn)
    static = {"max_k": max_k, "method": method, "gradient": gradient}
    a, k = _nan_if_out_of_range(a, k, max_k)
    return a, k, init, dtype, static


def _nan_if_out_of_range(a: Array, k, max_k: int) -> tuple[Array, Array]:
    """``a`` and ``k`` as int32; a traced ``k`` outside ``[1, max_k]`` is brought into range
    for the kernels and ``a`` made NaN, which gives NaN outputs and derivatives as any
    non-finite input does."""
    if isinstance(k, jax.core.Tracer):
        k, bad = _checks.clamp_traced_rank(k.astype(jnp.int32), max_k)
        a = a + jnp.where(bad, jnp.nan, 0.0).astype(a.dtype)  # adds a NaN derivative too
    return a, jnp.asarray(k, jnp.int32)
