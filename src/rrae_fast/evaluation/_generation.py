"""Generating from a trained autoencoder: latent interpolation and Gaussian random sampling.

Every function takes plain callables, so it works with any model: `encode` maps a batch of
inputs `[b, ...]` to the codes the decoder consumes `[b, d]` (e.g. `α = B_finalᵀE(x)` for an
RRAE), and `decode` maps codes `[b, d]` back to outputs `[b, ...]`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from ._batching import DEFAULT_BATCH_SIZE, map_batches


def interpolation_pairs(n: int, num_pairs: int = 50, *, key: Array) -> np.ndarray:
    """Random ordered pairs `(i, j)` of distinct sample indices, drawn uniformly.

    Procedure: `key_i, key_j = jax.random.split(key)`;
    `i = jax.random.randint(key_i, (num_pairs,), 0, n)`;
    `o = jax.random.randint(key_j, (num_pairs,), 0, n - 1)`; `j = o + (o >= i)`.
    So `i` is uniform on `{0, …, n−1}` and, given `i`, `j` is uniform on the other `n − 1`
    indices: each ordered pair with `i ≠ j` has probability `1/(n(n−1))`. Pairs are drawn
    independently (the same pair may appear twice).

    Args:
        n: number of samples to draw from (at least 2).
        num_pairs: number of pairs.
        key: a JAX PRNG key.

    Returns:
        int64 indices of shape `[num_pairs, 2]`, columns `(i, j)`.
    """
    if n < 2:
        raise ValueError(f"need at least 2 samples to form pairs, got n={n}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be positive, got {num_pairs}")
    key_i, key_j = jax.random.split(key)
    i = np.asarray(jax.random.randint(key_i, (num_pairs,), 0, n), dtype=np.int64)
    offset = np.asarray(jax.random.randint(key_j, (num_pairs,), 0, n - 1), dtype=np.int64)
    j = offset + (offset >= i)
    return np.stack([i, j], axis=1)


def interpolation_weights(num_points: int = 5, *, include_endpoints: bool = False) -> np.ndarray:
    """The interpolation parameters `t_k = k/(num_points + 1)`, float64.

    Args:
        num_points: number of intermediate points (5 gives `t ∈ {1/6, …, 5/6}`).
        include_endpoints: also return `t = 0` and `t = 1` (first and last).

    Returns:
        `[num_points]` values `t_1 … t_num_points`, or `[num_points + 2]` with the endpoints.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be positive, got {num_points}")
    k = np.arange(num_points + 2) if include_endpoints else np.arange(1, num_points + 1)
    return k / (num_points + 1)


