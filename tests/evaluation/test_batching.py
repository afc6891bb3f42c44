"""map_batches and batch_slices: every sample once, in order, with the remainder batch."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.evaluation import map_batches
from rrae_fast.evaluation._batching import batch_slices


def test_slices_cover_with_remainder():
    assert [(s.start, s.stop) for s in batch_slices(17, 5)] == [
        (0, 5),
        (5, 10),
        (10, 15),
        (15, 17),
    ]
    assert [(s.start, s.stop) for s in batch_slices(3, 256)] == [(0, 3)]


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, None])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        list(batch_slices(4, batch_size))


def test_empty_set():
    with pytest.raises(ValueError, match="empty"):
        map_batches(lambda b: b, np.zeros((0, 3)))


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_map_batches_matches_whole_call(rng, batch_size):
    x = rng.standard_normal((23, 2, 3))
    sizes = []

    def fn(b):
        sizes.append(b.shape[0])
        return jnp.sum(jnp.asarray(b) ** 2, axis=(1, 2))[:, None] * jnp.ones((1, 4))

    out = map_batches(fn, x, batch_size)
    expected = np.repeat(np.sum(x**2, axis=(1, 2))[:, None], 4, axis=1)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-14)
    assert sum(sizes) == 23 and max(sizes) <= batch_size


def test_map_batches_rejects_samples_in_last_axis(rng):
    x = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match="first axis"):
        map_batches(lambda b: jnp.asarray(b).T, x, 4)
    with pytest.raises(ValueError, match="first axis"):
        map_batches(lambda b: jnp.sum(jnp.asarray(b)), x, 4)
