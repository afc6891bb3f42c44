"""The kernel computes with IEEE subnormals whatever thread calls it (csrc/common/float_env.h).

XLA's CPU threads flush subnormals to zero while OpenBLAS's worker threads do not; a LAPACK call
split between the two once handed dgesdd's bidiagonal solver a zero scale and sent the fallback
dgesvd into an endless QR iteration on a rank-one float64 matrix. The reproducer runs in a
subprocess with a deadline, so that a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import helpers
import rrae_fast

# The reproducer of the hang and of its sibling that raised (both float64 rank one; 600 x 400
# is "large", so OpenBLAS splits the dense SVD between its threads), plus the gradient whose
# tie across the cut takes the full-SVD rule. Prints the singular values and gradient's sum.
_CHILD = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import rrae_fast
    rng = np.random.default_rng(0)
    cases = {
        "identical columns": np.outer(rng.standard_normal(600), np.ones(400)),
        "arange rows": np.outer(np.arange(1.0, 601.0), np.ones(400)),
        "ones": np.ones((800, 800)),
    }
    for name, a in cases.items():
        for k in (2, 200):
            s = np.asarray(rrae_fast.truncated_svd(a, k, method="dense")[1])
            ref = np.linalg.svd(a, compute_uv=False)[:k]
            err = float(np.max(np.abs(s - ref)) / ref[0])
            print(name, k, "error", err, flush=True)
    a = cases["identical columns"]
    g = jax.grad(lambda x: jnp.sum(rrae_fast.rank_reduce(x, 2) * jnp.sin(x)))(a)
    print("grad finite", bool(np.all(np.isfinite(np.asarray(g)))), flush=True)
    """
)

# OpenBLAS kernels older than the machine's own, which run on every CPU with AVX; with these the
# hang reproduced on every machine tried (with the newest kernels only on some CPUs).
_OLD_KERNELS = "Sandybridge"


