"""Shape and indexing helpers with PyTorch's names: addmm, baddbmm, addcmul, addcdiv, mv,
tensordot, trace, diag, diag_embed, repeat_interleave, index_add, index_copy, scatter_reduce,
meshgrid, broadcast_tensors, atleast_1d/2d/3d, hstack/vstack/dstack/column_stack,
tril_indices/triu_indices.

Where one node with an analytic backward saves work over a chain of primitives it is a
``Function`` here (the fused products and pointwise triples, the scatters); where the
composition is the same arithmetic (tensordot = permute + reshape + one GEMM, meshgrid and
broadcast_tensors = expands, the stacks = cat) it is composed from the existing primitives.

No op here reads a device value on the host except where the size of the result depends on
it (``repeat_interleave`` with a tensor of repeats and no ``output_size``); index bounds are
checked on the host only where ``value_checks`` allows (always on the CPU, on CUDA under
``minigen.debug_checks()``; see ``autograd/grad_mode.py``).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..autograd.grad_mode import value_checks
from ..backend import CPU, Device, array_module, xp_of
from ..tensor import Tensor
from ._util import add_at, norm_dim, same_dtype, tensor_method, unbroadcast
from .indexing import _along_axis_index, _check_index
from .matmul import _mm, matmul
from .shape import cat, expand, permute, reshape, diagonal

__all__ = ["addmm", "baddbmm", "addcmul", "addcdiv", "mv", "tensordot", "trace", "diag",
           "diag_embed", "repeat_interleave", "index_add", "index_copy", "scatter_reduce",
           "meshgrid", "broadcast_tensors", "broadcast_shapes", "atleast_1d", "atleast_2d",
           "atleast_3d", "hstack", "vstack", "row_stack", "dstack", "column_stack",
           "tril_indices", "triu_indices"]


def _need_tensor(op, name, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")


def _same_device(op, *tensors):
    dev = tensors[0].device
    for t in tensors[1:]:
        if t.device is not dev:
            raise RuntimeError(f"{op}: expected all tensors on the same device, got {dev} and "
                               f"{t.device}")


def _scalar(op, name, v):
    if isinstance(v, Tensor) or not isinstance(v, (builtins.int, builtins.float, np.number)):
        raise TypeError(f"{op}: {name} must be a Python number, got {type(v).__name__}")
    return v.item() if isinstance(v, np.generic) else v


# ============================================================== β·input + α·(A @ B)
class AddProduct(Function):
    """out = β·x + α·(A B) (x broadcast to the product's shape; β = 0 ignores x, NaN included).

    dx = β·Σ_broadcast g,  dA = α·g Bᵀ,  dB = α·Aᵀ g (batched over a leading dim for baddbmm).
    """
    saves_inputs = (1, 2)

    def forward(self, x, a, b, beta, alpha):
        self.a, self.b, self.xshape, self.beta, self.alpha = a, b, x.shape, beta, alpha
        dt = a.dtype
        p = _mm(a, b)
        if alpha != 1:
            p = p * alpha
        if beta != 0:
            p = p + (x if beta == 1 else x * beta)
        return p if p.dtype == dt else p.astype(dt)

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        gx = ga = gb = None
        if n[0]:
            gx = (xp.zeros(self.xshape, dtype=g.dtype) if self.beta == 0 else
                  unbroadcast(g * self.beta if self.beta != 1 else g, self.xshape))
        ga_scale = g * self.alpha if self.alpha != 1 else g
        if n[1]:
            ga = _mm(ga_scale, xp.swapaxes(self.b, -1, -2)).astype(g.dtype, copy=False)
        if n[2]:
            gb = _mm(xp.swapaxes(self.a, -1, -2), ga_scale).astype(g.dtype, copy=False)
        return gx, ga, gb


def _add_product(op, input, a, b, beta, alpha, nd):
    for name, t in (("input", input), ("first matrix", a), ("second matrix", b)):
        _need_tensor(op, name, t)
    beta, alpha = _scalar(op, "beta", beta), _scalar(op, "alpha", alpha)
    if a.ndim != nd or b.ndim != nd:
        raise RuntimeError(f"{op}: expected {nd}-D tensors, got shapes {tuple(a.shape)} and "
                           f"{tuple(b.shape)}")
    if a.shape[-1] != b.shape[-2] or (nd == 3 and a.shape[0] != b.shape[0]):
        raise RuntimeError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                           "multiplied")
    shape = a.shape[:-1] + b.shape[-1:]
    try:
        ok = np.broadcast_shapes(input.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"{op}: input of shape {tuple(input.shape)} does not broadcast to "
                           f"the product's shape {shape}")
    same_dtype(op, input, a, b)
    _same_device(op, input, a, b)
    if not dtypes.is_floating(a.dtype) and (isinstance(beta, float) or isinstance(alpha, float)):
        raise TypeError(f"{op}: beta and alpha must be integers for integer tensors")
    return AddProduct.apply(input, a, b, beta, alpha)


@tensor_method()
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """β·input + α·(mat1 @ mat2); mat1 (n, m), mat2 (m, p), input broadcastable to (n, p)."""
    return _add_product("addmm", input, mat1, mat2, beta, alpha, 2)


@tensor_method()
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """β·input + α·(batch1 @ batch2) per batch; batch1 (b, n, m), batch2 (b, m, p)."""
    return _add_product("baddbmm", input, batch1, batch2, beta, alpha, 3)


@tensor_method()
def mv(input, vec):
    """Matrix (n, m) times vector (m,)."""
    _need_tensor("mv", "input", input)
    _need_tensor("mv", "vec", vec)
    if input.ndim != 2 or vec.ndim != 1 or input.shape[1] != vec.shape[0]:
        raise RuntimeError(f"mv: expected a matrix (n, m) and a vector (m,), got shapes "
                           f"{tuple(input.shape)} and {tuple(vec.shape)}")
    return matmul(input, vec)


# ============================================================== x + v·(a ∘ b)
class AddPointwise(Function):
    """out = x + v·a·b (addcmul) or x + v·a/b (addcdiv), all three broadcast together.

    addcmul: da = v·g·b, db = v·g·a;  addcdiv: da = v·g/b, db = −v·g·a/b²; dx = g; each summed
    back over the dims it was broadcast along.
    """
    saves_inputs = (1, 2)

    def forward(self, x, a, b, value, div):
        self.shapes, self.a, self.b, self.value, self.div = (x.shape, a.shape, b.shape), a, b, \
            value, div
        t = a / b if div else a * b
        if value != 1:
            t = t * value
        out = x + t
        return out if out.dtype == x.dtype else out.astype(x.dtype)

    def backward(self, g):
        n = self.needs_input_grad
        a, b = self.a, self.b
        gv = g * self.value if self.value != 1 else g
        gx = unbroadcast(g, self.shapes[0]) if n[0] else None
        ga = gb = None
        if self.div:
            if n[1]:
                ga = unbroadcast(gv / b, self.shapes[1])
            if n[2]:
                gb = unbroadcast(-(gv * a) / (b * b), self.shapes[2])
        else:
            if n[1]:
                ga = unbroadcast(gv * b, self.shapes[1])
            if n[2]:
                gb = unbroadcast(gv * a, self.shapes[2])
        return gx, ga, gb


def _add_pointwise(op, input, t1, t2, value, div):
    for name, t in (("input", input), ("tensor1", t1), ("tensor2", t2)):
        _need_tensor(op, name, t)
    value = _scalar(op, "value", value)
    try:
        shape = np.broadcast_shapes(input.shape, t1.shape, t2.shape)
    except ValueError:
        raise RuntimeError(f"{op}: shapes {tuple(input.shape)}, {tuple(t1.shape)} and "
                           f"{tuple(t2.shape)} cannot be broadcast together") from None
    del shape
    if div and not dtypes.is_floating(t1.dtype) and not dtypes.is_floating(t2.dtype):
        raise RuntimeError("addcdiv: integer division of tensor1 by tensor2 is not supported; "
                           "use floating point tensors (PyTorch refuses it too)")
    _same_device(op, input, t1, t2)
    dt = dtypes.promote(dtypes.promote(input.dtype, t1.dtype), t2.dtype)
    input, t1, t2 = (t if t.dtype == dt else t.to(dt) for t in (input, t1, t2))
    # the value is taken in the result dtype (an integer result truncates it, as PyTorch does)
    return AddPointwise.apply(input, t1, t2, dt.type(value).item() if dt.kind in "biu" else
                              value, div)


@tensor_method()
def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value·tensor1·tensor2 (broadcast)."""
    return _add_pointwise("addcmul", input, tensor1, tensor2, value, False)


@tensor_method()
def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value·tensor1/tensor2 (broadcast; floating point only)."""
    return _add_pointwise("addcdiv", input, tensor1, tensor2, value, True)


# ============================================================== tensordot
def _dim_list(op, dims, ndim):
    if isinstance(dims, (builtins.int, np.integer)) and not isinstance(dims, builtins.bool):
        dims = [dims]
    if not isinstance(dims, (list, tuple)):
        raise TypeError(f"{op}: dims must be an int or a pair of lists of ints, got "
                        f"{type(dims).__name__}")
    out = [norm_dim(d, ndim, op) for d in dims]
    if len(set(out)) != len(out):
        raise RuntimeError(f"{op}: dim {tuple(dims)} names a dimension twice")
    return out


def tensordot(a, b, dims=2):
    """Σ over the paired dims of a and b: dims=k pairs a's last k with b's first k; dims=(da, db)
    pairs da[i] with db[i]. The result has a's free dims then b's free dims.

    a's free dims and its contracted dims are permuted into an (M, K) matrix, b's into (K, N):
    one GEMM, whose backward is the GEMM's."""
    _need_tensor("tensordot", "a", a)
    _need_tensor("tensordot", "b", b)
    if isinstance(dims, Tensor):
        raise TypeError("tensordot: dims must be an int or a pair of lists of ints, not a tensor")
    if isinstance(dims, (builtins.int, np.integer)) and not isinstance(dims, builtins.bool):
        k = builtins.int(dims)
        if k < 0 or k > a.ndim or k > b.ndim:
            raise RuntimeError(f"tensordot: dims={k} does not fit tensors of {a.ndim} and "
                               f"{b.ndim} dimensions")
        da, db = list(range(a.ndim - k, a.ndim)), list(range(k))
    elif isinstance(dims, (list, tuple)) and len(dims) == 2:
        da, db = _dim_list("tensordot", dims[0], a.ndim), _dim_list("tensordot", dims[1], b.ndim)
    else:
        raise TypeError(f"tensordot: dims must be an int or a pair of lists of ints, got "
                        f"{dims!r}")
    if len(da) != len(db):
        raise RuntimeError(f"tensordot: {len(da)} dims of a paired with {len(db)} dims of b")
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(f"tensordot: contracted dim {i} of a (size {a.shape[i]}) does not "
                               f"match dim {j} of b (size {b.shape[j]})")
    same_dtype("tensordot", a, b)
    _same_device("tensordot", a, b)
    fa = [i for i in range(a.ndim) if i not in da]
    fb = [j for j in range(b.ndim) if j not in db]
    K = math.prod(a.shape[i] for i in da)
    sa, sb = [a.shape[i] for i in fa], [b.shape[j] for j in fb]
    A = reshape(permute(a, fa + da), (math.prod(sa), K))
    B = reshape(permute(b, db + fb), (K, math.prod(sb)))
    return reshape(matmul(A, B), tuple(sa + sb))


# ============================================================== trace, diag, diag_embed
class Trace(Function):
    """Σ_i x[i, i]; dx = g on the diagonal, 0 elsewhere."""
    saves_inputs = False

    def forward(self, x):
        xp = xp_of(x)
        self.shape = x.shape
        out = xp.asarray(xp.trace(x))
        if x.dtype.kind in "biu":   # PyTorch sums integers in int64
            return out.astype(np.int64)
        return out if out.dtype == x.dtype else out.astype(x.dtype)

    def backward(self, g):
        xp = xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        i = xp.arange(builtins.min(self.shape))
        out[i, i] = g
        return out


@tensor_method()
def trace(input):
    """Sum of the main diagonal of a matrix."""
    _need_tensor("trace", "input", input)
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, got a tensor of shape "
                           f"{tuple(input.shape)}")
    return Trace.apply(input)


