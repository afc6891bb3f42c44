"""Bytes the split-by-rows op moves between devices, read from the compiled program.

`rank_reduce(a_d, k, axis_name="data")` inside `shard_map` over 8 simulated CPU devices, the
forward pass and its gradient compiled (not run) for each shape; every collective of the
compiled HLO is listed with its result's bytes, against the bytes of the whole latent matrix.
An all-reduce's figure is the size of the buffer each device contributes (what a ring
all-reduce sends is about twice that).

Run: python benchmarks/communication.py   (the script sets the 8 devices itself)
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import rrae_fast

DEVICES = 8
# (label, rows = batch, columns = latent length, k)
CASES = [
    ("synthetic main job (batch 64, L 200)", 64, 200, 2),
    ("MNIST, Table 2 (batch 32, L 100)", 32, 100, 16),
    ("CelebA (batch 4608, latent 4096)", 4608, 4096, 256),
]
_BYTES = {"f32": 4, "f64": 8, "s32": 4, "pred": 1, "bf16": 2, "f16": 2}
_COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def collectives(text: str) -> list[tuple[str, int]]:
    """(kind, result bytes) of every collective instruction in compiled HLO text."""
    found = []
    for line in text.splitlines():
        for kind in _COLLECTIVES:
            marker = f" {kind}("
            if marker not in line or "=" not in line:
                continue
            result = line.split("=", 1)[1].split(marker, 1)[0]
            size = 0
            for dtype, dims in re.findall(r"([a-z]+[0-9]*)\[([0-9,]*)\]", result):
                count = 1
                for d in filter(None, dims.split(",")):
                    count *= int(d)
                size += count * _BYTES.get(dtype, 4)
            found.append((kind, size))
    return found


def main() -> None:
    mesh = jax.make_mesh((DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    print(f"{DEVICES} simulated devices, float32, forward + gradient of rank_reduce\n")
    print("| case | latent (m × n) | k | collectives | bytes | of the latent |")
    print("|---|---|---|---|---|---|")
    for label, m, n, k in CASES:
        split = jax.shard_map(
            lambda a, k=k: rrae_fast.rank_reduce(a, k, axis_name="data"),
            mesh=mesh,
            in_specs=P("data"),
            out_specs=P("data"),
        )
        step = jax.jit(jax.grad(lambda a, split=split: jnp.sum(split(a) ** 2)))
        a = jax.ShapeDtypeStruct((m, n), jnp.float32, sharding=NamedSharding(mesh, P("data")))
        found = collectives(step.lower(a).compile().as_text())
        total = sum(size for _, size in found)
        kinds = ", ".join(sorted({kind for kind, _ in found})) or "none"
        latent = m * n * 4
        print(
            f"| {label} | {m} × {n} | {k} | {len(found)} ({kinds}) | {total / 1e6:.2f} MB | "
            f"{100 * total / latent:.0f} % |"
        )


if __name__ == "__main__":
    main()
