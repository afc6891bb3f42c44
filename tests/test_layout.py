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
