"""What the SVD suites measure: the cases, their inputs, float64 references and accuracy.

A :class:`Case` names one input (shape, batch, rank, spectrum, dtype) and one mode (forward, or
forward + backward through the rank-k approximation). Inputs are generated from a fixed seed, so
the benchmark process and a memory-measuring subprocess build the same matrix. References (the
singular values and leading left singular vectors of the input, computed by LAPACK in float64)
are cached on disk under ``benchmarks/.cache`` because the large ones take a minute each.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import platform

import numpy as np
import scipy.linalg

CACHE = pathlib.Path(__file__).resolve().parent / ".cache"


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark input and mode.

    Attributes:
        mode: ``"fwd"`` (the k leading triplets) or ``"grad"`` (``jit(grad)`` of
            ``sum((A_k − T)²)`` through the rank-k approximation).
        m, n: matrix shape.
        k: rank.
        spectrum: ``"rrae"`` (rank k with σ spread 10…1 plus a residual of relative Frobenius
            size 1e-3) or ``"flat"`` (Gaussian entries).
        dtype: ``"float32"`` or ``"float64"``.
        batch: number of matrices (0: a single matrix).
        vmap: whether JAX callables map a single-matrix function over the batch with
            ``jax.vmap`` instead of passing the batch to the op.
    """

    mode: str
    m: int
    n: int
    k: int
    spectrum: str = "rrae"
    dtype: str = "float32"
    batch: int = 0
    vmap: bool = False

    @property
    def group(self) -> str:
        shape = f"{self.m}x{self.n}"
        if self.batch:
            shape = f"{'vmap-' if self.vmap else ''}{self.batch}x({shape})"
        dt = {"float32": "f32", "float64": "f64"}[self.dtype]
        return f"{self.mode}-{shape}-{self.spectrum}-k{self.k}-{dt}"

    @property
    def shape(self) -> tuple[int, ...]:
        return ((self.batch,) if self.batch else ()) + (self.m, self.n)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _seed(case: Case, what: str) -> int:
    key = f"{what}-{case.m}-{case.n}-{case.k}-{case.spectrum}-{case.batch}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def rrae_like(rng: np.random.Generator, m: int, n: int, k: int) -> np.ndarray:
    """[m, n] float64: a rank-k part with σ spread 10…1 plus a residual, 1e-3 relative."""
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    low = (q1 * np.linspace(10.0, 1.0, k)) @ q2.T
    e = rng.standard_normal((m, n))
    e *= 1e-3 * np.linalg.norm(low) / np.linalg.norm(e)
    return low + e


def matrix(case: Case) -> np.ndarray:
    """The case's input, shape ``case.shape``, in its dtype (the same on every call; read-only)."""
    return _matrix(dataclasses.replace(case, mode="fwd", vmap=False))


@functools.lru_cache(maxsize=2)
def _matrix(case: Case) -> np.ndarray:
    rng = np.random.default_rng(_seed(case, "input"))
    count = max(case.batch, 1)
    if case.spectrum == "rrae":
        mats = [rrae_like(rng, case.m, case.n, case.k) for _ in range(count)]
    elif case.spectrum == "flat":
        mats = [rng.standard_normal((case.m, case.n)) for _ in range(count)]
    else:
        raise ValueError(f"unknown spectrum {case.spectrum!r}")
    a = np.stack(mats).astype(case.dtype)
    a = a if case.batch else a[0]
    a.setflags(write=False)
    return a


def target(case: Case) -> np.ndarray:
    """The regression target T of the ``grad`` mode, shape ``case.shape``."""
    rng = np.random.default_rng(_seed(case, "target"))
    return rng.standard_normal(case.shape).astype(case.dtype)


def reference(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """float64 LAPACK reference of the case's input: ``(s [..., r], u [..., m, k])``."""
    a = matrix(case)
    name = hashlib.sha256(a.tobytes()).hexdigest()[:24] + f"-k{case.k}.npz"
    path = CACHE / name
    if path.exists():
        with np.load(path) as f:
            return f["s"], f["u"]
    a64 = a.astype(np.float64)
    if a.ndim == 2:
        u, s, _ = scipy.linalg.svd(a64, full_matrices=False, lapack_driver="gesdd")
    else:
        u, s, _ = np.linalg.svd(a64, full_matrices=False)
    u = u[..., : case.k]
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, s=s, u=u)
    os.replace(tmp, path)
    return s, u


def accuracy(case: Case, u, s, vt) -> dict[str, float]:
    """How well ``(u, s, vt)`` (any array type, batch first) meets the float64 reference.

    Returns the worst over the batch of: ``sigma_err`` = max |σ_i − σ_i^ref| / σ_1^ref;
    ``residual`` = max_i ‖A v_i − σ_i u_i‖ / σ_1^ref; ``orth_u`` = ‖UᵀU − I‖₂; ``angle`` = the
    sine of the largest principal angle between span(U) and the reference's leading k left
    singular vectors (ill-conditioned where σ_k ≈ σ_{k+1}, as on flat spectra).
    """
    s_ref, u_ref = reference(case)
    a = matrix(case).astype(np.float64)
    u, s, vt = (np.asarray(x, np.float64) for x in (u, s, vt))
    if not case.batch:
        a, u, s, vt, s_ref, u_ref = (x[None] for x in (a, u, s, vt, s_ref, u_ref))
    k = case.k
    top = s_ref[:, :1]
    sigma_err = np.max(np.abs(s[:, :k] - s_ref[:, :k]) / top)
    av = a @ np.swapaxes(vt[:, :k], -1, -2)
    residual = np.max(np.linalg.norm(av - u[:, :, :k] * s[:, None, :k], axis=-2) / top)
    eye = np.eye(k)
    gram = np.swapaxes(u[:, :, :k], -1, -2) @ u[:, :, :k]
    orth = max(np.linalg.norm(g - eye, 2) for g in gram)
    # sin of the largest principal angle: ‖U − U_ref U_refᵀ U‖₂ (accurate for small angles,
    # unlike arccos of the cosines).
    away = u[:, :, :k] - u_ref @ (np.swapaxes(u_ref, -1, -2) @ u[:, :, :k])
    angle = float(max(np.linalg.norm(x, 2) for x in away))
    return {
        "sigma_err": float(sigma_err),
        "residual": float(residual),
        "orth_u": float(orth),
        "angle": angle,
    }


def contract_bound(case: Case) -> float:
    """The accuracy contract's bound on sigma_err and residual: 20·√max(m, n)·ε."""
    return float(20 * np.sqrt(max(case.m, case.n)) * np.finfo(case.dtype).eps)


def machine_info() -> dict:
    """What a result depends on: versions, BLAS threads, and the load when it was taken."""
    import jax

    info = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    from importlib.metadata import PackageNotFoundError, version

    for package in ("jaxlib", "numpy", "scipy", "torch", "scikit-learn", "rraes", "cupy"):
        try:
            info[package.replace("-", "_") + "_version"] = version(package)
        except PackageNotFoundError:
            pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted(
            {
                f"{p['internal_api']} {p.get('version')} threads={p['num_threads']}"
                for p in threadpool_info()
            }
        )
    except ImportError:
        pass
    return info
