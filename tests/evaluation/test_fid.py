"""The Fréchet distance and FID-LeNet: the formula against SciPy, its behaviour, the network's
gate and its frozen, hash-checked storage."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from helpers import labelled_squares
from rrae_fast.evaluation import (
    fid,
    frechet_distance,
    lenet_features,
    load_lenet,
    save_lenet,
    train_lenet,
)
from rrae_fast.evaluation._lenet import GateNotPassed, lenet_paths


def _gaussian(rng, n, d, scale=1.0, shift=0.0):
    mix = rng.standard_normal((d, d)) * scale
    return rng.standard_normal((n, d)) @ mix + shift


def test_agrees_with_scipys_sqrtm_on_random_gaussians(rng):
    for d in (3, 16):
        a, b = _gaussian(rng, 400, d), _gaussian(rng, 300, d, 1.5, 0.7)
        mu = a.mean(0) - b.mean(0)
        ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = scipy.linalg.sqrtm(ca @ cb).real
        expected = mu @ mu + np.trace(ca + cb - 2 * root)
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_a_set_against_itself_is_zero_and_noise_makes_it_grow(rng):
    a = _gaussian(rng, 500, 10)
    assert abs(frechet_distance(a, a)) < 1e-9 * np.trace(np.cov(a, rowvar=False))
    noise = rng.standard_normal(a.shape)
    distances = [frechet_distance(a, a + s * noise) for s in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert distances[0] == pytest.approx(0, abs=1e-9)
    assert all(x < y for x, y in itertools.pairwise(distances)), distances


def test_singular_covariances_fewer_samples_than_features(rng):
    """Rank-deficient covariances (n < d, dead features) give a real, finite distance."""
    a = np.concatenate([rng.standard_normal((5, 8)), np.zeros((5, 4))], axis=1)
    b = a + 0.5
    assert frechet_distance(a, b) == pytest.approx(12 * 0.25 + 0, abs=1e-9)  # a shift only


def test_bad_input():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    x, y = labelled_squares(rng, 12)
    xt, yt = labelled_squares(rng, 3)
    return train_lenet(x, y, xt, yt, gate=0.9, epochs=4, batch_size=20, say=lambda s: None), xt


def test_the_gate_is_enforced():
    rng = np.random.default_rng(1)
    x, y = labelled_squares(rng, 2)
    with pytest.raises(GateNotPassed, match=r"below the gate 1\.01"):
        train_lenet(x, y, x, y, gate=1.01, epochs=1, batch_size=10, say=lambda s: None)


def test_frozen_weights_round_trip_and_are_checked(trained, tmp_path):
    net, images = trained
    assert net.accuracy >= 0.9
    path = save_lenet("mnist", net, {"epochs": 4}, root=tmp_path)
    back = load_lenet("mnist", root=tmp_path)
    assert back.sha256 == net.sha256 and back.accuracy == net.accuracy
    np.testing.assert_array_equal(
        lenet_features(back.net, images), lenet_features(net.net, images)
    )
    assert lenet_features(net.net, images).shape == (len(images), 256)
    # More images than features: Σ full rank.
    many, _ = labelled_squares(np.random.default_rng(2), 30)
    spread = np.trace(np.cov(lenet_features(net.net, many), rowvar=False))
    assert abs(fid(many, many, dataset="mnist", root=tmp_path)) < 1e-9 * spread
    shifted = np.clip(many + 0.3, 0, 1)
    assert fid(many, shifted, dataset="mnist", root=tmp_path) > 1e-3 * spread
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"not the network its record.*data lenet mnist"):
        load_lenet("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="`rrae-fast data lenet fashion-mnist`"):
        load_lenet("fashion_mnist", root=tmp_path)
    assert lenet_paths("fashion-mnist", tmp_path)[0].name == "fashion_mnist.eqx"


def test_train_and_save_lenet_stores_only_a_network_that_passes_its_gate(tmp_path, monkeypatch):
    from rrae_fast.data import Affine, Dataset
    from rrae_fast.evaluation import ACCURACY_GATE
    from rrae_fast.evaluation._lenet import train_and_save_lenet

    monkeypatch.setenv("RRAE_FAST_DATA", str(tmp_path))
    rng = np.random.default_rng(4)
    (x, y), (xt, yt) = labelled_squares(rng, 30), labelled_squares(rng, 3)
    pixels = Affine(offset=0.0, factor=255.0)
    data = Dataset(x, xt, y, yt, "mnist", {"train": pixels, "test": pixels})
    monkeypatch.setitem(ACCURACY_GATE, "mnist", 1.01)
    with pytest.raises(GateNotPassed):
        train_and_save_lenet("mnist", data, say=lambda s: None)
    assert not lenet_paths("mnist")[0].exists()
    monkeypatch.setitem(ACCURACY_GATE, "mnist", 0.0)
    trained, path = train_and_save_lenet("mnist", data, say=lambda s: None)
    assert path == lenet_paths("mnist")[0] and load_lenet("mnist").sha256 == trained.sha256
    unlabelled = Dataset(x, xt, None, None, "mnist", {"train": pixels, "test": pixels})
    with pytest.raises(ValueError, match="needs the labels"):
        train_and_save_lenet("mnist", unlabelled)
