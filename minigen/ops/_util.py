"""Small helpers shared by the primitives: broadcasting, dims, dtype promotion, method binding."""
from __future__ import annotations

import builtins

import numpy as np

from .. import dtypes
from ..backend import array_module
from ..tensor import Tensor

_TENSOR_METHODS: dict = {}


def tensor_method(*names):
    """Decorator: also expose the function as ``Tensor.<name>`` (default: its own name)."""
    def deco(fn):
        for name in names or (fn.__name__,):
            _TENSOR_METHODS[name] = fn
            setattr(Tensor, name, fn)
        return fn
    return deco


def add_at(xp, target, index, values):
    """target[index] += values, accumulating repeated indices (numpy add.at, cupy scatter_add)."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of broadcasting ``shape`` up to grad.shape."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and grad.shape[i + lead] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def broadcast_shape(op: str, a: tuple, b: tuple) -> tuple:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise RuntimeError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast "
                           "together") from None


def norm_dim(dim: int, ndim: int, op: str = "op") -> int:
    """A dim in [-ndim, ndim) as a non-negative int, or a clear IndexError."""
    if type(dim) is int and -ndim <= dim < ndim:  # fast path (0-d tensors take the slow one)
        return dim + ndim if dim < 0 else dim
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    n = builtins.max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dimensions "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n


def norm_dims(dim, ndim: int, op: str = "op"):
    """None (all dims) or a sorted tuple of non-negative dims, each checked."""
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        dims = tuple(sorted(norm_dim(d, ndim, op) for d in dim))
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"{op}: dim {tuple(dim)} names a dimension twice")
    else:
        dims = (norm_dim(dim, ndim, op),)
    return dims if ndim else ()  # a 0-d tensor accepts dim 0 / -1 and has nothing to reduce


def as_pair(a, b, op: str):
    """Two operands as (Tensor, Tensor-or-scalar) with PyTorch's dtype promotion applied."""
    if isinstance(b, Tensor):
        if a.data.dtype != b.data.dtype:
            dt = dtypes.promote(a.data.dtype, b.data.dtype)
            if a.data.dtype != dt:
                a = a.to(dt)
            if b.data.dtype != dt:
                b = b.to(dt)
        if a.data.shape != b.data.shape:
            broadcast_shape(op, a.data.shape, b.data.shape)
        return a, b
    tb = type(b)
    if tb is builtins.float or tb is builtins.int or tb is builtins.bool:
        dt = dtypes.scalar_result(a.data.dtype, b)
        if dt != a.data.dtype:
            a = a.to(dt)
        if dt.isbuiltin == 2 and tb is builtins.float:
            b = dt.type(b)  # numpy widens bfloat16 (a user dtype) with a Python float to float32
        return a, b
    if isinstance(b, np.generic):
        # a numpy scalar acts as the Python number it holds (np.float64 would otherwise make
        # numpy compute float32 tensors in float64)
        return as_pair(a, b.item(), op)
    if isinstance(b, (builtins.int, builtins.float)):  # subclasses of the Python numbers
        return as_pair(a, builtins.float(b) if isinstance(b, builtins.float) else
                       builtins.int(b), op)
    if isinstance(b, np.ndarray) or hasattr(b, "__array__") or isinstance(b, (list, tuple)):
        arr = array_module(a._device).asarray(b)
        bt = Tensor._wrap(arr, a._device)
        return as_pair(a, bt, op)
    raise TypeError(f"{op}: unsupported operand type {type(b).__name__}")


def as_tensor_like(x, like: Tensor) -> Tensor:
    """A scalar or array as a tensor on ``like``'s device with ``like``'s dtype."""
    if isinstance(x, Tensor):
        return x
    return Tensor._wrap(array_module(like._device).asarray(x, dtype=like.data.dtype), like._device)


def require_float(t: Tensor, op: str):
    if not dtypes.is_floating(t.data.dtype):
        raise TypeError(f"{op}: expected a floating point tensor, got dtype {t.data.dtype}")


def same_dtype(op: str, *tensors):
    dt = tensors[0].data.dtype
    for t in tensors[1:]:
        if t is not None and t.data.dtype != dt:
            raise TypeError(f"{op}: expected tensors of the same dtype, got {dt} and "
                            f"{t.data.dtype}")


# ---------------------------------------------------------------- unary op front ends
def _unary(cls, doc):
    def fn(input):
        return cls.apply(input)
    fn.__doc__ = doc
    return fn


def _float_unary(cls, doc):
    """A math function: integer and bool tensors compute in the default float dtype (PyTorch)."""
    def fn(input):
        if input.data.dtype.kind in "biu":
            input = input.to(dtypes.get_default_dtype())
        return cls.apply(input)
    fn.__doc__ = doc
    return fn


def _as_float(input):
    return input.to(dtypes.get_default_dtype()) if input.data.dtype.kind in "biu" else input
