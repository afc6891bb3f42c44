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
    optimizer: optax.GradientTransformation, mode: str = "train", max_traces: int | None = None
) -> Callable:
    """A jitted training step `(model, opt_state, x, k) → (model, opt_state, loss)`.

    Args:
        optimizer: any Optax gradient transformation (the paper uses AdaBelief).
        mode: `"train"` or `"infer"` (see :func:`trainable`).
        max_traces: if set, tracing the step more often than this raises an error (a guard
            against silent recompilation, e.g. a Python int passed as `k`).

    Returns:
        The step function. `x` is a batch `[batch, *sample_shape]`; `k` an int32 scalar array
        (pass the same dtype every time: a Python int would retrace per value).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def step(model, opt_state, x: Array, k: Array):
        params, static = eqx.partition(model, trainable(model, mode))

        def objective(p):
            return eqx.combine(p, static).loss(x, k, mode)

        loss, grads = jax.value_and_grad(objective)(params)
        # Optax mixes int32 step counts with float moments; run it under the standard
        # promotion rules whatever the caller's setting.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        return eqx.combine(params, static), opt_state, loss

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
