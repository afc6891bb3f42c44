"""Crash-safe, verified checkpoints: Equinox leaves in `.eqx` files, everything else in JSON.

A checkpoint directory holds `config.json` (what to rebuild: model config, normaliser, training
plan), the model and optimizer files of checkpoints, the adaptive tracker's tagged models
`tag-k<k>.eqx`, and `state.json`, which names the files of the latest complete checkpoint.

The protocol is safe at every instant of a save:

1. The new checkpoint's files are written under names no earlier save used
   (`model-<step>-<save>.eqx`), each to a temporary name, flushed to disk and renamed into place.
2. `state.json` is replaced atomically (the same way): that rename is the commit. Until it
   happens the committed state names the previous checkpoint, whose files are untouched.
3. Only then are files removed that neither the new checkpoint nor the one before it names, so
   the previous checkpoint stays on disk as a fallback (:meth:`CheckpointDir.rollback`).

Every `.eqx` file starts with a header holding its length and SHA-256, and `state.json` holds
the SHA-256 of each file it names; both are checked when a file is read, so a damaged,
truncated or swapped file raises :class:`CheckpointError` naming the file and what to do,
instead of loading a different model. A run directory is untrusted input: the state may name
only plain file names of the forms above, inside the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

_MAGIC = b"RRAECKPT"
_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")  # magic, version, payload length, payload SHA-256
_CHECKPOINT_NAME = re.compile(r"(model|opt)-[0-9]+(-[0-9]+)?\.eqx")
_TAG_NAME = re.compile(r"tag-k[0-9]+\.eqx")
_TEMPORARY_NAME = re.compile(
    r"\.((model|opt)-[0-9]+(-[0-9]+)?\.eqx|tag-k[0-9]+\.eqx|state\.json|config\.json)\.\w+"
)


class RunDirectoryBusy(RuntimeError):
    """Another process holds the run directory's lock (:meth:`CheckpointDir.locked`)."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or not one of this run's.

    Attributes:
        path: the file concerned.
    """

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = Path(path)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a file system that cannot open directories: nothing more to do
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix.

    The data is flushed to disk before the rename and the rename before returning, so the new
    file survives a crash or a power loss once this returns.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # as other files the run writes (mkstemp's default is 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as JSON (NaN and ∞ are refused: encode them first)."""
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def read_json(path: Path) -> Any:
    """The JSON in `path`; a file that is not valid JSON raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"{path} is damaged: not valid JSON ({e})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_tree(tree) -> bytes:
    """The array leaves of a pytree (`eqx.tree_serialise_leaves`) behind a checksummed header."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    header = _HEADER.pack(_MAGIC, _VERSION, len(payload), hashlib.sha256(payload).digest())
    return header + payload


def save_tree(path: Path, tree) -> str:
    """Atomically write :func:`encode_tree` of `tree` to `path`; returns the file's SHA-256."""
    data = encode_tree(tree)
    write_atomic(path, data)
    return sha256(data)


