"""Normalizer: the authors' scalar minmax / meanstd, round trips, serialisation, errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.data import Normalizer


@pytest.fixture
def x(rng):
    return (3.0 + 2.5 * rng.standard_normal((6, 1, 4, 4))).astype(np.float32)


def test_minmax_matches_the_formula(x):
    n = Normalizer.fit("minmax", x)
    ref = (x - x.min()) / (x.max() - x.min())
    np.testing.assert_allclose(n.apply(x), ref, rtol=1e-6, atol=1e-7)
    assert n.apply(x).min() == pytest.approx(0.0, abs=1e-7)
    assert n.apply(x).max() == pytest.approx(1.0, abs=1e-6)


def test_meanstd_matches_the_formula(x):
    n = Normalizer.fit("meanstd", x)
    x64 = x.astype(np.float64)
    assert n.offset == pytest.approx(x64.mean(), rel=1e-14)
    assert n.factor == pytest.approx(x64.std(), rel=1e-14)
    y = n.apply(x64)
    assert y.mean() == pytest.approx(0.0, abs=1e-12) and y.std() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["none", "minmax", "meanstd"])
def test_round_trip_numpy_and_jax(kind, x):
    n = Normalizer.fit(kind, x)
    np.testing.assert_allclose(n.invert(n.apply(x)), x, rtol=1e-6, atol=1e-5)
    xj = jnp.asarray(x)
    yj = n.apply(xj)
    assert isinstance(yj, jax.Array) and yj.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(yj), n.apply(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(n.invert(yj)), x, rtol=1e-6, atol=1e-5)
    # Fitting on a JAX array gives the same statistics.
    assert Normalizer.fit(kind, xj) == n


def test_none_is_the_identity(x):
    n = Normalizer.fit("none", x)
    assert n == Normalizer() and n.apply(x) is x and n.invert(x) is x


@pytest.mark.parametrize("kind", ["none", "minmax", "meanstd"])
def test_dict_round_trip_through_json(kind, x):
    n = Normalizer.fit(kind, x)
    d = json.loads(json.dumps(n.to_dict()))
    assert d == {"kind": kind, "offset": n.offset, "factor": n.factor}
    assert Normalizer.from_dict(d) == n
    assert isinstance(n.offset, float) and isinstance(n.factor, float)


def test_usable_inside_jit(x):
    n = Normalizer.fit("minmax", x)
    f = jax.jit(lambda a, norm: norm.apply(a), static_argnums=1)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x), n)), n.apply(x), rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="'none', 'minmax', 'meanstd'"):
        Normalizer.fit("zscore", np.ones(3))
    with pytest.raises(ValueError, match="'none', 'minmax', 'meanstd'"):
        Normalizer("None")
    with pytest.raises(ValueError, match="constant"):
        Normalizer.fit("minmax", np.full((2, 3), 4.0))
    with pytest.raises(ValueError, match="constant"):
        Normalizer.fit("meanstd", np.full((2, 3), 4.0))
    with pytest.raises(ValueError, match="empty"):
        Normalizer.fit("meanstd", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="not all finite"):
        Normalizer.fit("minmax", np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="non-zero factor"):
        Normalizer("meanstd", 0.0, 0.0)
    with pytest.raises(ValueError, match="offset 0 and factor 1"):
        Normalizer("none", 1.0, 1.0)
    with pytest.raises(ValueError, match="keys"):
        Normalizer.from_dict({"kind": "minmax", "offset": 0.0})
