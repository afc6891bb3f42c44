"""Shared setup of the benchmark suites: inputs, peers, accuracy and machine records."""

from __future__ import annotations

import importlib.util
import os
import platform

import jax
import numpy as np
import pytest


def rrae_like(rng, m: int, n: int, k: int, dtype=np.float32) -> np.ndarray:
    """Rank-k part with σ spread 10…1 plus a residual of relative Frobenius size 1e-3."""
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    low = (q1 * np.linspace(10.0, 1.0, k)) @ q2.T
    e = rng.standard_normal((m, n))
    e *= 1e-3 * np.linalg.norm(low) / np.linalg.norm(e)
    return (low + e).astype(dtype)


def flat(rng, m: int, n: int, dtype=np.float32) -> np.ndarray:
    """Gaussian entries."""
    return rng.standard_normal((m, n)).astype(dtype)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def machine_info() -> dict:
    """What a result depends on: versions, threads, and the load when it was taken."""
    info = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p['internal_api']} {p.get('version')} threads={p['num_threads']}"
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def sigma_error(s, s_ref) -> float:
    """max |σ_i − σ_i^ref| / σ_1^ref over the returned singular values."""
    s = np.asarray(s, np.float64)
    return float(np.max(np.abs(s - s_ref[: s.shape[-1]])) / s_ref[0])


@pytest.fixture
def record(benchmark):
    """Stores machine info and returns a helper that adds accuracy numbers to the result."""
    benchmark.extra_info.update(machine_info())

    def add(**values):
        benchmark.extra_info.update(values)

    return add


def run(benchmark, fn, rounds: int, *args):
    """Times fn(*args) (compiled and warmed up first) for `rounds` rounds; returns its output."""
    out = jax.block_until_ready(fn(*args))
    benchmark.pedantic(
        lambda: jax.block_until_ready(fn(*args)), rounds=rounds, iterations=1, warmup_rounds=0
    )
    return out
