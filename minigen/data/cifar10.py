"""CIFAR-10 from a local copy in its "python version" format (no download at run time).

The distribution ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html)
unpacks to a directory ``cifar-10-batches-py`` holding

    data_batch_1 .. data_batch_5   the 50000 training images, 10000 per file
    test_batch                     the 10000 test images
    batches.meta                   {b"label_names": [b"airplane", ...], ...}

Each batch file is a pickled dict with ``b"data"``: uint8 (10000, 3072), one image per row in
channel-major order (1024 red, then 1024 green, then 1024 blue values, each 32×32 row-major), and
``b"labels"``: a list of 10000 ints in 0..9.

Pickle can run arbitrary code, so the files are read with an unpickler that only rebuilds plain
containers and numpy arrays (``_SafeUnpickler``): a tampered file fails to load instead of
executing anything. ``load_cifar10`` accepts the ``cifar-10-batches-py`` directory, its parent,
or the ``.tar.gz`` archive itself (read in place, not extracted).
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

from ._files import DataNotFoundError

__all__ = ["load_cifar10", "cifar10_label_names", "CIFAR10_HINT", "CIFAR10_TRAIN_FILES",
           "CIFAR10_TEST_FILE"]

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
_SUBDIR = "cifar-10-batches-py"
CIFAR10_HINT = ("CIFAR-10 is not bundled with any package: download the python version, "
                "cifar-10-python.tar.gz (163 MB), from "
                "https://www.cs.toronto.edu/~kriz/cifar.html, "
                "unpack it (tar xzf cifar-10-python.tar.gz) and pass the directory "
                "cifar-10-batches-py (or the .tar.gz itself)")

# The globals a CIFAR batch pickle needs: numpy's array reconstruction (numpy 1 and 2 names),
# and _codecs.encode, with which protocol-2 pickles written by Python 3 spell bytes objects.
_ALLOWED = {("_codecs", "encode"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _SafeUnpickler(pickle.Unpickler):
    """Rebuild dicts, lists, bytes, numbers and numpy arrays; refuse every other global."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 file "
                                     "(only numpy arrays and plain containers are expected)")


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{where}: not a CIFAR-10 python-format batch ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    # python-2 pickles have bytes keys; files written by python 3 may have str keys
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


class _Source:
    """Reads member files from the batches directory or from the .tar.gz archive."""

    def __init__(self, path: str):
        self.path = path
        self.tar = None
        if os.path.isfile(path):
            if not tarfile.is_tarfile(path):
                raise DataNotFoundError(f"{path!r} is a file but not a tar archive. "
                                        f"{CIFAR10_HINT}.")
            self.tar = tarfile.open(path, "r:*")
            self.members = {os.path.basename(m.name): m for m in self.tar.getmembers()
                            if m.isfile()}
        elif os.path.isdir(path):
            sub = os.path.join(path, _SUBDIR)
            self.dir = sub if os.path.isdir(sub) else path
        else:
            raise DataNotFoundError(f"CIFAR-10 directory {path!r} does not exist. "
                                    f"{CIFAR10_HINT}.")

    def read(self, name: str) -> bytes:
        if self.tar is not None:
            member = self.members.get(name)
            if member is None:
                raise DataNotFoundError(f"{self.path!r} has no member {name}. {CIFAR10_HINT}.")
            return self.tar.extractfile(member).read()
        file = os.path.join(self.dir, name)
        if not os.path.isfile(file):
            raise DataNotFoundError(
                f"{self.dir!r} has no {name}: a CIFAR-10 directory holds data_batch_1 .. "
                f"data_batch_5, test_batch and batches.meta. {CIFAR10_HINT}.")
        with open(file, "rb") as f:
            return f.read()

    def where(self, name: str) -> str:
        return f"{self.path}:{name}" if self.tar is not None else os.path.join(self.dir, name)

    def close(self):
        if self.tar is not None:
            self.tar.close()


def _read_batch(src: _Source, name: str):
    d = _unpickle(src.read(name), src.where(name))
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{src.where(name)}: a CIFAR-10 batch has keys 'data' and 'labels', "
                         f"found {sorted(map(str, d))}")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{src.where(name)}: 'data' must be uint8 of shape (N, 3072), got "
                         f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or (labels.size and
                                            (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{src.where(name)}: 'labels' must be {data.shape[0]} ints in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(path: str, split: str = "train"):
    """CIFAR-10 images uint8 (N, 3, 32, 32) (channels first, RGB, 0..255) and labels int64 (N,).

    path: the ``cifar-10-batches-py`` directory, a directory containing it, or the
    ``cifar-10-python.tar.gz`` archive. split: ``"train"`` (data_batch_1..5, 50000 images),
    ``"test"`` (test_batch, 10000) or ``"all"`` (train then test).
    """
    names = {"train": CIFAR10_TRAIN_FILES, "test": (CIFAR10_TEST_FILE,),
             "all": CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    src = _Source(os.fspath(path))
    try:
        parts = [_read_batch(src, n) for n in names]
    finally:
        src.close()
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def cifar10_label_names(path: str) -> list:
    """The 10 class names from ``batches.meta`` (``["airplane", "automobile", ...]``)."""
    src = _Source(os.fspath(path))
    try:
        meta = _unpickle(src.read(CIFAR10_META_FILE), src.where(CIFAR10_META_FILE))
    finally:
        src.close()
    names = meta.get("label_names")
    if names is None:
        raise ValueError(f"{src.where(CIFAR10_META_FILE)}: no 'label_names'")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