class DiagEmbed(Function):
    """out[..., i, i + offset] = x[..., i] in the plane of dims (d1, d2) (offset < 0: below);
    dx = g read back at those positions."""
    saves_inputs = False

    def forward(self, x, offset, d1, d2):
        xp = xp_of(x)
        n = x.shape[-1]
        m = n + builtins.abs(offset)
        i = xp.arange(n)
        self.rows, self.cols = i + builtins.max(-offset, 0), i + builtins.max(offset, 0)
        self.dims = (d1, d2)
        buf = xp.zeros(x.shape[:-1] + (m, m), dtype=x.dtype)
        buf[..., self.rows, self.cols] = x
        return xp.ascontiguousarray(xp.moveaxis(buf, (-2, -1), (d1, d2)))

    def backward(self, g):
        xp = xp_of(g)
        return xp.moveaxis(g, self.dims, (-2, -1))[..., self.rows, self.cols]


@tensor_method()
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """A tensor whose (dim1, dim2) planes hold input's last dim on diagonal ``offset``; dim1 and
    dim2 count in the result's dimensions (input.ndim + 1)."""
    _need_tensor("diag_embed", "input", input)
    if input.ndim == 0:
        raise RuntimeError("diag_embed: expected a tensor of at least 1 dimension, got a 0-d "
                           "tensor")
    nd = input.ndim + 1
    d1, d2 = norm_dim(dim1, nd, "diag_embed"), norm_dim(dim2, nd, "diag_embed")
    if d1 == d2:
        raise RuntimeError(f"diag_embed: dim1 and dim2 name the same dimension ({dim1}, {dim2})")
    return DiagEmbed.apply(input, builtins.int(offset), d1, d2)


