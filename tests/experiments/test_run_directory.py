"""A run directory is never changed by a refused command, never shared by two writers, never
silently overwritten; a diverging run stops and says so."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from rrae_fast import cli
from rrae_fast.experiments import RunConfig, train
from rrae_fast.models import ModelConfig
from rrae_fast.training import CheckpointDir, NonFiniteLoss, RunDirectoryBusy

DIGITS = dict(dataset="digits", steps=8, batch_size=32, seed=1)


def _config(**kw):
    return RunConfig(model=ModelConfig(kind="rrae", latent_size=16, k=3), **(DIGITS | kw))


def _snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(_config(), out, progress=False)
    return out


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_finished_run_is_not_overwritten(tmp_path, finished):
    run = _copy(finished, tmp_path / "run")
    before = _snapshot(run)
    with pytest.raises(FileExistsError, match=r"--resume.*--overwrite"):
        train(_config(seed=2), run, progress=False)
    assert _snapshot(run) == before
    again = train(_config(seed=2), run, overwrite=True, progress=False)
    assert json.loads((run / "config.json").read_text())["run"]["seed"] == 2
    assert len(again.history.loss) == 8


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(tracker={"bogus": 1}), "bogus"),  # a fixed-k model takes no tracker options
        (dict(batch_size=5000), "exceeds"),
    ],
)
def test_a_refused_command_leaves_the_run_untouched(tmp_path, finished, bad, match):
    """Validation happens before the first write (the config once was replaced first)."""
    run = _copy(finished, tmp_path / "run")
    before = _snapshot(run)
    with pytest.raises((ValueError, TypeError), match=match):
        train(_config(**bad), run, resume=True, progress=False)
    assert _snapshot(run) == before


def test_an_unknown_tracker_parameter_is_refused_before_any_work(tmp_path):
    model = ModelConfig(kind="arrae", latent_size=16, k=3)
    config = RunConfig(model=model, tracker={"bogus": 1}, **DIGITS)
    with pytest.raises(ValueError, match="unknown adaptive tracker parameter 'bogus'; known: "):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_second_writer_fails_at_once(tmp_path):
    out = tmp_path / "run"
    ckpt = CheckpointDir(out)
    with ckpt.locked():
        with pytest.raises(RunDirectoryBusy, match="in use by another training run"):
            train(_config(), out, progress=False)
        # Another process too (flock is per open file, so this holds across processes).
        child = textwrap.dedent(
            f"""
            from rrae_fast.training import CheckpointDir, RunDirectoryBusy
            try:
                with CheckpointDir({str(out)!r}).locked():
                    print("got it")
            except RunDirectoryBusy as e:
                print("busy", e)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.stdout.startswith("busy") and str(os.getpid()) in done.stdout, done
    assert not (out / "config.json").exists()
    train(_config(), out, progress=False)  # free again once the holder is gone


def test_cli_refusals_are_messages_not_tracebacks(tmp_path, finished, capsys):
    run = _copy(finished, tmp_path / "run")
    assert cli.main(["train", "--dataset", "digits", "--out", str(run), "--no-progress"]) == 1
    assert "holds a training run" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--out must name a directory"):
        cli.main(["train", "--out", ""])


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path):
    out = tmp_path / "run"
    config = _config(learning_rate=1e8, steps=40)
    with pytest.raises(NonFiniteLoss, match="training diverged") as info:
        train(config, out, progress=False)
    losses = info.value.history.loss
    assert len(losses) == info.value.step < 40
    assert all(math.isfinite(v) for v in losses[:-1]) and not math.isfinite(losses[-1])
    assert not (out / "state.json").exists()  # no checkpoint of a model lost to NaN
