"""Interpolation pairs and strips, the latent Gaussian, and random sampling from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast.evaluation import (
    interpolate,
    interpolation_pairs,
    interpolation_weights,
    latent_gaussian,
    random_samples,
    sample_latent,
)


class LinearAE:
    """encode(x) = flat(x) W, decode(z) = z Wᵀ reshaped, W [D, d] orthonormal columns."""

    def __init__(self, rng, sample_shape, d, dtype=np.float64):
        dim = int(np.prod(sample_shape))
        self.w = np.linalg.qr(rng.standard_normal((dim, d)))[0]
        self.wj = jnp.asarray(self.w, dtype=dtype)
        self.sample_shape = sample_shape
        self.batches = []

    def encode(self, x):
        self.batches.append(x.shape[0])
        return jnp.asarray(x).reshape(x.shape[0], -1) @ self.wj

    def decode(self, z):
        self.batches.append(z.shape[0])
        return (z @ self.wj.T).reshape(z.shape[0], *self.sample_shape)


# ---------------------------------------------------------------------------------- pairs


def test_pairs_distinct_in_range_reproducible(getkey):
    key = getkey()
    pairs = interpolation_pairs(400, key=key)
    assert pairs.shape == (50, 2) and pairs.dtype == np.int64
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert pairs.min() >= 0 and pairs.max() < 400
    np.testing.assert_array_equal(pairs, interpolation_pairs(400, key=key))
    assert not np.array_equal(pairs, interpolation_pairs(400, key=getkey()))


def test_pairs_follow_documented_procedure():
    key = jax.random.key(3)
    key_i, key_j = jax.random.split(key)
    i = np.asarray(jax.random.randint(key_i, (8,), 0, 10))
    o = np.asarray(jax.random.randint(key_j, (8,), 0, 9))
    expected = np.stack([i, np.where(o >= i, o + 1, o)], axis=1)
    np.testing.assert_array_equal(interpolation_pairs(10, 8, key=key), expected)


def test_pairs_uniform_over_ordered_distinct_pairs():
    """Each of the n(n−1) = 12 ordered pairs is drawn with probability 1/12."""
    num = 120_000
    pairs = interpolation_pairs(4, num, key=jax.random.key(7))
    counts = np.zeros((4, 4), dtype=np.int64)
    np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(4, dtype=bool)]
    expected = num / 12
    sd = np.sqrt(num * (1 / 12) * (11 / 12))
    assert np.all(np.abs(off - expected) < 5 * sd)


def test_pairs_two_samples():
    pairs = interpolation_pairs(2, 200, key=jax.random.key(0))
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (1, 0)}


def test_pairs_bad_arguments(getkey):
    with pytest.raises(ValueError, match="at least 2"):
        interpolation_pairs(1, key=getkey())
    with pytest.raises(ValueError, match="num_pairs"):
        interpolation_pairs(5, 0, key=getkey())


# -------------------------------------------------------------------------- interpolation


def test_weights():
    np.testing.assert_allclose(interpolation_weights(), np.arange(1, 6) / 6, rtol=1e-15)
    np.testing.assert_allclose(
        interpolation_weights(3, include_endpoints=True), [0, 0.25, 0.5, 0.75, 1], rtol=1e-15
    )
    with pytest.raises(ValueError, match="num_points"):
        interpolation_weights(0)


def _expected_strip(ae, x, pairs, t):
    """Closed form for a linear AE: decode((1−t)E(xi) + tE(xj)) = P((1−t)xi + t xj)."""
    flat = x.reshape(x.shape[0], -1)
    proj = flat @ ae.w @ ae.w.T
    rows = [(1 - tk) * proj[i] + tk * proj[j] for i, j in pairs for tk in t]
    return np.stack(rows).reshape(len(rows), *x.shape[1:])


def test_interpolate_closed_form_pair_major(rng, getkey):
    x = rng.standard_normal((30, 1, 4, 5))
    ae = LinearAE(rng, (1, 4, 5), 3)
    pairs = interpolation_pairs(30, 9, key=getkey())
    out = interpolate(ae.encode, ae.decode, x, pairs, batch_size=7)
    assert out.shape == (45, 1, 4, 5)
    expected = _expected_strip(ae, x, pairs, np.arange(1, 6) / 6)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-13)
    # 18 endpoints encoded as 7+7+4, then 45 codes decoded as 6·7+3.
    assert ae.batches == [7, 7, 4] + [7] * 6 + [3]
    big = interpolate(ae.encode, ae.decode, x, pairs, batch_size=1000)
    np.testing.assert_allclose(np.asarray(big), np.asarray(out), rtol=1e-13, atol=1e-14)


def test_interpolate_endpoints_are_reconstructions(rng):
    x = rng.standard_normal((6, 8))
    ae = LinearAE(rng, (8,), 2)
    pairs = np.array([[0, 5], [3, 1]])
    out = np.asarray(interpolate(ae.encode, ae.decode, x, pairs, 2, include_endpoints=True))
    assert out.shape == (8, 8)
    recon = x @ ae.w @ ae.w.T
    np.testing.assert_allclose(out[[0, 3, 4, 7]], recon[[0, 5, 3, 1]], atol=1e-13)
    np.testing.assert_allclose(out[1], (2 * recon[0] + recon[5]) / 3, atol=1e-13)


def test_interpolate_float32_model(rng):
    """A float32 model is fed float32 codes (no dtype promotion with float64 weights t)."""
    x = rng.standard_normal((5, 6)).astype(np.float32)
    ae = LinearAE(rng, (6,), 2, dtype=np.float32)
    out = interpolate(ae.encode, ae.decode, x, np.array([[0, 1], [2, 4]]))
    assert out.dtype == jnp.float32 and out.shape == (10, 6)
    expected = _expected_strip(ae, x.astype(np.float64), [[0, 1], [2, 4]], np.arange(1, 6) / 6)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_interpolate_bad_arguments(rng):
    x = rng.standard_normal((4, 3))
    ae = LinearAE(rng, (3,), 2)
    for pairs, exc, match in [
        (np.array([0, 1]), ValueError, "shape"),
        (np.zeros((0, 2), dtype=int), ValueError, "shape"),
        (np.array([[0.0, 1.0]]), TypeError, "integers"),
        (np.array([[0, 4]]), ValueError, r"\[0, 4\)"),
        (np.array([[-1, 2]]), ValueError, r"\[0, 4\)"),
    ]:
        with pytest.raises(exc, match=match):
            interpolate(ae.encode, ae.decode, x, pairs)
    with pytest.raises(ValueError, match=r"codes \[b, d\]"):
        interpolate(lambda b: jnp.asarray(b)[:, :, None], ae.decode, x, np.array([[0, 1]]))


# ----------------------------------------------------------------------- latent Gaussian


def test_latent_gaussian_against_numpy(rng):
    codes = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 4)) + 3.0
    mean, cov = latent_gaussian(jnp.asarray(codes.astype(np.float32)))
    assert mean.dtype == np.float64 and cov.dtype == np.float64
    c32 = codes.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mean, c32.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(c32, rowvar=False, ddof=1), rtol=1e-12, atol=1e-13)


def test_latent_gaussian_single_dimension():
    mean, cov = latent_gaussian(np.array([[1.0], [2.0], [6.0]]))
    np.testing.assert_allclose(mean, [3.0])
    np.testing.assert_allclose(cov, [[7.0]])  # (4 + 1 + 9) / (3 − 1)


def test_latent_gaussian_bad_input():
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        latent_gaussian(np.ones(5))
    with pytest.raises(ValueError, match="at least 2"):
        latent_gaussian(np.ones((1, 3)))


def test_sample_latent_statistics_singular_covariance(rng):
    """A rank-2 covariance in 3-D: right moments, no spread along the null direction."""
    a = rng.standard_normal((3, 2))
    cov = a @ a.T
    null = np.linalg.svd(a.T)[2][-1]  # unit vector with aᵀ·null = 0
    mean = np.array([1.0, -2.0, 0.5])
    num = 200_000
    z = sample_latent(mean, cov, num, key=jax.random.key(11))
    assert z.shape == (num, 3) and z.dtype == np.float64
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.mean(axis=0) - mean) < 5 * sd / np.sqrt(num))
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.02 * np.max(cov))
    # Rounding leaves an eigenvalue ~1e-16·λ_max, i.e. a spread ~1e-8 of the others.
    assert np.max(np.abs((z - mean) @ null)) < 1e-6 * np.max(sd)


def test_sample_latent_tiny_negative_eigenvalue_and_reproducibility():
    cov = np.diag([1.0, -1e-14])  # rounding noise of a singular covariance
    z = sample_latent(np.zeros(2), cov, 100, key=jax.random.key(0))
    assert np.all(np.isfinite(z)) and np.all(z[:, 1] == 0.0)
    np.testing.assert_array_equal(z, sample_latent(np.zeros(2), cov, 100, key=jax.random.key(0)))


def test_sample_latent_bad_input(getkey):
    with pytest.raises(ValueError, match=r"mean \[d\]"):
        sample_latent(np.zeros(2), np.eye(3), 5, key=getkey())
    with pytest.raises(ValueError, match=r"mean \[d\]"):
        sample_latent(np.zeros((2, 1)), np.eye(2), 5, key=getkey())
    with pytest.raises(ValueError, match="finite"):
        sample_latent(np.zeros(2), np.full((2, 2), np.nan), 5, key=getkey())
    with pytest.raises(ValueError, match="num"):
        sample_latent(np.zeros(2), np.eye(2), 0, key=getkey())


def test_random_samples_decode_sampled_codes(rng):
    ae = LinearAE(rng, (2, 3), 2)
    mean, cov = np.array([0.5, -1.0]), np.array([[2.0, 0.3], [0.3, 0.5]])
    key = jax.random.key(5)
    out = random_samples(ae.decode, mean, cov, 30, key=key, batch_size=7)
    assert out.shape == (30, 2, 3)
    assert ae.batches == [7, 7, 7, 7, 2]
    codes = sample_latent(mean, cov, 30, key=key)
    np.testing.assert_allclose(
        np.asarray(out), (codes @ ae.w.T).reshape(30, 2, 3), rtol=1e-12, atol=1e-13
    )
    big = random_samples(ae.decode, mean, cov, 30, key=key, batch_size=1000)
    np.testing.assert_allclose(np.asarray(big), np.asarray(out), rtol=1e-13, atol=1e-14)


def test_random_samples_code_dtype(rng):
    seen = []
    decode = lambda z: seen.append(z.dtype) or z * 2
    out = random_samples(decode, np.zeros(3), np.eye(3), key=jax.random.key(0), dtype=jnp.float32)
    assert seen == [jnp.float32] and out.shape == (250, 3)
