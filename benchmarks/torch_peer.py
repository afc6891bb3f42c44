"""The paper's CNN RRAE and its training step in PyTorch: the peer of `bench_training.py`.

The same model as `rrae_fast.models.build_model(ModelConfig(kind=..., latent_size=L, k=k),
(c, h, w))` builds (the paper's CNN, Appendix C), the same loss and the same optimizer, written
with `torch.nn` layers so that one PyTorch training step can be timed beside ours:

* encoder: `Conv2d(c → 32)`, `Conv2d(32 → 64)` (kernel 3, stride 2, padding 1, ReLU after
  each), flatten (channels first, as `[c, h, w].reshape(-1)`), `Linear(features → L)`;
* bottleneck: the latent matrix `Z: [batch, L]` truncated to rank `k` with
  `torch.linalg.svd(Z, full_matrices=False)` (keep the top `k` triplets, `U_k diag(s_k) V_kᵀ`;
  autograd differentiates through the thin SVD). One difference from `rank_reduce`: where
  `Z` has repeated singular values (a batch holding the same sample twice gives tied zeros),
  autograd through the SVD returns NaN gradients, at k = 2 as at k = 64; ours stays finite.
  The benchmark's batches hold 64 distinct images;
* decoder: `Linear(L → 32·d0·d1)`, reshape to `[32, d0, d1]`, four `ConvTranspose2d` (kernel
  3, stride 2, padding 1, output padding 1; 32 → 256 → 128 → 32 → 8, ReLU after each), then
  `Conv2d(8 → c)` with the kernel `(16·d0 − h + 1, 16·d1 − w + 1)` that crops to `(h, w)`
  (1×1 at 64×64), no activation;
* loss: `100·‖X̂ − X‖_F/‖X‖_F` over the whole batch (the norms as `√(Σ a²)`, see :func:`norm`);
* optimizer: :class:`AdaBelief`, Optax's `optax.adabelief` (defaults b1 = 0.9, b2 = 0.999,
  eps = 1e-16, eps_root = 1e-16) written out operation by operation.

How the weights map (:func:`parameter_map` names the Equinox array of each PyTorch parameter,
:func:`to_torch_layout` / :func:`to_eqx_layout` convert):

* `Linear`: weight `[out, in]` and bias `[out]` in both libraries; copied as they are.
* `Conv2d`: weight `[out, in, kh, kw]` (OIHW) in both; Equinox's bias is `[out, 1, 1]`,
  PyTorch's `[out]` (reshaped).
* `ConvTranspose2d` (Equinox's layer and `rrae_fast.models.ConvTranspose2d` alike): Equinox
  stores `W: [out, in, kh, kw]` and computes the cross-correlation of the stride-dilated,
  padded input with `W` as it is; PyTorch stores `W_t: [in, out, kh, kw]` and computes the
  adjoint of a strided convolution with `W_t`, which is the cross-correlation of the dilated
  input with `W_t` spatially flipped. Hence `W_t[i, o, a, b] = W[o, i, kh−1−a, kw−1−b]`:
  swap the first two axes and flip both kernel axes. Bias `[out, 1, 1]` → `[out]`.

The equivalence (forward, gradients, five optimizer steps) is tested in
`tests/models/test_torch_peer.py`. This module needs torch, numpy and equinox only (it is
imported by file path from the tests, so it imports nothing else from `benchmarks/`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

ENCODER_WIDTHS = (32, 64)
DECODER_WIDTHS = (256, 128, 32, 8)
OUT_AFTER_MLP = 32


class TorchRRAE(nn.Module):
    """The paper's CNN RRAE, `[batch, c, h, w] → [batch, c, h, w]` (samples first)."""

    def __init__(self, image_shape: Sequence[int] = (1, 64, 64), latent_size: int = 200):
        super().__init__()
        c, h, w = (int(d) for d in image_shape)
        convs, channels, hh, ww = [], c, h, w
        for width in ENCODER_WIDTHS:
            convs.append(nn.Conv2d(channels, width, 3, stride=2, padding=1))
            channels, hh, ww = width, (hh - 1) // 2 + 1, (ww - 1) // 2 + 1
        self.convs = nn.ModuleList(convs)
        self.enc_linear = nn.Linear(channels * hh * ww, latent_size)
        scale = 2 ** len(DECODER_WIDTHS)
        d0, d1 = math.ceil(h / scale), math.ceil(w / scale)
        self.first_shape = (OUT_AFTER_MLP, d0, d1)
        self.dec_linear = nn.Linear(latent_size, OUT_AFTER_MLP * d0 * d1)
        deconvs, channels = [], OUT_AFTER_MLP
        for width in DECODER_WIDTHS:
            deconvs.append(
                nn.ConvTranspose2d(channels, width, 3, stride=2, padding=1, output_padding=1)
            )
            channels = width
        self.deconvs = nn.ModuleList(deconvs)
        self.final_conv = nn.Conv2d(channels, c, (scale * d0 - h + 1, scale * d1 - w + 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.enc_linear(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dec_linear(z).reshape(z.shape[0], *self.first_shape)
        for deconv in self.deconvs:
            x = torch.relu(deconv(x))
        return self.final_conv(x)

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return self.decode(truncate(self.encode(x), k))


def truncate(z: torch.Tensor, k: int) -> torch.Tensor:
    """The best rank-`k` approximation of the latent matrix `z: [batch, L]` (thin SVD, top k)."""
    u, s, vh = torch.linalg.svd(z, full_matrices=False)
    return (u[:, :k] * s[:k]) @ vh[:k]


def norm(a: torch.Tensor) -> torch.Tensor:
    """`‖a‖_F` as `√(Σ a²)`: `torch.sum`'s cascade summation, as accurate as XLA's reduction.

    Not `torch.linalg.vector_norm`: its float32 CPU kernel accumulates without cascading
    (pytorch/pytorch#169237, #151761) and is off by 7e-5 (relative) on one batch of 64
    standardised 64×64 images, which moves the loss by 0.007 at 100.
    """
    return torch.sqrt(torch.sum(torch.square(a)))


def loss_fn(model: TorchRRAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """`100·‖X̂ − X‖_F/‖X‖_F` over the whole batch (rrae_fast's `relative_error_loss`)."""
    return 100.0 * norm(model(x, k) - x) / norm(x)


class AdaBelief:
    """`optax.adabelief(lr, b1, b2, eps, eps_root)` on a list of tensors, written out.

    Per parameter, with `t` the step count after the increment (as `scale_by_belief` then
    `scale_by_learning_rate` and `apply_updates` compute it):

        m ← (1 − b1)·g + b1·m
        s ← (1 − b2)·(g − m)² + b2·s + eps_root
        m̂ = m / (1 − b1^t),  ŝ = s / (1 − b2^t)
        p ← p + (−lr)·(m̂ / (√ŝ + eps))

    `1 − b^t` is computed in float64 and rounded to the parameters' dtype, as Optax does
    under JAX's 64-bit mode (`(1 − decay**count).astype(moment.dtype)`); in 32-bit mode Optax
    computes it in float32, where `1 − 0.999^t` cancels (off by ~1e-5 relative at t = 1), so
    the updates then differ by that much. The step count is a tensor, so that a compiled
    update does not recompile every step.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-16,
        eps_root: float = 1e-16,
    ):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps, self.eps_root = lr, b1, b2, eps, eps_root
        self.mu = [torch.zeros_like(p) for p in self.params]
        self.nu = [torch.zeros_like(p) for p in self.params]
        self.count = torch.zeros((), dtype=torch.int32)

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        update(self.params, grads, self.mu, self.nu, self.count, self.hyper())

    def hyper(self) -> tuple[float, float, float, float, float]:
        return (self.lr, self.b1, self.b2, self.eps, self.eps_root)


def update(params, grads, mu, nu, count, hyper) -> None:
    """One AdaBelief update, in place on `params`, `mu`, `nu` and `count` (see
    :class:`AdaBelief`); a plain function so that `torch.compile` can take it."""
    lr, b1, b2, eps, eps_root = hyper
    count.add_(1)
    t = count.to(torch.float64)
    bc1 = 1 - torch.tensor(b1, dtype=torch.float64) ** t
    bc2 = 1 - torch.tensor(b2, dtype=torch.float64) ** t
    for p, g, m, s in zip(params, grads, mu, nu):
        m.copy_((1 - b1) * g + b1 * m)
        s.copy_((1 - b2) * (g - m) ** 2 + b2 * s + eps_root)
        u = (m / bc1.to(m.dtype)) / (torch.sqrt(s / bc2.to(s.dtype)) + eps)
        p.copy_(p + (-lr) * u)


# ---------------------------------------------------------------------------------------------
# Weights: the Equinox model's arrays by PyTorch parameter name, and the layout conversions.
# ---------------------------------------------------------------------------------------------


def parameter_map(eqx_model) -> dict:
    """`{PyTorch parameter name: the corresponding array of the Equinox model}`.

    Works on anything shaped like the model (its gradients, its updates). The arrays are in
    Equinox's layout; see :func:`to_torch_layout`.
    """
    enc, dec = eqx_model.encoder, eqx_model.decoder
    out = {}
    for prefix, layers in (("convs", enc.convs), ("deconvs", dec.deconvs)):
        for i, layer in enumerate(layers):
            out[f"{prefix}.{i}.weight"] = layer.weight
            out[f"{prefix}.{i}.bias"] = layer.bias
    for name, layer in (
        ("enc_linear", enc.linear),
        ("dec_linear", dec.linear),
        ("final_conv", dec.final_conv),
    ):
        out[f"{name}.weight"] = layer.weight
        out[f"{name}.bias"] = layer.bias
    return out


def to_torch_layout(name: str, array) -> np.ndarray:
    """An Equinox array in the layout of the PyTorch parameter `name` (numpy, same dtype)."""
    a = np.asarray(array)
    if name.startswith("deconvs.") and name.endswith(".weight"):
        return np.ascontiguousarray(np.flip(a.swapaxes(0, 1), axis=(2, 3)))
    if name.endswith(".bias"):
        return a.reshape(-1)
    return a


def to_eqx_layout(name: str, tensor: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """The inverse of :func:`to_torch_layout`: a PyTorch tensor in Equinox's layout `shape`."""
    a = tensor.detach().cpu().numpy()
    if name.startswith("deconvs.") and name.endswith(".weight"):
        a = np.flip(a, axis=(2, 3)).swapaxes(0, 1)
    return np.ascontiguousarray(a.reshape(shape))


def from_eqx(eqx_model, image_shape: Sequence[int] = (1, 64, 64)) -> TorchRRAE:
    """A :class:`TorchRRAE` holding a copy of the Equinox CNN RRAE's weights (same dtype)."""
    arrays = parameter_map(eqx_model)
    latent = eqx_model.encoder.linear.weight.shape[0]
    dtype = torch.from_numpy(np.zeros(0, np.asarray(arrays["enc_linear.weight"]).dtype)).dtype
    model = TorchRRAE(image_shape, latent).to(dtype)
    params = dict(model.named_parameters())
    if set(params) != set(arrays):
        raise ValueError(f"parameter names differ: {sorted(set(params) ^ set(arrays))}")
    with torch.no_grad():
        for name, p in params.items():
            value = torch.from_numpy(to_torch_layout(name, arrays[name]).copy())
            if value.shape != p.shape:
                raise ValueError(f"{name}: Equinox {tuple(value.shape)}, torch {tuple(p.shape)}")
            p.copy_(value)
    return model


# ---------------------------------------------------------------------------------------------
# The training step.
# ---------------------------------------------------------------------------------------------


def make_step(
    model: TorchRRAE, k: int, lr: float = 1e-3, compiled: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`step(x) → loss`: one AdaBelief training step of `model` on the batch `x` (in place).

    The loss returned is the one of the parameters before the update (as rrae_fast's
    `make_step` returns it). With `compiled=True`, the forward pass with its loss (so its
    backward pass too, through AOTAutograd) and the optimizer update are each
    `torch.compile`d; the SVD itself stays an ATen call (Inductor does not lower it).
    """
    opt = AdaBelief(model.parameters(), lr=lr)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return loss_fn(model, x, k)

    apply = update
    if compiled:
        loss_of = torch.compile(loss_of)
        apply = torch.compile(update)

    def step(x: torch.Tensor) -> torch.Tensor:
        for p in opt.params:
            p.grad = None
        loss = loss_of(x)
        loss.backward()
        with torch.no_grad():
            apply(opt.params, [p.grad for p in opt.params], opt.mu, opt.nu, opt.count, opt.hyper())
        return loss.detach()

    return step
