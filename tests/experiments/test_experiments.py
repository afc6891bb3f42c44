"""Run configs, training runs end to end, reload, evaluation, Table 1 and the CLI."""

from __future__ import annotations

import json
import os

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


def test_tracker_presets():
    """ "authors": their current example; "paper": a 1 % loss target under the rules of the
    paper's time; overrides apply on top; presets are for aRRAE only."""
    authors = RunConfig(model=ModelConfig(kind="arrae", k=8)).make_tracker()
    assert (authors.rules, authors.patience_init, authors.perf_loss) == ("current", 50, 0.0)
    paper = RunConfig(
        model=ModelConfig(kind="arrae", k=8), tracker_preset="paper", tracker={"save_steps": 5}
    )
    tracker = paper.make_tracker()
    assert (tracker.rules, tracker.perf_loss, tracker.patience_init) == ("paper", 1.0, None)
    assert (tracker.patience_not_right, tracker.save_steps) == (500, 5)
    assert RunConfig.from_dict(json.loads(json.dumps(paper.to_dict()))) == paper
    older = {k: v for k, v in RunConfig().to_dict().items() if k != "tracker_preset"}
    assert RunConfig.from_dict(older).tracker_preset == "authors"  # configs saved before
    with pytest.raises(ValueError, match="tracker_preset must be one of"):
        RunConfig(tracker_preset="fast")
    with pytest.raises(ValueError, match="aRRAE only"):
        RunConfig(model=ModelConfig(kind="rrae", k=2), tracker_preset="paper")


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
    assert len(metrics.spectrum_projected) == len(metrics.spectrum)
    assert metrics.spectrum_projected[3] < 1e-5 < metrics.spectrum[3]  # rank 3 after projection
    assert metrics.training == {
        "seed": 1,
        "steps": 12,
        "finetune_steps": 2,
        "tracker_preset": None,
        "main_steps": 10,
        "final_k_since_step": 1,
        "main_steps_at_final_k": 10,
        "notes": [],
    }
    assert "k = 3 in use from step 1: 10 of the 10 main-stage steps" in metrics.summary()
    back = load_run(tmp_path / "run")
    assert back.k == 3 and back.config == config
    again = evaluate(back)
    assert again.train_error == pytest.approx(metrics.train_error, rel=1e-6)
    assert again.training == metrics.training
    with pytest.raises(ValueError, match="another config"):
        train(
            RunConfig(model=ModelConfig(kind="rrae", latent_size=16, k=2), **DIGITS),
            tmp_path / "run",
            resume=True,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="no training run"):
        load_run(tmp_path / "nothing")


