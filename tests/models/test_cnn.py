"""The paper's CNN and MLP: size arithmetic for every input shape, per-sample contracts."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models import CNNDecoder, CNNEncoder, MLPDecoder, MLPEncoder

# (image shape, encoder features, decoder first map, final conv kernel): SPEC §5.1's table.
SHAPES = [
    ((1, 64, 64), 64 * 16 * 16, (4, 4), (1, 1)),  # synthetic
    ((1, 28, 28), 64 * 7 * 7, (2, 2), (5, 5)),  # MNIST / Fashion-MNIST
    ((1, 8, 8), 64 * 2 * 2, (1, 1), (9, 9)),  # scikit-learn digits
    ((3, 20, 12), 64 * 5 * 3, (2, 1), (13, 5)),  # RGB, non-square
]


@pytest.mark.parametrize(("shape", "features", "first", "kernel"), SHAPES)
def test_cnn_size_arithmetic(shape, features, first, kernel, getkey):
    enc = CNNEncoder(shape, 7, key=getkey())
    dec = CNNDecoder(7, shape, key=getkey())
    x = jax.ShapeDtypeStruct(shape, jnp.float64)  # shapes only: nothing is computed
    assert jax.eval_shape(enc.features, x).shape == (features,)
    assert enc.linear.weight.shape == (7, features)
    assert dec.first_shape == (32, *first)
    assert dec.linear.weight.shape == (32 * first[0] * first[1], 7)
    assert dec.final_conv.weight.shape[2:] == kernel
    z = jax.eval_shape(enc, x)
    assert z.shape == (7,)
    assert jax.eval_shape(dec, z).shape == shape
    assert [d.out_channels for d in dec.deconvs] == [256, 128, 32, 8]


def test_cnn_layers_follow_the_paper(getkey):
    enc = CNNEncoder((1, 64, 64), 200, key=getkey())
    assert [(c.in_channels, c.out_channels) for c in enc.convs] == [(1, 32), (32, 64)]
    for c in enc.convs:
        assert c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == ((1, 1), (1, 1))
    dec = CNNDecoder(200, (1, 64, 64), key=getkey())
    chans = [(d.in_channels, d.out_channels) for d in dec.deconvs]
    assert chans == [(32, 256), (256, 128), (128, 32), (32, 8)]


@pytest.mark.parametrize(
    ("shape", "kernel"), [((1, 12, 12), (5, 5)), ((2, 16, 16), (1, 1)), ((1, 14, 16), (3, 1))]
)
def test_fast_and_equinox_decoders_are_the_same_map(shape, kernel, getkey):
    """The batched, channels-last decoder (fast transposed convolutions, the final convolution
    on the batch: a channel product at a 1×1 kernel) is Equinox's layers vmapped."""
    key = getkey()
    fast = CNNDecoder(10, shape, key=key)
    slow = CNNDecoder(10, shape, fast_transpose=False, key=key)
    assert fast.final_conv.weight.shape[2:] == kernel
    assert all(isinstance(d, eqx.nn.ConvTranspose2d) for d in slow.deconvs)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_array_equal(a, b)  # identical initialisation
    z = jax.random.normal(getkey(), (5, 10))
    out = jax.jit(jax.vmap(fast))(z)
    np.testing.assert_allclose(out, jax.jit(jax.vmap(slow))(z), rtol=1e-10, atol=1e-12)
    assert out.shape == (5, *shape)
    # The batched, channels-last path: same outputs and same parameter gradients.
    np.testing.assert_allclose(fast.decode_batch(z), out, rtol=1e-10, atol=1e-12)
    probe = jax.random.normal(getkey(), out.shape)
    g_fast = eqx.filter_grad(lambda d: jnp.sum(d.decode_batch(z) * probe))(fast)
    g_slow = eqx.filter_grad(lambda d: jnp.sum(jax.vmap(d)(z) * probe))(slow)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_slow)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="latent vectors"):
        fast.decode_batch(z[0])


def test_cnn_rejects_bad_shapes(getkey):
    with pytest.raises(ValueError, match="channels, height, width"):
        CNNEncoder((64, 64), 4, key=getkey())
    with pytest.raises(ValueError, match="latent_size"):
        CNNEncoder((1, 8, 8), 0, key=getkey())
    with pytest.raises(ValueError, match="latent_size"):
        CNNDecoder(4, (1, 8, 8), widths=(), key=getkey())
    enc = CNNEncoder((1, 8, 8), 4, key=getkey())
    with pytest.raises(ValueError, match="one image"):
        enc(jnp.ones((2, 1, 8, 8)))
    dec = CNNDecoder(4, (1, 8, 8), key=getkey())
    with pytest.raises(ValueError, match="one latent vector"):
        dec(jnp.ones((2, 4)))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_mlp_shapes(depth, getkey):
    enc = MLPEncoder(30, 6, width=16, depth=depth, key=getkey())
    dec = MLPDecoder(6, 30, width=16, depth=depth, key=getkey())
    x = jax.ShapeDtypeStruct((30,), jnp.float64)
    assert jax.eval_shape(enc.features, x).shape == ((30,) if depth == 0 else (16,))
    assert jax.eval_shape(enc, x).shape == (6,)
    z = eqx.filter_jit(lambda e, x: e(x))(enc, jnp.ones(30))
    np.testing.assert_allclose(z, enc.linear(enc.features(jnp.ones(30))), rtol=1e-12)
    assert jax.eval_shape(dec, z).shape == (30,)
    with pytest.raises(ValueError, match="one sample"):
        enc(jnp.ones(29))
    with pytest.raises(ValueError, match="one latent vector"):
        dec(jnp.ones(5))
    with pytest.raises(ValueError, match="depth"):
        MLPEncoder(30, 6, depth=-1, key=getkey())
    with pytest.raises(ValueError, match="depth"):
        MLPDecoder(6, 30, depth=-1, key=getkey())
