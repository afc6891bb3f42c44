"""The docstring examples of the public API run and print what they claim."""

from __future__ import annotations

import doctest
import os
import pathlib
import subprocess
import sys

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


def test_the_docs_site_builds_without_a_warning(tmp_path):
    """The API reference (mkdocs.yml: mkdocstrings over the docstrings, the CLI's --help, the
    benchmark record) builds with every warning an error."""
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "rrae-fast table2" in cli and "--steps" in cli
    assert "Accuracy contract" in (tmp_path / "site" / "api" / "op" / "index.html").read_text()
