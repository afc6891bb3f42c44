"""Every model family: construction, losses, penalties against their closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models import (
    KINDS,
    Autoencoder,
    ContractivePenalty,
    ModelConfig,
    SparsePenalty,
    WeakRankPenalty,
    build_model,
    relative_error_loss,
)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_and_has_a_finite_loss(kind, getkey):
    config = ModelConfig(kind=kind, latent_size=12, k=3, width=8, decoder_depth=2)
    model = build_model(config, (20,), key=getkey())
    assert isinstance(model, Autoencoder)
    x = jax.random.normal(getkey(), (10, 20), jnp.float32)
    z = model.encode(x)
    assert z.shape == (10, 3 if kind == "diabolo" else 12)
    loss = model.loss(x, jnp.asarray(3, jnp.int32))
    assert np.isfinite(loss) and loss > 0
    assert model(x, 3).shape == x.shape
    if kind in ("sparse", "contractive"):
        assert np.all((z > 0) & (z < 1))


def test_config_round_trip_and_errors():
    c = ModelConfig(kind="pars_rrae", latent_size=20, k=1, max_k=8)
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert (
        c.rank_limit == 8 and ModelConfig(kind="pars_rrae", latent_size=20, k=1).rank_limit == 20
    )
    assert ModelConfig(kind="diabolo", latent_size=200, k=2).latent_length == 2
    with pytest.raises(ValueError, match="unknown model kind"):
        ModelConfig(kind="vae")
    with pytest.raises(ValueError, match="exceeds"):
        ModelConfig(kind="rrae", latent_size=4, k=5)
    with pytest.raises(ValueError, match="max_k"):
        ModelConfig(kind="pars_rrae", latent_size=4, k=2, max_k=1)
    with pytest.raises(ValueError, match="≥ 1"):
        ModelConfig(latent_size=0)
    with pytest.raises(ValueError, match="sample shape"):
        build_model(ModelConfig(), (4, 4), key=jax.random.key(0))


def test_relative_error_is_percent_over_the_whole_batch():
    x = jnp.array([[3.0, 0.0], [0.0, 4.0]])
    x_hat = jnp.array([[3.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(relative_error_loss(x_hat, x), 100 * 1 / 5)


def test_sparse_penalty_uses_the_batch_mean_activation():
    z = jnp.array([[0.1, 0.3], [0.2, 0.2]])  # mean 0.2
    rho, beta = 0.05, 2.0
    kl = rho * np.log(rho / 0.2) + (1 - rho) * np.log((1 - rho) / 0.8)
    np.testing.assert_allclose(SparsePenalty(rho, beta)(None, None, z, 0), beta * kl, rtol=1e-6)


def test_contractive_penalty_is_the_jacobian_norm(getkey):
    config = ModelConfig(kind="contractive", latent_size=5, k=2, width=6)
    model = build_model(config, (7,), key=getkey())
    x = jax.random.normal(getkey(), (4, 7), jnp.float32)
    z = model.encode(x)
    pen = ContractivePenalty(0.5)(model, x, z, 0)
    # Reference: ‖∂h/∂f‖_F² by automatic differentiation, summed over the batch.
    enc = model.encoder

    def h_of_f(f):
        return enc.final_activation(enc.linear(f))

    feats = jax.vmap(enc.features)(x)
    ref = sum(jnp.sum(jax.jacobian(h_of_f)(f) ** 2) for f in feats)
    np.testing.assert_allclose(pen, 0.5 * ref, rtol=1e-10)


def test_weak_penalty_is_the_distance_to_rank_k(getkey):
    z = jax.random.normal(getkey(), (8, 6))
    s = np.linalg.svd(np.asarray(z), compute_uv=False)
    expected = 100 * np.linalg.norm(s[2:]) / np.linalg.norm(s)
    np.testing.assert_allclose(WeakRankPenalty(2)(None, None, z, 0), expected, rtol=1e-10)


def test_loss_modes(getkey):
    model = build_model(ModelConfig(kind="rrae", latent_size=6, k=2, width=8), (5,), key=getkey())
    x = jax.random.normal(getkey(), (6, 5), jnp.float32)
    with pytest.raises(ValueError, match="no final basis"):
        model.loss(x, 2, "infer")
    with pytest.raises(ValueError, match="mode"):
        model.loss(x, 2, "eval")
