"""IDX parsing and the MNIST / Fashion-MNIST loaders, on small files written here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from rrae_fast.data import load_fashion_mnist, load_mnist, read_idx

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000_08_<ndim>, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, data: bytes, gz: bool) -> None:
    path.write_bytes(gzip.compress(data) if gz else data)


def make_set(rng, directory, n_train=7, n_test=3, rows=5, cols=4, gz=False, dotted=False):
    """Writes the four files and returns (train images, train labels, test images, labels)."""
    directory.mkdir(exist_ok=True)
    arrays = (
        rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    for name, a in zip(NAMES, arrays):
        if dotted:
            name = name.replace("-idx", ".idx")
        write(directory / (name + (".gz" if gz else "")), idx_bytes(a), gz)
    return arrays


def test_header_layout_matches_the_lecun_format():
    # Images: magic 2051 and data at byte 16; labels: magic 2049 and data at byte 8.
    images = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    labels = idx_bytes(np.zeros(2, np.uint8))
    assert struct.unpack(">IIII", images[:16]) == (2051, 2, 28, 28) and len(images) == 16 + 1568
    assert struct.unpack(">II", labels[:8]) == (2049, 2) and len(labels) == 8 + 2


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_round_trip(tmp_path, rng, gz, dotted):
    tr_x, tr_y, te_x, te_y = make_set(rng, tmp_path / "d", gz=gz, dotted=dotted)
    ds = load_mnist(tmp_path / "d")
    assert ds.name == "mnist"
    assert ds.x_train.shape == (7, 1, 5, 4) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (3, 1, 5, 4) and ds.x_test.dtype == np.float32
    assert ds.p_train.dtype == np.int32 and ds.p_test.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train[:, 0], tr_x / np.float32(255))
    np.testing.assert_array_equal(ds.x_test[:, 0], te_x / np.float32(255))
    np.testing.assert_array_equal(ds.p_train, tr_y)
    np.testing.assert_array_equal(ds.p_test, te_y)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    np.testing.assert_allclose(ds.to_raw(ds.x_test, "test")[:, 0], te_x, rtol=1e-6)


def test_gzip_is_recognised_by_content_not_name(tmp_path, rng):
    a = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    (tmp_path / "plain.gz").write_bytes(idx_bytes(a))
    (tmp_path / "packed").write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "packed")), a)


def test_mixed_spellings_and_fashion_name(tmp_path, rng):
    d = tmp_path / "fashion"
    te_y = make_set(rng, d, gz=True)[3]
    # Replace one file by its other spelling, uncompressed.
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    write(d / "t10k-labels.idx1-ubyte", idx_bytes(te_y), gz=False)
    ds = load_fashion_mnist(d)
    assert ds.name == "fashion_mnist"
    np.testing.assert_array_equal(ds.p_test, te_y)
    assert ds.scale["train"].factor == 255.0 and ds.scale["test"].offset == 0.0


def test_missing_directory_names_it_and_every_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(missing)
    message = str(err.value)
    assert str(missing) in message
    assert all(name in message for name in NAMES)


def test_a_file_where_the_directory_belongs_is_named_as_such(tmp_path):
    (tmp_path / "mnist.gz").write_bytes(b"not a directory")
    with pytest.raises(NotADirectoryError, match=r"mnist\.gz is a file; pass the directory"):
        load_mnist(tmp_path / "mnist.gz")


def test_missing_file_names_it(tmp_path, rng):
    make_set(rng, tmp_path / "d")
    (tmp_path / "d" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-images-idx3-ubyte;") as err:
        load_mnist(tmp_path / "d")
    assert str(tmp_path / "d") in str(err.value)
    assert all(name in str(err.value) for name in NAMES)


def test_truncated_and_oversized_files(tmp_path, rng):
    data = idx_bytes(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8))
    cases = {
        "short": (data[:-1], "truncated: header gives shape"),
        "long": (data + b"\0", "too long"),
        "header": (data[:10], "truncated IDX header, 10 of 16 bytes"),
        "tiny": (data[:3], "shorter than a header"),
        "gz": (gzip.compress(data)[:-12], "corrupt or truncated gzip"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            read_idx(tmp_path / name)


def test_magic_number_is_checked(tmp_path, rng):
    labels = idx_bytes(rng.integers(0, 10, 5, dtype=np.uint8))
    (tmp_path / "labels").write_bytes(labels)
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        read_idx(tmp_path / "labels", 2051)
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 0))
    with pytest.raises(ValueError, match="type float; only unsigned bytes"):
        read_idx(tmp_path / "float")
    (tmp_path / "text").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "text")
    # Labels where images belong.
    d = tmp_path / "d"
    make_set(rng, d)
    (d / "train-images-idx3-ubyte").write_bytes(labels)
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_mnist(d)


def test_image_and_label_counts_must_agree(tmp_path, rng):
    d = tmp_path / "d"
    make_set(rng, d, n_train=7)
    write(d / "train-labels-idx1-ubyte", idx_bytes(np.zeros(6, np.uint8)), gz=False)
    with pytest.raises(ValueError, match=r"7 images but .* 6 labels"):
        load_mnist(d)


def _bomb(path, payload_mib: int, declared=(1, 1, 1)) -> None:
    """A small gzip file that inflates to `payload_mib` MiB after a valid header."""
    with gzip.open(path, "wb", 9) as f:
        f.write(struct.pack(">IIII", 2051, *declared) + b"\x07")
        for _ in range(payload_mib):
            f.write(bytes(1 << 20))


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A gzip file of 256 KiB that inflates to 256 MiB after a 1-byte image: refused after
    reading one byte past the declared data, not after inflating it all."""
    import resource

    _bomb(tmp_path / "bomb.gz", 256)
    assert (tmp_path / "bomb.gz").stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="too long"):
        read_idx(tmp_path / "bomb.gz")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 32 << 10, grown_kib  # well below the 256 MiB the file inflates to


@pytest.mark.parametrize("gz", [False, True])
def test_header_declaring_too_much_is_refused_before_reading(tmp_path, gz):
    """Sizes whose product would exhaust memory (or overflow 64 bits) are refused from the
    header alone, raw or gzipped."""
    header = struct.pack(">IIII", 2051, 1 << 22, 1 << 22, 1 << 20) + b"\x00" * 16
    write(tmp_path / "huge", header, gz)
    with pytest.raises(ValueError, match="more than the"):
        read_idx(tmp_path / "huge")
    small = struct.pack(">IIII", 2051, 1000, 28, 28) + b"\x00" * 16
    write(tmp_path / "capped", small, gz)
    with pytest.raises(ValueError, match="more than the 1000 accepted"):
        read_idx(tmp_path / "capped", max_bytes=1000)


def test_declared_size_beyond_a_raw_file_is_refused_before_reading(tmp_path):
    header = struct.pack(">IIII", 2051, 60000, 28, 28) + b"\x00" * 100
    (tmp_path / "short").write_bytes(header)
    with pytest.raises(ValueError, match="truncated: header gives shape"):
        read_idx(tmp_path / "short")
