"""Fused normalizing-flow primitives (kernel family ``logdet``, MATH.md §4): each returns the
transformed tensor AND its per-sample log-det from one kernel, and has an analytic backward.

Direction: as Glow and normflows, ``reverse=False`` is the data → latent direction used for
the likelihood, log p(x) = log p_Z(z) + Σ_layers log-det; ``reverse=True`` is its exact
inverse (latent → data, for sampling) and returns the negated log-det.

    actnorm(x, log_scale, bias)        y = s ⊙ x + b, s = exp(log_scale)   log-det M Σ_c log s_c
    invconv2d_lu(x, perm, lower, upper, log_s, sign_s)
                                       y = W x per position, W = P L (U + diag s),
                                       s = sign_s exp(log_s)                log-det M Σ_c log|s_c|
    affine_coupling(x, h)              y_a = s ⊙ x_a + t, y_b = x_b with raw = h[:, :C/2],
                                       t = h[:, C/2:], s = sigmoid(raw + 2)  log-det Σ log s

x is (N, C, *spatial) with M = Π spatial (images: (N, C, H, W), M = H·W); log-det is (N,).
In the coupling, x_a = x[:, :C/2] is transformed and x_b = x[:, C/2:] passes through; h is the
output of the user's network applied to x_b (see ``minigen.nn.AffineCoupling``).
"""
from __future__ import annotations

import numpy as np

from .. import dispatch
from ..autograd.function import Function
from ..tensor import Tensor

__all__ = ["actnorm", "invconv_lu_weight", "invconv2d_lu", "affine_coupling"]


def _kernels(array):
    return dispatch.get_for("logdet", array)


def _check(op, name, t, ndim=None):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if t.data.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got {t.data.dtype}")
    if ndim is not None and t.ndim != ndim:
        raise RuntimeError(f"{op}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")


def _contig(a):
    """The kernels walk arrays as flat C-ordered buffers (numpy and CuPy alike)."""
    return a if a.flags.c_contiguous else a.copy()


class ActNorm(Function):
    saves_inputs = False

    def forward(self, x, log_scale, bias, reverse):
        k = _kernels(x)
        out, ld = k.actnorm_forward(_contig(x), log_scale, bias, reverse)
        self.saved = out if reverse else _contig(x)
        self.log_scale, self.reverse = log_scale, reverse
        return out, ld

    def backward(self, g_out, g_ld):
        gx, gls, gb = _kernels(self.saved).actnorm_backward(
            None if g_out is None else _contig(g_out), g_ld, self.saved, self.log_scale,
            self.reverse)
        return gx, gls, gb


class AffineCoupling(Function):
    saves_inputs = (0, 1)

    def forward(self, x, h, reverse):
        x, h = _contig(x), _contig(h)
        self.x, self.h, self.reverse = x, h, reverse
        return _kernels(x).coupling_forward(x, h, reverse)

    def backward(self, g_out, g_ld):
        return _kernels(self.x).coupling_backward(
            None if g_out is None else _contig(g_out), g_ld, self.x, self.h, self.reverse)


class InvConvWeight(Function):
    """W = P L (U + diag s) (or W⁻¹) from the LU parameters; gradients to lower, upper, log_s."""
    saves_inputs = False

    def forward(self, perm, lower, upper, log_s, sign_s, inverse):
        self.args = (perm, lower, upper, log_s, sign_s)
        self.inverse = inverse
        self.w = _kernels(lower).invconv_weight(perm, lower, upper, log_s, sign_s, inverse)
        return self.w

    def backward(self, g):
        gl, gu, gs = _kernels(g).invconv_weight_backward(g, *self.args, self.w, self.inverse)
        return None, gl, gu, gs, None


class Conv1x1(Function):
    """y = W x at every position; g_x = Wᵀ g, g_W = Σ g xᵀ."""

    def forward(self, x, w):
        self.x, self.w = _contig(x), w
        return _kernels(x).conv1x1_forward(self.x, w)

    def backward(self, g):
        return _kernels(g).conv1x1_backward(_contig(g), self.x, self.w)


