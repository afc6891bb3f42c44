"""The Fréchet distance between two sets of features, and FID-LeNet between two image sets.

FID-LeNet stands in for the paper's FID, whose Inception-V3 was fine-tuned on each data set
with weights that cannot be obtained here: the features are those of a small LeNet trained on
the data set's labelled training split (`_lenet`). Its values are not comparable with the
paper's Table 2; only the ranking of models is.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _psd_eigenvalues(lam: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric positive semi-definite matrix with those at rounding level
    (below d·ε·λ_max, negative ones included) set to 0: their square roots would otherwise add
    √(ε)·λ_max each to the distance of a set with itself wherever a covariance is singular (dead
    features, fewer samples than features)."""
    cut = len(lam) * np.finfo(np.float64).eps * max(float(np.max(lam)), 0.0)
    return np.where(lam > cut, lam, 0.0)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix."""
    lam, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(_psd_eigenvalues(lam))) @ v.T


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets, in float64:
    `‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2})`.

    The trace term is the nuclear norm of `Σ_b^{1/2} Σ_a^{1/2}` (its singular values are the
    square roots of the eigenvalues of `Σ_a^{1/2} Σ_b Σ_a^{1/2}`), with the two square roots
    from symmetric eigendecompositions: the result is real, and a set against itself gives 0 to
    rounding relative to `tr Σ` even where the covariances are singular (fewer samples than
    features, dead features), where the eigenvalues of the product would lose half the digits.

    Args:
        feats_a: `[n_a, d]`, `n_a ≥ 2` (the covariances are the unbiased ones).
        feats_b: `[n_b, d]`, `n_b ≥ 2`.

    Returns:
        The distance, ≥ 0 up to rounding (0 for a set against itself).
    """
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [n, d] with the same d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each feature set needs at least 2 samples")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("features must be finite")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False)
    cov_b = np.cov(b, rowvar=False)
    product = _psd_sqrt(cov_b) @ _psd_sqrt(cov_a)
    trace_root = float(np.sum(np.linalg.svd(product, compute_uv=False)))
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
