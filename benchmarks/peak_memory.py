"""Peak host memory of one 4096 x 4096 float32 truncated SVD, over a warm baseline.

Usage: python benchmarks/peak_memory.py {rrae_fast,jnp_svd} K

Samples the process's resident set every 2 ms during a second (warm) call, and prints XLA's
temporary allocation for the compiled function.
"""

from __future__ import annotations

import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

import rrae_fast


def resident_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(which: str, k: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 4096)).astype(np.float32) * np.float32(1e-3)
    a += rng.standard_normal((4096, k)).astype(np.float32) @ rng.standard_normal((k, 4096)).astype(
        np.float32
    )
    a = jnp.asarray(a)
    if which == "rrae_fast":
        f = jax.jit(lambda x: rrae_fast.truncated_svd(x, k))
    else:
        f = jax.jit(lambda x: jnp.linalg.svd(x, full_matrices=False)[1][:k])
    compiled = f.lower(a).compile()
    jax.block_until_ready(compiled(a))  # one-time allocations happen here
    base = resident_mib()
    peak = [base]
    running = [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    jax.block_until_ready(compiled(a))
    running[0] = False
    sampler.join()
    temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
    print(
        f"{which} k={k}: peak resident over baseline {peak[0] - base:.1f} MiB; "
        f"XLA temp {temp:.1f} MiB"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