def load_tree(path: Path, like, expected_sha256: str | None = None, remedy: str = ""):
    """Read leaves saved by :func:`save_tree` into a pytree of the same structure as `like`.

    Raises:
        CheckpointError: when the file is missing, its header or checksum does not match its
            contents (a flipped bit, a truncation), its SHA-256 is not `expected_sha256`, or
            its leaves do not fit `like`. The message names the file and ends with `remedy`.
    """
    path = Path(path)
    tail = f"; {remedy}" if remedy else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, f"checkpoint file {path} is missing{tail}") from None
    if len(data) < _HEADER.size:
        raise CheckpointError(path, f"checkpoint file {path} is damaged: truncated{tail}")
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CheckpointError(path, f"{path} is not an rrae_fast checkpoint file{tail}")
    if version != _VERSION:
        raise CheckpointError(
            path, f"checkpoint file {path} has format version {version}, expected {_VERSION}"
        )
    payload = data[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(
            path,
            f"checkpoint file {path} is damaged: {len(payload)} bytes of data where its header "
            f"says {length} (truncated or extended){tail}",
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            path, f"checkpoint file {path} is damaged: its contents fail their checksum{tail}"
        )
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise CheckpointError(
            path,
            f"checkpoint file {path} is intact but not the one {STATE_FILE} committed "
            f"(another save's file under its name){tail}",
        )
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as e:  # a structure that does not fit the skeleton
        raise CheckpointError(
            path, f"checkpoint file {path} does not fit the model being restored ({e}){tail}"
        ) from None


class CheckpointDir:
    """One run's checkpoint directory (created if missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        """Whether a committed checkpoint is present."""
        return (self.path / STATE_FILE).is_file()

    def holds_run(self) -> bool:
        """Whether a run was started here (its configuration written), checkpointed or not."""
        return (self.path / CONFIG_FILE).is_file() or self.exists()

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    @contextlib.contextmanager
    def locked(self):
        """Holds an exclusive OS lock on the directory (`.lock`, `flock`) for the block.

        A second writer, in this process or another, fails at once instead of mixing its files
        with this one's; the lock goes with the process if it dies.

        Raises:
            RunDirectoryBusy: when another writer holds it.
        """
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise RunDirectoryBusy(
                    f"{self.path} is in use by another training run (process {holder}); wait "
                    "for it to finish or choose another output directory"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the lock

    def clear(self) -> None:
        """Removes this run's state, config, checkpoint, tag and temporary files (and nothing
        else)."""
        for entry in self.path.iterdir():
            name = entry.name
            ours = name in (STATE_FILE, CONFIG_FILE) or any(
                p.fullmatch(name) for p in (_CHECKPOINT_NAME, _TEMPORARY_NAME, _TAG_NAME)
            )
            if ours and entry.is_file() and not entry.is_symlink():
                entry.unlink()

    # -- names -----------------------------------------------------------------------------

    def _member(self, name: Any) -> Path:
        """`name` as a file of this directory; refuses anything but a checkpoint file name."""
        if not isinstance(name, str) or not _CHECKPOINT_NAME.fullmatch(name):
            raise CheckpointError(
                self.path / STATE_FILE,
                f"{self.path / STATE_FILE} names {name!r}, which is not a checkpoint file of "
                "this directory; the state is damaged or was edited",
            )
        return self.path / name

    @staticmethod
    def _committed_names(state: dict[str, Any]) -> set[str]:
        """The files of the checkpoint `state` commits and of the one kept before it."""
        names = set(state["files"].values())
        if state.get("previous"):
            names.update(state["previous"]["files"].values())
        return names

    def _sweep(self, keep: set[str]) -> None:
        """Remove checkpoint files (and temporary files of interrupted writes) not in `keep`."""
        for entry in self.path.iterdir():
            name = entry.name
            stale = (_CHECKPOINT_NAME.fullmatch(name) and name not in keep) or (
                _TEMPORARY_NAME.fullmatch(name)
            )
            if stale and entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)

    # -- tagged models ---------------------------------------------------------------------

    def save_tag(self, k: int, model) -> str:
        """Save the model tagged with bottleneck `k` by the tracker; returns the file name."""
        name = f"tag-k{int(k)}.eqx"
        save_tree(self.path / name, model)
        return name

    def remove_tags(self) -> int:
        """Removes the tracker's tagged models (once training is over nothing restores them);
        returns how many were removed."""
        removed = 0
        for entry in self.path.iterdir():
            if _TAG_NAME.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
                removed += 1
        return removed

    def load_tag(self, k: int, like):
        path = self.path / f"tag-k{int(k)}.eqx"
        return load_tree(
            path, like, remedy="the tracker cannot restore that model; start the run again"
        )

    # -- checkpoints -----------------------------------------------------------------------

    def save(self, step: int, model, opt_state, state: dict[str, Any]) -> None:
        """Save model and optimizer state, then commit `state` (which names them).

        The checkpoint committed before stays on disk (see the module docstring).
        """
        previous = self.read_state() if self.exists() else None
        if previous is not None:
            for name in previous.get("files", {}).values():
                self._member(name)  # refuse a state naming files outside the directory
        saves = int(previous.get("saves", 0)) + 1 if previous else 1
        # At a stage boundary (and after the last stage) there is no optimizer state: no file.
        trees = {"model": model} if opt_state is None else {"model": model, "opt": opt_state}
        files = {role: f"{role}-{int(step)}-{saves}.eqx" for role in trees}
        checksums = {
            files[role]: save_tree(self.path / files[role], t) for role, t in trees.items()
        }
        if previous is not None:
            previous.pop("previous", None)  # keep one checkpoint back, not the whole chain
        committed = {
            **state,
            "files": files,
            "checksums": checksums,
            "saves": saves,
            "previous": previous,
        }
        write_json(self.path / STATE_FILE, committed)
        self._sweep(self._committed_names(committed))

    def read_state(self) -> dict[str, Any]:
        state = read_json(self.path / STATE_FILE)
        if not isinstance(state, dict) or not isinstance(state.get("files"), dict):
            raise CheckpointError(
                self.path / STATE_FILE, f"{self.path / STATE_FILE} is damaged: no file list"
            )
        return state

    def _remedy(self, state: dict[str, Any]) -> str:
        previous = state.get("previous")
        if previous:
            history = previous.get("history")
            when = f" (after {len(history['loss'])} steps)" if isinstance(history, dict) else ""
            return (
                f"the previous checkpoint{when} is kept: `rrae-fast rollback {self.path}` makes "
                "it the one to resume from"
            )
        return "no earlier checkpoint is kept; start the run again"

    def load(self, model_like, opt_like):
        """The latest model and optimizer state, read into the given skeletons (the state is None
        for a checkpoint saved at a stage boundary, which holds none; `opt_like` must be None).

        Raises:
            CheckpointError: a file is missing or damaged (the message says what to do).
        """
        state = self.read_state()
        files, sums = state["files"], state.get("checksums", {})
        remedy = self._remedy(state)
        model_path = self._member(files.get("model"))
        model = load_tree(model_path, model_like, sums.get(model_path.name), remedy)
        if "opt" not in files:  # saved at a stage boundary: no optimizer state
            if opt_like is not None:
                raise CheckpointError(
                    self.path / STATE_FILE,
                    f"{self.path / STATE_FILE} names no optimizer state; {remedy}",
                )
            return model, None
        opt_path = self._member(files["opt"])
        return model, load_tree(opt_path, opt_like, sums.get(opt_path.name), remedy)

    def verify(self) -> None:
        """Checks every file of the latest checkpoint against its checksums (no skeleton needed).

        Raises:
            CheckpointError: as :meth:`load` would.
        """
        state = self.read_state()
        sums = state.get("checksums", {})
        for name in state["files"].values():
            path = self._member(name)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise CheckpointError(
                    path, f"checkpoint file {path} is missing; {self._remedy(state)}"
                ) from None
            if sums.get(name) != sha256(data):
                raise CheckpointError(
                    path,
                    f"checkpoint file {path} is damaged: it fails its checksum; "
                    f"{self._remedy(state)}",
                )

    def rollback(self) -> dict[str, Any]:
        """Make the previous checkpoint the latest one (after a damaged latest checkpoint).

        Returns:
            The state now committed.

        Raises:
            CheckpointError: when no previous checkpoint is kept.
        """
        state = self.read_state()
        previous = state.get("previous")
        if not previous:
            raise CheckpointError(
                self.path / STATE_FILE, f"{self.path} keeps no checkpoint before the latest one"
            )
        for name in previous["files"].values():
            self._member(name)
        write_json(self.path / STATE_FILE, {**previous, "previous": None})
        return previous
