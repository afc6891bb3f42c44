"""`ConvTranspose2d` against `eqx.nn.ConvTranspose2d`: outputs, gradients, init, conversions."""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.models._conv import ConvTranspose2d

RTOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}


def _close(actual, expected, rtol):
    """Elementwise, with an absolute floor of rtol·max|expected| (entries near 0 cancel)."""
    expected = np.asarray(expected)
    assert np.asarray(actual).dtype == expected.dtype
    atol = rtol * float(np.max(np.abs(expected), initial=1.0))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def _outputs_and_grads(layer, x, probe):
    """The vmapped output and the gradients of ⟨probe, output⟩ w.r.t. the layer and the input."""

    def functional(layer_and_x):
        layer, x = layer_and_x
        return jnp.sum(probe * jax.vmap(layer)(x))

    return jax.vmap(layer)(x), eqx.filter_grad(functional)((layer, x))


def _run_cases(cases, dtype, seed):
    """Builds both layers per case from one key and evaluates them all in ONE compiled call.

    cases: `(c_in, c_out, (batch, h, w), kwargs)` tuples; kwargs go to both constructors.
    Returns per case `((y, (grads, grad_x)), (y_eqx, (grads_eqx, grad_x_eqx)))`. One compilation
    for the whole list keeps the file fast: compiling dominates at these sizes.
    """
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.key(seed), len(cases))
    pairs, inputs = [], []
    for key, (c_in, c_out, (n, h, w), kwargs) in zip(keys, cases):
        reference = eqx.nn.ConvTranspose2d(c_in, c_out, dtype=dtype, key=key, **kwargs)
        layer = ConvTranspose2d(c_in, c_out, dtype=dtype, key=key, **kwargs)
        np.testing.assert_array_equal(layer.weight, reference.weight)
        x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
        # A random linear functional of the output: its gradients are the transposed maps.
        probe = rng.standard_normal(jax.eval_shape(jax.vmap(reference), x).shape).astype(dtype)
        pairs.append((layer, reference))
        inputs.append((x, probe))

    # Random numbers come from NumPy: threefry inside this large program would dominate its
    # compilation time.
    @eqx.filter_jit
    def evaluate(pairs, inputs):
        return [
            (_outputs_and_grads(layer, x, probe), _outputs_and_grads(reference, x, probe))
            for (layer, reference), (x, probe) in zip(pairs, inputs)
        ]

    # Full precision for both, so that a GPU's TF32 default cannot blur the comparison; XLA's
    # optimisation passes are skipped, as they more than double the compile time of this test.
    optimizations_off = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        with jax.default_matmul_precision("highest"):
            return jax.block_until_ready(evaluate(pairs, inputs))
    finally:
        jax.config.update("jax_disable_most_optimizations", optimizations_off)


def _check(result, rtol):
    (y, (g, gx)), (y_ref, (g_ref, gx_ref)) = result
    assert y.shape == y_ref.shape
    _close(y, y_ref, rtol)
    _close(gx, gx_ref, rtol)
    _close(g.weight, g_ref.weight, rtol)
    if g_ref.bias is None:
        assert g.bias is None
    else:
        _close(g.bias, g_ref.bias, rtol)


# Every kernel size with every stride and valid output padding (`op < stride`), the padding
# cycling through 0, 1, 2 (so each kernel size and each stride meets each padding), on a
# non-square input large enough that padding 2 with kernel 1 still leaves an output. Channel
# counts vary with the case so that c_in < c_out, c_in > c_out and c_in = 1 all occur.
GRID = [
    (k, s, (k + s + op) % 3, op)
    for k, s, op in itertools.product((1, 2, 3, 4, 5), (1, 2, 3), (0, 1, 2))
    if op < s
]
CHANNELS = [(3, 2), (2, 5), (1, 3)]
# float32 on every third case: the index arithmetic is the same, only rounding differs. The full
# grid (float64) is marked slow; this subset runs by default.
GRID_F32 = GRID[::3]


def _grid_cases(grid):
    return [
        (
            *CHANNELS[i % len(CHANNELS)],
            (2, 6, 5),
            dict(kernel_size=k, stride=s, padding=p, output_padding=op),
        )
        for i, (k, s, p, op) in enumerate(grid)
    ]


@pytest.fixture(scope="module")
def grid_f64():
    return _run_cases(_grid_cases(GRID), jnp.float64, seed=1)


