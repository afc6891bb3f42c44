"""scikit-learn's 8×8 hand-written digits (1797 images, grey levels 0..16), split at random."""

from __future__ import annotations

import numpy as np

from ._dataset import Affine, Dataset

PIXEL_MAX = 16.0  # the digits' grey levels are the integers 0..16


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The digits in a random train/test split.

    Args:
        test_fraction: share of the images put in the test set, in (0, 1); the test set has
            `round(test_fraction · 1797)` images.
        seed: seed of the NumPy permutation that assigns images to the splits.

    Returns:
        A `Dataset` with float32 images in [0, 1], `[n, 1, 8, 8]`, int32 labels `[n]` in
        `p_train` / `p_test`, and `scale` `Affine(0, 16)` for both splits.

    Raises:
        ImportError: when scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as err:
        raise ImportError(
            "the digits data set ships with scikit-learn, which rrae_fast installs only with "
            "its `digits` extra: pip install 'rrae_fast[digits]' (or scikit-learn itself)"
        ) from err
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, np.float32)[:, None] / np.float32(PIXEL_MAX)
    labels = np.asarray(bunch.target, np.int32)
    n = images.shape[0]
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction {test_fraction} leaves one of the splits empty")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    pixels = Affine(offset=0.0, factor=PIXEL_MAX)
    return Dataset(
        x_train=images[train],
        x_test=images[test],
        p_train=labels[train],
        p_test=labels[test],
        name="digits",
        scale={"train": pixels, "test": pixels},
    )
