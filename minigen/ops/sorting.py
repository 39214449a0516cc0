"""Ordering and sampling: sort, argsort, topk, searchsorted, unique, cumprod, logcumsumexp,
multinomial, bernoulli (PyTorch's names, signatures and tie/NaN rules).

Written against the array module ``xp`` (numpy or CuPy). Gradients: sort and topk send the
upstream gradient back to the positions the values came from; cumprod and logcumsumexp have
their own backward (below). Random ops take ``generator=`` (``minigen.random``).
"""
from __future__ import annotations

import builtins
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..autograd.grad_mode import value_checks
from ..backend import array_module, xp_of
from ..random import seed_for
from ..tensor import Tensor
from ._util import norm_dim, tensor_method

__all__ = ["sort", "argsort", "msort", "topk", "searchsorted", "bucketize", "unique",
           "cumprod", "logcumsumexp", "multinomial", "bernoulli"]

sort_result = namedtuple("sort", ["values", "indices"])
topk_result = namedtuple("topk", ["values", "indices"])


def _put_along(xp, out, idx, vals, axis):
    """out[..., idx[..., j, ...], ...] = vals along ``axis`` (distinct indices per line)."""
    grids = list(xp.ogrid[tuple(slice(0, s) for s in idx.shape)])
    grids[axis] = idx
    out[tuple(grids)] = vals
    return out


def _argsort(xp, x, axis, descending):
    """A stable argsort (ties keep their order, NaN counts as the largest, as PyTorch).
    Descending = the reversed ascending sort of the reversed line: n − 1 − flip(argsort(flip x)),
    which keeps ties in their original order and puts NaN first."""
    if not descending:
        return xp.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    return (n - 1) - xp.flip(xp.argsort(xp.flip(x, axis), axis=axis, kind="stable"), axis)


class Sort(Function):
    """values = take_along(x, idx); backward scatters g back through the permutation."""
    saves_inputs = False

    def forward(self, x, axis, descending):
        xp = xp_of(x)
        idx = _argsort(xp, x, axis, descending)
        self.idx, self.axis, self.shape = idx, axis, x.shape
        return xp.take_along_axis(x, idx, axis=axis), idx.astype(xp.int64, copy=False)

    def backward(self, g, _gi=None):
        xp = xp_of(g)
        return _put_along(xp, xp.zeros(self.shape, dtype=g.dtype), self.idx, g, self.axis)


class TopK(Function):
    """The k largest (smallest) along an axis: argpartition (O(n)) picks them, a sort of the k
    orders them; backward puts g at the chosen positions, 0 elsewhere."""
    saves_inputs = False

    def forward(self, x, k, axis, largest, sort):
        xp = xp_of(x)
        n = x.shape[axis]
        if k == 0:
            idx = xp.zeros(x.shape[:axis] + (0,) + x.shape[axis + 1:], dtype=xp.int64)
        elif k == n:
            idx = _argsort(xp, x, axis, largest) if sort else \
                xp.broadcast_to(xp.arange(n).reshape((n,) + (1,) * (x.ndim - axis - 1)),
                                x.shape).copy()
        elif sort and n <= 32:      # short lines: one argsort beats partition + sort + gathers
            idx = xp.take(_argsort(xp, x, axis, largest), xp.arange(k), axis=axis)
        elif largest:   # NaN sorts last in argpartition: the top k include the NaNs first
            idx = xp.take(xp.argpartition(x, n - k, axis=axis), xp.arange(n - k, n), axis=axis)
        else:
            idx = xp.take(xp.argpartition(x, k - 1, axis=axis), xp.arange(k), axis=axis)
        vals = xp.take_along_axis(x, idx, axis=axis)
        if sort and 0 < k < n and n > 32:
            order = _argsort(xp, vals, axis, largest)
            idx = xp.take_along_axis(idx, order, axis=axis)
            vals = xp.take_along_axis(vals, order, axis=axis)
        self.idx, self.axis, self.shape = idx, axis, x.shape
        return vals, idx.astype(xp.int64, copy=False)

    def backward(self, g, _gi=None):
        xp = xp_of(g)
        return _put_along(xp, xp.zeros(self.shape, dtype=g.dtype), self.idx, g, self.axis)


