"""Layers and losses with PyTorch's names and semantics (``F.<name>``):

conv         conv1d, conv_transpose1d: the conv2d family's kernels with H = 1 (a 1-D signal
             (N, C, L) is the image (N, C, 1, L), the kernel (.., k) the kernel (.., 1, k))
pooling      adaptive_avg_pool2d: y = P_h x P_wᵀ, P the bin-averaging matrix (bin i covers
             [⌊iH/o⌋, ⌈(i+1)H/o⌉)); avg_pool2d when the sizes divide
             unfold: im2col, (N, C, H, W) → (N, C·kH·kW, L); its adjoint (col2im, summing
             overlaps) is the backward
norms        instance_norm: group_norm with one group per channel (+ running statistics)
             rms_norm: y = x / √(mean(x²) + ε) · w over the trailing ``normalized_shape``;
             with r = (mean(x²) + ε)^{−1/2}, x̂ = x r, ḡ = g w:  x̄ = r (ḡ − x̂ mean(ḡ x̂)),
             w̄ = Σ g x̂ over the leading dims
activations  glu(x) = a σ(b) for (a, b) = the halves of x along ``dim``; selu = λ elu(x, α);
             relu6 = clamp(x, 0, 6); hardswish = x · clamp(x + 3, 0, 6)/6 (derivative 0 below
             −3, (2x + 3)/6 on [−3, 3], 1 above, as PyTorch); prelu = max(0, x) + w min(0, x)
losses       kl_div(input = log q, target = p) = p (log p − input) (0 where p = 0; log_target:
             eᵗ (t − input)); gradients −p (or −eᵗ) to input, log p + 1 − input (or
             eᵗ (t − input + 1)) to the target.
             smooth_l1_loss(β): ½d²/β for |d| < β, |d| − ½β otherwise (β = 0: |d|), gradient
             clamp(d/β, −1, 1); huber_loss(δ): ½d² for |d| < δ, δ(|d| − ½δ), gradient
             clamp(d, −δ, δ) (= δ · smooth_l1 with β = δ)
distances    cosine_similarity = Σ (x₁/max(‖x₁‖, ε)) (x₂/max(‖x₂‖, ε)) over ``dim``;
             pairwise_distance = ‖x₁ − x₂ + ε‖_p over the last dim;
             cdist(x₁ (*, P, M), x₂ (*, R, M)) → (*, P, R), ‖x₁ᵢ − x₂ⱼ‖_p. For p = 2 in
             matmul form (PyTorch's compute_mode): d² = ‖a‖² + ‖b‖² − 2 a·b (clamped at 0),
             and always the backward  x̄₁ = rowsum(W) x₁ − W x₂,  x̄₂ = colsum(W) x₂ − Wᵀ x₁,
             W = ḡ / d (0 where d = 0): two matrix products, no (P, R, M) difference tensor.
             Other p: the difference tensor and linalg.vector_norm.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import broadcast_shape, norm_dim, require_float, unbroadcast

__all__ = ["conv1d", "conv_transpose1d", "adaptive_avg_pool2d", "instance_norm", "rms_norm",
           "glu", "selu", "relu6", "hardswish", "prelu", "unfold", "kl_div", "smooth_l1_loss",
           "huber_loss", "cosine_similarity", "cdist", "pairwise_distance"]


def _const(like: Tensor, arr):
    """A constant Tensor on ``like``'s device and dtype."""
    xp = xp_of(like.data)
    return Tensor._wrap(xp.asarray(arr, dtype=like.data.dtype), like._device)