@tensor_method()
def diag(input, diagonal=0):
    """1-D input: the square matrix with input on diagonal ``diagonal``; 2-D input: that
    diagonal as a 1-D tensor."""
    _need_tensor("diag", "input", input)
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return _diagonal(input, diagonal, 0, 1)
    raise RuntimeError(f"diag: expected a 1-D or 2-D tensor, got shape {tuple(input.shape)}")


_diagonal = diagonal


# ============================================================== repeat_interleave
class RepeatEach(Function):
    """Every slice along ``axis`` repeated r times in place: out[..., i·r + k, ...] = x[..., i,
    ...]; dx sums the r copies."""
    saves_inputs = False

    def forward(self, x, r, axis):
        self.shape, self.r, self.axis = x.shape, r, axis
        return xp_of(x).repeat(x, r, axis=axis)

    def backward(self, g):
        s, a = self.shape, self.axis
        return g.reshape(s[:a] + (s[a], self.r) + s[a + 1:]).sum(axis=a + 1)


class TakeAlong(Function):
    """out = x[..., idx, ...] along ``axis`` (idx 1-D, repeats allowed); dx scatters g back with
    accumulation."""
    saves_inputs = False

    def forward(self, x, idx, axis):
        self.shape, self.idx, self.axis = x.shape, idx, axis
        return xp_of(x).take(x, idx, axis=axis)

    def backward(self, g):
        xp = xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        add_at(xp, out, (slice(None),) * self.axis + (self.idx,), g)
        return out


