"""Checks a built wheel: its tag, that the compiled modules are in it, and nothing else stray.

Usage: python .ci/check_wheel.py WHEEL
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024  # the CPU wheel's size target
REQUIRED = [
    r"rrae_fast/__init__\.py",
    r"rrae_fast/py\.typed",
    r"rrae_fast/svd/_cpu\.cpython-[^/]+\.so",
    r"rrae_fast/svd/_cpu_testing\.cpython-[^/]+\.so",
    r"rrae_fast/svd/librrae_fast_cpu_core\.so",
    r"rrae_fast/svd/_cpu\.pyi",
]
ALLOWED = re.compile(
    r"(rrae_fast/(([\w/]+/)?|[\w/]+(\.cpython-[\w-]+)?\.(py|pyi|so)|py\.typed)"
    r"|rrae_fast\.libs/([\w.+-]+\.so[\w.]*)?"
    r"|rrae_fast-[\w.]+\.dist-info/([\w./-]+)?)"
)


def main(path: str) -> int:
    wheel = Path(path)
    tag = wheel.name.split("-")[-1].removesuffix(".whl")
    problems = []
    if not re.fullmatch(r"manylinux_\d+_\d+_x86_64(\.manylinux\w+)*", tag):
        problems.append(f"platform tag {tag!r} is not a manylinux tag")
    names = zipfile.ZipFile(wheel).namelist()
    for pattern in REQUIRED:
        if not any(re.fullmatch(pattern, n) for n in names):
            problems.append(f"missing {pattern}")
    stray = [n for n in names if not ALLOWED.fullmatch(n) or "__pycache__" in n]
    problems += [f"stray file {n}" for n in stray]
    size = wheel.stat().st_size
    print(f"{wheel.name}: {len(names)} files, {size / 1e6:.2f} MB")
    if size > MAX_BYTES:
        problems.append(f"{size} bytes, above the {MAX_BYTES}-byte target")
    for p in problems:
        print(f"check_wheel: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
