"""The common final basis of a rank-reducing autoencoder (the paper's Sec. 4.2).

Training with batches gives every batch its own rank-`k` subspace. After training, the whole
training set is encoded batch by batch (a fixed permutation, remainder included); the first `k`
left singular vectors `U_k^(j)` of each batch's latent matrix `Y_j = z_jᵀ: [L, b_j]` are stacked
side by side into `M = [U_k^(1) | … | U_k^(n)]: [L, k·n]` (no weighting by singular values),
and the final basis is the first `k` left singular vectors of `M`: `[L, k]`, orthonormal.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh
from jaxtyping import Float

from ..svd import truncated_svd
from ._mesh import as_auto, place_batch, place_replicated
from ._step import param_dtype

BASIS_SEED = 0  # the permutation of the basis pass is fixed, as in the authors' code


def batch_indices(n: int, batch_size: int, seed: int = BASIS_SEED) -> list[np.ndarray]:
    """Index batches of one seeded permutation of `range(n)`, the remainder batch included."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


@eqx.filter_jit
def _encode(model, x):
    return model.encode(x)


def final_basis(
    model: Any,
    x: Float[Array, "n ..."] | np.ndarray,
    k: int,
    batch_size: int,
    *,
    mesh: Mesh | None = None,
) -> Float[Array, "L k"]:
    """The common final basis of `model`'s latent space over the data `x`.

    Args:
        model: a rank-reducing :class:`~rrae_fast.models.Autoencoder`.
        x: the training set, `[n, *sample_shape]`, on the scale the model was trained on
            (cast to the model's parameter dtype).
        k: the final bottleneck.
        batch_size: size of the encoding batches (the authors use the last training batch size).
        mesh: encode each batch split by samples over these devices (a batch whose size does
            not split evenly, such as the remainder, is encoded whole on every device); the
            SVDs see whole latent matrices, so the basis is the one-device basis.

    Returns:
        `[L, k]` with orthonormal columns (replicated on the mesh, if one is given).
    """
    if not 1 <= k <= model.bottleneck.latent_size:
        raise ValueError(f"k must be in [1, {model.bottleneck.latent_size}], got {k}")
    blocks, dtype = [], param_dtype(model)
    if mesh is not None:
        mesh = as_auto(mesh)
        model = place_replicated(model, mesh)
    for idx in batch_indices(len(x), batch_size):
        xb: Array
        if mesh is None:
            xb = jnp.asarray(x[idx], dtype)
        elif len(idx) % mesh.size:
            xb = place_replicated(np.asarray(x[idx], dtype), mesh)
        else:
            xb = place_batch(np.asarray(x[idx], dtype), mesh)
        z = _encode(model, xb)  # [b, L]; the paper's Y_j is zᵀ
        kj = min(k, *z.shape)  # a small remainder batch has fewer directions
        _, _, vt = truncated_svd(z, kj)  # right singular vectors of z = left ones of Y_j
        blocks.append(vt.T)
    m = jnp.concatenate(blocks, axis=1)  # [L, Σ k_j]
    if m.shape[1] < k:
        raise ValueError(f"the data span fewer than k={k} directions ({m.shape[1]} samples)")
    u, _, _ = truncated_svd(m, k)
    return u
