"""Normalisation layers as fused primitives: layer_norm, group_norm, batch_norm.

All three standardise x over a group of M elements and then apply a per-feature affine map:

    μ = mean(x),  σ² = mean((x − μ)²)  (biased),  r = 1/√(σ² + eps),
    x̂ = (x − μ) r,                      y = w ⊙ x̂ + b.

They differ only in the group: the trailing ``normalized_shape`` dims (layer_norm), the
channels of a group and all spatial positions of one sample (group_norm), one channel over the
batch and all spatial positions (batch_norm). One backward serves all three; with ĝ = g ⊙ w,

    dx = r (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)),   dw = Σ g ⊙ x̂,   db = Σ g,

means over the group, sums over everything that shares one weight. In batch_norm's evaluation
mode μ and σ² are constants (the running statistics), so dx = r ĝ.

Half-precision inputs are normalised in float32 and the result cast back.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _native, dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import require_float

__all__ = ["layer_norm", "group_norm", "batch_norm"]


def _compute_dtype(dt):
    return dtypes.float32 if dt.itemsize < 4 else dt


def _standardise(x, axes, eps):
    """(x̂, r) with the statistics taken over ``axes`` (kept as size-1 dims)."""
    xp = xp_of(x)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    r = 1.0 / xp.sqrt(var + eps)
    return xc * r, r, mu, var


def _norm_grad(gh, xh, r, axes):
    """r (ĝ − mean ĝ − x̂ mean(ĝ x̂)), the means over ``axes``."""
    return r * (gh - gh.mean(axis=axes, keepdims=True)
                - xh * (gh * xh).mean(axis=axes, keepdims=True))


class LayerNorm(Function):
    """y = w ⊙ (x − μ)/√(σ² + eps) + b, μ and σ² over the trailing k dims (w, b of those dims).

    dx = r (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)) with ĝ = g w;  dw = Σ_lead g x̂;  db = Σ_lead g.
    """
    saves_inputs = (1,)

    def forward(self, x, w, b, k, eps):
        ct = _compute_dtype(x.dtype)
        self.axes = tuple(range(x.ndim - k, x.ndim))
        self.lead = tuple(range(x.ndim - k))
        xh, r, _, _ = _standardise(x.astype(ct, copy=False), self.axes, eps)
        self.xh, self.r, self.w, self.dtype = xh, r, w, x.dtype
        y = xh if w is None else xh * w
        if b is not None:
            y = y + b
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        n = self.needs_input_grad
        g = g.astype(self.xh.dtype, copy=False)
        gx = gw = gb = None
        if n[0]:
            gh = g if self.w is None else g * self.w
            gx = _norm_grad(gh, self.xh, self.r, self.axes).astype(self.dtype, copy=False)
        if len(n) > 1 and n[1]:
            gw = (g * self.xh).sum(axis=self.lead).astype(self.w.dtype, copy=False)
        if len(n) > 2 and n[2]:
            gb = g.sum(axis=self.lead).astype(self.dtype, copy=False)
        return gx, gw, gb


def _native_ok(x):
    """The C++ kernels take numpy float32/float64 arrays (MINIGEN_DISABLE_NATIVE: never)."""
    return (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
            and _native.available())


def native_module():
    return _native.module()


def _contig(a):
    return None if a is None else np.ascontiguousarray(a)


def _channel_shape(ndim):
    """Shape that broadcasts a (C,) vector along dim 1 of an ndim-D (N, C, *) array."""
    return (1, -1) + (1,) * (ndim - 2)


class GroupNorm(Function):
    """x of shape (N, C, *) split into G groups of C/G channels; each (sample, group) is
    standardised over its channels and positions, then y = w_c x̂ + b_c per channel c.

    dx: the normalisation backward within each (sample, group); dw_c = Σ_{n,*} g x̂,
    db_c = Σ_{n,*} g.

    With ``silu=True`` the primitive is y = silu(z), z the group-normalised output above
    (``group_norm_silu``): backward first takes g_z = g σ(z)(1 + z(1 − σ(z))), then the same
    formulas with g_z for g.

    On CPU float32/float64 with minigen._C the C++ kernels of csrc/normalization.cpp run (one
    pass for the statistics, one for the output; z recomputed in backward); otherwise the numpy
    code below, which is the reference the tests hold the kernels to.
    """
    saves_inputs = (0, 1, 2)  # the C++ backward re-reads x and w (and b to recompute z)

    def forward(self, x, w, b, groups, eps, silu=False):
        self.shape, self.dtype, self.silu = x.shape, x.dtype, silu
        # an empty batch (N = 0) has nothing to normalise: numpy's path gives the empty output
        # and zero weight/bias gradients (PyTorch's); sizes are explicit, -1 is ambiguous at 0
        self.native = _native_ok(x) and x.size > 0
        m = math.prod(x.shape[2:])
        if self.native:
            x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], m)
            self.x3, self.w, self.b, self.groups = x3, w, b, groups
            y, self.mean, self.rstd = native_module().group_norm_forward(
                x3, _contig(w), _contig(b), groups, float(eps), silu)
            return y.reshape(x.shape)
        ct = _compute_dtype(x.dtype)
        xg = x.astype(ct, copy=False).reshape(x.shape[0], groups, x.shape[1] // groups * m)
        xh, r, _, _ = _standardise(xg, (2,), eps)
        self.xh, self.r, self.w = xh, r, w
        cs = _channel_shape(x.ndim)
        y = xh.reshape(x.shape)
        if w is not None:
            y = y * w.reshape(cs)
        if b is not None:
            y = y + b.reshape(cs)
        if silu:
            self.z = y
            self.s = (xp_of(y).tanh(y * 0.5) + 1) * 0.5  # σ(z) without overflow
            y = y * self.s
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        n = self.needs_input_grad
        if self.native:
            gx, gw, gb = native_module().group_norm_backward(
                np.ascontiguousarray(g, dtype=self.dtype).reshape(self.x3.shape), self.x3,
                _contig(self.w), _contig(self.b), self.mean, self.rstd, self.groups, self.silu)
            return (gx.reshape(self.shape) if n[0] else None,
                    gw if len(n) > 1 and n[1] else None,
                    gb if len(n) > 2 and n[2] else None)
        g = g.astype(self.xh.dtype, copy=False)
        if self.silu:
            s = self.s
            g = g * (s * (1 + self.z * (1 - s)))
        cs = _channel_shape(len(self.shape))
        sum_axes = (0,) + tuple(range(2, len(self.shape)))
        gx = gw = gb = None
        if n[0]:
            gh = g if self.w is None else g * self.w.reshape(cs)
            gh = gh.reshape(self.xh.shape)
            gx = _norm_grad(gh, self.xh, self.r, (2,)).reshape(self.shape)
            gx = gx.astype(self.dtype, copy=False)
        if len(n) > 1 and n[1]:
            gw = (g * self.xh.reshape(self.shape)).sum(axis=sum_axes)
            gw = gw.astype(self.w.dtype, copy=False)
        if len(n) > 2 and n[2]:
            gb = g.sum(axis=sum_axes).astype(self.dtype, copy=False)
        return gx, gw, gb


class BatchNorm(Function):
    """x of shape (N, C, *); per channel c, over the batch and all positions:

    training: x̂ = (x − μ_c) r_c with the batch's μ_c, σ²_c (biased), and the running stats
    updated in place, m ← (1 − momentum) m + momentum μ, v ← (1 − momentum) v + momentum
    σ² M/(M − 1) (unbiased); dx is the normalisation backward over the channel's M elements.
    evaluation: x̂ = (x − m_c)/√(v_c + eps) with the running stats, dx = g w_c r_c.
    Either way y = w_c x̂ + b_c, dw_c = Σ g x̂, db_c = Σ g. Running stats get no gradient.
    """
    saves_inputs = (1,)

    def forward(self, x, w, b, running_mean, running_var, training, momentum, eps):
        xp = xp_of(x)
        ct = _compute_dtype(x.dtype)
        self.shape, self.dtype, self.training = x.shape, x.dtype, training
        self.axes = (0,) + tuple(range(2, x.ndim))
        cs = _channel_shape(x.ndim)
        xc = x.astype(ct, copy=False)
        if training:
            xh, r, mu, var = _standardise(xc, self.axes, eps)
            if running_mean is not None:
                m = x.size // x.shape[1]
                running_mean *= 1 - momentum
                running_mean += (momentum * mu.reshape(-1)).astype(running_mean.dtype)
                running_var *= 1 - momentum
                running_var += (momentum * m / (m - 1) * var.reshape(-1)).astype(
                    running_var.dtype)
        else:
            mu = running_mean.astype(ct).reshape(cs)
            r = (1.0 / xp.sqrt(running_var.astype(ct) + eps)).reshape(cs)
            xh = (xc - mu) * r
        self.xh, self.r, self.w = xh, r, w
        y = xh if w is None else xh * w.reshape(cs)
        if b is not None:
            y = y + b.reshape(cs)
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        n = self.needs_input_grad
        g = g.astype(self.xh.dtype, copy=False)
        cs = _channel_shape(len(self.shape))
        gx = gw = gb = None
        if n[0]:
            gh = g if self.w is None else g * self.w.reshape(cs)
            if self.training:
                gx = _norm_grad(gh, self.xh, self.r, self.axes)
            else:
                gx = gh * self.r
            gx = gx.astype(self.dtype, copy=False)
        if len(n) > 1 and n[1]:
            gw = (g * self.xh).sum(axis=self.axes).astype(self.w.dtype, copy=False)
        if len(n) > 2 and n[2]:
            gb = g.sum(axis=self.axes).astype(self.dtype, copy=False)
        return gx, gw, gb


# ---------------------------------------------------------------------- argument checks
def _check_input(op, input, min_ndim):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    require_float(input, op)
    if input.ndim < min_ndim:
        raise RuntimeError(f"{op}: expected an input of at least {min_ndim} dimensions, got "
                           f"shape {tuple(input.shape)}")


def _check_param(op, name, p, shape, input):
    if p is None:
        return
    if not isinstance(p, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(p).__name__}")
    if tuple(p.shape) != tuple(shape):
        raise RuntimeError(f"{op}: {name} of shape {tuple(p.shape)} does not match the expected "
                           f"shape {tuple(shape)}")
    if p.dtype != input.dtype:
        raise TypeError(f"{op}: {name} has dtype {p.dtype} but the input has dtype {input.dtype}")
    if p.device is not input.device:
        raise RuntimeError(f"{op}: {name} is on {p.device} but the input is on {input.device}")


def _check_eps(op, eps):
    if not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")


# ---------------------------------------------------------------------- public functions
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing dims ``normalized_shape`` (int or tuple); ``weight`` and
    ``bias`` have shape ``normalized_shape``. input (*, *normalized_shape) → same shape."""
    op = "layer_norm"
    _check_input(op, input, 1)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or k > input.ndim or tuple(input.shape[input.ndim - k:]) != normalized_shape:
        raise RuntimeError(f"{op}: normalized_shape {normalized_shape} does not match the "
                           f"trailing dims of the input of shape {tuple(input.shape)}")
    _check_param(op, "weight", weight, normalized_shape, input)
    _check_param(op, "bias", bias, normalized_shape, input)
    _check_eps(op, eps)
    return LayerNorm.apply(input, weight, bias, k, eps)


