"""jit / vmap / grad / jvp and their compositions; no retracing; which kernel is lowered."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import rrae_fast
from rrae_fast.svd import _native, _ops

TARGET = _native.TRUNCATED_SVD_TARGET


def _loss(a, k=3):
    u, s, vt = rrae_fast.truncated_svd(a, k)
    return jnp.sum(jnp.sin(u)) + jnp.sum(s**2) + jnp.sum(jnp.cos(vt))


def _rr_loss(a, k=3):
    return jnp.sum(jnp.tanh(rrae_fast.rank_reduce(a, k)))


@pytest.mark.parametrize("in_axes", [0, 1, 2])
def test_vmap_any_axis(rng, in_axes):
    """vmap over any axis equals a Python loop over that axis."""
    a = rng.standard_normal((4, 5, 6))
    out = jax.vmap(lambda x: rrae_fast.truncated_svd(x, 2), in_axes=in_axes)(a)
    for i in range(a.shape[in_axes]):
        ref = rrae_fast.truncated_svd(np.take(a, i, axis=in_axes), 2)
        for x, y in zip(out, ref):
            np.testing.assert_allclose(x[i], y, atol=1e-12)
    rr = jax.vmap(lambda x: rrae_fast.rank_reduce(x, 2), in_axes=in_axes)(a)
    ref = rrae_fast.rank_reduce(np.take(a, 1, axis=in_axes), 2)
    np.testing.assert_allclose(rr[1], ref, atol=1e-12)


def test_nested_vmap_matches_batch(rng):
    """Nested vmap equals the natively batched call."""
    a = rng.standard_normal((2, 3, 7, 5))
    out = jax.vmap(jax.vmap(lambda x: rrae_fast.rank_reduce(x, 2)))(a)
    np.testing.assert_allclose(out, rrae_fast.rank_reduce(a, 2), atol=1e-12)


@pytest.mark.parametrize("fn", [_loss, _rr_loss])
def test_grad_compositions(rng, fn):
    """grad, jit(grad), vmap(grad), jit(vmap(grad)), jacfwd and jacrev agree."""
    a = rng.standard_normal((3, 8, 6))
    g_loop = np.stack([jax.grad(fn)(x) for x in a])
    np.testing.assert_allclose(jax.vmap(jax.grad(fn))(a), g_loop, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(fn)))(a), g_loop, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.grad(fn))(a[0]), g_loop[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jacfwd(fn)(a[0]), g_loop[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jax.jacrev(fn)(a[0]), g_loop[0], rtol=1e-10, atol=1e-12)


def test_jacobians_of_factors(rng):
    """jacfwd and jacrev of the factors agree with each other."""
    a = rng.standard_normal((5, 4))
    f = lambda x: rrae_fast.truncated_svd(x, 2)
    for jf, jr in zip(jax.jacfwd(f)(a), jax.jacrev(f)(a)):
        np.testing.assert_allclose(jf, jr, rtol=1e-9, atol=1e-11)
    jf = jax.jit(jax.jacfwd(lambda x: rrae_fast.rank_reduce(x, 2)))(a)
    jr = jax.jacrev(lambda x: rrae_fast.rank_reduce(x, 2))(a)
    np.testing.assert_allclose(jf, jr, rtol=1e-9, atol=1e-11)


def test_jvp_under_jit_and_vmap(rng):
    """jit(vmap(jvp)) equals a loop of eager jvps."""
    a, da = rng.standard_normal((2, 3, 6, 4))
    f = lambda x, dx: jax.jvp(lambda y: rrae_fast.rank_reduce(y, 2), (x,), (dx,))[1]
    out = jax.jit(jax.vmap(f))(a, da)
    np.testing.assert_allclose(out, np.stack([f(x, d) for x, d in zip(a, da)]), atol=1e-12)


def test_no_retrace_eager(rng):
    """Repeated eager calls of the same shapes reuse one compiled implementation."""
    a = rng.standard_normal((11, 7))
    _ops._truncated_svd_jit.clear_cache()
    _ops._rank_reduce_jit.clear_cache()
    for _ in range(3):
        rrae_fast.truncated_svd(a + 1.0, 3)
        rrae_fast.rank_reduce(a, 3)
    assert _ops._truncated_svd_jit._cache_size() == 1
    assert _ops._rank_reduce_jit._cache_size() == 1
    rrae_fast.truncated_svd(a, 4)  # a new k is a new static argument
    assert _ops._truncated_svd_jit._cache_size() == 2


def test_no_retrace_under_user_jit(rng):
    """A user's jitted gradient step is traced once across calls with new values."""
    traces = []

    @jax.jit
    def step(a):
        traces.append(None)
        return jax.grad(_rr_loss)(a)

    for i in range(3):
        step(rng.standard_normal((9, 6)) + i)
    assert len(traces) == 1


def _hlo(fn, *args) -> str:
    return jax.jit(fn).lower(*args).as_text()


def test_cpu_lowering_uses_kernel():
    """On CPU the forward and the gradient lower to our custom call, not XLA's SVD."""
    a = jnp.ones((8, 5))
    assert TARGET in _hlo(lambda x: rrae_fast.truncated_svd(x, 2), a)
    assert TARGET in _hlo(jax.grad(_rr_loss), a)
    assert "gesdd" not in _hlo(lambda x: rrae_fast.rank_reduce(x, 2), a)


def test_tpu_uses_xla_fallback():
    """Exported for TPU, no target of ours appears (XLA's own SVD runs there)."""
    a = jax.ShapeDtypeStruct((8, 5), jnp.float32)
    for fn in (lambda x: rrae_fast.truncated_svd(x, 2), jax.grad(_rr_loss), jax.grad(_loss)):
        text = export.export(jax.jit(fn), platforms=("tpu",))(a).mlir_module()
        assert TARGET not in text


def test_cuda_export_uses_our_kernel_exactly_when_built():
    """Exported for CUDA: our target with the CUDA module built, XLA's SVD without it."""
    from rrae_fast.svd import _native

    a = jax.ShapeDtypeStruct((8, 5), jnp.float32)
    for fn in (lambda x: rrae_fast.truncated_svd(x, 2), jax.grad(_rr_loss), jax.grad(_loss)):
        exp = export.export(
            jax.jit(fn),
            platforms=("cuda",),
            disabled_checks=[export.DisabledSafetyCheck.custom_call(TARGET)],
        )(a)
        assert (TARGET in exp.mlir_module()) == _native.cuda_available()
    # Under vmap the kernel and its dense redo stay two calls for the whole batch.
    batched = jax.ShapeDtypeStruct((4, 8, 5), jnp.float32)
    exp = export.export(
        jax.jit(jax.vmap(jax.grad(_rr_loss))),
        platforms=("cuda",),
        disabled_checks=[export.DisabledSafetyCheck.custom_call(TARGET)],
    )(batched)
    assert exp.mlir_module().count(TARGET) == (2 if _native.cuda_available() else 0)


def test_multi_platform_export_holds_both():
    """A cpu+tpu export holds our target for the CPU branch."""
    a = jax.ShapeDtypeStruct((8, 5), jnp.float32)
    exp = export.export(
        jax.jit(lambda x: rrae_fast.rank_reduce(x, 2)),
        platforms=("cpu", "tpu"),
        disabled_checks=[export.DisabledSafetyCheck.custom_call(TARGET)],
    )(a)
    assert TARGET in exp.mlir_module()
