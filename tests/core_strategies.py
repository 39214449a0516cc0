"""Hypothesis strategies and value generators shared by the engine-core op tests.

Shapes come from hypothesis (small, odd sizes, 0-d where allowed); values come from a numpy
generator seeded by a hypothesis-drawn integer, which keeps examples cheap and reproducible.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

MAX_SIDE = 4


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=MAX_SIDE):
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                        max_side=max_side)


def broadcast_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=MAX_SIDE):
    """Input shapes that broadcast together (hypothesis' mutually_broadcastable_shapes)."""
    return mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims,
                                         max_dims=max_dims, min_side=1,
                                         max_side=max_side).map(lambda s: s.input_shapes)


seeds = st.integers(0, 2 ** 32 - 1)


def normal(seed, shape, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def positive(seed, shape, low=0.2, high=3.0):
    """Values for restricted domains (log, sqrt, fractional powers)."""
    return np.random.default_rng(seed).uniform(low, high, shape)


def away_from(seed, shape, points=(0.0,), gap=0.1, scale=1.5):
    """Normal values pushed at least ``gap`` away from each kink in ``points``."""
    x = normal(seed, shape, scale)
    for p in points:
        near = np.abs(x - p) < gap
        x = np.where(near, p + np.where(x >= p, gap, -gap) * 2, x)
    return x


def distinct(seed, shape):
    """Values without ties (max/min/sort gradients): a shuffled grid plus small noise."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    vals = rng.permutation(n) * 0.25 - n * 0.125 + rng.uniform(0, 0.05, n)
    return vals.reshape(shape)


def small_ints(seed, shape, low=-2, high=3):
    """Float values on a small integer grid: many exact ties."""
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.float64)


@st.composite
def dim_tuples(draw, ndim):
    """None, one dim, or a tuple of distinct dims (some negative)."""
    if ndim == 0:
        return draw(st.sampled_from([None, 0, -1]))
    kind = draw(st.sampled_from(["none", "one", "tuple"]))
    if kind == "none":
        return None
    if kind == "one":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in picked)


def np_axes(dim, ndim):
    """The numpy axis argument for a minigen dim argument (0-d tensors reduce nothing)."""
    if dim is None:
        return None
    if ndim == 0:
        return ()
    return tuple(dim) if isinstance(dim, tuple) else dim
