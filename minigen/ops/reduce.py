"""Reductions and normalisations along dims: sum, mean, var/std, max/min, prod, logsumexp,
cumsum, softmax, log_softmax.

Backward of a reduction broadcasts the incoming gradient back over the reduced dims
(``_expand_back`` reinserts them as size-1 dims when keepdim was False).
"""
from __future__ import annotations

import builtins
from collections import namedtuple

from .. import dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import norm_dim, norm_dims, tensor_method

__all__ = ["sum", "mean", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin",
           "argmax", "argmin", "prod", "logsumexp", "cumsum", "softmax", "log_softmax", "norm",
           "all", "any"]

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand_back(g, shape, axes, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input of ``shape``."""
    if axes is None:
        return g.reshape((1,) * len(shape))
    if keepdim:
        return g
    out = list(g.shape)
    for a in axes:
        out.insert(a, 1)
    return g.reshape(out)


class Sum(Function):
    saves_inputs = False

    def forward(self, x, axes, keepdim, dtype):
        self.shape, self.axes, self.keepdim, self.dtype = x.shape, axes, keepdim, x.dtype
        if axes is None and not keepdim and dtype is None:
            return x.sum()  # numpy's quickest path for the full reduction
        return x.sum(axis=axes, keepdims=keepdim, dtype=dtype)

    def backward(self, g):
        xp = xp_of(g)
        g = _expand_back(g, self.shape, self.axes, self.keepdim).astype(self.dtype, copy=False)
        return xp.broadcast_to(g, self.shape)


class Mean(Function):
    saves_inputs = False

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        n = x.size if axes is None else _count(x.shape, axes)
        self.n = n
        return x.mean(axis=axes, keepdims=keepdim)

    def backward(self, g):
        xp = xp_of(g)
        g = _expand_back(g, self.shape, self.axes, self.keepdim) / self.n
        return xp.broadcast_to(g, self.shape)


def _kept_shape(shape, axes):
    """The shape of a keepdim reduction over ``axes`` (None: all dims)."""
    return tuple(1 if axes is None or i in axes else s for i, s in enumerate(shape))


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Var(Function):
    """var = Σ(x − x̄)² / (N − correction); d var/dx = 2(x − x̄)/(N − correction)."""

    def forward(self, x, axes, correction, keepdim):
        xp = xp_of(x)
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        n = x.size if axes is None else _count(x.shape, axes)
        self.denom = builtins.max(n - correction, 0)
        self.centered = x - x.mean(axis=axes, keepdims=True)
        with_nan = self.denom == 0
        ss = (self.centered * self.centered).sum(axis=axes, keepdims=keepdim)
        return ss / self.denom if not with_nan else ss * xp.nan

    def backward(self, g):
        g = _expand_back(g, self.shape, self.axes, self.keepdim)
        return g * self.centered * (2.0 / self.denom) if self.denom else g * self.centered * 0


class MaxMin(Function):
    """max/min over dims. The gradient goes to the arg element (dim given, like PyTorch's
    max(dim)) or is shared evenly among ties (amax/amin and full reductions)."""

    def forward(self, x, axes, keepdim, mode, with_indices):
        xp = xp_of(x)
        self.x, self.axes, self.keepdim, self.with_indices = x, axes, keepdim, with_indices
        fn = xp.max if mode == "max" else xp.min
        out = fn(x, axis=axes, keepdims=keepdim)
        self.out = out
        if with_indices:
            arg = (xp.argmax if mode == "max" else xp.argmin)(x, axis=axes[0], keepdims=keepdim)
            self.arg = arg
            return out, arg.astype(xp.int64)
        return out

    def backward(self, g, g_idx=None):
        xp = xp_of(g)
        g = _expand_back(g, self.x.shape, self.axes, self.keepdim)
        if self.with_indices:
            arg = self.arg if self.keepdim else xp.expand_dims(self.arg, self.axes[0])
            mask = xp.arange(self.x.shape[self.axes[0]]).reshape(
                [-1 if i == self.axes[0] else 1 for i in range(self.x.ndim)]) == arg
            return g * mask
        out = _expand_back(self.out, self.x.shape, self.axes, self.keepdim)
        mask = self.x == out
        count = mask.sum(axis=self.axes, keepdims=True)
        return g * (mask / count).astype(g.dtype, copy=False)


class Prod(Function):
    """∂/∂x_i Π_j x_j = Π_{j≠i} x_j: exclusive products from both sides (exact with zeros)."""

    def forward(self, x, axis, keepdim):
        self.x, self.axis, self.keepdim = x, axis, keepdim
        return x.prod(axis=axis, keepdims=keepdim)

    def backward(self, g):
        xp = xp_of(g)
        x, ax = self.x, self.axis
        if ax is None:
            flat = x.reshape(-1)
            return (g.reshape(()) * _exclusive_prod(xp, flat, 0)).reshape(x.shape)
        g = _expand_back(g, x.shape, (ax,), self.keepdim)
        return g * _exclusive_prod(xp, x, ax)


def _exclusive_prod(xp, x, ax):
    """Π_{j≠i} x_j along ``ax`` = (product of those before i) · (product of those after i)."""
    x = xp.moveaxis(x, ax, 0)
    left = xp.ones_like(x)
    right = xp.ones_like(x)
    if x.shape[0] > 1:
        left[1:] = xp.cumprod(x[:-1], axis=0)
        right[:-1] = xp.cumprod(x[::-1], axis=0)[:-1][::-1]
    return xp.moveaxis(left * right, 0, ax)


class LogSumExp(Function):
    """log Σ e^{x} = m + log Σ e^{x − m}, m = max x; gradient softmax(x)."""
    saves_output = True

    def forward(self, x, axes, keepdim):
        xp = xp_of(x)
        self.x, self.axes, self.keepdim = x, axes, keepdim
        if x.size == 0:  # log Σ over no terms = log 0 = −inf (the identity, as PyTorch)
            self.out_k = xp.full(_kept_shape(x.shape, axes), -xp.inf, dtype=x.dtype)
            return self.out_k if keepdim else self.out_k.squeeze(axis=axes)
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        e = xp.exp(x - m)
        s = e.sum(axis=axes, keepdims=True)
        out = xp.log(s) + m
        self.out_k = out
        return out if keepdim else out.squeeze(axis=axes)

    def backward(self, g):
        xp = xp_of(g)
        g = _expand_back(g, self.x.shape, self.axes, self.keepdim)
        return g * xp.exp(self.x - self.out_k)


class Cumsum(Function):
    saves_inputs = False

    def forward(self, x, axis):
        self.axis = axis
        # integers and bools accumulate in int64 (PyTorch)
        dtype = x.dtype if x.dtype.kind not in "biu" else dtypes.int64
        return xp_of(x).cumsum(x, axis=axis, dtype=dtype)

    def backward(self, g):
        xp = xp_of(g)
        return xp.flip(xp.cumsum(xp.flip(g, self.axis), axis=self.axis), self.axis)


class Softmax(Function):
    """y = e^{x − max} / Σ e^{x − max}; dx = y (g − Σ g y)."""
    saves_inputs, saves_output = False, True

    def forward(self, x, axis):
        xp = xp_of(x)
        self.axis = axis
        if x.size == 0:  # nothing to normalise (a size-0 dim has no max): empty, as PyTorch
            self.y = x.copy()
            return self.y
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        self.y, self.axis = e, axis
        return e

    def backward(self, g):
        y = self.y
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x − logsumexp(x); dx = g − softmax(x) Σ g."""
    saves_inputs, saves_output = False, True

    def forward(self, x, axis):
        xp = xp_of(x)
        self.axis = axis
        if x.size == 0:  # as Softmax: an empty result
            self.y = x.copy()
            return self.y
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.y, self.axis = y, axis
        return y

    def backward(self, g):
        xp = xp_of(g)
        return g - xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


# ---------------------------------------------------------------------- public functions
def _cast_first(input, dtype):
    """PyTorch's ``dtype=`` of prod / cumsum / softmax / log_softmax: the input is cast to it
    before the op (a differentiable cast: the gradient flows back in the input's dtype)."""
    return input if dtype is None else input.to(dtypes.as_dtype(dtype))


@tensor_method()
def sum(input, dim=None, keepdim=False, dtype=None):
    axes = norm_dims(dim, input.ndim, "sum")
    if dtype is None and input.data.dtype.kind in "biu":
        dtype = dtypes.int64  # PyTorch sums integers and bools in int64
    return Sum.apply(input, axes, keepdim, dtypes.as_dtype(dtype) if dtype is not None else None)


@tensor_method()
def mean(input, dim=None, keepdim=False):
    if not dtypes.is_floating(input.data.dtype):
        raise TypeError(f"mean: expected a floating point tensor, got dtype {input.dtype}; "
                        "convert with .float() first")
    return Mean.apply(input, norm_dims(dim, input.ndim, "mean"), keepdim)


def _var_args(op, dim, unbiased, correction):
    """(dim, correction) from PyTorch's overloads: var(x, unbiased) with a bool in the dim
    slot, var(x, dim, unbiased, keepdim), and correction= (unbiased: correction 1)."""
    if isinstance(dim, bool):   # var(x, False): the legacy (input, unbiased) overload
        if unbiased is not None:
            raise TypeError(f"{op}: got a bool dim ({dim}, read as unbiased) and unbiased="
                            f"{unbiased}; pass dim=None, unbiased=...")
        dim, unbiased = None, dim
    if unbiased is not None and not isinstance(unbiased, bool):
        raise TypeError(f"{op}: unbiased must be a bool, got {unbiased!r}")
    if correction is not None:
        if unbiased is not None:
            raise RuntimeError(f"{op}: give only one of unbiased and correction")
        return dim, correction
    return dim, (0 if unbiased is False else 1)


@tensor_method()
def var(input, dim=None, unbiased=None, keepdim=False, correction=None):
    """Variance Σ(x − x̄)² / (N − correction): unbiased (correction 1) by default,
    ``unbiased=False`` or ``correction=0`` for N; ``var(x, False)`` is PyTorch's
    (input, unbiased) form."""
    dim, c = _var_args("var", dim, unbiased, correction)
    return Var.apply(input, norm_dims(dim, input.ndim, "var"), c, keepdim)


class _StdOfVar(Function):
    """σ = √v for a variance v; dσ/dv = 1/(2σ), taken as 0 where σ = 0 (PyTorch's choice:
    there every x_i equals the mean, so dv/dx = 2(x − x̄)/(N − c) is 0 too, and sqrt's own
    backward would give 0 · ∞ = nan)."""
    saves_output = True

    def forward(self, v):
        self.out = xp_of(v).sqrt(v)
        return self.out

    def backward(self, g):
        xp = xp_of(g)
        out = self.out
        return xp.where(out == 0, 0, g / (2 * xp.where(out == 0, 1, out))).astype(out.dtype,
                                                                                  copy=False)


@tensor_method()
def std(input, dim=None, unbiased=None, keepdim=False, correction=None):
    """Standard deviation √var (``var``'s arguments); its gradient is 0 where it is 0."""
    dim, c = _var_args("std", dim, unbiased, correction)
    return _StdOfVar.apply(var(input, dim, None, keepdim, c))


def var_mean(input, dim=None, unbiased=None, keepdim=False, correction=None):
    dim, c = _var_args("var_mean", dim, unbiased, correction)
    return var(input, dim, None, keepdim, c), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, correction=None):
    dim, c = _var_args("std_mean", dim, unbiased, correction)
    return std(input, dim, None, keepdim, c), mean(input, dim, keepdim)