@pytest.fixture(scope="module")
def grid_f32():
    return _run_cases(_grid_cases(GRID_F32), jnp.float32, seed=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", range(len(GRID)), ids=lambda i: "k{}-s{}-p{}-op{}".format(*GRID[i])
)
def test_matches_eqx_grid_float64(grid_f64, case):
    _check(grid_f64[case], RTOL[jnp.float64])


@pytest.mark.parametrize(
    "case", range(len(GRID_F32)), ids=lambda i: "k{}-s{}-p{}-op{}".format(*GRID_F32[i])
)
def test_matches_eqx_grid_float32(grid_f32, case):
    _check(grid_f32[case], RTOL[jnp.float32])


OTHER_OPTIONS = [
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2)),
    dict(kernel_size=3, stride=2, padding=((0, 2), (1, 0)), output_padding=1),
    dict(kernel_size=3, stride=2, padding=((2, 0), (0, 1))),
    dict(kernel_size=3, stride=2, padding=4),  # padding > k − 1: Equinox crops the input
    dict(kernel_size=3, stride=2, dilation=2, padding=1, output_padding=1),
    dict(kernel_size=2, stride=3, dilation=(2, 3), padding=(0, 1)),
    dict(kernel_size=3, stride=1, dilation=2),
    dict(kernel_size=4, stride=2, padding="SAME"),
    dict(kernel_size=3, stride=3, padding="SAME_LOWER", output_padding=2),
    dict(kernel_size=1, stride=3, padding="SAME", output_padding=1),
    dict(kernel_size=3, stride=2, padding="VALID", output_padding=1),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1, use_bias=False),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
]


@pytest.fixture(scope="module")
def other_options():
    return _run_cases([(4, 6, (3, 7, 5), kw) for kw in OTHER_OPTIONS], jnp.float64, seed=3)


@pytest.mark.parametrize(
    "case",
    range(len(OTHER_OPTIONS)),
    ids=lambda i: ",".join(f"{k}={v}" for k, v in OTHER_OPTIONS[i].items()),
)
def test_matches_eqx_other_options(other_options, case):
    _check(other_options[case], RTOL[jnp.float64])


# The paper's decoder for a 64×64 image, and its first map for smaller images (2×2, 1×1).
PAPER = [(32, 256, 4), (256, 128, 8), (128, 32, 16), (32, 8, 32), (32, 256, 2), (32, 256, 1)]
PAPER_LAYER = dict(kernel_size=3, stride=2, padding=1, output_padding=1)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(jnp.float32, id="float32"),
        pytest.param(jnp.float64, id="float64", marks=pytest.mark.slow),
    ],
)
def paper(request):
    cases = [(c_in, c_out, (2, n, n), PAPER_LAYER) for c_in, c_out, n in PAPER]
    return request.param, _run_cases(cases, request.param, seed=4)


@pytest.mark.parametrize("case", range(len(PAPER)), ids=lambda i: "{}-{}-at-{}".format(*PAPER[i]))
def test_matches_eqx_paper_decoder(paper, case):
    dtype, results = paper
    c_out, n = PAPER[case][1], PAPER[case][2]
    assert results[case][0][0].shape == (2, c_out, 2 * n, 2 * n)
    _check(results[case], RTOL[dtype])


