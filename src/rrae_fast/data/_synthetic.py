"""The paper's synthetic data set: 64×64 Gaussian bumps whose centres move on a grid."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._dataset import Affine, Dataset

GRID_SIZE = 64  # pixels per side
SIGMA = 0.2  # the bump's standard deviation (the paper's "variance 0.2" is σ in the code)
CENTRE_RANGE = 0.5  # centres lie in [-0.5, 0.5]², half the image's [-1, 1]² extent
TEST_MODES = ("independent", "authors")
# Samples generated at once: bounds the float64 temporaries to 1024·64²·8 B = 32 MiB.
_CHUNK = 1024


def grid(size: int = GRID_SIZE) -> np.ndarray:
    """The pixel coordinates of one axis, `linspace(-1, 1, size)`, shape `[size]`."""
    return np.linspace(-1.0, 1.0, size)


def _profiles(c: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """The 1-D Gaussian factors `exp(-(g - c_i)² / 2σ²)` of the bumps, shape `[n, size]`."""
    return np.exp(-((grid(size)[None, :] - c[:, None]) ** 2) / (2 * sigma**2))


def gaussian_bumps(
    x0: np.ndarray, y0: np.ndarray, *, size: int = GRID_SIZE, sigma: float = SIGMA
) -> np.ndarray:
    """Amplitude-1 Gaussian bumps centred at `(x0[i], y0[i])`.

    Args:
        x0: horizontal centres, shape `[n]`.
        y0: vertical centres, shape `[n]`.
        size: pixels per side of the `[-1, 1]²` grid.
        sigma: standard deviation of the bump.

    Returns:
        float64 images of shape `[n, size, size]`; row index = y, column index = x.
    """
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    y0 = np.asarray(y0, dtype=np.float64).reshape(-1)
    if x0.shape != y0.shape:
        raise ValueError(f"x0 and y0 must have the same length, got {x0.size} and {y0.size}")
    gx = _profiles(x0, size, sigma)  # [n, size] over x
    gy = _profiles(y0, size, sigma)  # [n, size] over y
    return gy[:, :, None] * gx[:, None, :]


def grid_centres(train_size: int) -> np.ndarray:
    """The training bumps' centres, a flattened `xy` meshgrid of `⌊√train_size⌋²` points.

    Sample i has `x0 = v[i mod m]`, `y0 = v[i div m]` with `v = linspace(-0.5, 0.5, m)`,
    `m = ⌊√train_size⌋`. Past the `m²` grid points the index is clamped, so the last centre
    repeats for a non-square `train_size` (as JAX's out-of-range indexing does in the
    authors' code).

    Args:
        train_size: number of training samples, at least 1.

    Returns:
        float64 centres `(x0, y0)`, shape `[train_size, 2]`.
    """
    if train_size < 1:
        raise ValueError(f"train_size must be at least 1, got {train_size}")
    m = math.isqrt(train_size)
    v = np.linspace(-CENTRE_RANGE, CENTRE_RANGE, m)
    flat = np.minimum(np.arange(train_size), m * m - 1)
    return np.stack([v[flat % m], v[flat // m]], axis=-1)


def random_centres(test_size: int, test_mode: str = "independent", seed: int = 0) -> np.ndarray:
    """The test bumps' centres, uniform in `[-0.5, 0.5]` from `jax.random.PRNGKey(seed)`.

    Args:
        test_size: number of test samples, at least 1.
        test_mode: "authors" draws x0 and y0 with the same key, so that `x0 == y0` (every
            test bump on the diagonal, as the authors' code does); "independent" splits the
            key into one per coordinate.
        seed: the PRNG seed.

    Returns:
        float32 centres `(x0, y0)`, shape `[test_size, 2]`.
    """
    if test_mode not in TEST_MODES:
        raise ValueError(f"test_mode must be one of {TEST_MODES}, got {test_mode!r}")
    if test_size < 1:
        raise ValueError(f"test_size must be at least 1, got {test_size}")
    key = jax.random.PRNGKey(seed)
    kx, ky = (key, key) if test_mode == "authors" else tuple(jax.random.split(key))
    # float32 explicitly: the authors draw in JAX's default float32, and with x64 enabled the
    # default would be float64, whose draws differ.
    draw = lambda k: jax.random.uniform(
        k, (test_size,), dtype=jnp.float32, minval=-CENTRE_RANGE, maxval=CENTRE_RANGE
    )
    return np.stack([np.asarray(draw(kx)), np.asarray(draw(ky))], axis=-1)


def _bump_statistics(centres: np.ndarray) -> Affine:
    """The global scalar mean and std of `gaussian_bumps` at `centres` `[n, 2]`, exactly.

    Each bump is the outer product of two 1-D profiles, so its pixel sum is the product of
    the profiles' sums and its sum of squares the product of their sums of squares; no image
    needs to be formed.
    """
    gx = _profiles(np.asarray(centres[:, 0], np.float64), GRID_SIZE, SIGMA)
    gy = _profiles(np.asarray(centres[:, 1], np.float64), GRID_SIZE, SIGMA)
    count = centres.shape[0] * GRID_SIZE**2
    mean = np.sum(gx.sum(1) * gy.sum(1)) / count
    mean_square = np.sum((gx**2).sum(1) * (gy**2).sum(1)) / count
    return Affine(offset=mean, factor=math.sqrt(mean_square - mean**2))


def _standardised_bumps(centres: np.ndarray) -> tuple[np.ndarray, Affine]:
    """Bumps at `centres` `[n, 2]`, standardised by their own global mean and std.

    Returns:
        float32 images `[n, 1, 64, 64]` and the `Affine(mean, std)` that was applied.
    """
    affine = _bump_statistics(centres)
    out = np.empty((centres.shape[0], 1, GRID_SIZE, GRID_SIZE), np.float32)
    for start in range(0, centres.shape[0], _CHUNK):
        c = centres[start : start + _CHUNK]
        out[start : start + c.shape[0], 0] = affine.apply(gaussian_bumps(c[:, 0], c[:, 1]))
    return out, affine


def synthetic_bumps(
    train_size: int = 400, test_size: int = 10000, test_mode: str = "independent", seed: int = 0
) -> Dataset:
    """The paper's Sec. 6.1 data: Gaussian bumps on a training grid, random test centres.

    Each split is standardised with its own global scalar mean and std (the authors'
    behaviour), recorded in `Dataset.scale`; for 400 training samples the training mean and
    std are 0.060778 and 0.163545.

    Args:
        train_size: number of training bumps, on a `⌊√train_size⌋²` grid (see `grid_centres`).
        test_size: number of test bumps.
        test_mode: "independent" (x0, y0 drawn independently) or "authors" (the same draw for
            both, so every test bump lies on the diagonal); see `random_centres`.
        seed: the seed of the test centres' PRNG key.

    Returns:
        A `Dataset` with float32 images `x_train` `[train_size, 1, 64, 64]` and `x_test`
        `[test_size, 1, 64, 64]`, and float32 centres `(x0, y0)` in `p_train` `[train_size, 2]`
        and `p_test` `[test_size, 2]`.
    """
    p_train = grid_centres(train_size)
    p_test = random_centres(test_size, test_mode, seed)
    x_train, scale_train = _standardised_bumps(p_train)
    x_test, scale_test = _standardised_bumps(p_test)
    return Dataset(
        x_train=x_train,
        x_test=x_test,
        p_train=p_train.astype(np.float32),
        p_test=p_test,
        name="synthetic",
        scale={"train": scale_train, "test": scale_test},
    )