def _maxmin(input, dim, keepdim, mode):
    if isinstance(dim, Tensor):  # max(a, b) elementwise, as in PyTorch
        from .elementwise import maximum, minimum
        return (maximum if mode == "max" else minimum)(input, dim)
    if dim is None:
        if input.data.size == 0:
            raise RuntimeError(f"{mode}: reduction of an empty tensor has no identity; give a "
                               "dim of non-zero size")
        return MaxMin.apply(input, None, False, mode, False)
    axis = norm_dim(dim, input.ndim, mode)
    if input.ndim and input.shape[axis] == 0:
        raise RuntimeError(f"{mode}: reduction over dim {axis} of size 0 (shape "
                           f"{tuple(input.shape)}) has no identity")
    if input.ndim == 0:  # dim 0 / -1 of a 0-d tensor: the value itself at index 0
        values, indices = MaxMin.apply(input.reshape(1), (0,), False, mode, True)
        return values_indices(values, indices)
    values, indices = MaxMin.apply(input, (axis,), keepdim, mode, True)
    return values_indices(values, indices)


@tensor_method()
def max(input, dim=None, keepdim=False):
    """max(x) → value; max(x, dim) → (values, indices); max(x, other) → elementwise."""
    return _maxmin(input, dim, keepdim, "max")


