"""Scalar normalisation of model inputs and outputs, fitted on the whole training array."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

KINDS = ("none", "minmax", "meanstd")


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """`x ↦ (x - offset) / factor` with scalar statistics of a training array.

    "minmax" uses `offset = min`, `factor = max - min`; "meanstd" uses `offset = mean`,
    `factor = std` (population std); "none" is the identity. The fields are plain floats, so
    the normaliser is hashable (usable as a static argument of `jax.jit`) and serialises to
    JSON through `to_dict` / `from_dict`.

    Attributes:
        kind: one of "none", "minmax", "meanstd".
        offset: subtracted from the input.
        factor: the input is divided by it after the subtraction; finite and non-zero.
    """

    kind: str = "none"
    offset: float = 0.0
    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "factor", float(self.factor))
        if not (math.isfinite(self.offset) and math.isfinite(self.factor)) or self.factor == 0:
            raise ValueError(
                f"{self.kind} normalisation needs a finite offset and a finite non-zero "
                f"factor, got offset={self.offset}, factor={self.factor}"
            )
        if self.kind == "none" and (self.offset, self.factor) != (0.0, 1.0):
            raise ValueError("kind 'none' requires offset 0 and factor 1")

    @classmethod
    def fit(cls, kind: str, x_train: Any) -> Normalizer:
        """Fits `kind` on all entries of `x_train` (NumPy or JAX array of any shape).

        Raises:
            ValueError: for an unknown kind, an empty or non-finite array, or degenerate data
                (max == min for "minmax", std == 0 for "meanstd").
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "none":
            return cls()
        x = np.asarray(x_train)
        if x.size == 0:
            raise ValueError("cannot fit a normaliser on an empty array")
        if kind == "minmax":
            lo, hi = float(np.min(x)), float(np.max(x))
            offset, factor = lo, hi - lo
        else:
            # float64 accumulation: a float32 sum over millions of pixels loses digits.
            offset = float(np.mean(x, dtype=np.float64))
            factor = float(np.std(x, dtype=np.float64))
        if not (math.isfinite(offset) and math.isfinite(factor)):
            raise ValueError(f"{kind} normalisation: the training data are not all finite")
        if factor == 0.0:
            raise ValueError(
                f"{kind} normalisation: the training data are constant ({offset}), "
                "so the scale is zero"
            )
        return cls(kind, offset, factor)

    def apply(self, x: Any) -> Any:
        """Normalises `x` (NumPy or JAX array, any shape): `(x - offset) / factor`."""
        if self.kind == "none":
            return x
        return (x - self.offset) / self.factor

    def invert(self, x: Any) -> Any:
        """Undoes `apply` on `x` (NumPy or JAX array, any shape): `x * factor + offset`."""
        if self.kind == "none":
            return x
        return x * self.factor + self.offset

    def to_dict(self) -> dict[str, str | float]:
        """The fields as a JSON-ready dict `{"kind", "offset", "factor"}`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        """The normaliser written by `to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"a Normalizer dict has the keys {sorted(names)}, got {sorted(d)}")
        return cls(**d)
