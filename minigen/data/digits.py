"""The 8×8 handwritten digits (1797 images, values 0..16) bundled with scikit-learn.

Read from ``sklearn/datasets/data/digits.csv.gz`` without importing scikit-learn.
"""
from __future__ import annotations

import numpy as np

from ._files import INSTALL_HINT, DataNotFoundError, open_maybe_gzip, package_data_file

__all__ = ["load_digits", "DIGITS_PATH", "DIGITS_MAX"]

DIGITS_PATH = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package
DIGITS_MAX = 16  # pixel values are counts of on-pixels in 4×4 blocks of a 32×32 bitmap


def load_digits():
    """Images uint8 (1797, 8, 8) with values 0..16 and labels int64 (1797,)."""
    path = package_data_file("sklearn", *DIGITS_PATH)
    if path is None:
        raise DataNotFoundError(
            "the 8x8 digits were not found: they ship inside the PyPI package scikit-learn "
            f"(file sklearn/{'/'.join(DIGITS_PATH)}), which is not installed. Get it with\n"
            f"    {INSTALL_HINT}\nor pip install scikit-learn.")
    with open_maybe_gzip(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 65:
        raise ValueError(f"{path}: expected rows of 64 pixels and a label, got {table.shape}")
    images = table[:, :64].astype(np.uint8).reshape(-1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    return images, labels