@pytest.mark.parametrize(
    "args",
    [
        (32, 16, 3, 2, 1, 1),  # the paper's decoder layers: k3 s2 op1 p1
        (4, 3, (3, 2), (3, 2), (1, 0), ((2, 0), (1, 1))),  # uneven everything
        (4, 6, 3, 2, 1, 1, 2),  # dilation 2
        (4, 6, 3, 2, 1, 1, 1, 2),  # groups: XLA's own weight gradient
    ],
)
def test_batched_call_equals_equinox_with_gradients(getkey, args):
    layer = ConvTranspose2d(*args, dtype=jnp.float64, key=getkey())
    ref = layer.to_eqx()
    x = jax.random.normal(getkey(), (5, args[0], 6, 5), jnp.float64)
    out = layer(x)
    np.testing.assert_allclose(out, jax.vmap(ref)(x), rtol=1e-12, atol=1e-12)
    probe = jax.random.normal(getkey(), out.shape, jnp.float64)

    def loss(m, x, batched):
        y = m(x) if batched else jax.vmap(m)(x)
        return jnp.sum(y * probe)

    ours = eqx.filter_grad(lambda mx: loss(*mx, True))((layer, x))
    theirs = eqx.filter_grad(lambda mx: loss(*mx, False))((ref, x))
    np.testing.assert_allclose(ours[0].weight, theirs[0].weight, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ours[0].bias, theirs[0].bias, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype", [None, jnp.float32])
def test_default_init_is_eqx(getkey, use_bias, dtype):
    key = getkey()
    args = (5, 7, (3, 2), 2, 1, 1)  # in, out, kernel, stride, output_padding, padding (Equinox)
    reference = eqx.nn.ConvTranspose2d(*args, use_bias=use_bias, dtype=dtype, key=key)
    layer = ConvTranspose2d(*args, use_bias=use_bias, dtype=dtype, key=key)
    np.testing.assert_array_equal(layer.weight, reference.weight)
    assert layer.weight.dtype == reference.weight.dtype
    if use_bias:
        np.testing.assert_array_equal(layer.bias, reference.bias)
    else:
        assert layer.bias is None
    other = ConvTranspose2d(*args, use_bias=use_bias, dtype=dtype, key=getkey())
    assert not np.array_equal(other.weight, layer.weight)


def test_round_trip(getkey):
    reference = eqx.nn.ConvTranspose2d(
        3, 4, (3, 2), (2, 1), (1, 0), ((1, 0), (0, 1)), dtype=jnp.float64, key=getkey()
    )
    layer = ConvTranspose2d.from_eqx(reference)
    assert layer.weight is reference.weight and layer.bias is reference.bias
    assert (layer.kernel_size, layer.stride, layer.output_padding) == ((3, 2), (2, 1), (1, 0))
    back = layer.to_eqx()
    assert isinstance(back, eqx.nn.ConvTranspose2d)
    assert eqx.tree_equal(back, reference)
    x = jax.random.normal(getkey(), (4, 3, 5, 6), jnp.float64)
    np.testing.assert_array_equal(jax.vmap(back)(x), jax.vmap(reference)(x))
    _close(jax.vmap(layer)(x), jax.vmap(reference)(x), RTOL[jnp.float64])

    no_bias = ConvTranspose2d(3, 4, 2, 2, use_bias=False, key=getkey())
    assert no_bias.to_eqx().bias is None
    assert eqx.tree_equal(ConvTranspose2d.from_eqx(no_bias.to_eqx()), no_bias)


def test_jit_vmap_and_parameter_tree(getkey):
    layer = ConvTranspose2d(6, 4, 3, 2, 1, 1, dtype=jnp.float32, key=getkey())
    reference = layer.to_eqx()
    x = jax.random.normal(getkey(), (5, 6, 3, 4), jnp.float32)
    y = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(layer, x)
    assert y.shape == (5, 4, 6, 8)
    _close(y, jax.vmap(reference)(x), RTOL[jnp.float32])
    # The same trainable leaves as Equinox's layer, in the same order.
    leaves = jax.tree_util.tree_leaves(eqx.filter(layer, eqx.is_array))
    ref_leaves = jax.tree_util.tree_leaves(eqx.filter(reference, eqx.is_array))
    assert [a.shape for a in leaves] == [a.shape for a in ref_leaves]


def test_bad_inputs(getkey):
    layer = ConvTranspose2d(3, 2, 3, 2, 1, 1, key=getkey())
    with pytest.raises(ValueError, match="one sample"):
        layer(jnp.ones((1, 2, 3, 4, 4)))
    with pytest.raises(ValueError, match="one sample"):
        layer(jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="3 input channels"):
        layer(jnp.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="no output"):
        ConvTranspose2d(3, 2, 1, padding=3, key=getkey())(jnp.ones((3, 4, 4)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(padding_mode="CIRCULAR"), "padding_mode"),
        (dict(groups=2), "groups"),
        (dict(stride=2, output_padding=2), "output_padding"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size"),
        (dict(padding="FULL"), "padding"),
        (dict(padding=(1, 1, 1)), "padding"),
    ],
)
def test_bad_arguments(getkey, kwargs, match):
    kwargs = {"kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvTranspose2d(3, 4, key=getkey(), **kwargs)


def test_from_eqx_rejects_other_layers(getkey):
    with pytest.raises(ValueError, match="2-D"):
        ConvTranspose2d.from_eqx(eqx.nn.Conv2d(2, 2, 3, key=getkey()))
    with pytest.raises(ValueError, match="2-D"):
        ConvTranspose2d.from_eqx(eqx.nn.ConvTranspose1d(2, 2, 3, key=getkey()))
