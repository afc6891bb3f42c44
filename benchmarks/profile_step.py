"""Where the time of one training step of the paper's CNN RRAE goes, layer by layer.

The step of `bench_training.py` (1×64×64 images, batch 64, L = 200, k = 64, AdaBelief, float32),
taken apart: each layer's forward pass, its weight gradient and its input gradient (each timed
as a separately jitted function, so the differences of "forward", "forward + dW" and
"forward + dW + dx" are estimates), the bottleneck, the loss, the optimiser update and the
whole step; beside them, the multiply-adds of each forward pass and the rate they run at, and
a plain float32 GEMM's rate on the same machine, as the ceiling. The layers run as the model
runs them: the encoder's convolutions are Equinox's, vmapped over the batch (NCHW); the
decoder's transposed convolutions are `rrae_fast.models.ConvTranspose2d` on the whole batch,
channels last; the final 1×1 convolution Equinox's, vmapped.

Run: python benchmarks/profile_step.py   (about a minute on 2 cores; keep the machine idle)
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_training import LATENT, LR, SHAPE, K, _batch

from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training._step import as_k, init_optimizer, make_step, trainable

CALLS = 9


def median_ms(fn) -> float:
    """Median wall time of `fn()` over CALLS calls, after one call that compiles it."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def layer_times(apply, layer, x) -> tuple[float, float, float]:
    """Forward, forward + weight gradient, forward + both gradients of `apply(layer, x)`."""
    out = eqx.filter_jit(apply)(layer, x)
    forward = eqx.filter_jit(apply)
    weights = eqx.filter_jit(lambda m, v, g: eqx.filter_vjp(lambda mm: apply(mm, v), m)[1](g))
    both = eqx.filter_jit(lambda m, v, g: eqx.filter_vjp(apply, m, v)[1](g))
    return (
        median_ms(lambda: forward(layer, x)),
        median_ms(lambda: weights(layer, x, out)),
        median_ms(lambda: both(layer, x, out)),
    )


def conv_macs(layer, out_shape, transposed: bool) -> float:
    """Multiply-adds of a (transposed) convolution's forward pass on a batch."""
    n = out_shape[0]
    weight = layer.weight  # Equinox's OIHW (transposed: [c_out, c_in, kh, kw] too)
    taps = weight.shape[2] * weight.shape[3] / (np.prod(layer.stride) if transposed else 1)
    spatial = np.prod(out_shape[1:3] if transposed else out_shape[2:])
    return float(n * spatial * weight.shape[0] * weight.shape[1] * taps)


def main() -> None:
    model = build_model(
        ModelConfig(kind="arrae", latent_size=LATENT, k=K), SHAPE, key=jax.random.key(0)
    )
    x = jnp.asarray(_batch())
    k = as_k(K)
    rows = []  # (part, shape, MMACs or None, forward, dW, dx)

    def record(name, shape, macs, times):
        forward, with_weights, with_both = times
        rows.append((name, shape, macs, forward, with_weights - forward, with_both - with_weights))

    h = x
    for i, conv in enumerate(model.encoder.convs):
        out = eqx.filter_jit(lambda c, v: jax.vmap(c)(v))(conv, h)
        times = layer_times(lambda c, v: jax.vmap(c)(v), conv, h)
        record(
            f"encoder conv {i}",
            f"{h.shape[1:]}→{out.shape[1:]}",
            conv_macs(conv, out.shape, False),
            times,
        )
        h = jax.nn.relu(out)
    features = h.reshape(h.shape[0], -1)
    linear = model.encoder.linear
    times = layer_times(lambda m, v: jax.vmap(m)(v), linear, features)
    record(
        "encoder linear", f"{features.shape[1]}→{LATENT}", 64.0 * features.shape[1] * LATENT, times
    )

    decoder = model.decoder
    z = jnp.ones((x.shape[0], LATENT), x.dtype)
    h = jax.vmap(decoder.linear)(z).reshape(z.shape[0], *decoder.first_shape)
    h = h.transpose(0, 2, 3, 1)
    for i, layer in enumerate(decoder.deconvs):
        out = eqx.filter_jit(lambda c, v: c(v, channels_last=True))(layer, h)
        times = layer_times(lambda c, v: c(v, channels_last=True), layer, h)
        shape = f"{h.shape[1:]}→{out.shape[1:]} (NHWC)"
        record(f"decoder deconv {i}", shape, conv_macs(layer, out.shape, True), times)
        h = jax.nn.relu(out)
    h = h.transpose(0, 3, 1, 2)
    final = decoder.final_conv
    out = eqx.filter_jit(lambda c, v: jax.vmap(c)(v))(final, h)
    times = layer_times(lambda c, v: jax.vmap(c)(v), final, h)
    record(
        "decoder final conv",
        f"{h.shape[1:]}→{out.shape[1:]}",
        conv_macs(final, out.shape, False),
        times,
    )

    optimizer = optax.adabelief(LR)
    state = init_optimizer(optimizer, model, "train")
    params, static = eqx.partition(model, trainable(model, "train"))

    def loss(p, v):
        return eqx.combine(p, static).loss(v, k, "train")

    loss_only = eqx.filter_jit(loss)
    loss_and_grad = eqx.filter_jit(jax.value_and_grad(loss))
    grads = loss_and_grad(params, x)[1]

    @eqx.filter_jit
    def update(p, g, s):
        with jax.numpy_dtype_promotion("standard"):
            u, s = optimizer.update(g, s, p)
        return eqx.apply_updates(p, u), s

    latent = eqx.filter_jit(lambda m, v: m.encode(v))(model, x)
    bottleneck = eqx.filter_jit(lambda m, v: jax.vjp(lambda y: m.bottleneck.train(y, k), v)[1](v))
    step = make_step(optimizer)
    wholes = {
        "bottleneck forward + gradient": median_ms(lambda: bottleneck(model, latent)),
        "loss (forward)": median_ms(lambda: loss_only(params, x)),
        "loss and gradient": median_ms(lambda: loss_and_grad(params, x)),
        "optimiser update": median_ms(lambda: update(params, grads, state)),
        "whole step": median_ms(lambda: step(model, state, x, k)),
    }
    a = jax.random.normal(jax.random.key(1), (2048, 2048), jnp.float32)
    matmul = jax.jit(lambda u: u @ u)
    gemm_rate = 2 * 2048**3 / median_ms(lambda: matmul(a)) / 1e6

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}; 1-minute load after the run {os.getloadavg()[0]:.2f}"
    )
    print(f"float32 GEMM 2048³: {gemm_rate:.0f} GFLOP/s\n")
    print("| part | shape | forward MMAC | forward ms | dW ms | dx ms | forward GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, macs, forward, dw, dx in rows:
        rate = 2 * macs / forward / 1e6
        cells = [name, shape, f"{macs / 1e6:.0f}", f"{forward:.1f}", f"{dw:.1f}", f"{dx:.1f}"]
        print("| " + " | ".join([*cells, f"{rate:.0f}"]) + " |")
    total = sum(r[3] + r[4] + r[5] for r in rows)
    print(f"\nsum of the layers' forward + dW + dx: {total:.1f} ms", end=" ")
    print("(the step needs no dx of encoder conv 0)")
    for name, ms in wholes.items():
        print(f"{name}: {ms:.1f} ms")


if __name__ == "__main__":
    main()
