"""The model families of the paper's Table 1 and Appendix B, built from one small config.

| kind          | latent operation                      | extra loss term             |
|---------------|---------------------------------------|-----------------------------|
| `long`        | none, long latent `L`                 | —                           |
| `diabolo`     | none, `L = k`                         | —                           |
| `sparse`      | none, sigmoid latent                  | KL sparsity (ρ, β)          |
| `contractive` | none, sigmoid latent                  | Jacobian norm (β)           |
| `irmae`       | `l` linear `L×L` maps                 | —                           |
| `rrae`        | rank `k` truncation (fixed `k`)       | —                           |
| `arrae`       | rank truncation, adaptive `k ≤ k`     | —                           |
| `pars_rrae`   | rank truncation, growing `k ≤ max_k`  | —                           |
| `weak_rrae`   | none                                  | distance to rank `k`        |
| `fix_basis`   | projection on a fixed random basis    | —                           |
| `learn_basis` | projection on a trained basis         | —                           |

Inputs of shape `(c, h, w)` get the paper's CNN, inputs of shape `(t,)` its MLP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ._autoencoder import Autoencoder, Network
from ._bottleneck import Bottleneck, FixedBasis, Identity, LearnedBasis, LinearChain, RankReduction
from ._cnn import CNNDecoder, CNNEncoder, identity
from ._losses import ContractivePenalty, Penalty, SparsePenalty, WeakRankPenalty
from ._mlp import MLPDecoder, MLPEncoder

KINDS = (
    "long",
    "diabolo",
    "sparse",
    "contractive",
    "irmae",
    "rrae",
    "arrae",
    "pars_rrae",
    "weak_rrae",
    "fix_basis",
    "learn_basis",
)
RANK_REDUCING = ("rrae", "arrae", "pars_rrae")  # trained with the SVD, then basis + fine-tuning
_SIGMOID_LATENT = ("sparse", "contractive")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (saved as JSON beside checkpoints).

    Attributes:
        kind: one of :data:`KINDS`.
        latent_size: `L` (ignored by `diabolo`, whose latent length is `k`).
        k: the bottleneck: fixed rank (`rrae`, `weak_rrae`, basis models), the latent length of
            `diabolo`, the initial rank of `arrae` (its largest) and `pars_rrae` (its smallest).
        max_k: largest rank `pars_rrae` may grow to (default: `latent_size`).
        rho, beta: sparse target activation and penalty weights (sparse, contractive).
        irmae_layers: number of linear maps of `irmae`.
        fast_transpose: the CNN decoder's transposed convolutions take their derivatives
            through the adjoint strided convolution (same maps, much faster on CPU).
        width, encoder_depth, decoder_depth: MLP sizes (1-D data only).
    """

    kind: str = "arrae"
    latent_size: int = 200
    k: int = 64
    max_k: int | None = None
    rho: float = 0.05
    beta: float = 1.0
    irmae_layers: int = 4
    fast_transpose: bool = True
    width: int = 64
    encoder_depth: int = 1
    decoder_depth: int = 6

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.latent_size < 1 or self.k < 1:
            raise ValueError("latent_size and k must be ≥ 1")
        uses_k = self.kind in (*RANK_REDUCING, "weak_rrae", "fix_basis", "learn_basis")
        if uses_k and self.k > self.latent_size:
            raise ValueError(f"k={self.k} exceeds latent_size={self.latent_size}")
        if self.max_k is not None and not self.k <= self.max_k <= self.latent_size:
            raise ValueError(f"max_k must be in [k, latent_size], got {self.max_k}")

    @property
    def latent_length(self) -> int:
        """The encoder's output length `L`."""
        return self.k if self.kind == "diabolo" else self.latent_size

    @property
    def rank_limit(self) -> int:
        """The largest rank the bottleneck may use (the kernel's static `max_k`)."""
        if self.kind == "pars_rrae":
            return self.max_k or self.latent_size
        return self.k

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


def _networks(config: ModelConfig, sample_shape: tuple[int, ...], key) -> tuple:
    length = config.latent_length
    act = jax.nn.sigmoid if config.kind in _SIGMOID_LATENT else identity
    k_enc, k_dec = jax.random.split(key)
    enc: Network
    dec: Network
    if len(sample_shape) == 3:
        enc = CNNEncoder(sample_shape, length, final_activation=act, key=k_enc)
        dec = CNNDecoder(length, sample_shape, fast_transpose=config.fast_transpose, key=k_dec)
    elif len(sample_shape) == 1:
        (t,) = sample_shape
        enc = MLPEncoder(t, length, config.width, config.encoder_depth, act, key=k_enc)
        dec = MLPDecoder(length, t, config.width, config.decoder_depth, key=k_dec)
    else:
        raise ValueError(f"sample shape must be (c, h, w) or (t,), got {sample_shape}")
    return enc, dec


def build_model(
    config: ModelConfig,
    sample_shape: Sequence[int],
    *,
    key: PRNGKeyArray,
    dtype: jnp.dtype = jnp.float32,
) -> Autoencoder:
    """A freshly initialised autoencoder.

    Args:
        config: the model family and its sizes.
        sample_shape: shape of one sample, `(c, h, w)` or `(t,)`.
        key: PRNG key for the initialisation.
        dtype: floating dtype of every parameter (float32 by default, whether or not JAX's
            64-bit mode is on); inputs must have the same dtype.

    Returns:
        An :class:`Autoencoder` taking batches `[batch, *sample_shape]`.
    """
    sample_shape = tuple(int(d) for d in sample_shape)
    k_net, k_lat = jax.random.split(key)
    encoder, decoder = _networks(config, sample_shape, k_net)
    kind, length = config.kind, config.latent_length
    penalty: Penalty = Penalty()
    bottleneck: Bottleneck
    if kind in RANK_REDUCING:
        bottleneck = RankReduction(length, config.rank_limit)
    elif kind == "irmae":
        bottleneck = LinearChain(length, config.irmae_layers, key=k_lat)
    elif kind == "fix_basis":
        bottleneck = FixedBasis(length, config.k, key=k_lat)
    elif kind == "learn_basis":
        bottleneck = LearnedBasis(length, config.k, key=k_lat)
    else:
        bottleneck = Identity(length)
    if kind == "sparse":
        penalty = SparsePenalty(config.rho, config.beta)
    elif kind == "contractive":
        penalty = ContractivePenalty(config.beta)
    elif kind == "weak_rrae":
        penalty = WeakRankPenalty(config.k)
    model = Autoencoder(encoder, decoder, bottleneck, penalty)
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)
