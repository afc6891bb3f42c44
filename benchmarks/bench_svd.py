"""SVD scaling suite: rrae_fast and every available peer, forward and forward + backward.

Each case (see :mod:`cases`) is one pytest-benchmark group holding rrae_fast (cold start, warm
start, and the dense path where it is the reference) and every peer of :mod:`peers`, so ratios
come from one run. Every result carries, in ``extra_info``: the case, the accuracy of that
contender on that input against a float64 LAPACK reference (forward), the gradient's
finiteness and its error against a float64 reference gradient where that is affordable
(forward + backward), the number of rounds, XLA's temporary buffer size (JAX contenders), the
peak resident memory of one call measured in a fresh process (``--memory``), the machine, its
load and the BLAS threads. Contenders that cannot or should not run are skipped with a reason
(kept in the JSON output for the report).

Full run (CPU, about 80 minutes on 2 cores; references are cached in benchmarks/.cache):

    pytest benchmarks/bench_svd.py --benchmark-only --no-cov -p no:cacheprovider \\
        --benchmark-json=bench.json
    python benchmarks/report.py bench.json --results benchmarks/RESULTS.md --readme README.md

Quick smoke test (~3 minutes): add ``--quick``.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

import cases
import memory
import peers
import rrae_fast
from cases import Case
from conftest import quick, skip

SWEEP_M, SWEEP_N = 4096, 4608  # latent × batch, as in the paper's CelebA runs
SWEEP_K = (2, 16, 64, 256, 1024, 2500)


def full_cases() -> list[Case]:
    out = []
    for mode in ("fwd", "grad"):
        out += [Case(mode, SWEEP_M, SWEEP_N, k) for k in SWEEP_K]
    out += [Case("fwd", 4096, 4096, k) for k in (16, 64, 256, 1024, 2500)]
    out += [Case("fwd", 4096, 4096, 1024, "flat"), Case("grad", 4096, 4096, 256)]
    out += [
        Case("fwd", SWEEP_M, SWEEP_N, 64, "flat"),
        Case("fwd", 2048, 1024, 64, "rrae", "float64"),
        Case("fwd", 2048, 1024, 64, "flat", "float64"),
        Case("grad", 2048, 1024, 128),
    ]
    for mode in ("fwd", "grad"):
        out += [Case(mode, 200, 64, k) for k in (2, 16, 64)]
        out += [
            Case(mode, 200, 64, 16, "rrae", "float64"),
            Case(mode, 200, 64, 16, batch=1024, vmap=True),
        ]
    out.append(Case("fwd", 64, 32, 8, "flat", batch=1024))
    return out


def quick_cases() -> list[Case]:
    out = []
    for mode in ("fwd", "grad"):
        out += [Case(mode, 512, 576, k) for k in (2, 16, 64, 256)]
        out += [Case(mode, 200, 64, k) for k in (2, 16)]
        out.append(Case(mode, 200, 64, 16, batch=64, vmap=True))
    out += [
        Case("fwd", 512, 512, 64),
        Case("fwd", 512, 576, 16, "flat"),
        Case("fwd", 512, 576, 16, "rrae", "float64"),
        Case("fwd", 64, 32, 8, "flat", batch=64),
    ]
    return out


def gpu_cases() -> list[Case]:
    """The GPU suite (run by benchmarks/gpu_check.sh): the CUDA issue's cases."""
    out = []
    for mode in ("fwd", "grad"):
        out += [Case(mode, 200, 64, k) for k in (2, 16, 64)]
        out.append(Case(mode, 200, 64, 16, batch=1024, vmap=True))
    out += [Case("fwd", SWEEP_M, SWEEP_N, k) for k in (64, 256, 1024, 2500)]
    out.append(Case("fwd", SWEEP_M, SWEEP_N, 256, "flat"))
    return out


def contenders(case: Case) -> list[str]:
    names = list(peers.PEERS)
    if not (case.spectrum == "flat" or case.k >= 1024):
        names.remove("rrae_fast_dense")  # the dense path is the reference where it competes
    if case.mode == "fwd" and not case.batch:
        names.append(peers.GEMM_REFERENCE.name)
    return names


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        if jax.default_backend() == "gpu":
            chosen = gpu_cases()
        else:
            chosen = quick_cases() if quick(metafunc.config) else full_cases()
        params = [(c, name) for c in chosen for name in contenders(c)]
        metafunc.parametrize(
            ("case", "contender"), params, ids=[f"{c.group}-{name}" for c, name in params]
        )


