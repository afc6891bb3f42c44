"""Second derivatives where singular values tie on one side of the cut.

``A_k`` is smooth wherever σ_k > σ_{k+1}, ties inside the kept or the discarded set included, so
its Hessian is checked there against finite differences of the (exact) first derivative, in
both modes and on every backward route. The factors of a tied block have no derivative; what
the op returns for them is pinned down separately.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import helpers
import rrae_fast
from rrae_fast.svd import _ops


def planted(m: int, n: int, sigma) -> jnp.ndarray:
    return jnp.asarray(helpers.planted(np.random.default_rng(0), m, n, sigma))


# (id, shape, σ, k): ties and near-ties inside K, inside D, zeros in D; tall and wide.
SPECTRA = [
    ("kept_pair", (4, 4), (2, 2, 1, 0.5), 2),
    ("kept_triple", (5, 4), (2, 2, 2, 1), 3),
    ("kept_near_tie_inside_threshold", (4, 4), (2, 2 + 1e-11, 1, 0.5), 2),
    ("kept_near_tie_outside_threshold", (4, 4), (2, 2 + 1e-6, 1, 0.5), 2),
    ("discarded_pair", (5, 4), (3, 2, 1, 1), 2),
    ("discarded_noise_cluster", (6, 5), (3, 2, 1e-3, 1e-3, 1e-3), 2),
    ("discarded_zeros", (5, 4), (3, 2, 0, 0), 2),
    ("wide_kept_and_discarded_pairs", (4, 6), (2, 2, 1, 1), 2),
    ("tall_tie_and_zero", (6, 4), (3, 1, 1, 0), 1),
]
IDS = [c[0] for c in SPECTRA]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def route(monkeypatch):
    """Forces the backward route: "cg", "gram" (solves even on small matrices) or None."""

    def force(solver):
        helpers.force_route(monkeypatch, solver)
        _ops._rank_reduce_jit.clear_cache()

    yield force
    _ops._rank_reduce_jit.clear_cache()


def _routes():
    """The full-SVD rule on every spectrum; the solves (which hand kept ties to it) on one
    spectrum each by default and on all under ``slow`` (each check compiles for ~25 s)."""
    out = [pytest.param(None, c, id=f"full_svd-{c[0]}") for c in SPECTRA]
    default = {("cg", "kept_pair"), ("gram", "discarded_noise_cluster")}
    for solver in ("cg", "gram"):
        for c in SPECTRA:
            slow = (solver, c[0]) not in default
            marks = [pytest.mark.slow] if slow else []
            out.append(pytest.param(solver, c, id=f"{solver}-{c[0]}", marks=marks))
    return out


@pytest.mark.parametrize(("solver", "case"), _routes())
def test_rank_reduce_second_derivative_at_ties(route, solver, case):
    """check_grads(order=2) in both modes: before, 30 % off at a kept tie and O(1) off at a
    tie inside D (a noise cluster too)."""
    _, shape, sigma, k = case
    route(solver)
    a = planted(*shape, sigma)
    f = lambda x: rrae_fast.rank_reduce(x, k)
    check_grads(f, (a,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [SPECTRA[0], SPECTRA[5]], ids=[IDS[0], IDS[5]])
def test_hessian_of_a_loss_matches_differences_of_its_gradient(case):
    """jax.hessian (forward over reverse) against central differences of jax.grad."""
    _, shape, sigma, k = case
    a = planted(*shape, sigma)
    t = jnp.asarray(np.random.default_rng(9).standard_normal(shape))
    loss = lambda x: jnp.sum(jnp.tanh(rrae_fast.rank_reduce(x, k) - t) ** 2)
    h = np.asarray(jax.hessian(loss)(a)).reshape(a.size, a.size)
    grad = jax.grad(loss)
    eps = 1e-6
    basis = np.eye(a.size).reshape(a.size, *shape)
    fd = np.stack([(grad(a + eps * e) - grad(a - eps * e)).ravel() / (2 * eps) for e in basis])
    np.testing.assert_allclose(h, fd, atol=1e-6 * np.abs(fd).max())


def _product(x, k):
    u, s, vt = rrae_fast.truncated_svd(x, k)
    return (u * s[None, :]) @ vt


@pytest.mark.parametrize(
    "case",
    [c for c in SPECTRA if c[0] in ("discarded_pair", "discarded_zeros", "tall_tie_and_zero")],
    ids=lambda c: c[0],
)
def test_product_of_the_factors_to_second_order(case):
    """U diag(s) Vᵀ from truncated_svd, where its factors are differentiable (no tie inside K)."""
    _, shape, sigma, k = case
    a = planted(*shape, sigma)
    check_grads(
        lambda x: _product(x, k), (a,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5
    )


def test_factors_of_a_kept_tie_move_as_one_orthonormal_frame():
    """Inside a tied kept block the factors have no derivative; the op's is the tie-decoupled
    one: orthonormal columns stay orthonormal to first order and the kept subspace (smooth,
    the tie being inside K) moves exactly. (U diag(s) Vᵀ itself then misses the symmetric
    off-diagonal part of the block's Uᵀ dA V, which no orthonormal frame can carry:
    rank_reduce is the op for A_k.)"""
    a = planted(4, 4, (2, 2, 1, 0.5))
    da = jnp.asarray(np.random.default_rng(1).standard_normal((4, 4)))
    (u, _, _), (du, _, _) = jax.jvp(lambda x: rrae_fast.truncated_svd(x, 2), (a,), (da,))
    gram = u.T @ du
    np.testing.assert_allclose(gram + gram.T, 0, atol=1e-12)
    check_grads(lambda x: (lambda u: u @ u.T)(rrae_fast.truncated_svd(x, 2)[0]), (a,), order=1)


def test_second_derivative_under_vmap_and_with_a_traced_rank():
    """The corrections batch like the rule (vmap) and follow a traced k (max_k)."""
    a = jnp.stack([planted(5, 4, (2, 2, 1, 0.5)), planted(5, 4, (3, 2, 1, 1))])
    f = jax.vmap(lambda x: rrae_fast.rank_reduce(x, 2))
    check_grads(f, (a,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
    traced = jax.jit(lambda x, k: rrae_fast.rank_reduce(x, k, max_k=3))
    check_grads(lambda x: traced(x, 2), (a,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
