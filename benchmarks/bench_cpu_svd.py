"""CPU forward and gradient benchmarks of rrae_fast against the SVDs users would otherwise pick.

Every group holds rrae_fast and its peers on the same input, so ratios come from one run.
Run: pytest benchmarks/bench_cpu_svd.py --benchmark-only --no-cov -p no:cacheprovider
     --benchmark-json=bench.json   (add -k to select; slow peers at large sizes take ~10 s/call)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import rrae_fast
from conftest import flat, have, rrae_like, run, sigma_error

# ---------------------------------------------------------------------------------------------
# Large matrices: 4096 x 4096, float32
# ---------------------------------------------------------------------------------------------

N = 4096
PEERS_BIG = ["rrae_fast", "rrae_fast_warm", "torch_svd_lowrank", "jnp_svd", "gemm_reference"]


@functools.lru_cache(maxsize=2)
def _big_input(spectrum: str, k: int):
    rng = np.random.default_rng(k)
    a = rrae_like(rng, N, N, k) if spectrum == "rrae" else flat(rng, N, N)
    s_ref = scipy.linalg.svd(a.astype(np.float64), compute_uv=False, lapack_driver="gesdd")
    return a, s_ref


def _jnp_svd(k):
    @jax.jit
    def f(x):
        u, s, vt = jnp.linalg.svd(x, full_matrices=False)
        return u[:, :k], s[:k], vt[:k]

    return f


def _time_peer(benchmark, record, peer, a, s_ref, k, rounds):
    aj = jnp.asarray(a)
    if peer == "rrae_fast":
        f = jax.jit(lambda x: rrae_fast.truncated_svd(x, k))
        u, s, vt = run(benchmark, f, rounds, aj)
        record(passes=int(rrae_fast.diagnose(a, k)["passes"]))
    elif peer == "rrae_fast_dense":
        f = jax.jit(lambda x: rrae_fast.truncated_svd(x, k, method="dense"))
        u, s, vt = run(benchmark, f, rounds, aj)
        record(passes=0)
    elif peer == "rrae_fast_warm":
        # The previous step's basis of a nearby matrix (consecutive RRAE batches).
        prev = aj + 1e-4 * jax.random.normal(jax.random.key(0), aj.shape, aj.dtype)
        init = rrae_fast.truncated_svd(prev, k)[0]
        f = jax.jit(lambda x, i: rrae_fast.truncated_svd(x, k, init=i))
        u, s, vt = run(benchmark, f, rounds, aj, init)
        record(passes=int(rrae_fast.diagnose(a, k, init=init)["passes"]))
    elif peer == "torch_svd_lowrank":
        if not have("torch"):
            pytest.skip("torch is not installed")
        import torch

        t = torch.from_numpy(a)
        u, s, v = run(benchmark, lambda: torch.svd_lowrank(t, q=k + 10, niter=2), rounds)
        u, s, vt = u[:, :k].numpy(), s[:k].numpy(), v[:, :k].numpy().T
    elif peer == "jnp_svd":
        u, s, vt = run(benchmark, _jnp_svd(k), 1, aj)
    elif peer == "gemm_reference":
        x = jnp.asarray(a[:, :k])
        run(benchmark, jax.jit(lambda p, q: p @ q), rounds, aj, x)
        record(what=f"{N}x{N} @ {N}x{k} GEMM (XLA)")
        return
    else:  # pragma: no cover
        raise ValueError(peer)
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    a64 = a.astype(np.float64)
    record(
        sigma_err=sigma_error(s, s_ref),
        residual=float(np.max(np.linalg.norm(a64 @ vt.T - u * s, axis=0)) / s_ref[0]),
        orth_u=float(np.linalg.norm(u.T @ u - np.eye(k), 2)),
        contract_bound=float(20 * np.sqrt(N) * np.finfo(np.float32).eps),
    )


@pytest.mark.parametrize("peer", PEERS_BIG)
@pytest.mark.parametrize("k", [16, 64, 256])
def test_fwd_4096_rrae(benchmark, record, k, peer):
    benchmark.group = f"fwd-4096x4096-rrae-k{k}-f32"
    a, s_ref = _big_input("rrae", k)
    _time_peer(benchmark, record, peer, a, s_ref, k, rounds=5)


@pytest.mark.parametrize("peer", ["rrae_fast", "torch_svd_lowrank", "gemm_reference"])
def test_fwd_4096_k1024(benchmark, record, peer):
    benchmark.group = "fwd-4096x4096-rrae-k1024-f32"
    a, s_ref = _big_input("rrae", 1024)
    _time_peer(benchmark, record, peer, a, s_ref, 1024, rounds=2)


@pytest.mark.parametrize("peer", ["rrae_fast", "jnp_svd"])
def test_fwd_4096_k2500(benchmark, record, peer):
    benchmark.group = "fwd-4096x4096-flat-k2500-f32"
    a, s_ref = _big_input("flat", 2500)
    _time_peer(benchmark, record, peer, a, s_ref, 2500, rounds=1)


@pytest.mark.parametrize("peer", ["rrae_fast", "rrae_fast_dense"])
@pytest.mark.parametrize("k", [16, 1024])
def test_fwd_4096_flat(benchmark, record, k, peer):
    benchmark.group = f"fwd-4096x4096-flat-k{k}-f32"
    a, s_ref = _big_input("flat", k)
    _time_peer(benchmark, record, peer, a, s_ref, k, rounds=1)


# ---------------------------------------------------------------------------------------------
# The RRAE latent sizes: 200 x 64 and batches of small matrices
# ---------------------------------------------------------------------------------------------


def _small_fns(k, impl):
    if impl == "rrae_fast":
        fwd = jax.jit(lambda x: rrae_fast.truncated_svd(x, k))
        rr = functools.partial(rrae_fast.rank_reduce, k=k)
    else:
        fwd = _jnp_svd(k)

        def rr(x):
            u, s, vt = jnp.linalg.svd(x, full_matrices=False)
            return (u[..., :k] * s[..., None, :k]) @ vt[..., :k, :]

    return fwd, rr


@pytest.mark.parametrize("impl", ["rrae_fast", "jnp_svd"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("k", [2, 16, 64])
def test_latent_200x64(benchmark, record, k, mode, impl):
    benchmark.group = f"{mode}-200x64-k{k}-f32"
    rng = np.random.default_rng(0)
    a = jnp.asarray(rrae_like(rng, 200, 64, min(k, 8)))
    t = jnp.asarray(rng.standard_normal((200, 64)).astype(np.float32))
    fwd, rr = _small_fns(k, impl)
    if mode == "fwd":
        run(benchmark, fwd, 200, a)
    else:
        g = jax.jit(jax.grad(lambda x: jnp.sum((rr(x) - t) ** 2)))
        out = run(benchmark, g, 200, a)
        record(grad_finite=bool(np.all(np.isfinite(out))))


@pytest.mark.parametrize("impl", ["rrae_fast", "jnp_svd"])
def test_batched_1024x64x32(benchmark, record, impl):
    benchmark.group = "fwd-1024x(64x32)-k8-f32"
    a = jnp.asarray(np.random.default_rng(0).standard_normal((1024, 64, 32)).astype(np.float32))
    fwd, _ = _small_fns(8, impl)
    run(benchmark, fwd, 20, a)


# ---------------------------------------------------------------------------------------------
# Gradients through rank_reduce against the paper authors' stable SVD
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["rrae_fast", "rraes_stable_svd"])
@pytest.mark.parametrize("shape,k", [((2048, 1024), 128), ((4096, 4096), 256)])
def test_grad_rank_reduce(benchmark, record, shape, k, impl):
    benchmark.group = f"grad-rank_reduce-{shape[0]}x{shape[1]}-k{k}-f32"
    rng = np.random.default_rng(1)
    a = jnp.asarray(rrae_like(rng, *shape, k))
    t = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
    if impl == "rrae_fast":
        rr = functools.partial(rrae_fast.rank_reduce, k=k)
    else:
        if not have("RRAEs"):
            pytest.skip("the rraes package (RRAEs) is not installed")
        from RRAEs.utilities import stable_SVD

        def rr(x):
            u, s, vt = stable_SVD(x)
            return (u[:, :k] * s[:k]) @ vt[:k]

    g = jax.jit(jax.grad(lambda x: jnp.sum((rr(x) - t) ** 2)))
    out = run(benchmark, g, 2 if shape[0] == 4096 else 3, a)
    record(grad_finite=bool(np.all(np.isfinite(out))))
