"""The truncated SVD as a JAX op: native kernels (CPU, CUDA) behind XLA FFI custom calls, with
exact, stable derivatives that never need the full SVD where the forward pass does not.

Knows nothing of the models built on it. Layout, leaves first: ``_native`` (the compiled
modules and their policies), ``_spectrum`` (the stabilisation thresholds), ``_forward`` (the
forward pass on each platform), ``_formulas`` (closed-form derivative rules), ``_solves`` (the
coupling with the discarded spectrum by solves), ``_plan`` (which route a derivative takes),
``_rules`` (the ``custom_jvp`` ops, one function per route), ``_checks`` (input validation) and
``_ops`` (the public functions).
"""

from ._native import cuda_status as cuda_status
from ._native import release_workspace as release_workspace
from ._ops import Gradient as Gradient
from ._ops import Method as Method
from ._ops import diagnose as diagnose
from ._ops import rank_reduce as rank_reduce
from ._ops import truncated_svd as truncated_svd

__all__ = [
    "Gradient",
    "Method",
    "cuda_status",
    "diagnose",
    "rank_reduce",
    "release_workspace",
    "truncated_svd",
]
