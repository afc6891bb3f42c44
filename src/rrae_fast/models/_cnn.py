"""The paper's convolutional encoder and decoder (Appendix C), for any `[c, h, w]` input.

Both are per-sample networks, as Equinox layers are: the encoder maps one image `[c, h, w]` to a
latent vector `[latent_size]`, the decoder maps it back. The autoencoder vmaps them over the
batch (first axis).

Encoder: `len(widths)` convolutions (kernel 3, stride 2, padding 1, each followed by ReLU), a
flatten and one Linear layer to the latent size. Decoder: one Linear layer to
`out_after_mlp · d0 · d1`, a reshape, `len(widths)` stride-2 transposed convolutions (kernel 3,
padding 1, output padding 1: each doubles the size; ReLU after every one, as the authors' code
does), then one convolution whose kernel `(16·d0 − h + 1, 16·d0 − w + 1)` crops to the input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array
from jaxtyping import Float, PRNGKeyArray

from ._conv import ConvTranspose2d

_KERNEL, _STRIDE, _PADDING, _OUTPUT_PADDING = 3, 2, 1, 1


def identity(x: Array) -> Array:
    """The identity map (the default final activation)."""
    return x


def _conv_out(size: int) -> int:
    """Output length of one encoder convolution: ⌊(size + 2p − k)/s⌋ + 1 = ⌈size/2⌉."""
    return (size + 2 * _PADDING - _KERNEL) // _STRIDE + 1


def _check_image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(d) < 1 for d in shape):
        raise ValueError(f"image shape must be (channels, height, width), got {tuple(shape)}")
    c, h, w = (int(d) for d in shape)
    return c, h, w


class CNNEncoder(eqx.Module):
    """Strided convolutions, flatten, Linear: `[c, h, w]` → `[latent_size]` (one sample).

    Attributes:
        convs: the convolutions, `widths[i]` output channels each.
        linear: the final Linear layer, `[features] → [latent_size]` with bias.
        final_activation: applied to the latent vector (identity, or a sigmoid for the sparse
            and contractive autoencoders).
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    linear: eqx.nn.Linear
    final_activation: Callable[[Array], Array]
    image_shape: tuple[int, int, int] = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_size: int,
        widths: Sequence[int] = (32, 64),
        final_activation: Callable[[Array], Array] = identity,
        *,
        key: PRNGKeyArray,
    ):
        """Args:
        image_shape: `(c, h, w)` of one input image.
        latent_size: `L`, the length of the latent vector.
        widths: output channels of the strided convolutions.
        final_activation: elementwise map applied to the latent vector.
        key: PRNG key for the initialisation.
        """
        c, h, w = _check_image_shape(image_shape)
        if latent_size < 1 or not widths:
            raise ValueError("latent_size must be ≥ 1 and widths non-empty")
        keys = jax.random.split(key, len(widths) + 1)
        convs, channels = [], c
        for width, k in zip(widths, keys[:-1]):
            convs.append(eqx.nn.Conv2d(channels, width, _KERNEL, _STRIDE, _PADDING, key=k))
            channels, h, w = width, _conv_out(h), _conv_out(w)
        self.convs = tuple(convs)
        self.linear = eqx.nn.Linear(channels * h * w, latent_size, key=keys[-1])
        self.final_activation = final_activation
        self.image_shape = _check_image_shape(image_shape)
        self.latent_size = latent_size

    def features(self, x: Float[Array, "c h w"]) -> Float[Array, " features"]:
        """The flattened convolutional features that feed the final Linear layer."""
        if x.shape != self.image_shape:
            raise ValueError(f"expected one image of shape {self.image_shape}, got {x.shape}")
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return x.reshape(-1)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, " latent"]:
        return self.final_activation(self.linear(self.features(x)))


