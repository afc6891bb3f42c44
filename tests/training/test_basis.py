"""The common final basis (Sec. 4.2) against a direct NumPy construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training import final_basis
from rrae_fast.training._basis import batch_indices


def test_batch_indices_cover_everything_once():
    batches = batch_indices(10, 4)
    assert [len(b) for b in batches] == [4, 4, 2]  # the remainder batch is included
    assert sorted(np.concatenate(batches)) == list(range(10))
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(batch_indices(10, 4)))
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(10, 0)


def _projector(u):
    return u @ u.T


def test_final_basis_matches_a_numpy_reference(getkey):
    config = ModelConfig(kind="rrae", latent_size=9, k=3, width=16, decoder_depth=1)
    model = build_model(config, (6,), key=getkey())
    x = np.asarray(jax.random.normal(getkey(), (23, 6), jnp.float32))
    basis = np.asarray(final_basis(model, x, 3, batch_size=8))
    assert basis.shape == (9, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=2e-6)  # float32 model
    blocks = []
    for idx in batch_indices(23, 8):
        y = np.asarray(model.encode(x[idx]), np.float64).T  # the paper's Y_j: [L, b]
        blocks.append(np.linalg.svd(y, full_matrices=False)[0][:, :3])
    ref = np.linalg.svd(np.concatenate(blocks, axis=1), full_matrices=False)[0][:, :3]
    np.testing.assert_allclose(_projector(basis), _projector(ref), atol=1e-5)


def test_final_basis_errors(getkey):
    config = ModelConfig(kind="rrae", latent_size=9, k=3, width=16, decoder_depth=1)
    model = build_model(config, (6,), key=getkey())
    with pytest.raises(ValueError, match="k must be"):
        final_basis(model, np.zeros((5, 6)), 10, 4)
    with pytest.raises(ValueError, match="fewer than"):
        final_basis(model, np.ones((2, 6)), 3, 1)
