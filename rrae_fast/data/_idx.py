"""IDX files (the MNIST / Fashion-MNIST format) and the two data sets stored in it.

An IDX file is a big-endian header followed by unsigned bytes: a 4-byte magic number whose
third byte is the element type (0x08 = unsigned byte) and whose fourth is the number of
dimensions, then one 4-byte size per dimension. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._dataset import Affine, Dataset

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


def _read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed when it starts with the gzip magic bytes."""
    data = path.read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Reads an unsigned-byte IDX file of images (magic 2051) or labels (magic 2049).

    Args:
        path: the file, raw or gzipped (recognised by its content, not its name).
        magic: the magic number the file must have, or None for either of the two.

    Returns:
        uint8 array, `[n, rows, cols]` for images, `[n]` for labels.

    Raises:
        ValueError: for a wrong magic number, or a file shorter or longer than its header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    allowed = _NDIM if magic is None else {magic: _NDIM[magic]}
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file, {len(data)} bytes is shorter than a header")
    (found,) = struct.unpack(">I", data[:4])
    if found not in allowed:
        raise ValueError(
            f"{path}: IDX magic number {found}, expected {' or '.join(map(str, allowed))}"
        )
    ndim = _NDIM[found]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: truncated IDX header, {len(data)} of {offset} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    expected = offset + int(np.prod(shape))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "too long"
        raise ValueError(
            f"{path}: {problem}: header gives shape {shape}, i.e. {expected} bytes, "
            f"but the file holds {len(data)}"
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


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
            f"{', '.join(expected)} ({accepted})"
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


def load_mnist(directory: str | os.PathLike) -> Dataset:
    """MNIST from its four IDX files in `directory` (60000 train / 10000 test, 28×28).

    See `load_idx_dataset` for the accepted file names and the returned arrays.
    """
    return load_idx_dataset(directory, "mnist")


def load_fashion_mnist(directory: str | os.PathLike) -> Dataset:
    """Fashion-MNIST from its four IDX files in `directory` (60000 train / 10000 test, 28×28).

    See `load_idx_dataset` for the accepted file names and the returned arrays.
    """
    return load_idx_dataset(directory, "fashion_mnist")
