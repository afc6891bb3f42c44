"""Run configs, training runs end to end, reload, evaluation, Table 1 and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rrae_fast import cli
from rrae_fast.experiments import RunConfig, evaluate, load_run, table1, train
from rrae_fast.experiments._table1 import markdown
from rrae_fast.models import ModelConfig
from rrae_fast.training import AdaptiveTracker, FixedTracker, ParsimoniousTracker


def test_stages_follow_the_paper_budget():
    rrae = RunConfig(model=ModelConfig(kind="rrae", k=2))
    main, ft = rrae.stages()
    assert (main.steps, ft.steps) == (2000, 500)
    assert (main.learning_rate, ft.learning_rate) == (1e-3, 1e-4)
    assert (main.mode, ft.mode) == ("train", "infer")
    (only,) = RunConfig(model=ModelConfig(kind="long")).stages()
    assert only.steps == 2500
    assert (
        RunConfig(model=ModelConfig(kind="rrae", k=2), steps=30, finetune_steps=0)
        .stages()[1]
        .steps
        == 0
    )
    with pytest.raises(ValueError, match="finetune_steps"):
        RunConfig(steps=10, finetune_steps=11)
    with pytest.raises(ValueError, match="steps"):
        RunConfig(steps=0)


def test_trackers_by_model_kind():
    t = RunConfig(model=ModelConfig(kind="arrae", k=64)).make_tracker()
    assert isinstance(t, AdaptiveTracker) and t.k == 64
    t = RunConfig(model=ModelConfig(kind="pars_rrae", k=1)).make_tracker()
    assert isinstance(t, ParsimoniousTracker) and t.k == 1
    assert isinstance(RunConfig(model=ModelConfig(kind="rrae", k=2)).make_tracker(), FixedTracker)
    config = RunConfig(model=ModelConfig(kind="arrae", k=8), tracker={"patience_init": 7})
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


DIGITS = dict(dataset="digits", steps=12, batch_size=32, seed=1)


def test_train_evaluate_and_reload_a_digits_rrae(tmp_path):
    config = RunConfig(model=ModelConfig(kind="rrae", latent_size=16, k=3), **DIGITS)
    run = train(config, tmp_path / "run", progress=False)
    assert run.k == 3 and len(run.history.loss) == 12
    basis = np.asarray(run.model.bottleneck.basis)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=2e-6)
    metrics = evaluate(run, tmp_path / "run")
    assert metrics.k == 3 and metrics.interpolation is None  # bump scores: synthetic only
    assert 0 < metrics.train_error < 200 and 0 < metrics.test_error < 200
    assert metrics.latent_rank <= 16 and metrics.spectrum[0] == 1.0
    for name in ("spectrum.png", "interpolation.png", "samples.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    back = load_run(tmp_path / "run")
    assert back.k == 3 and back.config == config
    again = evaluate(back)
    assert again.train_error == pytest.approx(metrics.train_error, rel=1e-6)
    with pytest.raises(ValueError, match="another config"):
        train(
            RunConfig(model=ModelConfig(kind="rrae", latent_size=16, k=2), **DIGITS),
            tmp_path / "run",
            resume=True,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="no training run"):
        load_run(tmp_path / "nothing")


def test_load_run_refuses_an_unfinished_run(tmp_path):
    config = RunConfig(model=ModelConfig(kind="long", latent_size=8), **DIGITS)
    train(config, tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    state["stage"] = 0
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="not finished"):
        load_run(tmp_path / "run")


def test_table1_markdown_and_a_reduced_run(tmp_path, monkeypatch):
    from rrae_fast.experiments import _table1

    # Keep the run small: two models, digits-sized synthetic set.
    monkeypatch.setattr(_table1, "load_data", lambda config: _small_synthetic())
    results = table1(tmp_path, steps=6, models=["Long", "RRAE (fixed)"], progress=True)
    assert list(results) == ["Long", "RRAE (fixed)"]
    text = (tmp_path / "table1.md").read_text()
    assert "| RRAE (fixed) | 2 |" in text and "0.98" in text  # ours beside the paper's
    assert json.loads((tmp_path / "table1.json").read_text())["Long"]["k"] == 200  # L
    assert results["Long"].interpolation is not None
    with pytest.raises(ValueError, match="unknown models"):
        table1(tmp_path, models=["VAE"])
    assert "n/a" in markdown({"Weak": _fake_metrics()}, "x")


def _small_synthetic():
    from rrae_fast.data import synthetic_bumps

    return synthetic_bumps(train_size=64, test_size=32)


def _fake_metrics():
    from rrae_fast.experiments import Metrics

    return Metrics(2, 1.0, 1.0, None, None, 2, [1.0, 0.5])


def test_cli_help_for_every_command(capsys):
    for command in ("train", "evaluate", "table1", "demo"):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        assert "usage: rrae-fast " + command in capsys.readouterr().out


def test_cli_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--steps", "20", "--train-size", "64", "--test-size", "32", "--out", str(out)]
    assert cli.main([*args, "--tracker", "patience_init=5", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "bottleneck k over training: 64" in text and "train error" in text
    assert json.loads((out / "metrics.json").read_text())["k"] >= 1
    assert cli.main(["evaluate", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert "interpolation" in capsys.readouterr().out
    assert (tmp_path / "figs" / "samples.png").is_file()
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        cli.main([*args, "--tracker", "patience_init"])
