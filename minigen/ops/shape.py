"""Movement ops: reshape, permute, expand, squeeze/unsqueeze, cat/stack/split, flip, repeat,
roll, pad. They move or copy elements without arithmetic, so each backward is the inverse move
(reshape back, inverse permutation, sum over the broadcast dims, slice the pieces apart...).

Ops whose result shares memory with the input (reshape of a contiguous tensor, permute, expand,
squeeze, ...) return views: the result shares the input's version counter, so an in-place
write through either is seen by the saved-tensor checks of both.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..autograd.function import Function
from ..autograd.grad_mode import STATE
from ..backend import xp_of
from ..tensor import Tensor
from ._util import add_at, norm_dim, norm_dims, tensor_method, unbroadcast

__all__ = ["reshape", "view", "permute", "transpose", "swapaxes", "t", "contiguous", "expand",
           "broadcast_to", "squeeze", "unsqueeze", "flatten", "unflatten", "cat", "concat",
           "concatenate", "stack", "split", "chunk", "unbind", "flip", "repeat", "roll", "pad",
           "movedim", "expand_as", "view_as", "reshape_as", "tile", "narrow", "clone",
           "diagonal", "tril", "triu"]


def _as_view(out: Tensor, src: Tensor) -> Tensor:
    """Mark ``out`` as a view of ``src`` when it shares src's memory.

    numpy and cupy point a view's ``.base`` at the array that owns the memory, so comparing
    owners is exact and costs two attribute reads (this runs on every reshape/permute/index).
    """
    ob = out.data.base
    if ob is not None and (ob is src.data or ob is src.data.base):
        out._vc = src._vc
        out._base = src._base if src._base is not None else src
    return out


def _plain_view(array, src: Tensor) -> Tensor:
    """A view of ``src`` made without a graph node (nothing to record): the fast path of
    reshape/permute/indexing when ``src`` needs no gradient."""
    return _as_view(Tensor._wrap(array, src._device), src)


def _records(t: Tensor) -> bool:
    return t.requires_grad and STATE.grad_enabled


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(map(int, shape))


class Reshape(Function):
    saves_inputs = False

    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Permute(Function):
    saves_inputs = False

    def forward(self, x, perm):
        self.perm = perm
        return x.transpose(perm)

    def backward(self, g):
        inv = [0] * len(self.perm)  # the inverse permutation: inv[perm[i]] = i
        for i, p in enumerate(self.perm):
            inv[p] = i
        return g.transpose(inv)


class Expand(Function):
    saves_inputs = False

    def forward(self, x, shape):
        self.shape = x.shape
        return xp_of(x).broadcast_to(x, shape)

    def backward(self, g):
        return unbroadcast(g, self.shape)


class Contiguous(Function):
    saves_inputs = False

    def forward(self, x):
        return xp_of(x).ascontiguousarray(x)

    def backward(self, g):
        return g


class Clone(Function):
    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


# Below this many output elements Cat stays with numpy's concatenate.
_NATIVE_CAT_MIN = 1 << 18


def _native_concatenate(xs, axis):
    """np.concatenate(xs, axis) through minigen._C.copy_rows (two threads, one block copy per
    input) when every input is a C-contiguous numpy float32/float64 array of one dtype and the
    result has at least _NATIVE_CAT_MIN elements; else None. The UNet's three skip
    concatenations in E3 (bench_e2_unet.py --profile-forward): 3.1–3.4 ms before, 2.0 ms after,
    one profile each."""
    x0 = xs[0]
    if type(x0) is not np.ndarray or x0.dtype not in (np.float32, np.float64) or \
            not x0.dtype.isnative or x0.ndim == 0:
        return None
    if any(type(x) is not np.ndarray or x.dtype != x0.dtype or x.ndim != x0.ndim or
           not x.flags.c_contiguous for x in xs):
        return None
    ax = axis % x0.ndim
    shape = list(x0.shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    if math.prod(shape) < _NATIVE_CAT_MIN or \
            any(x.shape[:ax] + x.shape[ax + 1:] != x0.shape[:ax] + x0.shape[ax + 1:] for x in xs):
        return None
    from .. import _native
    if not _native.available():
        return None
    out = np.empty(shape, dtype=x0.dtype)
    rows, inner = math.prod(shape[:ax]), math.prod(shape[ax + 1:])
    flat = out.reshape(rows, shape[ax] * inner)
    copy_rows, start = _native.module().copy_rows, 0
    for x in xs:
        width = x.shape[ax] * inner
        if width:
            copy_rows(x.reshape(rows, width), flat[:, start:start + width])
        start += width
    return out


class Cat(Function):
    saves_inputs = False

    def forward(self, *xs, axis):
        self.axis = axis
        self.bounds = []
        start = 0
        for x in xs:
            self.bounds.append((start, start + x.shape[axis]))
            start += x.shape[axis]
        out = _native_concatenate(xs, axis)
        return xp_of(xs[0]).concatenate(xs, axis=axis) if out is None else out

    def backward(self, g):
        idx = [builtins.slice(None)] * g.ndim
        out = []
        for need, (a, b) in zip(self.needs_input_grad, self.bounds):
            if need:
                idx[self.axis] = builtins.slice(a, b)
                out.append(g[tuple(idx)])
            else:
                out.append(None)
        return tuple(out)


class Flip(Function):
    saves_inputs = False

    def forward(self, x, axes):
        self.axes = axes
        return xp_of(x).flip(x, axes)

    def backward(self, g):
        return xp_of(g).flip(g, self.axes)


class Tile(Function):
    """Tiling ``reps`` times; the gradient sums the copies: reshape to (rep, size) pairs."""
    saves_inputs = False

    def forward(self, x, reps):
        self.shape, self.reps = x.shape, reps
        return xp_of(x).tile(x, reps)

    def backward(self, g):
        lead = len(self.reps) - len(self.shape)
        shape = (1,) * lead + tuple(self.shape)
        split = []
        for r, s in zip(self.reps, shape):
            split += [r, s]
        g = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(self.shape)


class Roll(Function):
    saves_inputs = False

    def forward(self, x, shifts, axes):
        self.shifts, self.axes = shifts, axes
        return xp_of(x).roll(x, shifts, axes)

    def backward(self, g):
        neg = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return xp_of(g).roll(g, neg, self.axes)


class Pad(Function):
    """Constant, reflect, replicate or circular padding of the last dims; backward slices the
    interior and, for the non-constant modes, adds the copied border gradients back in."""
    saves_inputs = False

    def forward(self, x, widths, mode, value):
        xp = xp_of(x)
        self.widths, self.mode, self.shape = widths, mode, x.shape
        if mode == "constant":
            return xp.pad(x, widths, mode="constant", constant_values=value)
        if mode == "replicate":
            # output position j of an axis reads input clip(j − lo, 0, n − 1): this also holds
            # for negative widths (PyTorch's semantics): a crop of the whole axis on one side and
            # padding on the other read the remaining edge (lo = −n: every position reads n − 1)
            for axis, ((lo, hi), n) in enumerate(zip(widths, x.shape)):
                if lo or hi:
                    x = xp.take(x, _pad_source(xp, n, lo, hi, mode), axis=axis)
            return x
        np_mode = {"reflect": "reflect", "circular": "wrap"}[mode]
        self.index = None
        return xp.pad(x, widths, mode=np_mode)

    def backward(self, g):
        xp = xp_of(g)
        if self.mode == "constant":
            idx = tuple(builtins.slice(lo, lo + s) for (lo, _), s in zip(self.widths, self.shape))
            return g[idx]
        # Non-constant modes: each output position reads one input position per axis; send
        # the gradient back along that map, one axis at a time (the map is separable).
        for axis, ((lo, hi), n) in enumerate(zip(self.widths, self.shape)):
            if lo == 0 and hi == 0:
                continue
            src = _pad_source(xp, n, lo, hi, self.mode)
            moved = xp.moveaxis(g, axis, 0)
            acc = xp.zeros((n,) + moved.shape[1:], dtype=g.dtype)
            add_at(xp, acc, src, moved)
            g = xp.moveaxis(acc, 0, axis)
        return g


def _pad_source(xp, n, lo, hi, mode):
    """For each padded position along one axis, the input index it copies."""
    pos = xp.arange(-lo, n + hi)
    if mode == "replicate":
        return xp.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    period = 2 * (n - 1)  # reflect without repeating the edge
    p = xp.abs(pos) % period if period else xp.zeros_like(pos)
    return xp.where(p >= n, period - p, p)


class Diagonal(Function):
    saves_inputs = False

    def forward(self, x, offset, a1, a2):
        self.shape, self.args = x.shape, (offset, a1, a2)
        return xp_of(x).diagonal(x, offset, a1, a2).copy()

    def backward(self, g):
        xp = xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        view = xp.diagonal(out, *self.args)
        if not getattr(view.flags, "writeable", True):  # numpy's diagonal view is read-only
            view.setflags(write=True)
        view[...] = g
        return out


class Tri(Function):
    saves_inputs = False

    def forward(self, x, k, upper):
        xp = xp_of(x)
        self.k, self.upper = k, upper
        return xp.triu(x, k) if upper else xp.tril(x, k)

    def backward(self, g):
        xp = xp_of(g)
        return xp.triu(g, self.k) if self.upper else xp.tril(g, self.k)


# ---------------------------------------------------------------------- public functions
@tensor_method()
def reshape(input, *shape):
    shape = _shape_arg(shape)
    n = input.data.size
    if shape == input.data.shape:
        return input
    if -1 not in shape and math.prod(shape) == n and (not shape or min(shape) >= 0):
        if not _records(input):  # the common, valid case
            return _plain_view(input.data.reshape(shape), input)
        return _as_view(Reshape.apply(input, shape), input)
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1 or builtins.any(s < -1 for s in shape) or (
            -1 in shape and (known == 0 or n % known)) or (-1 not in shape and known != n):
        raise RuntimeError(f"reshape: shape {shape} is invalid for a tensor of {n} elements "
                           f"(shape {tuple(input.shape)})")
    if shape == input.data.shape:
        return input
    return _as_view(Reshape.apply(input, shape), input)


@tensor_method()
def view(input, *shape):
    """Like reshape; PyTorch raises for views that would need a copy, minigen copies instead."""
    return reshape(input, *shape)


@tensor_method()
def view_as(input, other):
    return reshape(input, other.shape)


@tensor_method()
def reshape_as(input, other):
    return reshape(input, other.shape)


@tensor_method()
def permute(input, *dims):
    dims = _shape_arg(dims)
    nd = input.ndim
    if len(dims) != nd:
        raise RuntimeError(f"permute: got {len(dims)} dims for a tensor of {nd} dimensions")
    perm = tuple(norm_dim(d, nd, "permute") for d in dims)
    if len(set(perm)) != nd:
        raise RuntimeError(f"permute: dims {dims} repeat a dimension")
    return _as_view(Permute.apply(input, perm), input)


@tensor_method("transpose", "swapaxes")
def transpose(input, dim0, dim1):
    nd = input.ndim
    d0, d1 = norm_dim(dim0, nd, "transpose"), norm_dim(dim1, nd, "transpose")
    if nd == 0:
        return input
    perm = list(range(nd))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    if not _records(input):
        return _plain_view(input.data.transpose(perm), input)
    return _as_view(Permute.apply(input, tuple(perm)), input)


swapaxes = transpose


@tensor_method()
def movedim(input, source, destination):
    """Move dims ``source`` (an int or a sequence) to the positions ``destination``; the
    other dims keep their order in the remaining places (PyTorch)."""
    nd = input.ndim
    seq = isinstance(source, (list, tuple))
    if seq != isinstance(destination, (list, tuple)):
        raise TypeError("movedim: source and destination must both be ints or both sequences")
    srcs = [norm_dim(d, nd, "movedim") for d in (source if seq else (source,))]
    dsts = [norm_dim(d, nd, "movedim") for d in (destination if seq else (destination,))]
    if len(srcs) != len(dsts):
        raise RuntimeError(f"movedim: source {source} and destination {destination} must have "
                           "the same number of dims")
    for name, ds in (("source", srcs), ("destination", dsts)):
        if len(set(ds)) != len(ds):
            raise RuntimeError(f"movedim: repeated dim in {name} {ds}")
    if nd == 0:
        return input
    perm = [None] * nd
    for sd, dd in zip(srcs, dsts):
        perm[dd] = sd
    rest = iter(d for d in range(nd) if d not in srcs)
    perm = [d if d is not None else next(rest) for d in perm]
    return permute(input, perm)


@tensor_method()
def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor of at most 2 dimensions, got {input.ndim}")
    return transpose(input, 0, 1) if input.ndim == 2 else input


@tensor_method()
def contiguous(input):
    return input if input.data.flags.c_contiguous else Contiguous.apply(input)


@tensor_method()
def clone(input):
    return Clone.apply(input)


@tensor_method()
def expand(input, *sizes):
    sizes = _shape_arg(sizes)
    nd = input.ndim
    if len(sizes) < nd:
        raise RuntimeError(f"expand: the number of sizes ({len(sizes)}) must be at least the "
                           f"number of dims ({nd})")
    lead = len(sizes) - nd
    shape = []
    for i, s in enumerate(sizes):
        cur = input.shape[i - lead] if i >= lead else None
        if s == -1:
            if cur is None:
                raise RuntimeError("expand: -1 is not allowed for a new leading dimension")
            s = cur
        elif cur is not None and cur != 1 and cur != s:
            raise RuntimeError(f"expand: the size of dim {i - lead} ({cur}) must match the "
                               f"expanded size ({s}) or be 1; shape {tuple(input.shape)} -> "
                               f"{sizes}")
        shape.append(s)
    shape = tuple(shape)
    if shape == input.data.shape:
        return input
    return _as_view(Expand.apply(input, shape), input)


@tensor_method()
def broadcast_to(input, shape):
    return expand(input, *_shape_arg((shape,)))


@tensor_method()
def expand_as(input, other):
    return expand(input, *other.shape)


@tensor_method()
def squeeze(input, dim=None):
    if dim is None:
        shape = tuple(s for s in input.shape if s != 1)
    else:
        dims = norm_dims(dim, input.ndim, "squeeze")
        shape = tuple(s for i, s in enumerate(input.shape) if not (i in dims and s == 1))
    return reshape(input, shape)


@tensor_method()
def unsqueeze(input, dim):
    d = norm_dim(dim, input.ndim + 1, "unsqueeze")
    shape = list(input.shape)
    shape.insert(d, 1)
    return reshape(input, shape)


@tensor_method()
def flatten(input, start_dim=0, end_dim=-1):
    nd = input.ndim
    if nd == 0:
        return reshape(input, (1,))
    s, e = norm_dim(start_dim, nd, "flatten"), norm_dim(end_dim, nd, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = input.shape[:s] + (math.prod(input.shape[s:e + 1]),) + input.shape[e + 1:]
    return reshape(input, shape)


@tensor_method()
def unflatten(input, dim, sizes):
    d = norm_dim(dim, input.ndim, "unflatten")
    return reshape(input, input.shape[:d] + tuple(sizes) + input.shape[d + 1:])


def cat(tensors, dim=0):
    """Concatenate along ``dim``; dtypes promote as in PyTorch, devices and shapes must agree."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat: expected a non-empty list of tensors")
    from .. import dtypes
    # PyTorch's legacy rule: a 1-D tensor of size 0 is skipped whatever the others' shapes
    # (it still takes part in the dtype promotion)
    legacy_empty = [t for t in tensors if t.ndim == 1 and t.shape[0] == 0]
    if legacy_empty and len(legacy_empty) < len(tensors):
        dt = tensors[0].dtype
        for t in tensors[1:]:
            dt = dtypes.promote(dt, t.dtype)
        kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
        out = cat(kept, dim)
        return out if out.dtype == dt else out.to(dt)
    first = tensors[0]
    nd = first.ndim
    if nd == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    axis = norm_dim(dim, nd, "cat")
    dt = first.dtype
    for t in tensors[1:]:
        if t.ndim != nd:
            raise RuntimeError(f"cat: tensors must have the same number of dimensions, got "
                               f"{tuple(first.shape)} and {tuple(t.shape)}")
        for i in range(nd):
            if i != axis and t.shape[i] != first.shape[i]:
                raise RuntimeError(f"cat: sizes must match except in dim {axis}; got "
                                   f"{tuple(first.shape)} and {tuple(t.shape)}")
        if t.device is not first.device:
            raise RuntimeError(f"cat: expected all tensors on the same device, got "
                               f"{first.device} and {t.device}")
        dt = dtypes.promote(dt, t.dtype)
    tensors = [t if t.dtype == dt else t.to(dt) for t in tensors]
    return Cat.apply(*tensors, axis=axis)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack: expected a non-empty list of tensors")
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise RuntimeError(f"stack: all tensors must have the same shape, got {tuple(shape)} "
                               f"and {tuple(t.shape)}")
    d = norm_dim(dim, len(shape) + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


@tensor_method()
def narrow(input, dim, start, length):
    d = norm_dim(dim, input.ndim, "narrow")
    idx = [builtins.slice(None)] * input.ndim
    idx[d] = builtins.slice(start, start + length)
    return input[tuple(idx)]


@tensor_method()
def split(input, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` along dim (the last may be smaller), or of the listed sizes."""
    d = norm_dim(dim, input.ndim, "split")
    n = input.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {size}")
        sizes = [builtins.min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split: sizes {sizes} do not add up to {n} (dim {d} of shape "
                               f"{tuple(input.shape)})")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(input, d, start, s))
        start += s
    return tuple(out)


@tensor_method()
def chunk(input, chunks, dim=0):
    d = norm_dim(dim, input.ndim, "chunk")
    size = -(-input.shape[d] // chunks)
    return split(input, builtins.max(size, 1), d)


@tensor_method()
def unbind(input, dim=0):
    d = norm_dim(dim, input.ndim, "unbind")
    return tuple(squeeze(p, d) for p in split(input, 1, d))


@tensor_method()
def flip(input, dims):
    axes = norm_dims(dims if isinstance(dims, (list, tuple)) else (dims,), input.ndim, "flip")
    return Flip.apply(input, axes)


@tensor_method()
def repeat(input, *sizes):
    """Tile the tensor ``sizes`` times along each dim (PyTorch's repeat, numpy's tile)."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller "
                           f"than the number of tensor dims ({input.ndim})")
    return Tile.apply(input, sizes)


def tile(input, dims):
    dims = tuple(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, dims)


@tensor_method()
def roll(input, shifts, dims=None):
    if dims is None:
        flat = reshape(input, (-1,))
        return reshape(Roll.apply(flat, shifts, 0), input.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
    axes = tuple(norm_dim(d, input.ndim, "roll") for d in dims)
    return Roll.apply(input, shifts, axes)


def pad(input, pad, mode="constant", value=0.0):
    """PyTorch's F.pad: ``pad`` lists (left, right) pairs starting from the LAST dim."""
    if len(pad) % 2:
        raise ValueError(f"pad: padding length must be even, got {len(pad)}")
    k = len(pad) // 2
    if k > input.ndim:
        raise ValueError(f"pad: {k} padded dims for a tensor of {input.ndim} dimensions")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: unknown mode {mode!r}")
    # a negative pad crops that many elements from its side; PyTorch crops first, then pads
    # the cropped tensor (so reflect / replicate / circular read the cropped edges)
    crop = [builtins.slice(None)] * input.ndim
    for i in range(k):
        lo, hi = int(pad[2 * i]), int(pad[2 * i + 1])
        d = input.ndim - 1 - i
        n = input.shape[d]
        if min(lo, 0) + min(hi, 0) + n < 0:
            raise ValueError(f"pad: padding ({lo}, {hi}) of dim {d} (size {n}) gives a negative "
                             "size")
        if mode == "replicate" and n == 0 and lo + hi > 0:
            raise ValueError(f"pad: replicate padding of dim {d}, which is empty")
        if lo < 0 or hi < 0:
            crop[d] = builtins.slice(max(-lo, 0), n + min(hi, 0))
    if mode == "replicate":  # signed widths: Pad's index map crops and replicates at once
        widths = [(0, 0)] * input.ndim
        for i in range(k):
            widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
        return Pad.apply(input, tuple(widths), mode, value)
    if any(c != builtins.slice(None) for c in crop):
        input = input[tuple(crop)]
    widths = [(0, 0)] * input.ndim
    for i in range(k):
        lo, hi = max(int(pad[2 * i]), 0), max(int(pad[2 * i + 1]), 0)
        d = input.ndim - 1 - i
        if mode == "reflect" and (lo >= input.shape[d] or hi >= input.shape[d]):
            raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the size "
                             f"of dim {d} ({input.shape[d]})")
        widths[d] = (lo, hi)
    return Pad.apply(input, tuple(widths), mode, value)


@tensor_method()
def diagonal(input, offset=0, dim1=0, dim2=1):
    return Diagonal.apply(input, offset, norm_dim(dim1, input.ndim), norm_dim(dim2, input.ndim))


@tensor_method()
def tril(input, diagonal=0):
    return Tri.apply(input, diagonal, False)


@tensor_method()
def triu(input, diagonal=0):
    return Tri.apply(input, diagonal, True)
