"""The contenders of the SVD suites: rrae_fast's variants and what users would otherwise pick.

Each :class:`Peer` says whether it can run a :class:`~cases.Case` (``why_not``: a reason, or
None), estimates how long one call would take (``estimate``, from a flop count and the GEMM rate
measured at the start of the run; the suites skip peers whose estimate exceeds the budget, with
the reason recorded) and builds a ready-to-time call (``prepare``). rrae_fast's own variants are
never skipped for budget.

Forward calls return ``(u, s, vt)`` sliced to k; ``grad`` calls return the derivative of
``sum((A_k − T)²)`` with respect to A, where ``A_k = U_k diag(s_k) V_kᵀ``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rrae_fast
from cases import Case

#: Relative Frobenius size of the perturbation between the warm start's matrix and the input
#: (consecutive RRAE batches see nearly the same latent basis).
WARM_PERTURBATION = 1e-4


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


@dataclasses.dataclass
class Prepared:
    """A call ready to time: ``call()`` runs once and blocks until its result is ready."""

    call: Callable[[], Any]
    factors: Callable[[Any], tuple] | None = None  # forward output -> numpy (u, s, vt)
    compiled: Any = None  # the jax Compiled object, for memory_analysis()
    init: Any = None  # rrae_fast's warm start, if any


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    prepare: Callable[[Case, np.ndarray, np.ndarray], Prepared]
    flops: Callable[[Case], float]  # flop-equivalents of one call (0: never skipped)
    module: str | None = None  # the package it needs
    gpu_only: bool = False
    differentiable: bool = True
    k_dependent: bool = True  # whether memory and time depend on k
    min_k_gap: int = 0  # needs k <= min(m, n) - min_k_gap

    def why_not(self, case: Case) -> str | None:
        if self.module and not have(self.module):
            return f"{self.module} is not installed"
        if self.gpu_only and not on_gpu():
            return "a GPU peer; this run has no GPU"
        if case.mode == "grad" and not self.differentiable:
            return "not differentiable"
        if case.k > min(case.m, case.n) - self.min_k_gap:
            return f"needs k < min(m, n) - {self.min_k_gap - 1}"
        return None

    def estimate(self, case: Case, rate: float) -> float:
        """Seconds one call should take at `rate` flop/s (float64 counted twice)."""
        scale = max(case.batch, 1) * (2.0 if case.dtype == "float64" else 1.0)
        grad = 1.5 if case.mode == "grad" else 1.0
        return self.flops(case) * scale * grad / rate


# ---------------------------------------------------------------------------------------------
# Cost models (flop-equivalents at the GEMM rate; fitted to 4096² float32 timings on 2 cores)
# ---------------------------------------------------------------------------------------------


def _dense_flops(case: Case) -> float:
    # LAPACK's thin SVD with vectors: ~30·m·n·min(m, n) GEMM-rate flops (12 s at 4096²).
    return 30.0 * case.m * case.n * min(case.m, case.n)


def _randomized_flops(case: Case, niter: int, oversample: int = 10) -> float:
    q = min(case.k + oversample, min(case.m, case.n))
    products = 2.0 * case.m * case.n * q * (2 * niter + 2)
    orthonormalise = (niter + 1) * 4.0 * max(case.m, case.n) * q * q
    small_svd = 30.0 * q * q * min(case.m, case.n)
    return 2.0 * (products + orthonormalise + small_svd)  # ~50% of the GEMM rate


def _arpack_flops(case: Case) -> float:
    # Implicitly restarted Lanczos: restarts of ncv matrix-vector pairs (memory-bound, ~10×
    # slower per flop than a GEMM) plus the re-orthogonalisation of ncv vectors. Scaled to
    # measured calls (4096×4608 on 2 cores: ~60 s at k = 1024, ~190 s at k = 2500).
    ncv = min(min(case.m, case.n), max(2 * case.k + 1, 20))
    return 12 * ncv * (2 * 2.0 * case.m * case.n * 10 + 4.0 * max(case.m, case.n) * ncv)


def _sklearn_niter(case: Case) -> int:
    return 7 if case.k < 0.1 * min(case.m, case.n) else 4


# ---------------------------------------------------------------------------------------------
# JAX contenders
# ---------------------------------------------------------------------------------------------


def _slice(u, s, vt, k):
    return u[..., :k], s[..., :k], vt[..., :k, :]


def _jax_prepare(case: Case, a, t, single, rank_k=None, extra=()) -> Prepared:
    """`single(x, *extra)` → (u, s, vt) of one matrix or a batch; `rank_k` → A_k if it has one.

    With ``case.vmap`` both are mapped over the leading axis of ``x`` and of each ``extra``.
    """
    aj, tj = jnp.asarray(a), jnp.asarray(t)
    extra = tuple(jnp.asarray(e) for e in extra)
    if rank_k is None:

        def rank_k(x, *more):
            u, s, vt = single(x, *more)
            return (u * s[..., None, :]) @ vt

    fwd, approx = (jax.vmap(f) if case.vmap else f for f in (single, rank_k))
    if case.mode == "fwd":
        compiled = jax.jit(fwd).lower(aj, *extra).compile()
        return Prepared(
            call=lambda: jax.block_until_ready(compiled(aj, *extra)),
            factors=lambda out: tuple(np.asarray(x) for x in out),
            compiled=compiled,
        )
    grad = jax.jit(jax.grad(lambda x, *more: jnp.sum((approx(x, *more) - tj) ** 2)))
    compiled = grad.lower(aj, *extra).compile()
    return Prepared(call=lambda: jax.block_until_ready(compiled(aj, *extra)), compiled=compiled)


def _rrae_fast(method="auto", warm=False):
    def prepare(case, a, t):
        k = case.k
        if not warm:
            return _jax_prepare(
                case,
                a,
                t,
                lambda x: rrae_fast.truncated_svd(x, k, method=method),
                lambda x: rrae_fast.rank_reduce(x, k, method=method),
            )
        # The previous step's basis: that of a slightly different matrix.
        rng = np.random.default_rng(1)
        noise = rng.standard_normal(a.shape).astype(a.dtype)
        scale = WARM_PERTURBATION * np.linalg.norm(a) / np.linalg.norm(noise)
        init = rrae_fast.truncated_svd(jnp.asarray(a + scale * noise), k)[0]
        prepared = _jax_prepare(
            case,
            a,
            t,
            lambda x, i: rrae_fast.truncated_svd(x, k, method=method, init=i),
            lambda x, i: rrae_fast.rank_reduce(x, k, method=method, init=i),
            extra=(init,),
        )
        return dataclasses.replace(prepared, init=np.asarray(init))

    return prepare


def _jnp_svd(algorithm=None):
    def prepare(case, a, t):
        def single(x):
            if algorithm is None:
                u, s, vt = jnp.linalg.svd(x, full_matrices=False)
            else:
                u, s, vt = jax.lax.linalg.svd(x, full_matrices=False, algorithm=algorithm)
            return _slice(u, s, vt, case.k)

        return _jax_prepare(case, a, t, single)

    return prepare


def _rraes_stable_svd(case, a, t):
    import RRAEs.config  # noqa: F401  (the package configures jax on import)
    from RRAEs.utilities import stable_SVD

    def single(x):
        return _slice(*stable_SVD(x), case.k)

    # stable_SVD takes one matrix: batches are always mapped.
    return _jax_prepare(dataclasses.replace(case, vmap=bool(case.batch)), a, t, single)


def _gemm_reference(case, a, t):
    aj = jnp.asarray(a)
    x = jnp.asarray(np.ascontiguousarray(np.swapaxes(a[..., : case.k, :], -1, -2)))
    compiled = jax.jit(lambda p, q: p @ q).lower(aj, x).compile()
    return Prepared(call=lambda: jax.block_until_ready(compiled(aj, x)), compiled=compiled)


# ---------------------------------------------------------------------------------------------
# Other libraries
# ---------------------------------------------------------------------------------------------


def _torch_device():
    import torch

    return "cuda" if on_gpu() and torch.cuda.is_available() else "cpu"


def _torch_prepare(case, a, t, factor):
    import torch

    device = _torch_device()
    ta = torch.from_numpy(np.array(a)).to(device)  # a writable copy
    tt = torch.from_numpy(np.array(t)).to(device)

    def sync(x):
        if device == "cuda":
            torch.cuda.synchronize()
        return x

    if case.mode == "fwd":

        def call():
            with torch.no_grad():
                return sync(factor(ta))

        return Prepared(
            call=call, factors=lambda out: tuple(x.detach().cpu().numpy() for x in out)
        )

    def call():
        x = ta.clone().requires_grad_(True)
        u, s, vt = factor(x)
        loss = (((u * s[..., None, :]) @ vt - tt) ** 2).sum()
        loss.backward()
        return sync(x.grad)

    return Prepared(call=call)


def _torch_svd_lowrank(case, a, t):
    import torch

    q = min(case.k + 10, min(case.m, case.n))

    def factor(x):
        u, s, v = torch.svd_lowrank(x, q=q, niter=2)
        return u[..., : case.k], s[..., : case.k], v[..., : case.k].transpose(-1, -2)

    return _torch_prepare(case, a, t, factor)


def _torch_linalg_svd(case, a, t):
    import torch

    def factor(x):
        u, s, vt = torch.linalg.svd(x, full_matrices=False)
        return _slice(u, s, vt, case.k)

    return _torch_prepare(case, a, t, factor)


def _numpy_prepare(case, a, single):
    """A NumPy-level peer: one call per batch member."""
    mats = a if case.batch else a[None]

    def call():
        out = [single(x) for x in mats]
        return tuple(np.stack(parts) for parts in zip(*out))

    def factors(out):
        return out if case.batch else tuple(x[0] for x in out)

    return Prepared(call=call, factors=factors)


def _sklearn_randomized_svd(case, a, t):
    from sklearn.utils.extmath import randomized_svd

    return _numpy_prepare(
        case, a, lambda x: randomized_svd(x, n_components=case.k, random_state=0)
    )


def _scipy_svds(case, a, t):
    from scipy.sparse.linalg import svds

    def single(x):
        u, s, vt = svds(x, k=case.k, random_state=0)
        order = np.argsort(s)[::-1]
        return u[:, order], s[order], vt[order]

    return _numpy_prepare(case, a, single)


def _cupy_svd(case, a, t):
    import cupy

    ca = cupy.asarray(a)

    def call():
        u, s, vt = cupy.linalg.svd(ca, full_matrices=False)
        cupy.cuda.Stream.null.synchronize()
        return _slice(u, s, vt, case.k)

    return Prepared(call=call, factors=lambda out: tuple(cupy.asnumpy(x) for x in out))


def _zero(case: Case) -> float:
    return 0.0


PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer("rrae_fast", _rrae_fast(), _zero),
        Peer("rrae_fast_warm", _rrae_fast(warm=True), _zero),
        Peer("rrae_fast_dense", _rrae_fast(method="dense"), _zero, k_dependent=False),
        Peer("jnp_svd", _jnp_svd(), _dense_flops, k_dependent=False),
        Peer(
            "jnp_svd_polar",
            _jnp_svd(jax.lax.linalg.SvdAlgorithm.POLAR),
            lambda c: 3 * _dense_flops(c),
            gpu_only=True,
            k_dependent=False,
        ),
        Peer(
            "rraes_stable_svd", _rraes_stable_svd, _dense_flops, module="RRAEs", k_dependent=False
        ),
        Peer(
            "torch_svd_lowrank",
            _torch_svd_lowrank,
            lambda c: _randomized_flops(c, niter=2),
            module="torch",
        ),
        Peer(
            "torch_linalg_svd", _torch_linalg_svd, _dense_flops, module="torch", k_dependent=False
        ),
        Peer(
            "sklearn_randomized_svd",
            _sklearn_randomized_svd,
            lambda c: _randomized_flops(c, niter=_sklearn_niter(c)),
            module="sklearn",
            differentiable=False,
        ),
        Peer("scipy_svds", _scipy_svds, _arpack_flops, differentiable=False, min_k_gap=1),
        Peer(
            "cupy_svd",
            _cupy_svd,
            _dense_flops,
            module="cupy",
            gpu_only=True,
            differentiable=False,
            k_dependent=False,
        ),
    ]
}

#: Not an SVD: the m×n × n×k product with XLA's dot, the unit of "GEMM-equivalents".
GEMM_REFERENCE = Peer("gemm_reference", _gemm_reference, _zero, differentiable=False)

OURS = ("rrae_fast", "rrae_fast_warm", "rrae_fast_dense")


def get(name: str) -> Peer:
    return GEMM_REFERENCE if name == GEMM_REFERENCE.name else PEERS[name]
