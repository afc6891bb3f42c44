"""The one module that touches the compiled extensions.

Imports ``_cpu`` (always built), hands it SciPy's LAPACK entry points, and registers its XLA FFI
targets with JAX once. ``_cuda`` is optional (built with ``RRAE_FAST_ENABLE_CUDA=1``): when it
imports (its cuBLAS/cuSOLVER libraries load), the same target names are registered for the CUDA
platform. Importing it needs no GPU.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import jax
import numpy as np
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack

from . import _cpu

TRUNCATED_SVD_TARGET = "rrae_fast_truncated_svd"
SHIFTED_GRAM_SOLVE_TARGET = "rrae_fast_shifted_gram_solve"  # CPU only

_BLAS_ROUTINES = ("gemm", "syrk", "trsm", "trmm")
_LAPACK_ROUTINES = ("gesdd", "gesvd", "potrf", "geqrf", "orgqr", "syevd", "trcon")


def _lapack_capsules() -> dict[str, object]:
    capsules = {}
    for module, routines in ((_cython_blas, _BLAS_ROUTINES), (_cython_lapack, _LAPACK_ROUTINES)):
        for routine in routines:
            for prefix in "sd":
                capsules[prefix + routine] = module.__pyx_capi__[prefix + routine]
    # The kernels call LAPACK with 32-bit integers. SciPy's Cython signatures spell the integer
    # type out; refuse a 64-bit-integer LAPACK rather than pass it wrong-sized arguments.
    signature = repr(capsules["sgesdd"])
    if "int *" not in signature or "int64" in signature:
        raise ImportError(
            "rrae_fast needs SciPy's LAPACK with 32-bit integers (LP64); found " + signature
        )
    return capsules


_HAS_THREAD_CONTROL: bool = _cpu.set_lapack(_lapack_capsules())

_CODES = _cpu.codes()
#: The kernels' method codes by name (csrc/common/svd_types.h, exported by the module).
METHOD_CODES: dict[str, int] = dict(_CODES["method"])
#: Path names by their code in a kernel's ``info`` output.
PATHS: tuple[str, ...] = tuple(sorted(_CODES["path"], key=_CODES["path"].__getitem__))
assert [_CODES["path"][p] for p in PATHS] == list(range(len(PATHS))), _CODES["path"]

for _name, _capsule in _cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")


def blas_thread_control() -> bool:
    """Whether the BLAS in use lets the kernel pin one BLAS thread per batch member."""
    return _HAS_THREAD_CONTROL


def prefer_iterative(m: int, n: int, k: int) -> bool:
    """Whether the kernel's automatic method iterates for an m x n matrix and rank k."""
    return bool(_cpu.prefer_iterative(m, n, k))


def prefer_gram(m: int, n: int, k: int) -> bool:
    """Whether the kernel's automatic method takes the Gram path (float32 m x n, rank k)."""
    return bool(_cpu.prefer_gram(m, n, k))


def release_workspace() -> None:
    """Free the workspace that the CPU kernel keeps between calls.

    The iterative and Gram paths keep their buffers (one set per thread that ran them, up to
    256 MiB in all per dtype) so that repeated calls do not fault fresh pages in each time; the
    next call rebuilds them.
    """
    _cpu.release_workspace()


_cuda: ModuleType | None = None
if importlib.util.find_spec(f"{__package__}._cuda") is None:
    _CUDA_STATUS = "no CUDA module: this build has none (build with RRAE_FAST_ENABLE_CUDA=1)"
else:  # pragma: no cover - needs a CUDA build
    try:
        from . import _cuda as _cuda_module
    except ImportError as _error:  # its CUDA libraries cannot be found
        _CUDA_STATUS = f"no CUDA module: it is built but does not import ({_error})"
    else:
        _cuda = _cuda_module
        for _name, _capsule in _cuda_module.registrations().items():
            jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")
        # The devices are counted when first asked (cuda_status), not here: counting
        # initialises CUDA, which a process forked after the import could then not use.
        _CUDA_STATUS = "CUDA module loaded"


def cuda_path(m: int, n: int, max_k: int, dtype, method: str) -> str | None:
    """The path the CUDA kernel takes for this shape, dtype and method on the current device
    (its own policy, ``ChoosePath``): "jacobi", "dense" or "iterative"; None without the CUDA
    module."""
    if _cuda is None:
        return None
    code = _cuda.choose_path(m, n, max_k, np.dtype(dtype).itemsize, METHOD_CODES[method])
    return PATHS[code]  # pragma: no cover - needs a CUDA build


def cuda_iterates(m: int, n: int, max_k: int, dtype, method: str) -> bool:
    """Whether the CUDA kernel takes its iterative path (see `cuda_path`)."""
    return cuda_path(m, n, max_k, dtype, method) == "iterative"


def cuda_available() -> bool:
    """Whether the CUDA module was built and loaded (a GPU may still be absent)."""
    return _cuda is not None


@functools.cache
def cuda_status() -> str:
    """One line on the CUDA module: loaded (and the devices it sees), or why not."""
    if _cuda is None:
        return _CUDA_STATUS
    return f"{_CUDA_STATUS}; {_cuda.device_count()} CUDA device(s) visible"  # pragma: no cover
