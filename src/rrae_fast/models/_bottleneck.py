"""Latent operations: what happens to the batch's latent matrix between encoder and decoder.

Unlike the per-sample encoder and decoder, a bottleneck sees the whole batch `z: [batch, L]`
(samples in rows) — the RRAE's truncated SVD couples the samples of a batch. Every bottleneck
offers two modes and a code map:

- `train(z, k)`: the operation used in the main training stage;
- `infer(z)`: the sample-independent operation used for fine-tuning and inference;
- `codes(z)` / `from_codes(a)`: the coefficients `[batch, d]` that the decoder really consumes
  (interpolation and random sampling act on them) and the latent rows they stand for.
"""

from __future__ import annotations

from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jaxtyping import Float, Int, PRNGKeyArray

from ..svd import Method, rank_reduce

Latent = Float[Array, "batch L"]


class Bottleneck(Protocol):
    """What an :class:`rrae_fast.models.Autoencoder` asks of its bottleneck (every class below
    provides it)."""

    def train(self, z: Latent, k: Int[Array, ""] | int | None = None) -> Latent: ...
    def infer(self, z: Latent) -> Latent: ...
    def codes(self, z: Latent) -> Array: ...
    def from_codes(self, a: Array) -> Latent: ...
    @property
    def code_size(self) -> int: ...


class Identity(eqx.Module):
    """No latent operation (long, diabolo, sparse, contractive, weak-RRAE autoencoders)."""

    latent_size: int = eqx.field(static=True)

    def train(self, z: Latent, k: Int[Array, ""] | int | None = None) -> Latent:
        return z

    def infer(self, z: Latent) -> Latent:
        return z

    def codes(self, z: Latent) -> Latent:
        return z

    def from_codes(self, a: Latent) -> Latent:
        return a

    @property
    def code_size(self) -> int:
        return self.latent_size


class RankReduction(eqx.Module):
    """The RRAE bottleneck: the batch's latent matrix truncated to rank `k` in training.

    `train(z, k)` is `rank_reduce(z, k, max_k=max_k)` — `k` may be a traced integer, so an
    adaptive bottleneck changes `k` without recompiling. After training, :meth:`with_basis`
    stores the common final basis `B: [L, k]` (orthonormal columns); `infer(z) = z B Bᵀ`,
    `codes(z) = z B` and `from_codes(a) = a Bᵀ` then act on each sample alone.
    """

    basis: Float[Array, "L k"] | None
    latent_size: int = eqx.field(static=True)
    max_k: int = eqx.field(static=True)
    method: Method = eqx.field(static=True)

    def __init__(
        self, latent_size: int, max_k: int, basis: Array | None = None, method: Method = "auto"
    ):
        """Args:
        latent_size: `L`.
        max_k: the largest rank the training truncation may keep (static).
        basis: the final basis `[L, k]`, once computed.
        method: the truncated SVD's path (:func:`rrae_fast.rank_reduce`); `"dense"` suits
            large latents with a flat spectrum, where the iterative path's solves are slow.
        """
        if not 1 <= max_k <= latent_size:
            raise ValueError(f"max_k must be in [1, latent_size={latent_size}], got {max_k}")
        if basis is not None and (basis.ndim != 2 or basis.shape[0] != latent_size):
            raise ValueError(f"basis must have shape ({latent_size}, k), got {basis.shape}")
        self.basis = basis
        self.latent_size = latent_size
        self.max_k = max_k
        self.method = method

    def with_basis(self, basis: Float[Array, "L k"]) -> RankReduction:
        """A copy holding the final basis (its column count is the final `k`)."""
        return RankReduction(self.latent_size, self.max_k, jnp.asarray(basis), self.method)

    def train(self, z: Latent, k: Int[Array, ""] | int | None = None) -> Latent:
        """The batch's latent matrix `z` [batch, L] truncated to rank `k` (default `max_k`).

        A batch smaller than `k` has rank at most its size: `k` is then cut to it, and the
        whole latent matrix is kept, as the authors' slice of the first `k` singular triplets
        does (an aRRAE that starts from k = 64 on batches of 32 keeps all 32 until its tracker
        brings `k` below 32)."""
        k = self.max_k if k is None else k
        bound = min(self.max_k, *z.shape)
        k = min(k, bound) if isinstance(k, int) else jnp.minimum(k, bound)
        return rank_reduce(z, k, max_k=bound, method=self.method)

    def _basis(self) -> Array:
        if self.basis is None:
            raise ValueError(
                "this bottleneck has no final basis yet: compute it after training "
                "(rrae_fast.training.final_basis) and attach it with with_basis()"
            )
        return jax.lax.stop_gradient(self.basis)

    def infer(self, z: Latent) -> Latent:
        b = self._basis()
        return (z @ b) @ b.T

    def codes(self, z: Latent) -> Float[Array, "batch k"]:
        return z @ self._basis()

    def from_codes(self, a: Float[Array, "batch k"]) -> Latent:
        return a @ self._basis().T

    @property
    def code_size(self) -> int:
        return self.max_k if self.basis is None else self.basis.shape[1]