@tensor_method()
def min(input, dim=None, keepdim=False):
    return _maxmin(input, dim, keepdim, "min")


def _check_nonempty(input, axes, op):
    if input.data.size == 0 and (axes is None or builtins.any(input.shape[a] == 0 for a in axes)):
        raise RuntimeError(f"{op}: reduction over an empty dimension of shape "
                           f"{tuple(input.shape)} has no identity")


@tensor_method()
def amax(input, dim=None, keepdim=False):
    axes = norm_dims(dim, input.ndim, "amax")
    _check_nonempty(input, axes, "amax")
    return MaxMin.apply(input, axes, keepdim, "max", False)


@tensor_method()
def amin(input, dim=None, keepdim=False):
    axes = norm_dims(dim, input.ndim, "amin")
    _check_nonempty(input, axes, "amin")
    return MaxMin.apply(input, axes, keepdim, "min", False)


class _Arg(Function):
    differentiable = False

    def forward(self, x, axis, keepdim, fn):
        xp = xp_of(x)
        if axis is None:
            return getattr(xp, fn)(x).astype(xp.int64)
        return getattr(xp, fn)(x, axis=axis, keepdims=keepdim).astype(xp.int64)


def _check_arg_nonempty(input, axis, op):
    if input.data.size == 0 and (axis is None or input.shape[axis] == 0):
        raise RuntimeError(f"{op}: reduction over an empty dimension of shape "
                           f"{tuple(input.shape)} has no identity")


