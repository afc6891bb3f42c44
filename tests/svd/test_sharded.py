"""The ops on a matrix split by rows across devices (``axis_name``, inside ``shard_map``), on 8
simulated CPU devices: the accuracy contract for the whole matrix, the one-device results and
derivatives, a traced rank, ``vmap``, no gather of the operand in the compiled program.

The devices must exist before JAX starts, so in a process with fewer than 8 the tests below
skip and `test_on_simulated_devices` runs this file in a child process that has them
(``--xla_force_host_platform_device_count=8``); a failure there fails it.
"""

from __future__ import annotations

import functools
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import rrae_fast
from conftest import on_simulated_devices
from helpers import SPECTRA, assert_contract, make_matrix, planted
from rrae_fast.svd import _sharded

DEVICES = 8
needs_devices, test_on_simulated_devices = on_simulated_devices(__file__, DEVICES)


def _mesh():
    return jax.make_mesh((DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _split(x, mesh):
    return jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("data")))


def _split_op(op, mesh, **kwargs):
    """The body `op(a_d, ..., axis_name="data")` on each device's rows, and the output specs
    that gather its results."""
    if op == "rank_reduce":
        out = P("data")
    else:
        out = (P("data"), P(), P())

    def body(a, *rest):
        fn = getattr(rrae_fast, op)
        return fn(a, *rest, axis_name="data", **kwargs)

    return body, out


def _split_fn(op, k, mesh, **kwargs):
    """`op(·, k, axis_name="data")` of a matrix split by rows over `mesh` (not jitted)."""
    body, out = _split_op(op, mesh, **kwargs)
    return jax.shard_map(lambda x: body(x, k), mesh=mesh, in_specs=P("data"), out_specs=out)


def _run(op, a, k, mesh, **kwargs):
    return jax.jit(_split_fn(op, k, mesh, **kwargs))(_split(a, mesh))


# (global shape): rows split 8 ways; tall blocks, blocks shorter than n, square.
SHAPES = [(256, 32), (64, 128), (48, 48), (8, 24), (1024, 48)]


@functools.cache
def _traced_rank_op(max_k: int, method: str = "auto"):
    """truncated_svd split 8 ways with a traced k up to max_k: one compilation per shape and
    dtype for every k and spectrum."""
    mesh = _mesh()
    body, out = _split_op("truncated_svd", mesh, max_k=max_k, method=method)
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("data"), P()), out_specs=out))


