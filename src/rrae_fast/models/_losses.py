"""Training losses: the relative reconstruction error in percent, plus each baseline's term.

Every loss is `ℓ(X̂, X) = 100·‖X̂ − X‖_F / ‖X‖_F` over the whole batch at once (not a mean of
per-sample errors), with the extra terms of the sparse, contractive and weak-RRAE baselines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import jax.numpy as jnp
from jax import Array
from jaxtyping import Float, Int

from ..svd import rank_reduce

if TYPE_CHECKING:  # the autoencoder module imports this one
    from ._autoencoder import Autoencoder

_KL_EPS = 1e-8  # keeps log(ρ/ρ̂) finite when the mean activation reaches 0 or 1


def relative_error_loss(x_hat: Array, x: Array) -> Float[Array, ""]:
    """The training loss `100·‖x̂ − x‖_F/‖x‖_F` over every entry of the two arrays (traced,
    differentiable, in the arrays' dtype). The evaluation metric of a whole set, accumulated in
    float64, is :func:`rrae_fast.evaluation.relative_error`."""
    return 100.0 * jnp.linalg.norm((x_hat - x).ravel()) / jnp.linalg.norm(x.ravel())


class Penalty(eqx.Module):
    """No extra term (long, diabolo, IRMAE, RRAE and the basis autoencoders)."""

    def __call__(self, model, x: Array, z: Array, k: Int[Array, ""] | int) -> Array:
        return jnp.zeros((), z.dtype)


class SparsePenalty(Penalty):
    """`β·KL(ρ ‖ ρ̂)` with `ρ̂` the mean of every latent entry of the batch (one scalar).

    This is the authors' definition (one KL term for the whole batch), not the textbook sum
    over latent units; the latent is expected in (0, 1) (a sigmoid final activation).
    """

    rho: float = eqx.field(static=True, default=0.05)
    beta: float = eqx.field(static=True, default=1.0)

    def __call__(self, model, x, z, k):
        rho_hat = jnp.mean(z)
        rho = self.rho
        kl = rho * jnp.log(rho / (rho_hat + _KL_EPS)) + (1 - rho) * jnp.log(
            (1 - rho) / (1 - rho_hat + _KL_EPS)
        )
        return self.beta * kl


class ContractivePenalty(Penalty):
    """`β·Σ_batch Σ_i (h_i(1 − h_i))² Σ_j W_ij²`: the squared Frobenius norm of `∂h/∂f`.

    `h = sigmoid(W f + b)` is the latent vector and `W` the weight of the encoder's last Linear
    layer, so the Jacobian of `h` with respect to the features `f` is `diag(h(1 − h)) W`;
    summed (not averaged) over the batch, as in the authors' code.
    """

    beta: float = eqx.field(static=True, default=1.0)

    def __call__(self, model, x, z, k):
        w2 = jnp.sum(model.encoder.linear.weight**2, axis=1)  # [L]
        return self.beta * jnp.sum((z * (1 - z)) ** 2 @ w2)


class WeakRankPenalty(Penalty):
    """`100·‖Y − T_k(Y)‖_F/‖Y‖_F`: distance of the latent matrix to its rank-`k` truncation.

    The weak RRAE keeps the long latent in the forward pass and only pushes it towards rank
    `k` through this term (weight 1), differentiated through the truncated SVD.
    """

    k: int = eqx.field(static=True, default=1)

    def __call__(self, model, x, z, k):
        return relative_error_loss(rank_reduce(z, self.k), z)


def reconstruction_loss(
    model: Autoencoder, x: Float[Array, "batch ..."], k: Int[Array, ""] | int, mode: str = "train"
) -> Float[Array, ""]:
    """The training objective of `model` on the batch `x` with bottleneck `k`.

    Args:
        model: an :class:`~rrae_fast.models.Autoencoder`.
        x: the batch, samples in the first axis.
        k: the bottleneck for rank-reducing models (ignored by the others).
        mode: `"train"` (the main stage's latent operation, plus the model's penalty) or
            `"infer"` (projection onto the final basis, for decoder fine-tuning; no penalty).
    """
    z = model.encode(x)
    if mode == "train":
        x_hat = model.decode(model.bottleneck.train(z, k))
        return relative_error_loss(x_hat, x) + model.penalty(model, x, z, k)
    if mode == "infer":
        return relative_error_loss(model.decode(model.bottleneck.infer(z)), x)
    raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