def _check_tensor(op, name, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


# ------------------------------------------------------------------------------------ conv
def _single(op, name, v):
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise TypeError(f"{op}: {name} must be an int or a 1-tuple, got {v!r}")
    return int(v)


def _conv1d_shapes(op, input, weight):
    _check_tensor(op, "input", input)
    _check_tensor(op, "weight", weight)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape "
                           f"{tuple(input.shape)}")
    if weight.ndim != 3:
        raise RuntimeError(f"{op}: expected a 3-D weight, got shape {tuple(weight.shape)}")


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of input (N, C_in, L) or (C_in, L) with weight
    (C_out, C_in/groups, k), plus bias (C_out,): PyTorch's F.conv1d (padding an int, 'valid'
    or 'same'). Runs conv2d's kernels on (N, C, 1, L)."""
    from .conv import conv2d
    op = "conv1d"
    _conv1d_shapes(op, input, weight)
    s, d = _single(op, "stride", stride), _single(op, "dilation", dilation)
    p = padding if isinstance(padding, str) else (0, _single(op, "padding", padding))
    y = conv2d(input.unsqueeze(-2), weight.unsqueeze(2), bias, (1, s), p, (1, d), groups)
    return y.squeeze(-2)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-D convolution of input (N, C_in, L) or (C_in, L) with weight
    (C_in, C_out/groups, k): PyTorch's F.conv_transpose1d,
    L_out = (L − 1)s − 2p + d(k − 1) + output_padding + 1. Runs conv_transpose2d's kernels."""
    from .conv import conv_transpose2d
    op = "conv_transpose1d"
    _conv1d_shapes(op, input, weight)
    s, d = _single(op, "stride", stride), _single(op, "dilation", dilation)
    p, op_ = _single(op, "padding", padding), _single(op, "output_padding", output_padding)
    # the H axis has size 1 and stride 1: its output_padding must stay 0 (< max(1, 1))
    y = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(2), bias, (1, s), (0, p),
                         (0, op_), groups, (1, d))
    return y.squeeze(-2)


# --------------------------------------------------------------------------------- pooling
def _bin_matrix(n_in, n_out):
    """(n_out, n_in): row i averages [⌊i n_in/n_out⌋, ⌈(i+1) n_in/n_out⌉)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(input, output_size):
    """Average over the adaptive bins of PyTorch's F.adaptive_avg_pool2d: input (N, C, H, W)
    or (C, H, W), output_size an int or a pair (None keeps that size)."""
    from .pooling import avg_pool2d
    op = "adaptive_avg_pool2d"
    _check_tensor(op, "input", input)
    require_float(input, op)
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{op}: expected a 3-D or 4-D input, got shape {tuple(input.shape)}")
    h, w = input.shape[-2:]
    if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        output_size = (output_size, output_size)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    oh, ow = (h if output_size[0] is None else output_size[0],
              w if output_size[1] is None else output_size[1])
    for v in (oh, ow):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{op}: output_size must hold positive ints (or None), got "
                             f"{tuple(output_size)}")
    if h == 0 or w == 0:
        raise RuntimeError(f"{op}: the input's spatial size {h}x{w} must be non-zero")
    if (oh, ow) == (h, w):
        return input * 1.0
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        return avg_pool2d(input, k, k)
    ph = _const(input, _bin_matrix(h, oh))
    pw = _const(input, _bin_matrix(w, ow).T)
    return ph @ input @ pw


class Unfold(Function):
    saves_inputs = False

    def forward(self, x, k, d, p, s):
        xp = xp_of(x)
        n, c, h, w = x.shape
        oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        self.geom = (x.shape, k, d, p, s, oh, ow)
        xp_ = xp.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
        out = xp.empty((n, c, k[0], k[1], oh, ow), dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                out[:, :, i, j] = xp_[:, :, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0],
                                      j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]]
        return out.reshape(n, c * k[0] * k[1], oh * ow)

    def backward(self, g):
        xp = xp_of(g)
        (n, c, h, w), k, d, p, s, oh, ow = self.geom
        g = g.reshape(n, c, k[0], k[1], oh, ow)
        gp = xp.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=g.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                gp[:, :, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0],
                   j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]] += g[:, :, i, j]
        return gp[:, :, p[0]: p[0] + h, p[1]: p[1] + w]


def _pair(op, name, v, minimum):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (int(v), int(v))
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in v)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if min(v) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {tuple(v)}")
    return (int(v[0]), int(v[1]))


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding blocks (im2col) of input (N, C, H, W) or (C, H, W) → (N, C·kH·kW, L), L the
    number of block positions, as PyTorch's F.unfold (the channel index varies slowest)."""
    op = "unfold"
    _check_tensor(op, "input", input)
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{op}: expected a 3-D or 4-D input, got shape {tuple(input.shape)}")
    k = _pair(op, "kernel_size", kernel_size, 1)
    d = _pair(op, "dilation", dilation, 1)
    p = _pair(op, "padding", padding, 0)
    s = _pair(op, "stride", stride, 1)
    x = input.unsqueeze(0) if input.ndim == 3 else input
    h, w = x.shape[2:]
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if oh < 1 or ow < 1:
        raise RuntimeError(f"{op}: the kernel {k} (dilation {d}) does not fit the input "
                           f"{h}x{w} with padding {p}: {oh}x{ow} blocks")
    y = Unfold.apply(x, k, d, p, s)
    return y.squeeze(0) if input.ndim == 3 else y


