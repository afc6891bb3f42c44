"""Dependencies point one way: the op (`rrae_fast.svd`) imports nothing from the library, and the
library reaches the op only through `rrae_fast.svd`'s public names."""

from __future__ import annotations

import ast
import pathlib

import rrae_fast
import rrae_fast.svd

PACKAGE = pathlib.Path(rrae_fast.__file__).parent
LIBRARY = ("cli.py", "data", "evaluation", "experiments", "models", "training")


def _imports(path: pathlib.Path):
    """(level, module, names) of every `from ... import ...` in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", {a.name for a in node.names}


def _files(*parts: str):
    for part in parts:
        path = PACKAGE / part
        yield from [path] if path.suffix == ".py" else sorted(path.glob("*.py"))


def test_the_op_imports_nothing_from_the_library():
    files = list(_files("svd"))
    assert len(files) >= 8
    for path in files:
        for level, module, _ in _imports(path):
            assert level <= 1, f"svd/{path.name} imports from the package above it"
            assert not module.startswith("rrae_fast"), f"svd/{path.name} imports {module}"


def test_the_library_reaches_the_op_through_its_public_names():
    public = set(rrae_fast.svd.__all__)
    seen = 0
    for path in _files(*LIBRARY):
        depth = 1 if path.parent == PACKAGE else 2  # `from .x` at the top, `from ..x` below
        for level, module, names in _imports(path):
            absolute = level == 0 and module.startswith("rrae_fast")
            assert not absolute or module == "rrae_fast.svd", f"{path.name} imports {module}"
            if (level == depth and module.split(".")[0] == "svd") or absolute:
                assert module in ("svd", "rrae_fast.svd"), f"{path.name} imports {module}"
                assert names <= public, f"{path.name} imports {names - public}"
                seen += 1
            if level == depth and not module:
                assert not names & {"svd", "_native", "_cpu"}, path.name
    assert seen >= 3  # the bottleneck, the loss and the final basis


def test_the_package_reexports_the_op():
    for name in rrae_fast.svd.__all__:
        assert getattr(rrae_fast, name) is getattr(rrae_fast.svd, name)
    assert set(rrae_fast.svd.__all__) <= set(rrae_fast.__all__)


def test_nothing_in_the_package_loads_the_test_module():
    """`_cpu_testing` (fault injection, probes) is for the tests only."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any("_cpu_testing" in n for n in names), path


def test_the_wheel_check_refuses_stray_and_missing_files(tmp_path):
    """.ci/check_wheel.py, which CI runs on the built wheel: a clean wheel passes; a source
    file, a missing compiled module or a non-manylinux tag fails."""
    import subprocess
    import sys
    import zipfile

    root = pathlib.Path(__file__).resolve().parents[1]
    good = [
        "rrae_fast/",
        "rrae_fast/__init__.py",
        "rrae_fast/py.typed",
        "rrae_fast/svd/_cpu.cpython-311-x86_64-linux-gnu.so",
        "rrae_fast/svd/_cpu_testing.cpython-311-x86_64-linux-gnu.so",
        "rrae_fast/svd/librrae_fast_cpu_core.so",
        "rrae_fast/svd/_cpu.pyi",
        "rrae_fast-0.2.0.dist-info/RECORD",
    ]

    def check(names, tag="manylinux_2_35_x86_64"):
        wheel = tmp_path / f"rrae_fast-0.2.0-cp311-cp311-{tag}.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            for n in names:
                z.writestr(n, "")
        done = subprocess.run(
            [sys.executable, str(root / ".ci" / "check_wheel.py"), str(wheel)],
            capture_output=True,
            text=True,
        )
        return done.returncode, done.stderr

    assert check(good) == (0, "")
    assert "stray file rrae_fast/svd/kernel.cc" in check([*good, "rrae_fast/svd/kernel.cc"])[1]
    assert "missing" in check([n for n in good if "librrae" not in n])[1]
    assert "not a manylinux tag" in check(good, tag="linux_x86_64")[1]
