"""Turn pytest-benchmark JSON from the SVD suite into markdown tables and PNG plots.

Usage:
    python benchmarks/report.py bench.json [more.json ...] [--results benchmarks/RESULTS.md]
        [--readme README.md] [--plots benchmarks/plots]

Without ``--results``/``--readme`` the tables go to stdout. With them, the text between the
markers ``<!-- scaling-report:begin -->`` and ``<!-- scaling-report:end -->`` of RESULTS.md
(every group) and ``<!-- performance:begin -->`` / ``<!-- performance:end -->`` of the README
(the k sweep only, with the plot) is replaced. Plots: time vs k per contender for each sweep
(log scale), and peak memory vs k.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections import defaultdict

SWEEP_SHAPE = (4096, 4608)
QUICK_SWEEP_SHAPE = (512, 576)
OURS = "rrae_fast"


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _sci(value) -> str:
    return "" if value is None else f"{value:.1e}"


def _mib(value) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if abs(value) < 10 else f"{value:.0f}"


def _clean_command(command: str) -> str:
    """The command as a reader would type it: JSON file names without their directories."""
    return re.sub(r"--benchmark-json=(\S*/)?(\S+)", r"--benchmark-json=\2", command)


def load(paths: list[str]) -> dict:
    """Merge several JSON files: benchmarks, skipped contenders, and the first file's header.

    A benchmark (or skip) recorded again in a later file replaces the earlier record, so a
    rerun of some groups after a change is merged over the run it updates.
    """
    merged: dict = {"benchmarks": {}, "skipped": {}, "commands": [], "incomplete": []}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for bench in data["benchmarks"]:
            # A case interrupted after its timing but before its record has no "contender".
            if "contender" in bench["extra_info"] or not bench["name"].startswith("test_svd"):
                key = (bench["group"], bench["extra_info"].get("contender", bench["name"]))
                merged["benchmarks"][key] = bench
                merged["skipped"].pop(key, None)
            if "contender" not in bench["extra_info"] and "test_svd" in bench["name"]:
                merged["incomplete"].append(bench["name"])
        for skip in data.get("skipped", []):
            key = (skip["group"], skip["name"])
            merged["skipped"][key] = skip
            merged["benchmarks"].pop(key, None)
        merged["commands"].append(_clean_command(data.get("command", "?")))
        for key in ("machine_info", "datetime", "loadavg_end"):
            merged.setdefault(key, data.get(key))
    merged["benchmarks"] = list(merged["benchmarks"].values())
    merged["skipped"] = list(merged["skipped"].values())
    return merged


def _case(bench: dict) -> dict | None:
    return bench["extra_info"].get("case")


def _group_key(group: str, case: dict | None):
    if case is None:
        return (1, group)
    return (
        0,
        case["mode"],
        case["batch"],
        -case["m"],
        -case["n"],
        case["spectrum"] != "rrae",
        case["dtype"],
        case["k"],
    )


def _versions(info: dict) -> str:
    found = [
        f"{key[: -len('_version')].replace('_', '-')} {value}"
        for key, value in sorted(info.items())
        if key.endswith("_version")
    ]
    return ("peers' versions: " + ", ".join(found) + ", ") if found else ""


def stamp(data: dict) -> str:
    info = data["benchmarks"][0]["extra_info"] if data["benchmarks"] else {}
    cpu = (data.get("machine_info") or {}).get("cpu", {}).get("brand_raw", "?")
    loads = [b["extra_info"].get("loadavg_1m", 0.0) for b in data["benchmarks"]]
    load_text = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "?"
    commands = "; ".join(f"`{c}`" for c in data["commands"])
    return (
        f"Taken {str(data.get('datetime'))[:16]} UTC on {info.get('cpus')} CPUs ({cpu}), "
        f"device {info.get('device')}, jax {info.get('jax')}, BLAS {info.get('blas')}, "
        f"{_versions(info)}"
        f"thread variables {info.get('threads_env') or 'unset'}; 1-minute load during the "
        f"cases {load_text}. Command: {commands}.\n"
    )


def group_tables(data: dict) -> str:
    groups: dict[str, list] = defaultdict(list)
    cases: dict[str, dict | None] = {}
    for bench in data["benchmarks"]:
        groups[bench["group"]].append(bench)
        cases[bench["group"]] = _case(bench)
    skipped: dict[str, list] = defaultdict(list)
    for s in data["skipped"]:
        skipped[s["group"]].append(s)
    out = []
    for group in sorted(groups, key=lambda g: _group_key(g, cases[g])):
        rows = sorted(groups[group], key=lambda b: b["stats"]["median"])
        by_name = {b["extra_info"].get("contender", b["name"]): b for b in rows}
        ours = by_name.get(OURS)
        gemm = by_name.get("gemm_reference")
        out.append(f"\n**{group}**\n")
        out.append(
            "| contender | median | min | rounds | rrae_fast speed-up | GEMM-eq | σ err | "
            "residual | sin θ | grad | path (passes) | peak MiB | XLA temp MiB | load |"
        )
        out.append("|---" * 14 + "|")
        for name, b in by_name.items():
            st, info = b["stats"], b["extra_info"]
            speedup = f"{st['median'] / ours['stats']['median']:.2f}" if ours else ""
            geq = f"{st['median'] / gemm['stats']['median']:.1f}" if gemm else ""
            grad = ""
            if "grad_finite" in info:
                grad = "finite" if info["grad_finite"] else "**non-finite**"
                if "grad_err" in info:
                    grad += f", err {info['grad_err']:.1e}"
            path = f"{info['path']} ({info['passes']})" if "path" in info else ""
            out.append(
                f"| {name} | {_fmt_time(st['median'])} | {_fmt_time(st['min'])} | {st['rounds']} "
                f"| {speedup} | {geq} | {_sci(info.get('sigma_err'))} "
                f"| {_sci(info.get('residual'))} | {_sci(info.get('angle'))} | {grad} | {path} "
                f"| {_mib(info.get('peak_extra_mib'))} | {_mib(info.get('xla_temp_mib'))} "
                f"| {info.get('loadavg_1m', 0):.2f} |"
            )
        for s in skipped.get(group, []):
            out.append(f"| {s['name']} | skipped: {s['reason']} |" + " |" * 12)
    return "\n".join(out) + "\n"


def sweep(data: dict, mode: str) -> tuple[tuple[int, int] | None, dict[str, dict[int, dict]]]:
    """{contender: {k: benchmark}} for the largest rrae-like float32 single-matrix sweep."""
    series: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for b in data["benchmarks"]:
        c = _case(b)
        if not c or c["mode"] != mode or c["batch"] or c["spectrum"] != "rrae":
            continue
        if c["dtype"] != "float32" or (c["m"], c["n"]) not in (SWEEP_SHAPE, QUICK_SWEEP_SHAPE):
            continue
        series[(c["m"], c["n"])][b["extra_info"]["contender"]][c["k"]] = b
    if not series:
        return None, {}
    shape = max(series, key=lambda s: s[0] * s[1])
    return shape, series[shape]


def sweep_table(data: dict) -> str:
    out = []
    for mode, title in (("fwd", "forward"), ("grad", "`jit(grad)` through `rank_reduce`")):
        shape, series = sweep(data, mode)
        if not series or OURS not in series:
            continue
        ks = sorted(series[OURS])
        others = sorted(n for n in series if n not in (OURS, "gemm_reference"))
        out.append(
            f"\n{title}, {shape[0]}×{shape[1]} rrae-like float32: median time, and in "
            "parentheses the peer's time over rrae_fast's (> 1: rrae_fast is faster; —: not "
            "run, reasons below)\n"
        )
        out.append("| k | rrae_fast | " + " | ".join(others) + " |")
        out.append("|---" * (2 + len(others)) + "|")
        for k in ks:
            ours = series[OURS][k]["stats"]["median"]
            cells = []
            for name in others:
                b = series[name].get(k)
                cells.append(
                    f"{_fmt_time(b['stats']['median'])} ({b['stats']['median'] / ours:.1f}×)"
                    if b
                    else "—"
                )
            out.append(f"| {k} | {_fmt_time(ours)} | " + " | ".join(cells) + " |")
    skips = sorted(
        {(s["name"], s["reason"]) for s in data["skipped"] if s["name"] != "rrae_fast_dense"}
    )
    if skips:
        out.append("\nSkipped somewhere in the run: " + "; ".join(f"{n} ({r})" for n, r in skips))
    complete = {b["name"] for b in data["benchmarks"]}
    lost = [name for name in data.get("incomplete", []) if name not in complete]
    if lost:
        out.append("\nInterrupted before their record was complete (left out): " + ", ".join(lost))
    return "\n".join(out) + "\n"


def plots(data: dict, directory: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    names = sorted({b["extra_info"].get("contender", "") for b in data["benchmarks"]} - {""})
    colors = {name: plt.cm.tab20(i % 20) for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, mode, title in ((axes[0], "fwd", "forward"), (axes[1], "grad", "jit(grad)")):
        shape, series = sweep(data, mode)
        for name in sorted(series):
            ks = sorted(series[name])
            ax.plot(
                ks,
                [series[name][k]["stats"]["median"] for k in ks],
                "o-",
                label=name,
                lw=2.5 if name == OURS else 1.2,
                color=colors[name],
            )
        if shape:
            ax.set_title(f"{title}, {shape[0]}×{shape[1]} float32")
        ax.set(xscale="log", yscale="log", xlabel="k", ylabel="median time [s]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    shape, series = sweep(data, "fwd")
    for name in sorted(series):
        ks = [k for k in sorted(series[name]) if "peak_extra_mib" in series[name][k]["extra_info"]]
        if ks:
            ax.plot(
                ks,
                [max(series[name][k]["extra_info"]["peak_extra_mib"], 0.1) for k in ks],
                "o-",
                label=name,
                lw=2.5 if name == OURS else 1.2,
                color=colors[name],
            )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="k",
        ylabel="peak extra resident memory [MiB]",
        title="forward, memory over the input",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = directory / "svd_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def _replace_block(path: pathlib.Path, name: str, body: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path} has no {begin} … {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+")
    parser.add_argument("--results", type=pathlib.Path)
    parser.add_argument("--readme", type=pathlib.Path)
    parser.add_argument("--plots", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    data = load(args.json)
    header = stamp(data)
    tables = group_tables(data)
    summary = sweep_table(data)
    figures = plots(data, args.plots) if args.plots else []
    if args.results is None and args.readme is None:
        sys.stdout.write(header + summary + tables)
    if args.results is not None:
        _replace_block(args.results, "scaling-report", header + summary + tables)
    if args.readme is not None:
        image = ""
        if figures:
            rel = figures[0].resolve()
            rel = rel.relative_to(args.readme.resolve().parent)
            image = f"\n![SVD time and memory vs k]({rel})\n"
        _replace_block(args.readme, "performance", header + summary + image)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
