"""Data-parallel placement: batches split over a device mesh, everything else replicated.

A mesh of `d` devices trains the model a single device would train on the same global batch:
each batch `[b, ...]` is split along its first axis into `d` blocks of `b / d` samples, while
the parameters and the optimizer state are replicated, so XLA averages the gradients. The
RRAE's truncated SVD couples the samples of a batch; XLA gives it the whole latent matrix
`[b, L]` (an all-gather of `b·L` numbers per step, small beside the all-reduce of the
gradients), and the factors, hence the training, are those of the global batch.

Every array is placed with :func:`jax.make_array_from_callback`, which needs only the
process's own devices, so the same code runs in one process or in one process per host under
:func:`jax.distributed.initialize` (every process then holds the whole training set and draws
the same batches; each keeps the blocks of its own devices).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh (axis `"data"`) for data-parallel training.

    Args:
        devices: how many of `jax.devices()` to use (the first ones), or the devices
            themselves; None takes every device (of every process, under
            :func:`jax.distributed.initialize`).

    Raises:
        ValueError: more devices asked for than exist, or none.
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"asked for {devices} devices, but {len(available)} are available "
                f"({available[0].platform}); on CPU, more are made with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts"
            )
        chosen = list(available[:devices])
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is empty")
    return Mesh(np.array(chosen), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def as_auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names with every axis of type Auto.

    The step's shardings are constraints that XLA propagates (the custom call of the truncated
    SVD takes a gathered operand), which JAX's sharding-in-types (Explicit axes) would refuse.
    """
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Samples (the first axis) split over every axis of the mesh, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A copy of the whole array on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    """Raises ValueError unless `batch_size` splits evenly over the mesh's devices."""
    if batch_size % mesh.size:
        raise ValueError(
            f"{what}={batch_size} does not split over the mesh's {mesh.size} devices: "
            f"use a multiple of {mesh.size}"
        )


def place_batch(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """`x` `[b, ...]` split by samples over the mesh (`b` a multiple of the device count)."""
    x = np.asarray(x)
    check_batch_size(x.shape[0], mesh, "the batch's size")
    return jax.make_array_from_callback(x.shape, batch_sharding(mesh), lambda idx: x[idx])


def place_whole(x: Any, mesh: Mesh) -> jax.Array:
    """`x` copied whole onto every device of the mesh."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, replicated(mesh), lambda idx: x[idx])


def place_replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf of `tree` (a model, an optimizer state) replicated on the mesh.

    Leaves already replicated on this mesh are kept as they are; None returns `tree`.
    """
    if mesh is None:
        return tree
    sharding = replicated(mesh)

    def place(leaf):
        if not eqx.is_array(leaf):
            return leaf
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        return place_whole(leaf, mesh)

    return jtu.tree_map(place, tree)


def constrain(tree: Any, sharding: NamedSharding) -> Any:
    """`with_sharding_constraint` on every array leaf of `tree` (inside a jitted function)."""
    return jtu.tree_map(
        lambda leaf: (
            jax.lax.with_sharding_constraint(leaf, sharding) if eqx.is_array(leaf) else leaf
        ),
        tree,
    )


def writes_files() -> bool:
    """Whether this process writes the run's files (process 0 only under
    :func:`jax.distributed.initialize`, so that processes sharing a file system never write
    the same file twice)."""
    return jax.process_index() == 0
