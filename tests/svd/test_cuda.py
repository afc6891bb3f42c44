"""The CUDA kernel: the foundation's contract on the GPU, every path, batches, gradients.

Tests marked `gpu` need a CUDA device and a build with the CUDA module
(`RRAE_FAST_ENABLE_CUDA=1 pip install .`); they skip otherwise, and fail instead with
`RRAE_FAST_REQUIRE_GPU=1`. The others check, on any machine, what the CUDA layer shares with the
CPU one.
"""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rrae_fast
from helpers import assert_contract, make_matrix, planted
from rrae_fast.svd import _forward, _native

SOURCE = pathlib.Path(__file__).resolve().parents[2] / "csrc"


def test_path_codes_match_the_kernels():
    """The path codes the module exports (csrc/ffi/codes.h) are every enumerator both kernels
    write, by its own name."""
    text = (SOURCE / "common" / "svd_types.h").read_text()
    body = text[text.index("enum class Path") :]
    body = body[: body.index("};")]
    codes = {int(v): name for name, v in re.findall(r"k(\w+) = (\d+),", body)}
    snake = {code: re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for code, name in codes.items()}
    assert tuple(snake[i] for i in range(len(snake))) == _forward.PATHS


def test_cuda_status_is_reported():
    """Whether the CUDA module loaded, and why not, is one readable line."""
    status = rrae_fast.cuda_status()
    assert status is _native.cuda_status()
    assert isinstance(status, str) and status
    assert ("loaded" in status) == _native.cuda_available()


def _runtime_conditions(jaxpr) -> int:
    """The conditions of a jaxpr, nested ones included, that XLA decides at run time: all but
    the platform switches of `lax.platform_dependent` (their index is a `platform_index`,
    fixed when the program is compiled for one platform). XLA:GPU runs each such condition by
    copying its predicate to the host and waiting for it."""
    from jax.extend import core as jcore

    count, producers = 0, {}
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond" and producers.get(id(eqn.invars[0])) != "platform_index":
            count += 1
        for v in eqn.outvars:
            producers[id(v)] = eqn.primitive.name
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                if isinstance(sub, jcore.ClosedJaxpr):
                    count += _runtime_conditions(sub.jaxpr)
                elif isinstance(sub, jcore.Jaxpr):
                    count += _runtime_conditions(sub)
    return count


@pytest.mark.skipif(not _native.cuda_available(), reason="built without the CUDA module")
def test_the_dense_path_holds_no_run_time_condition():
    """With the CUDA module loaded (a GPU is not needed to trace), the op's program holds the
    CUDA branch: its dense path, forward and derivative, has no condition that would make XLA
    synchronise with the host; the iterative path keeps the redo of flagged members."""
    x = jnp.ones((700, 300), jnp.float32)

    def count(f):
        return _runtime_conditions(jax.make_jaxpr(f)(x).jaxpr)

    assert count(lambda a: rrae_fast.truncated_svd(a, 20, method="dense")) == 0
    assert count(jax.grad(lambda a: rrae_fast.rank_reduce(a, 20, method="dense").sum())) == 0
    assert count(lambda a: rrae_fast.truncated_svd(a, 20, method="iterative")) >= 1


def test_the_condition_counter_sees_nested_conditions_and_skips_platform_switches():
    def f(a):
        inner = jax.lax.cond(a[0] > 0, lambda b: b, lambda b: -b, a)
        return jax.lax.platform_dependent(inner, cpu=lambda b: b * 2, default=lambda b: b)

    assert _runtime_conditions(jax.make_jaxpr(f)(jnp.ones(3)).jaxpr) == 1
    # The exact rule's fallback to the full SVD is a condition inside the op's derivative.
    x = jnp.ones((700, 300), jnp.float32)
    grad = jax.grad(lambda a: rrae_fast.rank_reduce(a, 20, method="iterative").sum())
    assert _runtime_conditions(jax.make_jaxpr(grad)(x).jaxpr) >= 1


# ---------------------------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------------------------


def _gpu():
    return jax.devices("cuda")[0]


def _on_gpu(x):
    return jax.device_put(jnp.asarray(x), _gpu())


def _path(a, k, method="auto"):
    """The path code the CUDA kernel reports for each member."""
    x = _on_gpu(a)
    ks = jnp.full(x.shape[:-2], k, jnp.int32)
    info = jax.jit(lambda y, kk: _forward.ffi_call(y, kk, k, None, method)[3])(x, ks)
    return np.array(_forward.PATHS)[np.asarray(info[..., 0])]


SHAPES = [(8, 5), (5, 8), (64, 64), (200, 64), (64, 200), (700, 300), (300, 700)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["auto", "dense", "iterative"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("spectrum", ["flat", "decaying", "rank_deficient", "zero"])
def test_contract_on_gpu(shape, method, dtype, spectrum):
    rng = np.random.default_rng(sum(shape))
    a = make_matrix(rng, shape, spectrum).astype(dtype)
    k = max(1, min(shape) // 3)
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), k, method=method)
    assert u.devices() == {_gpu()}
    assert_contract(a, u, s, vt, k)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (100, 64)], ids=str)
