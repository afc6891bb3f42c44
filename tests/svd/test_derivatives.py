"""Derivatives of truncated_svd and rank_reduce: finite differences, autodiff, ties, modes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rrae_fast
from helpers import fd_jvp, make_matrix, planted, reference_svd, stable_svd_jvp_reference

# k = 1, 3 and min(m, n) across tall, wide, square and batched shapes.
CASES = [
    ((9, 6), 1),
    ((9, 6), 3),
    ((9, 6), 6),
    ((6, 9), 3),
    ((6, 9), 6),
    ((7, 7), 1),
    ((7, 7), 7),
    ((2, 8, 5), 3),
    ((2, 8, 5), 5),
]
OPS = ["truncated_svd", "rank_reduce"]


def _op(name, k, gradient="exact"):
    return functools.partial(getattr(rrae_fast, name), k=k, gradient=gradient)


def _loss(out):
    """A nonlinear, sign-sensitive scalar of every output leaf."""
    return sum(jnp.sum(jnp.sin(x)) + jnp.sum(x * x * x) / 3 for x in jax.tree.leaves(out))


def _planted(rng, shape, sigma):
    *batch, m, n = shape
    out = np.empty(shape)
    for idx in np.ndindex(*batch):
        out[idx] = planted(rng, m, n, sigma)
    return out


def _gapped(rng, shape):
    return _planted(rng, shape, np.linspace(5.0, 1.0, min(shape[-2:])))


def _sign_align(u, vt):
    """The op's convention: largest-|.| entry of each u column positive (first on ties)."""
    idx = jnp.argmax(jnp.abs(u), axis=-2, keepdims=True)
    sign = jnp.where(jnp.take_along_axis(u, idx, axis=-2) < 0, -1.0, 1.0).astype(u.dtype)
    return u * sign, vt * jnp.swapaxes(sign, -1, -2)


