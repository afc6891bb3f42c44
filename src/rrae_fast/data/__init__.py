"""Data sets, batch-first: images `[n, c, h, w]`, float32, with their scaling recorded."""

from ._dataset import Affine as Affine
from ._dataset import Dataset as Dataset
from ._digits import load_digits as load_digits
from ._fetch import FetchError as FetchError
from ._fetch import cache_root as cache_root
from ._fetch import fetch as fetch
from ._fetch import verify as verify
from ._idx import load_fashion_mnist as load_fashion_mnist
from ._idx import load_idx_dataset as load_idx_dataset
from ._idx import load_mnist as load_mnist
from ._idx import read_idx as read_idx
from ._normalize import Normalizer as Normalizer
from ._registry import DATASETS as DATASETS
from ._registry import load_dataset as load_dataset
from ._synthetic import gaussian_bumps as gaussian_bumps
from ._synthetic import grid as grid
from ._synthetic import grid_centres as grid_centres
from ._synthetic import random_centres as random_centres
from ._synthetic import synthetic_bumps as synthetic_bumps

__all__ = [
    "DATASETS",
    "Affine",
    "Dataset",
    "FetchError",
    "Normalizer",
    "cache_root",
    "fetch",
    "gaussian_bumps",
    "grid",
    "grid_centres",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "random_centres",
    "read_idx",
    "synthetic_bumps",
    "verify",
]