@needs_devices
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_contract_for_the_whole_matrix(shape, dtype):
    rng = np.random.default_rng(0)
    r = min(shape)
    op = _traced_rank_op(r)
    for spectrum in ["flat", "decaying", "repeated", "rank_deficient", "zero"]:
        a = make_matrix(rng, shape, spectrum).astype(dtype)
        for k in sorted({1, max(1, r // 3), r}):
            u, s, vt = op(_split(a, _mesh()), jnp.int32(k))
            assert u.shape == (shape[0], r) and s.shape == (r,) and vt.shape == (r, shape[1])
            assert not np.any(np.asarray(s[k:])) and not np.any(np.asarray(u[:, k:]))
            if spectrum == "zero":
                assert not np.any(np.asarray(s))
                continue
            assert_contract(a, u[:, :k], s[:k], vt[:k], k)


@needs_devices
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_same_as_one_device_where_the_cut_has_a_gap(shape, dtype):
    """With a gap after σ_k the rank-k approximation is well determined: the split op and the
    one-device op agree to rounding, and so do their factors (the same sign convention)."""
    rng = np.random.default_rng(1)
    r = min(shape)
    k = max(1, r // 4)
    sigma = np.concatenate([np.linspace(4.0, 2.0, k), np.linspace(1.0, 0.1, r - k)])
    a = planted(rng, *shape, sigma).astype(dtype)
    mesh = _mesh()
    tol = 200 * np.finfo(dtype).eps * 4.0
    want = rrae_fast.rank_reduce(jnp.asarray(a), k)
    np.testing.assert_allclose(_run("rank_reduce", a, k, mesh), want, atol=tol, rtol=0)
    for got, one in zip(_run("truncated_svd", a, k, mesh), rrae_fast.truncated_svd(a, k)):
        np.testing.assert_allclose(got, one, atol=tol, rtol=0)


@needs_devices
@pytest.mark.parametrize("op", ["rank_reduce", "truncated_svd"])
@pytest.mark.parametrize("shape", [(256, 32), (64, 128)], ids=str)
def test_derivatives_are_the_one_device_derivatives(op, shape):
    """grad (reverse) and jvp (forward) through the split op, float64, against the one-device
    op's exact rule, with zeros in the discarded spectrum; for rank_reduce a tie inside the
    kept set too (the factors of a tied pair are one frame of many, so truncated_svd's own
    derivative there depends on the frame each op picks)."""
    rng = np.random.default_rng(2)
    r = min(shape)
    k = 6
    kept = [3.0, 3.0 if op == "rank_reduce" else 2.6, 2.0, 1.5, 1.2, 1.0]
    sigma = np.concatenate([kept, np.linspace(0.5, 0.1, r // 2 - k)])
    a = jnp.asarray(planted(rng, *shape, sigma))
    probe = [jnp.asarray(rng.standard_normal(x.shape)) for x in _shapes(op, shape, k)]
    da = jnp.asarray(rng.standard_normal(shape))
    mesh = _mesh()
    split = jax.jit(_split_fn(op, k, mesh))
    one = jax.jit(lambda x: getattr(rrae_fast, op)(x, k))

    def scalar(fn):
        return lambda x: sum(jnp.sum(o * p) for o, p in zip(_tuple(fn(x)), probe))

    g_split = jax.grad(scalar(split))(_split(a, mesh))
    g_one = jax.grad(scalar(one))(a)
    np.testing.assert_allclose(g_split, g_one, atol=1e-11 * float(jnp.max(jnp.abs(g_one))))
    _, t_split = jax.jvp(split, (_split(a, mesh),), (_split(da, mesh),))
    _, t_one = jax.jvp(one, (a,), (da,))
    for x, y in zip(_tuple(t_split), _tuple(t_one)):
        np.testing.assert_allclose(x, y, atol=1e-11 * float(jnp.max(jnp.abs(y))))


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _shapes(op, shape, k):
    m, n = shape
    if op == "rank_reduce":
        return [np.empty(shape)]
    return [np.empty(s) for s in [(m, k), (k,), (k, n)]]


@needs_devices
def test_a_traced_rank_and_vmap():
    """A traced k under one jit (zeros beyond k, no retrace), and vmap over a batch of split
    matrices, against the one-device op member by member."""
    rng = np.random.default_rng(3)
    a = make_matrix(rng, (3, 128, 16), "decaying")
    mesh = _mesh()
    traces = []

    def body(x, k):
        traces.append(1)
        return jax.vmap(lambda y: rrae_fast.rank_reduce(y, k, max_k=8, axis_name="data"))(x)

    fn = jax.jit(
        jax.shard_map(body, mesh=mesh, in_specs=(P(None, "data"), P()), out_specs=P(None, "data"))
    )
    x = jax.device_put(jnp.asarray(a), NamedSharding(mesh, P(None, "data")))
    for k in (2, 5, 8):
        got = fn(x, jnp.int32(k))
        want = rrae_fast.rank_reduce(jnp.asarray(a), k)
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert len(traces) == 1
    assert np.all(np.isnan(np.asarray(fn(x, jnp.int32(9)))))  # out of range: NaN, no error


@needs_devices
@pytest.mark.parametrize("op", ["rank_reduce", "truncated_svd"])
def test_no_gather_of_the_operand(op):
    """The compiled program moves the small triangular factors (an all-reduce of D·n·n
    numbers), never the operand: no all-gather or all-to-all."""
    mesh = _mesh()
    a = np.ones((4096, 64))
    fn = _split_fn(op, 16, mesh)

    def forward_and_grad(x):
        return jax.grad(lambda y: sum(jnp.sum(o) for o in _tuple(fn(y))))(x)

    text = jax.jit(forward_and_grad).lower(_split(a, mesh)).compile().as_text()
    assert "all-gather" not in text and "all-to-all" not in text
    reduced = [line for line in text.splitlines() if " all-reduce(" in line]
    assert reduced, "no all-reduce: is the op split at all?"


@needs_devices
def test_limits_are_clear_errors():
    mesh = _mesh()
    a = np.ones((32, 24))  # 4 rows per device, k may still go to min(32, 24)

    def call(**kwargs):
        return _run("truncated_svd", a, kwargs.pop("k", 3), mesh, **kwargs)

    assert call(k=24)[0].shape == (32, 24)
    with pytest.raises(ValueError, match=r"min\(m, n\) = 24"):
        call(k=25)
    with pytest.raises(ValueError, match="method must be 'auto', 'dense' or 'iterative'"):
        _run("truncated_svd", a.astype(np.float32), 3, mesh, method="gram")
    with pytest.raises(ValueError, match="gradient must be 'exact'"):
        call(gradient="tangent")
    with pytest.raises(ValueError, match="no warm start"):
        call(init=np.ones((4, 2)))
    with pytest.raises(ValueError, match="check_finite is not available"):
        call(check_finite=True)
    fn = jax.shard_map(
        lambda y: rrae_fast.rank_reduce(y, 2, axis_name="data"),
        mesh=mesh,
        in_specs=P(None, "data"),
        out_specs=P(None, "data"),
    )
    with pytest.raises(ValueError, match="vmap the call for a batch"):
        jax.jit(fn)(jnp.ones((2, 32, 24)))


@needs_devices
def test_the_documented_examples_run():
    """docs/op.md's examples, run as written, one after the other: the whole matrix's rank-4
    approximation, through shard_map and from an input typed as split."""

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "op.md").read_text()
    section = text[text.index("## A matrix split by rows across devices") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    scope: dict = {}
    for code in blocks:
        exec(compile(code, "docs/op.md", "exec"), scope)
    for source, result in (("latent", "approx"), ("rows", "approx_rows")):
        whole = jnp.asarray(np.asarray(scope[source]))
        assert scope[result].sharding.spec[0] == "data"
        np.testing.assert_allclose(
            scope[result], rrae_fast.rank_reduce(whole, 4), atol=1e-4 * float(jnp.max(whole))
        )


@needs_devices
def test_a_non_finite_entry_on_one_device_gives_nan_everywhere():
    """As on one device a non-finite matrix gives NaN outputs: here the whole matrix is the
    one with a NaN, so every device's part is NaN, derivatives included."""
    a = np.random.default_rng(4).standard_normal((64, 8))
    a[37, 2] = np.nan  # the fifth device's rows
    mesh = _mesh()
    u, s, vt = _run("truncated_svd", a, 3, mesh)
    assert all(np.all(np.isnan(np.asarray(x))) for x in (u, s, vt))
    fn = _split_fn("rank_reduce", 3, mesh)
    grad = jax.grad(lambda y: jnp.sum(fn(y)))(_split(a, mesh))
    assert np.all(np.isnan(np.asarray(grad)))


# -- The iterative route: subspace iteration on the split matrix -----------------------------


def _iteration(a, k, mesh):
    """`_sharded._iterate` on `a` split by rows: (u, s, vt, converged, iterations, next_s)."""

    def body(x):
        return _sharded._iterate(x, jnp.int32(k), k, "data", a.shape[0])

    out = (P("data"), P(), P(), P(), P(), P())
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P("data"), out_specs=out))(
        _split(a, mesh)
    )


@needs_devices
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1024, 256), (256, 512), (96, 40)], ids=str)
def test_the_iterative_route_meets_the_contract(shape, dtype):
    """method="iterative" on every spectrum: the iteration's factors where it converges, the
    dense route's where it gives up; the contract for the whole matrix either way."""
    rng = np.random.default_rng(10)
    r = min(shape)
    max_k = max(1, r // 8)
    op = _traced_rank_op(max_k, "iterative")
    for spectrum in SPECTRA:
        a = make_matrix(rng, shape, spectrum).astype(dtype)
        for k in sorted({1, max_k}):
            u, s, vt = (
                x[..., :k] if i == 0 else x[:k]
                for i, x in enumerate(op(_split(a, _mesh()), jnp.int32(k)))
            )
            if spectrum == "zero":
                assert not np.any(np.asarray(s))
                continue
            assert_contract(a, u, s, vt, k)


@needs_devices
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_iteration_converges_with_a_gap_and_gives_up_early_without(dtype):
    """The iteration alone: on a spectrum with a gap after σ_k it converges within its budget
    and its factors meet the contract by themselves; on a flat (Gaussian) spectrum it stops
    before spending its budget, not converged, and the op's result is the dense route's."""
    rng = np.random.default_rng(11)
    m, n, k = 1024, 256, 8
    mesh = _mesh()
    sigma = np.concatenate([np.geomspace(10.0, 5.0, k), np.geomspace(1e-2, 1e-5, n - k)])
    a = planted(rng, m, n, sigma).astype(dtype)
    u, s, vt, converged, iterations, _ = _iteration(a, k, mesh)
    assert bool(converged) and 1 <= int(iterations) <= 3
    assert_contract(a, u, s, vt, k)
    width = _sharded.subspace_width(m, n, k)
    budget = _sharded._iteration_budget(m, n, width)
    flat = rng.standard_normal((m, n)).astype(dtype)
    *_, converged, iterations, _ = _iteration(flat, k, mesh)
    assert not bool(converged) and int(iterations) < budget, (int(iterations), budget)
    got = _run("rank_reduce", flat, k, mesh, method="iterative")
    dense = _run("rank_reduce", flat, k, mesh, method="dense")
    np.testing.assert_array_equal(got, dense)


@needs_devices
def test_auto_iterates_on_large_matrices_and_matches_one_device():
    """`auto` takes the iteration where the one-device kernel would (min(m, n) ≥ 256 and the
    block at most a third of it; a while loop in the program) and the dense route below; with
    a gap after σ_k both agree with the one-device op to rounding."""
    assert _sharded.prefer_iterative(1024, 256, 8)
    assert not _sharded.prefer_iterative(1024, 256, 80)
    assert not _sharded.prefer_iterative(1024, 128, 8)
    rng = np.random.default_rng(12)
    m, n, k = 1024, 256, 8
    sigma = np.concatenate([np.linspace(4.0, 2.0, k), np.linspace(1.0, 0.1, n - k)])
    a = planted(rng, m, n, sigma).astype(np.float32)
    mesh = _mesh()
    for method, loops in (("auto", True), ("iterative", True), ("dense", False)):
        fn = jax.jit(_split_fn("truncated_svd", k, mesh, method=method))
        text = fn.lower(_split(a, mesh)).compile().as_text()
        assert (" while(" in text) == loops, method
        for got, one in zip(fn(_split(a, mesh)), rrae_fast.truncated_svd(a, k), strict=True):
            np.testing.assert_allclose(got, one, atol=2e-5, rtol=0)


def _all_reduced_bytes(text: str) -> list[int]:
    """The bytes of each all-reduce's result (float32 buffers) in compiled HLO text."""
    sizes = []
    for line in text.splitlines():
        if " all-reduce(" in line and "=" in line:
            result = line.split("=", 1)[1].split(" all-reduce(", 1)[0]
            dims = re.findall(r"f32\[([0-9,]*)\]", result)
            sizes.append(sum(4 * math.prod(int(d) for d in x.split(",") if d) for x in dims))
    return sizes


@needs_devices
def test_the_iteration_moves_blocks_of_its_width_only():
    """The iteration's collectives, read from its compiled program: all-reduces of at most
    b·n numbers (b the block width) and a few small ones, against the m·n of the operand."""
    m, n, k = 4096, 512, 16
    mesh = _mesh()
    width = _sharded.subspace_width(m, n, k)

    def body(x):
        return _sharded._iterate(x, jnp.int32(k), k, "data", m)[:3]

    fn = jax.jit(
        jax.shard_map(body, mesh=mesh, in_specs=P("data"), out_specs=(P("data"), P(), P()))
    )
    text = fn.lower(_split(np.ones((m, n), np.float32), mesh)).compile().as_text()
    assert "all-gather" not in text and "all-to-all" not in text
    found = [("all-reduce", size) for size in _all_reduced_bytes(text)]
    assert found, "no all-reduce: is the op split at all?"
    biggest = max(size for _, size in found)
    assert biggest == width * n * 4, (biggest, width * n * 4)
    # Per iteration (twice in the program: the first one is outside the loop) the block B,
    # the D triangular factors of TSQR and the residuals; once, the sign convention's D·k.
    per_iteration = 4 * (width * n + DEVICES * width * width + width)
    total = sum(size for _, size in found)
    assert total == 2 * per_iteration + 4 * DEVICES * k, (total, per_iteration)
    assert total < 0.02 * m * n * 4


@needs_devices
def test_the_iterative_route_under_vmap_with_a_member_that_does_not_converge():
    """A batch (vmap) of two split matrices, one that converges and one flat: each meets the
    contract, and the converged member keeps the iteration's factors."""
    rng = np.random.default_rng(13)
    m, n, k = 1024, 256, 8
    sigma = np.concatenate([np.geomspace(10.0, 5.0, k), np.geomspace(1e-2, 1e-5, n - k)])
    batch = np.stack([planted(rng, m, n, sigma), rng.standard_normal((m, n))])
    mesh = _mesh()

    def body(x):
        f = functools.partial(rrae_fast.truncated_svd, method="iterative", axis_name="data")
        return jax.vmap(lambda y: f(y, k))(x)

    split = jax.device_put(jnp.asarray(batch), NamedSharding(mesh, P(None, "data")))
    out = (P(None, "data"), P(), P())
    u, s, vt = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P(None, "data"), out_specs=out))(
        split
    )
    for i in range(2):
        assert_contract(batch[i], u[i], s[i], vt[i], k)
    alone = _iteration(batch[0], k, mesh)
    assert bool(alone[3])
    for got, want in zip((u[0], s[0], vt[0]), alone[:3], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-13, rtol=0)


@needs_devices
def test_the_iterative_route_with_a_non_finite_entry_gives_nan_everywhere():
    a = np.random.default_rng(14).standard_normal((1024, 256))
    a[517, 3] = np.inf
    u, s, vt = _run("truncated_svd", a, 8, _mesh(), method="iterative")
    assert all(np.all(np.isnan(np.asarray(x))) for x in (u, s, vt))


# -- Derivatives on the iterative route: the coupling solved by CG on the split matrix ------


def _count_full_factors(monkeypatch) -> list[int]:
    """Records each run of TSQR's full factors (the derivative's dense route, or the solves'
    fallback): one entry per device and run. A callback inside a branch runs only where the
    branch is taken."""
    calls: list[int] = []
    full = _sharded.global_factors

    def counted(a, axis_name):
        jax.debug.callback(lambda: calls.append(1))
        return full(a, axis_name)

    monkeypatch.setattr(_sharded, "global_factors", counted)
    return calls


def _iterative_case(rng, ratio: float, dtype=np.float64):
    """A 1024 × 256 matrix whose auto route iterates at k = 8, with σ_9 / σ_8 = ratio and a
    decaying tail (an RRAE latent's shape of spectrum for a small ratio)."""
    m, n, k = 1024, 256, 8
    tail = ratio * 2.0 * np.geomspace(1.0, 1e-3, n - k)
    sigma = np.concatenate([np.geomspace(4.0, 2.0, k), tail])
    return planted(rng, m, n, sigma).astype(dtype), k


def _grad_and_jvp(op, k, a, da, probe, mesh):
    """grad of a probe's inner product and jvp, through the split op and the one-device op."""
    split = jax.jit(_split_fn(op, k, mesh))
    one = jax.jit(lambda x: getattr(rrae_fast, op)(x, k))

    def scalar(fn):
        return lambda x: sum(jnp.sum(o * p) for o, p in zip(_tuple(fn(x)), probe))

    grads = jax.grad(scalar(split))(_split(a, mesh)), jax.grad(scalar(one))(a)
    tangents = (
        jax.jvp(split, (_split(a, mesh),), (_split(da, mesh),))[1],
        jax.jvp(one, (a,), (da,))[1],
    )
    return grads, tangents


@needs_devices
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", ["rank_reduce", "truncated_svd"])
def test_derivatives_on_the_iterative_route_never_need_the_full_factors(op, dtype, monkeypatch):
    """With a gap after σ_k (an RRAE latent's spectrum), grad and jvp of the iterating op
    solve the coupling with the discarded spectrum by CG on the split matrix: TSQR's full
    factors never run, and the derivatives are the one-device op's."""
    calls = _count_full_factors(monkeypatch)
    rng = np.random.default_rng(20)
    # float64's iteration meets its tolerance within its budget only with a wide gap (σ_{b+1}
    # well below σ_k); float32's with a narrower one.
    a, k = _iterative_case(rng, 1e-3 if dtype == np.float64 else 0.1, dtype)
    assert _sharded.prefer_iterative(*a.shape, k)
    probe = [jnp.asarray(rng.standard_normal(x.shape), dtype) for x in _shapes(op, a.shape, k)]
    da = jnp.asarray(rng.standard_normal(a.shape), dtype)
    (g_split, g_one), (t_split, t_one) = _grad_and_jvp(op, k, jnp.asarray(a), da, probe, _mesh())
    assert calls == []
    # CG stops at a relative residual of 1e-2·√ε; float32's forward factors differ by
    # rounding too, amplified by 1 / (σ_i − σ_j) inside the kept set.
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(g_split, g_one, atol=rtol * float(jnp.max(jnp.abs(g_one))))
    for x, y in zip(_tuple(t_split), _tuple(t_one), strict=True):
        np.testing.assert_allclose(x, y, atol=rtol * float(jnp.max(jnp.abs(y))))


@needs_devices
@pytest.mark.parametrize("op", ["rank_reduce", "truncated_svd"])
def test_derivatives_on_the_iterative_route_without_a_gap_take_the_full_factors(op, monkeypatch):
    """σ_9 / σ_8 = 0.98: CG would need hundreds of iterations, so the derivative takes TSQR's
    full factors (the callback runs), with the one-device derivatives."""
    calls = _count_full_factors(monkeypatch)
    rng = np.random.default_rng(21)
    a, k = _iterative_case(rng, 0.98)
    probe = [jnp.asarray(rng.standard_normal(x.shape)) for x in _shapes(op, a.shape, k)]
    da = jnp.asarray(rng.standard_normal(a.shape))
    (g_split, g_one), (t_split, t_one) = _grad_and_jvp(op, k, jnp.asarray(a), da, probe, _mesh())
    assert calls
    np.testing.assert_allclose(g_split, g_one, atol=1e-9 * float(jnp.max(jnp.abs(g_one))))
    for x, y in zip(_tuple(t_split), _tuple(t_one), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-9 * float(jnp.max(jnp.abs(y))))


@needs_devices
# A member without a gap (σ_9 / σ_8 = 0.98, the route of the full factors for the batch) is
# left out: that program stalled XLA's CPU runtime in one of two runs (docs/op.md).
@pytest.mark.parametrize("ratios", [(1e-3, 1e-4)], ids=["gaps"])
def test_derivatives_on_the_iterative_route_under_vmap(ratios):
    """grad of a vmapped split rank_reduce over two members, each with a gap after σ_k: the
    solves for both (one route for the batch), each member's gradient the one-device op's."""
    rng = np.random.default_rng(22)
    (a0, k), (a1, _) = (_iterative_case(rng, ratio) for ratio in ratios)
    batch = jnp.asarray(np.stack([a0, a1]))
    probe = jnp.asarray(rng.standard_normal(batch.shape))
    mesh = _mesh()
    spec = P(None, "data")
    place = lambda x: jax.device_put(x, NamedSharding(mesh, spec))

    def route(x):
        choose = functools.partial(_sharded._solve_route_forward, "rank_reduce")
        return jax.vmap(lambda y: choose(y, jnp.int32(k), k, "data", a0.shape[0], "auto")[1])(x)

    go_on = jax.jit(jax.shard_map(route, mesh=mesh, in_specs=spec, out_specs=P()))(place(batch))
    assert np.all(np.asarray(go_on) == (ratios[1] < 0.5))

    def body(x, p):
        out = jax.vmap(lambda y: rrae_fast.rank_reduce(y, k, axis_name="data"))(x)
        return jax.lax.psum(jnp.sum(out * p), "data")

    loss = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec), out_specs=P())
    got = jax.jit(jax.grad(loss))(place(batch), place(probe))
    for i in range(2):
        want = jax.grad(lambda x, i=i: jnp.sum(rrae_fast.rank_reduce(x, k) * probe[i]))(batch[i])
        np.testing.assert_allclose(got[i], want, atol=1e-9 * float(jnp.max(jnp.abs(want))))