@pytest.mark.parametrize("spectrum", ["rank_deficient", "zero"])
def test_full_svd_of_a_rank_deficient_matrix_on_gpu(shape, spectrum):
    """k = min(m, n), as the exact derivative asks: the columns beyond the rank are completed to
    an orthonormal basis, the last of a square matrix too (where only one direction is left)."""
    rng = np.random.default_rng(3)
    a = make_matrix(rng, shape, spectrum).astype(np.float32)
    k = min(shape)
    assert set(_path(a, k)) == {"jacobi"}
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), k)
    assert_contract(a, u, s, vt, k)


@pytest.mark.gpu
def test_batched_small_matrices_take_one_jacobi_launch():
    rng = np.random.default_rng(0)
    a = make_matrix(rng, (256, 200, 64), "decaying").astype(np.float32)
    assert set(_path(a, 16)) == {"jacobi"}
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 16)
    assert_contract(a, u, s, vt, 16)


@pytest.mark.gpu
def test_vmap_matches_the_batched_call():
    rng = np.random.default_rng(1)
    a = _on_gpu(make_matrix(rng, (64, 200, 64), "flat").astype(np.float32))
    direct = rrae_fast.truncated_svd(a, 8)
    mapped = jax.jit(jax.vmap(lambda x: rrae_fast.truncated_svd(x, 8)))(a)
    for x, y in zip(direct, mapped):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.gpu
def test_non_finite_member_is_nan_and_others_are_exact():
    rng = np.random.default_rng(2)
    for shape in [(4, 200, 64), (3, 700, 300)]:
        a = make_matrix(rng, shape, "flat").astype(np.float32)
        a[1, 3, 2] = np.nan
        u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 5)
        assert np.all(np.isnan(np.asarray(s[1]))) and np.all(np.isnan(np.asarray(u[1])))
        for b in (0, 2):
            assert_contract(a[b], u[b], s[b], vt[b], 5)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["auto", "dense", "iterative"])
@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_every_path_meets_the_contract_at_extreme_float64_scales(method, scale):
    """float64 (40×25)·1e±200 on each path: Jacobi (auto), cuSOLVER, the iteration (redone on
    the dense path where its residual test fails)."""
    a = make_matrix(np.random.default_rng(11), (40, 25), "flat") * scale
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 7, method=method)
    assert np.all(np.isfinite(np.asarray(s))) and np.asarray(s)[0] > 0
    assert_contract(a, u, s, vt, 7)


@pytest.mark.gpu
def test_a_full_rank_truncation_of_a_tall_matrix():
    """300×32 float32 with a decaying spectrum at k = 32 (every column kept): the Jacobi
    kernel's negligible-column threshold must not discard the small singular values."""
    a = make_matrix(np.random.default_rng(5), (300, 32), "decaying").astype(np.float32)
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 32)
    assert_contract(a, u, s, vt, 32)


