"""Checkpoints: checksums verified on load, the previous checkpoint kept, a crash at any file
system step of a save leaves a resumable run, names confined to the run directory."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrae_fast import cli
from rrae_fast.models import ModelConfig, build_model
from rrae_fast.training import (
    CheckpointDir,
    CheckpointError,
    FixedTracker,
    Stage,
    _checkpoint,
    fit,
)

STAGES = [Stage(12, 1e-2, 8), Stage(4, 1e-3, 8, mode="infer")]


def _setup():
    config = ModelConfig(kind="rrae", latent_size=8, k=3, width=16, decoder_depth=2)
    model = build_model(config, (12,), key=jax.random.key(1))
    coef = jax.random.normal(jax.random.key(2), (40, 2))
    t = jnp.linspace(0, 1, 12)
    x = np.asarray(coef @ jnp.stack([jnp.sin(3 * t), jnp.cos(2 * t)]), np.float32)
    return model, x


def _fit(model, x, ckpt, **kwargs):
    return fit(
        model,
        x,
        STAGES,
        tracker=FixedTracker(2),
        checkpoint=ckpt,
        checkpoint_every=4,
        progress=False,
        **kwargs,
    )


class Killed(Exception):
    pass


def _killed_at(step):
    def callback(s, loss, k):
        if s == step:
            raise Killed

    return callback


def _same_run(a, b):
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    for x, y in zip(jax.tree.leaves(a.model), jax.tree.leaves(b.model)):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference():
    model, x = _setup()
    return model, x, _fit(model, x, None)


def _flip_data_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the leaves, past the header
    path.write_bytes(bytes(data))


def test_round_trip_and_header(tmp_path):
    tree = {"a": jnp.arange(5.0), "b": jnp.ones((2, 3), jnp.float32)}
    digest = _checkpoint.save_tree(tmp_path / "t.eqx", tree)
    data = (tmp_path / "t.eqx").read_bytes()
    assert data.startswith(b"RRAECKPT") and _checkpoint.sha256(data) == digest
    assert oct((tmp_path / "t.eqx").stat().st_mode & 0o777) == oct(0o644)
    back = _checkpoint.load_tree(tmp_path / "t.eqx", tree, digest)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "damage,match",
    [
        (_flip_data_byte, "fail their checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated or extended"),
        (lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated"),
        (lambda p: p.write_bytes(b"x" * 100), "not an rrae_fast checkpoint"),
        (lambda p: p.unlink(), "missing"),
    ],
)
def test_damaged_latest_checkpoint_is_refused_with_its_name(tmp_path, reference, damage, match):
    """One flipped bit (or a truncation, …) no longer resumes silently from another model."""
    model, x, _ = reference
    ckpt = CheckpointDir(tmp_path / "run")
    with pytest.raises(Killed):
        _fit(model, x, ckpt, callback=_killed_at(10))
    state = ckpt.read_state()
    path = tmp_path / "run" / state["files"]["model"]
    damage(path)
    with pytest.raises(CheckpointError, match=match) as info:
        _fit(model, x, ckpt, resume=True)
    assert info.value.path == path
    assert str(path) in str(info.value) and "rrae-fast rollback" in str(info.value)


def test_rollback_resumes_from_the_previous_checkpoint_exactly(tmp_path, reference):
    model, x, full = reference
    ckpt = CheckpointDir(tmp_path / "run")
    with pytest.raises(Killed):
        _fit(model, x, ckpt, callback=_killed_at(10))
    assert ckpt.read_state()["step"] == 8
    _flip_data_byte(tmp_path / "run" / ckpt.read_state()["files"]["opt"])
    with pytest.raises(CheckpointError):
        ckpt.verify()
    assert cli.main(["rollback", str(tmp_path / "run")]) == 0
    assert ckpt.read_state()["step"] == 4
    ckpt.verify()
    _same_run(_fit(model, x, ckpt, resume=True), full)


def test_rollback_without_a_previous_checkpoint_is_refused(tmp_path):
    ckpt = CheckpointDir(tmp_path / "single")
    ckpt.save(1, {"w": jnp.ones(2)}, None, {"stage": 0, "step": 1})
    with pytest.raises(CheckpointError, match="no checkpoint before"):
        ckpt.rollback()
    assert cli.main(["rollback", str(tmp_path / "nothing")]) == 2


def test_swapped_file_is_refused(tmp_path, reference):
    """An intact file of another save under a committed name fails the state's checksum."""
    model, x, _ = reference
    ckpt = CheckpointDir(tmp_path / "run")
    with pytest.raises(Killed):
        _fit(model, x, ckpt, callback=_killed_at(10))
    state = ckpt.read_state()
    old = tmp_path / "run" / state["previous"]["files"]["model"]
    new = tmp_path / "run" / state["files"]["model"]
    new.write_bytes(old.read_bytes())
    with pytest.raises(CheckpointError, match=r"not the one state\.json committed"):
        _fit(model, x, ckpt, resume=True)


