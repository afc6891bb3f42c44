"""load_dataset: dispatch by name and its errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from rrae_fast.data import DATASETS, load_dataset


def write_idx(directory, rng) -> None:
    directory.mkdir()
    for split, n in (("train", 4), ("t10k", 2)):
        images = rng.integers(0, 256, (n, 2, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        header = struct.pack(">IIII", 2051, n, 2, 3)
        (directory / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header + images.tobytes())
        )
        (directory / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes()
        )


def test_names_dispatch(tmp_path, rng):
    assert DATASETS == ("synthetic", "mnist", "fashion_mnist", "digits")
    ds = load_dataset("synthetic", train_size=9, test_size=5, test_mode="authors")
    assert ds.name == "synthetic" and ds.x_train.shape == (9, 1, 64, 64)
    np.testing.assert_array_equal(ds.p_test[:, 0], ds.p_test[:, 1])
    assert load_dataset("digits", test_fraction=0.5).x_test.shape == (898, 1, 8, 8)
    write_idx(tmp_path / "idx", rng)
    for name in ("mnist", "fashion_mnist"):
        ds = load_dataset(name, tmp_path / "idx")
        assert ds.name == name and ds.x_train.shape == (4, 1, 2, 3) and ds.p_test.shape == (2,)


def test_name_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"'cifar'.*'synthetic', 'mnist', 'fashion_mnist'"):
        load_dataset("cifar")
    monkeypatch.setenv("RRAE_FAST_DATA", str(tmp_path / "empty-cache"))
    for name in ("mnist", "fashion_mnist"):  # without a directory: the cache, empty here
        command = f"rrae-fast data fetch {name.replace('_', '-')}"
        with pytest.raises(FileNotFoundError, match=f"{name}: .*lacks .*`{command}`"):
            load_dataset(name)
    with pytest.raises(ValueError, match="reads no directory"):
        load_dataset("digits", tmp_path)
