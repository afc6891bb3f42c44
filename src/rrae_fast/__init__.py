"""rrae_fast: truncated SVD for JAX on native kernels, with exact, stable gradients."""

from importlib.metadata import PackageNotFoundError, version

from .svd import (
    Gradient as Gradient,
)
from .svd import (
    Method as Method,
)
from .svd import (
    cuda_status as cuda_status,
)
from .svd import (
    diagnose as diagnose,
)
from .svd import (
    rank_reduce as rank_reduce,
)
from .svd import (
    release_workspace as release_workspace,
)
from .svd import (
    truncated_svd as truncated_svd,
)

try:
    __version__ = version("rrae_fast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "Gradient",
    "Method",
    "__version__",
    "cuda_status",
    "diagnose",
    "rank_reduce",
    "release_workspace",
    "truncated_svd",
]
