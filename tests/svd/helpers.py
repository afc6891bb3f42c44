"""References, spectra and tolerances shared by the tests."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import scipy.linalg

SPECTRA = ("flat", "decaying", "repeated", "rank_deficient", "zero")


def make_matrix(rng, shape, spectrum: str = "flat", scale: float = 1.0) -> np.ndarray:
    """A float64 array of `shape` [..., m, n] with the named singular-value profile.

    flat: Gaussian entries. decaying: σ_i = 10^(-8 i / r). repeated: σ = (3, 3, 3, 1, 1, ...).
    rank_deficient: exactly rank max(1, r // 3) with σ from 5 to 1. zero: all zeros.
    """
    *batch, m, n = shape
    r = min(m, n)
    out = np.empty(shape)
    for idx in np.ndindex(*batch):
        if spectrum == "flat":
            a = rng.standard_normal((m, n))
        elif spectrum == "zero":
            a = np.zeros((m, n))
        else:
            if spectrum == "decaying":
                sig = 10.0 ** (-8.0 * np.arange(r) / max(r, 1))
            elif spectrum == "repeated":
                sig = np.where(np.arange(r) < 3, 3.0, 1.0)
            elif spectrum == "rank_deficient":
                rank = max(1, r // 3)
                sig = np.concatenate([np.linspace(5.0, 1.0, rank), np.zeros(r - rank)])
            else:
                raise ValueError(spectrum)
            a = planted(rng, m, n, sig)
        out[idx] = a
    return out * scale


def planted(rng, m: int, n: int, sigma) -> np.ndarray:
    """An m×n matrix with exactly the singular values `sigma` (length ≤ min(m, n))."""
    sigma = np.asarray(sigma, dtype=np.float64)
    q1, _ = np.linalg.qr(rng.standard_normal((m, len(sigma))))
    q2, _ = np.linalg.qr(rng.standard_normal((n, len(sigma))))
    return (q1 * sigma) @ q2.T


def reference_svd(a: np.ndarray):
    """Float64 thin SVD by SciPy's LAPACK (gesdd), batched over leading axes."""
    a = np.asarray(a, np.float64)
    *batch, m, n = a.shape
    r = min(m, n)
    u = np.empty((*batch, m, r))
    s = np.empty((*batch, r))
    vt = np.empty((*batch, r, n))
    for idx in np.ndindex(*batch):
        u[idx], s[idx], vt[idx] = scipy.linalg.svd(a[idx], full_matrices=False)
    return u, s, vt


def contract_constant(m: int, n: int) -> float:
    return 20.0 * math.sqrt(max(m, n))


def assert_contract(a, u, s, vt, k: int):
    """Asserts the accuracy contract of `truncated_svd` on every batch member.

    With ε the dtype's epsilon, a = ‖A‖₂, c = 20·√max(m, n): |σ_i − σ_i^ref| ≤ c·ε·a,
    ‖A v_i − σ_i u_i‖ ≤ c·ε·a, ‖Aᵀ u_i − σ_i v_i‖ ≤ c·ε·a, ‖UᵀU − I‖₂, ‖VᵀV − I‖₂ ≤ c·ε.
    Also: s descending, s ≥ 0, and the sign convention.
    """
    a = np.asarray(a)
    eps = np.finfo(a.dtype).eps
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    a64 = a.astype(np.float64)
    *batch, m, n = a.shape
    assert u.shape == (*batch, m, k) and s.shape == (*batch, k) and vt.shape == (*batch, k, n)
    c = contract_constant(m, n)
    _, s_ref, _ = reference_svd(a64)
    for idx in np.ndindex(*batch):
        U, Vt = u[idx], vt[idx]
        assert np.all(np.isfinite(U)) and np.all(np.isfinite(s[idx])) and np.all(np.isfinite(Vt))
        # Compare in units of ‖A‖₂ so that 1e±200 scales neither overflow nor underflow here.
        unit = s_ref[idx][0] if s_ref[idx][0] > 0 else 1.0
        A, S, S_ref = a64[idx] / unit, s[idx] / unit, s_ref[idx][:k] / unit
        tol = c * eps * (1.0 if s_ref[idx][0] > 0 else 0.0)
        assert np.all(S >= 0) and np.all(np.diff(S) <= 0), S
        assert np.max(np.abs(S - S_ref)) <= tol, (np.max(np.abs(S - S_ref)), tol)
        res_v = np.linalg.norm(A @ Vt.T - U * S, axis=0)
        res_u = np.linalg.norm(A.T @ U - Vt.T * S, axis=0)
        assert np.max(res_v) <= tol, (np.max(res_v), tol)
        assert np.max(res_u) <= tol, (np.max(res_u), tol)
        assert np.linalg.norm(U.T @ U - np.eye(k), 2) <= c * eps
        assert np.linalg.norm(Vt @ Vt.T - np.eye(k), 2) <= c * eps
        big = np.argmax(np.abs(U), axis=0)
        assert np.all(U[big, np.arange(k)] > 0), "sign convention violated"


def stable_svd_jvp_reference(a, da, k, zero_rtol=1e-11, tie_abs=1e-9):
    """The paper's stable SVD rule (Appendix A listing), float64 NumPy, sliced to k columns.

    Singular values below `zero_rtol`·σ_1 are set to zero; pairs with |σ_j² − σ_i²| ≤ `tie_abs`
    get F = 1/(Δ + 1) − 1 (≈ 0) as in the paper's listing. Returns (du, ds, dv) for the top k.
    """
    a, da = np.asarray(a, np.float64), np.asarray(da, np.float64)
    m, n = a.shape
    u, s, vt = scipy.linalg.svd(a, full_matrices=False)
    v = vt.T
    s = np.where(s >= zero_rtol * s[0], s, 0.0)
    dp = u.T @ da @ v
    delta = s[None, :] ** 2 - s[:, None] ** 2
    z = (np.abs(delta) <= tie_abs).astype(np.float64)
    f = 1.0 / (delta + z) - z
    np.fill_diagonal(f, 0.0)
    sd = np.diag(s)
    sinv = np.where(s != 0, 1.0 / np.where(s != 0, s, 1.0), 0.0)
    du = u @ (f * (dp @ sd + sd @ dp.T))
    dv = v @ (f * (sd @ dp + dp.T @ sd))
    if m > n:
        du = du + (np.eye(m) - u @ u.T) @ da @ v * sinv
    if n > m:
        dv = dv + (np.eye(n) - v @ v.T) @ da.T @ u * sinv
    return du[:, :k], np.diag(dp)[:k], dv[:, :k]


def fd_jvp(f, x, dx, h=1e-6):
    """Central finite difference of f at x in direction dx (float64)."""
    return (np.asarray(f(x + h * dx)) - np.asarray(f(x - h * dx))) / (2 * h)


def projector_distance(u1, u2) -> float:
    """‖P₁ − P₂‖₂ for the column spaces of u1 and u2 (sign- and rotation-invariant)."""
    return float(np.linalg.norm(u1 @ u1.T - u2 @ u2.T, 2))


def backward_route(a, k: int, method: str = "auto", gradient: str = "exact") -> str:
    """The planner's route for the derivative of ``a`` at rank ``k`` on CPU."""
    from rrae_fast.svd import _plan

    m, n = a.shape[-2:]
    return _plan.route(m, n, a.dtype, k, method, gradient, "cpu")


def force_route(monkeypatch, route: str | None) -> None:
    """Makes the planner take ``route`` ("cg", "gram", or None for "full_svd") for every exact
    derivative, and the CG route solve even where its cost gate would prefer the full SVD
    (small test matrices). The callers clear the ops' jit caches."""
    import jax.numpy as jnp

    from rrae_fast.svd import _plan, _solves

    chosen = route or "full_svd"
    monkeypatch.setattr(
        _plan, "route", lambda *args: "tangent" if args[5] == "tangent" else chosen
    )
    monkeypatch.setattr(_solves, "worth_solving", lambda *args: jnp.array(True))


@contextlib.contextmanager
def injected_fault(name: str) -> Iterator[None]:
    """Every CPU kernel call inside the block injects the named fault (the test module's
    process-wide switch); results must be awaited inside it (`jax.block_until_ready`)."""
    from rrae_fast.svd import _cpu_testing

    previous = _cpu_testing.inject_fault(name)
    try:
        yield
    finally:
        _cpu_testing.inject_fault(previous)


def labelled_squares(rng, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """28×28 images in [0, 1] of a bright square whose place is the label (0–9), with noise:
    an MNIST stand-in that a small classifier learns in a few steps. Returns float32 images
    `[10·per_class, 1, 28, 28]` and int32 labels."""
    labels = np.repeat(np.arange(10), per_class)
    x = 0.1 * rng.random((len(labels), 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        r, col = 2 + 10 * (c // 5), 1 + 5 * (c % 5)
        x[i, 0, r : r + 6, col : col + 4] = 1.0
    return x, labels.astype(np.int32)
