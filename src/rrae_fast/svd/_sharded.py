"""The ops on a matrix whose rows are split across devices (inside ``shard_map``).

A Rank Reduction Autoencoder's latent matrix is ``[batch, L]``: under data parallelism its rows
are split across devices, and the truncation must see the whole matrix, or the batch's common
basis would be each device's own. Here each device holds its block of rows ``A_d``
(``[m_d, n]``, the blocks stacked in device order along the named mesh axis), and gets back its
block of the global result, computed without gathering ``A``:

1. TSQR: ``A_d = Q_d R_d`` on each device; the ``R_d`` (``[min(m_d, n), n]`` each) are
   gathered (a ``psum`` of zero-padded blocks) and factored again, ``[R_1; …; R_D] = Q' R``;
   ``R`` (``[c, n]``, c = min(m, n)) has the singular values and right singular vectors of
   ``A``, and ``U_d = Q_d Q'_d U_R`` (``Q'_d`` the device's block of ``Q'``). Backward
   stable, as the one-device SVD is: the accuracy contract holds for the global matrix.
   Communication: one all-reduce of ``D · min(m_d, n) · n`` numbers, small where ``n`` (the
   latent length) is small against the rows each device holds.
2. Derivatives: the one-device rules (:mod:`rrae_fast.svd._formulas`) on the global factors,
   with a ``psum`` over the devices on every product that sums over rows, so that ``jvp``,
   ``grad`` and ``vmap`` give the one-device derivatives.

The sign convention is the one-device op's: the first largest-magnitude entry of each ``u_i``,
over all rows, is positive.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array
from jax.sharding import AbstractMesh, PartitionSpec

from . import _formulas
from ._spectrum import cut_to_rank, factor_product, keep_mask


def _row_sum(axis_name: str):
    return lambda x: jax.lax.psum(x, axis_name)


def global_factors(a: Array, axis_name: str) -> tuple[Array, Array, Array]:
    """The thin SVD of the row-stacked matrix, from this device's rows ``a`` ([m_d, n]):
    ``(u_d, s, vt)`` of shapes [m_d, c], [c], [c, n] (c = min(m, n)); ``u_d`` is this
    device's rows of U, ``s`` and ``vt`` are the same on every device."""
    q1, r1 = jnp.linalg.qr(a)  # [m_d, r], [r, n], r = min(m_d, n)
    stacked = _gather_rows(r1, axis_name)  # [D·r, n], the same on every device
    q2, r2 = jnp.linalg.qr(stacked)  # [D·r, c], [c, n]
    u_r, s, vt = jnp.linalg.svd(r2, full_matrices=False)  # [c, c], [c], [c, n]
    r = r1.shape[0]
    block = jax.lax.dynamic_slice_in_dim(q2, jax.lax.axis_index(axis_name) * r, r, axis=0)
    u, vt = _sign_convention(q1 @ (block @ u_r), vt, axis_name)
    return u, s, vt


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


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def truncated_svd(a: Array, k: Array, max_k: int, axis_name: str, rows: int):
    """This device's part of the global top-k factors: ``(u_d, s, vt)``, [m_d, max_k],
    [max_k], [max_k, n], zero beyond ``k`` (an int32 scalar, possibly traced)."""
    return cut_to_rank(k, max_k, *global_factors(a, axis_name))


@truncated_svd.defjvp
def _truncated_svd_jvp(max_k, axis_name, rows, primals, tangents):
    a, k = primals
    da, _ = tangents
    u, s, vt = global_factors(a, axis_name)
    du, ds, dvt = _formulas.truncated_svd_jvp(
        u, s, vt, da, max_k, row_sum=_row_sum(axis_name), rows=rows
    )
    return cut_to_rank(k, max_k, u, s, vt), cut_to_rank(k, max_k, du, ds, dvt)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def rank_reduce(a: Array, k: Array, max_k: int, axis_name: str, rows: int) -> Array:
    """This device's rows of the global rank-k approximation, [m_d, n]."""
    return factor_product(*cut_to_rank(k, max_k, *global_factors(a, axis_name)))


@rank_reduce.defjvp
def _rank_reduce_jvp(max_k, axis_name, rows, primals, tangents):
    a, k = primals
    da, _ = tangents
    u, s, vt = global_factors(a, axis_name)
    keep = keep_mask(k, s.shape[-1])
    primal = factor_product(*cut_to_rank(k, max_k, u, s, vt))
    tangent = _formulas.rank_reduce_jvp(
        u, s, vt, da, keep, max_k, row_sum=_row_sum(axis_name), rows=rows
    )
    return primal, tangent


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
    if method not in ("auto", "dense"):
        raise ValueError(f"{fn}: with {how}, method must be 'auto' or 'dense', got {method!r}")
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
