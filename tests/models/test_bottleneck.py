"""Latent operations: rank, projections, codes, sample independence, traced k."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models import FixedBasis, Identity, LearnedBasis, LinearChain, RankReduction


def _latent(getkey, b=12, length=9):
    return jax.random.normal(getkey(), (b, length))


def test_rank_reduction_train_has_rank_k_and_matches_scipy(getkey):
    z = _latent(getkey)
    bottleneck = RankReduction(9, 4)
    for k in (1, 3, 4):
        y = bottleneck.train(z, jnp.asarray(k, jnp.int32))
        s = np.linalg.svd(np.asarray(y), compute_uv=False)
        assert np.sum(s > 1e-10 * s[0]) == k
        u, sz, vt = np.linalg.svd(np.asarray(z), full_matrices=False)
        np.testing.assert_allclose(y, (u[:, :k] * sz[:k]) @ vt[:k], atol=1e-12)
    np.testing.assert_allclose(bottleneck.train(z), bottleneck.train(z, 4))


def test_rank_reduction_method_is_kept_and_gives_the_same_map(getkey):
    z = _latent(getkey)
    dense = RankReduction(9, 4, method="dense")
    np.testing.assert_allclose(dense.train(z, 3), RankReduction(9, 4).train(z, 3), atol=1e-12)
    q = jnp.linalg.qr(jax.random.normal(getkey(), (9, 2)))[0]
    assert dense.with_basis(q).method == "dense"


def test_rank_reduction_traced_k_compiles_once(getkey):
    z = _latent(getkey)
    bottleneck = RankReduction(9, 5)
    f = eqx.debug.assert_max_traces(lambda z, k: bottleneck.train(z, k), max_traces=1)
    f = jax.jit(f)
    ranks = []
    for k in (5, 4, 2, 3):
        s = np.linalg.svd(np.asarray(f(z, jnp.asarray(k, jnp.int32))), compute_uv=False)
        ranks.append(int(np.sum(s > 1e-10 * s[0])))
    assert ranks == [5, 4, 2, 3]


def test_rank_reduction_keeps_a_batch_smaller_than_k_whole(getkey):
    """An aRRAE starting from k = 64 on batches of 32 (the paper's MNIST setting): a rank
    above the batch's keeps the whole latent matrix, finite, with the identity's gradient,
    for a Python int and a traced k alike; below the batch size it truncates as before."""
    z = _latent(getkey, b=4, length=9)
    bottleneck = RankReduction(9, 8)
    train = jax.jit(lambda z, k: bottleneck.train(z, k))
    for k in (8, 5, 4):
        np.testing.assert_allclose(bottleneck.train(z, k), z, atol=1e-12)
        np.testing.assert_allclose(train(z, jnp.asarray(k, jnp.int32)), z, atol=1e-12)
    grad = jax.grad(lambda z: jnp.sum(train(z, jnp.asarray(8, jnp.int32)) * z))(z)
    np.testing.assert_allclose(grad, 2 * z, atol=1e-10)
    s = np.linalg.svd(np.asarray(train(z, jnp.asarray(3, jnp.int32))), compute_uv=False)
    assert np.sum(s > 1e-10 * s[0]) == 3


def test_rank_reduction_basis_maps_are_sample_independent(getkey):
    q = jnp.linalg.qr(jax.random.normal(getkey(), (9, 3)))[0]
    bottleneck = RankReduction(9, 5).with_basis(q)
    assert bottleneck.code_size == 3 and RankReduction(9, 5).code_size == 5
    z = _latent(getkey)
    full = bottleneck.infer(z)
    for i in (0, 5):  # a sample alone gives the same output as within its batch
        np.testing.assert_allclose(bottleneck.infer(z[i : i + 1])[0], full[i], atol=1e-13)
    np.testing.assert_allclose(full, z @ q @ q.T, atol=1e-13)
    np.testing.assert_allclose(bottleneck.from_codes(bottleneck.codes(z)), full, atol=1e-13)


def test_rank_reduction_errors():
    with pytest.raises(ValueError, match="max_k"):
        RankReduction(4, 5)
    with pytest.raises(ValueError, match="basis"):
        RankReduction(4, 2, basis=jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="no final basis"):
        RankReduction(4, 2).infer(jnp.ones((3, 4)))


def test_fixed_basis_is_orthonormal_and_receives_no_gradient(getkey):
    key = getkey()
    fixed = FixedBasis(9, 3, key=key)
    np.testing.assert_allclose(fixed.basis.T @ fixed.basis, np.eye(3), atol=1e-12)
    z = _latent(getkey)
    g = jax.grad(lambda b: jnp.sum(b.train(z) ** 2))(fixed)
    assert not np.any(g.basis)
    learned = LearnedBasis(9, 3, key=key)
    np.testing.assert_allclose(learned.weight, fixed.basis)  # starts at the fixed basis
    np.testing.assert_allclose(learned.train(z), fixed.train(z), atol=1e-12)
    g = jax.grad(lambda b: jnp.sum(b.train(z)[:, 0]))(learned)
    assert np.any(g.weight)
    assert learned.code_size == fixed.code_size == 3
    np.testing.assert_allclose(learned.from_codes(learned.codes(z)), learned.infer(z), atol=1e-12)
    with pytest.raises(ValueError, match="k must be"):
        FixedBasis(3, 4, key=key)


def test_identity_and_linear_chain(getkey):
    z = _latent(getkey)
    ident = Identity(9)
    assert ident.code_size == 9
    for f in (ident.train, ident.infer, ident.codes, ident.from_codes):
        np.testing.assert_array_equal(f(z), z)
    chain = LinearChain(9, 3, key=getkey())
    w = [layer.weight for layer in chain.layers]
    assert not np.allclose(w[0], w[1])  # each map has its own initialisation
    expected = z @ w[0].T @ w[1].T @ w[2].T
    np.testing.assert_allclose(chain.train(z), expected, rtol=1e-12)
    np.testing.assert_allclose(chain.codes(z), expected, rtol=1e-12)
    np.testing.assert_allclose(chain.infer(z), expected, rtol=1e-12)
    np.testing.assert_array_equal(chain.from_codes(z), z)
    assert chain.code_size == 9
    with pytest.raises(ValueError, match="num_layers"):
        LinearChain(9, 0, key=getkey())
