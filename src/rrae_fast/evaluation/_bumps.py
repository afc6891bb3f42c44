"""The bump-fit score of generated synthetic images (SPEC §6.3).

Each generated image `G` (de-standardised) is compared with the closest amplitude-1, σ = 0.2
Gaussian bump `g_c` of the data set: `c* = argmin_c ‖G − g_c‖²` over centres `c ∈ [−1, 1]²`,
searched exhaustively on a 401×401 grid and refined by 3 Gauss–Newton steps; the score is
`100·‖G − g_c*‖_F/‖g_c*‖_F`.

The template is separable, `g_c[y, x] = g(y₀)[y]·g(x₀)[x]` with `g(t)` the 1-D profile over
the pixel grid, so `⟨G, g_c⟩ = g(y₀)ᵀ G g(x₀)` and `‖g_c‖² = ‖g(y₀)‖²·‖g(x₀)‖²` (exact, also
near the border where part of the bump leaves the image).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike

from ..data._synthetic import SIGMA, gaussian_bumps, grid

GRID_POINTS = 401  # centres per axis: step 2/400 = 0.005 over [-1, 1]
NEWTON_STEPS = 3
_CHUNK = 16  # images per block of the grid search: 16×401×401 float64 scores ≈ 20 MB


class BumpFit(NamedTuple):
    """Per-image result of `fit_bumps`.

    Attributes:
        errors: `[n]` errors in percent; `inf` for images with non-finite pixels.
        centres: `[n, 2]` fitted centres `(x₀, y₀)` in `[−1, 1]²`; NaN for non-finite images.
    """

    errors: np.ndarray
    centres: np.ndarray


def _profiles(c: np.ndarray, size: int) -> np.ndarray:
    """The 1-D template factors `g(c_i)` over the pixel grid, shape `[m, size]`.

    Row 0 of a bump centred on the first grid row (y₀ = −1 = grid[0]) is the x-profile
    exactly, since its y-factor there is exp(0) = 1.
    """
    rows = gaussian_bumps(c, np.full(c.shape, grid(size)[0]), size=size, sigma=SIGMA)
    return rows[:, 0, :]


def _grid_search(images: np.ndarray, centres_1d: np.ndarray) -> np.ndarray:
    """Centres `[n, 2]` (x₀, y₀) on the grid `centres_1d²` minimising `‖G − g_c‖²`."""
    prof = _profiles(centres_1d, images.shape[-1])  # [m, s], the same for x and y
    sq = np.sum(prof**2, axis=1)  # [m], ‖g(t)‖²
    # ‖G − g_c‖² − ‖G‖² = ‖g(y₀)‖²‖g(x₀)‖² − 2 g(y₀)ᵀ G g(x₀); ‖G‖² does not depend on c.
    norm_sq = sq[:, None] * sq[None, :]  # [m (y), m (x)]
    best = np.empty(images.shape[0], dtype=np.int64)
    for start in range(0, images.shape[0], _CHUNK):
        block = images[start : start + _CHUNK]  # [b, s, s]
        inner = prof @ block @ prof.T  # [b, m (y), m (x)]
        best[start : start + _CHUNK] = np.argmin(
            (norm_sq - 2.0 * inner).reshape(block.shape[0], -1), axis=1
        )
    iy, ix = np.divmod(best, centres_1d.size)
    return np.stack([centres_1d[ix], centres_1d[iy]], axis=1)


def _gauss_newton_step(images: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One Gauss–Newton step on `‖G − g_c‖²` for every image, clipped to `[−1, 1]²`."""
    size = images.shape[-1]
    pix = grid(size)[None, :]
    x0, y0 = centres[:, 0], centres[:, 1]
    gx, gy = _profiles(x0, size), _profiles(y0, size)  # [n, s]
    dgx = gx * (pix - x0[:, None]) / SIGMA**2  # ∂g(x₀)/∂x₀
    dgy = gy * (pix - y0[:, None]) / SIGMA**2

    def dot(a, b):
        return np.sum(a * b, axis=1)

    def bilinear(u, v):  # uᵀ G v per image
        return np.einsum("ny,nyx,nx->n", u, images, v)

    # Jacobian columns: ∂g_c/∂x₀ = g(y₀) ⊗ g'(x₀), ∂g_c/∂y₀ = g'(y₀) ⊗ g(x₀).
    a11 = dot(gy, gy) * dot(dgx, dgx)
    a22 = dot(dgy, dgy) * dot(gx, gx)
    a12 = dot(gy, dgy) * dot(gx, dgx)
    # Jᵀ(G − g_c), with ⟨g_c, ∂g_c/∂x₀⟩ = ‖g(y₀)‖²·g(x₀)ᵀg'(x₀) and likewise for y₀.
    b1 = bilinear(gy, dgx) - dot(gy, gy) * dot(gx, dgx)
    b2 = bilinear(dgy, gx) - dot(dgy, gy) * dot(gx, gx)
    jtj = np.stack([np.stack([a11, a12], -1), np.stack([a12, a22], -1)], -2)  # [n, 2, 2]
    step = np.linalg.solve(jtj, np.stack([b1, b2], -1)[..., None])[..., 0]
    return np.clip(centres + step, -1.0, 1.0)