def test_a_finished_run_keeps_no_restore_points(tmp_path, monkeypatch):
    """The tracker's tagged models are saved while k is lowered and removed with the run's end."""
    config = RunConfig(
        model=ModelConfig(kind="arrae", latent_size=16, k=6),
        tracker={"perf_loss": 1e9},  # every step beats the target: k goes down each step
        **DIGITS,
    )
    seen = []
    from rrae_fast.experiments import _run

    real_fit = _run.fit

    def fit_and_look(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        seen.extend(sorted(p.name for p in (tmp_path / "run").glob("tag-k*.eqx")))
        return result

    monkeypatch.setattr(_run, "fit", fit_and_look)
    run = train(config, tmp_path / "run", progress=False)
    assert run.history.k[:4] == [6, 6, 5, 4] and "tag-k6.eqx" in seen
    assert not list((tmp_path / "run").glob("tag-k*.eqx"))


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
    assert "| RRAE (fixed) | 1 | 2 |" in text and "0.98" in text  # ours beside the paper's
    saved = json.loads((tmp_path / "table1.json").read_text())
    assert saved["steps"] == 6 and saved["runs"]["Long"]["0"]["k"] == 200  # L
    assert results["Long"][0].interpolation is not None
    with pytest.raises(ValueError, match="unknown models"):
        table1(tmp_path, models=["VAE"])
    with pytest.raises(ValueError, match="holds a table of 6 steps"):
        table1(tmp_path, steps=8, models=["Long"])
    assert "n/a" in markdown({"Weak": [_fake_metrics()]}, "x")


def test_table1_over_seeds_resumes_and_averages(tmp_path, monkeypatch):
    """Finished (model, seed) runs are read back, not trained again; several seeds give the
    mean ± std over seeds."""
    from rrae_fast.experiments import _table1

    monkeypatch.setattr(_table1, "load_data", lambda config: _small_synthetic())
    table1(tmp_path, steps=6, models=["Long"], seeds=[0], progress=False)
    trained = []
    real_train = _table1.train
    monkeypatch.setattr(
        _table1,
        "train",
        lambda config, *a, **kw: trained.append(config.seed) or real_train(config, *a, **kw),
    )
    results = table1(tmp_path, steps=6, models=["Long"], seeds=[0, 1], progress=False)
    assert trained == [1] and len(results["Long"]) == 2
    errors = [m.train_error for m in results["Long"]]
    mean, std = np.mean(errors), np.std(errors, ddof=1)
    assert (
        f"| Long | 2 | 200 | {mean:.2f} ± {std:.2f} / 1.95 |"
        in (tmp_path / "table1.md").read_text()
    )


def _small_synthetic():
    from rrae_fast.data import synthetic_bumps

    return synthetic_bumps(train_size=64, test_size=32)


def _fake_metrics():
    from rrae_fast.experiments import Metrics

    return Metrics(2, 1.0, 1.0, None, None, 2, [1.0, 0.5])


def test_cli_help_for_every_command(capsys):
    commands = ["train", "evaluate", "table1", "table2", "budgets", "sweep-contractive"]
    for command in (*commands, "data", "demo"):
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


def test_training_record_of_an_arrae_whose_budget_ran_out_on_trial():
    """The record and the CLI's report say when k took its final value and what the tracker
    restored (here: k = 3 on trial when the main stage ended, so the model saved at k = 4)."""
    from rrae_fast.experiments import Run, training_record
    from rrae_fast.training import History

    config = RunConfig(model=ModelConfig(kind="arrae", k=5), steps=10, finetune_steps=2)
    ks = [5, 5, 4, 4, 4, 3, 3, 3, 4, 4]
    note = (8, "the stage ended while k = 3 was on trial: k = 4 with the model saved at k = 4")
    history = History([1.0] * 10, ks, [0] * 8 + [1] * 2, [note])
    record = training_record(Run(config, None, None, None, history, 4))
    assert record["tracker_preset"] == "authors" and record["notes"] == [list(note)]
    assert (record["main_steps"], record["final_k_since_step"]) == (8, 3)
    assert record["main_steps_at_final_k"] == 3


def test_budget_study_records_each_run_and_resumes(tmp_path, monkeypatch):
    """Every finished run is recorded at once; a second call runs only what is missing."""
    from rrae_fast.experiments import _budgets, _run

    monkeypatch.setattr(_run, "load_data", lambda config: _small_synthetic())
    calls = []
    real_train = _budgets.train

    def counted(config, *args, **kwargs):
        calls.append((config.model.kind, config.steps, config.seed))
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(_budgets, "train", counted)
    kwargs = dict(steps=[8], seeds=[0], finetune_steps=2, progress=False, command="c")
    records = _budgets.budget_study(tmp_path, variants=["RRAE k=2"], **kwargs)
    assert calls == [("rrae", 8, 0)] and len(records) == 1
    assert records[0]["training"]["finetune_steps"] == 2 and records[0]["command"] == "c"
    records = _budgets.budget_study(tmp_path, variants=["RRAE k=2", "aRRAE (paper)"], **kwargs)
    assert calls[1:] == [("arrae", 8, 0)]
    assert [r["variant"] for r in records] == ["RRAE k=2", "aRRAE (paper)"]
    assert records[1]["training"]["tracker_preset"] == "paper"
    table = (tmp_path / "budgets.md").read_text()
    assert "| aRRAE (paper) | 8 | 0 | 64 |" in table and "| RRAE k=2 | 8 | 0 | 2 |" in table
    assert json.loads((tmp_path / "budgets.json").read_text()) == json.loads(json.dumps(records))
    with pytest.raises(ValueError, match="unknown variants"):
        _budgets.budget_study(tmp_path, variants=["VAE"], **kwargs)
    with pytest.raises(ValueError, match="must exceed"):
        _budgets.budget_study(tmp_path, **{**kwargs, "steps": [2]})


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--steps", "-5"], "rrae-fast train: error: steps and batch_size must be ≥ 1"),
        (
            ["train", "--tracker", "foo=1"],
            "rrae-fast train: error: unknown adaptive tracker parameter 'foo'; known: k_init,",
        ),
        (
            ["train", "--tracker", "rules=paper"],
            "rrae-fast train: error: --tracker 'rules=paper': the value must be JSON",
        ),
        (["evaluate", "nowhere"], "rrae-fast evaluate: error: no training run found in nowhere"),
        (
            ["train", "--resume", "--out", "empty"],
            "rrae-fast train: error: --resume: empty holds no run to resume; leave out --resume",
        ),
        (["table1", "--models", "vae"], "rrae-fast table1: error: unknown models ['vae']"),
        (
            ["train", "--devices", "3"],
            "rrae-fast train: error: --batch-size 64 does not split over 3 devices; use a",
        ),
        (["train", "--devices", "0"], "rrae-fast train: error: --devices must be ≥ 1, got 0"),
    ],
)
def test_cli_errors_are_one_line_before_any_work(args, message, tmp_path, capsys, monkeypatch):
    """Bad values end in one line naming the option or file, with exit code 1, before any data
    is loaded or anything compiled."""
    from rrae_fast.experiments import _run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_run, "load_data", lambda config: pytest.fail("data were loaded"))
    assert cli.main([*args, "--no-progress"] if args[0] == "train" else args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_cli_usage_errors_and_interrupts(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--dataset", "cifar"])
    assert e.value.code == 2 and "invalid choice: 'cifar'" in capsys.readouterr().err
    file = tmp_path / "a-file"
    file.write_text("")
    assert cli.main(["train", "--out", str(file), "--steps", "5", "--no-progress"]) == 1
    assert "is not a directory" in capsys.readouterr().err

    from rrae_fast.experiments import _run

    real_fit = _run.fit

    def fit_until_ctrl_c(*args, **kwargs):
        def ctrl_c(step, loss, k):
            if step == 3:
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, callback=ctrl_c)

    monkeypatch.setattr(_run, "fit", fit_until_ctrl_c)
    out = tmp_path / "run"
    args = ["train", "--model", "rrae", "--dataset", "digits", "--latent-size", "16", "--k", "2"]
    assert cli.main([*args, "--steps", "6", "--out", str(out), "--no-progress"]) == 130
    assert capsys.readouterr().err == (
        f"rrae-fast train: interrupted; the run in {out} is saved after step 2: continue with "
        "--resume\n"
    )


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 2500)" in out and "(default: arrae)" in out and "(default: 64)" in out


