"""Writing MNIST-style IDX files in tests: the format by hand, a directory of the four MNIST
files, and a small deterministic set of digit-like 28×28 images for end-to-end runs that must
not depend on a downloaded or bundled dataset."""
import gzip
import os
import struct

import numpy as np

# IDX type code -> big-endian numpy dtype (as in minigen.data.mnist, written independently)
_BE = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path, array, code, gz=False):
    """IDX by hand: 0, 0, type code, ndim; big-endian uint32 dims; big-endian data."""
    be = _BE[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    raw += np.ascontiguousarray(array, dtype=be).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(raw)


def write_mnist_dir(root, train, test, gz=False, dotted=False):
    """The four MNIST files in ``root``: ``train`` and ``test`` are (uint8 images (N, 28, 28),
    uint8 labels (N,)); ``dotted`` spells them ``train-images.idx3-ubyte`` etc."""
    sep = "." if dotted else "-"
    suffix = ".gz" if gz else ""
    for split, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(os.path.join(root, f"{split}-images{sep}idx3-ubyte{suffix}"), images, 0x08, gz)
        write_idx(os.path.join(root, f"{split}-labels{sep}idx1-ubyte{suffix}"), labels, 0x08, gz)


# Seven-segment digits: segments a (top), b (top right), c (bottom right), d (bottom),
# e (bottom left), f (top left), g (middle).
_SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc",
             7: "abc", 8: "abcdefg", 9: "abcdfg"}


def digit_like_images(n, seed=0, side=28):
    """``n`` deterministic digit-like images: uint8 (n, side, side), ink high, and uint8 labels
    0..9 (cycling, so every class is present). Each is a seven-segment digit with a random
    offset, size, stroke width and ink level, plus a little pixel noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = np.zeros((n, side, side), dtype=np.float64)
    for i, label in enumerate(labels):
        w = int(rng.integers(8, 13))       # digit width
        h = int(rng.integers(14, 21))      # digit height (two stacked cells)
        t = int(rng.integers(2, 4))        # stroke width
        top = int(rng.integers(2, side - 2 - h + 1))
        left = int(rng.integers(4, side - 4 - w + 1))
        mid = top + h // 2
        bottom, right = top + h, left + w
        boxes = {  # (row0, row1, col0, col1) of each segment
            "a": (top, top + t, left, right), "g": (mid - t // 2, mid - t // 2 + t, left, right),
            "d": (bottom - t, bottom, left, right),
            "f": (top, mid + 1, left, left + t), "b": (top, mid + 1, right - t, right),
            "e": (mid, bottom, left, left + t), "c": (mid, bottom, right - t, right)}
        ink = rng.uniform(0.7, 1.0)
        for seg in _SEGMENTS[int(label)]:
            r0, r1, c0, c1 = boxes[seg]
            images[i, r0:r1, c0:c1] = ink
    images += rng.normal(0.0, 0.05, images.shape)
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), labels


def make_synthetic_mnist_dir(root, n_train=300, n_test=100):
    """A small stand-in for the MNIST directory (``--data-dir``): ``n_train`` training and
    ``n_test`` test images of digit-like patterns, deterministic. Returns the arrays written."""
    os.makedirs(root, exist_ok=True)
    train = digit_like_images(n_train, seed=0)
    test = digit_like_images(n_test, seed=1)
    write_mnist_dir(root, train, test)
    return {"train": train, "t10k": test}