#: Reference gradients are computed in float64 by differentiating a full SVD, up to this cost.
_GRAD_REFERENCE_LIMIT = 2048 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def _reference_grad(case: Case) -> np.ndarray | None:
    if case.m * case.n * min(case.m, case.n) * max(case.batch, 1) > _GRAD_REFERENCE_LIMIT:
        return None
    a, t = (x.astype(np.float64) for x in (cases.matrix(case), cases.target(case)))
    with jax.enable_x64(True):

        def loss(x):
            u, s, vt = jnp.linalg.svd(x, full_matrices=False)
            k = case.k
            ak = (u[..., :k] * s[..., None, :k]) @ vt[..., :k, :]
            return jnp.sum((ak - t) ** 2)

        return np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(a)))


_MEMORY_DONE: dict[tuple, dict] = {}


def _memory(settings, peer: peers.Peer, case: Case, seconds: float) -> dict:
    if settings["memory"] == "none" or (
        settings["memory"] == "ours" and peer.name not in peers.OURS
    ):
        return {}
    key = (peer.name, case if peer.k_dependent else (case.mode, case.shape, case.dtype))
    if key not in _MEMORY_DONE:
        result = memory.in_subprocess(peer.name, case, timeout=120 + 4 * seconds)
        _MEMORY_DONE[key] = result if isinstance(result, dict) else {"memory_note": result}
    return _MEMORY_DONE[key]


def _time(benchmark, settings, peer, case, a, t, estimate):
    prepared = peer.prepare(case, a, t)  # JAX contenders compile here, outside the timing
    # OpenBLAS's worker threads spin for ~0.1 s after their last call (those of the previous
    # contender, or of this one's preparation); on two cores they would take the CPU from the
    # calls timed next, most visibly from the first contender of each group.
    time.sleep(settings["pause_seconds"])
    # A first call settles one-time allocations and sizes the rounds; it is skipped for
    # contenders whose single call is estimated to exceed the timing target.
    rounds = 1
    if estimate < settings["target_seconds"]:
        t0 = time.perf_counter()
        prepared.call()
        first = max(time.perf_counter() - t0, 1e-6)
        rounds = int(np.clip(settings["target_seconds"] / first, 1, settings["max_rounds"]))
    out = benchmark.pedantic(prepared.call, rounds=rounds, iterations=1, warmup_rounds=0)
    return out, prepared


def test_svd(benchmark, record, settings, gemm_rate, case, contender):
    benchmark.group = case.group
    peer = peers.get(contender)
    reason = peer.why_not(case)
    if reason is not None:
        skip(case.group, contender, reason)
    estimate = peer.estimate(case, gemm_rate)
    if estimate > settings["budget"]:
        skip(
            case.group,
            contender,
            f"estimated {estimate:.0f} s per call > budget {settings['budget']:.0f} s",
        )
    a, t = cases.matrix(case), cases.target(case)
    with jax.enable_x64(case.dtype == "float64"):
        out, prepared = _time(benchmark, settings, peer, case, a, t, estimate)

    info = {
        "case": case.as_dict(),
        "contender": contender,
        "estimate_s": estimate,
        "gemm_rate_tflops": gemm_rate / 1e12,  # the machine's measured dot rate
    }
    if contender == peers.GEMM_REFERENCE.name:
        flops = 2.0 * case.m * case.n * case.k
        info["achieved_tflops"] = flops / benchmark.stats.stats.median / 1e12
    if case.mode == "fwd" and prepared.factors is not None:
        info.update(cases.accuracy(case, *prepared.factors(out)))
        info["contract_bound"] = cases.contract_bound(case)
    if case.mode == "grad":
        g = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out)
        info["grad_finite"] = bool(np.all(np.isfinite(g)))
        ref = _reference_grad(case)
        if ref is not None:
            info["grad_err"] = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))
    cheap = benchmark.stats.stats.median < 2.0  # diagnose runs the kernel once more
    if contender in peers.OURS and case.mode == "fwd" and jax.default_backend() == "cpu" and cheap:
        with jax.enable_x64(case.dtype == "float64"):  # else a float64 input is run as float32
            info.update(_diagnose(case, a, contender, prepared.init))
    info.update(_memory(settings, peer, case, benchmark.stats.stats.median))
    record(**info)
    if contender in peers.OURS and "sigma_err" in info:
        # Our own results must meet the accuracy contract (a fast but wrong op is a failure).
        bound = info["contract_bound"]
        assert info["sigma_err"] <= bound and info["residual"] <= bound, info


def _diagnose(case: Case, a: np.ndarray, contender: str, init) -> dict:
    """The path the CPU kernel took and its products with A (first batch member)."""
    method = "dense" if contender == "rrae_fast_dense" else "auto"
    if case.batch:
        a, init = a[0], None if init is None else init[0]
    d = rrae_fast.diagnose(a, case.k, method=method, init=init)
    return {"path": str(d["path"]), "passes": int(d["passes"])}