@tensor_method()
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each element (dim=None: of the flattened input) or each slice along ``dim``:
    ``repeats`` an int, or an integer tensor with one count per slice (or one for all).
    ``repeat_interleave(counts)`` alone gives each index i repeated counts[i] times.

    With a tensor of repeats on CUDA the result's size is their sum, read on the host (one
    synchronisation) unless ``output_size`` gives it."""
    _need_tensor("repeat_interleave", "input", input)
    if repeats is None:  # repeat_interleave(counts): the indices 0..n-1 repeated
        counts = input
        if counts.ndim > 1 or counts.dtype.kind not in "iu":
            raise RuntimeError("repeat_interleave: repeats must be a 0-d or 1-D integer tensor")
        counts = reshape(counts, (-1,))
        xp = xp_of(counts.data)
        idx = Tensor._wrap(xp.arange(counts.shape[0], dtype=np.int64), counts.device)
        return repeat_interleave(idx, counts, 0, output_size=output_size)
    if dim is None or input.ndim == 0:
        if dim is not None:
            norm_dim(dim, 0, "repeat_interleave")
        input, d = reshape(input, (-1,)), 0
    else:
        d = norm_dim(dim, input.ndim, "repeat_interleave")
    n = input.shape[d]
    if isinstance(repeats, (builtins.int, np.integer)) and not isinstance(repeats, builtins.bool):
        r = builtins.int(repeats)
        if r < 0:
            raise RuntimeError(f"repeat_interleave: repeats can not be negative, got {r}")
        if output_size is not None and output_size != n * r:
            raise RuntimeError(f"repeat_interleave: output_size {output_size} does not match "
                               f"{n} slices repeated {r} times")
        return RepeatEach.apply(input, r, d)
    if not isinstance(repeats, Tensor) or repeats.dtype.kind not in "iu" or repeats.ndim > 1:
        raise TypeError("repeat_interleave: repeats must be an int or a 0-d/1-D integer tensor, "
                        f"got {getattr(repeats, 'dtype', type(repeats).__name__)}")
    if repeats.device is not input.device:
        raise RuntimeError(f"repeat_interleave: repeats on {repeats.device}, input on "
                           f"{input.device}")
    if repeats.numel() != n and repeats.numel() != 1:
        raise RuntimeError(f"repeat_interleave: {repeats.numel()} repeats for {n} slices along "
                           f"dim {d}")
    if output_size is not None and (not isinstance(output_size, builtins.int) or output_size < 0):
        raise RuntimeError(f"repeat_interleave: output_size must be a non-negative int, got "
                           f"{output_size!r}")
    xp = xp_of(input.data)
    reps = xp.broadcast_to(repeats.data.reshape(-1), (n,)).astype(np.int64)
    ends = xp.cumsum(reps)          # slice i fills output positions [ends[i] - reps[i], ends[i])
    if value_checks(repeats.device) and n:
        if builtins.int(reps.min()) < 0:
            raise RuntimeError("repeat_interleave: repeats can not be negative")
        total = builtins.int(ends[-1])
        if output_size is not None and output_size != total:
            raise RuntimeError(f"repeat_interleave: output_size {output_size} does not match "
                               f"the sum of repeats ({total})")
    if output_size is None:
        output_size = builtins.int(ends[-1]) if n else 0   # the data-dependent size
    # output position p reads slice i with ends[i - 1] <= p < ends[i]
    src = xp.searchsorted(ends, xp.arange(output_size, dtype=np.int64), side="right")
    return TakeAlong.apply(input, src, d)


# ============================================================== index_add, index_copy
class IndexAdd(Function):
    """out = x; out[..., idx[i], ...] += α·src[..., i, ...] (repeated indices accumulate);
    dx = g, dsrc = α·g[..., idx, ...]."""
    saves_inputs = False

    def forward(self, x, src, idx, axis, alpha):
        xp = xp_of(x)
        self.idx, self.axis, self.alpha = idx, axis, alpha
        out = x.copy()
        add_at(xp, out, (slice(None),) * axis + (idx,), src * alpha if alpha != 1 else src)
        return out

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        gs = None
        if n[1]:
            gs = xp.take(g, self.idx, axis=self.axis)
            if self.alpha != 1:
                gs = gs * self.alpha
        return (g if n[0] else None), gs


class IndexCopy(Function):
    """out = x with out[..., idx[i], ...] = src[..., i, ...]; dx = g zeroed where written,
    dsrc = g[..., idx, ...]."""
    saves_inputs = False

    def forward(self, x, src, idx, axis):
        self.idx, self.axis = idx, axis
        out = x.copy()
        out[(slice(None),) * axis + (idx,)] = src
        return out

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        gx = gs = None
        if n[0]:
            gx = g.copy()
            gx[(slice(None),) * self.axis + (self.idx,)] = 0
        if n[1]:
            gs = xp.take(g, self.idx, axis=self.axis)
        return gx, gs


def _index_args(op, input, dim, index, source):
    """(input, source, index array, axis) with 0-d input and source as 1-element 1-D tensors."""
    _need_tensor(op, "input", input)
    _need_tensor(op, "index", index)
    _need_tensor(op, "source", source)
    d = norm_dim(dim, input.ndim, op)
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be a 0-d or 1-D integer tensor, got dtype "
                        f"{index.dtype} and shape {tuple(index.shape)}")
    same_dtype(op, input, source)
    _same_device(op, input, index, source)
    k = index.numel()
    x_shape = input.shape if input.ndim else (1,)
    want = x_shape[:d] + (k,) + x_shape[d + 1:]
    s_shape = source.shape if source.ndim else (1,)
    if s_shape != want:
        raise RuntimeError(f"{op}: source of shape {tuple(source.shape)} does not match the "
                           f"input of shape {tuple(input.shape)} with {k} indices in dim {d} "
                           f"(expected {want})")
    n = x_shape[d]
    if k and value_checks(index.device):
        lo, hi = builtins.int(index.data.min()), builtins.int(index.data.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"{op}: index {lo if lo < 0 else hi} is out of range for dim {d} "
                             f"of size {n}")
    return input, source, index.data.reshape(-1), d


@tensor_method()
def index_add(input, dim, index, source, *, alpha=1):
    """input with α·source[..., i, ...] added at input[..., index[i], ...] (repeats add up)."""
    input, source, idx, d = _index_args("index_add", input, dim, index, source)
    alpha = _scalar("index_add", "alpha", alpha)
    if input.ndim == 0:
        return reshape(IndexAdd.apply(reshape(input, (1,)), reshape(source, (1,)), idx, 0,
                                      alpha), ())
    return IndexAdd.apply(input, source, idx, d, alpha)


@tensor_method()
def index_copy(input, dim, index, source):
    """input with input[..., index[i], ...] = source[..., i, ...] (with repeated indices which
    copy lands is unspecified, as in PyTorch)."""
    input, source, idx, d = _index_args("index_copy", input, dim, index, source)
    if input.ndim == 0:
        return reshape(IndexCopy.apply(reshape(input, (1,)), reshape(source, (1,)), idx, 0), ())
    return IndexCopy.apply(input, source, idx, d)


# ============================================================== scatter_reduce
_UFUNC = {"sum": "add", "prod": "multiply", "amax": "maximum", "amin": "minimum"}


def _identity(reduce, dtype):
    if reduce == "sum":
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "b":
        return reduce == "amin"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if reduce == "amax" else info.max
    return -np.inf if reduce == "amax" else np.inf


def _segment_reduce(xp, out, full, vals, reduce):
    """``out`` (C-contiguous) with ``vals`` folded in at the advanced index ``full`` by
    ``reduce``, for array modules without ``ufunc.at`` and without a host synchronisation.

    The targets are linearised and sorted; a segmented inclusive scan (Hillis–Steele: log₂ m
    rounds, v[i] ← v[i] ∘ v[i − s] where key[i − s] = key[i]) leaves each segment's fold in its
    last element, which alone is written (the others go to a spare slot past the end)."""
    op = getattr(xp, _UFUNC[reduce])
    shape = out.shape
    lin = xp.zeros(vals.shape, dtype=np.int64)
    stride = 1
    for k in range(len(shape) - 1, -1, -1):
        lin = lin + full[k] * stride
        stride *= shape[k]
    lin = lin.reshape(-1)
    m = lin.shape[0]
    if m == 0:
        return out
    order = xp.argsort(lin)
    key, v = lin[order], vals.reshape(-1)[order]
    s = 1
    while s < m:
        v = xp.concatenate([v[:s], xp.where(key[s:] == key[:-s], op(v[s:], v[:-s]), v[s:])])
        s *= 2
    last = xp.concatenate([key[1:] != key[:-1], xp.ones(1, dtype=bool)])
    size = out.size
    target = xp.where(last, key, size)
    ext = xp.concatenate([out.reshape(-1), xp.zeros(1, dtype=out.dtype)])
    ext[target] = op(ext[target], v)
    return ext[:size].reshape(shape)


def _reduce_into(xp, out, full, vals, reduce):
    """out ∘= vals at ``full`` (repeats folded in); returns the result (maybe ``out`` itself)."""
    if reduce == "sum":
        add_at(xp, out, full, vals)
        return out
    if xp is np:
        getattr(np, _UFUNC[reduce]).at(out, full, vals)
        return out
    return _segment_reduce(xp, out, full, vals, reduce)


def _scatter_fold(xp, x, full, vals, reduce, include_self):
    """x with vals folded in at ``full`` (include_self=False: the targets start from the
    reduction's identity, so x's value there does not count)."""
    out = xp.array(x, copy=True, order="C")
    if not include_self:
        out[full] = _identity(reduce, x.dtype)
    return _reduce_into(xp, out, full, vals, reduce)


class ScatterReduce(Function):
    """out = x; out[index[i][j]][j] ∘= src[i][j] (dim 0) for ∘ in sum, prod, mean, amax, amin.

    Gradients (PyTorch's):
      sum:  dx = g, dsrc = g[index];  mean: the same divided by each target's count;
      prod: dx = g·(product of the others), taken as g·P(x→1)/x with x = 0 replaced by 1 so a
            zero x gets the product of the rest; dsrc = g·out/src where src ≠ 0, and for the
            only zero of its target g·(the fold with that zero replaced by 1) (two zeros: 0);
      amax/amin: g split evenly among every x and src equal to the result at its target;
    with include_self=False dx is 0 at the scattered targets.
    """
    saves_inputs = (0, 1)
    saves_output = True

    def forward(self, x, src, index, axis, reduce, include_self):
        xp = xp_of(x)
        full = _along_axis_index(xp, index, axis)
        s = src[tuple(slice(0, k) for k in index.shape)]
        self.full, self.reduce, self.include_self = full, reduce, include_self
        self.x, self.s, self.src_shape, self.index_shape = x, s, src.shape, index.shape
        if reduce == "mean":
            total = _scatter_fold(xp, x, full, s, "sum", include_self)
            count = xp.ones(x.shape, dtype=x.dtype)
            if not include_self:
                count[full] = 0
            add_at(xp, count, full, xp.ones(s.shape, dtype=x.dtype))
            self.count = count
            if x.dtype.kind in "biu":
                return xp.floor_divide(total, count)
            return total / count
        out = _scatter_fold(xp, x, full, s, reduce, include_self)
        self.out = out
        return out

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        full, reduce, inc = self.full, self.reduce, self.include_self
        x, s = self.x, self.s
        if reduce == "sum":
            gx, gs = g, g[full]
        elif reduce == "mean":
            gx = g / self.count
            gs = gx[full]
        elif reduce == "prod":
            res = self.out
            mx = xp.where(x == 0, xp.ones((), dtype=x.dtype), x)
            gx = g * _scatter_fold(xp, mx, full, s, "prod", inc) / mx
            s_zero = s == 0
            zeros = xp.zeros(x.shape, dtype=g.dtype)
            add_at(xp, zeros, full, s_zero.astype(g.dtype))
            single = s_zero & (zeros[full] == 1)
            ms = xp.where(single, xp.ones((), dtype=s.dtype), s)
            held = _scatter_fold(xp, x, full, ms, "prod", inc)
            gs = xp.where(single, (g * held)[full],
                          (g * res)[full] / xp.where(s_zero, xp.ones((), dtype=s.dtype), s))
        else:
            res = self.out
            value = res[full]
            x_is = x == res
            s_is = s == value
            ties = x_is.astype(g.dtype)
            add_at(xp, ties, full, s_is.astype(g.dtype))
            share = g / ties
            gx = xp.where(x_is, share, xp.zeros((), dtype=g.dtype))
            gs = xp.where(s_is, share[full], xp.zeros((), dtype=g.dtype))
        if not n[0]:
            gx = None
        elif not inc:
            gx = gx.copy() if gx is g else gx
            gx[full] = 0
        gsrc = None
        if n[1]:
            if tuple(self.src_shape) == tuple(self.index_shape):
                gsrc = gs
            else:
                gsrc = xp.zeros(self.src_shape, dtype=g.dtype)
                gsrc[tuple(slice(0, k) for k in self.index_shape)] = gs
        return gx, gsrc


@tensor_method()
def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """input with src[i][j] folded by ``reduce`` ('sum', 'prod', 'mean', 'amax', 'amin') into
    out[index[i][j]][j] (dim 0); include_self=False leaves input's value out of the fold at the
    targets. Integer 'mean' rounds down."""
    _need_tensor("scatter_reduce", "input", input)
    _need_tensor("scatter_reduce", "src", src)
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError(f"scatter_reduce: reduce must be one of 'sum', 'prod', 'mean', "
                           f"'amax', 'amin', got {reduce!r}")
    d = norm_dim(dim, input.ndim, "scatter_reduce")
    if input.ndim == 0:
        if index.ndim > 1 or src.ndim > 1:
            raise RuntimeError("scatter_reduce: a 0-d input takes 0-d or 1-element index and src")
        out = scatter_reduce(reshape(input, (1,)), 0, reshape(index, (-1,)), reshape(src, (-1,)),
                             reduce, include_self=include_self)
        return reshape(out, ())
    _check_index("scatter_reduce", input, index, d)
    if src.ndim != index.ndim or builtins.any(i > k for i, k in zip(index.shape, src.shape)):
        raise RuntimeError(f"scatter_reduce: index of shape {tuple(index.shape)} is larger than "
                           f"src of shape {tuple(src.shape)}")
    same_dtype("scatter_reduce", input, src)
    _same_device("scatter_reduce", input, index, src)
    if index.numel() and value_checks(index.device) and builtins.int(index.data.min()) < 0:
        raise IndexError(f"scatter_reduce: index {builtins.int(index.data.min())} is out of "
                         f"range for dim {d} of size {input.shape[d]}")
    return ScatterReduce.apply(input, src, index.data, d, reduce, builtins.bool(include_self))


# ============================================================== grids and broadcasting
def broadcast_shapes(*shapes):
    """The shape that all ``shapes`` broadcast to."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) if isinstance(s, (list, tuple)) else (s,)
                                           for s in shapes)))
    except ValueError:
        raise RuntimeError(f"broadcast_shapes: shapes {shapes} cannot be broadcast together") \
            from None