@tensor_method()
def argmax(input, dim=None, keepdim=False):
    axis = None if dim is None else norm_dim(dim, input.ndim, "argmax")
    _check_arg_nonempty(input, axis if input.ndim else None, "argmax")
    return _Arg.apply(input, axis, keepdim, "argmax")


@tensor_method()
def argmin(input, dim=None, keepdim=False):
    axis = None if dim is None else norm_dim(dim, input.ndim, "argmin")
    _check_arg_nonempty(input, axis if input.ndim else None, "argmin")
    return _Arg.apply(input, axis, keepdim, "argmin")


@tensor_method()
def prod(input, dim=None, keepdim=False, dtype=None):
    input = _cast_first(input, dtype)
    axis = None if dim is None else norm_dim(dim, input.ndim, "prod")
    if input.ndim == 0:
        axis = None  # a 0-d tensor accepts dim 0 / -1 and has nothing to reduce
    return Prod.apply(input, axis, keepdim)


@tensor_method()
def logsumexp(input, dim, keepdim=False):
    return LogSumExp.apply(input, norm_dims(dim, input.ndim, "logsumexp"), keepdim)


@tensor_method()
def cumsum(input, dim, dtype=None):
    input = _cast_first(input, dtype)
    axis = norm_dim(dim, input.ndim, "cumsum")
    if input.ndim == 0:
        return Cumsum.apply(input.reshape(1), 0).reshape(())
    return Cumsum.apply(input, axis)


@tensor_method()
def softmax(input, dim, dtype=None):
    input = _cast_first(input, dtype)
    return Softmax.apply(input, norm_dim(dim, input.ndim, "softmax"))


@tensor_method()
def log_softmax(input, dim, dtype=None):
    input = _cast_first(input, dtype)
    return LogSoftmax.apply(input, norm_dim(dim, input.ndim, "log_softmax"))


class NuclearNorm(Function):
    """‖A‖_* = Σ σ_i(A) over the last two dims; d‖A‖_*/dA = U Vᵀ (A = U diag(σ) Vᵀ, the
    reduced SVD; the subgradient with the zero singular values' terms left out, as PyTorch)."""
    saves_inputs = False

    def forward(self, a):
        xp = xp_of(a)
        u, s, vh = xp.linalg.svd(a, full_matrices=False)
        self.uvh = u @ vh
        return s.sum(axis=-1)

    def backward(self, g):
        return g[..., None, None] * self.uvh


