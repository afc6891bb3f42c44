"""The README stays true: its quickstart runs, and CI runs its test command."""

from __future__ import annotations

import pathlib
import re
import runpy

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_ci_runs_readme_test_command():
    """.ci/run calls the README's install-and-test command verbatim."""
    commands = [b.strip() for b in _blocks("bash")]
    test_cmd = next(c for c in commands if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_quickstart_runs(tmp_path, capsys):
    """The README's quickstart executes."""
    (code,) = _blocks("python")
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="readme_quickstart")
    assert capsys.readouterr().out.strip()