def _plain_tsvd(a, k):
    """Plain autodiff reference: full thin SVD, sliced to k, sign-aligned."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    u, vt = _sign_align(u[..., :k], vt[..., :k, :])
    return u, s[..., :k], vt


def _plain_rr(a, k):
    u, s, vt = _plain_tsvd(a, k)
    return (u * s[..., None, :]) @ vt


PLAIN = {"truncated_svd": _plain_tsvd, "rank_reduce": _plain_rr}


def _rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def _assert_rel(x, y, tol, what=""):
    for xi, yi in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
        err = _rel(xi, yi)
        assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def _grad(name, k, a, gradient="exact"):
    return jax.grad(lambda x: _loss(_op(name, k, gradient)(x)))(a)


def _jvp(name, k, a, da, gradient="exact"):
    return jax.jvp(_op(name, k, gradient), (a,), (da,))


# ------------------------------------------------------------------------------------------
# 1, 2: generic matrices
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape,k", CASES)
def test_check_grads_gapped(rng, name, shape, k):
    """jax.test_util.check_grads (fwd and rev, order 1) on a well-gapped float64 spectrum."""
    check_grads(_op(name, k), (_gapped(rng, shape),), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape,k", CASES)
def test_matches_plain_autodiff(rng, name, shape, k):
    """grad and jvp equal plain autodiff of the float64 full SVD on Gaussian matrices."""
    a, da = rng.standard_normal(shape), rng.standard_normal(shape)
    plain = functools.partial(PLAIN[name], k=k)
    g_ref = jax.grad(lambda x: _loss(plain(x)))(a)
    _assert_rel(_grad(name, k, a), g_ref, 1e-8, "grad")
    _, t_ref = jax.jvp(plain, (a,), (da,))
    _assert_rel(_jvp(name, k, a, da)[1], t_ref, 1e-8, "jvp")


# ------------------------------------------------------------------------------------------
# 3: ties and rank deficiency (shapes with min(m, n) = 6, so sigma is the full spectrum)
# ------------------------------------------------------------------------------------------

TIE_SHAPES = [(9, 6), (6, 9), (6, 6)]
# (id, sigma, k); no tie straddles the cut except the zeros of rank2_k3.
TIES = [
    ("tie_in_K", [5, 3, 3, 1, 0.5, 0.2], 3),
    ("tie_in_K_k_full", [5, 3, 3, 1, 0.5, 0.2], 6),
    ("tie_in_D", [5, 4, 2, 1, 1, 1], 3),
    ("all_tied", [2, 2, 2, 2, 2, 2], 6),
    ("rank4_k3", [4, 3, 2, 1, 0, 0], 3),
    ("tie_K_zeros_D", [4, 4, 2, 0, 0, 0], 3),
    ("rank2_k3", [4, 3, 0, 0, 0, 0], 3),
]
TIE_IDS = [t[0] for t in TIES]


def _signed_perm(rng, n):
    return np.eye(n)[rng.permutation(n)] * rng.choice([-1.0, 1.0], n)


@pytest.mark.parametrize("shape", TIE_SHAPES)
@pytest.mark.parametrize("diag", [[5, 3, 3, 1], [5, 3, 1, 1], [4, 2, 0, 0]])
def test_plain_autodiff_breaks_ours_finite(rng, shape, diag):
    """Exact ties or zeros (signed-permuted diagonal): plain autodiff NaN/Inf, ours finite."""
    d = np.zeros(shape)
    d[np.arange(4), np.arange(4)] = diag
    a = _signed_perm(rng, shape[0]) @ d @ _signed_perm(rng, shape[1])
    assert not np.all(np.isfinite(jax.grad(lambda x: _loss(_plain_tsvd(x, 3)))(a)))
    for name in OPS:
        for gradient in ("exact", "tangent"):
            assert np.all(np.isfinite(_grad(name, 3, a, gradient))), (name, gradient)


@pytest.mark.parametrize("shape", TIE_SHAPES)
@pytest.mark.parametrize("case", TIES, ids=TIE_IDS)
def test_ties_truncated_svd(rng, shape, case):
    """Planted ties/rank deficiency: finite gradients; jvp = the paper's stable rule (aligned)."""
    _, sigma, k = case
    sigma = np.asarray(sigma, np.float64)
    a, da = planted(rng, *shape, sigma), rng.standard_normal(shape)
    for name in OPS:
        assert np.all(np.isfinite(_grad(name, k, a))), name
    out = _jvp("truncated_svd", k, a, da)
    (u, _, vt), (du, ds, dvt) = (tuple(map(np.asarray, t)) for t in out)
    assert all(np.all(np.isfinite(t)) for t in (du, ds, dvt))
    r_du, r_ds, r_dv = stable_svd_jvp_reference(a, da, k)
    r_u, _, r_vt = reference_svd(a)
    # Align the reference to our basis per block of equal singular values (a sign for a
    # simple one, an orthogonal Q for a tie); columns with σ = 0 in K are not determined.
    cols = np.flatnonzero(sigma[:k] > 0)
    al_du, al_dv = np.zeros_like(r_du), np.zeros_like(r_dv)
    for value in np.unique(sigma[cols]):
        b = cols[sigma[cols] == value]
        q = r_u[:, b].T @ u[:, b]
        assert np.linalg.norm(q.T @ q - np.eye(len(b))) <= 1e-10, "subspaces differ"
        assert np.linalg.norm(r_vt[b, :].T @ q - vt[b, :].T) <= 1e-10, "v basis differs"
        al_du[:, b], al_dv[:, b] = r_du[:, b] @ q, r_dv[:, b] @ q
        # ds is basis dependent inside a tie: compare the block trace, and ds to uᵀ dA v.
        np.testing.assert_allclose(ds[b].sum(), r_ds[b].sum(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ds, np.einsum("mi,mn,in->i", u, da, vt), rtol=1e-10, atol=1e-12)
    scale = np.linalg.norm(da) / sigma[0]  # natural size of du, dv (the reference may be 0)
    for ours, ref in ((du[:, cols], al_du[:, cols]), (dvt.T[:, cols], al_dv[:, cols])):
        err = np.linalg.norm(ours - ref) / (np.linalg.norm(ref) + scale)
        assert err <= 1e-8, err


GAPPED_CUT = [t for t in TIES if t[2] == 6 or t[1][t[2] - 1] > t[1][t[2]]]


@pytest.mark.parametrize("shape", TIE_SHAPES)
@pytest.mark.parametrize("case", GAPPED_CUT, ids=[t[0] for t in GAPPED_CUT])
def test_ties_rank_reduce_fd(rng, shape, case):
    """rank_reduce is differentiable at ties inside K or D: jvp = central finite differences."""
    _, sigma, k = case
    a, da = planted(rng, *shape, sigma), rng.standard_normal(shape)
    _, t = _jvp("rank_reduce", k, a, da)
    _assert_rel(t, fd_jvp(lambda x: rrae_fast.rank_reduce(x, k), a, da), 1e-7, "fd")


@pytest.mark.parametrize("shape", [(9, 6), (2, 8, 5)])
def test_zero_matrix(shape):
    """The zero matrix: finite derivatives in both ops and modes, NaN from plain autodiff."""
    a = np.zeros(shape)
    for name in OPS:
        for gradient in ("exact", "tangent"):
            assert np.all(np.isfinite(_grad(name, 3, a, gradient))), (name, gradient)
            out = _jvp(name, 3, a, np.ones(shape), gradient)
            assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(out)), (name, gradient)
    assert not np.all(np.isfinite(jax.grad(lambda x: _loss(_plain_tsvd(x, 3)))(a)))


