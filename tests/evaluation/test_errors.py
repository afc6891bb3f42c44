"""The whole-set relative error in percent, in float64, and its batch-wise evaluation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.evaluation import reconstruction_error, relative_error


def test_known_values():
    x = np.array([[3.0, 4.0]])
    assert relative_error(np.array([[3.0, 4.5]]), x) == pytest.approx(10.0, rel=1e-15)
    assert relative_error(x, x) == 0.0
    assert relative_error(np.zeros((1, 2)), x) == pytest.approx(100.0, rel=1e-15)


def test_whole_set_not_mean_of_samples():
    """One badly reconstructed small sample barely moves the error of the set."""
    x = np.array([[1.0, 0.0], [0.0, 10.0]])
    x_hat = np.array([[2.0, 0.0], [0.0, 10.0]])
    # Per-sample errors are 100 % and 0 % (mean 50 %); the set error is 100·1/√101.
    assert relative_error(x_hat, x) == pytest.approx(100.0 / np.sqrt(101.0), rel=1e-14)


def test_float64_accumulation(rng):
    """float32 inputs give the error of their float64 values, not a float32 computation."""
    x = rng.standard_normal((64, 3, 16, 16)).astype(np.float32)
    x_hat = (x + np.float32(1e-3) * rng.standard_normal(x.shape)).astype(np.float32)
    x64, xh64 = x.astype(np.float64), x_hat.astype(np.float64)
    expected = 100.0 * np.sqrt(np.sum((xh64 - x64) ** 2) / np.sum(x64**2))
    got = relative_error(jnp.asarray(x_hat), jnp.asarray(x))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12)


def test_relative_error_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="all zeros"):
        relative_error(np.ones((2, 3)), np.zeros((2, 3)))


def _projection(rng, dim, rank):
    """An orthonormal basis W [dim, rank]; reconstruct(x) = x W Wᵀ per flattened sample."""
    w, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    return w


def test_reconstruction_error_closed_form_and_batch_independence(rng):
    x = rng.standard_normal((37, 2, 3, 4))
    w = _projection(rng, 24, 5)
    wj = jnp.asarray(w)
    sizes = []

    def reconstruct(b):
        sizes.append(b.shape[0])
        flat = jnp.asarray(b).reshape(b.shape[0], -1)
        return (flat @ wj @ wj.T).reshape(b.shape)

    flat = x.reshape(37, -1)
    # The part of x outside span(W) is what the projection loses.
    expected = 100.0 * np.linalg.norm(flat - flat @ w @ w.T) / np.linalg.norm(flat)
    assert 10.0 < expected < 100.0
    small = reconstruction_error(reconstruct, x, batch_size=7)
    assert sizes == [7, 7, 7, 7, 7, 2]  # the remainder batch is included
    large = reconstruction_error(reconstruct, x, batch_size=1000)
    assert small == pytest.approx(expected, rel=1e-12)
    assert large == pytest.approx(small, rel=1e-13)
    assert reconstruction_error(reconstruct, x) == pytest.approx(expected, rel=1e-12)


def test_reconstruction_error_matches_relative_error(rng):
    x = jnp.asarray(rng.standard_normal((20, 6)))
    reconstruct = lambda b: jnp.tanh(b)
    assert reconstruction_error(reconstruct, x, batch_size=3) == pytest.approx(
        relative_error(jnp.tanh(x), x), rel=1e-13
    )


def test_reconstruction_error_bad_input(rng):
    x = rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match="reconstruct returned shape"):
        reconstruction_error(lambda b: b[:, :2], x)
    with pytest.raises(ValueError, match="all zeros"):
        reconstruction_error(lambda b: b, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="empty"):
        reconstruction_error(lambda b: b, np.zeros((0, 4)))
