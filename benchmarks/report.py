"""Turn a pytest-benchmark JSON file into markdown tables: one per group, ratios to the fastest.

Usage: python benchmarks/report.py bench.json > table.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

_ACCURACY_KEYS = ("sigma_err", "residual", "orth_u", "passes", "grad_finite")


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.1e}"
    return str(value)


def tables(data: dict) -> str:
    groups: dict[str, list] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"]].append(bench)
    out = []
    machine = data["benchmarks"][0]["extra_info"] if data["benchmarks"] else {}
    cpu = data["machine_info"].get("cpu", {}).get("brand_raw", "?")
    out.append(
        f"Machine: {machine.get('cpus')} CPUs ({cpu}), jax {machine.get('jax')}, "
        f"BLAS {machine.get('blas')}; taken {data['datetime'][:16]} UTC.\n"
    )
    for group in sorted(groups):
        rows = sorted(groups[group], key=lambda b: b["stats"]["median"])
        gemm = next((b for b in rows if "gemm_reference" in b["name"]), None)
        out.append(f"\n**{group}**\n")
        header = "| method | median | min | rounds | × vs fastest | GEMM-eq | load | accuracy |"
        out.append(header)
        out.append("|---" * 8 + "|")
        best = rows[0]["stats"]["median"]
        for b in rows:
            st, info = b["stats"], b["extra_info"]
            name = b["name"].split("[", 1)[-1].rstrip("]")
            geq = f"{st['median'] / gemm['stats']['median']:.1f}" if gemm else ""
            acc = ", ".join(f"{key}={_fmt(info[key])}" for key in _ACCURACY_KEYS if key in info)
            out.append(
                f"| {name} | {_fmt_time(st['median'])} | {_fmt_time(st['min'])} | {st['rounds']} "
                f"| {st['median'] / best:.2f} | {geq} | {info.get('loadavg_1m', 0):.2f} | {acc} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        data = json.load(f)
    sys.stdout.write(tables(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
