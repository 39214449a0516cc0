"""A fixed train / held-out split and a seeded mini-batch iterator over numpy arrays."""
from __future__ import annotations

import numpy as np

__all__ = ["train_heldout_split", "num_batches", "batches"]


def train_heldout_split(images, labels, heldout_fraction: float = 0.1, seed: int = 0):
    """Split ``(images, labels)`` into ``(train, heldout)`` pairs, the same way every time.

    Stratified: each class contributes ``round(heldout_fraction · count)`` of its examples,
    chosen by a PCG64 permutation seeded with ``seed`` (so the split does not depend on the
    file's order, e.g. the MNIST subset is sorted by class). Both parts keep that shuffled order.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(len(labels))
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        held[members[:int(round(heldout_fraction * len(members)))]] = True
    train_idx, held_idx = order[~held[order]], order[held[order]]
    return (images[train_idx], labels[train_idx]), (images[held_idx], labels[held_idx])


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(*arrays, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
            start: int = 0, drop_last: bool = False):
    """Yield tuples of aligned mini-batches ``(a[idx], b[idx], ...)``.

    The order of epoch ``e`` is the permutation drawn from PCG64 seeded with ``(seed, e)``: it
    depends on nothing else, so a run resumed mid-epoch at batch ``start`` sees exactly the
    batches the uninterrupted run would have seen.
    """
    if not arrays:
        raise ValueError("batches: give at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"batches: arrays of different lengths {[len(a) for a in arrays]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
    else:
        order = np.arange(n)
    for b in range(start, num_batches(n, batch_size, drop_last)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield tuple(a[idx] for a in arrays)
