"""Data-parallel training on 8 simulated CPU devices: the run is the one-device run.

The devices must exist before JAX starts, so in a process with fewer than 8 the tests below
skip and `test_on_simulated_devices` runs this file in a child process that has them
(``--xla_force_host_platform_device_count=8``); a failure there fails it.
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, Mesh

from conftest import on_simulated_devices
from rrae_fast.models import KINDS, ModelConfig, build_model
from rrae_fast.training import (
    AdaptiveTracker,
    CheckpointDir,
    FixedTracker,
    Stage,
    data_mesh,
    final_basis,
    fit,
    make_step,
)
from rrae_fast.training._mesh import place_batch, place_replicated
from rrae_fast.training._step import as_k, init_optimizer

DEVICES = 8
needs_devices, test_on_simulated_devices = on_simulated_devices(__file__, DEVICES)


def _data(n=96, t=24, seed=2):
    coef = jax.random.normal(jax.random.key(seed), (n, 3))
    grid = jnp.linspace(0, 1, t)
    basis = jnp.stack([jnp.sin(3 * grid), jnp.cos(2 * grid), grid**2])
    return np.asarray(coef @ basis, np.float32)


def _model(kind="arrae", k=6):
    config = ModelConfig(kind=kind, latent_size=16, k=k, width=32, decoder_depth=2)
    return build_model(config, (24,), key=jax.random.key(1))


def _adaptive():
    return AdaptiveTracker(6, patience_init=10, patience_not_right=5, window=4)


STAGES = [Stage(50, 3e-3, 16), Stage(10, 1e-3, 16, mode="infer")]


def _assert_same_run(one, many, rtol=1e-4):
    assert many.history.k == one.history.k
    assert many.history.stage == one.history.stage
    assert many.history.notes == one.history.notes
    np.testing.assert_allclose(many.history.loss, one.history.loss, rtol=rtol)
    assert many.k == one.k


@needs_devices
def test_an_adaptive_run_on_eight_devices_is_the_one_device_run():
    x = _data()
    one = fit(_model(), x, STAGES, tracker=_adaptive(), progress=False)
    many = fit(_model(), x, STAGES, tracker=_adaptive(), progress=False, mesh=data_mesh(DEVICES))
    assert len(set(one.history.k)) > 2  # the tracker did lower k: the k paths are compared
    _assert_same_run(one, many)
    b1, b8 = one.model.bottleneck.basis, many.model.bottleneck.basis
    # the same subspace (the basis is defined up to the signs of its columns)
    np.testing.assert_allclose(np.abs(np.asarray(b1.T @ b8)), np.eye(b1.shape[1]), atol=1e-4)
    for a, b in zip(
        jtu.tree_leaves(eqx.filter(one.model, eqx.is_array)),
        jtu.tree_leaves(eqx.filter(many.model, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_allclose(np.abs(b), np.abs(a), rtol=2e-3, atol=2e-4)
    replicated = jax.sharding.NamedSharding(
        many.model.bottleneck.basis.sharding.mesh, jax.sharding.PartitionSpec()
    )
    assert all(
        leaf.sharding == replicated
        for leaf in jtu.tree_leaves(eqx.filter(many.model, eqx.is_array))
    )


@needs_devices
@pytest.mark.parametrize("kind", KINDS)
def test_every_model_family_steps_as_on_one_device(kind):
    x = _data(n=32)
    model = _model(kind, k=3)
    opt = optax.adabelief(1e-3)
    mesh = data_mesh(DEVICES)
    step1, step8 = make_step(opt), make_step(opt, mesh=mesh)
    m1, o1 = model, init_optimizer(opt, model, "train")
    m8, o8 = place_replicated(m1, mesh), place_replicated(o1, mesh)
    for t in range(3):
        xb = x[t * 8 : t * 8 + 16]
        m1, o1, l1 = step1(m1, o1, jnp.asarray(xb), as_k(3))
        m8, o8, l8 = step8(m8, o8, place_batch(xb, mesh), as_k(3))
        np.testing.assert_allclose(float(l8), float(l1), rtol=1e-5, err_msg=f"step {t}")


@needs_devices
def test_the_cnn_step_runs_each_devices_samples_on_that_device():
    """The paper's CNN: the same step, and every convolution of the compiled step sees 1/8 of
    the batch; the only gathers are of the latent matrix (`[b, L]`), never of the images."""
    batch, latent = 16, 20
    model = build_model(
        ModelConfig(kind="rrae", latent_size=latent, k=2), (1, 16, 16), key=jax.random.key(0)
    )
    x = np.asarray(jax.random.uniform(jax.random.key(3), (batch, 1, 16, 16)), np.float32)
    opt = optax.adabelief(1e-3)
    mesh = data_mesh(DEVICES)
    step = make_step(opt, mesh=mesh)
    m8 = place_replicated(model, mesh)
    o8 = place_replicated(init_optimizer(opt, model, "train"), mesh)
    xs = place_batch(x, mesh)
    _, _, l8 = step(m8, o8, xs, as_k(2))
    _, _, l1 = make_step(opt)(model, init_optimizer(opt, model, "train"), jnp.asarray(x), as_k(2))
    np.testing.assert_allclose(float(l8), float(l1), rtol=1e-5)
    hlo = step.lower(m8, o8, xs, as_k(2)).lowered.compile().as_text()
    convolutions = re.findall(r"= f32\[(\d+),[\d,]*\][^=]* convolution\(", hlo)
    assert convolutions, "no convolution in the compiled step"
    # the forward convolutions' batch is the device's share of the samples
    assert str(batch // DEVICES) in convolutions
    assert str(batch) not in convolutions
    gathered = re.findall(r"= f32\[([\d,]*)\][^=]* all-gather\(", hlo)
    assert gathered, "the latent matrix is not gathered for the SVD"
    assert set(gathered) <= {f"{batch},{latent}", f"{latent},{batch}"}, gathered


@needs_devices
def test_a_resumed_data_parallel_run_replays_the_uninterrupted_one(tmp_path):
    x, mesh = _data(), data_mesh(DEVICES)
    full = fit(_model(), x, STAGES, tracker=_adaptive(), progress=False, mesh=mesh)
    ckpt = CheckpointDir(tmp_path / "run")
    stopped = {"at": 23}

    def interrupt(step, loss, k):
        if step == stopped["at"]:
            raise KeyboardInterrupt

    def on_mesh(**kwargs):
        return fit(
            _model(),
            x,
            STAGES,
            tracker=_adaptive(),
            progress=False,
            mesh=mesh,
            checkpoint=ckpt,
            **kwargs,
        )

    with pytest.raises(KeyboardInterrupt):
        on_mesh(callback=interrupt)
    resumed = on_mesh(resume=True)
    _assert_same_run(full, resumed, rtol=1e-6)


@needs_devices
def test_the_final_basis_is_the_one_device_basis():
    x = _data(n=100)  # 100 = 6·16 + 4: the remainder batch does not split over 8 devices
    model = _model("rrae", k=3)
    one = final_basis(model, x, 3, 16)
    many = final_basis(model, x, 3, 16, mesh=data_mesh(DEVICES))
    np.testing.assert_allclose(np.abs(np.asarray(one.T @ many)), np.eye(3), atol=1e-5)


@needs_devices
def test_uneven_batches_and_missing_devices_are_refused():
    with pytest.raises(ValueError, match="batch_size=12 does not split over the mesh's 8"):
        fit(_model(), _data(), [Stage(2, 1e-3, 12)], progress=False, mesh=data_mesh(DEVICES))
    with pytest.raises(ValueError, match="asked for 9 devices, but 8 are available"):
        data_mesh(DEVICES + 1)
    with pytest.raises(ValueError, match="devices is empty"):
        data_mesh([])


@needs_devices
def test_a_mesh_with_explicit_axes_and_a_two_device_mesh_train_the_same_model():
    x = _data()
    explicit = Mesh(np.array(jax.devices()[:4]), ("batch",), axis_types=(AxisType.Explicit,))
    stages = [Stage(6, 3e-3, 16)]
    one = fit(_model("rrae", 3), x, stages, tracker=FixedTracker(3), progress=False)
    for mesh in (explicit, data_mesh(2)):
        many = fit(
            _model("rrae", 3), x, stages, tracker=FixedTracker(3), progress=False, mesh=mesh
        )
        _assert_same_run(one, many)


@needs_devices
def test_the_cli_trains_on_the_devices_it_is_given(tmp_path, capsys, monkeypatch):
    from rrae_fast import cli
    from rrae_fast.data import synthetic_bumps
    from rrae_fast.experiments import _run, load_run

    small = synthetic_bumps(train_size=64, test_size=16)
    monkeypatch.setattr(_run, "load_data", lambda config: small)
    args = ["train", "--steps", "12", "--finetune-steps", "2", "--batch-size", "16"]
    args += ["--latent-size", "16", "--k", "3", "--model", "rrae", "--no-progress"]
    assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    assert "devices" not in capsys.readouterr().out
    assert cli.main([*args, "--out", str(tmp_path / "many"), "--devices", "8"]) == 0
    assert "training on 8 devices (cpu), batches split by samples" in capsys.readouterr().out
    one, many = load_run(tmp_path / "one", small), load_run(tmp_path / "many", small)
    np.testing.assert_allclose(many.history.loss, one.history.loss, rtol=1e-4)


# -- In any process: a one-device mesh is the plain run ------------------------------------


def test_a_one_device_mesh_trains_the_plain_run(tmp_path):
    x = _data()
    one = fit(_model(), x, STAGES, tracker=_adaptive(), progress=False)
    ckpt = CheckpointDir(tmp_path / "run")
    mesh = data_mesh(1)
    meshed = fit(
        _model(), x, STAGES, tracker=_adaptive(), progress=False, mesh=mesh, checkpoint=ckpt
    )
    _assert_same_run(one, meshed, rtol=1e-6)
    assert ckpt.read_state()["history"]["loss"] == meshed.history.loss
    assert mesh.axis_names == ("data",) and mesh.size == 1
    with pytest.raises(ValueError, match="the batch's size=3 does not split over the mesh's 2"):
        place_batch(np.ones((3, 2)), Mesh(np.array(jax.devices()[:1] * 2), ("data",)))
