"""The iterative path's narrow products A·X and Aᵀ·X (csrc/cpu/narrow_product.cc), through the
module's test entry point: against float64 products for shapes that exercise every tile and
remainder (strips of 32 columns and pieces of 8, panels of 1-3 columns, blocks of 24 and 128
rows), the same bits on any number of threads, and NaN or infinity reaching the result."""

from __future__ import annotations

import numpy as np
import pytest

from rrae_fast.svd import _cpu_testing


def _avx2() -> bool:
    try:
        _cpu_testing.narrow_product(b"\0" * 4, 1, 1, b"\0" * 4, 1, False)
    except ValueError:
        return False
    return True


needs_avx2 = pytest.mark.skipif(not _avx2(), reason="this CPU lacks AVX2/FMA")


def product(a: np.ndarray, x: np.ndarray, transposed: bool, threads: int = 1) -> np.ndarray:
    m, n = a.shape
    b = x.shape[1]
    data = np.ascontiguousarray(a, np.float32).tobytes()
    xdata = np.asfortranarray(x, np.float32).tobytes(order="F")
    out = _cpu_testing.narrow_product(data, m, n, xdata, b, transposed, threads)
    return np.frombuffer(out, np.float32).reshape(b, n if transposed else m).T


def reference(a: np.ndarray, x: np.ndarray, transposed: bool) -> np.ndarray:
    a64 = a.astype(np.float64)
    return (a64.T if transposed else a64) @ x.astype(np.float64)


SHAPES = [
    (1, 1, 1),
    (3, 5, 2),
    (7, 33, 4),  # one strip and a piece of one column
    (130, 64, 3),  # two strips; a block of 128 rows and one of 2
    (129, 97, 5),  # three strips and a piece of one; panels of 3 and 2
    (300, 260, 16),  # rows in blocks of 24 and 128 that do not divide them
    (257, 1030, 25),  # 32 strips and a piece of 6; more panels than rows in a slice
    (64, 128, 160),  # the widest Aᵀ·X the path sends here
    (40, 70, 300),  # a wide A·X (up to 768 columns go here)
]


@needs_avx2
@pytest.mark.parametrize("transposed", [False, True], ids=["AX", "ATX"])
@pytest.mark.parametrize("m, n, b", SHAPES)
def test_matches_the_float64_product(rng, m, n, b, transposed):
    a = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal((m if transposed else n, b)).astype(np.float32)
    got = product(a, x, transposed)
    want = reference(a, x, transposed)
    # Any float32 summation order of `inner` products stays within ~inner·ε·(|A|ᵀ|X|) of each
    # entry; a lost or misplaced term would be off by the size of one product instead.
    inner = m if transposed else n
    bound = reference(np.abs(a), np.abs(x), transposed)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= 2 * inner * np.finfo(np.float32).eps * bound)


@needs_avx2
@pytest.mark.parametrize("transposed", [False, True], ids=["AX", "ATX"])
def test_same_bits_on_any_number_of_threads(rng, transposed):
    m, n, b = 517, 1061, 24
    a = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal((m if transposed else n, b)).astype(np.float32)
    first = product(a, x, transposed, threads=1)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(product(a, x, transposed, threads=threads), first)


@needs_avx2
@pytest.mark.parametrize("transposed", [False, True], ids=["AX", "ATX"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", [(0, 0), (129, 31), (200, 64), (255, 99)])
def test_non_finite_entries_reach_the_result(rng, transposed, bad, where):
    m, n, b = 256, 100, 7  # strips 0-2 and the piece of 4 columns at 96
    a = rng.standard_normal((m, n)).astype(np.float32)
    a[where] = bad
    x = rng.uniform(0.5, 1.0, (m if transposed else n, b)).astype(np.float32)
    got = product(a, x, transposed)
    row = where[1] if transposed else where[0]
    assert not np.isfinite(got[row]).any()
    others = np.delete(got, row, axis=0)
    assert np.isfinite(others).all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="narrow_product"):
        _cpu_testing.narrow_product(b"\0" * 8, 1, 1, b"\0" * 4, 1, False)
    with pytest.raises(ValueError, match="narrow_product"):
        _cpu_testing.narrow_product(b"\0" * 4, 1, 1, b"\0" * 4, 0, True)
    with pytest.raises(ValueError, match="narrow_product"):
        _cpu_testing.narrow_product(b"\0" * 16, 2, 2, b"\0" * 4, 1, True)