# ----------------------------------------------------------------------------------- norms
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) of input (N, C, *) over its positions, as PyTorch's
    F.instance_norm. With ``use_input_stats`` and running statistics given, they are updated
    in place with ``momentum`` from the per-instance statistics averaged over the batch (the
    variance unbiased); without ``use_input_stats`` the running statistics normalise."""
    from .normalization import group_norm
    op = "instance_norm"
    _check_tensor(op, "input", input)
    if input.ndim < 3:
        raise RuntimeError(f"{op}: expected an input (N, C, *) with at least one spatial dim, "
                           f"got shape {tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and (not isinstance(t, Tensor) or tuple(t.shape) != (c,)):
            raise RuntimeError(f"{op}: {name} must be a Tensor of shape ({c},), got "
                               f"{getattr(t, 'shape', type(t).__name__)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both be "
                         "None")
    if not use_input_stats:
        if running_mean is None:
            raise ValueError(f"{op}: expected running_mean and running_var when "
                             "use_input_stats=False")
        shape = (1, c) + (1,) * (input.ndim - 2)
        y = (input - running_mean.detach().reshape(shape)) / \
            (running_var.detach().reshape(shape) + eps).sqrt()
        if weight is not None:
            y = y * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        return y
    spatial = math.prod(input.shape[2:])
    if spatial <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial element when training, got input "
                         f"of shape {tuple(input.shape)}")
    if running_mean is not None:
        x = input.data
        axes = tuple(range(2, x.ndim))
        mu = x.mean(axis=axes).mean(axis=0)
        var = x.var(axis=axes, ddof=1).mean(axis=0)
        rm, rv = running_mean.data, running_var.data
        rm[...] = (1 - momentum) * rm + momentum * mu.astype(rm.dtype, copy=False)
        rv[...] = (1 - momentum) * rv + momentum * var.astype(rv.dtype, copy=False)
        running_mean._vc[0] += 1
        running_var._vc[0] += 1
    return group_norm(input, c, weight, bias, eps)


class RMSNorm(Function):
    saves_inputs = False

    def forward(self, x, w, k, eps):
        xp = xp_of(x)
        axes = tuple(range(x.ndim - k, x.ndim))
        cdt = np.float32 if x.dtype.itemsize < 4 else x.dtype
        xc = x.astype(cdt, copy=False)
        r = 1.0 / xp.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
        xh = xc * r
        self.r, self.xh, self.w, self.axes = r, xh, w, axes
        y = xh * w if w is not None else xh
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        gc = g.astype(self.xh.dtype, copy=False)
        gh = gc * self.w if self.w is not None else gc
        gx = self.r * (gh - self.xh * (gh * self.xh).mean(axis=self.axes, keepdims=True))
        gw = None
        if self.w is not None and self.needs_input_grad[1]:
            lead = tuple(range(g.ndim - len(self.axes)))
            gw = (gc * self.xh).sum(axis=lead).astype(self.w.dtype, copy=False)
        return gx.astype(g.dtype, copy=False), gw


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / √(mean(x²) + ε) · weight over the trailing dims ``normalized_shape``, as PyTorch's
    F.rms_norm (eps=None: the dtype's machine epsilon)."""
    op = "rms_norm"
    _check_tensor(op, "input", input)
    require_float(input, op)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or k > input.ndim or tuple(input.shape[input.ndim - k:]) != normalized_shape:
        raise RuntimeError(f"{op}: normalized_shape {normalized_shape} does not match the "
                           f"trailing dims of the input of shape {tuple(input.shape)}")
    if weight is not None:
        _check_tensor(op, "weight", weight)
        if tuple(weight.shape) != normalized_shape:
            raise RuntimeError(f"{op}: weight must have shape {normalized_shape}, got "
                               f"{tuple(weight.shape)}")
        if weight.dtype != input.dtype:
            raise TypeError(f"{op}: input ({input.dtype}) and weight ({weight.dtype}) must "
                            "have the same dtype")
    if eps is None:
        eps = float(np.finfo(input.data.dtype).eps) if input.data.dtype.kind == "f" else 1e-7
    if not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return RMSNorm.apply(input, weight, k, float(eps))