def _group_norm(op, input, num_groups, weight, bias, eps, silu):
    """The argument checks shared by group_norm and group_norm_silu, then the primitive."""
    _check_input(op, input, 2)
    c = input.shape[1]
    if not isinstance(num_groups, numbers.Integral) or num_groups < 1:
        raise ValueError(f"{op}: num_groups must be a positive int, got {num_groups!r}")
    if c % num_groups:
        raise RuntimeError(f"{op}: the {c} channels of the input of shape {tuple(input.shape)} "
                           f"are not divisible into num_groups={num_groups} groups")
    _check_param(op, "weight", weight, (c,), input)
    _check_param(op, "bias", bias, (c,), input)
    _check_eps(op, eps)
    return GroupNorm.apply(input, weight, bias, int(num_groups), eps, silu)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each sample's channel groups: input (N, C, *), C divisible by ``num_groups``;
    ``weight`` and ``bias`` of shape (C,)."""
    return _group_norm("group_norm", input, num_groups, weight, bias, eps, False)


def group_norm_silu(input, num_groups, weight=None, bias=None, eps=1e-5):
    """silu(group_norm(input, ...)) as one primitive: the same values as the two ops, one
    read-write pass less and no saved intermediate (the UNet's norm → SiLU pairs use it)."""
    return _group_norm("group_norm_silu", input, num_groups, weight, bias, eps, True)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel of input (N, C, *) over the batch and positions.

    ``training=True``: batch statistics; ``running_mean``/``running_var`` (shape (C,), or both
    None) are updated in place with ``momentum`` (the variance unbiased, as PyTorch).
    ``training=False``: the running statistics are used and left unchanged.
    """
    op = "batch_norm"
    _check_input(op, input, 2)
    c = input.shape[1]
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both be "
                         "None")
    if running_mean is None and not training:
        raise RuntimeError(f"{op}: running_mean and running_var must be given in evaluation "
                           "mode (training=False)")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(t).__name__}")
        if tuple(t.shape) != (c,):
            raise RuntimeError(f"{op}: {name} should contain {c} elements (one per channel of "
                               f"the input of shape {tuple(input.shape)}), got shape "
                               f"{tuple(t.shape)}")
        if not dtypes.is_floating(t.dtype):
            raise TypeError(f"{op}: {name} must be floating point, got dtype {t.dtype}")
        if t.device is not input.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but the input is on "
                               f"{input.device}")
        if t.requires_grad:   # no gradient flows to them (zero, silently, otherwise)
            raise RuntimeError(f"{op}: {name} requires grad; running statistics are buffers "
                               "(updated in place in training, constants in evaluation) and "
                               "get no gradient: pass them detached")
    _check_param(op, "weight", weight, (c,), input)
    _check_param(op, "bias", bias, (c,), input)
    _check_eps(op, eps)
    if training:
        m = input.numel() // c if c else 0
        if m <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                             f"input of shape {tuple(input.shape)}")
        if not isinstance(momentum, numbers.Real):
            raise TypeError(f"{op}: momentum must be a number, got {momentum!r}")
    rm = running_mean.data if running_mean is not None else None
    rv = running_var.data if running_var is not None else None
    out = BatchNorm.apply(input, weight, bias, rm, rv, bool(training), momentum, eps)
    if training and running_mean is not None:
        running_mean._vc[0] += 1
        running_var._vc[0] += 1
    return out