def _run_child(extra_env: dict[str, str], cwd) -> str:
    env = {**os.environ, **extra_env}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            env=env,
            cwd=cwd,  # not the repository root, whose source tree would shadow the package
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the dense SVD did not return within {e.timeout} s (hang): {e.stdout!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "illegal value" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done.stdout


def _check_child_output(out: str) -> None:
    lines = out.strip().splitlines()
    errors = [float(line.split()[-1]) for line in lines if " error " in line]
    assert len(errors) == 6, out
    c = helpers.contract_constant(800, 800)
    assert max(errors) <= c * np.finfo(np.float64).eps, out
    assert lines[-1] == "grad finite True", out


def _has_avx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx " in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("kernels", ["machine", "old"])
def test_rank_one_dense_returns(kernels, tmp_path):
    """Rank-one float64 matrices on the multi-threaded dense path return within the contract."""
    extra = {}
    if kernels == "old":
        if "OPENBLAS_CORETYPE" in os.environ:
            pytest.skip("OPENBLAS_CORETYPE is set for this machine; it is not overridden")
        if not _has_avx():
            pytest.skip(f"OpenBLAS's {_OLD_KERNELS} kernels need AVX")
        extra["OPENBLAS_CORETYPE"] = _OLD_KERNELS
    _check_child_output(_run_child(extra, tmp_path))


def _assert_subnormal_contract(a, u, s, vt, k):
    """The accuracy contract, with the outputs' own resolution added to the absolute bounds.

    Singular values of a subnormal matrix are themselves subnormal, representable only to the
    dtype's smallest subnormal; that spacing, not ε, limits them.
    """
    a64 = np.asarray(a, np.float64)
    tiny = float(np.finfo(a.dtype).smallest_subnormal)
    eps = float(np.finfo(a.dtype).eps)
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    *batch, m, n = a.shape
    c = helpers.contract_constant(m, n)
    _, s_ref, _ = helpers.reference_svd(a64)
    for idx in np.ndindex(*batch):
        norm = s_ref[idx][0]
        tol = c * eps * norm + 2 * tiny
        S = s[idx]
        assert np.all(np.isfinite(S)) and np.all(S >= 0) and np.all(np.diff(S) <= 0), S
        assert np.max(np.abs(S - s_ref[idx][:k])) <= tol, (np.max(np.abs(S - s_ref[idx][:k])), tol)
        U, V = u[idx], vt[idx].T
        # Residuals scaled by 1/‖A‖₂ (exact in float64: the entries are far from its limits).
        res = np.linalg.norm(a64[idx] @ V - U * S, axis=0) / norm
        assert np.max(res) <= tol / norm, (np.max(res), tol / norm)
        assert np.linalg.norm(U.T @ U - np.eye(k), 2) <= c * eps
        assert np.linalg.norm(V.T @ V - np.eye(k), 2) <= c * eps


@pytest.mark.parametrize("method", ["auto", "dense", "gram", "iterative"])
@pytest.mark.parametrize(
    "dtype,scale", [(np.float32, 1e-44), (np.float32, 1e-39), (np.float64, 1e-315)]
)
@pytest.mark.parametrize("shape", [(1, 1), (32, 16), (16, 300), (3, 40, 30)])
def test_subnormal_input_is_decomposed(rng, method, dtype, scale, shape):
    """All-subnormal input: σ ≥ 0, descending, within the contract plus the output's spacing.

    Under XLA's flush-to-zero such a matrix was read as zero on the Gram and iterative paths
    and gave negative, unsorted σ on the dense path.
    """
    if method == "gram" and dtype == np.float64:
        pytest.skip("the Gram path is float32 only")
    a = (helpers.make_matrix(rng, shape, "flat") * scale).astype(dtype)
    assert np.all(np.abs(a) < np.finfo(dtype).tiny)  # every entry subnormal (or zero)
    k = max(1, min(shape[-2:]) // 2)
    u, s, vt = rrae_fast.truncated_svd(a, k, method=method)
    assert float(np.asarray(s).max()) > 0
    _assert_subnormal_contract(a, u, s, vt, k)


def test_subnormal_entries_beside_normal_ones(rng):
    """Subnormal entries of a normal matrix count (their column's σ is not flushed to zero)."""
    a = np.diag([1.0, 1e-310, 0.0])
    s = np.asarray(jax.jit(lambda x: rrae_fast.truncated_svd(x, 2, method="dense")[1])(a))
    assert s[0] == 1.0 and s[1] == 1e-310


TINY_SHAPES = [(7, 4), (4, 7), (6, 6), (1, 5), (5, 1), (40, 30), (200, 64), (300, 260), (3, 9, 5)]


@pytest.mark.parametrize("method", ["auto", "dense", "iterative"])
@pytest.mark.parametrize("spectrum", ["flat", "decaying"])
@pytest.mark.parametrize("shape", TINY_SHAPES)
def test_float64_at_the_bottom_of_its_range(rng, method, spectrum, shape):
    """Every entry a normal number near 1e-300, k = min(m, n) - 1: the contract holds on every
    path. The iteration's products reach the subnormal range there; flushed to zero, they once
    let its residual test pass a result 1e5 times outside the contract (40×30: 2.3e-9·σ_1)."""
    a = helpers.make_matrix(rng, shape, spectrum) * 1e-300
    k = max(1, min(shape[-2:]) - 1)
    u, s, vt = rrae_fast.truncated_svd(a, k, method=method)
    helpers.assert_contract(a, u, s, vt, k)


def test_iterative_reproducer_at_1e_minus_300():
    rng = np.random.default_rng(1)
    q1, _ = np.linalg.qr(rng.standard_normal((40, 30)))
    q2, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = (q1 * 10.0 ** (-6.0 * np.arange(30) / 30)) @ q2.T * 1e-300
    u, s, vt = rrae_fast.truncated_svd(a, 29, method="iterative")
    helpers.assert_contract(a, u, s, vt, 29)
