"""How the synthetic results depend on the step budget, the tracker and the seed.

Each (variant, budget, seed) is one training run on the synthetic set, evaluated as for Table 1.
Runs go in `out_dir/runs/<variant>-<steps>-seed<seed>/`; every finished run is appended to
`out_dir/budgets.json` at once (with its wall time and the machine's load), and
`out_dir/budgets.md` is rewritten, so that an interrupted study resumes where it stopped: the
finished runs are skipped and an unfinished one continues from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from ..models import ModelConfig
from ..training._checkpoint import write_json
from ._config import RunConfig
from ._evaluate import evaluate
from ._run import train

#: The variants: aRRAE under either tracker preset, and the fixed RRAE at the paper's k = 2.
VARIANTS: dict[str, dict] = {
    "aRRAE (authors)": {"model": ModelConfig(kind="arrae", latent_size=200, k=64)},
    "aRRAE (paper)": {
        "model": ModelConfig(kind="arrae", latent_size=200, k=64),
        "tracker_preset": "paper",
    },
    "RRAE k=2": {"model": ModelConfig(kind="rrae", latent_size=200, k=2)},
}
FINETUNE_STEPS = 500  # the paper's fine-tuning budget, whatever the main stage's


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def budget_study(
    out_dir: str | os.PathLike,
    *,
    steps: Sequence[int] = (2500, 5000, 10000, 20000),
    seeds: Sequence[int] = (0, 1, 2),
    variants: Sequence[str] | None = None,
    finetune_steps: int = FINETUNE_STEPS,
    command: str = "",
    progress: bool = True,
) -> list[dict]:
    """Runs what is missing of the study and returns every finished run's record.

    Runs go budget by budget (the small ones first, every variant and seed), so that a study
    cut short has complete rows for its smaller budgets.

    Args:
        out_dir: the study's directory.
        steps: budgets in forward passes, fine-tuning included.
        seeds: seeds of initialisation, batch order and evaluation draws.
        variants: labels of `VARIANTS` (default: all).
        finetune_steps: of each budget, the fine-tuning steps.
        command: the command line, recorded beside the results.
        progress: show each run's progress bar.

    Returns:
        One record per finished run: variant, steps, seed, wall time, load, and `Metrics`.
    """
    variants = list(VARIANTS) if variants is None else list(variants)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    if any(s <= finetune_steps for s in steps):
        raise ValueError(f"every budget must exceed the {finetune_steps} fine-tuning steps")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "budgets.json"
    records: list[dict] = json.loads(path.read_text()) if path.exists() else []
    done = {(r["variant"], r["steps"], r["seed"]) for r in records}
    for budget in steps:
        for seed in seeds:
            for label in variants:
                if (label, budget, seed) in done:
                    continue
                config = RunConfig(
                    **VARIANTS[label], steps=budget, finetune_steps=finetune_steps, seed=seed
                )
                run_dir = out / "runs" / f"{_slug(label)}-{budget}-seed{seed}"
                resumed = (run_dir / "state.json").exists()
                start = time.perf_counter()
                run = train(config, run_dir, resume=True, progress=progress)
                metrics = evaluate(run, run_dir, seed=seed)
                record = {
                    "variant": label,
                    "steps": budget,
                    "seed": seed,
                    "wall_s": round(time.perf_counter() - start, 1),
                    "resumed": resumed,  # wall_s then covers the last part only
                    "load_1min": round(os.getloadavg()[0], 2),
                    "command": command,
                    **metrics.to_dict(),
                }
                write_json(run_dir / "metrics.json", metrics.to_dict())
                records.append(record)
                write_json(path, records)
                (out / "budgets.md").write_text(markdown(records, command))
    return records


def markdown(records: list[dict], command: str = "") -> str:
    """One row per run, grouped by variant and budget."""
    lines = [
        f"Command: `{command}`" if command else "",
        "",
        "| Variant | Steps | Seed | k | k from step (main steps at k) | Train % | Test % "
        "| Interpolation % | Random % | Wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(VARIANTS)
    for r in sorted(records, key=lambda r: (order.index(r["variant"]), r["steps"], r["seed"])):
        t = r["training"]
        since = "—" if t["final_k_since_step"] is None else t["final_k_since_step"]
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['seed']} | {r['k']} "
            f"| {since} ({t['main_steps_at_final_k']}) | {r['train_error']:.2f} "
            f"| {r['test_error']:.2f} | {_pm(r['interpolation'])} | {_pm(r['random'])} "
            f"| {r['wall_s'] / 60:.1f} min{' (resumed)' if r['resumed'] else ''} |"
        )
    return "\n".join(lines) + "\n"


def _pm(v) -> str:
    return "n/a" if v is None else f"{v[0]:.2f} ± {v[1]:.2f}"
