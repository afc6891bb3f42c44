"""The Dataset and Affine containers: scaling, summary, validation."""

from __future__ import annotations

import numpy as np
import pytest

from rrae_fast.data import Affine, Dataset


def small_dataset(**overrides) -> Dataset:
    fields = dict(
        x_train=np.zeros((3, 1, 2, 2), np.float32),
        x_test=np.zeros((2, 1, 2, 2), np.float32),
        p_train=np.arange(3),
        p_test=None,
        name="tiny",
        scale={"train": Affine(1.0, 2.0), "test": Affine(-1.0, 4.0)},
    )
    return Dataset(**{**fields, **overrides})


def test_affine_maps_and_validation():
    a = Affine(offset=2.0, factor=4.0)
    raw = np.array([2.0, 6.0, -2.0])
    np.testing.assert_array_equal(a.apply(raw), [0.0, 1.0, -1.0])
    np.testing.assert_array_equal(a.invert(a.apply(raw)), raw)
    assert Affine() == Affine(0, 1) and isinstance(Affine(0, 1).factor, float)
    with pytest.raises(ValueError, match="non-zero"):
        Affine(0.0, 0.0)
    with pytest.raises(ValueError, match="offset must be finite"):
        Affine(float("nan"), 1.0)


def test_dataset_scaling_and_summary():
    ds = small_dataset()
    assert ds.sample_shape == (1, 2, 2)
    np.testing.assert_array_equal(ds.to_raw(np.ones(2), "train"), [3.0, 3.0])
    np.testing.assert_array_equal(ds.to_raw(np.ones(2)), [3.0, 3.0])  # test: 1*4 - 1
    assert ds.info() == (
        "tiny: train (3, 1, 2, 2) float32 offset=1 factor=2; "
        "test (2, 1, 2, 2) float32 offset=-1 factor=4"
    )
    with pytest.raises(TypeError):
        ds.scale["train"] = Affine()
    with pytest.raises(ValueError, match="split must be one of"):
        ds.to_raw(np.ones(2), "val")


def test_dataset_validation():
    with pytest.raises(ValueError, match="keys"):
        small_dataset(scale={"train": Affine()})
    with pytest.raises(ValueError, match="differ in shape"):
        small_dataset(x_test=np.zeros((2, 1, 3, 2), np.float32))
    with pytest.raises(ValueError, match="p_train has 2 rows for 3 samples"):
        small_dataset(p_train=np.arange(2))
