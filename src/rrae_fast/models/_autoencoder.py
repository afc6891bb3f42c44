"""The autoencoder: a per-sample encoder and decoder around a batch-level bottleneck.

Convention: samples live in the FIRST axis everywhere — inputs `[batch, *sample_shape]`
(images `[batch, c, h, w]`, 1-D data `[batch, t]`), latent matrices `[batch, L]`, codes
`[batch, d]`. The encoder and decoder see one sample and are vmapped over the batch; the
bottleneck sees the whole batch, because the RRAE's truncated SVD couples its samples. The
paper writes the latent matrix as `Y = zᵀ: [L, batch]`; its left singular vectors are our
right singular vectors, and the final basis `[L, k]` is the same either way.
"""

from __future__ import annotations

from typing import Protocol

import equinox as eqx
import jax
from jax import Array
from jaxtyping import Float, Int

from ._bottleneck import Bottleneck
from ._losses import Penalty, reconstruction_loss


class Network(Protocol):
    """A per-sample encoder or decoder: one sample (or latent vector) in, one out."""

    def __call__(self, x: Array, /) -> Array: ...


class Autoencoder(eqx.Module):
    """Encoder, bottleneck, decoder and the extra training term of one autoencoder family.

    Attributes:
        encoder: per-sample network, `[*sample_shape] → [L]`.
        decoder: per-sample network, `[L] → [*sample_shape]`.
        bottleneck: batch-level latent operation (see :mod:`rrae_fast.models`): `train(z, k)`,
            `infer(z)`, `codes(z)`, `from_codes(a)`.
        penalty: the extra loss term (zero for most models).
    """

    encoder: Network
    decoder: Network
    bottleneck: Bottleneck
    penalty: Penalty

    def encode(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch L"]:
        """Latent vectors of a batch, `[batch, *sample_shape] → [batch, L]`."""
        return jax.vmap(self.encoder)(x)

    def decode(self, z: Float[Array, "batch L"]) -> Float[Array, "batch ..."]:
        """Decoded samples of a batch of latent vectors, `[batch, L] → [batch, *sample_shape]`."""
        if hasattr(self.decoder, "decode_batch"):  # a decoder with a faster batched form
            return self.decoder.decode_batch(z)
        return jax.vmap(self.decoder)(z)

    def __call__(
        self, x: Float[Array, "batch ..."], k: Int[Array, ""] | int | None = None
    ) -> Float[Array, "batch ..."]:
        """The training-time reconstruction of a batch (the bottleneck couples its samples)."""
        return self.decode(self.bottleneck.train(self.encode(x), k))

    def reconstruct(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        """Inference-time reconstruction; each sample's output depends on that sample only."""
        return self.decode(self.bottleneck.infer(self.encode(x)))

    def compress(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch d"]:
        """The codes the decoder consumes (`k` basis coefficients for RRAEs), `[batch, d]`."""
        return self.bottleneck.codes(self.encode(x))

    def decompress(self, a: Float[Array, "batch d"]) -> Float[Array, "batch ..."]:
        """Samples decoded from codes, `[batch, d] → [batch, *sample_shape]`."""
        return self.decode(self.bottleneck.from_codes(a))

    def loss(
        self, x: Float[Array, "batch ..."], k: Int[Array, ""] | int, mode: str = "train"
    ) -> Float[Array, ""]:
        """The training objective; see :func:`rrae_fast.models.reconstruction_loss`."""
        return reconstruction_loss(self, x, k, mode)
