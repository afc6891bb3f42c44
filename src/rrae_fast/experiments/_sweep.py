"""The contractive AE's weight for Table 1, chosen on a held-out split of the training set.

The paper's value (its Table 4) was lost. Each weight β trains the contractive AE of Table 1
on the synthetic training set less a held-out part (80 of the 400 grid bumps, drawn by the
seed); the test set is never touched. A weight is scored by the mean of three percentages
computed without the test set: the reconstruction error of the held-out bumps, and the
bump-fit misfit of interpolated and of randomly sampled images (Table 1's generation metrics,
from the training codes). The lowest score wins.

Each weight's result is appended to `sweep.json` as it finishes, so an interrupted sweep
resumes; `sweep.md` shows the table and the choice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..training._checkpoint import write_json
from ._config import RunConfig
from ._evaluate import evaluate
from ._run import load_data, train
from ._table1 import TABLE1

BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
HELD_OUT = 80


def held_out_split(data: Dataset, held_out: int = HELD_OUT, seed: int = 0) -> Dataset:
    """`data`'s training set split in two: `held_out` samples drawn by `seed` become the
    "test" set (on the training set's scale), the others the training set."""
    n = len(data.x_train)
    if not 0 < held_out < n:
        raise ValueError(f"held_out must lie in (0, {n}), got {held_out}")
    order = np.random.default_rng(seed).permutation(n)
    held, kept = np.sort(order[:held_out]), np.sort(order[held_out:])
    p = data.p_train
    return Dataset(
        x_train=data.x_train[kept],
        x_test=data.x_train[held],
        p_train=None if p is None else p[kept],
        p_test=None if p is None else p[held],
        name=data.name,
        scale={"train": data.scale["train"], "test": data.scale["train"]},
    )


def score(record: dict) -> float:
    """The sweep's criterion: the mean of the held-out error and the two generation misfits."""
    return statistics.mean([record["test_error"], record["interpolation"][0], record["random"][0]])


def contractive_sweep(
    out_dir: str | os.PathLike,
    *,
    betas: Sequence[float] = BETAS,
    steps: int = 2500,
    seed: int = 0,
    held_out: int = HELD_OUT,
    progress: bool = True,
    command: str = "rrae-fast sweep-contractive",
) -> list[dict]:
    """Trains and scores the contractive AE for each weight in `betas` (see the module).

    Returns:
        One record per weight: `beta`, the steps, seed, wall time, `score` and the `Metrics`
        fields (`test_error` is the held-out error).
    """
    if not betas or any(b < 0 for b in betas):
        raise ValueError(f"betas must be non-negative weights, got {list(betas)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.json"
    records: list[dict] = json.loads(path.read_text()) if path.exists() else []
    clash = [
        r for r in records if (r["steps"], r["seed"], r["held_out"]) != (steps, seed, held_out)
    ]
    if clash:
        raise ValueError(f"{out} holds a sweep of other settings: choose another --out")
    data = held_out_split(load_data(RunConfig(seed=seed)), held_out, seed)
    for beta in betas:
        if any(r["beta"] == beta for r in records):
            continue
        model = dataclasses.replace(TABLE1["Cont"], beta=float(beta))
        config = RunConfig(model=model, steps=steps, seed=seed)
        run_dir = out / "runs" / f"beta-{beta:g}"
        start = time.perf_counter()
        run = train(config, run_dir, resume=True, progress=progress, data=data)
        metrics = evaluate(run, run_dir, seed=seed).to_dict()
        record = {
            "beta": float(beta),
            "steps": steps,
            "seed": seed,
            "held_out": held_out,
            "wall_s": round(time.perf_counter() - start, 1),
            "load_1min": round(os.getloadavg()[0], 2),
            "command": command,
            **{
                k: metrics[k]
                for k in ("k", "train_error", "test_error", "interpolation", "random")
            },
        }
        record["score"] = score(record)
        records.append(record)
        write_json(path, records)
        (out / "sweep.md").write_text(markdown(records))
        if progress:
            print(f"beta {beta:g}: score {record['score']:.2f}", flush=True)
    return records


def best(records: list[dict]) -> float:
    """The weight with the lowest score."""
    return min(records, key=score)["beta"]


def markdown(records: list[dict]) -> str:
    """The sweep as a table, with the choice."""
    command = records[0]["command"] if records else ""
    lines = [
        f"Command: `{command}`",
        "",
        "Held-out error: 100·‖X̂ − X‖_F/‖X‖_F on the held-out training bumps; interpolation and "
        "random: bump-fit misfit (mean ± std); score: mean of the three means (lower is better).",
        "",
        "| β | Train % | Held-out % | Interpolation % | Random % | Score | Wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: r["beta"]):
        lines.append(
            f"| {r['beta']:g} | {r['train_error']:.2f} | {r['test_error']:.2f} "
            f"| {r['interpolation'][0]:.2f} ± {r['interpolation'][1]:.2f} "
            f"| {r['random'][0]:.2f} ± {r['random'][1]:.2f} | {r['score']:.2f} "
            f"| {r['wall_s'] / 60:.1f} min |"
        )
    if records:
        lines += ["", f"Chosen: β = {best(records):g}."]
    return "\n".join(lines) + "\n"