def test_only_two_checkpoints_and_no_temporary_files_remain(tmp_path, reference):
    model, x, _ = reference
    run = tmp_path / "run"
    ckpt = CheckpointDir(run)
    (run / ".model-4-1.eqx.abc123").write_bytes(b"half a write")  # left by a killed writer
    _fit(model, x, ckpt)
    names = sorted(p.name for p in run.iterdir())
    state = ckpt.read_state()
    committed = {*state["files"].values(), *state["previous"]["files"].values()}
    assert names == sorted([*committed, "state.json"])


@pytest.mark.parametrize("bad", ["/abs/victim.txt", "../victim.txt", "sub/model-1-1.eqx", 3])
def test_state_naming_files_outside_is_refused(tmp_path, reference, bad):
    """A run directory is untrusted input: its state never makes a save delete or a load read
    a file outside it."""
    model, x, _ = reference
    run = tmp_path / "run"
    ckpt = CheckpointDir(run)
    with pytest.raises(Killed):
        _fit(model, x, ckpt, callback=_killed_at(6))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = ckpt.read_state()
    if isinstance(bad, str) and bad.startswith("/abs/"):
        bad = str(victim)
    state["files"]["model"] = bad
    (run / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="not a checkpoint file of this directory"):
        ckpt.save(99, {"w": jnp.ones(2)}, None, {"stage": 0, "step": 99})
    with pytest.raises(CheckpointError, match="not a checkpoint file of this directory"):
        _fit(model, x, ckpt, resume=True)
    assert victim.read_text() == "keep me"


def test_damaged_state_json_names_the_file(tmp_path):
    run = tmp_path / "run"
    ckpt = CheckpointDir(run)
    (run / "state.json").write_text('{"files": {"model": ')
    with pytest.raises(CheckpointError, match=r"state\.json is damaged"):
        ckpt.read_state()


# -- crash injection -------------------------------------------------------------------------


class Crash(BaseException):
    """A process death: nothing after it runs (BaseException: no `except Exception` sees it)."""


def _count_steps(monkeypatch, crash_at):
    """Makes the `crash_at`-th file-system step (write, fsync, rename, unlink) raise Crash."""
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash

    real_replace, real_fsync, real_unlink = os.replace, os.fsync, type(_checkpoint.Path()).unlink
    real_fdopen = os.fdopen

    def replace(*a, **k):
        step()
        return real_replace(*a, **k)

    def fsync(*a, **k):
        step()
        return real_fsync(*a, **k)

    def unlink(self, *a, **k):
        step()
        return real_unlink(self, *a, **k)

    def fdopen(*a, **k):
        step()
        return real_fdopen(*a, **k)

    monkeypatch.setattr(_checkpoint.os, "replace", replace)
    monkeypatch.setattr(_checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(_checkpoint.os, "fdopen", fdopen)
    monkeypatch.setattr(type(_checkpoint.Path()), "unlink", unlink)
    return calls


def test_a_crash_at_every_step_of_a_stage_end_save_leaves_a_resumable_run(
    tmp_path, reference, monkeypatch
):
    """The stage-end save of step 12, which follows the periodic save of the same step, is cut
    at each of its file-system steps in turn; every cut run resumes to the uninterrupted result.
    (Before, the second save rewrote the first one's files in place: a crash between that and
    the new state left a run that no resume could load.)"""
    model, x, full = reference

    class StopAfterPeriodicSave(CheckpointDir):
        def save(self, step, model, opt_state, state):
            super().save(step, model, opt_state, state)
            if state["stage"] == 0 and state["step"] == 12:
                raise Killed

    prepared = tmp_path / "prepared"
    with pytest.raises(Killed):
        _fit(model, x, StopAfterPeriodicSave(prepared))
    state = CheckpointDir(prepared).read_state()
    assert state["step"] == 12 and state["stage"] == 0
    i = 0
    while True:
        i += 1
        run = tmp_path / f"cut{i}"
        shutil.copytree(prepared, run)
        with monkeypatch.context() as m:
            calls = _count_steps(m, i)
            # Resuming at the stage's end: the stage-end save, then step 13 is killed.
            with pytest.raises((Crash, Killed)):
                _fit(model, x, CheckpointDir(run), resume=True, callback=_killed_at(13))
        _same_run(_fit(model, x, CheckpointDir(run), resume=True), full)
        if calls["n"] < i:  # the save ended before step i: each of its steps has been cut
            break
    # The model file and the state (a stage's end holds no optimizer state), each written,
    # flushed, renamed, its folder flushed.
    assert i > 8
    final = CheckpointDir(run).read_state()
    assert set(final["files"]) == {"model"}
