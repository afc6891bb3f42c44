"""IDX files (the MNIST / Fashion-MNIST format) and the two data sets stored in it.

An IDX file is a big-endian header followed by unsigned bytes: a 4-byte magic number whose
third byte is the element type (0x08 = unsigned byte) and whose fourth is the number of
dimensions, then one 4-byte size per dimension. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._dataset import Affine, Dataset
from ._fetch import cached, fetch_command

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols); data at 16
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (n); data at 8
_NDIM = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_GZIP_MAGIC = b"\x1f\x8b"
PIXEL_MAX = 255.0  # unsigned-byte pixels are scaled by this to [0, 1]

# (split, kind, idx tag) of the four files, in the order they are looked for and reported.
_FILES = (
    ("train", "images", "idx3"),
    ("train", "labels", "idx1"),
    ("t10k", "images", "idx3"),
    ("t10k", "labels", "idx1"),
)


# The largest IDX file read (after decompression): 16 GiB. MNIST's training images hold 47 MB;
# the bound refuses a header or a gzip stream that would exhaust memory before anything is
# allocated.
MAX_IDX_BYTES = 16 << 30
_ELEMENT_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short",
    0x0C: "int",
    0x0D: "float",
    0x0E: "double",
}
_CHUNK = 1 << 20


def _open(path: Path):
    """A binary stream of the file's contents, decompressing it if it starts as gzip does."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_exactly(stream, count: int, path: Path) -> bytes:
    """`count` bytes of `stream` in bounded chunks (fewer at its end)."""
    parts, left = [], count
    try:
        while left > 0:
            part = stream.read(min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err
    return b"".join(parts)


def read_idx(
    path: str | os.PathLike, magic: int | None = None, *, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """Reads an unsigned-byte IDX file of images (magic 2051) or labels (magic 2049).

    The header is read and checked first; the data are read only once the header's size is
    known to be plausible (at most `max_bytes`, and no more than a raw file holds), and a
    gzipped file is decompressed in bounded chunks up to that size, never as a whole.

    Args:
        path: the file, raw or gzipped (recognised by its content, not its name).
        magic: the magic number the file must have, or None for either of the two.
        max_bytes: the largest data size accepted (default 16 GiB).

    Returns:
        uint8 array, `[n, rows, cols]` for images, `[n]` for labels.

    Raises:
        ValueError: for a wrong magic number, an unsupported element type, a header declaring
            more than `max_bytes`, a file shorter or longer than its header says, or corrupt
            gzip data; the message names the file.
    """
    path = Path(path)
    allowed = _NDIM if magic is None else {magic: _NDIM[magic]}
    expected_magic = " or ".join(map(str, allowed))
    with _open(path) as stream:
        head = _read_exactly(stream, 4, path)
        if len(head) < 4:
            raise ValueError(
                f"{path}: truncated IDX file, {len(head)} bytes is shorter than a header"
            )
        (found,) = struct.unpack(">I", head)
        if head[:2] != b"\0\0":
            raise ValueError(f"{path}: not an IDX file (magic number {found})")
        if head[2] != 0x08:
            kind = _ELEMENT_TYPES.get(head[2], f"unknown type 0x{head[2]:02x}")
            raise ValueError(
                f"{path}: IDX elements of type {kind}; only unsigned bytes (0x08) are supported"
            )
        if found not in allowed:
            raise ValueError(
                f"{path}: IDX magic number {found}, expected {expected_magic} "
                f"(it declares {head[3]} dimensions)"
            )
        ndim = _NDIM[found]
        sizes = _read_exactly(stream, 4 * ndim, path)
        offset = 4 + 4 * ndim
        if len(sizes) < 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header, {4 + len(sizes)} of {offset} bytes")
        shape = struct.unpack(f">{ndim}I", sizes)
        count = math.prod(shape)  # exact (Python integers): no overflow
        if count > max_bytes:
            raise ValueError(
                f"{path}: header gives shape {shape}, {count} bytes of data, more than the "
                f"{max_bytes} accepted; the file is damaged or not an image set"
            )
        raw_size = None if isinstance(stream, gzip.GzipFile) else path.stat().st_size
        if raw_size is not None and raw_size != offset + count:
            problem = "truncated" if raw_size < offset + count else "too long"
            raise ValueError(
                f"{path}: {problem}: header gives shape {shape}, i.e. {offset + count} bytes, "
                f"but the file holds {raw_size}"
            )
        data = _read_exactly(stream, count + 1, path)  # one byte more shows trailing data
    if len(data) != count:
        problem = "truncated" if len(data) < count else "too long"
        held = f"{offset + len(data)}" if len(data) < count else f"more than {offset + count}"
        raise ValueError(
            f"{path}: {problem}: header gives shape {shape}, i.e. {offset + count} bytes, "
            f"but the file holds {held} (after decompression)"
        )
    return np.frombuffer(data, np.uint8).reshape(shape)


def _spellings(split: str, kind: str, tag: str) -> tuple[str, ...]:
    """The accepted names of one file, e.g. `train-images-idx3-ubyte` first."""
    stems = (f"{split}-{kind}-{tag}-ubyte", f"{split}-{kind}.{tag}-ubyte")
    return tuple(name for stem in stems for name in (stem, stem + ".gz"))


def _find_files(directory: Path, name: str) -> list[Path]:
    """The four IDX files in `directory`, in `_FILES` order, or FileNotFoundError."""
    expected = [_spellings(*f)[0] for f in _FILES]
    accepted = (
        "each may also be spelt with '.' before idx (train-images.idx3-ubyte) and may end in '.gz'"
    )
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(
            f"{name}: {directory} is a file; pass the directory that holds "
            f"{', '.join(expected)} ({accepted})"
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{name}: directory {directory} does not exist; it must hold "
            f"{', '.join(expected)} ({accepted})"
        )
    found, missing = [], []
    for f, canonical in zip(_FILES, expected):
        hits = [directory / n for n in _spellings(*f) if (directory / n).is_file()]
        if hits:
            found.append(hits[0])
        else:
            missing.append(canonical)
    if missing:
        raise FileNotFoundError(
            f"{name}: {directory} lacks {', '.join(missing)}; it must hold "
            f"{', '.join(expected)} ({accepted}); `{fetch_command(name, directory)}` puts "
            "them there"
        )
    return found


def _load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """float32 images `[n, 1, rows, cols]` in [0, 1] and int32 labels `[n]`."""
    x = read_idx(images, IMAGES_MAGIC)
    y = read_idx(labels, LABELS_MAGIC)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images} holds {x.shape[0]} images but {labels} {y.shape[0]} labels")
    return (x[:, None].astype(np.float32) / np.float32(PIXEL_MAX)), y.astype(np.int32)


def load_idx_dataset(directory: str | os.PathLike, name: str) -> Dataset:
    """The train (`train-*`) and test (`t10k-*`) IDX files of `directory` as a `Dataset`.

    Args:
        directory: holds `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each also accepted
            as `train-images.idx3-ubyte` and with a `.gz` suffix.
        name: the data set's name, used in messages and as `Dataset.name`.

    Returns:
        A `Dataset` with float32 images in [0, 1], `[n, 1, rows, cols]`, and int32 labels
        `[n]` in `p_train` / `p_test`; `scale` is `Affine(0, 255)` for both splits.
    """
    train_x, train_y, test_x, test_y = _find_files(Path(directory), name)
    x_train, p_train = _load_idx_pair(train_x, train_y)
    x_test, p_test = _load_idx_pair(test_x, test_y)
    pixels = Affine(offset=0.0, factor=PIXEL_MAX)
    return Dataset(
        x_train=x_train,
        x_test=x_test,
        p_train=p_train,
        p_test=p_test,
        name=name,
        scale={"train": pixels, "test": pixels},
    )


def load_mnist(directory: str | os.PathLike | None = None) -> Dataset:
    """MNIST from its four IDX files in `directory` (60000 train / 10000 test, 28×28).

    Without `directory`, from the cache that `rrae-fast data fetch mnist` fills, each file's
    SHA-256 checked first. See `load_idx_dataset` for the accepted file names and the returned
    arrays.
    """
    return load_idx_dataset(cached("mnist") if directory is None else directory, "mnist")


def load_fashion_mnist(directory: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from its four IDX files in `directory` (60000 train / 10000 test, 28×28).

    Without `directory`, from the cache that `rrae-fast data fetch fashion-mnist` fills, each
    file's SHA-256 checked first. See `load_idx_dataset` for the accepted file names and the
    returned arrays.
    """
    where = cached("fashion_mnist") if directory is None else directory
    return load_idx_dataset(where, "fashion_mnist")
