"""Atomic checkpoints: Equinox leaves in `.eqx` files, everything else in JSON.

A checkpoint directory holds `config.json` (what to rebuild: model config, normaliser, training
plan), numbered `model-<step>.eqx` / `opt-<step>.eqx` files, the adaptive tracker's tagged models
`tag-k<k>.eqx`, and `state.json`, written last: it names the files of the latest complete
checkpoint, so a run interrupted while writing resumes from the previous one. Every file is
written to a temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as JSON (NaN and ∞ are refused: encode them first)."""
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_tree(path: Path, tree) -> None:
    """Atomically serialise the array leaves of a pytree (`eqx.tree_serialise_leaves`)."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    write_atomic(path, buf.getvalue())


def load_tree(path: Path, like):
    """Read leaves saved by :func:`save_tree` into a pytree of the same structure as `like`."""
    with open(path, "rb") as f:
        return eqx.tree_deserialise_leaves(f, like)


class CheckpointDir:
    """One run's checkpoint directory (created if missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        """Whether a complete checkpoint is present."""
        return (self.path / STATE_FILE).is_file()

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    def save_tag(self, k: int, model) -> str:
        """Save the model tagged with bottleneck `k` by the tracker; returns the file name."""
        name = f"tag-k{k}.eqx"
        save_tree(self.path / name, model)
        return name

    def save(self, step: int, model, opt_state, state: dict[str, Any]) -> None:
        """Save model and optimizer state, then commit `state` (which names them)."""
        files = {"model": f"model-{step}.eqx", "opt": f"opt-{step}.eqx"}
        save_tree(self.path / files["model"], model)
        save_tree(self.path / files["opt"], opt_state)
        previous = self.read_state()["files"] if self.exists() else None
        write_json(self.path / STATE_FILE, {**state, "files": files})
        if previous and previous != files:  # the new checkpoint is complete: drop the old one
            for name in previous.values():
                (self.path / name).unlink(missing_ok=True)

    def read_state(self) -> dict[str, Any]:
        return read_json(self.path / STATE_FILE)

    def load(self, model_like, opt_like):
        """The latest model and optimizer state, read into the given skeletons."""
        files = self.read_state()["files"]
        return (
            load_tree(self.path / files["model"], model_like),
            load_tree(self.path / files["opt"], opt_like),
        )

    def load_tag(self, k: int, like):
        return load_tree(self.path / f"tag-k{k}.eqx", like)