def test_every_cli_option_has_help(monkeypatch):
    """Every option and argument of every command says what it is in --help."""
    import argparse

    built = {}

    def capture(parser, *args, **kwargs):
        built["parser"] = parser
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        cli.main(["train"])
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")

    walk(built["parser"], ["rrae-fast"])
    assert len(built["parser"]._actions) > 1 and not missing, missing


def test_cli_resume_says_where_it_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--model", "rrae", "--dataset", "digits", "--latent-size", "16"]
    args += ["--k", "2", "--steps", "6", "--batch-size", "32", "--out", out, "--no-progress"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 0
    assert f"resuming the run in {out} after step 6 of 6" in capsys.readouterr().out


def test_cli_damaged_config_and_unwritable_out_are_one_line(tmp_path, capsys):
    """A run directory whose config.json is not JSON, or JSON that is not a run's, and an
    output directory that cannot be written: one line naming the file, exit code 1."""
    out = tmp_path / "run"
    args = ["train", "--model", "rrae", "--dataset", "digits", "--latent-size", "16"]
    args += ["--k", "2", "--steps", "6", "--batch-size", "32", "--no-progress"]
    assert cli.main([*args, "--out", str(out)]) == 0
    assert "MB)" in capsys.readouterr().out  # the run directory's disk use
    config = out / "config.json"
    for text, why in (("{bad", "not valid JSON"), ('{"run": {}}', "it does not describe a run")):
        config.write_text(text)
        for command in (["evaluate", str(out)], [*args, "--out", str(out), "--resume"]):
            assert cli.main(command) == 1
            err = capsys.readouterr().err
            assert f"error: {config} is damaged: {why}" in err and err.count("\n") == 1, err

    under_a_file = tmp_path / "a-file"
    under_a_file.write_text("")
    assert cli.main([*args, "--out", str(under_a_file / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rrae-fast train: error: ") and err.count("\n") == 1, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_cli_read_only_out_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        args = ["train", "--model", "rrae", "--dataset", "digits", "--latent-size", "16"]
        args += ["--k", "2", "--steps", "6", "--no-progress", "--out", str(locked / "run")]
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert "Permission denied" in err and err.count("\n") == 1, err
    finally:
        locked.chmod(0o700)


def _interrupt_when(command, steps_at_least, timeout=300):
    """Runs `command`, sends SIGINT (what Ctrl-C sends) once its progress bar shows at least
    `steps_at_least` steps, and returns (exit code, stdout, stderr)."""
    import re
    import signal
    import subprocess
    import threading
    import time

    with subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        seen: list[str] = []
        reader = threading.Thread(
            target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), ""))
        )
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while True:
                shown = [int(n) for n in re.findall(r"\b(\d+)/100000\b", "".join(seen))]
                if shown and max(shown) >= steps_at_least:
                    break
                assert proc.poll() is None, "".join(seen)[-2000:]
                assert time.monotonic() < deadline, f"no step {steps_at_least} in {timeout} s"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            proc.kill()
            reader.join(timeout=10)
        return code, proc.stdout.read(), "".join(seen)


def test_ctrl_c_sent_to_a_training_process_saves_the_run_and_resume_goes_on(tmp_path):
    """SIGINT, as Ctrl-C sends it, to `rrae-fast train` in its own process once some steps
    have run: exit code 130, the run saved after the last complete step, and the message says
    so; `--resume` says it goes on from that step, and does."""
    import re
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", "rrae_fast", "train", "--model", "rrae"]
    command += ["--dataset", "digits", "--latent-size", "16", "--k", "2", "--batch-size", "32"]
    command += ["--steps", "100000", "--out", str(out)]

    code, _, err = _interrupt_when(command, 20)
    saved = re.search(r"interrupted; the run in .* is saved after step (\d+): continue", err)
    assert code == 130 and saved, err[-2000:]
    first = int(saved.group(1))
    assert len(json.loads((out / "state.json").read_text())["history"]["loss"]) == first >= 20

    code, stdout, err = _interrupt_when([*command, "--resume"], first + 10)
    assert f"resuming the run in {out} after step {first} of 100000" in stdout
    saved = re.search(r"is saved after step (\d+): continue", err)
    assert code == 130 and saved and int(saved.group(1)) >= first + 10, err[-2000:]


def test_contractive_sweep_scores_on_a_held_out_split_and_resumes(tmp_path, monkeypatch):
    """Each weight is trained without the held-out bumps and scored without the test set;
    finished weights are read back; the lowest score is chosen."""
    from rrae_fast.data import synthetic_bumps
    from rrae_fast.experiments import _sweep

    data = synthetic_bumps(train_size=100, test_size=8)
    monkeypatch.setattr(_sweep, "load_data", lambda config: data)
    split = _sweep.held_out_split(data, 16, seed=3)
    assert (len(split.x_train), len(split.x_test)) == (84, 16)
    rows = {tuple(np.round(p, 6)) for p in data.p_train}
    assert {tuple(np.round(p, 6)) for p in split.p_test} <= rows  # training bumps, not test
    assert not {tuple(p) for p in split.p_test} & {tuple(p) for p in split.p_train}
    assert split.scale["test"] == data.scale["train"]
    with pytest.raises(ValueError, match="held_out"):
        _sweep.held_out_split(data, 100)

    records = _sweep.contractive_sweep(
        tmp_path, betas=[0.0, 1.0], steps=4, held_out=16, progress=False
    )
    assert [r["beta"] for r in records] == [0.0, 1.0]
    for r in records:
        assert r["score"] == pytest.approx(
            (r["test_error"] + r["interpolation"][0] + r["random"][0]) / 3
        )
    text = (tmp_path / "sweep.md").read_text()
    assert f"Chosen: β = {_sweep.best(records):g}." in text
    trained = []
    real_train = _sweep.train
    monkeypatch.setattr(
        _sweep,
        "train",
        lambda c, *a, **kw: trained.append(c.model.beta) or real_train(c, *a, **kw),
    )
    again = _sweep.contractive_sweep(
        tmp_path, betas=[0.0, 1.0, 10.0], steps=4, held_out=16, progress=False
    )
    assert trained == [10.0] and len(again) == 3
    with pytest.raises(ValueError, match="other settings"):
        _sweep.contractive_sweep(tmp_path, betas=[1.0], steps=5, held_out=16, progress=False)