def fit_bumps(
    images: ArrayLike,
    mean: float,
    std: float,
    *,
    grid_points: int = GRID_POINTS,
    newton_steps: int = NEWTON_STEPS,
) -> BumpFit:
    """Fits the closest data-set bump to each generated image and scores the misfit.

    Args:
        images: generated images on the standardised scale, `[n, 1, s, s]` or `[n, s, s]`
            (s = 64 for the synthetic data); row index = y, column index = x.
        mean: the scalar mean used to standardise the training set.
        std: the scalar standard deviation used to standardise it (> 0); the fit uses
            `G = images·std + mean`.
        grid_points: centres per axis of the exhaustive search over `[−1, 1]`.
        newton_steps: Gauss–Newton refinements from the best grid centre.

    Returns:
        `BumpFit(errors [n], centres [n, 2])`, errors `100·‖G − g_c*‖_F/‖g_c*‖_F` in percent.
    """
    g = np.asarray(images, dtype=np.float64)
    if g.ndim == 4:
        if g.shape[1] != 1:
            raise ValueError(f"expected one channel, got images of shape {g.shape}")
        g = g[:, 0]
    if g.ndim != 3 or g.shape[1] != g.shape[2] or g.shape[0] < 1:
        raise ValueError(f"expected images [n, 1, s, s] or [n, s, s], got {np.shape(images)}")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"std must be positive and finite, got {std}")
    if grid_points < 2 or newton_steps < 0:
        raise ValueError("grid_points must be ≥ 2 and newton_steps ≥ 0")
    finite = np.all(np.isfinite(g), axis=(1, 2))
    g = np.where(finite[:, None, None], g * std + mean, 0.0)
    centres = _grid_search(g, np.linspace(-1.0, 1.0, grid_points))
    for _ in range(newton_steps):
        centres = _gauss_newton_step(g, centres)
    fitted = gaussian_bumps(centres[:, 0], centres[:, 1], size=g.shape[-1], sigma=SIGMA)
    errors = 100.0 * np.sqrt(
        np.sum((g - fitted) ** 2, axis=(1, 2)) / np.sum(fitted**2, axis=(1, 2))
    )
    errors[~finite] = np.inf
    centres[~finite] = np.nan
    return BumpFit(errors=errors, centres=centres)


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and (population, ddof = 0) standard deviation, as reported in "mean ± std".

    Args:
        values: `[n]` numbers, e.g. `fit_bumps(...).errors`.

    Returns:
        `(mean, std)` as Python floats.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no values to summarise")
    return float(v.mean()), float(v.std())
