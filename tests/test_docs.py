"""The docstring examples of the public API run and print what they claim."""

from __future__ import annotations

import doctest

import pytest

from rrae_fast import cli
from rrae_fast.svd import _ops


@pytest.mark.parametrize("module", [_ops])
def test_doctests(module):
    """Every `Examples:` block in the module's docstrings passes."""
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_cli_demo(capsys):
    """`rrae-fast demo` runs and reports the singular values it found."""
    assert cli.main(["demo", "--m", "60", "--n", "20", "--rank", "3"]) == 0
    out = capsys.readouterr().out
    assert "top singular values" in out and "max |s - s_ref|" in out