class _Projection(eqx.Module):
    """Shared maps of the basis autoencoders: `z Q Qᵀ`, codes `z Q`, rows `a Qᵀ`."""

    def q(self) -> Array:  # pragma: no cover - overridden
        raise NotImplementedError

    def train(self, z: Latent, k: Int[Array, ""] | int | None = None) -> Latent:
        q = self.q()
        return (z @ q) @ q.T

    def infer(self, z: Latent) -> Latent:
        return self.train(z)

    def codes(self, z: Latent) -> Latent:
        return z @ self.q()

    def from_codes(self, a: Latent) -> Latent:
        return a @ self.q().T

    @property
    def code_size(self) -> int:
        return self.q().shape[1]


class FixedBasis(_Projection):
    """Projection onto a fixed orthonormal basis `Q: [L, k]` (the Fix-basis ablation).

    `Q` is the Q factor of a Gaussian `[L, k]` matrix drawn from `key`; it is never trained.
    """

    basis: Float[Array, "L k"]

    def __init__(self, latent_size: int, k: int, *, key: PRNGKeyArray):
        if not 1 <= k <= latent_size:
            raise ValueError(f"k must be in [1, latent_size={latent_size}], got {k}")
        self.basis = jnp.linalg.qr(jax.random.normal(key, (latent_size, k)))[0]

    def q(self) -> Array:
        return jax.lax.stop_gradient(self.basis)


class LearnedBasis(_Projection):
    """Projection onto the span of a trainable matrix `W: [L, k]` (the Learn-basis ablation).

    `Q = qr(W).Q` is recomputed at every call, so `Q` stays orthonormal while `W` trains;
    `W` starts at the Fix-basis `Q` drawn from the same key.
    """

    weight: Float[Array, "L k"]

    def __init__(self, latent_size: int, k: int, *, key: PRNGKeyArray):
        self.weight = FixedBasis(latent_size, k, key=key).basis

    def q(self) -> Array:
        return jnp.linalg.qr(self.weight)[0]


class LinearChain(eqx.Module):
    """IRMAE: `l` bias-free `L×L` linear maps applied to the latent vector.

    They belong to the encoding (the codes are the chain's output) and are trained with it.
    The authors' code builds `l` identically initialised matrices and applies only `l − 1`; we
    apply all `l`, each with its own initialisation, as the IRMAE paper describes.
    """

    layers: tuple[eqx.nn.Linear, ...]
    latent_size: int = eqx.field(static=True)

    def __init__(self, latent_size: int, num_layers: int, *, key: PRNGKeyArray):
        if num_layers < 1:
            raise ValueError(f"num_layers must be ≥ 1, got {num_layers}")
        keys = jax.random.split(key, num_layers)
        self.layers = tuple(
            eqx.nn.Linear(latent_size, latent_size, use_bias=False, key=k) for k in keys
        )
        self.latent_size = latent_size

    def train(self, z: Latent, k: Int[Array, ""] | int | None = None) -> Latent:
        for layer in self.layers:
            z = z @ layer.weight.T
        return z

    def infer(self, z: Latent) -> Latent:
        return self.train(z)

    def codes(self, z: Latent) -> Latent:
        return self.train(z)

    def from_codes(self, a: Latent) -> Latent:
        return a

    @property
    def code_size(self) -> int:
        return self.latent_size
