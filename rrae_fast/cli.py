"""Command line entry point ``rrae-fast`` (also ``python -m rrae_fast``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from . import rank_reduce, truncated_svd

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(args.seed)
    m, n, rank = args.m, args.n, args.rank
    # A latent-like matrix: `rank` strong directions (σ from 10 down to 1) plus small noise.
    q1, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    a = (q1 * np.linspace(10.0, 1.0, rank)) @ q2.T + 1e-3 * rng.standard_normal((m, n))
    a32 = jnp.asarray(a, jnp.float32)
    k = args.k if args.k is not None else rank

    jax.block_until_ready(truncated_svd(a32, k))  # compile
    start = time.perf_counter()
    _, s, _ = truncated_svd(a32, k)
    jax.block_until_ready(s)
    elapsed = time.perf_counter() - start
    s_ref = np.linalg.svd(a, compute_uv=False)
    print(f"matrix {m}x{n} (float32), planted rank {rank}, k = {k}")
    print("top singular values :", np.array2string(np.asarray(s), precision=4))
    print(f"max |s - s_ref|     : {np.max(np.abs(np.asarray(s, np.float64) - s_ref[:k])):.2e}")
    print(f"sigma_(k+1) / sigma_k : {s_ref[k] / s_ref[k - 1]:.2e}" if k < min(m, n) else "")
    print(f"truncated_svd time  : {elapsed * 1e3:.2f} ms")
    target = jnp.asarray(rng.standard_normal((m, n)), jnp.float32)
    loss = lambda x: jnp.sum((rank_reduce(x, k) - target) ** 2)
    g = jax.jit(jax.grad(loss))(a32)
    print(f"|grad| of ||A_k - T||^2 through rank_reduce: {float(jnp.linalg.norm(g)):.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rrae-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="truncated SVD and its gradient on a latent-like matrix")
    demo.add_argument("--m", type=int, default=200, help="rows (latent size)")
    demo.add_argument("--n", type=int, default=64, help="columns (batch size)")
    demo.add_argument("--rank", type=int, default=5, help="planted rank")
    demo.add_argument("--k", type=int, default=None, help="triplets to keep (default: rank)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)
