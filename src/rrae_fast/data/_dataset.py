"""The container every loader returns: train/test arrays, their parameters and their scaling."""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Affine:
    """The scalar affine map a loader applied to raw values: `x = (raw - offset) / factor`.

    Standardisation is `Affine(mean, std)`, scaling bytes to [0, 1] is `Affine(0, 255)`.

    Attributes:
        offset: subtracted from the raw values.
        factor: the raw values are divided by it after the subtraction; finite and non-zero.
    """

    offset: float = 0.0
    factor: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "factor", float(self.factor))
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be finite, got {self.offset}")
        if not math.isfinite(self.factor) or self.factor == 0.0:
            raise ValueError(f"factor must be finite and non-zero, got {self.factor}")

    def apply(self, raw: Any) -> Any:
        """Raw values → returned values, `(raw - offset) / factor`; any array shape."""
        return (raw - self.offset) / self.factor

    def invert(self, x: Any) -> Any:
        """Returned values → raw values, `x * factor + offset`; any array shape."""
        return x * self.factor + self.offset


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair with samples in the first axis.

    Attributes:
        x_train: float32 training samples, `[n_train, ...]` (images `[n_train, c, h, w]`).
        x_test: float32 test samples, `[n_test, ...]` with the same per-sample shape.
        p_train: per-sample parameters `[n_train, ...]` (bump centres `[n_train, 2]`,
            int32 labels `[n_train]`), or None.
        p_test: the same for the test set, `[n_test, ...]`, or None.
        name: the data set's name.
        scale: the `Affine` map applied to each split's raw values, keyed by "train" and
            "test"; `scale[split].invert(x)` gives the raw values back.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    p_train: np.ndarray | None
    p_test: np.ndarray | None
    name: str
    scale: Mapping[str, Affine]

    def __post_init__(self) -> None:
        if set(self.scale) != set(SPLITS):
            raise ValueError(f"scale must have exactly the keys {SPLITS}, got {tuple(self.scale)}")
        # A read-only view, so that the frozen data set cannot be rescaled after creation.
        object.__setattr__(self, "scale", types.MappingProxyType(dict(self.scale)))
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test samples differ in shape: {self.x_train.shape[1:]} "
                f"vs {self.x_test.shape[1:]}"
            )
        pairs = (("train", self.x_train, self.p_train), ("test", self.x_test, self.p_test))
        for split, x, p in pairs:
            if p is not None and p.shape[0] != x.shape[0]:
                raise ValueError(
                    f"p_{split} has {p.shape[0]} rows for {x.shape[0]} samples in x_{split}"
                )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. `(c, h, w)`."""
        return tuple(self.x_train.shape[1:])

    def to_raw(self, x: Any, split: str = "test") -> Any:
        """Undoes the loader's scaling of `split` ("train" or "test") on `x` of any shape."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.scale[split].invert(x)

    def info(self) -> str:
        """A one-line summary: name, and each split's shape, dtype and `Affine` scaling."""
        parts = []
        for split, x in (("train", self.x_train), ("test", self.x_test)):
            a = self.scale[split]
            parts.append(
                f"{split} {tuple(x.shape)} {x.dtype} offset={a.offset:.6g} factor={a.factor:.6g}"
            )
        return f"{self.name}: " + "; ".join(parts)
