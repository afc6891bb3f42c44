"""The iterative path's sparse sketch A·Ω (csrc/cpu/sketch_product.cc), through the module's
test entry points: the AVX2 kernel against the plain matrix Ω it stands for, its layout, its
determinism across threads, and that a NaN or infinity anywhere in A reaches the result."""

from __future__ import annotations

import numpy as np
import pytest

from rrae_fast.svd import _cpu_testing


def _avx2() -> bool:
    try:
        _cpu_testing.sketch_product(np.zeros((1, 1), np.float32).tobytes(), 1, 1, 8, 0)
    except ValueError:
        return False
    return True


needs_avx2 = pytest.mark.skipif(not _avx2(), reason="this CPU lacks AVX2/FMA")


def sketch(a: np.ndarray, b: int, seed: int, threads: int = 1) -> np.ndarray:
    m, n = a.shape
    data = np.ascontiguousarray(a, np.float32).tobytes()
    out = _cpu_testing.sketch_product(data, m, n, b, seed, threads)
    return np.frombuffer(out, np.float32).reshape(b, m).T


def omega(n: int, b: int, seed: int) -> np.ndarray:
    return np.frombuffer(_cpu_testing.sketch_matrix(n, b, seed), np.float32).reshape(b, n).T


@needs_avx2
@pytest.mark.parametrize(
    "m, n, b",
    [(1, 1, 8), (5, 3, 8), (37, 29, 9), (100, 64, 40), (131, 1001, 280), (67, 4099, 1096)],
)
def test_kernel_is_the_product_with_omega(rng, m, n, b):
    """Sizes that are multiples of neither the 8-column pieces nor the 4-row tiles, windows
    that wrap past the last column (b = 8, 9), one to five windows per piece."""
    a = rng.standard_normal((m, n)).astype(np.float32)
    om = omega(n, b, 11).astype(np.float64)
    ref = a.astype(np.float64) @ om
    bound = 1e-6 * (np.abs(a).astype(np.float64) @ np.abs(om)) + 1e-30
    assert np.all(np.abs(sketch(a, b, 11) - ref) <= bound)


@needs_avx2
def test_same_bits_on_any_number_of_threads(rng):
    a = rng.standard_normal((333, 517)).astype(np.float32)
    one = sketch(a, 72, 3)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(sketch(a, 72, 3, threads), one)


@pytest.mark.parametrize("n, b", [(3, 8), (64, 40), (1001, 280), (4096, 1096), (4096, 40)])
def test_omega_layout(n, b):
    """Every row holds 8 entries ±1 per window of its piece; each piece of 8 rows is orthogonal
    (its windows never overlap); seeds give different matrices, the same seed the same one."""
    om = omega(n, b, 5)
    nonzero = om != 0
    assert set(np.unique(om[nonzero])) <= {-1.0, 1.0}
    per_row = nonzero.sum(axis=1)
    assert np.all(per_row == per_row[0]) and per_row[0] % 8 == 0
    windows = per_row[0] // 8
    for g in range(0, n, 8):
        piece = om[g : g + 8].astype(np.float64)
        np.testing.assert_array_equal(piece @ piece.T, 8.0 * windows * np.eye(len(piece)))
    np.testing.assert_array_equal(omega(n, b, 5), om)
    assert np.any(omega(n, b, 6) != om)


@pytest.mark.parametrize("n, b", [(4096, 40), (4096, 280), (4096, 1096), (4608, 72), (263, 49)])
def test_omega_is_well_conditioned(n, b):
    """Enough windows per piece that every column is hit many times: as a start for subspace
    iteration Ω does the work of a dense random matrix (condition numbers measured 1.1-3.1)."""
    om = omega(n, b, 5).astype(np.float64)
    assert np.all(np.abs(om).sum(axis=0) > 0)
    assert np.linalg.cond(om) < 6.0


@needs_avx2
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (57, 333), (130, 998), (130, 1000)])
def test_non_finite_entry_reaches_the_result(rng, bad, where):
    """The iteration's NaN/Inf check looks at A·Ω only: every entry of A must reach it, the
    last, partial piece (n = 1001) included; two infinities of opposite sign in one piece
    give NaN, not a cancellation."""
    a = rng.standard_normal((131, 1001)).astype(np.float32)
    a[where] = bad
    assert not np.all(np.isfinite(sketch(a, 280, 2)))
    partner = where[1] ^ 1  # the other entry of its pair: same piece, same row
    if partner < a.shape[1]:
        a[where[0], partner] = -bad if np.isinf(bad) else bad
        assert not np.all(np.isfinite(sketch(a, 280, 2)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="b >= 8"):
        _cpu_testing.sketch_product(np.zeros((2, 2), np.float32).tobytes(), 2, 2, 7, 0)
    with pytest.raises(ValueError, match="m \\* n float32 bytes"):
        _cpu_testing.sketch_product(np.zeros((2, 2), np.float32).tobytes(), 2, 3, 8, 0)
    with pytest.raises(ValueError, match="b >= 8"):
        _cpu_testing.sketch_matrix(4, 3, 0)