def _tensor_list(op, tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    for t in tensors:
        _need_tensor(op, "every argument", t)
    return tensors


def broadcast_tensors(*tensors):
    """Each tensor expanded (a view) to the shape they all broadcast to."""
    tensors = _tensor_list("broadcast_tensors", tensors)
    try:
        shape = tuple(np.broadcast_shapes(*(t.shape for t in tensors)))
    except ValueError:
        raise RuntimeError("broadcast_tensors: shapes " + ", ".join(
            str(tuple(t.shape)) for t in tensors) + " cannot be broadcast together") from None
    return tuple(t if t.shape == shape else expand(t, shape) for t in tensors)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids from 1-D (or 0-d) tensors: with 'ij' (the default) output k varies
    along dim k; with 'xy' the first two dims are swapped (Cartesian, as numpy's default)."""
    tensors = _tensor_list("meshgrid", tensors)
    if indexing is None:
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if not tensors:
        raise RuntimeError("meshgrid: expected at least one tensor")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid: expected 0-d or 1-D tensors, got shape "
                               f"{tuple(t.shape)}")
    same_dtype("meshgrid", *tensors)
    _same_device("meshgrid", *tensors)
    sizes = [t.numel() for t in tensors]
    pos = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        pos[0], pos[1] = 1, 0
    shape = [0] * len(tensors)
    for p, s in zip(pos, sizes):
        shape[p] = s
    shape = tuple(shape)
    out = []
    for t, p, s in zip(tensors, pos, sizes):
        view = [1] * len(tensors)
        view[p] = s
        out.append(expand(reshape(t, tuple(view)), shape))
    return tuple(out)


# ============================================================== the stacks
def _atleast(nd, tensors):
    op = f"atleast_{nd}d"
    single = len(tensors) == 1 and isinstance(tensors[0], Tensor)
    tensors = _tensor_list(op, tensors)
    out = []
    for t in tensors:
        if t.ndim >= nd:
            out.append(t)
        elif nd == 1 or t.ndim == 0:
            out.append(reshape(t, (1,) * nd))
        elif nd == 2 or t.ndim == 1:            # (n,) → (1, n) or (1, n, 1)
            out.append(reshape(t, (1,) + t.shape + (1,) * (nd - 2)))
        else:                                   # (m, n) → (m, n, 1)
            out.append(reshape(t, t.shape + (1,)))
    return out[0] if single else tuple(out)


def atleast_1d(*tensors):
    return _atleast(1, tensors)


def atleast_2d(*tensors):
    return _atleast(2, tensors)


def atleast_3d(*tensors):
    return _atleast(3, tensors)


def _stack_list(op, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors")
    if not tensors:
        raise RuntimeError(f"{op}: expected a non-empty list of tensors")
    return _tensor_list(op, tuple(tensors))


def hstack(tensors):
    """Concatenate along dim 1 (dim 0 for 1-D tensors); 0-d tensors count as 1-D."""
    ts = atleast_1d(*_stack_list("hstack", tensors))
    ts = ts if isinstance(ts, tuple) else (ts,)
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors):
    """Concatenate along dim 0 after making every tensor at least 2-D ((n,) → (1, n))."""
    ts = atleast_2d(*_stack_list("vstack", tensors))
    return cat(ts if isinstance(ts, tuple) else (ts,), 0)


row_stack = vstack


def dstack(tensors):
    """Concatenate along dim 2 after making every tensor at least 3-D."""
    ts = atleast_3d(*_stack_list("dstack", tensors))
    return cat(ts if isinstance(ts, tuple) else (ts,), 2)


def column_stack(tensors):
    """0-d and 1-D tensors become columns (n, 1); everything is concatenated along dim 1."""
    ts = _stack_list("column_stack", tensors)
    return cat([reshape(t, (t.numel(), 1)) if t.ndim <= 1 else t for t in ts], 1)


# ============================================================== triangle indices
def _tri_indices(op, row, col, offset, dtype, device, lower):
    for name, v in (("row", row), ("col", col), ("offset", offset)):
        if not isinstance(v, (builtins.int, np.integer)) or isinstance(v, builtins.bool):
            raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if row < 0 or col < 0:
        raise RuntimeError(f"{op}: row and col must be non-negative, got {row} and {col}")
    dt = dtypes.as_dtype(dtype) if dtype is not None else np.dtype(np.int64)
    if dt.kind not in "iu":
        raise TypeError(f"{op}: dtype must be an integer dtype, got {dt}")
    dev = CPU if device is None else Device(device)
    # computed from the host ints on the host (row-major order, as PyTorch lists them); one
    # upload on CUDA, no synchronisation
    fn = np.tril_indices if lower else np.triu_indices
    idx = np.stack(fn(builtins.int(row), builtins.int(offset), builtins.int(col))).astype(dt)
    return Tensor._wrap(array_module(dev).asarray(idx), dev)


def tril_indices(row, col, offset=0, *, dtype=None, device=None):
    """2 × N indices (row-major) of the lower triangle of a row × col matrix, diagonal
    ``offset`` included (offset > 0: above the main diagonal)."""
    return _tri_indices("tril_indices", row, col, offset, dtype, device, True)


def triu_indices(row, col, offset=0, *, dtype=None, device=None):
    """2 × N indices (row-major) of the upper triangle of a row × col matrix from diagonal
    ``offset`` up."""
    return _tri_indices("triu_indices", row, col, offset, dtype, device, False)


# ============================================================== in-place variants
def _inplace(fn):
    """``x.op_(*args)``: the out-of-place op's result written into x (``Tensor._inplace_from``:
    argument errors raise before x changes; with gradients recorded x takes over the node)."""
    def method(self, *args, **kwargs):
        return self._inplace_from(lambda s, *a: fn(s, *a, **kwargs), *args)
    method.__name__ = fn.__name__ + "_"
    method.__doc__ = f"In-place {fn.__name__}."
    return method


for _fn in (addmm, baddbmm, addcmul, addcdiv, index_add, index_copy, scatter_reduce):
    setattr(Tensor, _fn.__name__ + "_", _inplace(_fn))
del _fn
