"""The README stays true: its quickstart runs, and CI runs its test command."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_ci_runs_readme_test_command():
    """.ci/run calls the README's install-and-test command verbatim."""
    commands = [b.strip() for b in _blocks("bash")]
    test_cmd = next(c for c in commands if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def _test_only_modules() -> set[str]:
    """Top-level modules of the test extra's packages that the base install lacks."""
    import importlib.metadata
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[<>=!\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    extra = names(project["optional-dependencies"]["test"]) - names(project["dependencies"])
    modules = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(d.lower() in extra for d in dists):
            modules.add(module)
    assert "sklearn" in modules and "pytest" in modules, modules
    return modules


_BASE_ONLY = """
import importlib.abc, runpy, sys

class _NotInBase(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the base install)")

sys.meta_path.insert(0, _NotInBase())
runpy.run_path(sys.argv[1], run_name="readme_example")
"""


def test_readme_python_blocks_run_under_the_base_install(tmp_path):
    """Every Python example in the README executes and prints something, with the packages
    that only the test extra installs (scikit-learn, pytest, ...) made unimportable, as after
    the README's own `pip install .`."""
    blocks = _blocks("python")
    assert len(blocks) >= 2
    runner = tmp_path / "base_only.py"
    runner.write_text(_BASE_ONLY.format(blocked=sorted(_test_only_modules())))
    for i, code in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(runner), str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"README example {i}:\n{done.stderr[-3000:]}"
        assert done.stdout.strip()


def test_the_base_only_runner_blocks_the_test_extra(tmp_path):
    runner = tmp_path / "base_only.py"
    runner.write_text(_BASE_ONLY.format(blocked=sorted(_test_only_modules())))
    script = tmp_path / "uses_sklearn.py"
    script.write_text("from rrae_fast.data import load_digits\nload_digits()\n")
    done = subprocess.run(
        [sys.executable, str(runner), str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and "pip install 'rrae_fast[digits]'" in done.stderr


def test_readme_main_job_trains_an_arrae():
    """The main-job command installs the package and runs `rrae-fast train` (its defaults)."""
    main_job = next(c for c in (b.strip() for b in _blocks("bash")) if "rrae-fast" in c)
    assert main_job.endswith("rrae-fast train")