# ----------------------------------------------------------------------------- activations
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def glu(input, dim=-1):
    """a σ(b), (a, b) the two halves of input along ``dim`` (its size must be even)."""
    from .activation import sigmoid
    _check_tensor("glu", "input", input)
    if input.ndim == 0:
        raise RuntimeError("glu: does not support scalars (0-d input)")
    dim = norm_dim(dim, input.ndim, "glu")
    if input.shape[dim] % 2:
        raise RuntimeError(f"glu: halving dimension must be even, but dimension {dim} is size "
                           f"{input.shape[dim]}")
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def selu(input):
    """λ elu(x, α) with PyTorch's α ≈ 1.6733, λ ≈ 1.0507."""
    from .activation import elu
    return elu(input, SELU_ALPHA) * SELU_SCALE


def relu6(input):
    """min(max(x, 0), 6)."""
    from .elementwise import clamp
    return clamp(input, 0.0, 6.0)


class Hardswish(Function):
    def forward(self, x):
        xp = xp_of(x)
        self.x = x
        return x * xp.clip(x + 3, 0, 6) / 6

    def backward(self, g):
        xp = xp_of(g)
        x = self.x
        return xp.where(x < -3, 0, xp.where(x <= 3, g * (2 * x + 3) / 6, g)).astype(g.dtype)


def hardswish(input):
    """x · relu6(x + 3) / 6."""
    _check_tensor("hardswish", "input", input)
    require_float(input, "hardswish")
    return Hardswish.apply(input)


def prelu(input, weight):
    """max(0, x) + w · min(0, x), w one slope (numel 1) or one per channel (dim 1)."""
    from .elementwise import where
    op = "prelu"
    _check_tensor(op, "input", input)
    _check_tensor(op, "weight", weight)
    require_float(input, op)
    nw = weight.numel()
    if nw == 1:
        w = weight.reshape(())
    else:
        c = input.shape[1] if input.ndim >= 2 else 1
        if weight.ndim != 1 or nw != c:
            raise RuntimeError(f"{op}: mismatch of parameter numbers and input channel size: "
                               f"weight has {nw} elements, the input of shape "
                               f"{tuple(input.shape)} has {c} channels (dim 1)")
        w = weight.reshape((c,) + (1,) * (input.ndim - 2))
    return where(input > 0, input, w * input)


# ---------------------------------------------------------------------------------- losses
_REDUCTIONS = ("none", "mean", "sum")


def _loss_args(op, input, target, reduction, allowed=_REDUCTIONS):
    from .loss import _promote
    _check_tensor(op, "input", input)
    _check_tensor(op, "target", target)
    require_float(input, op)
    require_float(target, op)
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {allowed}, got {reduction!r}")
    if target.device is not input.device:
        raise RuntimeError(f"{op}: target is on {target.device} but the input is on "
                           f"{input.device}")
    if tuple(input.shape) != tuple(target.shape):
        broadcast_shape(op, input.shape, target.shape)
        warnings.warn(f"{op}: target size {tuple(target.shape)} differs from input size "
                      f"{tuple(input.shape)}; they are broadcast, which is likely not intended",
                      stacklevel=3)
    return _promote(input, target)


