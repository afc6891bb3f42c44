"""The PyTorch peer of the training benchmark computes our CNN RRAE's step.

`benchmarks/torch_peer.py` (timed beside ours in `benchmarks/bench_training.py`) is the paper's
CNN RRAE in PyTorch. With the weights copied from our model it must give the same forward pass,
the same gradients and, with its written-out AdaBelief, the same losses over five optimizer
steps, at k = 2 and at k = 64. torch is an optional peer: without it these tests are skipped.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rrae_fast.data import synthetic_bumps
from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training._step import as_k, init_optimizer, make_step

torch = pytest.importorskip("torch", reason="torch is an optional benchmark peer (see README)")

SHAPE = (1, 64, 64)
LATENT = 200
LR = 1e-3
PARAMS = 3_806_969  # the paper's CNN RRAE at 64×64, L = 200
BATCH = {2: 16, 64: 64}  # k = 64 needs a batch of at least 64 (the latent matrix's rank)


def _load_peer():
    """`benchmarks/torch_peer.py`, loaded by path (`benchmarks/` is not a package, and its
    other modules, `conftest.py` among them, must not shadow the tests')."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "torch_peer.py"
    spec = importlib.util.spec_from_file_location("rrae_fast_bench_torch_peer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tp = _load_peer()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on a shared 2-core machine torch's OpenMP threads slow down by up to
    10× under other load (the results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The benchmark's 400 standardised training images, `[400, 1, 64, 64]` float32, all
    distinct. (Not fewer: `synthetic_bumps(128)` repeats 7 of its 121 grid bumps, and a batch
    with repeated samples has tied zero singular values in its latent matrix, where autograd
    through `torch.linalg.svd` gives NaN gradients, ours finite ones.)"""
    return np.asarray(synthetic_bumps(train_size=400, test_size=1).x_train, np.float32)


@functools.cache
def _model(k: int):
    """Our model as `bench_training.py` builds it (the paper's CNN, float32)."""
    config = ModelConfig(kind="arrae", latent_size=LATENT, k=k)
    return build_model(config, SHAPE, key=jax.random.key(0))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _batches(images: np.ndarray, k: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(k)
    return [images[rng.permutation(len(images))[: BATCH[k]]] for _ in range(count)]


def test_same_parameters_as_our_model():
    model = _model(64)
    ours = tp.parameter_map(model)
    peer = tp.from_eqx(model, SHAPE)
    count = sum(np.size(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    assert count == PARAMS == sum(p.numel() for p in peer.parameters())
    for name, p in peer.named_parameters():
        assert p.dtype == torch.float32
        back = tp.to_eqx_layout(name, p, ours[name].shape)
        np.testing.assert_array_equal(back, np.asarray(ours[name]), err_msg=name)
    # Transposed convolutions: PyTorch's [in, out, kh, kw], Equinox's kernel flipped.
    w = np.asarray(model.decoder.deconvs[1].weight)  # [128, 256, 3, 3]
    wt = peer.deconvs[1].weight.detach().numpy()  # [256, 128, 3, 3]
    assert wt.shape == (256, 128, 3, 3)
    np.testing.assert_array_equal(wt[5, 7, 0, 2], w[7, 5, 2, 0])


def _float64(model):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)


@pytest.mark.parametrize("k", [2, 64])
def test_forward_and_gradients_agree(images, k):
    """Float32 (the benchmark's dtype): the same reconstructions. Float64: the same loss and
    gradients to rounding, so the two compute one function. (In float32 the gradients agree
    to 2e-4 only: PyTorch's CPU bias gradients of the last two layers, sums over 262,144
    positions, are 1.6e-4 and 1.8e-4 off the float64 values at k = 64, ours 6e-8.)"""
    model = _model(k)
    x = images[: BATCH[k]]
    peer = tp.from_eqx(model, SHAPE)
    ours = eqx.filter_jit(lambda m, x: m(x, as_k(k)))(model, jnp.asarray(x))
    theirs = peer(torch.from_numpy(x.copy()), k).detach().numpy()
    assert theirs.shape == ours.shape == x.shape
    assert _rel(ours, theirs) < 1e-5

    model64, x64 = _float64(model), x.astype(np.float64)
    peer64 = tp.from_eqx(model64, SHAPE)
    assert all(p.dtype == torch.float64 for p in peer64.parameters())

    def loss(m, x):
        return m.loss(x, as_k(k))

    value, grads = eqx.filter_jit(eqx.filter_value_and_grad(loss))(model64, jnp.asarray(x64))
    loss_t = tp.loss_fn(peer64, torch.from_numpy(x64), k)
    loss_t.backward()
    np.testing.assert_allclose(float(loss_t.detach()), float(value), rtol=1e-12)
    ours_g = tp.parameter_map(grads)
    for name, p in peer64.named_parameters():
        g = tp.to_eqx_layout(name, p.grad, ours_g[name].shape)
        assert np.linalg.norm(g) > 0, name
        assert _rel(ours_g[name], g) < 1e-10, name


def test_the_weight_mapping_is_checked(images):
    """A transposed convolution's kernel copied without the flip changes the output: the
    forward check above would catch a wrong mapping."""
    model = _model(2)
    peer = tp.from_eqx(model, SHAPE)
    with torch.no_grad():
        w = peer.deconvs[2].weight
        w.copy_(torch.flip(w, (2, 3)))
    x = images[: BATCH[2]]
    ours = eqx.filter_jit(lambda m, x: m(x, as_k(2)))(model, jnp.asarray(x))
    assert _rel(ours, peer(torch.from_numpy(x.copy()), 2).detach().numpy()) > 1e-4


def _our_losses(model, batches, k):
    optimizer = optax.adabelief(LR)
    state = init_optimizer(optimizer, model, "train")
    step = make_step(optimizer, "train")
    losses = []
    for x in batches:
        model, state, loss = step(model, state, jnp.asarray(x), as_k(k))
        losses.append(float(loss))
    return model, losses


@pytest.mark.parametrize("k", [2, 64])
def test_five_adabelief_steps_agree(images, k):
    """Float32, as benchmarked: the same loss at every step (each the loss before that step's
    update, as `make_step` returns it) on the same five batches."""
    batches = _batches(images, k, 5)
    _, ours = _our_losses(_model(k), batches, k)

    peer_step = tp.make_step(tp.from_eqx(_model(k), SHAPE), k, lr=LR)
    theirs = [float(peer_step(torch.from_numpy(x.copy()))) for x in batches]

    np.testing.assert_allclose(theirs, ours, rtol=2e-6)  # ≈ 2e-4 at a loss of 100
    # The steps move the loss by far more than that tolerance, so a wrong update would show.
    assert abs(ours[-1] - ours[0]) > 0.05


def test_adabelief_is_optax_adabelief():
    """The written-out AdaBelief gives `optax.adabelief`'s parameters and moments, step by
    step: gradients of changing scale (the bias corrections and the belief term matter), a
    zero gradient (no move) and a gradient at the scale of `eps_root`."""
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (7,), (2, 3, 3, 3)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    optimizer = optax.adabelief(LR)
    params = [jnp.asarray(p) for p in start]
    with jax.numpy_dtype_promotion("standard"):
        state = optimizer.init(params)
    peer_params = [torch.from_numpy(p.copy()) for p in start]
    peer = tp.AdaBelief(peer_params, lr=LR)
    for t in range(5):
        grads = [(rng.standard_normal(s) * 10.0 ** (t - 2)).astype(np.float32) for s in shapes]
        grads[0][0, 0] = 0.0
        grads[0][0, 1] = 1e-9
        with jax.numpy_dtype_promotion("standard"):
            updates, state = optimizer.update([jnp.asarray(g) for g in grads], state, params)
        params = optax.apply_updates(params, updates)
        for p, g in zip(peer_params, grads):
            p.grad = torch.from_numpy(g)
        peer.step()
        belief = state[0]
        for ours, theirs, mu, m, nu, s in zip(
            params, peer_params, belief.mu, peer.mu, belief.nu, peer.nu
        ):
            np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(m.numpy(), mu, rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(s.numpy(), nu, rtol=1e-5, atol=1e-20)
        assert int(peer.count) == int(belief.count) == t + 1
        assert peer_params[0][0, 0] == start[0][0, 0]  # a zero gradient never moves it
    moved = np.abs(np.asarray(params[1]) - start[1])
    assert np.all(moved > 1e-4), moved  # AdaBelief's steps are ~lr per element


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # Inductor's own deprecated helpers
@pytest.mark.parametrize("k", [2, 64])
def test_compiled_step_agrees(images, k):
    """The `torch.compile`d step (the benchmark's `torch_compile`) gives the eager step's
    losses (compiling takes 20–30 s on 2 cores: slow). To 5e-5: Inductor's fused float32
    sums over the batch's 262,144 entries round differently (measured: 2.3e-6 here, 1.2e-5
    on the benchmark's batch, where the eager step and ours agree to the last digit)."""
    model = _model(k)
    batches = _batches(images, k, 3)
    eager = tp.make_step(tp.from_eqx(model, SHAPE), k, lr=LR)
    compiled = tp.make_step(tp.from_eqx(model, SHAPE), k, lr=LR, compiled=True)
    for x in batches:
        xt = torch.from_numpy(x.copy())
        np.testing.assert_allclose(float(compiled(xt)), float(eager(xt)), rtol=5e-5)
