"""Seeded fuzzing of `truncated_svd` and `rank_reduce` against the accuracy contract.

Each case is drawn from its own seed (`make_case(_case_rng(case_id, profile))`): a dtype, a
shape (1×1 to 8×8, 1×n, n×1, very wide or tall, moderate, and in the slow form large), an
optional batch axis whose members differ in structure and scale, a structure per member
(Gaussian, planted rank 0 / 1 / k / full, outer products, all-ones, repeated rows or columns,
signed permutations, Hilbert-like, decaying, clustered or tied spectra, ...), a scale (1, 1e±30
for float32, 1e±300 for float64, or subnormal), k in [1, min(m, n)], a method, and sometimes an
injected NaN/Inf member or a `rank_reduce` call. One case in sixteen is an invalid input that
must raise the documented ValueError or TypeError.

The cases run in a child process with a deadline, because a past defect made a LAPACK call spin
forever: a hang must fail the test and name its case, not hang the suite. The child writes
`start <id>` before each case and one JSON line after it, and a watchdog (`faulthandler`) ends
it when one case runs past `CASE_DEADLINE_S`; a call of the op that returns but takes longer
than `CALL_LIMIT_S` fails its case. A failure prints the case's parameters and a
command that reruns it alone (`run_case`).

Defects the fuzzer found, fixed and kept as regression tests below: the iterative path's Inf/NaN
factors on all-subnormal float32 matrices, and the Gram path's vectors for the zero singular
values of a matrix of exact rank below k. One documented limitation is kept out of the draw:
rank_reduce forms U diag(s) Vt with XLA's operations, which flush subnormal results to zero, so
rank_reduce is checked only where that cannot matter (`_rank_reduce_exact_enough`; pinned by
`test_rank_reduce_flushes_subnormal_results`).
"""

from __future__ import annotations

import faulthandler
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import scipy.linalg

import helpers

SEED = 20240611
PROFILES = ("small", "large")  # the default suite's sizes and the slow form's
CALL_LIMIT_S = 60.0  # one call of the op, its compilation included
CASE_DEADLINE_S = 180.0  # one whole case (calls and checks): past this, it hangs
CHUNK_DEADLINE_S = 600.0  # backstop for a whole child process
DEFAULT_CASES = 200
SLOW_CHUNKS, SLOW_CHUNK_SIZE = 20, 100
INVALID_EVERY = 16  # case ids ≡ INVALID_EVERY − 1 (mod INVALID_EVERY) are invalid inputs

TESTS_DIR = Path(__file__).resolve().parent

STRUCTURES = {  # name: weight in the draw
    "gaussian": 4,
    "rank0": 1,
    "rank1": 2,
    "rank_k": 2,
    "rank_full": 2,
    "outer": 2,
    "ones": 1,
    "repeated_rows": 2,
    "repeated_cols": 2,
    "permutation": 2,
    "hilbert": 2,
    "decaying": 3,
    "tie_at_cut": 1,
    "cluster_at_cut": 1,
    "diagonal": 1,
    "sparse": 1,
    "integer": 1,
}


class Case(NamedTuple):
    """A valid input: `a` [..., m, n], rank `k`, `method`; `info` describes it (JSON-ready).

    info["members"][j] describes batch member j (in `np.ndindex` order): its structure, scale,
    whether all its entries are subnormal (or zero) and the non-finite value injected, if any.
    """

    a: np.ndarray
    k: int
    method: str
    info: dict


class InvalidCase(NamedTuple):
    """An input that must raise `error` (a ValueError or TypeError) at trace time."""

    a: object
    k: object
    method: str
    fn: str  # "truncated_svd" or "rank_reduce"
    check_finite: bool
    error: type
    info: dict


# ------------------------------------------------------------------------------------------
# The case generator


def _case_rng(case_id: int, profile: str) -> np.random.Generator:
    return np.random.default_rng([SEED, PROFILES.index(profile), case_id])


def _log_int(rng, lo: int, hi: int) -> int:
    """An int in [lo, hi], log-uniform."""
    return int(min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))))


