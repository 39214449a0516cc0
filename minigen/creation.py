"""Tensor creation: zeros, ones, full, empty, arange, linspace, eye, rand, randn, randint,
*_like. Every function takes ``dtype``, ``device`` and ``requires_grad`` as in PyTorch."""
from __future__ import annotations

import numpy as np

from . import dtypes
from .autograd.function import Function
from .backend import CPU, Device, array_module, xp_of as array_module_of
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
    # 0-d tensor bounds are read as Python numbers: the points are computed in float64 and then
    # cast to ``dtype`` (a float32 bound must not make numpy compute the points in float32)
    start, end = (_scalar_bound("linspace", v) for v in (start, end))
    arr = array_module(d).linspace(start, end, steps).astype(dtypes.as_dtype(dtype))
    return _finish(arr, d, requires_grad)


def _scalar_bound(op, v):
    if isinstance(v, Tensor):
        if v.ndim != 0:
            raise RuntimeError(f"{op}: a tensor bound must be 0-d, got shape {tuple(v.shape)}")
        return v.item()
    return v


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


class _NormalSample(Function):
    """out = mean + std · ε with ε ~ N(0, 1) drawn outside; mean and std broadcast.

    Not a reparameterisation: like torch.normal the sample's gradient with respect to mean and
    std is zero (a sample of N(mean, std) carries no derivative; write mean + std · randn for
    a pathwise one, or use rsample of minigen.distributions)."""
    saves_inputs = False

    def forward(self, mean, std, eps):
        self.shapes = (getattr(mean, "shape", ()), getattr(std, "shape", ()))
        return mean + std * eps

    def backward(self, g):
        xp = array_module_of(g)
        n = self.needs_input_grad
        return tuple(xp.zeros(s, dtype=g.dtype) if n[i] else None
                     for i, s in enumerate(self.shapes)) + (None,)


def normal(mean, std=1.0, size=None, generator=None, dtype=None, device=None):
    """PyTorch's torch.normal: ``normal(mean_tensor, std_tensor)`` (shapes broadcast),
    ``normal(mean_tensor, std=1.0)``, ``normal(mean, std_tensor)`` (the tensors' dtype and
    device), or ``normal(mean, std, size)`` with two numbers. std must be ≥ 0. The sample gets
    a zero gradient, as PyTorch's (see _NormalSample)."""
    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if not tensors:
        if size is None:
            raise TypeError("normal: give size when mean and std are both numbers")
        if std < 0:
            raise RuntimeError(f"normal: std must be >= 0, got {std}")
        return randn(*_size((size,)), generator=generator, dtype=dtype,
                     device=device) * std + mean
    if size is not None:
        raise TypeError("normal: size is only taken when mean and std are both numbers (the "
                        "tensors' broadcast shape is the sample's shape)")
    dev = tensors[0].device
    dt = tensors[0].dtype
    for t in tensors:
        if not dtypes.is_floating(t.dtype):
            raise TypeError(f"normal: mean and std must be floating point, got {t.dtype}")
        if t.device is not dev:
            raise RuntimeError(f"normal: mean and std are on different devices ({dev} and "
                               f"{t.device})")
        dt = dtypes.promote(dt, t.dtype)
    if isinstance(std, Tensor):
        from .autograd.grad_mode import value_checks
        if std.numel() and value_checks(std.device) and not bool((std.data >= 0).all()):
            raise RuntimeError("normal: expected all elements of std >= 0")
    elif std < 0:
        raise RuntimeError(f"normal: std must be >= 0, got {std}")
    shape = np.broadcast_shapes(tuple(getattr(mean, "shape", ())), tuple(getattr(std, "shape",
                                                                               ())))
    eps = randn(*shape, generator=generator, dtype=dt, device=dev)
    m = mean.to(dt) if isinstance(mean, Tensor) else mean
    s = std.to(dt) if isinstance(std, Tensor) else std
    return _NormalSample.apply(m, s, eps)


def randint(low, high=None, size=(), generator=None, dtype=None, device=None):
    """Integers uniform on [low, high): randint(high, size) or randint(low, high, size)."""
    if isinstance(high, (tuple, list)):  # PyTorch's two-argument form randint(high, size)
        if size != ():
            raise TypeError("randint: size given twice (as the second argument and size=)")
        low, high, size = 0, low, high
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
