"""The scikit-learn digits loader: scaling, split sizes and a true partition."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from rrae_fast.data import load_digits


def rows(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample as one row (pixels, label), rows sorted: a multiset fingerprint."""
    table = np.concatenate([x.reshape(x.shape[0], -1), labels[:, None]], axis=1)
    return table[np.lexsort(table.T[::-1])]


def test_split_sizes_scaling_and_partition():
    ds = load_digits()
    assert ds.name == "digits"
    assert ds.x_train.shape == (1438, 1, 8, 8) and ds.x_test.shape == (359, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.p_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    ref = sklearn_digits()
    # Train and test together are exactly sklearn's images (÷16) with their labels, each once.
    got = rows(
        np.concatenate([ds.to_raw(ds.x_train, "train"), ds.to_raw(ds.x_test, "test")]),
        np.concatenate([ds.p_train, ds.p_test]).astype(np.float64),
    )
    np.testing.assert_array_equal(got, rows(ref.images, ref.target.astype(np.float64)))


def test_split_is_seeded():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(test_fraction=0.5, seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.p_train, b.p_train)
    assert c.x_test.shape[0] == 898 and c.x_train.shape[0] == 899
    assert not np.array_equal(a.x_test, c.x_test[: a.x_test.shape[0]])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1e-4, 0.9999])
def test_fraction_must_leave_both_splits_non_empty(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)


def test_missing_scikit_learn_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'rrae_fast\[digits\]'"):
        load_digits()
