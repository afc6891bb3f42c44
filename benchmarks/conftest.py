"""Shared setup of the benchmark suites: options, timing, machine records, skip reasons.

Options (after ``pytest benchmarks/ --benchmark-only``):

* ``--quick``: small sizes and few rounds (a smoke test of every suite, ~3 minutes on 2 cores;
  CI runs it). It fails on errors, never on timings.
* ``--peer-budget=SECONDS``: skip a peer whose estimated time per call exceeds this (default
  60; 10 with ``--quick``). The skip and its estimate are recorded in the JSON output.
* ``--memory={all,ours,none}``: measure the peak resident memory of each contender in a fresh
  process (default ``all``; ``ours`` with ``--quick``).

Skipped contenders (not installed, no GPU, not differentiable, over budget) are written to the
``--benchmark-json`` file under ``"skipped"`` with their group and reason, for the report.
"""

from __future__ import annotations

import os
import shlex
import time

import jax
import jax.numpy as jnp
import pytest

from cases import machine_info
from peers import have as have  # re-exported for the suites

_SKIPPED: list[dict] = []


def pytest_addoption(parser):
    group = parser.getgroup("rrae_fast benchmarks")
    group.addoption("--quick", action="store_true", help="small sizes, few rounds (smoke test)")
    group.addoption("--peer-budget", type=float, default=None, help="seconds per peer call")
    group.addoption("--memory", choices=["all", "ours", "none"], default=None)


def quick(config) -> bool:
    return bool(config.getoption("quick"))


@pytest.fixture(scope="session")
def settings(request) -> dict:
    config = request.config
    fast = quick(config)
    budget = config.getoption("peer_budget")
    memory = config.getoption("memory")
    return {
        "quick": fast,
        "budget": budget if budget is not None else (10.0 if fast else 60.0),
        "memory": memory or ("ours" if fast else "all"),
        "target_seconds": 0.5 if fast else 4.0,  # time spent timing one contender
        "max_rounds": 10 if fast else 200,
        # before each contender's timing, for the previous one's BLAS threads to go to sleep
        "pause_seconds": 0.0 if fast else 0.3,
    }


@pytest.fixture(scope="session")
def gemm_rate() -> float:
    """float32 flop/s of XLA's dot on this machine (best of 5), for cost estimates."""
    size = 8192 if jax.default_backend() == "gpu" else 2048
    x = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda p: p @ p)
    jax.block_until_ready(f(x))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


@pytest.fixture
def record(benchmark):
    """Stores machine info and returns a helper that adds values to the result's extra_info."""
    benchmark.extra_info.update(machine_info())
    # Thread settings are part of the record (the suites never change them).
    benchmark.extra_info["threads_env"] = {
        name: os.environ[name]
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
        if name in os.environ
    }

    def add(**values):
        benchmark.extra_info.update(values)

    return add


def skip(group: str, contender: str, reason: str):
    """Skip this contender, keeping (group, contender, reason) for the JSON report."""
    _SKIPPED.append({"group": group, "name": contender, "reason": reason})
    pytest.skip(reason)


def run(benchmark, fn, rounds: int, *args):
    """Times fn(*args) (compiled and warmed up first) for `rounds` rounds; returns its output."""
    out = jax.block_until_ready(fn(*args))
    benchmark.pedantic(
        lambda: jax.block_until_ready(fn(*args)), rounds=rounds, iterations=1, warmup_rounds=0
    )
    return out


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["skipped"] = list(_SKIPPED)
    # As typed (report.py drops the JSON file's directory when it shows the command).
    output_json["command"] = "pytest " + shlex.join(config.invocation_params.args)
    output_json["loadavg_end"] = os.getloadavg()
