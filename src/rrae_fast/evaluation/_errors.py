"""The relative reconstruction error in percent, over a whole set at once, in float64."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ._batching import DEFAULT_BATCH_SIZE, batch_slices


def _as_float64(a: ArrayLike) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _ratio_percent(residual_sq: float, reference_sq: float) -> float:
    if reference_sq == 0.0:
        raise ValueError("the reference set is all zeros: the relative error is undefined")
    return 100.0 * float(np.sqrt(residual_sq / reference_sq))


def relative_error(x_hat: ArrayLike, x: ArrayLike) -> float:
    """`100·‖x̂ − x‖_F/‖x‖_F` with the norms taken over every entry at once.

    This is the error of a whole set (not a mean of per-sample errors), accumulated in float64
    whatever the input dtype.

    Args:
        x_hat: the approximation, shape `[n, ...]`.
        x: the reference, same shape.

    Returns:
        The error in percent, a Python float.
    """
    x_hat = _as_float64(x_hat)
    x = _as_float64(x)
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: x_hat {x_hat.shape} and x {x.shape}")
    return _ratio_percent(float(np.sum((x_hat - x) ** 2)), float(np.sum(x**2)))


def reconstruction_error(
    reconstruct: Callable[[Any], Array],
    x: Array | np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """`relative_error(reconstruct(x), x)` with `reconstruct` run batch-wise.

    The squared norms are summed batch by batch in float64, which gives the whole-set error
    without holding every reconstruction in memory.

    Args:
        reconstruct: maps a batch `[b, ...]` to its reconstruction `[b, ...]`; it must treat
            samples independently (true at inference, SPEC §1.4).
        x: the set, shape `[n, ...]` (samples in the first axis).
        batch_size: samples per call; the remainder batch is included.

    Returns:
        The error in percent over the whole set, a Python float.
    """
    residual_sq = 0.0
    reference_sq = 0.0
    for s in batch_slices(len(x), batch_size):
        xb = _as_float64(x[s])
        rb = _as_float64(reconstruct(x[s]))
        if rb.shape != xb.shape:
            raise ValueError(f"reconstruct returned shape {rb.shape} for a batch of {xb.shape}")
        residual_sq += float(np.sum((rb - xb) ** 2))
        reference_sq += float(np.sum(xb**2))
    return _ratio_percent(residual_sq, reference_sq)
