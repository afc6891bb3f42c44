"""Bytes moved between devices, read from the compiled program, on 8 simulated CPU devices.

1. The split-by-rows op: `rank_reduce(a_d, k, axis_name="data")` inside `shard_map`, the
   forward pass and its gradient compiled (not run) for each shape; every collective of the
   compiled HLO is listed with its result's bytes, against the bytes of the whole latent.
2. The same op's forward pass alone, where `method="auto"` iterates: the collectives of the
   compiled program by where they sit: outside the loop (the first iteration, the decisions,
   the sign convention), in the loop's body (each further iteration) and in the branch that
   takes the dense route when the iteration gives up.
3. The gradient where `method="auto"` iterates, by the derivative's route: the collectives
   of the compiled program of `grad` walked from its entry, through each conditional's branch
   that does not take TSQR's full factors (the route of a spectrum with a gap after σ_k),
   split into what runs once, per iteration of the forward pass's subspace iteration and per
   iteration of the derivative's conjugate gradients; and the branches that take the full
   factors (the fallback where there is no gap).
4. The data-parallel training step (`make_step(..., mesh=...)`) of the paper's CNN aRRAE
   (64×64 images, batch 64, L = 200, k = 64): its collectives grouped by kind, against the
   parameters' bytes and the latent's.

An all-reduce's figure is the size of the buffer each device contributes (what a ring
all-reduce sends is about twice that).

Run: python benchmarks/communication.py   (the script sets the 8 devices itself)
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import equinox as eqx
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


def _mesh():
    return jax.make_mesh((DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _split_rank_reduce(mesh, k: int):
    """`rank_reduce(·, k, axis_name="data")` on a matrix split by rows over `mesh`."""
    return jax.shard_map(
        lambda a: rrae_fast.rank_reduce(a, k, axis_name="data"),
        mesh=mesh,
        in_specs=P("data"),
        out_specs=P("data"),
    )


def _split_input(mesh, m: int, n: int):
    return jax.ShapeDtypeStruct((m, n), jnp.float32, sharding=NamedSharding(mesh, P("data")))


def main() -> None:
    mesh = _mesh()
    print(f"{DEVICES} simulated devices, float32, forward + gradient of rank_reduce\n")
    print("| case | latent (m × n) | k | collectives | bytes | of the latent |")
    print("|---|---|---|---|---|---|")
    for label, m, n, k in CASES:
        split = _split_rank_reduce(mesh, k)
        step = jax.jit(jax.grad(lambda a, split=split: jnp.sum(split(a) ** 2)))
        found = collectives(step.lower(_split_input(mesh, m, n)).compile().as_text())
        total = sum(size for _, size in found)
        kinds = ", ".join(sorted({kind for kind, _ in found})) or "none"
        latent = m * n * 4
        print(
            f"| {label} | {m} × {n} | {k} | {len(found)} ({kinds}) | {total / 1e6:.2f} MB | "
            f"{100 * total / latent:.0f} % |"
        )


def by_computation(text: str) -> dict[str, list[tuple[str, int]]]:
    """Collectives of compiled HLO text grouped by the computation that holds them."""
    groups: dict[str, list[tuple[str, int]]] = {}
    name = ""
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(1)
            continue
        for found in collectives(line):
            groups.setdefault(name, []).append(found)
    return groups


def forward_routes() -> None:
    mesh = _mesh()
    print(f"\n{DEVICES} simulated devices, float32, forward pass of rank_reduce, method='auto'\n")
    print("| case | latent (m × n) | k | route | outside the loop | per further iteration |")
    print("|---|---|---|---|---|---|")
    cases = [*CASES, ("CelebA (batch 4608, latent 4096)", 4608, 4096, 64)]
    cases.append(("CelebA (batch 4608, latent 4096)", 4608, 4096, 2500))
    for label, m, n, k in sorted(cases, key=lambda c: (c[1], c[3])):
        fn = jax.jit(_split_rank_reduce(mesh, k))
        text = fn.lower(_split_input(mesh, m, n)).compile().as_text()
        bodies = set(re.findall(r"body=%?([\w.\-]+)", text))
        branches = set()
        for group in re.findall(r"branch_computations=\{([^}]*)\}", text):
            branches |= {b.strip().lstrip("%") for b in group.split(",")}
        groups = by_computation(text)
        latent = m * n * 4

        def share(names, groups=groups, latent=latent):
            size = sum(sz for name in names for _, sz in groups.get(name, []))
            return f"{size / 1e6:.3f} MB ({100 * size / latent:.1f} %)"

        loop = [name for name in groups if name in bodies]
        outside = [name for name in groups if name not in bodies and name not in branches]
        if not loop:
            route = "dense (TSQR)"
            print(f"| {label} | {m} × {n} | {k} | {route} | {share(groups)} | — |")
            continue
        fallback = [name for name in groups if name in branches]
        print(f"| {label} | {m} × {n} | {k} | iterative | {share(outside)} | {share(loop)} |")
        print(f"| | | | (dense fallback adds) | {share(fallback)} | |")


def _calls(text: str) -> tuple[dict[str, list], dict[str, list[tuple[str, int]]], str]:
    """The call graph of compiled HLO text: for each computation the computations it calls,
    as ("while", body), ("branches", [names]) or ("call", name); its collectives; the entry's
    name."""
    edges: dict[str, list] = {}
    found: dict[str, list[tuple[str, int]]] = {}
    name, entry = "", ""
    for line in text.splitlines():
        header = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(2)
            entry = name if header.group(1) else entry
            edges.setdefault(name, [])
            continue
        body = re.search(r"body=%?([\w.\-]+)", line)
        if body:
            edges[name].append(("while", body.group(1)))
        group = re.search(r"branch_computations=\{([^}]*)\}", line)
        if group:
            names = [b.strip().lstrip("%") for b in group.group(1).split(",")]
            edges[name].append(("branches", names))
        pair = re.search(r"true_computation=%?([\w.\-]+), false_computation=%?([\w.\-]+)", line)
        if pair:
            edges[name].append(("branches", [pair.group(1), pair.group(2)]))
        for callee in re.findall(r"(?:to_apply|calls)=%?([\w.\-]+)", line):
            edges[name].append(("call", callee))
        found.setdefault(name, []).extend(collectives(line))
    return edges, found, entry


def _gradient_traffic(text: str, width: int, full: int) -> dict[str, int]:
    """Bytes all-reduced by compiled HLO text, walked from its entry: ``"once"``,
    ``"forward"`` (one iteration of the subspace iteration: the while loop whose largest
    collective is the ``width``-row block, in bytes ``width``), ``"cg"`` (one iteration of
    any other while loop) and ``"fallback"`` (conditional branches whose own code, nested
    conditionals aside, has a collective of at least ``full`` bytes: TSQR's gather; and the
    branches beside one that holds a loop: the derivative's full-factor route beside the
    solves)."""
    edges, found, entry = _calls(text)

    def direct_biggest(name: str) -> int:
        own = max((size for _, size in found.get(name, [])), default=0)
        subs = [callee for kind, callee in edges.get(name, []) if kind != "branches"]
        return max([own, *(direct_biggest(c) for c in subs)])

    def loops(name: str) -> bool:
        return any(
            kind == "while" or any(loops(c) for c in (callee if kind == "branches" else [callee]))
            for kind, callee in edges.get(name, [])
        )

    totals = {"once": 0, "forward": 0, "cg": 0, "fallback": 0}

    def walk(name: str, where: str) -> None:
        totals[where] += sum(size for _, size in found.get(name, []))
        for kind, callee in edges.get(name, []):
            if kind == "branches":
                solving = [loops(branch) for branch in callee]
                for branch, solves in zip(callee, solving, strict=True):
                    # a branch that gathers TSQR's factors, or the sibling of the one that
                    # holds CG's loop (the tangent of the full-factor route)
                    full_factors = direct_biggest(branch) >= full or (any(solving) and not solves)
                    walk(branch, "fallback" if where == "fallback" or full_factors else where)
            elif kind == "while" and where != "fallback":
                walk(callee, "forward" if direct_biggest(callee) == width else "cg")
            else:
                walk(callee, where)

    walk(entry, "once")
    return totals


def gradient_routes() -> None:
    """Collectives of grad(rank_reduce) on the split matrix where the forward pass iterates,
    on the route of a spectrum with a gap (no full factors)."""
    mesh = _mesh()
    print(f"\n{DEVICES} simulated devices, float32, grad of rank_reduce, method='auto'\n")
    print(
        "| latent (m × n) | k | once | per forward iteration | per CG iteration "
        "| full-factor fallbacks (not taken) |"
    )
    print("|---|---|---|---|---|---|")
    for m, n, k in [(4608, 4096, 64), (4608, 4096, 256)]:
        split = _split_rank_reduce(mesh, k)
        step = jax.jit(jax.grad(lambda a, split=split: jnp.sum(split(a) ** 2)))
        text = step.lower(_split_input(mesh, m, n)).compile().as_text()
        width = rrae_fast.svd._sharded.subspace_width(m, n, k)
        full = DEVICES * min(m // DEVICES, n) * n * 4  # TSQR's gathered triangular factors
        totals = _gradient_traffic(text, width * n * 4, full)
        parts = [totals[key] for key in ("once", "forward", "cg", "fallback")]
        cells = " | ".join(f"{x / 1e6:.3f} MB ({100 * x / (m * n * 4):.1f} %)" for x in parts)
        print(f"| {m} × {n} | {k} | {cells} |")


def training_step() -> None:
    import numpy as np
    import optax

    from rrae_fast.models import ModelConfig, build_model
    from rrae_fast.training import data_mesh, make_step
    from rrae_fast.training._mesh import place_batch, place_replicated
    from rrae_fast.training._step import as_k, init_optimizer

    batch, latent, k = 64, 200, 64
    mesh = data_mesh(DEVICES)
    model = build_model(
        ModelConfig(kind="arrae", latent_size=latent, k=k), (1, 64, 64), key=jax.random.key(0)
    )
    opt = optax.adabelief(1e-3)
    step = make_step(opt, mesh=mesh)
    m = place_replicated(model, mesh)
    o = place_replicated(init_optimizer(opt, model, "train"), mesh)
    x = place_batch(np.zeros((batch, 1, 64, 64), np.float32), mesh)
    found = collectives(step.lower(m, o, x, as_k(k)).lowered.compile().as_text())
    params = sum(a.size for a in jax.tree_util.tree_leaves(model) if eqx.is_array(a)) * 4
    print(f"\nData-parallel step of the paper's CNN aRRAE (batch {batch}, L {latent}, k {k}):")
    print(f"parameters {params / 1e6:.2f} MB, latent {batch * latent * 4 / 1e6:.3f} MB\n")
    print("| collective | count | bytes | largest |")
    print("|---|---|---|---|")
    for kind in sorted({kind for kind, _ in found}):
        sizes = [size for kk, size in found if kk == kind]
        print(f"| {kind} | {len(sizes)} | {sum(sizes) / 1e6:.4f} MB | {max(sizes) / 1e6:.4f} MB |")


if __name__ == "__main__":
    main()
    forward_routes()
    gradient_routes()
    training_step()
