"""Medians of ``jit(grad)`` through ``rank_reduce`` on a few cases that take the full-SVD rule.

For before/after comparisons of a derivative rule: run it alternately against two checkouts of
the package (``PYTHONPATH=<checkout>/src python benchmarks/grad_ab.py``, each with its extension
built in place), several rounds, and compare the medians of the same round.
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cases
import rrae_fast
from cases import Case

CASES = [
    Case("grad", 200, 64, 16, "rrae", "float64"),
    Case("grad", 200, 64, 64),
    Case("grad", 512, 576, 256),
    Case("grad", 200, 64, 16, batch=256, vmap=True),
]
CALLS = 21


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    for case in CASES:
        a = jnp.asarray(cases.matrix(case))
        rng = np.random.default_rng(1)
        target = jnp.asarray(rng.standard_normal(case.shape).astype(case.dtype))

        def loss(x, t, k=case.k):
            return jnp.sum((rrae_fast.rank_reduce(x, k) - t) ** 2)

        grad = jax.grad(loss)
        step = jax.jit(jax.vmap(grad) if case.vmap else grad)
        step(a, target).block_until_ready()
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            step(a, target).block_until_ready()
            times.append(time.perf_counter() - start)
        print(f"{case.group:40s} {np.median(times) * 1e3:9.2f} ms", flush=True)


if __name__ == "__main__":
    main()
