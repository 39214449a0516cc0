"""Tensor creation: zeros, ones, full, empty, arange, linspace, eye, rand, randn, randint,
*_like. Every function takes ``dtype``, ``device`` and ``requires_grad`` as in PyTorch."""
from __future__ import annotations

from . import dtypes
from .backend import CPU, Device, array_module
from .random import seed_for
from .tensor import Tensor

__all__ = ["zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn",
           "randint", "randperm", "normal", "zeros_like", "ones_like", "full_like", "empty_like",
           "rand_like", "randn_like", "randint_like"]


def _size(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, int) or s < 0:
            raise ValueError(f"sizes must be non-negative integers, got {size}")
    return tuple(size)


def _finish(arr, device, requires_grad):
    t = Tensor._wrap(arr, device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _dev(device):
    return CPU if device is None else Device(device)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    return _finish(array_module(d).zeros(_size(size), dtype=dtypes.as_dtype(dtype)), d,
                   requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    return _finish(array_module(d).ones(_size(size), dtype=dtypes.as_dtype(dtype)), d,
                   requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    if dtype is None:
        dtype = dtypes.bool_ if isinstance(fill_value, bool) else (
            dtypes.int64 if isinstance(fill_value, int) else None)
    return _finish(array_module(d).full(_size((size,)), fill_value, dtype=dtypes.as_dtype(dtype)),
                   d, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    return _finish(array_module(d).empty(_size(size), dtype=dtypes.as_dtype(dtype)), d,
                   requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Integers give int64, any float argument the default float dtype (PyTorch)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = dtypes.get_default_dtype() if is_float else dtypes.int64
    d = _dev(device)
    return _finish(array_module(d).arange(start, end, step, dtype=dtypes.as_dtype(dtype)), d,
                   requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    arr = array_module(d).linspace(start, end, steps).astype(dtypes.as_dtype(dtype))
    return _finish(arr, d, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    d = _dev(device)
    return _finish(array_module(d).eye(n, m, dtype=dtypes.as_dtype(dtype)), d, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    d = _dev(device)
    dt = dtypes.as_dtype(dtype)
    arr = seed_for(d, generator).random(_size(size), dtype=_gen_dtype(dt)).astype(dt, copy=False)
    return _finish(arr, d, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    d = _dev(device)
    dt = dtypes.as_dtype(dtype)
    arr = seed_for(d, generator).standard_normal(_size(size), dtype=_gen_dtype(dt))
    return _finish(arr.astype(dt, copy=False), d, requires_grad)


def _gen_dtype(dt):
    # numpy's generator draws float32 or float64 directly; other floats are cast
    return dt if dt in (dtypes.float32, dtypes.float64) else dtypes.float64


def normal(mean, std, size, generator=None, dtype=None, device=None):
    return randn(*_size((size,)), generator=generator, dtype=dtype, device=device) * std + mean


def randint(low, high=None, size=(), generator=None, dtype=None, device=None):
    """Integers uniform on [low, high)."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    d = _dev(device)
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64
    arr = seed_for(d, generator).integers(low, high, _size((size,)), dtype=dtypes.int64)
    return _finish(arr.astype(dt, copy=False), d, False)


def randperm(n, generator=None, dtype=None, device=None):
    d = _dev(device)
    rng = seed_for(d, generator)
    # numpy's Generator has permutation; a generator without it sorts uniform keys instead
    arr = rng.permutation(n) if hasattr(rng, "permutation") else rng.random(n).argsort()
    arr = arr.astype(dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64)
    return _finish(arr, d, False)



def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return zeros(input.shape, dtype=input.dtype if dtype is None else dtype, device=device or input.device,
                 requires_grad=requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    return ones(input.shape, dtype=input.dtype if dtype is None else dtype, device=device or input.device,
                requires_grad=requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    return empty(input.shape, dtype=input.dtype if dtype is None else dtype, device=device or input.device,
                 requires_grad=requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return full(input.shape, fill_value, dtype=input.dtype if dtype is None else dtype,
                device=device or input.device, requires_grad=requires_grad)


def rand_like(input, generator=None, dtype=None, device=None, requires_grad=False):
    return rand(input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                device=device or input.device, requires_grad=requires_grad)


def randn_like(input, generator=None, dtype=None, device=None, requires_grad=False):
    return randn(input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                 device=device or input.device, requires_grad=requires_grad)


def randint_like(input, low, high=None, generator=None, dtype=None, device=None):
    return randint(low, high, input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                   device=device or input.device)