@pytest.mark.gpu
def test_a_batch_of_a_million_tiny_matrices():
    """2²⁰ matrices of 4×3 in one call: every member gets its flags and its factors (the
    per-member kernels are grid-stride past 4096 blocks)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((1 << 20, 4, 3)).astype(np.float32)
    a[-1] = np.nan  # the last member's NaN must reach the last block's flags
    u, s, vt = (np.asarray(x) for x in rrae_fast.truncated_svd(_on_gpu(a), 2))
    assert np.isnan(s[-1]).all() and np.isnan(u[-1]).all() and np.isnan(vt[-1]).all()
    assert np.isfinite(s[:-1]).all() and np.isfinite(u[:-1]).all()
    ref = np.linalg.svd(a[-4096:-1].astype(np.float64), compute_uv=False)[:, :2]
    np.testing.assert_allclose(s[-4096:-1], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e160, 1e200])
@pytest.mark.parametrize("shape", [(40, 25), (25, 40)], ids=str)
def test_jacobi_meets_the_contract_at_extreme_float64_scales(shape, scale):
    """The Jacobi kernel decomposes the matrix scaled by a power of two: sums of squares at
    1e±200 neither overflow (σ = inf reported as converged) nor underflow (σ = 0)."""
    a = make_matrix(np.random.default_rng(7), shape, "decaying") * scale
    assert _path(a, 7)[()] == "jacobi"
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 7)
    assert np.all(np.isfinite(np.asarray(s))) and np.asarray(s)[0] > 0
    assert_contract(a, u, s, vt, 7)


@pytest.mark.gpu
@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_residual_test_is_relative_at_extreme_float64_scales(scale):
    """Residuals are measured in units of σ_1: the fixed power steps on a flat 1024² spectrum
    cannot meet float64's tolerance, and at 1e-200 the unconverged result must be flagged (its
    squared residuals underflowed to zero and passed) and redone."""
    a = np.random.default_rng(3).standard_normal((1024, 1024)) * scale
    assert _path(a, 64, "iterative")[()] == "unconverged"
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 64, method="iterative")
    assert_contract(a, u, s, vt, 64)


@pytest.mark.gpu
def test_only_paths_that_can_flag_a_member_carry_a_condition():
    """XLA waits on the host for a condition; the dense path never flags a member, so its
    forward pass has none (the iterative path keeps the one that redoes flagged members)."""
    x = _on_gpu(np.ones((700, 300), np.float32))

    def conditions(method):
        f = jax.jit(lambda a: rrae_fast.truncated_svd(a, 20, method=method))
        text = f.lower(x).as_text()
        return text.count("stablehlo.case") + text.count("stablehlo.if")

    assert conditions("dense") == 0
    assert conditions("iterative") >= 1


@pytest.mark.gpu
def test_unconverged_iteration_is_redone_on_the_dense_path():
    """A flat spectrum defeats the fixed iteration schedule; the op still meets the contract."""
    a = np.random.default_rng(3).standard_normal((1024, 1024)).astype(np.float32)
    assert _path(a, 64, "iterative")[()] == "unconverged"
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 64, method="iterative")
    assert_contract(a, u, s, vt, 64)


@pytest.mark.gpu
def test_the_redo_factors_only_the_unconverged_members():
    """Of a batch of two, the converged member keeps the iteration's factors bit for bit and
    the unconverged one is redone; the redo call itself skips a member whose k is -1 (its
    outputs are then zero, which the op never reads)."""
    rng = np.random.default_rng(6)
    noise = 1e-3 * rng.standard_normal((1024, 1024)) / 40
    good = planted(rng, 1024, 1024, np.linspace(10, 1, 32)) + noise
    flat = rng.standard_normal((1024, 1024))
    a = np.stack([good, flat]).astype(np.float32)
    assert list(_path(a, 32, "iterative")) == ["iterative", "unconverged"]
    x = _on_gpu(a)
    u, s, vt = rrae_fast.truncated_svd(x, 32, method="iterative")
    for i in range(2):
        assert_contract(a[i], u[i], s[i], vt[i], 32)
    ks = jnp.full((2,), 32, jnp.int32)
    first = jax.jit(lambda y, kk: _forward.ffi_call(y, kk, 32, None, "iterative")[:3])(x, ks)
    for got, want in zip((u, s, vt), first):
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    skip = jnp.array([-1, 32], jnp.int32)
    redo = jax.jit(lambda y, kk: _forward.ffi_call(y, kk, 32, None, "dense_redo"))
    ru, rs, rvt, _ = redo(x, skip)
    assert not np.any(np.asarray(rs[0])) and not np.any(np.asarray(ru[0]))
    assert_contract(a[1], ru[1], rs[1], rvt[1], 32)


@pytest.mark.gpu
def test_rank_k_plus_noise_converges_on_the_iterative_path():
    rng = np.random.default_rng(4)
    a = planted(rng, 2048, 1536, np.linspace(10, 1, 32))
    a = (a + 1e-3 * rng.standard_normal(a.shape) / 40).astype(np.float32)
    assert _path(a, 32)[()] == "iterative"
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 32)
    assert_contract(a, u, s, vt, 32)


@pytest.mark.gpu
@pytest.mark.parametrize("init", ["previous", "nan", "zeros"])
def test_warm_start_on_gpu(init):
    rng = np.random.default_rng(5)
    a = planted(rng, 1024, 768, np.linspace(10, 1, 24)).astype(np.float32)
    if init == "previous":
        seed = rrae_fast.truncated_svd(_on_gpu(a + 1e-4), 24)[0]
    elif init == "nan":
        seed = jnp.full((1024, 24), jnp.nan, jnp.float32)
    else:
        seed = jnp.zeros((1024, 24), jnp.float32)
    u, s, vt = rrae_fast.truncated_svd(_on_gpu(a), 24, init=_on_gpu(seed))
    assert_contract(a, u, s, vt, 24)


@pytest.mark.gpu
def test_traced_k_zeros_beyond_k_without_retracing():
    rng = np.random.default_rng(6)
    a = _on_gpu(make_matrix(rng, (300, 200), "decaying").astype(np.float32))
    traces = []

    @jax.jit
    def f(x, k):
        traces.append(1)
        return rrae_fast.truncated_svd(x, k, max_k=20)

    for k in (20, 7, 1):
        u, s, vt = f(a, jnp.int32(k))
        assert np.all(np.asarray(s)[k:] == 0) and np.all(np.asarray(u)[:, k:] == 0)
        assert_contract(np.asarray(a), u[:, :k], s[:k], vt[:k], k)
    assert len(traces) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("shape,k", [((200, 64), 16), ((700, 300), 20)])
def test_gradient_matches_cpu(shape, k):
    rng = np.random.default_rng(7)
    a = planted(rng, *shape, np.linspace(5, 1, min(shape))).astype(np.float64)
    t = rng.standard_normal(shape)

    def loss(x):
        return jnp.sum((rrae_fast.rank_reduce(x, k) - t) ** 2)

    with jax.enable_x64(True):
        g_cpu = jax.grad(loss)(jax.device_put(a, jax.devices("cpu")[0]))
        g_gpu = jax.grad(loss)(_on_gpu(a))
        np.testing.assert_allclose(np.asarray(g_gpu), np.asarray(g_cpu), rtol=1e-8, atol=1e-9)
