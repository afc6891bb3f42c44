"""One training step of the paper's CNN RRAE: rrae_fast against the authors' `RRAEs` library
and against the same model in PyTorch (an optional peer).

Setting, the same for every contender: 1×64×64 images (the synthetic Gaussian-bump set, 400
training images), a batch of 64, latent length L = 200, rank k = 2 or k = 64 (one group each),
AdaBelief with lr 1e-3, float32. The architecture is the paper's (encoder Conv 32, 64 +
Linear(16384 → 200); decoder Linear(200 → 512), four stride-2 transposed convolutions
32 → 256 → 128 → 32 → 8, ReLU after each, Conv 8 → 1 with a 1×1 kernel): every library builds
the same parameter shapes (3,806,969 parameters). The measured unit is one optimizer step on
one batch of 64, compiled and warmed up beforehand, blocked on until its outputs are ready.

Contenders (groups "train-step-64x64-b64-k2" and "train-step-64x64-b64-k64", one per rank k;
before k became a parameter the group was "train-step-64x64-b64", at k = 64):

* `authors`: `RRAEs.AE_classes.RRAE_CNN` built by `RRAE_Trainor_class` with the arguments of
  the authors' `main-adap-CNN.py` example (min-max normalisation of input and output, the
  model vmapped over the last axis, samples in the last axis). Their jitted step is a closure
  created inside `Trainor_class.fit` and cannot be reached from outside, so it is rebuilt from
  their own pieces exactly as `fit` assembles it: the filter spec `fit` builds with its default
  `fix_comp` (every leaf trainable), their loss `loss_generator("RRAE")` (their
  `filter_value_and_grad` of `100·‖X̂ − X‖/‖X‖` with `k_max` passed as a keyword, as the
  tracker does), `optax.adabelief(lr)` initialised on the inexact arrays, and the same body
  (partition, loss and gradient, `optim.update(grads, opt_state)`, `apply_updates`, combine)
  under `eqx.filter_jit`. Each timed call also normalises the target batch with the model's
  `norm_out`, which `fit` does eagerly before every step. Not timed: `fit`'s data loader
  (which gathers a batch one sample at a time), the tracker and the printing. As a check of
  this reconstruction, the per-step time of `fit` itself can be estimated from two runs of
  different lengths (their difference cancels the compilation that every `fit` call repeats);
  it also includes those untimed parts. One `fit` step on the same 64 images gives the same
  loss and, up to float rounding (the batch order differs), the same updated parameters as
  this step. Their model's `__call__` does not pass `keep_normalized` on to `decode`, so their
  training loss compares the de-normalised prediction with the normalised target; that is
  what is timed here too.
* `ours_eqx_transpose`: `rrae_fast.training` `make_step` on
  `build_model(..., fast_transpose=False)` (the decoder uses `eqx.nn.ConvTranspose2d`, as the
  authors' decoder does).
* `ours`: the same with `fast_transpose=True` (the default: `rrae_fast.models.ConvTranspose2d`,
  whose derivatives go through the adjoint strided convolution).
* `torch_eager` (optional peer: needs torch, skipped with the reason otherwise): the same model
  in PyTorch, `benchmarks/torch_peer.py` (the same layers and parameter shapes, the weights
  copied from `ours`' initial model, so the first losses agree; the rank-k truncation by
  `torch.linalg.svd(Z, full_matrices=False)` keeping the top k triplets, autograd through it;
  the same loss; AdaBelief written out as Optax computes it), one step in eager mode: zero the
  gradients, forward and loss, `backward()`, the update (in place). Its equivalence to ours
  (forward, gradients, five steps' losses, k = 2 and 64) is `tests/models/test_torch_peer.py`.
  Torch's thread count is left at its default (torch.get_num_threads(), one per core here, as
  XLA's pool; recorded as `torch_threads`). Its OpenMP threads suffer far more than XLA's
  from other load on the machine (on the 2-core machine at load ~4 a step took 2.4 s with 2
  threads, 0.3 s with 1), so only a run on an otherwise idle machine says anything.
* `torch_compile` (optional peer: skipped with the reason when torch is absent or
  `torch.compile` fails here): the same step with the forward pass and loss `torch.compile`d
  (its backward pass through AOTAutograd) and the update `torch.compile`d; compiled (20–30 s
  on 2 cores with a cold Inductor cache) and warmed up before the timing, like ours. The SVD
  stays an ATen call. Its first loss differs from the eager step's by ~1e-5 (relative):
  Inductor's fused float32 sums in the loss round differently.

Group "train-step-mlp-L4096-b1024-k256": a large latent, where the truncated SVD is most of the
step: an MLP RRAE (sample length 512, width 512, latent 4096, batch 1024, k = 256), our step
with `rank_reduce` against the same model and step whose truncation is the authors'
`stable_SVD` (a full thin SVD of the 4096×1024 latent matrix, sliced); `rrae_fast_dense` is
our bottleneck with `method="dense"`.

Run: pytest benchmarks/bench_training.py --benchmark-only -p no:cacheprovider --no-cov
     --benchmark-json=train.json      (a few minutes on 2 CPU cores with torch installed)
"""

