"""The jitted training step: learning, frozen encoder in fine-tuning, one compilation for all k."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training import final_basis
from rrae_fast.training._step import as_k, init_optimizer, make_step, trainable


def _model(getkey, kind="rrae", k=3):
    config = ModelConfig(kind=kind, latent_size=8, k=k, width=16, decoder_depth=2)
    return build_model(config, (12,), key=getkey())


def _data(getkey, n=32):
    # Rank-2 data: every sample mixes two fixed profiles.
    coef = jax.random.normal(getkey(), (n, 2), jnp.float32)
    t = jnp.linspace(0, 1, 12, dtype=jnp.float32)
    return coef @ jnp.stack([jnp.sin(3 * t), jnp.cos(2 * t)])


def test_steps_lower_the_loss(getkey):
    model, x = _model(getkey), _data(getkey)
    opt = optax.adabelief(1e-2)
    step = make_step(opt)
    state = init_optimizer(opt, model, "train")
    losses = []
    for _ in range(40):
        model, state, loss = step(model, state, x, as_k(2))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_changing_k_does_not_recompile(getkey):
    model, x = _model(getkey, "arrae", 4), _data(getkey)
    opt = optax.adabelief(1e-3)
    step = make_step(opt, max_traces=1)
    state = init_optimizer(opt, model, "train")
    for k in (4, 3, 2, 1, 2):
        model, state, _ = step(model, state, x, as_k(k))
    with pytest.raises(RuntimeError):
        step(model, state, x, k)  # a Python int is a different (static) argument: retraces


def test_fine_tuning_leaves_the_encoder_bit_identical(getkey):
    model, x = _model(getkey), _data(getkey)
    basis = final_basis(model, x, 2, batch_size=16)
    model = eqx.tree_at(lambda m: m.bottleneck, model, model.bottleneck.with_basis(basis))
    opt = optax.adabelief(1e-2)
    step = make_step(opt, "infer")
    state = init_optimizer(opt, model, "infer")
    new = model
    for _ in range(3):
        new, state, _ = step(new, state, x, as_k(2))
    for a, b in zip(jax.tree.leaves(model.encoder), jax.tree.leaves(new.encoder)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.bottleneck.basis, new.bottleneck.basis)
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(model.decoder), jax.tree.leaves(new.decoder))
        if eqx.is_array(a)
    ]
    assert all(changed)


def test_main_stage_never_trains_a_stored_basis(getkey):
    model, x = _model(getkey), _data(getkey)
    basis = final_basis(model, x, 2, batch_size=16)
    model = eqx.tree_at(lambda m: m.bottleneck, model, model.bottleneck.with_basis(basis))
    spec = trainable(model, "train")
    assert spec.bottleneck.basis is False
    flags = jax.tree.leaves(spec.encoder)
    arrays = [eqx.is_array(a) for a in jax.tree.leaves(model.encoder)]
    assert flags == arrays and any(arrays)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        make_step(optax.sgd(1.0), "eval")
    with pytest.raises(ValueError, match="mode"):
        trainable(None, "eval")