@tensor_method()
def sort(input, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along ``dim``. Always stable (``stable`` is accepted for
    PyTorch's signature); NaN sorts as the largest value."""
    axis = norm_dim(dim, input.ndim, "sort")
    if input.ndim == 0:
        v, i = Sort.apply(input.reshape(1), 0, builtins.bool(descending))
        return sort_result(v.reshape(()), i.reshape(()))
    return sort_result(*Sort.apply(input, axis, builtins.bool(descending)))


@tensor_method()
def argsort(input, dim=-1, descending=False, stable=False):
    """The indices that sort ``input`` along ``dim`` (stable)."""
    return sort(input, dim, descending, stable).indices


@tensor_method()
def msort(input):
    return sort(input, 0).values


@tensor_method()
def topk(input, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (``largest=False``: smallest) along ``dim``,
    ordered when ``sorted`` (else in no particular order). NaN counts as the largest."""
    axis = norm_dim(dim, input.ndim, "topk")
    n = input.shape[axis] if input.ndim else 1
    if isinstance(k, builtins.bool) or not isinstance(k, (builtins.int, np.integer)):
        raise TypeError(f"topk: k must be an int, got {type(k).__name__}")
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for a dimension of size {n}")
    if input.ndim == 0:
        v, i = TopK.apply(input.reshape(1), int(k), 0, builtins.bool(largest),
                          builtins.bool(sorted))
        return topk_result(v.reshape(()) if k else v.reshape(0),
                           i.reshape(()) if k else i.reshape(0))
    return topk_result(*TopK.apply(input, int(k), axis, builtins.bool(largest),
                                   builtins.bool(sorted)))


# ---------------------------------------------------------------------- searchsorted, unique
class _SearchSorted(Function):
    differentiable = False

    def forward(self, seq, values, side, out_dtype):
        xp = xp_of(seq)
        if seq.ndim == 1:
            return xp.searchsorted(seq, values, side=side).astype(out_dtype, copy=False)
        # batched: each line of seq against the same line of values. Merge the two lines
        # with one stable argsort: for side="left" values go before equal sequence entries
        # ([values, seq]), for "right" after ([seq, values]); a value's answer is its merged
        # position minus the values merged before it.
        m, n = values.shape[-1], seq.shape[-1]
        left = side == "left"
        both = xp.concatenate([values, seq] if left else [seq, values], axis=-1)
        perm = xp.argsort(both, axis=-1, kind="stable")
        is_val = (perm < m) if left else (perm >= n)
        vals_before = xp.cumsum(is_val, axis=-1) - is_val
        pos = xp.broadcast_to(xp.arange(m + n), perm.shape)
        seq_before = pos - vals_before
        # the value that sits at merged position p is value number vals_before[p] in sorted
        # order of the values (stable), i.e. values index perm[p] (− n for "right")
        out = xp.zeros(values.shape, dtype=xp.int64)
        src = xp.where(is_val, perm - (0 if left else n), 0)
        lines = xp.broadcast_to(xp.arange(perm.shape[0]).reshape(-1, 1), perm.shape)
        out[lines[is_val], src[is_val]] = seq_before[is_val]
        return out.astype(out_dtype, copy=False)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None,
                 sorter=None):
    """Indices where ``input``'s values would be inserted into ``sorted_sequence`` (last dim)
    to keep it sorted: the first such index (side "left"), or the last ("right")."""
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise RuntimeError("searchsorted: side='left' and right=True contradict each other")
        right = side == "right"
    seq = sorted_sequence
    if not isinstance(seq, Tensor):
        raise TypeError("searchsorted: sorted_sequence must be a Tensor")
    if seq.ndim == 0:
        raise RuntimeError("searchsorted: sorted_sequence must have at least one dimension")
    xp = array_module(seq.device)
    scalar = not isinstance(input, Tensor)
    vals = input if not scalar else Tensor._wrap(xp.asarray(input), seq.device)
    if sorter is not None:
        seq = Tensor._wrap(xp.take_along_axis(seq.data, sorter.data, axis=-1), seq.device)
    if seq.data.dtype != vals.data.dtype:
        dt = dtypes.promote(seq.data.dtype, vals.data.dtype)
        seq, vals = seq.to(dt), vals.to(dt)
    out_dtype = dtypes.int32 if out_int32 else dtypes.int64
    side_s = "right" if right else "left"
    if seq.ndim == 1:
        return _SearchSorted.apply(seq, vals, side_s, out_dtype)
    if scalar or vals.shape[:-1] != seq.shape[:-1]:
        raise RuntimeError(f"searchsorted: boundaries of shape {tuple(seq.shape)} need values "
                           f"with the same leading dims, got {tuple(vals.shape)}")
    lead = seq.shape[:-1]
    rows = int(np.prod(lead))  # not -1: a 0-element (0, 0) input has no inferable size
    out = _SearchSorted.apply(seq.reshape(rows, seq.shape[-1]),
                              vals.reshape(rows, vals.shape[-1]), side_s, out_dtype)
    return out.reshape(*lead, vals.shape[-1])


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """searchsorted with the arguments swapped (1-D boundaries)."""
    if boundaries.ndim != 1:
        raise RuntimeError("bucketize: boundaries must be 1-D")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


class _Unique(Function):
    differentiable = False

    def forward(self, x, axis):
        xp = xp_of(x)
        if axis is None:
            flat = x.reshape(-1)
            perm = xp.argsort(flat, kind="stable")
            s = flat[perm]
            new = xp.ones(s.shape, dtype=bool)
            new[1:] = s[1:] != s[:-1]
            keys = s[new]
        else:
            rest = list(x.shape)
            del rest[axis]
            # explicit sizes, not -1: an input with a zero-size dim has no inferable one
            lines = xp.moveaxis(x, axis, 0).reshape(x.shape[axis], int(np.prod(rest)))
            # lexicographic order of the slices: lexsort's last key is the primary one
            perm = xp.lexsort(lines.T[::-1]) if lines.shape[1] else xp.arange(lines.shape[0])
            s = lines[perm]
            new = xp.ones(s.shape[0], dtype=bool)
            if s.shape[0] > 1:
                new[1:] = (s[1:] != s[:-1]).any(axis=1)
            keys = xp.moveaxis(s[new].reshape((int(new.sum()),) + tuple(rest)), 0, axis)
        group = xp.cumsum(new) - 1
        inverse = xp.empty(perm.shape, dtype=xp.int64)
        inverse[perm] = group
        counts = xp.bincount(group, minlength=int(keys.shape[0] if axis is None
                                                    else keys.shape[axis])) \
            if group.size else xp.zeros(0, dtype=xp.int64)
        return keys, inverse, counts.astype(xp.int64, copy=False)


@tensor_method()
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values (``dim``: distinct slices along dim), sorted; with
    ``return_inverse`` the index of each input element (slice) in the output, with
    ``return_counts`` how often each occurs. NaNs compare unequal (each is its own value)."""
    axis = None if dim is None else norm_dim(dim, input.ndim, "unique")
    keys, inverse, counts = _Unique.apply(input, axis)
    if axis is None:
        inverse = inverse.reshape(input.shape)
    out = [keys]
    if return_inverse:
        out.append(inverse)
    if return_counts:
        out.append(counts)
    return out[0] if len(out) == 1 else tuple(out)


# ---------------------------------------------------------------------- cumulative ops
def _rev_cumsum(xp, a, axis):
    return xp.flip(xp.cumsum(xp.flip(a, axis), axis=axis), axis)


class Cumprod(Function):
    """y_j = Π_{k≤j} x_k; ∂L/∂x_i = Σ_{j≥i} g_j Π_{k≤j, k≠i} x_k, exact with zeros:
      before the first zero of the line   Σ_{j≥i} g_j y_j / x_i  (y_j = 0 past the zero);
      at the first zero z                 Σ_{j≥z} g_j cumprod(x with x_z := 1)_j;
      after it                            0 (every product keeps the factor x_z = 0)."""
    saves_output = True

    def forward(self, x, axis, dtype):
        xp = xp_of(x)
        self.x, self.axis = x, axis
        self.out = xp.cumprod(x, axis=axis, dtype=dtype)
        return self.out

    def backward(self, g):
        xp = xp_of(g)
        x, ax, y = self.x, self.axis, self.out
        zero = x == 0
        nz = xp.cumsum(zero, axis=ax)
        before = nz == 0
        first = zero & (nz == 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gb = xp.where(before, _rev_cumsum(xp, g * y, ax) / xp.where(before, x, 1), 0)
        if xp is np and not first.any():     # no zero anywhere (not checked on a device)
            return gb
        y1 = xp.cumprod(xp.where(first, 1, x), axis=ax)
        gz = _rev_cumsum(xp, xp.where(nz >= 1, g * y1, 0), ax)
        return xp.where(first, gz, gb).astype(g.dtype, copy=False)


@tensor_method()
def cumprod(input, dim, dtype=None):
    """Running products along ``dim`` (integers and bools accumulate in int64)."""
    axis = norm_dim(dim, input.ndim, "cumprod")
    if dtype is not None:
        input = input.to(dtype)
    elif input.data.dtype.kind in "biu":
        input = input.to(dtypes.int64)
    if input.ndim == 0:
        return Cumprod.apply(input.reshape(1), 0, None).reshape(())
    return Cumprod.apply(input, axis, None)


def _logcumsumexp(xp, x, axis):
    """log Σ_{k≤j} e^{x_k}, each step a logaddexp (never exp of a large number): numpy's
    sequential logaddexp.accumulate; elsewhere a Hillis–Steele scan, ⌈log₂ n⌉ passes of
    out[s:] = logaddexp(out[s:], out[:-s]) with s = 1, 2, 4, …"""
    if xp is np:
        return np.logaddexp.accumulate(x, axis=axis)
    out = x
    n, s = x.shape[axis], 1
    while s < n:
        head = xp.take(out, xp.arange(s), axis=axis)
        tail = xp.logaddexp(xp.take(out, xp.arange(s, n), axis=axis),
                            xp.take(out, xp.arange(0, n - s), axis=axis))
        out = xp.concatenate([head, tail], axis=axis)
        s *= 2
    return out


class LogCumSumExp(Function):
    """y_j = log Σ_{k≤j} e^{x_k}; ∂L/∂x_i = Σ_{j≥i} g_j e^{x_i − y_j}. Stable (PyTorch's
    scheme): split g = g⁺ − g⁻ and sum in logs,
      ∂L/∂x_i = e^{x_i + R(log g⁺ − y)_i} − e^{x_i + R(log g⁻ − y)_i},
    R the reversed logcumsumexp; every exponent stays ≤ log Σ|g|."""
    saves_output = True

    def forward(self, x, axis):
        self.x, self.axis = x, axis
        self.out = _logcumsumexp(xp_of(x), x, axis)
        return self.out

    def backward(self, g):
        xp = xp_of(g)
        x, y, ax = self.x, self.out, self.axis
        finite = xp.isfinite(y)
        y = xp.where(finite, y, 0)

        def part(w):
            with np.errstate(divide="ignore"):
                lw = xp.where((w > 0) & finite, xp.log(xp.where(w > 0, w, 1)) - y, -np.inf)
            r = xp.flip(_logcumsumexp(xp, xp.flip(lw, ax), ax), ax)
            with np.errstate(invalid="ignore"):
                return xp.where(xp.isneginf(x) | xp.isneginf(r), 0, xp.exp(x + r))

        return (part(g) - part(-g)).astype(g.dtype, copy=False)


@tensor_method()
def logcumsumexp(input, dim):
    axis = norm_dim(dim, input.ndim, "logcumsumexp")
    if not dtypes.is_floating(input.data.dtype):
        input = input.to(dtypes.get_default_dtype())
    if input.ndim == 0:
        return input.clone()
    return LogCumSumExp.apply(input, axis)


# ---------------------------------------------------------------------- sampling
def _check_probs(op, input):
    if not dtypes.is_floating(input.data.dtype):
        raise TypeError(f"{op}: expected a floating point tensor of probabilities, got "
                        f"{input.data.dtype}")
    if input.ndim not in (1, 2):
        raise RuntimeError(f"{op}: probabilities must be 1-D or 2-D, got {input.ndim}-D")
    if input.shape[-1] == 0:
        raise RuntimeError(f"{op}: the number of categories must be positive")
    if value_checks(input.device):
        w = input.data
        xp = xp_of(w)
        if not bool(xp.isfinite(w).all()) or bool((w < 0).any()):
            raise RuntimeError(f"{op}: probability tensor contains either inf, nan or element "
                               "< 0")
        if bool((w.sum(axis=-1) <= 0).any()):
            raise RuntimeError(f"{op}: invalid multinomial distribution (sum of probabilities "
                               "<= 0)")


@tensor_method()
def multinomial(input, num_samples, replacement=False, *, generator=None):
    """``num_samples`` category indices per row of the (unnormalised) weights ``input``
    (1-D: one distribution, 2-D: one per row). With replacement: inverse-CDF sampling (one
    uniform per draw, a binary search in the row's CDF). Without: the exponential race, keys
    E/w_i with E ~ Exp(1), the num_samples smallest in order: the same law as drawing one at
    a time and renormalising (the Gumbel-top-k trick)."""
    _check_probs("multinomial", input)
    if isinstance(num_samples, builtins.bool) or not isinstance(num_samples, (builtins.int,
                                                                              np.integer)):
        raise TypeError("multinomial: num_samples must be an int")
    k = input.shape[-1]
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: num_samples must be positive, got {num_samples}")
    if not replacement:
        if num_samples > k:
            raise RuntimeError(f"multinomial: cannot sample {num_samples} > {k} categories "
                               "without replacement")
        if value_checks(input.device) and \
                bool(((input.data > 0).sum(axis=-1) < num_samples).any()):
            raise RuntimeError("multinomial: invalid multinomial distribution (with "
                               "replacement=False, not enough non-negative category to "
                               "sample)")
    rng = seed_for(input.device, generator)
    xp = array_module(input.device)
    w = input.data.astype(np.float64).reshape(-1, k)
    rows = w.shape[0]
    if replacement:
        # per-row CDF in [0, 1] (c/c[-1] makes the last entry exactly 1), rows shifted by 2r
        # so that one flat searchsorted serves every row: row r's entries lie in [2r, 2r + 1]
        # and a draw u + 2r < 2r + 1 never reaches the next row. side="right": a category of
        # weight 0 has an empty interval [c_{j−1}, c_j) and is never drawn.
        c = xp.cumsum(w, axis=1)
        c = c / c[:, -1:]
        off = 2.0 * xp.arange(rows, dtype=np.float64).reshape(-1, 1)
        u = rng.random((rows, num_samples)) + off
        idx = xp.searchsorted((c + off).reshape(-1), u.reshape(-1), side="right")
        idx = idx.reshape(rows, num_samples) - k * xp.arange(rows).reshape(-1, 1)
        # u rounded up onto 2r + 1 (probability ~1e-16) lands past the row: take its last
        # category of positive weight, which is what the top of [0, 1) belongs to
        last = (k - 1) - xp.argmax(xp.flip(w > 0, 1), axis=1).reshape(-1, 1)
        idx = xp.where(idx >= k, last, idx)
    else:
        e = rng.standard_exponential((rows, k))
        with np.errstate(divide="ignore"):
            keys = xp.where(w > 0, e / xp.where(w > 0, w, 1), np.inf)
        idx = xp.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    idx = idx.astype(np.int64, copy=False)
    if input.ndim == 1:
        idx = idx.reshape(num_samples)
    return Tensor._wrap(idx, input.device)


@tensor_method()
def bernoulli(input, p=None, *, generator=None):
    """0/1 draws, 1 with probability ``input`` (or the float ``p`` for every element, with
    input giving the shape), in input's dtype: u < p for u ~ U[0, 1)."""
    if p is None:
        if not dtypes.is_floating(input.data.dtype):
            raise TypeError(f"bernoulli: expected a floating point tensor of probabilities, "
                            f"got {input.data.dtype}")
        probs = input.data
        if probs.size and value_checks(input.device) and \
                not bool(((probs >= 0) & (probs <= 1)).all()):
            raise RuntimeError("bernoulli: expected all probabilities in [0, 1]")
    else:
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli: p must be in [0, 1], got {p}")
        probs = p
    rng = seed_for(input.device, generator)
    u = rng.random(input.shape)
    out = (u < probs).astype(input.data.dtype)
    return Tensor._wrap(out, input.device)