from __future__ import annotations

import functools
import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest

from conftest import have, skip
from rrae_fast.data import synthetic_bumps
from rrae_fast.models import ModelConfig, RankReduction, build_model
from rrae_fast.training._step import as_k, init_optimizer, make_step

GROUP = "train-step-64x64-b64"  # and the rank: "train-step-64x64-b64-k64"
SHAPE = (1, 64, 64)
BATCH = 64
LATENT = 200
K = 64
RANKS = (2, 64)
LR = 1e-3
ROUNDS = 5
CONTENDERS = ("authors", "ours_eqx_transpose", "ours", "torch_eager", "torch_compile")


@functools.lru_cache(maxsize=1)
def _images() -> np.ndarray:
    """The 400 training images, `[400, 1, 64, 64]` float32 (samples first)."""
    return np.asarray(synthetic_bumps(train_size=400, test_size=64).x_train, np.float32)


def _batch() -> np.ndarray:
    """A fixed batch of 64 training images, `[64, 1, 64, 64]`."""
    idx = np.random.default_rng(0).permutation(_images().shape[0])[:BATCH]
    return _images()[idx]


def _param_count(model) -> int:
    return int(sum(a.size for a in jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def _time(benchmark, record, fn, settings, out=None) -> None:
    """Compiles and runs `fn` once (unless its first output `out` is given), then times it
    (one warm-up round, `ROUNDS` rounds)."""
    out = jax.block_until_ready(fn()) if out is None else out
    rounds, warmup = (1, 0) if settings["quick"] else (ROUNDS, 1)
    benchmark.pedantic(
        lambda: jax.block_until_ready(fn()), rounds=rounds, iterations=1, warmup_rounds=warmup
    )
    record(first_loss=float(out[0]), loadavg_1m_after=os.getloadavg()[0], rounds=rounds)


def _authors_step(k: int = K):
    """The authors' model and their training step, assembled as `Trainor_class.fit` does."""
    import RRAEs.config  # noqa: F401  (installs the autoencoder base class the models need)
    from RRAEs.AE_classes import RRAE_CNN
    from RRAEs.training_classes import RRAE_Trainor_class
    from RRAEs.utilities import loss_generator

    x_all = jnp.asarray(np.moveaxis(_images(), 0, -1))  # [1, 64, 64, 400]: samples last
    trainor = RRAE_Trainor_class(
        x_all,
        RRAE_CNN,
        latent_size=LATENT,
        height=SHAPE[1],
        width=SHAPE[2],
        channels=SHAPE[0],
        k_max=k,
        norm_in="minmax",
        norm_out="minmax",
        out_train=x_all,
        kwargs_enc={"width_CNNs": [32, 64], "kernel_conv": 3, "stride": 2, "padding": 1},
        kwargs_dec={
            "width_CNNs": [256, 128, 32, 8],
            "kernel_conv": 3,
            "stride": 2,
            "padding": 1,
        },
        key=jax.random.PRNGKey(50),
    )
    model = trainor.model
    loss_fun = loss_generator("RRAE", None)
    optim = optax.adabelief(LR)
    # `fit`'s default `fix_comp` freezes nothing: every leaf of the spec is True.
    filter_spec = jtu.tree_map(lambda _: True, model)
    diff_model, _ = eqx.partition(model, filter_spec)
    opt_state = optim.init(eqx.filter(diff_model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, x, out, opt_state, idx, epsilon, **loss_kwargs):
        diff, static = eqx.partition(model, filter_spec)
        (loss, aux), grads = loss_fun(
            diff, static, x, out, idx=idx, epsilon=epsilon, **loss_kwargs
        )
        updates, opt_state = optim.update(grads, opt_state)
        diff = eqx.apply_updates(diff, updates)
        return loss, eqx.combine(diff, static), opt_state, aux

    x_b = jnp.asarray(np.moveaxis(_batch(), 0, -1))  # [1, 64, 64, 64]
    idx_b = jnp.arange(BATCH)

    def one_step():
        out_b = model.norm_out(x_b)  # `fit` normalises each target batch before the step
        return step(model, x_b, out_b, opt_state, idx_b, None, k_max=k)

    return model, one_step


def _our_model(k: int, fast_transpose: bool = True):
    config = ModelConfig(kind="arrae", latent_size=LATENT, k=k, fast_transpose=fast_transpose)
    return build_model(config, SHAPE, key=jax.random.key(0))


def _ours_step(fast_transpose: bool, k: int = K):
    model = _our_model(k, fast_transpose)
    return model, _our_step(model, jnp.asarray(_batch()), k)


def _torch_step(k: int, compiled: bool):
    """The PyTorch peer (`torch_peer.py`) with the weights of `ours`' initial model."""
    import torch
    import torch_peer

    model = torch_peer.from_eqx(_our_model(k), SHAPE)
    step = torch_peer.make_step(model, k, lr=LR, compiled=compiled)
    x = torch.from_numpy(_batch().copy())

    def one_step():
        return (step(x),)

    return model, one_step


def _our_step(model, x, k: int):
    """One rrae_fast training step of `model` on the batch `x`, as a zero-argument callable."""
    optimizer = optax.adabelief(LR)
    opt_state = init_optimizer(optimizer, model, "train")
    step = make_step(optimizer, "train")
    k = as_k(k)

    def one_step():
        new_model, new_state, loss = step(model, opt_state, x, k)
        return loss, new_model, new_state

    return one_step


def _torch_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _compile_torch(benchmark, record, fn, settings, group: str) -> None:
    """Times the `torch.compile`d step, or skips it (with the reason) if compiling fails."""
    try:
        with warnings.catch_warnings():
            # Inductor's lowering calls its own deprecated helpers (FutureWarning), which this
            # project's `filterwarnings = error` would turn into a failed compilation.
            warnings.simplefilter("ignore", FutureWarning)
            out = fn()  # compiles (the first call), outside the timing
    except Exception as error:  # any failure of the compiler means a skip, with its reason
        reason = f"torch.compile failed here: {type(error).__name__}: {str(error)[:200]}"
        skip(group, "torch_compile", reason)
    _time(benchmark, record, fn, settings, out)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("k", RANKS, ids=[f"k{k}" for k in RANKS])  # one group after the other
def test_train_step(benchmark, record, settings, contender, k):
    group = f"{GROUP}-k{k}"
    benchmark.group = group
    if contender == "authors":
        if not have("RRAEs"):
            skip(group, contender, "the authors' library `RRAEs` (PyPI: rraes) is not installed")
        model, fn = _authors_step(k)
    elif contender.startswith("torch"):
        if not have("torch"):
            skip(group, contender, "torch is not installed (an optional peer; see the README)")
        import torch

        model, fn = _torch_step(k, compiled=contender == "torch_compile")
        record(params=_torch_params(model), batch=BATCH, latent=LATENT, k=k)
        record(torch_threads=torch.get_num_threads())
        if contender == "torch_compile":
            _compile_torch(benchmark, record, fn, settings, group)
        else:
            _time(benchmark, record, fn, settings)
        return
    else:
        model, fn = _ours_step(fast_transpose=contender == "ours", k=k)
    record(params=_param_count(model), batch=BATCH, latent=LATENT, k=k)
    _time(benchmark, record, fn, settings)


# ===========================================================================================
# A large latent: MLP RRAE, latent 4096, batch 1024, k = 256. The same model and step; only the
# truncation of the latent matrix differs (rrae_fast's `rank_reduce` or the authors' stable SVD).
# ===========================================================================================

LARGE_GROUP = "train-step-mlp-L4096-b1024-k256"
LARGE = {"length": 512, "latent": 4096, "batch": 1024, "k": 256, "width": 512}
LARGE_QUICK = {"length": 64, "latent": 256, "batch": 128, "k": 16, "width": 64}  # --quick


class _AuthorsTruncation(eqx.Module):
    """The RRAE bottleneck computed with the authors' `stable_SVD` (full thin SVD, sliced)."""

    latent_size: int = eqx.field(static=True)
    max_k: int = eqx.field(static=True)

    def train(self, z, k=None):
        from RRAEs.utilities import stable_SVD

        u, s, vt = stable_SVD(z.T)  # their convention: the latent matrix is [L, batch]
        k = self.max_k
        return ((u[:, :k] * s[:k]) @ vt[:k]).T


def _large_step(svd: str, sizes: dict):
    config = ModelConfig(
        kind="rrae",
        latent_size=sizes["latent"],
        k=sizes["k"],
        width=sizes["width"],
        encoder_depth=1,
        decoder_depth=2,
    )
    model = build_model(config, (sizes["length"],), key=jax.random.key(0))
    if svd == "rrae_fast_dense":
        dense = RankReduction(sizes["latent"], sizes["k"], method="dense")
        model = eqx.tree_at(lambda m: m.bottleneck, model, dense)
    if svd == "authors_stable_svd":
        import RRAEs.config  # noqa: F401  (the package needs it imported first)

        bottleneck = _AuthorsTruncation(sizes["latent"], sizes["k"])
        model = eqx.tree_at(lambda m: m.bottleneck, model, bottleneck)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((sizes["batch"], sizes["length"])), jnp.float32)
    return model, _our_step(model, x, sizes["k"])


@pytest.mark.parametrize("svd", ["authors_stable_svd", "rrae_fast", "rrae_fast_dense"])
def test_train_step_large_latent(benchmark, record, settings, svd):
    sizes = LARGE_QUICK if settings["quick"] else LARGE
    group = LARGE_GROUP if sizes is LARGE else "train-step-mlp-L256-b128-k16"
    benchmark.group = group
    if svd == "authors_stable_svd" and not have("RRAEs"):
        skip(group, svd, "the authors' library `RRAEs` (PyPI: rraes) is not installed")
    model, fn = _large_step(svd, sizes)
    record(params=_param_count(model), **sizes)
    _time(benchmark, record, fn, settings)