class CNNDecoder(eqx.Module):
    """Linear, reshape, doubling transposed convolutions, cropping convolution (one sample).

    Attributes:
        linear: `[latent_size] → [out_after_mlp · d0 · d1]`, no activation.
        deconvs: the stride-2 transposed convolutions, each followed by ReLU.
        final_conv: the convolution that maps to `c` channels and crops to `(h, w)`.
        final_activation: applied to the output image (identity by default).
    """

    linear: eqx.nn.Linear
    deconvs: tuple[ConvTranspose2d | eqx.nn.ConvTranspose2d, ...]
    final_conv: eqx.nn.Conv2d
    final_activation: Callable[[Array], Array]
    first_shape: tuple[int, int, int] = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)

    def __init__(
        self,
        latent_size: int,
        image_shape: Sequence[int],
        widths: Sequence[int] = (256, 128, 32, 8),
        out_after_mlp: int = 32,
        final_activation: Callable[[Array], Array] = identity,
        fast_transpose: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        """Args:
        latent_size: `L`, the length of the latent vector.
        image_shape: `(c, h, w)` of one output image.
        widths: output channels of the transposed convolutions.
        out_after_mlp: channels of the first feature map (32 in the authors' code).
        final_activation: elementwise map applied to the output.
        fast_transpose: use :class:`ConvTranspose2d` (same parameters and outputs
            as `eqx.nn.ConvTranspose2d`, a much cheaper backward pass on CPU); False uses
            Equinox's layer itself.
        key: PRNG key for the initialisation.
        """
        c, h, w = _check_image_shape(image_shape)
        if latent_size < 1 or not widths or out_after_mlp < 1:
            raise ValueError("latent_size, out_after_mlp must be ≥ 1 and widths non-empty")
        scale = 2 ** len(widths)  # each transposed convolution doubles the size
        d0, d1 = math.ceil(h / scale), math.ceil(w / scale)
        keys = jax.random.split(key, len(widths) + 2)
        layer = ConvTranspose2d if fast_transpose else eqx.nn.ConvTranspose2d
        self.linear = eqx.nn.Linear(latent_size, out_after_mlp * d0 * d1, key=keys[0])
        deconvs, channels = [], out_after_mlp
        for width, k in zip(widths, keys[1:-1]):
            deconvs.append(
                layer(
                    channels,
                    width,
                    _KERNEL,
                    stride=_STRIDE,
                    padding=_PADDING,
                    output_padding=_OUTPUT_PADDING,
                    key=k,
                )
            )
            channels = width
        self.deconvs = tuple(deconvs)
        kernel = (scale * d0 - h + 1, scale * d1 - w + 1)
        self.final_conv = eqx.nn.Conv2d(channels, c, kernel, key=keys[-1])
        self.final_activation = final_activation
        self.first_shape = (out_after_mlp, d0, d1)
        self.latent_size = latent_size

    def __call__(self, z: Float[Array, " latent"]) -> Float[Array, "c h w"]:
        if z.shape != (self.latent_size,):
            raise ValueError(
                f"expected one latent vector of shape ({self.latent_size},), got {z.shape}"
            )
        return self.decode_batch(z[None])[0]

    def decode_batch(self, z: Float[Array, "batch latent"]) -> Float[Array, "batch c h w"]:
        """The decoder applied to a batch, `[batch, L] → [batch, c, h, w]`.

        Same result as vmapping :meth:`__call__`; the fast transposed convolutions see the
        whole batch, so their weight gradients are one product each.
        """
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise ValueError(f"expected latent vectors [batch, {self.latent_size}], got {z.shape}")
        x = jax.vmap(self.linear)(z).reshape(z.shape[0], *self.first_shape)
        fast = [d for d in self.deconvs if isinstance(d, ConvTranspose2d)]
        if len(fast) == len(self.deconvs) and _plain(self.final_conv):
            x = jnp.transpose(x, (0, 2, 3, 1))  # channels last through the whole stack
            for layer in fast:
                x = jax.nn.relu(layer(x, channels_last=True))
            x = jnp.transpose(_final_conv_channels_last(self.final_conv, x), (0, 3, 1, 2))
            return self.final_activation(x)
        for deconv in self.deconvs:
            x = jax.nn.relu(jax.vmap(deconv)(x))
        return jax.vmap(lambda xi: self.final_activation(self.final_conv(xi)))(x)


def _plain(conv: eqx.nn.Conv2d) -> bool:
    """Whether `conv` is a convolution as the decoder builds its final one: stride 1, no
    padding or dilation, one group, zero padding mode."""
    return (
        tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and all(tuple(p) == (0, 0) for p in conv.padding)
        and conv.padding_mode == "ZEROS"
    )


def _final_conv_channels_last(conv: eqx.nn.Conv2d, x: Float[Array, "n h w c"]) -> Array:
    """The decoder's final convolution (stride 1, no padding, as built) of a channels-last
    batch, `[n, h, w, c_in] → [n, h', w', c_out]`: Equinox's layer vmapped over the samples
    would run it channels-first, one sample at a time; at the synthetic set's 1×1 kernel it is
    a product with the channel matrix."""
    w = conv.weight  # [c_out, c_in, kh, kw]
    if w.shape[2:] == (1, 1):
        y = jnp.einsum("nhwi,oi->nhwo", x, w[:, :, 0, 0])
    else:
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "OIHW", "NHWC")
        )
    return y if conv.bias is None else y + conv.bias.reshape(1, 1, 1, -1)
