"""One optimizer step: Equinox + Optax, jitted once per (model structure, stage mode).

The bottleneck `k` enters as an int32 array, so an adaptive bottleneck changes `k` from one
step to the next without recompiling. In the fine-tuning stage only the decoder is trained;
the encoder (and everything else) is held fixed and receives no update at all.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jax import Array
from jax.sharding import Mesh

from ._mesh import as_auto, batch_sharding, constrain, replicated

MODES = ("train", "infer")  # main stage (bottleneck.train) / fine-tuning (bottleneck.infer)


def trainable(model, mode: str):
    """The filter spec of the parameters a stage trains: everything, or the decoder alone.

    Args:
        model: an :class:`~rrae_fast.models.Autoencoder`.
        mode: `"train"` (every array; the stored final basis, if any, is not a parameter) or
            `"infer"` (decoder fine-tuning: the decoder's arrays only).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    nothing = jtu.tree_map(lambda _: False, model)
    if mode == "infer":
        return eqx.tree_at(lambda m: m.decoder, nothing, jtu.tree_map(eqx.is_array, model.decoder))
    spec = jtu.tree_map(eqx.is_array, model)
    if stored_basis(model) is not None:
        spec = eqx.tree_at(lambda m: m.bottleneck.basis, spec, False)
    return spec


def stored_basis(model):
    """The final basis a rank-reducing bottleneck holds (`[L, k]`), or None.

    None too for bottlenecks without a final basis (a fixed basis is a parameter, not a product
    of training).
    """
    bottleneck = model.bottleneck
    return bottleneck.basis if hasattr(bottleneck, "with_basis") else None


def init_optimizer(optimizer: optax.GradientTransformation, model, mode: str):
    """Optimizer state for the parameters `mode` trains."""
    params, _ = eqx.partition(model, trainable(model, mode))
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.init(params)


def make_step(
    optimizer: optax.GradientTransformation,
    mode: str = "train",
    max_traces: int | None = None,
    mesh: Mesh | None = None,
) -> Callable:
    """A jitted training step `(model, opt_state, x, k) → (model, opt_state, loss)`.

    Args:
        optimizer: any Optax gradient transformation (the paper uses AdaBelief).
        mode: `"train"` or `"infer"` (see :func:`trainable`).
        max_traces: if set, tracing the step more often than this raises an error (a guard
            against silent recompilation, e.g. a Python int passed as `k`).
        mesh: data parallelism over these devices: the batch is split by samples over every
            axis of the mesh, the model, the optimizer state and the loss are replicated, and
            XLA reduces the gradients across devices. The step computes what it computes on
            one device for the same global batch (the truncated SVD sees the whole latent
            matrix). Pass arrays placed on the mesh (as :func:`rrae_fast.training.fit`
            does); others are moved there by XLA.

    Returns:
        The step function. `x` is a batch `[batch, *sample_shape]` (with a mesh, `batch` a
        multiple of its device count); `k` an int32 scalar array (pass the same dtype every
        time: a Python int would retrace per value).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mesh is not None:
        mesh = as_auto(mesh)

    def step(model, opt_state, x: Array, k: Array):
        if mesh is not None:
            x = jax.lax.with_sharding_constraint(x, batch_sharding(mesh))
        params, static = eqx.partition(model, trainable(model, mode))

        def objective(p):
            return eqx.combine(p, static).loss(x, k, mode)

        loss, grads = jax.value_and_grad(objective)(params)
        # Optax mixes int32 step counts with float moments; run it under the standard
        # promotion rules whatever the caller's setting.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        model = eqx.combine(params, static)
        if mesh is not None:
            model, opt_state, loss = constrain((model, opt_state, loss), replicated(mesh))
        return model, opt_state, loss

    if max_traces is not None:
        step = eqx.debug.assert_max_traces(step, max_traces=max_traces)
    return eqx.filter_jit(step)


def param_dtype(model) -> jnp.dtype:
    """The floating dtype of the model's parameters (data are cast to it)."""
    leaves = [a for a in jtu.tree_leaves(model) if eqx.is_inexact_array(a)]
    return leaves[0].dtype if leaves else jnp.dtype(jnp.float32)


def as_k(k: int) -> Array:
    """The bottleneck as the int32 scalar array the step expects."""
    return jnp.asarray(k, jnp.int32)
