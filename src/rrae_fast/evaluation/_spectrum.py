"""The normalised singular values of a latent matrix (the rank a model actually uses)."""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike


def normalized_spectrum(codes: ArrayLike) -> np.ndarray:
    """Singular values of the whole code matrix divided by the largest, in float64.

    Args:
        codes: `[n, L]`, one code per row (e.g. the full latents `E(x)` of the training set).

    Returns:
        `σ_i/σ_1`, shape `[min(n, L)]`, non-increasing, first entry 1.
    """
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) == 0:
        raise ValueError(f"codes must have shape [n, L] with n, L ≥ 1, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("codes must be finite")
    s = np.linalg.svd(z, compute_uv=False)
    if s[0] == 0.0:
        raise ValueError("the code matrix is zero: its spectrum cannot be normalised")
    return s / s[0]


def effective_rank(spectrum: ArrayLike, tol: float) -> int:
    """Number of singular values above `tol` times the largest.

    Args:
        spectrum: `[r]` non-negative singular values (normalised or not).
        tol: relative threshold in `[0, 1)`; e.g. near the working precision for the
            numerical rank, or 1e-2 for the number of significant directions.

    Returns:
        `#{i : σ_i > tol·max σ}`.
    """
    s = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if s.size == 0 or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("spectrum must be a non-empty array of finite non-negative values")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must lie in [0, 1), got {tol}")
    return int(np.count_nonzero(s > tol * s.max()))