def _draw_shape(rng, large: bool) -> tuple[int, int]:
    kinds = ["tiny", "row", "column", "wide", "tall", "moderate", "big"]
    weights = [4, 1, 1, 1.5, 1.5, 3, 0.7]
    kind = rng.choice(kinds, p=np.array(weights) / sum(weights))
    long_side = 2000 if large else 400
    moderate = 500 if large else 120
    if kind == "tiny":
        return int(rng.integers(1, 9)), int(rng.integers(1, 9))
    if kind in ("row", "column"):
        n = _log_int(rng, 1, long_side)
        return (1, n) if kind == "row" else (n, 1)
    if kind in ("wide", "tall"):
        short, long = int(rng.integers(2, 7)), _log_int(rng, 40, long_side)
        return (short, long) if kind == "wide" else (long, short)
    if kind == "moderate":
        return _log_int(rng, 9, moderate), _log_int(rng, 9, moderate)
    # Big enough for `auto` to iterate (min(m, n) ≥ 256 with a small k).
    hi = (700, 500) if large else (300, 260)
    m, n = int(rng.integers(256, hi[0] + 1)), int(rng.integers(256, hi[1] + 1))
    return (m, n) if rng.random() < 0.5 else (n, m)


def _draw_k(rng, r: int) -> int:
    u = rng.random()
    if u < 0.25:
        return 1
    if u < 0.4:
        return r
    if u < 0.7:  # small k, where the iterative and Gram paths are chosen by `auto`
        return int(rng.integers(1, max(1, r // 8) + 1))
    return int(rng.integers(1, r + 1))


def _spectrum(rng, count: int) -> np.ndarray:
    """`count` positive singular values, descending, of a random profile."""
    if count == 0:
        return np.zeros(0)
    kind = rng.integers(3)
    if kind == 0:
        sig = rng.uniform(0.5, 5.0, count)
    elif kind == 1:
        sig = 10.0 ** rng.uniform(-6, 0, count)
    else:
        sig = np.full(count, rng.uniform(0.5, 3.0))  # all equal
    return np.sort(sig)[::-1]


def _structured(rng, structure: str, m: int, n: int, k: int) -> np.ndarray:
    """A float64 m×n matrix of the named structure, entries of order one."""
    r = min(m, n)
    if structure == "gaussian":
        return rng.standard_normal((m, n))
    if structure == "rank0":
        return np.zeros((m, n))
    if structure == "rank1":
        return helpers.planted(rng, m, n, _spectrum(rng, 1))
    if structure == "rank_k":
        return helpers.planted(rng, m, n, _spectrum(rng, k))
    if structure == "rank_full":
        return helpers.planted(rng, m, n, _spectrum(rng, r))
    if structure == "outer":
        vecs = [
            rng.standard_normal,
            lambda size: np.arange(1.0, size + 1),
            lambda size: np.ones(size),
            lambda size: rng.integers(-3, 4, size).astype(np.float64),
        ]
        u = vecs[rng.integers(len(vecs))](m)
        v = vecs[rng.integers(len(vecs))](n)
        out = np.outer(u, v)
        if rng.random() < 0.3:  # a sum of two outer products
            out = out + np.outer(rng.standard_normal(m), rng.standard_normal(n))
        return out / max(1.0, np.abs(out).max())
    if structure == "ones":
        return np.full((m, n), rng.choice([1.0, -1.0, 0.5]))
    if structure == "repeated_rows":
        rows = rng.standard_normal((int(rng.integers(1, 4)), n))
        return rows[rng.integers(len(rows), size=m)]
    if structure == "repeated_cols":
        cols = rng.standard_normal((m, int(rng.integers(1, 4))))
        return cols[:, rng.integers(cols.shape[1], size=n)]
    if structure == "permutation":  # a partial permutation, sometimes with signs: σ all 1
        out = np.zeros((m, n))
        signs = rng.choice([1.0, -1.0], r) if rng.random() < 0.5 else np.ones(r)
        out[rng.permutation(m)[:r], rng.permutation(n)[:r]] = signs
        return out
    if structure == "hilbert":
        h = rng.choice([1.0, 0.5, 2.5])
        i, j = np.arange(m)[:, None], np.arange(n)[None, :]
        out = 1.0 / (i + j + h)
        return out[::-1] if rng.random() < 0.3 else out
    if structure == "decaying":
        decades = rng.uniform(2.0, 30.0)
        return helpers.planted(rng, m, n, 10.0 ** (-decades * np.arange(r) / max(r, 1)))
    if structure == "tie_at_cut":  # σ_k = σ_{k+1}: the top-k subspace is not unique
        sig = np.concatenate([np.full(min(k + 1, r), 2.0), np.full(r - min(k + 1, r), 0.5)])
        return helpers.planted(rng, m, n, sig)
    if structure == "cluster_at_cut":  # σ_k and σ_{k+1} a relative 1e-7 apart
        sig = np.linspace(3.0, 1.0, r)
        if k < r:
            sig[k] = sig[k - 1] * (1 - 1e-7)
            sig = np.sort(sig)[::-1]
        return helpers.planted(rng, m, n, sig)
    if structure == "diagonal":  # unsorted, with zeros and repeats
        out = np.zeros((m, n))
        d = rng.choice([0.0, 1.0, 2.0, 3.0, rng.uniform(0, 4)], r)
        out[np.arange(r), np.arange(r)] = d * rng.choice([1.0, -1.0], r)
        return out
    if structure == "sparse":
        out = np.zeros((m, n))
        nnz = int(rng.integers(1, max(2, (m * n) // 20) + 1))
        out[rng.integers(m, size=nnz), rng.integers(n, size=nnz)] = rng.standard_normal(nnz)
        return out
    if structure == "integer":
        return rng.integers(-2, 3, (m, n)).astype(np.float64)
    raise ValueError(structure)


def _may_iterate(method: str, m: int, n: int) -> bool:
    return method == "iterative" or (method == "auto" and min(m, n) >= 256)


def _draw_scale(rng, dtype, may_iterate: bool) -> float:
    del may_iterate  # every path takes every scale
    u = rng.random()
    if dtype == np.float32:
        extreme, subnormal = 30, (1e-40, 1e-44)
    else:
        extreme, subnormal = 300, (1e-310, 1e-315)
    if u < 0.45:
        return 1.0
    if u < 0.6:
        return float(10.0**extreme)
    if u < 0.75:
        return float(10.0**-extreme)
    if u < 0.9 or not subnormal:
        return float(10.0 ** rng.uniform(-extreme, extreme))
    return float(rng.choice(subnormal))


def make_case(rng, large: bool = False) -> Case:
    """Draws one valid case: (a, k, method) and a JSON-ready description."""
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    m, n = _draw_shape(rng, large)
    r = min(m, n)
    k = _draw_k(rng, r)
    methods = ["auto", "dense", "iterative"] + (["gram"] if dtype == np.float32 else [])
    method = str(rng.choice(methods))
    size_cap = 2_000_000 if large else 40_000
    batch: tuple[int, ...] = ()
    if rng.random() < 0.35 and m * n <= size_cap:
        batch = (int(rng.integers(1, min(4, max(1, size_cap // (m * n))) + 1)),)
        if rng.random() < 0.15:
            batch = (*batch, 1)
    count = math.prod(batch)

    first = str(rng.choice(list(STRUCTURES), p=_weights()))
    if count >= 3 and rng.random() < 0.3:  # the classic mixed batch
        structures = ["rank0", "rank1", "gaussian", *(first,) * (count - 3)]
        structures = [structures[i] for i in rng.permutation(count)]
    else:
        structures = [
            first
            if j == 0 or rng.random() < 0.5
            else str(rng.choice(list(STRUCTURES), p=_weights()))
            for j in range(count)
        ]
    may_iterate = _may_iterate(method, m, n)
    same_scale = rng.random() < 0.5
    scales = [_draw_scale(rng, dtype, may_iterate)]
    for _ in range(count - 1):
        scales.append(scales[0] if same_scale else _draw_scale(rng, dtype, may_iterate))

    a = np.empty((*batch, m, n), dtype)
    members = []
    tiny = np.finfo(dtype).tiny
    for j, idx in enumerate(np.ndindex(*batch)):
        x = (_structured(rng, structures[j], m, n, k) * scales[j]).astype(dtype)
        assert np.all(np.isfinite(x)), (structures[j], scales[j])
        a[idx] = x
        members.append(
            {
                "structure": structures[j],
                "scale": scales[j],
                "subnormal": bool(np.all(np.abs(x) < tiny)),
                "bad": None,
            }
        )
    k_drawn = k
    if rng.random() < (0.25 if batch else 0.05):  # a NaN or Inf member
        j = int(rng.integers(count))
        idx = list(np.ndindex(*batch))[j]
        value = float(rng.choice([np.nan, np.inf, -np.inf]))
        a[(*idx, int(rng.integers(m)), int(rng.integers(n)))] = value
        members[j]["bad"] = repr(value)
    info = {
        "dtype": np.dtype(dtype).name,
        "shape": list(a.shape),
        "k": k,
        "k_drawn": k_drawn,
        "method": method,
        "members": members,
        "rank_reduce": bool(rng.random() < 0.3) and _rank_reduce_exact_enough(a, k),
        "numpy_int_k": bool(rng.random() < 0.1),
    }
    return Case(a, k, method, info)


def _rank_reduce_exact_enough(a: np.ndarray, k: int) -> bool:
    """Whether flushing the subnormal terms of U diag(s) Vt stays far below the tolerance.

    A documented limitation kept out of the draw: rank_reduce forms U diag(s) Vt under XLA's
    flush-to-zero, so every term below the smallest normal number is dropped (an all-subnormal
    matrix gives zeros). rank_reduce is drawn only where (k + 1) such terms per entry cannot
    reach its tolerance 4·c·ε·‖A‖₂ (‖A‖₂ ≥ max|a_ij|) in any finite, nonzero member.
    """
    finfo = np.finfo(a.dtype)
    c = helpers.contract_constant(*a.shape[-2:])
    top = np.abs(a.astype(np.float64)).max(axis=(-2, -1))  # NaN for a non-finite member
    exact = (top == 0) | (2 * (k + 1) * float(finfo.tiny) <= c * float(finfo.eps) * top)
    return bool(np.all(exact | ~np.isfinite(top)))


def _weights() -> np.ndarray:
    w = np.array(list(STRUCTURES.values()), np.float64)
    return w / w.sum()


def make_invalid_case(rng) -> InvalidCase:
    """Draws an input that the op must reject with the documented ValueError or TypeError."""
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    m, n = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    a = rng.standard_normal((m, n)).astype(dtype)
    r = min(m, n)
    kind = str(
        rng.choice(
            [
                "k_zero",
                "k_negative",
                "k_too_large",
                "k_float",
                "k_bool",
                "one_d",
                "zero_d",
                "empty_axis",
                "int_dtype",
                "bool_dtype",
                "complex_dtype",
                "unknown_method",
                "gram_float64",
                "check_finite",
            ]
        )
    )
    k: object = int(rng.integers(1, r + 1))
    method = str(rng.choice(["auto", "dense", "iterative"]))
    check_finite, error = False, ValueError
    x: object = a
    if kind == "k_zero":
        k = 0
    elif kind == "k_negative":
        k = -int(rng.integers(1, 5))
    elif kind == "k_too_large":
        k = r + int(rng.integers(1, 4))
    elif kind == "k_float":
        k, error = float(k), TypeError
    elif kind == "k_bool":
        k, error = True, TypeError
    elif kind == "one_d":
        x, k = a[0], 1
    elif kind == "zero_d":
        x, k = a[0, 0], 1
    elif kind == "empty_axis":
        x, k = np.zeros((0, n) if rng.random() < 0.5 else (m, 0), dtype), 1
    elif kind == "int_dtype":
        x, error = rng.integers(-3, 4, (m, n)), TypeError
    elif kind == "bool_dtype":
        x, error = rng.random((m, n)) < 0.5, TypeError
    elif kind == "complex_dtype":
        x, error = a.astype(np.complex128), TypeError
    elif kind == "unknown_method":
        method = "svd"
    elif kind == "gram_float64":
        x, method = a.astype(np.float64), "gram"
    elif kind == "check_finite":
        a[rng.integers(m), rng.integers(n)] = rng.choice([np.nan, np.inf])
        check_finite = True
    fn = "rank_reduce" if rng.random() < 0.3 else "truncated_svd"
    info = {"invalid": kind, "fn": fn, "dtype": str(np.asarray(x).dtype)}
    info |= {"shape": list(np.shape(x)), "k": repr(k), "method": method}
    return InvalidCase(x, k, method, fn, check_finite, error, info)


def draw(case_id: int, profile: str) -> Case | InvalidCase:
    """The case of this id: the same on every run and machine (NumPy's seeded generator)."""
    rng = _case_rng(case_id, profile)
    if case_id % INVALID_EVERY == INVALID_EVERY - 1:
        return make_invalid_case(rng)
    return make_case(rng, large=profile == "large")


# ------------------------------------------------------------------------------------------
# Checks, run in the child


def assert_subnormal_contract(a, u, s, vt, k: int) -> None:
    """The contract for one matrix whose entries are all subnormal (or zero).

    As in test_float_env: its singular values are themselves subnormal, representable only to
    the dtype's smallest subnormal, so 2·smallest_subnormal is added to the absolute bounds
    (c·ε·‖A‖₂ + 2·smallest_subnormal); orthogonality and the sign convention are unchanged.
    The float64 arithmetic is done on A·2^p, an exact power-of-two rescaling to order one, so
    that the reference and the residuals are not themselves limited by float64's subnormals.
    """
    tiny = float(np.finfo(a.dtype).smallest_subnormal)
    eps = float(np.finfo(a.dtype).eps)
    m, n = a.shape
    c = helpers.contract_constant(m, n)
    a64 = np.asarray(a, np.float64)
    top = float(np.abs(a64).max())
    p = -math.frexp(top)[1] if top > 0 else 0
    A = np.ldexp(a64, p)
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    S = np.ldexp(s, p)
    s_ref = scipy.linalg.svd(A, compute_uv=False)
    tol = c * eps * s_ref[0] + 2 * math.ldexp(tiny, p)
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt)) and np.all(np.isfinite(s)), s
    assert np.all(S >= 0) and np.all(np.diff(S) <= 0), s
    err = np.max(np.abs(S - s_ref[:k]))
    assert err <= tol, ("σ error", err, tol)
    res_v = np.max(np.linalg.norm(A @ vt.T - u * S, axis=0))
    res_u = np.max(np.linalg.norm(A.T @ u - vt.T * S, axis=0))
    assert res_v <= tol, ("‖A v − σ u‖", res_v, tol)
    assert res_u <= tol, ("‖Aᵀ u − σ v‖", res_u, tol)
    assert np.linalg.norm(u.T @ u - np.eye(k), 2) <= c * eps
    assert np.linalg.norm(vt @ vt.T - np.eye(k), 2) <= c * eps
    big = np.argmax(np.abs(u), axis=0)
    assert np.all(u[big, np.arange(k)] > 0), "sign convention violated"


def _assert_rank_reduce(a, u, s, vt, ak, k: int, subnormal: bool) -> None:
    """rank_reduce equals U diag(s) Vt of truncated_svd to 4·c·ε·‖A‖₂ (as in test_svd)."""
    eps = float(np.finfo(a.dtype).eps)
    c = helpers.contract_constant(*a.shape)
    a64 = np.asarray(a, np.float64)
    top = float(np.abs(a64).max())
    p = -math.frexp(top)[1] if top > 0 else 0  # exact rescaling, as above
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    ref = (u * np.ldexp(s, p)) @ vt
    norm = scipy.linalg.svd(np.ldexp(a64, p), compute_uv=False)[0]
    tol = 4 * c * eps * norm
    if subnormal:  # each output entry is rounded to the format's spacing
        tol += 2 * math.ldexp(float(np.finfo(a.dtype).smallest_subnormal), p)
    err = float(np.max(np.abs(np.ldexp(np.asarray(ak, np.float64), p) - ref)))
    assert err <= tol, ("rank_reduce − U diag(s) Vt", err, tol)


def _check_case(case: Case, rrae_fast) -> dict:
    """Runs one valid case; raises AssertionError on a contract violation. Returns timings."""
    a, k, method, info = case
    kk = np.int64(k) if info["numpy_int_k"] else k
    *batch, m, n = a.shape
    calls: list[float] = []

    def timed(fn, x):  # the op's outputs as NumPy arrays (so computed), and the time it took
        t0 = time.perf_counter()
        out = fn(x, kk, method=method)
        out = tuple(map(np.asarray, out)) if isinstance(out, tuple) else np.asarray(out)
        calls.append(time.perf_counter() - t0)
        assert calls[-1] <= CALL_LIMIT_S, f"{fn.__name__} took {calls[-1]:.1f} s"
        return out

    u, s, vt = timed(rrae_fast.truncated_svd, a)
    assert u.dtype == s.dtype == vt.dtype == a.dtype, (u.dtype, s.dtype, vt.dtype)
    assert u.shape == (*batch, m, k) and s.shape == (*batch, k) and vt.shape == (*batch, k, n)
    members = list(np.ndindex(*batch))
    for idx, member in zip(members, info["members"]):
        where = f"member {idx}" if batch else "matrix"
        try:
            if member["bad"] is not None:
                for x in (u, s, vt):
                    assert np.all(np.isnan(x[idx])), "non-finite input must give all-NaN outputs"
            elif member["subnormal"]:
                assert_subnormal_contract(a[idx], u[idx], s[idx], vt[idx], k)
            else:
                helpers.assert_contract(a[idx], u[idx], s[idx], vt[idx], k)
        except AssertionError as e:
            raise AssertionError(f"{where} ({member}): {_describe(e)}") from None
    bad = [j for j, member in enumerate(info["members"]) if member["bad"] is not None]
    if bad and len(bad) < len(members):  # the other members are computed exactly
        clean = a.copy()
        for j in bad:
            clean[members[j]] = 0
        ref = timed(rrae_fast.truncated_svd, clean)
        for j, idx in enumerate(members):
            if j not in bad:
                for x, y in zip((u, s, vt), ref):
                    np.testing.assert_array_equal(x[idx], y[idx], err_msg=f"member {idx}")
    if info["rank_reduce"]:
        ak = timed(rrae_fast.rank_reduce, a)
        assert ak.shape == a.shape and ak.dtype == a.dtype, (ak.shape, ak.dtype)
        for idx, member in zip(members, info["members"]):
            if member["bad"] is not None:
                assert np.all(np.isnan(ak[idx])), f"rank_reduce: member {idx} not all NaN"
            else:
                try:
                    _assert_rank_reduce(
                        a[idx], u[idx], s[idx], vt[idx], ak[idx], k, member["subnormal"]
                    )
                except AssertionError as e:
                    raise AssertionError(f"member {idx}: {_describe(e)}") from None
    return {"call_seconds": round(max(calls), 4)}


def _check_invalid(case: InvalidCase, rrae_fast) -> dict:
    fn = getattr(rrae_fast, case.fn)
    try:
        fn(case.a, case.k, method=case.method, check_finite=case.check_finite)
    except case.error:
        return {}
    except Exception as e:
        raise AssertionError(
            f"expected {case.error.__name__}, got {type(e).__name__}: {e}"
        ) from None
    raise AssertionError(f"expected {case.error.__name__}, nothing was raised")


def _describe(e: BaseException) -> str:
    text = str(e) or repr(e)
    frames = traceback.extract_tb(e.__traceback__)
    line = frames[-1].line if frames else ""
    return f"{text} [at: {line}]" if line else text


def _setup():
    import jax

    jax.config.update("jax_enable_x64", True)
    import rrae_fast

    return rrae_fast


def run_case(case_id: int, profile: str = "small") -> dict:
    """Runs one case in this process; returns {"id", "ok", ...}. Reruns a reported failure."""
    rrae_fast = _setup()
    case = draw(case_id, profile)
    record: dict = {"id": case_id, "tags": _tags(case)}
    try:
        if isinstance(case, InvalidCase):
            record |= _check_invalid(case, rrae_fast)
        else:
            record |= _check_case(case, rrae_fast)
        record["ok"] = True
    except Exception as e:
        record |= {"ok": False, "error": _describe(e)[:2000], "case": case.info}
    return record


def _case_deadline() -> float:
    return float(os.environ.get("RRAE_FUZZ_CASE_DEADLINE_S", CASE_DEADLINE_S))


def child_main(first: int, count: int, profile: str, out_path: str) -> None:
    """The child: runs case ids first .. first+count−1, one `start` line and one JSON line each.

    A watchdog dumps the stacks and exits the process when one case runs past
    CASE_DEADLINE_S, so a call that never returns fails its case instead of the whole run.
    RRAE_FUZZ_HANG_AT and RRAE_FUZZ_CASE_DEADLINE_S exist for the harness's own test.
    """
    _setup()
    faulthandler.enable()  # a crash prints the stacks too
    deadline = _case_deadline()
    hang_at = int(os.environ.get("RRAE_FUZZ_HANG_AT", -1))
    with open(out_path, "w") as f:
        for case_id in range(first, first + count):
            f.write(f"start {case_id}\n")
            f.flush()
            faulthandler.dump_traceback_later(deadline, exit=True)
            t0 = time.perf_counter()
            if case_id == hang_at:
                time.sleep(10 * deadline)
            record = run_case(case_id, profile)
            faulthandler.cancel_dump_traceback_later()
            record["case_seconds"] = round(time.perf_counter() - t0, 3)
            f.write(json.dumps(record) + "\n")
            f.flush()


# ------------------------------------------------------------------------------------------
# The parent


def _reproducer(case_id: int, profile: str) -> str:
    return (
        f"cd {TESTS_DIR} && python -c "
        f"'import test_fuzz; print(test_fuzz.run_case({case_id}, \"{profile}\"))'"
    )


def _run_chunk(first: int, count: int, profile: str, tmp_path) -> list[dict]:
    """Runs the cases in a child with a deadline; fails naming the case that hung or failed."""
    out = tmp_path / f"fuzz_{profile}_{first}.jsonl"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_fuzz; "
        "test_fuzz.child_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])"
    )
    argv = [sys.executable, "-c", script, str(TESTS_DIR), str(first), str(count), profile]
    timed_out, stderr, rc = False, "", None
    try:
        done = subprocess.run(
            [*argv, str(out)],
            cwd=tmp_path,  # not the repository root, whose source tree would shadow the package
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=CHUNK_DEADLINE_S,
        )
        stderr, rc = done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        timed_out = True
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
    lines = out.read_text().splitlines() if out.exists() else []
    records = [json.loads(line) for line in lines if line.startswith("{")]
    started = [int(line.split()[1]) for line in lines if line.startswith("start ")]
    failures = [r for r in records if not r["ok"]]
    messages = []
    for r in failures:
        messages.append(
            f"case {r['id']} ({profile}): {r['error']}\n  case: {json.dumps(r['case'])}\n"
            f"  rerun: {_reproducer(r['id'], profile)}"
        )
    if len(records) < count:
        last = started[-1] if started else first
        why = (
            f"the child did not finish within {CHUNK_DEADLINE_S:.0f} s"
            if timed_out
            else f"the child exited with status {rc}"
        )
        case = draw(last, profile)
        messages.append(
            f"{why}; case {last} started and never reported (hung past "
            f"{_case_deadline():.0f} s or crashed)\n  case: {json.dumps(case.info)}\n"
            f"  rerun: {_reproducer(last, profile)}\n  stderr: {(stderr or '')[-3000:]}"
        )
    assert not messages, "\n".join(messages)
    assert [r["id"] for r in records] == list(range(first, first + count))
    return records


def _summary(records: list[dict]) -> str:
    slowest = max(records, key=lambda r: r["case_seconds"])
    call = max(r.get("call_seconds", 0.0) for r in records)
    return (
        f"{len(records)} cases; slowest case {slowest['id']}: {slowest['case_seconds']} s; "
        f"slowest call {call} s"
    )


def test_fuzz(tmp_path):
    """Small random cases (all shapes, structures, scales, methods, mixed batches, NaN members,
    invalid inputs) return within the deadline and meet the contract or raise as documented;
    the cases drawn reach every structure, method, dtype and kind of input."""
    records = _run_chunk(0, DEFAULT_CASES, "small", tmp_path)
    print(_summary(records))
    _assert_coverage(records)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(SLOW_CHUNKS))
def test_fuzz_long(chunk, tmp_path):
    """The long form: ten times as many cases, with sizes up to 700×500 and 3×2000."""
    records = _run_chunk(chunk * SLOW_CHUNK_SIZE, SLOW_CHUNK_SIZE, "large", tmp_path)
    print(_summary(records))


def test_harness_reports_a_hang(tmp_path, monkeypatch):
    """A case that never returns ends the child at the per-case deadline and is named."""
    monkeypatch.setenv("RRAE_FUZZ_HANG_AT", "1")
    monkeypatch.setenv("RRAE_FUZZ_CASE_DEADLINE_S", "2")
    t0 = time.perf_counter()
    with pytest.raises(AssertionError, match="case 1 started and never reported") as e:
        _run_chunk(0, 3, "small", tmp_path)
    assert "rerun: " in str(e.value) and "Timeout" in str(e.value)  # the watchdog's stacks
    assert time.perf_counter() - t0 < CHUNK_DEADLINE_S


def test_generator_is_seeded():
    """A case id gives the same case on every draw (and so a failure can be rerun)."""
    for case_id in range(24):
        case, again = draw(case_id, "small"), draw(case_id, "small")
        np.testing.assert_array_equal(np.asarray(case.a), np.asarray(again.a))
        assert (case.k, case.method, case.info) == (again.k, again.method, again.info)
        if isinstance(case, Case):
            m, n = case.a.shape[-2:]
            assert 1 <= case.k <= min(m, n) and case.info["k"] == case.k


def _tags(case: Case | InvalidCase) -> list[str]:
    """What a case exercises, for the coverage check (kept small: it travels as JSON)."""
    if isinstance(case, InvalidCase):
        return [f"invalid:{case.info['invalid']}"]
    m, n = case.a.shape[-2:]
    members = case.info["members"]
    tags = {f"method:{case.method}", f"dtype:{case.info['dtype']}"}
    tags |= {f"structure:{member['structure']}" for member in members}
    tags.add("shape:" + ("row" if m == 1 else "column" if n == 1 else "matrix"))
    if case.a.ndim > 2:
        tags.add("batch")
        if len({member["structure"] for member in members}) > 1:
            tags.add("mixed batch")
    if any(member["subnormal"] for member in members):
        tags.add("subnormal")
    if any(member["bad"] for member in members):
        tags.add("non-finite member")
    if case.info["rank_reduce"]:
        tags.add("rank_reduce")
    if case.k == min(m, n) > 1:
        tags.add("k = min(m, n)")
    return sorted(tags)


def _assert_coverage(records: list[dict]) -> None:
    seen = set().union(*(record["tags"] for record in records))
    wanted = {f"structure:{name}" for name in STRUCTURES}
    wanted |= {f"method:{name}" for name in ("auto", "dense", "iterative", "gram")}
    wanted |= {"dtype:float32", "dtype:float64", "shape:row", "shape:column", "shape:matrix"}
    wanted |= {"batch", "mixed batch", "subnormal", "non-finite member", "rank_reduce"}
    wanted |= {"k = min(m, n)"}
    assert wanted <= seen, sorted(wanted - seen)
    assert len([tag for tag in seen if tag.startswith("invalid:")]) >= 8, sorted(seen)


# ------------------------------------------------------------------------------------------
# The defects found by the fuzzer, now fixed, and the limitation kept out of its draw.


def test_iterative_subnormal_float32():
    """A rank-one 2×2 float32 matrix of subnormals on the iterative path meets the contract
    (its Ritz vectors' scaling by 1/σ overflowed to Inf/NaN; such a result now falls back)."""
    import rrae_fast

    bits = np.array([[31301, 2147485723], [56284, 2147487380]], np.uint32)
    a = bits.view(np.float32)  # [[4.386e-41, -2.908e-42], [7.887e-41, -5.230e-42]]
    u, s, vt = rrae_fast.truncated_svd(a, 1, method="iterative")
    assert np.all(np.isfinite(np.asarray(u))) and np.all(np.isfinite(np.asarray(vt)))
    assert_subnormal_contract(a, u, s, vt, 1)


@pytest.mark.xfail(strict=True, reason="XLA flushes subnormal results of its operations")
@pytest.mark.parametrize(
    "diagonal",
    [
        np.array([3e-40, 2e-40, 1e-40], np.float32),  # all subnormal: gave zeros
        np.array([3e-310, 2e-310, 1e-310]),  # all subnormal: gave zeros
        np.array([1e-300, 1e-309]),  # normal ‖A‖₂ = 1e-300: the second term was dropped
    ],
    ids=["float32-subnormal", "float64-subnormal", "float64-normal"],
)
def test_rank_reduce_flushes_subnormal_results(diagonal):
    """rank_reduce of a diagonal matrix is that matrix, to 4·c·ε·‖A‖₂ + 2·smallest_subnormal."""
    import rrae_fast

    a = np.diag(diagonal)
    ak = np.asarray(rrae_fast.rank_reduce(a, len(diagonal), method="dense"))
    finfo = np.finfo(a.dtype)
    tol = 4 * helpers.contract_constant(*a.shape) * finfo.eps * diagonal.max()
    tol += 2 * finfo.smallest_subnormal  # the format's spacing, as for subnormal inputs
    assert np.max(np.abs(ak.astype(np.float64) - a)) <= tol


@pytest.mark.parametrize(
    "shape,k,method", [((2, 2), 2, "gram"), ((2, 3), 2, "auto"), ((300, 100), 2, "auto")]
)
def test_gram_rank_deficient(shape, k, method):
    """An all-ones float32 matrix (rank one) at k = 2 on the Gram path meets the contract (the
    vectors for σ = 0 were left parallel to the first: CholeskyQR orthonormalised rounding)."""
    import rrae_fast

    a = np.ones(shape, np.float32)
    u, s, vt = rrae_fast.truncated_svd(a, k, method=method)
    helpers.assert_contract(a, u, s, vt, k)
