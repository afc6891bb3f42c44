"""`ConvTranspose2d`: Equinox's transposed convolution computed as sub-pixel convolutions.

Same parameters, same outputs as `eqx.nn.ConvTranspose2d`, but no input (lhs) dilation, whose
backward pass XLA runs very slowly on CPU.

Derivation, along one spatial axis (the two axes are independent). Equinox computes

    y[o] = Σ_j w[j] · v[o + d·j],    o = 0 … L−1,

a cross-correlation (the kernel is neither flipped nor transposed: `weight` is used as it is)
of the kernel `w[0 … k−1]`, dilated by `d`, with `v`: the input `x[0 … n−1]` with `s − 1`
zeros put between its entries, then padded by `P0 = d·(k−1) − p` zeros before and
`P1 = d·(k−1) − p + op` after, so `v[t] = x[(t − P0)/s]` when `s` divides `t − P0` and the
quotient lies in `[0, n)`, else 0. The output length is `L = (n−1)·s + 1 + P0 + P1 − d·(k−1)`.

Put `q = o − P0 = s·a + r` with phase `r ∈ [0, s)`. Tap `j` reaches an input entry iff `s`
divides `r + d·j`, and then it reads `x[a + e]` with `e = (r + d·j)/s ≥ 0`. So for each phase
`r` the sequence `z_r[a] = y[P0 + s·a + r]` is a plain correlation of `x` with a small kernel
`K_r[e] = w[j]` (zero where no tap maps to `e`): no zeros are inserted into `x`. All phases
share the offsets `e ∈ [0, m)`, `m = max e + 1`, so one convolution with `s_h·s_w·out`
output channels computes every phase at once on the low-resolution input. It is evaluated
for `a ∈ [a0, a1]`, `a0 = ⌊−P0/s⌋`, `a1 = ⌊(L − 1 − P0)/s⌋`, which needs `x` padded by `−a0`
before and `a1 + m − n` after. Interleaving the phases (depth-to-space) gives `y` on
`q ∈ [s·a0, s·a1 + s)`, and the output is the `L` entries from `q = −P0`, i.e. from index
`−P0 − s·a0 = (−P0) mod s`.

For `k = 3, s = 2, d = 1` (the paper's decoder) the phases use 2, 1 taps per axis (`m = 2`),
so the fused kernel is `2 × 2` for each of the four phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jaxtyping import Float, PRNGKeyArray

_Pair = int | Sequence[int]
_Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


def _pair(value: _Pair, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 2:
        raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}")
    return out  # type: ignore[return-value]


def _padding_pairs(padding: _Padding) -> str | tuple[tuple[int, int], ...]:
    """Equinox's normal form of `padding`: an upper-case string or one (before, after) per axis."""
    if isinstance(padding, str):
        padding = padding.upper()
        if padding not in ("SAME", "SAME_LOWER", "VALID"):
            raise ValueError("`padding` string must be 'SAME', 'SAME_LOWER' or 'VALID'")
        return padding
    if isinstance(padding, int):
        return ((padding, padding),) * 2
    items = list(padding)
    if len(items) != 2:
        raise ValueError(f"`padding` must have one entry per spatial axis, got {padding!r}")
    if all(isinstance(p, int) for p in items):
        return tuple((int(p), int(p)) for p in items)
    pairs = tuple(tuple(int(v) for v in p) for p in items)
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"`padding` entries must be ints or (before, after) pairs: {padding!r}")
    return pairs  # type: ignore[return-value]


def _dilated_input_padding(
    k: int, s: int, d: int, op: int, padding: str | tuple[int, int]
) -> tuple[int, int]:
    """`(P0, P1)`: zeros Equinox adds before/after the dilated input along one axis.

    Mirrors `eqx.nn.ConvTranspose`, string paddings included.
    """
    if padding == "VALID":
        p0 = p1 = 0
    elif isinstance(padding, str):
        # The total padding that gives an output of length s·n; output_padding is folded into
        # it, and only a shortfall (negative sum) is added back as output padding.
        p_sum = d * (k - 1) - s + op + 1
        op, p_sum = max(-p_sum, 0), max(p_sum, 0)
        p0 = (p_sum + (padding == "SAME_LOWER")) // 2
        p1 = p_sum - p0
    else:
        p0, p1 = padding
    return d * (k - 1) - p0, d * (k - 1) - p1 + op


class _AxisPlan(NamedTuple):
    """Static index arithmetic of one spatial axis (see the module docstring).

    taps: `[s, m]`, the kernel index `j` feeding phase `r` at offset `e`, or `k` for none.
    pad: zeros added to the input before/after (a negative count crops).
    start: first output entry in the interleaved phases.
    length: the output length `L`.
    """

    taps: np.ndarray
    pad: tuple[int, int]
    start: int
    length: int