def actnorm(input, log_scale, bias, reverse=False):
    """(out, logdet): y = exp(log_scale) ⊙ x + bias per channel (or x = (y − b) e^{−log_scale}
    when ``reverse``), logdet = ±M Σ_c log_scale_c for every sample; input (N, C, *)."""
    _check("actnorm", "input", input)
    if input.ndim < 2:
        raise RuntimeError(f"actnorm: input must be (N, C, *), got shape {tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("log_scale", log_scale), ("bias", bias)):
        _check("actnorm", name, t)
        if tuple(t.shape) != (c,):
            raise RuntimeError(f"actnorm: {name} must have shape ({c},) for input "
                               f"{tuple(input.shape)}, got {tuple(t.shape)}")
        if t.data.dtype != input.data.dtype:
            raise TypeError(f"actnorm: {name} has dtype {t.data.dtype}, input "
                            f"{input.data.dtype}: they must match")
    return ActNorm.apply(input, log_scale, bias, bool(reverse))


def invconv_lu_weight(perm, lower, upper, log_s, sign_s, inverse=False):
    """W = P L (U + diag(sign_s exp(log_s))) (C, C), or W⁻¹ by triangular solves."""
    for name, t in (("perm", perm), ("lower", lower), ("upper", upper)):
        _check("invconv_lu_weight", name, t, ndim=2)
    c = lower.shape[0]
    for name, t in (("perm", perm), ("lower", lower), ("upper", upper)):
        if tuple(t.shape) != (c, c):
            raise RuntimeError(f"invconv_lu_weight: {name} must be ({c}, {c}), got "
                               f"{tuple(t.shape)}")
    for name, t in (("log_s", log_s), ("sign_s", sign_s)):
        _check("invconv_lu_weight", name, t, ndim=1)
        if t.shape[0] != c:
            raise RuntimeError(f"invconv_lu_weight: {name} must be ({c},), got "
                               f"{tuple(t.shape)}")
    for name, t in (("perm", perm), ("upper", upper), ("log_s", log_s), ("sign_s", sign_s)):
        if t.data.dtype != lower.data.dtype:
            raise TypeError(f"invconv_lu_weight: {name} has dtype {t.data.dtype}, lower "
                            f"{lower.data.dtype}: the LU parameters must share one dtype")
    return InvConvWeight.apply(perm, lower, upper, log_s, sign_s, bool(inverse))


def invconv2d_lu(input, perm, lower, upper, log_s, sign_s, reverse=False):
    """(out, logdet): Glow's invertible 1×1 convolution in LU form on input (N, C, *).

    forward y = W x per position, logdet = M Σ log_s; reverse x = W⁻¹ y with W⁻¹ from two
    triangular solves, logdet = −M Σ log_s (M = number of positions).
    """
    _check("invconv2d_lu", "input", input)
    if input.ndim < 2 or input.shape[1] != lower.shape[0]:
        raise RuntimeError(f"invconv2d_lu: input must be (N, {lower.shape[0]}, *), got shape "
                           f"{tuple(input.shape)}")
    w = invconv_lu_weight(perm, lower, upper, log_s, sign_s, inverse=reverse)
    if w.data.dtype != input.data.dtype:
        raise TypeError(f"invconv2d_lu: input has dtype {input.data.dtype}, the weight "
                        f"{w.data.dtype}")
    out = Conv1x1.apply(input, w)
    m = int(np.prod(input.shape[2:])) if input.ndim > 2 else 1
    ld = log_s.sum() * (-m if reverse else m)
    return out, ld.expand(input.shape[0])


def affine_coupling(input, h, reverse=False):
    """(out, logdet): Glow's affine coupling given the network output h (N, C, *).

    x_a = input[:, :C/2] is transformed, input[:, C/2:] passes; raw = h[:, :C/2],
    t = h[:, C/2:], s = sigmoid(raw + 2): y_a = s ⊙ x_a + t, logdet = Σ log s per sample
    (reverse: x_a = (y_a − t)/s, logdet = −Σ log s).
    """
    _check("affine_coupling", "input", input)
    _check("affine_coupling", "h", h)
    if input.ndim < 2 or input.shape[1] % 2:
        raise RuntimeError(f"affine_coupling: input must be (N, C, *) with C even, got shape "
                           f"{tuple(input.shape)}")
    if tuple(h.shape) != tuple(input.shape):
        raise RuntimeError(f"affine_coupling: h must have the input's shape "
                           f"{tuple(input.shape)} (log-scale and shift, C/2 channels each), "
                           f"got {tuple(h.shape)}")
    if h.data.dtype != input.data.dtype:
        raise TypeError(f"affine_coupling: h has dtype {h.data.dtype}, input {input.data.dtype}")
    return AffineCoupling.apply(input, h, bool(reverse))
