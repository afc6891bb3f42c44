"""Peak host memory of one call of one contender on one case, measured in a fresh process.

Usage: python benchmarks/memory.py PEER '{"mode": "fwd", "m": 4096, "n": 4608, "k": 256, ...}'

Builds the case's input and the contender's call (compiling it, for JAX), runs it once to settle
one-time allocations (then frees the workspace that rrae_fast's kernel keeps between calls, so
that the measured call's workspace is counted), then resets the kernel's high-water mark of the
resident set (``/proc/self/clear_refs``), runs it again and prints one JSON line: the peak
resident memory over the resident memory just before that call (``peak_extra_mib``: workspace
and outputs, the input excluded), and XLA's temporary buffer size for JAX contenders
(``xla_temp_mib``). The suites call this once per contender and case (``--memory``).
"""

from __future__ import annotations

import ctypes
import json
import pathlib
import subprocess
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import cases
import peers
import rrae_fast


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure(peer: str, case: cases.Case) -> dict[str, float]:
    a, t = cases.matrix(case), cases.target(case)
    with jax.enable_x64(case.dtype == "float64"):
        prepared = peers.get(peer).prepare(case, a, t)
        prepared.call()
    # The kernel keeps its workspace between calls; free it so that the measured call's is
    # counted (what a first call, or one after a call of another size, needs).
    rrae_fast.release_workspace()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    before = _status_mib("VmRSS")
    with jax.enable_x64(case.dtype == "float64"):
        prepared.call()
    out = {"peak_extra_mib": _status_mib("VmHWM") - before}
    if prepared.compiled is not None:
        analysis = prepared.compiled.memory_analysis()
        if analysis is not None:
            out["xla_temp_mib"] = analysis.temp_size_in_bytes / 2**20
    if jax.default_backend() == "gpu":
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:  # since process start: the input included
            out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


def in_subprocess(peer: str, case: cases.Case, timeout: float) -> dict[str, float] | str:
    """`measure` in a fresh interpreter; a dict, or the reason it failed."""
    cmd = [sys.executable, __file__, peer, json.dumps(case.as_dict())]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"memory measurement timed out after {timeout:.0f} s"
    if done.returncode != 0:
        return f"memory measurement failed: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fixed_mmap_threshold() -> None:
    """Large blocks always from mmap and returned on free (glibc raises the threshold after
    frees by default, so blocks recycled from the warm-up call would not be counted)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except OSError:  # not glibc
        pass


def main(argv: list[str]) -> int:
    _fixed_mmap_threshold()
    case = cases.Case(**json.loads(argv[2]))
    print(json.dumps(measure(argv[1], case)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
