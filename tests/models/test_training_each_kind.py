"""Every model family learns: a few steps on small rank-2 data lower its loss."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rrae_fast.models import KINDS, ModelConfig, build_model
from rrae_fast.training import final_basis
from rrae_fast.training._step import as_k, init_optimizer, make_step


def _data(n=48, t=16):
    coef = jax.random.normal(jax.random.key(3), (n, 2), jnp.float32)
    grid = jnp.linspace(0, 1, t, dtype=jnp.float32)
    return coef @ jnp.stack([jnp.sin(3 * grid), jnp.cos(2 * grid)])


@pytest.mark.parametrize("kind", KINDS)
def test_a_few_steps_lower_the_loss(kind):
    config = ModelConfig(kind=kind, latent_size=10, k=2, width=32, decoder_depth=2, max_k=6)
    model = build_model(config, (16,), key=jax.random.key(0))
    x = _data()
    opt = optax.adabelief(3e-3)
    step = make_step(opt)
    state = init_optimizer(opt, model, "train")
    k = as_k(6 if kind == "pars_rrae" else 2)
    losses = []
    for _ in range(25):
        model, state, loss = step(model, state, x, k)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_projection_inference_is_sample_independent():
    config = ModelConfig(kind="rrae", latent_size=10, k=2, width=32, decoder_depth=2)
    model = build_model(config, (16,), key=jax.random.key(0))
    x = _data()
    basis = final_basis(model, x, 2, batch_size=16)
    model = eqx.tree_at(lambda m: m.bottleneck, model, model.bottleneck.with_basis(basis))
    full = model.reconstruct(x)
    codes = model.compress(x)
    assert codes.shape == (48, 2)
    for i in (0, 17, 47):
        # A batch of one and of 48 round differently inside XLA's products: entries near zero
        # are compared at float32 rounding of the sample's scale, not of their own.
        scale = float(np.abs(full[i]).max())
        np.testing.assert_allclose(
            model.reconstruct(x[i : i + 1])[0], full[i], rtol=1e-5, atol=1e-6 * scale
        )
        np.testing.assert_allclose(model.compress(x[i : i + 1])[0], codes[i], rtol=1e-5)
    np.testing.assert_allclose(model.decompress(codes), full, rtol=1e-5, atol=1e-6)