# ------------------------------------------------------------------------------------------
# 4, 5: the tangent mode and self-adjointness
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape,k", [((9, 6), 3), ((6, 9), 3), ((2, 8, 5), 3), ((7, 7), 1)])
def test_tangent_exact_at_rank_k(rng, name, shape, k):
    """gradient="tangent" equals the exact derivative when rank(A) = k."""
    a = _planted(rng, shape, np.linspace(5.0, 1.0, k))
    da = rng.standard_normal(shape)
    _assert_rel(_grad(name, k, a, "tangent"), _grad(name, k, a), 1e-8, "grad")
    _assert_rel(_jvp(name, k, a, da, "tangent")[1], _jvp(name, k, a, da)[1], 1e-8, "jvp")


@pytest.mark.parametrize("name", OPS)
def test_tangent_differs_on_generic(rng, name):
    """On a generic 9x6 matrix with k = 3 the tangent mode is measurably not exact."""
    a = rng.standard_normal((9, 6))
    err = _rel(_grad(name, 3, a, "tangent"), _grad(name, 3, a))
    assert err > 1e-2, err


@pytest.mark.parametrize("shape", [(9, 6), (6, 9), (2, 7, 7)])
def test_tangent_rank_reduce_is_projection(rng, shape):
    """rank_reduce tangent mode (jvp and vjp) = P_U G + G P_V − P_U G P_V."""
    a, g = rng.standard_normal(shape), rng.standard_normal(shape)
    u, _, vt = reference_svd(a)
    pu = u[..., :3] @ np.swapaxes(u[..., :3], -1, -2)
    pv = np.swapaxes(vt[..., :3, :], -1, -2) @ vt[..., :3, :]
    expected = pu @ g + g @ pv - pu @ g @ pv
    f = _op("rank_reduce", 3, "tangent")
    _assert_rel(jax.jvp(f, (a,), (g,))[1], expected, 1e-10, "jvp")
    _assert_rel(jax.vjp(f, a)[1](g)[0], expected, 1e-10, "vjp")


@pytest.mark.parametrize("gradient", ["exact", "tangent"])
@pytest.mark.parametrize(
    "shape,spectrum",
    [
        ((9, 6), "flat"),
        ((6, 9), "flat"),
        ((2, 8, 5), "flat"),
        ((9, 6), "repeated"),
        ((6, 9), "rank_deficient"),
    ],
)
def test_rank_reduce_self_adjoint(rng, gradient, shape, spectrum):
    """<G, J[dA]> = <J[G], dA> with J from jax.jvp, and the vjp of G equals J[G]."""
    a = make_matrix(rng, shape, spectrum)
    g, da = rng.standard_normal(shape), rng.standard_normal(shape)
    f = _op("rank_reduce", 3, gradient)
    j_da, j_g = (np.asarray(jax.jvp(f, (a,), (x,))[1]) for x in (da, g))
    lhs, rhs = np.vdot(g, j_da), np.vdot(j_g, da)
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs), (lhs, rhs)
    _assert_rel(jax.vjp(f, a)[1](g)[0], j_g, 1e-10, "vjp")


# ------------------------------------------------------------------------------------------
# 6: float32
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape,k", [((9, 6), 3), ((2, 8, 5), 3)])
def test_float32_matches_float64(rng, name, shape, k):
    """float32 gradients agree with float64 ones on a well-gapped matrix (gaps >= 0.8)."""
    a = _gapped(rng, shape)
    g32 = _grad(name, k, a.astype(np.float32))
    assert g32.dtype == jnp.float32
    # eps32 ≈ 1.2e-7 times a derivative condition σ1 / gap ≈ 6 and some rounding growth.
    _assert_rel(g32, _grad(name, k, a), 1e-5, "float32 vs float64")


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("spectrum", ["repeated", "rank_deficient", "zero"])
def test_float32_ties_finite(rng, name, spectrum):
    """Ties, rank deficiency and zero in float32 give finite gradients."""
    a = make_matrix(rng, (9, 6), spectrum).astype(np.float32)
    g = _grad(name, 3, a)
    assert g.dtype == jnp.float32 and np.all(np.isfinite(g))


# ------------------------------------------------------------------------------------------
# 7: higher order
# ------------------------------------------------------------------------------------------


def test_hessian_rank_reduce(rng):
    """Second order (hessian, jacfwd(grad)) through rank_reduce runs, is finite and symmetric."""
    a = rng.standard_normal((5, 4))
    f = lambda x: jnp.sum(jnp.tanh(rrae_fast.rank_reduce(x, 2)))
    h = np.asarray(jax.hessian(f)(a)).reshape(20, 20)
    assert np.all(np.isfinite(h))
    assert np.linalg.norm(h - h.T) <= 1e-6 * np.linalg.norm(h)
    h_fr = np.asarray(jax.jacfwd(jax.grad(f))(a)).reshape(20, 20)
    assert np.all(np.isfinite(h_fr))
    np.testing.assert_allclose(h_fr, h, rtol=1e-6, atol=1e-8 * np.abs(h).max())
