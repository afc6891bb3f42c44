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


def test_readme_python_blocks_run(tmp_path, capsys):
    """Every Python example in the README executes and prints something."""
    blocks = _blocks("python")
    assert len(blocks) >= 2
    for i, code in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(code)
        runpy.run_path(str(script), run_name="readme_example")
        assert capsys.readouterr().out.strip()


def test_readme_main_job_trains_an_arrae():
    """The main-job command installs the package and runs `rrae-fast train` (its defaults)."""
    main_job = next(c for c in (b.strip() for b in _blocks("bash")) if "rrae-fast" in c)
    assert main_job.endswith("rrae-fast train")
