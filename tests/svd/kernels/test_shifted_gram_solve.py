"""The native shifted solves with the projected Gram matrix against a float64 reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from rrae_fast.svd import _solves


def _problem(rng, m, n, c, sigma=None, batch=(1,)):
    """A, the top-c right singular vectors of its short side as rows, σ, right-hand sides."""
    p = min(m, n)
    count = int(np.prod(batch))
    if sigma is None:
        sigma = np.concatenate([np.linspace(5, 2, c), 0.5 * 0.8 ** np.arange(p - c)])
    a = np.stack([helpers.planted(rng, m, n, sigma) for _ in range(count)])
    short = a if m >= n else np.swapaxes(a, -1, -2)
    _, s, vt = np.linalg.svd(short, full_matrices=False)
    rhs = rng.standard_normal((count, c, p))
    shape = lambda x: x.reshape(*batch, *x.shape[1:])
    return shape(a), shape(vt[:, :c]), shape(s[:, :c]), shape(rhs)


def _reference(a, basis, s, rhs):
    """z_j = (s_j² I − P YᵀY P)⁻¹ r_j in float64, one matrix."""
    m, n = a.shape
    y = a if m >= n else a.T
    proj = np.eye(min(m, n)) - basis.T @ basis
    h = proj @ y.T @ y @ proj
    eye = np.eye(h.shape[0])
    return np.stack(
        [np.linalg.solve(sj**2 * eye - h, r) if sj > 0 else 0 * r for sj, r in zip(s, rhs)]
    )


def _solve(a, basis, s, rhs, dtype, margin=1e-6, gap_checked=False, code=False):
    args = (jnp.asarray(x, dtype) for x in (a, basis, s, rhs))
    fn = _solves.shifted_gram_solve_code if code else _solves.shifted_gram_solve
    z, ok = jax.jit(fn, static_argnums=(4, 5))(*args, margin, gap_checked)
    return np.asarray(z), np.asarray(ok)


@pytest.mark.parametrize("gap_checked", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "m,n,c", [(200, 64, 2), (64, 200, 16), (50, 50, 5), (7, 3, 1), (3, 7, 2), (9, 9, 9)]
)
def test_matches_the_float64_reference(rng, dtype, m, n, c, gap_checked):
    """Tall, wide, square and tiny; c from 1 to p (everything kept: H = 0); by the
    tridiagonal form, or (gap checked by the caller) by CG where it pays."""
    a, basis, s, rhs = _problem(rng, m, n, c)
    # The reference on the same (rounded) inputs, so the comparison measures the solve.
    rounded = [np.asarray(jnp.asarray(x, dtype), np.float64) for x in (a, basis, s, rhs)]
    ref = _reference(*(x[0] for x in rounded))
    z, code = _solve(a[0], basis[0], s[0], rhs[0], dtype, gap_checked=gap_checked, code=True)
    assert int(code) in ((1, 2) if gap_checked else (1,))
    tol = 1e-11 if dtype == "float64" else 2e-5
    assert np.linalg.norm(z - ref) <= tol * np.linalg.norm(ref)


def test_batches_and_vmap_agree_with_single_calls(rng):
    """A [2, 3] batch, the same under vmap, and each member alone give the same rows."""
    a, basis, s, rhs = _problem(rng, 30, 12, 3, batch=(2, 3))
    z, ok = _solve(a, basis, s, rhs, "float64")
    assert z.shape == (2, 3, 3, 12) and ok.shape == (2, 3) and ok.all()
    mapped = jax.jit(jax.vmap(jax.vmap(lambda *x: _solves.shifted_gram_solve(*x, 1e-6))))
    zv, okv = mapped(*(jnp.asarray(x) for x in (a, basis, s, rhs)))
    np.testing.assert_array_equal(np.asarray(zv), z)
    np.testing.assert_array_equal(np.asarray(okv), ok)
    for i in range(2):
        for j in range(3):
            zi, _ = _solve(a[i, j], basis[i, j], s[i, j], rhs[i, j], "float64")
            np.testing.assert_array_equal(zi, z[i, j])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conjugate_gradients_on_a_latent(rng, dtype):
    """A rank-2-plus-noise 200 x 64 latent (σ_3/σ_2 ~ 1e-3): CG solves it (code 2), to the
    reference's accuracy; without the caller's check of the gap, the tridiagonal form."""
    low = helpers.planted(rng, 200, 64, [10.0, 1.0])
    a = low + 1e-3 * np.linalg.norm(low) / 113 * rng.standard_normal((200, 64))
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    rhs = rng.standard_normal((2, 64))
    rounded = [np.asarray(jnp.asarray(x, dtype), np.float64) for x in (a, vt[:2], s[:2], rhs)]
    ref = _reference(*rounded)
    tol = 1e-11 if dtype == "float64" else 2e-5
    for gap_checked, expected in ((True, 2), (False, 1)):
        z, code = _solve(a, vt[:2], s[:2], rhs, dtype, gap_checked=gap_checked, code=True)
        assert int(code) == expected
        assert np.linalg.norm(z - ref) <= tol * np.linalg.norm(ref)


def test_conjugate_gradients_give_way_on_a_small_gap(rng):
    """σ_{c+1}/σ_c = 0.995: CG cannot reach its tolerance within its budget, and the exact
    tridiagonal solve takes over (code 1), with the same accuracy."""
    sigma = [4.0, 2.0, 1.99, *np.linspace(1.9, 0.1, 61)]  # distinct: no shortcut for CG
    a, basis, s, rhs = _problem(rng, 200, 64, 2, sigma=sigma)
    ref = _reference(a[0], basis[0], s[0], rhs[0])
    z, code = _solve(a[0], basis[0], s[0], rhs[0], "float64", 1e-6, True, code=True)
    assert int(code) == 1
    assert np.linalg.norm(z - ref) <= 1e-10 * np.linalg.norm(ref)


def test_rows_with_zero_shift_are_zero(rng):
    """A zero s_j (a column beyond a traced k) gives z_j = 0; the others are unaffected."""
    a, basis, s, rhs = _problem(rng, 40, 20, 4)
    basis, s = basis[0].copy(), s[0].copy()
    basis[3], s[3] = 0, 0
    z, ok = _solve(a[0], basis, s, rhs[0], "float64")
    ref = _reference(a[0], basis, s, rhs[0])
    assert bool(ok) and np.all(z[3] == 0)
    assert np.linalg.norm(z - ref) <= 1e-11 * np.linalg.norm(ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gap_check_against_the_margin(rng, dtype):
    """ok is False exactly when σ_c² − σ_{c+1}² falls below margin·σ_1² (with room for the
    rounding of the Gram matrix)."""
    margin = 1e-3
    for gap, expected in ((0.5 * margin, False), (2 * margin, True)):
        # σ_1 = 1, σ_c² = 0.5, σ_{c+1}² = 0.5 − gap.
        sigma = np.sqrt([1.0, 0.8, 0.5, 0.5 - gap, 0.1, 0.05])
        a, basis, s, rhs = _problem(rng, 20, 6, 3, sigma=sigma)
        _, ok = _solve(a[0], basis[0], s[0], rhs[0], dtype, margin)
        assert bool(ok) is expected


def test_tie_across_the_cut_is_refused(rng):
    """σ_c = σ_{c+1}: the system for σ_c is singular, and ok says so (no garbage passed on)
    with any margin above the rounding of the Gram matrix."""
    a, basis, s, rhs = _problem(rng, 20, 6, 2, sigma=[3.0, 2.0, 2.0, 1.0, 0.5, 0.1])
    _, ok = _solve(a[0], basis[0], s[0], rhs[0], "float64", margin=1e-12)
    assert not bool(ok)


@pytest.mark.parametrize("which", ["a", "basis", "s", "rhs"])
def test_non_finite_input_gives_nan(rng, which):
    """A NaN anywhere in a member's inputs: NaN rows, ok (no fallback); the rest unaffected."""
    args = dict(zip(("a", "basis", "s", "rhs"), _problem(rng, 16, 8, 2, batch=(2,))))
    args[which] = args[which].copy()
    args[which][1].flat[0] = np.nan
    z, ok = _solve(*args.values(), "float64")
    assert ok.all()
    assert np.all(np.isnan(z[1])) and np.all(np.isfinite(z[0]))


def test_rejects_bad_shapes(rng):
    """Too large a short side, or a basis that does not match it, is an error."""
    a, basis, s, rhs = _problem(rng, 20, 6, 2)
    with pytest.raises(Exception, match="basis must have shape"):
        _solve(a[0], basis[0][:, :5], s[0], rhs[0][:, :5], "float64")
    big = np.zeros((300, 300))
    with pytest.raises(Exception, match="min\\(m, n\\) <= 256"):
        _solve(big, np.zeros((1, 300)), np.ones(1), np.zeros((1, 300)), "float64")