def _legacy(op, size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(f"{op}: size_average and reduce are deprecated, use reduction",
                  stacklevel=3)
    if reduce is False:
        return "none"
    return "mean" if size_average is None or size_average else "sum"


def _reduced(xp, loss, reduction, batch):
    if reduction == "none":
        return loss
    s = loss.sum()
    if reduction == "sum":
        return s
    if reduction == "batchmean":
        return s / batch
    return s / loss.size if loss.size else xp.asarray(np.nan, dtype=loss.dtype)


def _spread(g, shape, reduction, batch):
    if reduction == "none":
        return g
    if reduction == "mean":
        return g / math.prod(shape)
    if reduction == "batchmean":
        return g / batch
    return g


class KLDiv(Function):
    def forward(self, x, t, reduction, log_target):
        xp = xp_of(x)
        self.x, self.t, self.reduction, self.log_target = x, t, reduction, log_target
        self.batch = x.shape[0] if x.ndim else 1
        if log_target:
            loss = xp.exp(t) * (t - x)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                loss = xp.where(t > 0, t * xp.log(xp.where(t > 0, t, 1)), 0) - t * x
        return _reduced(xp, loss, reduction, self.batch)

    def backward(self, g):
        xp = xp_of(g)
        shape = np.broadcast_shapes(self.x.shape, self.t.shape)
        g = _spread(g, shape, self.reduction, self.batch)
        x, t = self.x, self.t
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = unbroadcast(g * -(xp.exp(t) if self.log_target else t), x.shape)
        if self.needs_input_grad[1]:
            if self.log_target:
                d = xp.exp(t) * (t - x + 1)
            else:
                with np.errstate(divide="ignore"):
                    d = xp.log(t) + 1 - x
            gt = unbroadcast(g * d, t.shape)
        return gx, gt


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target ‖ exp(input)) pointwise, as PyTorch's F.kl_div: ``input`` holds
    log-probabilities, ``target`` probabilities (log-probabilities when ``log_target``).
    reduction 'batchmean' (sum / batch size) is the mathematical KL; 'mean' divides by the
    number of elements (PyTorch's default, kept)."""
    op = "kl_div"
    reduction = _legacy(op, size_average, reduce, reduction)
    input, target = _loss_args(op, input, target, reduction,
                               ("none", "mean", "sum", "batchmean"))
    return KLDiv.apply(input, target, reduction, bool(log_target))


class Huber(Function):
    """ℓ(d) with d = x − y: huber (scale 1) or smooth L1 (÷ β); see the module docstring."""
    saves_inputs = False

    def forward(self, x, y, delta, smooth, reduction):
        xp = xp_of(x)
        d = x - y
        self.d, self.delta, self.smooth, self.reduction = d, delta, smooth, reduction
        self.sx, self.sy = x.shape, y.shape
        a = xp.abs(d)
        if delta == 0:
            loss = a
        else:
            loss = xp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
            if smooth:
                loss = loss / delta
        return _reduced(xp, loss, reduction, 1)

    def backward(self, g):
        xp = xp_of(g)
        g = _spread(g, self.d.shape, self.reduction, 1)
        if self.delta == 0:
            gd = g * xp.sign(self.d)
        else:
            gd = g * xp.clip(self.d, -self.delta, self.delta)
            if self.smooth:
                gd = gd / self.delta
        n = self.needs_input_grad
        return (unbroadcast(gd, self.sx) if n[0] else None,
                unbroadcast(-gd, self.sy) if n[1] else None)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean",
                   beta=1.0):
    """½(x − y)²/β where |x − y| < β, |x − y| − ½β elsewhere (β = 0: the L1 loss)."""
    op = "smooth_l1_loss"
    reduction = _legacy(op, size_average, reduce, reduction)
    if not isinstance(beta, numbers.Real) or beta < 0:
        raise ValueError(f"{op}: beta must be a non-negative number, got {beta!r}")
    input, target = _loss_args(op, input, target, reduction)
    return Huber.apply(input, target, float(beta), True, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """½(x − y)² where |x − y| < δ, δ(|x − y| − ½δ) elsewhere (δ > 0)."""
    op = "huber_loss"
    if not isinstance(delta, numbers.Real) or delta <= 0:
        raise ValueError(f"{op}: delta must be a positive number, got {delta!r}")
    input, target = _loss_args(op, input, target, reduction)
    return Huber.apply(input, target, float(delta), False, reduction)


# ------------------------------------------------------------------------------- distances
def _same_kind(op, a, b):
    _check_tensor(op, "x1", a)
    _check_tensor(op, "x2", b)
    require_float(a, op)
    require_float(b, op)
    if a.device is not b.device:
        raise RuntimeError(f"{op}: x1 is on {a.device} but x2 is on {b.device}")
    if a.dtype != b.dtype:
        dt = dtypes.promote(a.dtype, b.dtype)
        a, b = a.to(dt), b.to(dt)
    return a, b


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Σ (x₁/max(‖x₁‖, ε)) (x₂/max(‖x₂‖, ε)) over ``dim`` (x₁, x₂ broadcast), as PyTorch's
    F.cosine_similarity for inputs with norms above ε."""
    from ..linalg import vector_norm
    op = "cosine_similarity"
    x1, x2 = _same_kind(op, x1, x2)
    shape = broadcast_shape(op, tuple(x1.shape), tuple(x2.shape))
    dim = norm_dim(dim, len(shape), op)
    if tuple(x1.shape) != shape:
        x1 = x1.expand(*shape)
    if tuple(x2.shape) != shape:
        x2 = x2.expand(*shape)
    n1 = vector_norm(x1, 2, dim, keepdim=True).clamp(min=eps)
    n2 = vector_norm(x2, 2, dim, keepdim=True).clamp(min=eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """‖x₁ − x₂ + ε‖_p over the last dim (x₁, x₂ broadcast), as PyTorch's
    F.pairwise_distance."""
    from ..linalg import vector_norm
    x1, x2 = _same_kind("pairwise_distance", x1, x2)
    d = x1 - x2 + eps
    return vector_norm(d, p, -1 if d.ndim else None, keepdim)


_CDIST_MODES = ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist",
                "donot_use_mm_for_euclid_dist")


class CDist2(Function):
    """Euclidean cdist; forward in matmul form or directly, backward in matmul form."""

    def forward(self, a, b, use_mm):
        xp = xp_of(a)
        self.a, self.b = a, b
        if use_mm:
            # one product gives d² directly: [−2a, ‖a‖², 1] · [b, 1, ‖b‖²]ᵀ (K = M + 2); the
            # (P, R) result is then clamped and rooted in place (it is the big array)
            one_a = xp.ones(a.shape[:-1] + (1,), dtype=a.dtype)
            one_b = xp.ones(b.shape[:-1] + (1,), dtype=b.dtype)
            aa = xp.concatenate([-2 * a, (a * a).sum(-1, keepdims=True), one_a], axis=-1)
            bb = xp.concatenate([b, one_b, (b * b).sum(-1, keepdims=True)], axis=-1)
            d = aa @ bb.swapaxes(-1, -2)
            xp.maximum(d, 0, out=d)
            xp.sqrt(d, out=d)
        else:
            diff = a[..., :, None, :] - b[..., None, :, :]
            d = xp.sqrt((diff * diff).sum(-1))
        self.d = d
        return d

    def backward(self, g):
        xp = xp_of(g)
        d = self.d
        if xp is np:                                   # no (P, R) temporaries beyond W
            W = np.zeros(d.shape, dtype=np.result_type(g, d))
            np.divide(g, d, out=W, where=d > 0)
        else:
            W = xp.where(d > 0, g / xp.where(d > 0, d, 1), 0)
        a, b = self.a, self.b
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = W.sum(-1)[..., None] * a - W @ b
        if self.needs_input_grad[1]:
            gb = W.sum(-2)[..., None] * b - W.swapaxes(-1, -2) @ a
        return ga, gb


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """The p-norm distance between every row of x₁ (*, P, M) and of x₂ (*, R, M) → (*, P, R)
    (batch dims broadcast), as torch.cdist. p = 2 uses the matmul form when ``compute_mode``
    says so ('…_if_necessary': when P > 25 or R > 25, as PyTorch)."""
    from ..linalg import vector_norm
    op = "cdist"
    x1, x2 = _same_kind(op, x1, x2)
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"{op}: x1 and x2 must have at least 2 dimensions, got shapes "
                           f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"{op}: x1 and x2 must have the same number of columns: x1 "
                           f"{x1.shape[-1]}, x2 {x2.shape[-1]}")
    if compute_mode not in _CDIST_MODES:
        raise ValueError(f"{op}: compute_mode must be one of {_CDIST_MODES}, got "
                         f"{compute_mode!r}")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or p < 0:
        raise ValueError(f"{op}: p must be a non-negative number, got {p!r}")
    batch = tuple(broadcast_shape(op, tuple(x1.shape[:-2]), tuple(x2.shape[:-2])))
    if tuple(x1.shape[:-2]) != batch:
        x1 = x1.expand(*batch, *x1.shape[-2:])
    if tuple(x2.shape[:-2]) != batch:
        x2 = x2.expand(*batch, *x2.shape[-2:])
    if p == 2:
        P, R = x1.shape[-2], x2.shape[-2]
        use_mm = compute_mode == "use_mm_for_euclid_dist" or (
            compute_mode == "use_mm_for_euclid_dist_if_necessary" and (P > 25 or R > 25))
        return CDist2.apply(x1.contiguous(), x2.contiguous(), use_mm)
    return vector_norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), float(p), -1)