# -- The same route from the input's type: rows split over Explicit mesh axes --------------


def _explicit_mesh(shape=(DEVICES,), names=("data",)):
    return jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Explicit,) * len(names))


def _typed(x, mesh, spec):
    return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))


@needs_devices
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_an_input_typed_as_split_by_rows_takes_the_split_route(shape, dtype):
    """Under jit and eagerly, with no axis_name: the contract for the whole matrix, the
    one-device result where the cut has a gap, the rows of the outputs split as the input's,
    the small factors replicated."""
    rng = np.random.default_rng(5)
    r = min(shape)
    k = max(1, r // 4)
    sigma = np.concatenate([np.linspace(4.0, 2.0, k), np.linspace(1.0, 0.1, r - k)])
    a = planted(rng, *shape, sigma).astype(dtype)
    mesh = _explicit_mesh()
    x = _typed(a, mesh, P("data", None))
    tol = 200 * np.finfo(dtype).eps * 4.0
    for fn in (
        lambda y: rrae_fast.truncated_svd(y, k),
        jax.jit(lambda y: rrae_fast.truncated_svd(y, k)),
    ):
        u, s, vt = fn(x)
        assert u.sharding.spec == P("data", None)
        assert s.sharding.spec == P(None) and vt.sharding.spec == P(None, None)
        assert_contract(a, u, s, vt, k)
        for got, one in zip((u, s, vt), rrae_fast.truncated_svd(a, k)):
            np.testing.assert_allclose(got, one, atol=tol, rtol=0)
    y = jax.jit(lambda y: rrae_fast.rank_reduce(y, k))(x)
    assert y.sharding.spec == P("data", None)
    np.testing.assert_allclose(y, rrae_fast.rank_reduce(a, k), atol=tol, rtol=0)


@needs_devices
@pytest.mark.parametrize("op", ["rank_reduce", "truncated_svd"])
def test_a_typed_split_input_is_never_gathered_and_has_the_one_device_derivatives(op):
    rng = np.random.default_rng(6)
    shape, k = (256, 32), 6
    sigma = np.concatenate([[3.0, 2.6, 2.0, 1.5, 1.2, 1.0], np.linspace(0.5, 0.1, 10)])
    a = jnp.asarray(planted(rng, *shape, sigma))
    probe = [jnp.asarray(rng.standard_normal(x.shape)) for x in _shapes(op, shape, k)]
    mesh = _explicit_mesh()
    fn = getattr(rrae_fast, op)

    def scalar(x):
        return sum(jnp.sum(o * p) for o, p in zip(_tuple(fn(x, k)), probe))

    grad = jax.jit(jax.grad(scalar))
    x = _typed(a, mesh, P("data", None))
    text = grad.lower(x).compile().as_text()
    assert "all-gather" not in text and "all-to-all" not in text
    assert " all-reduce(" in text
    g_split, g_one = grad(x), jax.grad(scalar)(a)
    assert g_split.sharding.spec == P("data", None)
    np.testing.assert_allclose(g_split, g_one, atol=1e-11 * float(jnp.max(jnp.abs(g_one))))
    da = jnp.asarray(rng.standard_normal(shape))
    _, t_split = jax.jvp(lambda y: fn(y, k), (x,), (_typed(da, mesh, P("data", None)),))
    _, t_one = jax.jvp(lambda y: fn(y, k), (a,), (da,))
    for got, want in zip(_tuple(t_split), _tuple(t_one)):
        np.testing.assert_allclose(got, want, atol=1e-11 * float(jnp.max(jnp.abs(want))))


@needs_devices
def test_a_typed_split_batch_a_traced_rank_and_a_two_axis_mesh():
    rng = np.random.default_rng(7)
    a = make_matrix(rng, (4, 64, 16), "decaying")
    want = {k: rrae_fast.rank_reduce(jnp.asarray(a), k) for k in (2, 5)}
    mesh = _explicit_mesh((2, 4), ("batch", "rows"))
    x = _typed(a, mesh, P("batch", "rows", None))  # batch over one axis, rows over the other
    fn = jax.jit(lambda y, k: rrae_fast.rank_reduce(y, k, max_k=8))
    for k in (2, 5):
        got = fn(x, jnp.int32(k))
        assert got.sharding.spec == P("batch", "rows", None)
        np.testing.assert_allclose(got, want[k], atol=1e-12)
    x = _typed(a, mesh, P(None, ("batch", "rows"), None))  # rows over both axes
    np.testing.assert_allclose(fn(x, jnp.int32(5)), want[5], atol=1e-12)


@needs_devices
def test_a_typed_split_input_with_split_columns_and_the_split_routes_limits():
    """Split columns are gathered (every route needs whole rows), then the rows' split is
    used; the split route's limits are errors that say how the split was asked for."""
    a = np.random.default_rng(8).standard_normal((64, 32))
    want = rrae_fast.rank_reduce(a, 3)
    both = _typed(a, _explicit_mesh((2, 4), ("rows", "cols")), P("rows", "cols"))
    got = jax.jit(lambda y: rrae_fast.rank_reduce(y, 3))(both)
    assert got.sharding.spec == P("rows", None)
    np.testing.assert_allclose(got, want, atol=1e-12)
    cols = _typed(a, _explicit_mesh(), P(None, "data"))  # whole rows after the gather
    np.testing.assert_allclose(rrae_fast.rank_reduce(cols, 3), want, atol=1e-12)
    u, s, vt = rrae_fast.truncated_svd(cols, 3)
    np.testing.assert_allclose(u @ (s[:, None] * vt), want, atol=1e-12)
    x = _typed(a, _explicit_mesh(), P("data", None))
    axes = r"rows split over the mesh axes \('data',\) \(the input's sharding\)"
    with pytest.raises(ValueError, match=axes + ", method must be 'auto', 'dense' or"):
        rrae_fast.rank_reduce(x.astype(jnp.float32), 3, method="gram")
    with pytest.raises(ValueError, match="gradient must be 'exact'"):
        rrae_fast.truncated_svd(x, 3, gradient="tangent")
    with pytest.raises(ValueError, match=r"min\(m, n\) = 32"):
        rrae_fast.truncated_svd(x, 33)


def test_a_typed_split_over_one_device_in_any_process():
    """The typed route over a one-device Explicit mesh (so that it runs in every process):
    the one-device results, a batch axis, and an input with no sharding left alone."""
    a = make_matrix(np.random.default_rng(9), (2, 24, 12), "decaying")
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    x = _typed(a, mesh, P(None, "data", None))
    np.testing.assert_allclose(
        rrae_fast.rank_reduce(x, 3), rrae_fast.rank_reduce(a, 3), atol=1e-12
    )
    u, s, vt = jax.jit(lambda y: rrae_fast.truncated_svd(y, 3))(x)
    for got, want in zip((u, s, vt), rrae_fast.truncated_svd(a, 3)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert _sharded_route(x) and not _sharded_route(jnp.asarray(a)) and not _sharded_route(a)
    half = _typed(a.astype(np.float16), mesh, P(None, "data", None))
    assert rrae_fast.rank_reduce(half, 3).dtype == jnp.float16  # computed in float32
    assert all(o.dtype == jnp.float16 for o in rrae_fast.truncated_svd(half, 3))


def _sharded_route(x) -> bool:
    from rrae_fast.svd import _ops

    return _ops._typed_split(x)[1] is not None
