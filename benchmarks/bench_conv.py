"""CPU benchmark: `rrae_fast.models.ConvTranspose2d` against `eqx.nn.ConvTranspose2d`.

The paper's decoder layers (kernel 3, stride 2, padding 1, output padding 1) on a batch of 64,
float32: Equinox's layer vmapped over single samples (how Equinox layers are used), ours
called on the whole batch (how the CNN decoder calls it); `rrae_fast_vmapped` is ours used
like Equinox's. `forward` times the output; `grad` times the gradient of Σ y² w.r.t. the
layer's parameters and the input (forward pass included). All are jitted.
Run: pytest benchmarks/bench_conv.py --benchmark-only --no-cov -p no:cacheprovider
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run, skip
from rrae_fast.models._conv import ConvTranspose2d

BATCH = 64
# (in channels, out channels, input size) of three of the decoder's layers for 64×64 images.
LAYERS = [(256, 128, 8), (32, 256, 4), (128, 32, 16)]
IMPLEMENTATIONS = ["eqx", "rrae_fast", "rrae_fast_vmapped"]


def _layer(implementation: str, c_in: int, c_out: int):
    reference = eqx.nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, 1, key=jax.random.key(0))
    return reference if implementation == "eqx" else ConvTranspose2d.from_eqx(reference)


def _input(c_in: int, size: int):
    rng = np.random.default_rng(c_in * size)
    return jnp.asarray(rng.standard_normal((BATCH, c_in, size, size)), jnp.float32)


@eqx.filter_jit
def _forward(layer, x, batched):
    return layer(x) if batched else jax.vmap(layer)(x)


@eqx.filter_jit
def _grad(layer, x, batched):
    def loss(lx):
        layer, x = lx
        return jnp.sum((layer(x) if batched else jax.vmap(layer)(x)) ** 2)

    return eqx.filter_grad(loss)((layer, x))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("c_in", "c_out", "size"), LAYERS, ids=lambda v: str(v))
@pytest.mark.parametrize("what", ["forward", "grad"])
def test_conv_transpose(benchmark, record, settings, what, c_in, c_out, size, implementation):
    benchmark.group = f"conv_transpose {what} {c_in}->{c_out} at {size}x{size}, batch {BATCH}"
    if settings["quick"] and (c_in, c_out, size) != LAYERS[1]:
        skip(benchmark.group, implementation, "--quick times the smallest layer only")
    layer, x = _layer(implementation, c_in, c_out), _input(c_in, size)
    fn = _forward if what == "forward" else _grad
    # The slow lhs-dilated backward pass of eqx takes up to ~1 s per call here.
    batched = implementation == "rrae_fast"
    rounds = 1 if settings["quick"] else (5 if what == "forward" else 3)
    run(benchmark, fn, rounds, layer, x, batched)
    record(what=what, batch=BATCH, dtype="float32")
