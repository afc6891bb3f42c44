"""The SVD of a matrix split by rows over 8 devices against the one-device op on the whole.

Group "split-rows-{m}x{n}-k{k}" (float32, `rank_reduce`, forward pass, a decaying spectrum),
every contender on the same global matrix:

* `one_device`: `rank_reduce(a, k)` on one device (the native kernel's `auto` path);
* `split`: `rank_reduce(a_d, k, axis_name="data")` inside `shard_map` over 8 devices, each
  holding `m / 8` rows (`rrae_fast.svd._sharded`: subspace iteration, TSQR where it gives
  up);
* `gathered`: `jax.jit(rank_reduce)` of the row-split matrix over Auto mesh axes: XLA gathers
  the operand and every device computes the whole result (what data-parallel training does).

The devices are simulated CPU devices sharing this machine's cores, so the figures show the
overhead of splitting, not a speed-up: the target is `split` ≤ 1.5 × `one_device` at 4096 ×
4096, k = 64. The suite needs 8 devices before JAX starts, and skips (with that reason)
without them:

On simulated devices every device calls XLA's LAPACK (QR, SVD) at once, and OpenBLAS's
threads oversubscribe the cores unless limited to one (`docs/op.md`):

Run: OPENBLAS_NUM_THREADS=1 XLA_FLAGS=--xla_force_host_platform_device_count=8 \
     pytest benchmarks/bench_sharded.py --benchmark-only -p no:cacheprovider --no-cov \
     --benchmark-json=sharded.json
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import rrae_fast
from conftest import run, skip

DEVICES = 8
CONTENDERS = ("one_device", "split", "gathered")


def _cases(quick: bool):
    return [(512, 256, 16)] if quick else [(4096, 4096, 64), (4608, 4096, 256)]


def _matrix(m: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    r = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    sigma = np.exp(-np.arange(r) / 40.0) + 1e-3  # rrae-like: decaying, a noise floor
    return ((u * sigma) @ v.T).astype(np.float32)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("case", [0, 1], ids=["first", "second"])
def test_split_rows(benchmark, record, settings, case, contender):
    cases = _cases(settings["quick"])
    if case >= len(cases):
        pytest.skip("one case with --quick")
    m, n, k = cases[case]
    group = f"split-rows-{m}x{n}-k{k}"
    benchmark.group = group
    if jax.device_count() < DEVICES:
        skip(
            group,
            contender,
            f"needs {DEVICES} devices: XLA_FLAGS=--xla_force_host_platform_device_count="
            f"{DEVICES} before JAX starts ({jax.device_count()} here)",
        )
    a = _matrix(m, n)
    mesh = jax.make_mesh((DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data", None))
    if contender == "one_device":
        x = jax.device_put(a, jax.devices()[0])
        fn = jax.jit(lambda y: rrae_fast.rank_reduce(y, k))
    else:
        x = jax.device_put(a, rows)
        if contender == "split":
            fn = jax.jit(
                jax.shard_map(
                    lambda y: rrae_fast.rank_reduce(y, k, axis_name="data"),
                    mesh=mesh,
                    in_specs=P("data", None),
                    out_specs=P("data", None),
                )
            )
        else:
            fn = jax.jit(lambda y: rrae_fast.rank_reduce(y, k))
    rounds = 1 if settings["quick"] else 3
    out = run(benchmark, fn, rounds, x)
    reference = rrae_fast.rank_reduce(jnp.asarray(a), k)
    error = float(jnp.max(jnp.abs(jnp.asarray(out) - reference)))
    record(
        shape=[m, n],
        k=k,
        devices=DEVICES,
        max_abs_diff_vs_one_device=error,
        loadavg_1m_after=os.getloadavg()[0],
    )
    assert error <= 1e-3 * float(np.abs(a).max())