def _nuclear_norm(input, dim, keepdim):
    if dim is None:
        if input.ndim != 2:
            raise RuntimeError(f"norm: p='nuc' needs a 2-D input or a dim of two dims, got "
                               f"shape {tuple(input.shape)}")
        dim = (0, 1)
    dims = norm_dims(dim, input.ndim, "norm") if isinstance(dim, (list, tuple)) else None
    if dims is None or len(dims) != 2:
        raise RuntimeError(f"norm: p='nuc' needs dim to name two dims, got {dim!r}")
    if not dtypes.is_floating(input.data.dtype):
        raise TypeError(f"norm: expected a floating point tensor, got dtype {input.dtype}")
    from .shape import movedim
    out = NuclearNorm.apply(movedim(input, list(dims), [-2, -1]))
    if keepdim:
        out = out.unsqueeze(dims[0]).unsqueeze(dims[1])
    return out


class _PNorm(Function):
    """‖x‖_p = (Σ|x_i|^p)^{1/p} over ``axes`` for a finite p ∉ {0, 1};
    d‖x‖_p/dx_i = sign(x_i) |x_i|^{p−1} / ‖x‖_p^{p−1}, taken as 0 where ‖x‖_p = 0 (PyTorch's
    choice at the kink: the composition through pow and sqrt would give 0 · ∞ = nan there)."""
    saves_output = True

    def forward(self, x, axes, keepdim, p):
        xp = xp_of(x)
        self.x, self.axes, self.keepdim, self.p = x, axes, keepdim, p
        ax = xp.abs(x)
        s = (x * x if p == 2 else ax ** p).sum(axis=axes, keepdims=keepdim)
        self.out = xp.sqrt(s) if p == 2 else s ** (1.0 / p)
        return self.out

    def backward(self, g):
        xp = xp_of(g)
        x, p = self.x, self.p
        n = _expand_back(self.out, x.shape, self.axes, self.keepdim)
        g = _expand_back(g, x.shape, self.axes, self.keepdim)
        safe = xp.where(n == 0, 1, n)
        if p == 2:
            d = x / safe
        else:
            d = xp.sign(x) * (xp.abs(x) / safe) ** (p - 1)
        return xp.where(n == 0, 0, g * d).astype(x.dtype, copy=False)


class _CountNonzero(Function):
    """‖x‖₀ = #{i : x_i ≠ 0} in x's dtype; piecewise constant, so its gradient is zero."""
    saves_inputs = False

    def forward(self, x, axes, keepdim):
        self.shape = x.shape
        return (x != 0).sum(axis=axes, keepdims=keepdim).astype(x.dtype)

    def backward(self, g):
        return xp_of(g).zeros(self.shape, dtype=g.dtype)


@tensor_method()
def norm(input, p="fro", dim=None, keepdim=False):
    """torch.norm: the vector p-norm (Σ|x|ᵖ)^{1/p} over ``dim`` (all elements by default);
    p = inf: max |x|, p = −inf: min |x|, p = 0: the number of non-zeros. p = 'fro': the 2-norm
    over ``dim`` (the Frobenius norm of a matrix); p = 'nuc': the nuclear norm Σ σ_i of the
    matrices in the two dims ``dim`` (a 2-D input when dim is None)."""
    if isinstance(p, str):
        if p == "fro":
            p = 2
        elif p == "nuc":
            return _nuclear_norm(input, dim, keepdim)
        else:
            raise ValueError(f"norm: p must be a number, 'fro' or 'nuc', got {p!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"norm: p must be a number, 'fro' or 'nuc', got {p!r}")
    if not dtypes.is_floating(input.data.dtype):
        raise TypeError(f"norm: expected a floating point tensor, got dtype {input.dtype}")
    if p == 1:
        return input.abs().sum(dim, keepdim)
    if p == float("inf"):
        return input.abs().amax(dim, keepdim)
    if p == float("-inf"):
        return input.abs().amin(dim, keepdim)
    if p == 0:
        return _CountNonzero.apply(input, norm_dims(dim, input.ndim, "norm"), keepdim)
    return _PNorm.apply(input, norm_dims(dim, input.ndim, "norm"), keepdim, p)


class _Truth(Function):
    differentiable = False

    def forward(self, x, axes, keepdim, fn):
        return getattr(x.astype(bool), fn)(axis=axes, keepdims=keepdim)


@tensor_method()
def all(input, dim=None, keepdim=False):
    return _Truth.apply(input, norm_dims(dim, input.ndim, "all"), keepdim, "all")


@tensor_method()
def any(input, dim=None, keepdim=False):
    return _Truth.apply(input, norm_dims(dim, input.ndim, "any"), keepdim, "any")