def interpolate(
    encode: Callable[[Array], Array],
    decode: Callable[[Array], Array],
    x: Array | np.ndarray,
    pairs: ArrayLike,
    num_points: int = 5,
    *,
    include_endpoints: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Array:
    """Decodes straight lines between the codes of pairs of samples.

    For each pair `(i, j)` and each `t` of `interpolation_weights`, decodes
    `z = (1 − t)·encode(x[i]) + t·encode(x[j])`.

    Args:
        encode: batch `[b, ...]` → codes `[b, d]`.
        decode: codes `[b, d]` → outputs `[b, ...]`.
        x: the samples, shape `[n, ...]`.
        pairs: indices `[num_pairs, 2]` into `x` (e.g. from `interpolation_pairs`).
        num_points: intermediate points per pair (`t = 1/(num_points+1), …`).
        include_endpoints: also decode `t = 0` and `t = 1` (the two reconstructions).
        batch_size: samples per call of `encode` and `decode`.

    Returns:
        The decoded outputs `[num_pairs·T, ...]` in pair-major order (the `T` points of pair 0,
        then pair 1, …), `T = num_points` (+2 with the endpoints).
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1:
        raise ValueError(f"pairs must have shape [num_pairs, 2], got {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise TypeError(f"pairs must hold integers, got {pairs.dtype}")
    n = len(x)
    if pairs.min() < 0 or pairs.max() >= n:
        raise ValueError(f"pair indices must lie in [0, {n}), got [{pairs.min()}, {pairs.max()}]")
    t_np = interpolation_weights(num_points, include_endpoints=include_endpoints)
    num_pairs = pairs.shape[0]
    ends = x[pairs.T.reshape(-1)]  # [2·num_pairs, ...]: all i, then all j
    codes = map_batches(encode, ends, batch_size)
    if codes.ndim != 2:
        raise ValueError(f"encode must return codes [b, d], got shape {codes.shape}")
    a, b = codes[:num_pairs], codes[num_pairs:]
    t = jnp.asarray(t_np, dtype=codes.dtype)[None, :, None]  # [1, T, 1]
    z = (1 - t) * a[:, None, :] + t * b[:, None, :]  # [num_pairs, T, d]
    return map_batches(decode, z.reshape(-1, codes.shape[1]), batch_size)


def latent_gaussian(codes: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a set of codes, in float64.

    Args:
        codes: `[n, d]`, one code per row (n ≥ 2).

    Returns:
        `(mean [d], cov [d, d])` with `cov = Σ (z − mean)(z − mean)ᵀ / (n − 1)`.
    """
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"codes must have shape [n, d], got {z.shape}")
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 codes for an unbiased covariance, got {z.shape[0]}")
    mean = z.mean(axis=0)
    centred = z - mean
    return mean, centred.T @ centred / (z.shape[0] - 1)


def _check_gaussian(mean: np.ndarray, cov: np.ndarray) -> None:
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
        raise ValueError(f"need mean [d] and cov [d, d], got {mean.shape} and {cov.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ValueError("mean and cov must be finite")


def sample_latent(mean: ArrayLike, cov: ArrayLike, num: int, *, key: Array) -> np.ndarray:
    """Draws codes from `N(mean, cov)`, robust to a singular covariance.

    The factor is taken from the eigendecomposition of the symmetrised covariance,
    `(cov + covᵀ)/2 = V diag(λ) Vᵀ`, with `λ` clipped below at 0 (rounding can make the
    eigenvalues of a rank-deficient covariance slightly negative); codes are
    `mean + ε·(V diag(√λ))ᵀ` with `ε = jax.random.normal(key, (num, d))`. Directions of zero
    variance receive no spread, so samples stay in the span of the training codes.

    Args:
        mean: `[d]`.
        cov: `[d, d]`, symmetric positive semi-definite up to rounding.
        num: number of samples.
        key: a JAX PRNG key.

    Returns:
        float64 codes `[num, d]`.
    """
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    _check_gaussian(mean, cov)
    if num < 1:
        raise ValueError(f"num must be positive, got {num}")
    lam, vecs = np.linalg.eigh((cov + cov.T) / 2)
    factor = vecs * np.sqrt(np.clip(lam, 0.0, None))  # [d, d], factor @ factorᵀ = cov
    # The default float dtype of JAX: float32 draws are widened, never a truncation warning.
    eps = np.asarray(jax.random.normal(key, (num, mean.size)), dtype=np.float64)
    return mean + eps @ factor.T


def random_samples(
    decode: Callable[[Array], Array],
    mean: ArrayLike,
    cov: ArrayLike,
    num: int = 250,
    *,
    key: Array,
    dtype: DTypeLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Array:
    """Decodes `num` codes drawn from `N(mean, cov)` (see `sample_latent`).

    Args:
        decode: codes `[b, d]` → outputs `[b, ...]`.
        mean: `[d]`, e.g. from `latent_gaussian` of the training codes.
        cov: `[d, d]`.
        num: number of samples.
        key: a JAX PRNG key.
        dtype: dtype of the codes passed to `decode` (e.g. the model's float32); by default
            JAX's default float dtype.
        batch_size: codes per call of `decode`.

    Returns:
        The decoded outputs `[num, ...]`.
    """
    codes = jnp.asarray(sample_latent(mean, cov, num, key=key), dtype=dtype)
    return map_batches(decode, codes, batch_size)
