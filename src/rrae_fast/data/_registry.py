"""Loading a data set by name."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._dataset import Dataset
from ._digits import load_digits
from ._idx import load_fashion_mnist, load_mnist
from ._synthetic import synthetic_bumps

DATASETS = ("synthetic", "mnist", "fashion_mnist", "digits")
_FROM_FILES: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
}
_BUILT_IN: dict[str, Callable[..., Dataset]] = {
    "synthetic": synthetic_bumps,
    "digits": load_digits,
}


def load_dataset(name: str, directory: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
    """Loads the data set `name`.

    Args:
        name: "synthetic" (`synthetic_bumps`), "digits" (`load_digits`), "mnist" or
            "fashion_mnist" (`load_mnist` / `load_fashion_mnist`).
        directory: the folder of the IDX files of "mnist" and "fashion_mnist" (default: the
            cache `rrae-fast data fetch` fills); not accepted by the others, which need no
            files.
        **kwargs: passed to the loader (e.g. `train_size`, `test_mode` for "synthetic").

    Returns:
        The loader's `Dataset`.
    """
    if name in _FROM_FILES:
        return _FROM_FILES[name](directory, **kwargs)
    if name in _BUILT_IN:
        if directory is not None:
            raise ValueError(f"{name} is generated or built in and reads no directory")
        return _BUILT_IN[name](**kwargs)
    raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
