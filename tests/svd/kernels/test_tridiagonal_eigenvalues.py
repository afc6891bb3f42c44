"""The Gram path's eigenvalue solvers for its tridiagonal matrix (csrc/cpu/gram_svd.cc), through
the module's test entry point: multisection on Sturm counts and the QL iteration against SciPy's
LAPACK (`eigvalsh_tridiagonal`, float64) on tridiagonals that stress them, with and without the
AVX2 builds of their loops."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from rrae_fast.svd import _cpu_testing

EPS = float(np.finfo(np.float64).eps)


def top(d: np.ndarray, e: np.ndarray, k: int, bisection: bool) -> np.ndarray:
    out = _cpu_testing.tridiagonal_eigenvalues(
        np.asarray(d, np.float64).tobytes(), np.asarray(e, np.float64).tobytes(), k, bisection
    )
    return np.frombuffer(out, np.float64)


def reference(d: np.ndarray, e: np.ndarray, k: int) -> np.ndarray:
    """LAPACK's bisection (`stebz`, absolute tolerance ~eps·‖T‖), named rather than left to
    SciPy's default, which changes between releases (`stemr` in older ones, `stevd` in newer) and
    whose `stemr` is 18.6·eps·‖T‖ off on the Wilkinson matrix of p = 129, beyond the tolerance."""
    if len(d) == 1:
        return np.asarray(d)[:k]
    w = scipy.linalg.eigvalsh_tridiagonal(d, e[:-1], lapack_driver="stebz")
    return np.sort(w)[::-1][:k]


def tridiagonal(rng, p: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    d, e = rng.standard_normal(p), rng.standard_normal(p)
    if kind == "weak_couplings":  # near-diagonal: eigenvalues ≈ d, ties among them
        e *= 1e-9
    elif kind == "split":  # exact zero couplings: independent blocks with equal eigenvalues
        d = np.ones(p)
        e = np.zeros(p)
        e[::3] = 1e-3
    elif kind == "graded":  # eigenvalues over 20 decades, as a Gram matrix's tail
        d = np.abs(d) * 10.0 ** -rng.uniform(0, 20, p)
        e *= 1e-12
    elif kind == "zero":
        d = np.zeros(p)
        e = np.zeros(p)
    elif kind == "wilkinson":  # pairs of eigenvalues closer than 1e-13
        d = np.abs(np.arange(p) - (p - 1) / 2)
        e = np.ones(p)
    elif kind == "dyadic":  # exact zero minors at dyadic points, splits after them
        d = rng.integers(-2, 3, p) / 2.0
        e = rng.integers(0, 2, p) / 2.0
    # Scaled as the Gram path scales its matrix (largest entry ~1): the QL iteration's
    # deflation test assumes it.
    big = max(np.max(np.abs(d)), np.max(np.abs(e)))
    if big > 0:
        d, e = d / big, e / big
    e[-1] = rng.standard_normal()  # not part of T: must not matter
    return d, e


KINDS = ["gaussian", "weak_couplings", "split", "graded", "zero", "wilkinson", "dyadic"]


@pytest.fixture(params=[True, False], ids=["avx2", "generic"])
def isa(request):
    """Each test with the AVX2 loops and with the generic build of the same code."""
    if request.param and not _cpu_testing.allow_avx2(True):
        pytest.skip("this CPU lacks AVX2/FMA")
    _cpu_testing.allow_avx2(request.param)
    yield request.param
    _cpu_testing.allow_avx2(True)


@pytest.mark.parametrize("bisection", [True, False], ids=["bisection", "ql"])
@pytest.mark.parametrize("kind", KINDS)
def test_top_eigenvalues_match_lapack(rng, isa, bisection, kind):
    for p in [1, 2, 3, 7, 16, 33, 64, 129]:
        d, e = tridiagonal(rng, p, kind)
        norm = max(np.max(np.abs(d)) + 2 * np.max(np.abs(e[:-1]), initial=0), 1e-300)
        for k in sorted({1, min(2, p), max(1, p // 8), max(1, p // 2), max(1, 3 * p // 4), p}):
            got = top(d, e, k, bisection)
            want = reference(d, e, k)
            assert got.shape == (k,)
            assert np.all(np.diff(got) <= 0), "not descending"
            np.testing.assert_allclose(got, want, rtol=0, atol=16 * EPS * norm)


@pytest.mark.parametrize("scale", [1e-150, 1e-20, 1e20, 1e150])
def test_multisection_does_not_depend_on_the_scale(rng, isa, scale):
    """The Sturm counts' minors are rescaled as they go: T and s·T give s times the eigenvalues,
    far outside the range where unscaled minors of p = 129 would stay finite."""
    for kind in KINDS:
        d, e = tridiagonal(rng, 129, kind)
        norm = max(np.max(np.abs(d)) + 2 * np.max(np.abs(e[:-1])), 1e-300)
        for k in (1, 16, 96):
            got = top(d * scale, e * scale, k, True)
            np.testing.assert_allclose(
                got / scale, reference(d, e, k), rtol=0, atol=16 * EPS * norm
            )


def test_the_two_solvers_agree_on_a_gram_spectrum(rng):
    """A scaled Gram matrix's tridiagonal (largest eigenvalue ~1, a tail of rounding noise)."""
    y = rng.standard_normal((200, 64)) * 10.0 ** -np.linspace(0, 4, 64)
    g = y.T @ y
    g /= np.max(np.diag(g))
    t = scipy.linalg.hessenberg(g)  # tridiagonal, g being symmetric
    d, e = np.diag(t).copy(), np.append(np.diag(t, 1), 0.0)
    for k in (1, 8, 64):
        multisection = top(d, e, k, True)
        np.testing.assert_allclose(multisection, top(d, e, k, False), rtol=0, atol=16 * EPS)
        np.testing.assert_allclose(multisection, reference(d, e, k), rtol=0, atol=16 * EPS)


def test_bad_arguments():
    one = np.ones(3).tobytes()
    for d, e, k in [(one, one, 0), (one, one, 4), (one, np.ones(2).tobytes(), 1), (b"", b"", 1)]:
        with pytest.raises(ValueError):
            _cpu_testing.tridiagonal_eigenvalues(d, e, k, True)