def _axis_plan(n: int, k: int, s: int, d: int, before: int, after: int) -> _AxisPlan:
    length = (n - 1) * s + 1 + before + after - d * (k - 1)
    if length < 1:
        raise ValueError(f"the padding leaves no output along an axis of input length {n}")
    offsets = {
        (r, (r + d * j) // s): j for r in range(s) for j in range(k) if (r + d * j) % s == 0
    }
    m = max(e for _, e in offsets) + 1
    taps = np.full((s, m), k, dtype=np.intp)
    for (r, e), j in offsets.items():
        taps[r, e] = j
    a0 = -before // s
    a1 = (length - 1 - before) // s
    return _AxisPlan(taps, (-a0, a1 + m - n), -before - s * a0, length)


class ConvTranspose2d(eqx.Module):
    """Drop-in replacement for `eqx.nn.ConvTranspose2d` (zero padding mode) on one sample.

    The parameters and their meaning are Equinox's, so `from_eqx`/`to_eqx` convert exactly and
    the outputs agree to rounding. The map is computed by one regular convolution of the
    low-resolution input that yields all `s_h·s_w` output phases as channels, a depth-to-space
    interleave and a crop; its forward and backward passes avoid input dilation.

    Dilation > 1 is supported, but taps that fall between phases become zeros of the fused
    kernel, so it is only fast for `dilation = 1` (or `dilation` a multiple of `stride`).

    Attributes:
        weight: `[out_channels, in_channels // groups, kh, kw]`, as in Equinox.
        bias: `[out_channels, 1, 1]`, or None when `use_bias` is False.
    """

    weight: Float[Array, "c_out c_in_g kh kw"]
    bias: Float[Array, "c_out 1 1"] | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, int] = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)
    padding: str | tuple[tuple[int, int], ...] = eqx.field(static=True)
    output_padding: tuple[int, int] = eqx.field(static=True)
    dilation: tuple[int, int] = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        output_padding: _Pair = 0,
        padding: _Padding = 0,
        dilation: _Pair = 1,
        groups: int = 1,
        use_bias: bool = True,
        padding_mode: str = "ZEROS",
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        """Same arguments, in the same order, as `eqx.nn.ConvTranspose2d`.

        Note Equinox's order: `output_padding` comes before `padding`.

        Args:
            in_channels: input channels `c_in`.
            out_channels: output channels `c_out`.
            kernel_size: `k` or `(kh, kw)`.
            stride: the stride `s` of the equivalent convolution (the upsampling factor).
            output_padding: extra rows/columns at the bottom/right; must be `< stride`.
            padding: padding of the equivalent convolution: int, pair, pair of
                `(before, after)` pairs, or 'VALID' / 'SAME' / 'SAME_LOWER'.
            dilation: spacing between kernel taps.
            groups: channel groups; both channel counts must be divisible by it.
            use_bias: whether to add a bias `[c_out, 1, 1]`.
            padding_mode: only 'ZEROS' is supported (ValueError otherwise).
            dtype: parameter dtype (Equinox's default floating dtype when None).
            key: PRNG key; the parameters equal those of `eqx.nn.ConvTranspose2d` built with it.
        """
        _check_supported(in_channels, out_channels, groups, padding_mode)
        reference = eqx.nn.ConvTranspose2d(
            in_channels,
            out_channels,
            _pair(kernel_size, "kernel_size"),
            _pair(stride, "stride"),
            _pair(output_padding, "output_padding"),
            _padding_pairs(padding),
            _pair(dilation, "dilation"),
            groups,
            use_bias,
            "ZEROS",
            dtype,
            key=key,
        )
        for name, value in _fields_of(reference).items():
            setattr(self, name, value)

    @classmethod
    def from_eqx(cls, layer: eqx.nn.ConvTranspose) -> ConvTranspose2d:
        """The layer computing the same map as a 2-D `eqx.nn.ConvTranspose`, sharing its arrays."""
        if not isinstance(layer, eqx.nn.ConvTranspose) or layer.num_spatial_dims != 2:
            raise ValueError(f"expected a 2-D eqx.nn.ConvTranspose, got {type(layer).__name__}")
        _check_supported(layer.in_channels, layer.out_channels, layer.groups, layer.padding_mode)
        self = object.__new__(cls)
        for name, value in _fields_of(layer).items():
            object.__setattr__(self, name, value)  # the module is frozen outside __init__
        return self

    def to_eqx(self) -> eqx.nn.ConvTranspose2d:
        """The `eqx.nn.ConvTranspose2d` with these parameters (the arrays are shared)."""
        layer = eqx.nn.ConvTranspose2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.output_padding,
            self.padding,
            self.dilation,
            self.groups,
            self.use_bias,
            "ZEROS",
            self.weight.dtype,
            key=jax.random.key(0),  # the initial values are replaced just below
        )
        layer = eqx.tree_at(lambda t: t.weight, layer, self.weight)
        if self.bias is not None:
            layer = eqx.tree_at(lambda t: t.bias, layer, self.bias)
        return layer

    def _plans(self, h: int, w: int) -> tuple[_AxisPlan, _AxisPlan]:
        pads = self.padding if isinstance(self.padding, str) else None
        plans = []
        for axis, n in enumerate((h, w)):
            k, s, d = self.kernel_size[axis], self.stride[axis], self.dilation[axis]
            padding = pads if pads is not None else self.padding[axis]
            before, after = _dilated_input_padding(k, s, d, self.output_padding[axis], padding)
            plans.append(_axis_plan(n, k, s, d, before, after))
        return plans[0], plans[1]

    def __call__(
        self, x: Float[Array, "c_in h w"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "c_out h_out w_out"]:
        """Transposed convolution of one sample.

        Args:
            x: `[c_in, h, w]`.
            key: ignored (Equinox layer convention).

        Returns:
            `[c_out, h_out, w_out]` with `h_out = (h−1)·s − p_before − p_after + d·(k−1) + op + 1`
            (likewise `w_out`), equal to `eqx.nn.ConvTranspose2d`'s output.
        """
        del key
        if x.ndim != 3:
            raise ValueError(f"ConvTranspose2d takes one sample [c_in, h, w], got shape {x.shape}")
        if x.shape[0] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got shape {x.shape}")
        ph, pw = self._plans(x.shape[1], x.shape[2])
        (sh, mh), (sw, mw) = ph.taps.shape, pw.taps.shape

        g, c_out, c_in = self.groups, self.out_channels, self.in_channels

        # Fused kernel [g, c_out/g, c_in/g, sh, sw, mh, mw]: the taps of every phase, gathered,
        # with the appended zero row/column (index k) filling offsets that no tap reaches. A
        # gather keeps the values exact (a one-hot matmul could round them, e.g. TF32 on GPUs).
        wz = jnp.pad(self.weight, ((0, 0), (0, 0), (0, 1), (0, 1)))
        kernel = wz[:, :, ph.taps[:, None, :, None], pw.taps[None, :, None, :]]
        kernel = kernel.reshape(g, c_out // g, c_in // g, sh, sw, mh, mw)

        # Low-resolution input with the plan's padding (negative pads are crops), then its
        # im2col patches [mh, mw, g, c_in/g, ah, aw]. The correlation is written as one
        # dot_general rather than a convolution: every transpose of it is again a GEMM, whereas
        # XLA's CPU weight gradient of a padded convolution is slower than the lhs-dilated one.
        x = x[:, max(-ph.pad[0], 0) : x.shape[1] - max(-ph.pad[1], 0)]
        x = x[:, :, max(-pw.pad[0], 0) : x.shape[2] - max(-pw.pad[1], 0)]
        x = jnp.pad(x, ((0, 0),) + tuple((max(p[0], 0), max(p[1], 0)) for p in (ph.pad, pw.pad)))
        ah, aw = x.shape[1] - mh + 1, x.shape[2] - mw + 1
        patches = jnp.stack(
            [jnp.stack([x[:, e : e + ah, f : f + aw] for f in range(mw)]) for e in range(mh)]
        ).reshape(mh, mw, g, c_in // g, ah, aw)
        z = jnp.einsum("gocRSef,efgcuv->gouRvS", kernel, patches)

        # Depth-to-space: phase (r_h, r_w) at low-res (a_h, a_w) is output (s_h·a_h + r_h, …).
        y = z.reshape(c_out, ah * sh, aw * sw)
        y = y[:, ph.start : ph.start + ph.length, pw.start : pw.start + pw.length]
        if self.bias is not None:
            y = y + self.bias
        return y


def _fields_of(layer: eqx.nn.ConvTranspose) -> dict:
    """The attributes of a `ConvTranspose2d` equal to those of an Equinox layer."""
    return {
        "weight": layer.weight,
        "bias": layer.bias,
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel_size": tuple(layer.kernel_size),
        "stride": tuple(layer.stride),
        "padding": layer.padding,
        "output_padding": tuple(layer.output_padding),
        "dilation": tuple(layer.dilation),
        "groups": layer.groups,
        "use_bias": layer.use_bias,
    }


def _check_supported(in_channels: int, out_channels: int, groups: int, padding_mode: str) -> None:
    if padding_mode.upper() != "ZEROS":
        raise ValueError(f"only padding_mode='ZEROS' is supported, got {padding_mode!r}")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )
