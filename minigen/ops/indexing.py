"""Indexing: ``x[...]`` (basic and advanced), index assignment, gather, scatter_add,
index_select, masked_fill, one_hot.

The adjoint of reading ``x[idx]`` is scattering the gradient back into zeros at ``idx`` with
accumulation (``add.at``), because an advanced index may name the same element twice.

Index bounds of gather/scatter/scatter_add/index_select/one_hot are checked on the host: always
for CPU tensors, for CUDA tensors only under ``minigen.debug_checks()`` or anomaly detection
(each check is a device→host synchronisation; ``autograd/grad_mode.py``). ``nonzero``,
``masked_select`` and ``one_hot`` without ``num_classes`` synchronise by nature: the size of
their result depends on the values.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import add_at as _add_at, norm_dim, same_dtype, tensor_method
from .shape import _as_view, _plain_view
from ..autograd.grad_mode import STATE, value_checks

__all__ = ["gather", "scatter_add", "scatter", "index_select", "masked_fill", "one_hot",
           "take_along_dim", "nonzero", "masked_select"]


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer))
               for i in items)


def _unwrap_index(index):
    """Tensors inside an index become their arrays (bool masks stay masks)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


class GetItem(Function):
    saves_inputs = False

    def forward(self, x, index):
        self.shape, self.index, self.dtype = x.shape, index, x.dtype
        try:
            out = x[index]
        except IndexError as exc:
            raise IndexError(f"index {_show(index)} is invalid for a tensor of shape "
                             f"{tuple(x.shape)}: {exc}") from None
        if type(out) is not type(x) and _is_basic(index):
            # numpy returns a scalar copy for x[i, j]; x[i, j, ...] is the 0-d view PyTorch gives
            items = index if isinstance(index, tuple) else (index,)
            if Ellipsis not in items:
                out = x[items + (Ellipsis,)]
        return out

    def backward(self, g):
        xp = xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if _is_basic(self.index):
            out[self.index] = g
        else:
            _add_at(xp, out, self.index, g)
        return out


def _show(index):
    if isinstance(index, tuple):
        return "[" + ", ".join(_show(i) for i in index) + "]"
    if hasattr(index, "shape") and not isinstance(index, (int, np.integer)):
        return f"<{index.dtype} array of shape {tuple(index.shape)}>"
    return repr(index)


class IndexPut(Function):
    """out = x with out[index] = v; dx = g with g[index] = 0, dv = g[index] summed to v."""
    saves_inputs = False

    def forward(self, x, v, index):
        self.index, self.vshape = index, v.shape
        out = x.copy()
        try:
            out[index] = v
        except (IndexError, ValueError) as exc:
            raise RuntimeError(f"index assignment of a value of shape {tuple(v.shape)} at "
                               f"{_show(index)} into shape {tuple(x.shape)} failed: {exc}") from None
        return out

    def backward(self, g):
        from ._util import unbroadcast
        n = self.needs_input_grad
        gx = gv = None
        if n[0]:
            gx = g.copy()
            gx[self.index] = 0
        if n[1]:
            gv = unbroadcast(g[self.index], self.vshape)
        return gx, gv


@tensor_method("__getitem__")
def _getitem(input, index):
    if type(index) in (int, slice) and not (input.requires_grad and STATE.grad_enabled):
        try:  # fast path: one int or slice, nothing to record
            out = input.data[index]
        except IndexError:
            out = None  # the general path below raises the descriptive error
        if type(out) is type(input.data):
            return _plain_view(out, input)
    idx = _unwrap_index(index)
    # basic indexing (ints, slices, also a 0-d integer array) returns a view of the same memory
    return _as_view(GetItem.apply(input, idx), input)


class Gather(Function):
    saves_inputs = False

    def forward(self, x, index, axis):
        xp = xp_of(x)
        self.shape, self.index, self.axis = x.shape, index, axis
        return xp.take_along_axis(x, index, axis=axis)

    def backward(self, g):
        xp = xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        _add_at(xp, out, _along_axis_index(xp, self.index, self.axis), g)
        return out


def _along_axis_index(xp, index, axis):
    """The full advanced index that take_along_axis(x, index, axis) reads."""
    grids = xp.ogrid[tuple(slice(0, s) for s in index.shape)]
    full = list(grids)
    full[axis] = index
    return tuple(full)


def _check_index(op, x, index, dim):
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    if index.ndim != x.ndim:
        raise RuntimeError(f"{op}: index has {index.ndim} dims but the tensor has {x.ndim}")
    for i in range(x.ndim):
        if i != dim and index.shape[i] > x.shape[i]:
            raise RuntimeError(f"{op}: index shape {tuple(index.shape)} exceeds the tensor shape "
                               f"{tuple(x.shape)} in dim {i}")
    if index.numel() and value_checks(index.device):
        lo, hi = int(index.data.min()), int(index.data.max())
        n = x.shape[dim]
        if lo < -n or hi >= n:
            raise IndexError(f"{op}: index {hi if hi >= n else lo} is out of bounds for dim {dim} "
                             f"of size {n}")


@tensor_method()
def gather(input, dim, index):
    """out[i][j][k] = input[i][index[i][j][k]][k] (for dim = 1). A 0-d input acts as a
    1-element vector (with a 0-d or 1-element index), as in PyTorch."""
    if input.ndim == 0:
        d = norm_dim(dim, 0, "gather")
        if not isinstance(index, Tensor) or index.ndim > 1:
            raise RuntimeError("gather: a 0-d input takes a 0-d or 1-D index")
        return gather(input.reshape(1), d, index.reshape(-1)).reshape(index.shape)
    d = norm_dim(dim, input.ndim, "gather")
    if isinstance(index, Tensor) and index.dtype.kind in "iu" and index.numel() == 0:
        # PyTorch: an empty index reads nothing, whatever its number of dims; the result has
        # its shape and stays in the graph (a zero gradient to the input)
        return input.reshape(-1)[:0].reshape(index.shape)
    _check_index("gather", input, index, d)
    if index.shape != input.shape:
        idx = index.data
        sl = tuple(slice(0, s) if i != d else slice(None) for i, s in enumerate(index.shape))
        return Gather.apply(input[sl] if any(s.stop is not None for s in sl) else input, idx, d)
    return Gather.apply(input, index.data, d)


def take_along_dim(input, indices, dim=None):
    """PyTorch's take_along_dim: with ``dim`` None, input.flatten()[indices.flatten()];
    otherwise out = gather(input, dim, indices) after input and indices are broadcast against
    each other in every dim but ``dim``."""
    if not isinstance(indices, Tensor) or indices.dtype.kind not in "iu":
        raise TypeError(f"take_along_dim: indices must be an integer tensor, got "
                        f"{getattr(indices, 'dtype', type(indices).__name__)}")
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    if input.ndim == 0:
        raise IndexError(f"take_along_dim: dim {dim} given for a 0-d input (pass dim=None)")
    d = norm_dim(dim, input.ndim, "take_along_dim")
    if indices.ndim != input.ndim:
        raise RuntimeError(f"take_along_dim: input and indices should have the same number of "
                           f"dims, got shapes {tuple(input.shape)} and {tuple(indices.shape)}")
    from ._util import broadcast_shape
    rest = list(broadcast_shape("take_along_dim",
                                tuple(1 if i == d else s for i, s in enumerate(input.shape)),
                                tuple(1 if i == d else s for i, s in enumerate(indices.shape))))
    rest[d] = input.shape[d]
    x = input if tuple(input.shape) == tuple(rest) else input.expand(*rest)
    rest[d] = indices.shape[d]
    idx = indices if tuple(indices.shape) == tuple(rest) else indices.expand(*rest)
    return gather(x, d, idx)


class ScatterAdd(Function):
    """out = x; out[index[i][j]][j] += src[i][j] (dim 0). dx = g, dsrc = g gathered at index."""
    saves_inputs = False

    def forward(self, x, src, index, axis):
        xp = xp_of(x)
        self.index, self.axis = index, axis
        out = x.copy()
        src_part = src[tuple(slice(0, s) for s in index.shape)]
        _add_at(xp, out, _along_axis_index(xp, index, axis), src_part)
        self.src_shape = src.shape
        return out

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        gsrc = None
        if n[1]:
            gsrc = xp.zeros(self.src_shape, dtype=g.dtype)
            # index may be smaller than g in the other dims too: read g at the full index
            gsrc[tuple(slice(0, s) for s in self.index.shape)] = g[
                _along_axis_index(xp, self.index, self.axis)]
        return (g if n[0] else None), gsrc


def _scalar_scatter(op, fn, input, dim, index, src):
    """A 0-d input scatters as a 1-element vector (0-d or 1-element index and src)."""
    norm_dim(dim, 0, op)
    if not isinstance(index, Tensor) or index.ndim > 1:
        raise RuntimeError(f"{op}: a 0-d input takes a 0-d or 1-D index")
    if isinstance(src, Tensor):
        src = src.reshape(-1)
    return fn(input.reshape(1), 0, index.reshape(-1), src).reshape(())


@tensor_method()
def scatter_add(input, dim, index, src):
    if input.ndim == 0:
        return _scalar_scatter("scatter_add", scatter_add, input, dim, index, src)
    d = norm_dim(dim, input.ndim, "scatter_add")
    _check_index("scatter_add", input, index, d)
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_add: src must be a tensor, got {type(src).__name__}")
    if src.ndim != index.ndim or any(i > s for i, s in zip(index.shape, src.shape)):
        raise RuntimeError(f"scatter_add: index of shape {tuple(index.shape)} is larger than src "
                           f"of shape {tuple(src.shape)}")
    same_dtype("scatter_add", input, src)
    return ScatterAdd.apply(input, src, index.data, d)


@tensor_method()
def scatter(input, dim, index, src):
    """out = input with out[index[i][j]][j] = src[i][j] (dim 0); scalar src allowed."""
    if input.ndim == 0:
        return _scalar_scatter("scatter", scatter, input, dim, index, src)
    d = norm_dim(dim, input.ndim, "scatter")
    _check_index("scatter", input, index, d)
    xp = xp_of(input.data)
    full = _along_axis_index(xp, index.data, d)
    if not isinstance(src, Tensor):
        return IndexPut.apply(input, Tensor._wrap(xp.asarray(src, dtype=input.dtype),
                                                  input.device), index=full)
    part = src[tuple(slice(0, s) for s in index.shape)]
    return IndexPut.apply(input, part, index=full)


@tensor_method()
def index_select(input, dim, index):
    d = norm_dim(dim, input.ndim, "index_select")
    if not isinstance(index, Tensor) or index.ndim > 1 or index.dtype.kind not in "iu":
        raise TypeError("index_select: index must be a 1-D integer tensor")
    if input.ndim == 0:  # a 0-d input: a 1-element vector whose one element comes back 0-d
        if index.numel() != 1:
            raise RuntimeError(f"index_select: a 0-d input takes exactly one index, got "
                               f"{index.numel()}")
        return index_select(input.reshape(1), 0, index.reshape(1)).reshape(())
    n = input.shape[d]
    if index.numel() and value_checks(index.device) and (
            int(index.data.max()) >= n or int(index.data.min()) < -n):
        raise IndexError(f"index_select: index out of range for dim {d} of size {n}")
    sl = (slice(None),) * d + (index.data.reshape(-1),)
    return GetItem.apply(input, sl)


class MaskedFill(Function):
    """out = where(mask, value, x), broadcast over x's and mask's shapes.

    dx = g where the mask is off (summed back to x's shape); dvalue = Σ g where the mask is on
    (a 0-d or one-element tensor value; a Python number gets none).
    """
    saves_inputs = False

    def forward(self, x, mask, value):
        xp = xp_of(x)
        self.mask, self.shape = mask, x.shape
        self.vshape = getattr(value, "shape", None)
        return xp.where(mask, xp.asarray(value, dtype=x.dtype), x)

    def backward(self, g):
        from ._util import unbroadcast
        xp = xp_of(g)
        n = self.needs_input_grad
        gx = unbroadcast(xp.where(self.mask, 0, g), self.shape) if n[0] else None
        gv = None
        if len(n) > 2 and n[2]:
            gv = xp.where(self.mask, g, 0).sum().reshape(self.vshape)
        return gx, None, gv


@tensor_method()
def masked_fill(input, mask, value):
    """input with ``value`` where ``mask`` is True; input and mask broadcast (PyTorch)."""
    if not isinstance(mask, Tensor) or mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    from ._util import broadcast_shape
    broadcast_shape("masked_fill", input.shape, mask.shape)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise RuntimeError(f"masked_fill: value must be a number or a one-element tensor, "
                               f"got shape {tuple(value.shape)}")
        # the value stays a tensor in the graph (no .item(): that would cut its gradient and
        # synchronise a CUDA device); a value on another device is copied over, differentiably
        if value.device is not input.device:
            value = value.to(input.device)
        if value.dtype != input.dtype and dtypes.is_floating(value.dtype) and \
                dtypes.is_floating(input.dtype):
            value = value.to(input.dtype)
        return MaskedFill.apply(input, mask, value)
    return MaskedFill.apply(input, mask, value)


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each class index."""
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor, got {tensor.dtype}")
    xp = xp_of(tensor.data)
    if num_classes < 0:   # the result's shape depends on the values: a sync on CUDA
        num_classes = int(tensor.data.max()) + 1 if tensor.numel() else 0
    if tensor.numel() and value_checks(tensor.device) and (
            int(tensor.data.min()) < 0 or int(tensor.data.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes})")
    out = (tensor.data[..., None] == xp.arange(num_classes)).astype(dtypes.int64)
    return Tensor._wrap(out, tensor.device)


def nonzero(input, as_tuple=False):
    """Indices of the non-zero elements: (count, ndim) int64, or one index vector per dim.
    A 0-d input gives (count, 0), or as a tuple its indices as a 1-element vector (PyTorch)."""
    xp = xp_of(input.data)
    if input.ndim == 0:
        idx = xp.nonzero(input.data.reshape(1))
        if as_tuple:
            return (Tensor._wrap(idx[0].astype(xp.int64), input.device),)
        return Tensor._wrap(xp.zeros((idx[0].shape[0], 0), dtype=xp.int64), input.device)
    idx = xp.nonzero(input.data)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(xp.int64), input.device) for i in idx)
    return Tensor._wrap(xp.stack(idx, axis=1).astype(xp.int64), input.device)


Tensor.nonzero = nonzero


def masked_select(input, mask):
    """The elements of input where mask is True, as a 1-D tensor; input and mask broadcast
    against each other first (PyTorch)."""
    if not isinstance(mask, Tensor) or mask.dtype != np.bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    from ._util import broadcast_shape
    shape = broadcast_shape("masked_select", tuple(input.shape), tuple(mask.shape))
    x = input if tuple(input.shape) == shape else input.expand(*shape)
    m = mask if tuple(mask.shape) == shape else mask.expand(*shape)
    if not shape:  # 0-d: x[m] of a 0-d mask has a leading dim already; keep it 1-D
        return x.reshape(1)[m.reshape(1)]
    return x[m]


Tensor.masked_select = masked_select
