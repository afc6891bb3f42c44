"""The synthetic bumps against the authors' construction (SPEC §6.1)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.data import gaussian_bumps, grid, grid_centres, random_centres, synthetic_bumps

# The first test centres the authors' code draws: jax.random.uniform(PRNGKey(0), (n,), -0.5,
# 0.5) in JAX's default float32 (x64 disabled), recorded from such a run.
AUTHORS_FIRST_X0 = np.array([0.447667, 0.47857988, -0.16770852, -0.03133154, 0.06988871])


def authors_bumps(x0, y0):
    """The authors' formula on an `xy` meshgrid, `[n, 64, 64]` float64."""
    X, Y = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64))
    x0 = np.asarray(x0, np.float64)[:, None, None]
    y0 = np.asarray(y0, np.float64)[:, None, None]
    return np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * 0.2**2))


@pytest.fixture(scope="module")
def default_set():
    return synthetic_bumps()


def test_default_shapes_and_dtypes(default_set):
    ds = default_set
    assert ds.name == "synthetic"
    assert ds.x_train.shape == (400, 1, 64, 64) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (10000, 1, 64, 64) and ds.x_test.dtype == np.float32
    assert ds.p_train.shape == (400, 2) and ds.p_train.dtype == np.float32
    assert ds.p_test.shape == (10000, 2) and ds.p_test.dtype == np.float32
    assert ds.sample_shape == (1, 64, 64)
    # The default test mode is "independent": the centres are not on the diagonal.
    assert np.mean(ds.p_test[:, 0] == ds.p_test[:, 1]) < 0.01


def test_training_statistics_match_the_authors(default_set):
    scale = default_set.scale["train"]
    assert scale.offset == pytest.approx(0.060778, abs=5e-7)
    assert scale.factor == pytest.approx(0.163545, abs=5e-7)
    x = default_set.x_train.astype(np.float64)
    assert np.mean(x) == pytest.approx(0.0, abs=1e-6)
    assert np.std(x) == pytest.approx(1.0, abs=1e-6)


def test_each_split_standardised_by_its_own_statistics():
    # More test samples than one generation chunk (1024), so chunk boundaries are exercised.
    ds = synthetic_bumps(train_size=400, test_size=1100, seed=5)
    raw = authors_bumps(ds.p_test[:, 0], ds.p_test[:, 1])
    assert ds.scale["test"].offset == pytest.approx(np.mean(raw), rel=1e-12)
    assert ds.scale["test"].factor == pytest.approx(np.std(raw), rel=1e-12)
    assert ds.scale["test"].offset != pytest.approx(ds.scale["train"].offset, rel=1e-4)
    np.testing.assert_allclose(ds.x_test[:, 0], (raw - np.mean(raw)) / np.std(raw), atol=1e-5)


def test_train_centres_follow_the_flattened_meshgrid():
    v = np.linspace(-0.5, 0.5, 20)
    mx, my = np.meshgrid(v, v)
    expected = np.stack([mx.ravel(), my.ravel()], axis=-1)
    np.testing.assert_array_equal(grid_centres(400), expected)
    c = grid_centres(400)
    np.testing.assert_array_equal(c[:3], [[-0.5, -0.5], [v[1], -0.5], [v[2], -0.5]])
    np.testing.assert_array_equal(c[20], [-0.5, v[1]])


@pytest.mark.parametrize("train_size", [1, 10, 24])
def test_non_square_train_size_clamps_like_jax(train_size):
    m = int(np.sqrt(train_size))
    v = jnp.linspace(-0.5, 0.5, m, dtype=jnp.float64)
    mx, my = jnp.meshgrid(v, v)
    idx = jnp.arange(train_size)
    # JAX's gather clamps out-of-range indices: the authors' `x0_mesh[i]` for i >= m².
    expected = np.stack([np.asarray(mx.ravel()[idx]), np.asarray(my.ravel()[idx])], axis=-1)
    np.testing.assert_allclose(grid_centres(train_size), expected, rtol=0, atol=1e-15)
    if train_size > m * m:
        np.testing.assert_array_equal(grid_centres(train_size)[-1], [v[-1], v[-1]])


def test_authors_test_set_lies_on_the_diagonal():
    ds = synthetic_bumps(train_size=4, test_size=50, test_mode="authors")
    np.testing.assert_array_equal(ds.p_test[:, 0], ds.p_test[:, 1])
    np.testing.assert_allclose(ds.p_test[:5, 0], AUTHORS_FIRST_X0, rtol=0, atol=1e-7)
    # A bump centred on the diagonal is symmetric under transposition.
    np.testing.assert_allclose(ds.x_test, np.swapaxes(ds.x_test, -1, -2), atol=1e-6)


def test_independent_test_set_is_off_diagonal_and_seeded():
    a = random_centres(200, "independent", seed=0)
    assert a.dtype == np.float32 and a.shape == (200, 2)
    assert not np.any(a[:, 0] == a[:, 1])
    assert np.all((a >= -0.5) & (a < 0.5))
    np.testing.assert_array_equal(a, random_centres(200, "independent", seed=0))
    assert not np.array_equal(a, random_centres(200, "independent", seed=1))
    # Both coordinates differ from the authors' shared draw.
    assert not np.any(np.isclose(a[:5, 0], AUTHORS_FIRST_X0))


def test_bump_peak_is_one_at_the_centre_once_destandardised():
    ds = synthetic_bumps(train_size=25, test_size=30, test_mode="independent", seed=3)
    g = grid()
    for split, x, p in (("train", ds.x_train, ds.p_train), ("test", ds.x_test, ds.p_test)):
        raw = ds.to_raw(x[:, 0].astype(np.float64), split)
        np.testing.assert_allclose(raw, authors_bumps(p[:, 0], p[:, 1]), atol=1e-6)
        assert raw.max() <= 1 + 1e-6
        for img, (x0, y0) in zip(raw, p):
            row, col = np.unravel_index(np.argmax(img), img.shape)
            # The brightest pixel is (one of) the nearest to the centre; rows are y, columns x.
            assert abs(g[col] - x0) <= np.min(np.abs(g - x0)) + 1e-6
            assert abs(g[row] - y0) <= np.min(np.abs(g - y0)) + 1e-6
    # On a pixel the peak is exactly 1.
    bump = gaussian_bumps(np.array([g[40]]), np.array([g[10]]))[0]
    assert bump[10, 40] == 1.0 and bump.max() == 1.0
    assert bump[10, 41] == pytest.approx(np.exp(-((g[41] - g[40]) ** 2) / (2 * 0.2**2)))


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"'independent', 'authors'.*'diagonal'"):
        synthetic_bumps(train_size=4, test_size=4, test_mode="diagonal")
    with pytest.raises(ValueError, match="train_size"):
        synthetic_bumps(train_size=0)
    with pytest.raises(ValueError, match="test_size"):
        synthetic_bumps(train_size=4, test_size=0)
    with pytest.raises(ValueError, match="same length"):
        gaussian_bumps(np.zeros(2), np.zeros(3))
