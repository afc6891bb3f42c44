"""The public API is typed and its docstrings agree with the signatures."""

from __future__ import annotations

import inspect
import pathlib
import re
import typing

import pytest

import rrae_fast
from rrae_fast import data, evaluation, experiments, models, training

PUBLIC = [
    (module.__name__, name, getattr(module, name))
    for module in (rrae_fast, data, evaluation, experiments, models, training)
    for name in module.__all__
    if inspect.isfunction(getattr(module, name))
]


def _documented(doc: str) -> list[str] | None:
    """The parameter names of a Google-style `Args:` section, or None without one."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip()) + 4
    names = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break  # the next section
        match = re.match(rf"^ {{{indent}}}(\*{{0,2}}\w+)( \([^)]*\))?:", line)
        if match:
            names.append(match.group(1).lstrip("*"))
    return names


def test_the_package_is_marked_typed():
    assert (pathlib.Path(rrae_fast.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("module,name,fn", PUBLIC, ids=[f"{m}.{n}" for m, n, _ in PUBLIC])
def test_docstring_arguments_match_the_signature(module, name, fn):
    """Every public function has a docstring; where it has an `Args:` section, that section
    names exactly the parameters of the signature, in order."""
    doc = inspect.getdoc(fn)
    assert doc, f"{module}.{name} has no docstring"
    documented = _documented(doc)
    if documented is None:
        return
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    assert documented == params, f"{module}.{name}: docstring {documented}, signature {params}"


def test_the_op_documents_every_argument():
    for fn in (rrae_fast.truncated_svd, rrae_fast.rank_reduce, rrae_fast.diagnose):
        assert _documented(inspect.getdoc(fn)) is not None, fn.__name__


def test_string_options_are_literal_types():
    """The op's string options are `Literal` types listing exactly the accepted values."""
    from rrae_fast.svd import _checks

    for fn in (rrae_fast.truncated_svd, rrae_fast.rank_reduce, rrae_fast.diagnose):
        hints = typing.get_type_hints(fn)
        assert set(typing.get_args(hints["method"])) == set(_checks.METHODS), fn.__name__
        assert set(typing.get_args(hints["gradient"])) == set(_checks.GRADIENT_MODES)
    hints = typing.get_type_hints(rrae_fast.diagnose)
    assert set(typing.get_args(hints["op"])) == {"rank_reduce", "truncated_svd"}
