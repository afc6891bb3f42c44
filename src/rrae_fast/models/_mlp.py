"""Multilayer-perceptron encoder and decoder for 1-D data `[t]` (the paper's MLP variant)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
from jax import Array
from jaxtyping import Float, PRNGKeyArray

from ._cnn import identity


class MLPEncoder(eqx.Module):
    """`[t]` → `[latent_size]`: an MLP with ReLU hidden layers and an identity output.

    `linear` is the last layer (the contractive penalty differentiates through it).
    """

    hidden: eqx.nn.MLP | None
    linear: eqx.nn.Linear
    final_activation: Callable[[Array], Array]
    in_size: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        latent_size: int,
        width: int = 64,
        depth: int = 1,
        final_activation: Callable[[Array], Array] = identity,
        *,
        key: PRNGKeyArray,
    ):
        """Args:
        in_size: `t`, the length of one sample.
        latent_size: `L`.
        width: width of the hidden layers.
        depth: number of hidden layers (0: a single Linear layer).
        final_activation: elementwise map applied to the latent vector.
        key: PRNG key for the initialisation.
        """
        if in_size < 1 or latent_size < 1 or width < 1 or depth < 0:
            raise ValueError("in_size, latent_size, width must be ≥ 1 and depth ≥ 0")
        k1, k2 = jax.random.split(key)
        if depth == 0:
            self.hidden, last_in = None, in_size
        else:
            # An MLP of `depth - 1` hidden layers whose output layer is activated too.
            self.hidden = eqx.nn.MLP(
                in_size, width, width, depth - 1, jax.nn.relu, jax.nn.relu, key=k1
            )
            last_in = width
        self.linear = eqx.nn.Linear(last_in, latent_size, key=k2)
        self.final_activation = final_activation
        self.in_size = in_size
        self.latent_size = latent_size

    def features(self, x: Float[Array, " t"]) -> Float[Array, " features"]:
        """The input of the last Linear layer."""
        if x.shape != (self.in_size,):
            raise ValueError(f"expected one sample of shape ({self.in_size},), got {x.shape}")
        return x if self.hidden is None else self.hidden(x)

    def __call__(self, x: Float[Array, " t"]) -> Float[Array, " latent"]:
        return self.final_activation(self.linear(self.features(x)))


class MLPDecoder(eqx.Module):
    """`[latent_size]` → `[t]`: an MLP with ReLU hidden layers and an identity output."""

    mlp: eqx.nn.MLP
    final_activation: Callable[[Array], Array]
    latent_size: int = eqx.field(static=True)

    def __init__(
        self,
        latent_size: int,
        out_size: int,
        width: int = 64,
        depth: int = 6,
        final_activation: Callable[[Array], Array] = identity,
        *,
        key: PRNGKeyArray,
    ):
        """Args:
        latent_size: `L`.
        out_size: `t`, the length of one sample.
        width: width of the hidden layers.
        depth: number of hidden layers.
        final_activation: elementwise map applied to the output.
        key: PRNG key for the initialisation.
        """
        if out_size < 1 or latent_size < 1 or width < 1 or depth < 0:
            raise ValueError("out_size, latent_size, width must be ≥ 1 and depth ≥ 0")
        self.mlp = eqx.nn.MLP(latent_size, out_size, width, depth, jax.nn.relu, key=key)
        self.final_activation = final_activation
        self.latent_size = latent_size

    def __call__(self, z: Float[Array, " latent"]) -> Float[Array, " t"]:
        if z.shape != (self.latent_size,):
            raise ValueError(
                f"expected one latent vector of shape ({self.latent_size},), got {z.shape}"
            )
        return self.final_activation(self.mlp(z))
