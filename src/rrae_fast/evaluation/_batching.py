"""Running a per-batch callable over a whole set, a bounded number of samples at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

DEFAULT_BATCH_SIZE = 256


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering `range(n)`, `batch_size` long except the remainder.

    Args:
        n: number of samples (at least 1).
        batch_size: samples per batch (at least 1).

    Yields:
        `slice(start, min(start + batch_size, n))` for `start = 0, batch_size, …`; the last one
        holds the remainder, so every sample is covered exactly once.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if n < 1:
        raise ValueError("the set is empty: there is nothing to evaluate")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def map_batches(
    fn: Callable[[Any], Array], x: Array | np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> Array:
    """`fn` applied batch-wise along the first axis, outputs concatenated.

    Only correct for sample-independent callables (each output row depends on its own input
    row only), which holds for encoders and decoders at inference.

    Args:
        fn: maps a batch `[b, ...]` to an output `[b, ...]`.
        x: the inputs, shape `[n, ...]` (samples in the first axis).
        batch_size: samples per call of `fn`; the remainder batch is included.

    Returns:
        The outputs, shape `[n, ...]`.
    """
    outputs = []
    for s in batch_slices(len(x), batch_size):
        out = fn(x[s])
        expected = s.stop - s.start
        if out.ndim == 0 or out.shape[0] != expected:
            raise ValueError(
                f"the callable returned shape {tuple(out.shape)} for a batch of {expected} "
                "samples; samples must be in the first axis"
            )
        outputs.append(out)
    return jnp.concatenate(outputs, axis=0)
