"""Where the Gram path beats LAPACK: the measurements behind ``PreferGram`` (truncated_svd.cc).

Prints, for float32 Gaussian matrices of shape q x p (p = min side, q / p in {1, 2, 3, 8}) and
k from 1 to p, the ratio of ``method="dense"`` to ``method="gram"`` time (> 1: Gram faster),
each the median of jitted calls after compilation. A side measurement, not part of the suite:

    python benchmarks/gram_crossover.py
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

import rrae_fast


def _median_ms(fn, a) -> float:
    jax.block_until_ready(fn(a))
    start = time.perf_counter()
    jax.block_until_ready(fn(a))
    once = time.perf_counter() - start
    times = []
    for _ in range(max(5, min(200, int(0.3 / max(once, 1e-6))))):
        start = time.perf_counter()
        jax.block_until_ready(fn(a))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"load average {os.getloadavg()[0]:.2f}; dense time / gram time:")
    for p in (8, 16, 32, 64, 96, 128, 192, 256):
        for ratio in (1, 2, 3, 8):
            a = rng.standard_normal((p * ratio, p)).astype(np.float32)
            cells = []
            for k in sorted({1, max(1, p // 8), max(1, p // 4), max(1, p // 2), p}):
                ms = {
                    method: _median_ms(
                        jax.jit(lambda x, m=method, k=k: rrae_fast.truncated_svd(x, k, method=m)),
                        a,
                    )
                    for method in ("gram", "dense")
                }
                cells.append(f"k={k}: {ms['dense'] / ms['gram']:.2f}")
            print(f"p={p:3d} q={p * ratio:4d}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
