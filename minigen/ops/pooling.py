"""Spatial ops on NCHW images: avg_pool2d, max_pool2d, interpolate, pixel_shuffle,
pixel_unshuffle.

Pooling windows are read as k_h·k_w strided slices of the padded input, one per kernel offset
(i, j): slice (i, j) holds, for every output pixel (oh, ow), the input at
(oh·s_h − p_h + i·d_h, ow·s_w − p_w + j·d_w). The loop runs over kernel offsets, never pixels;
each slice is a whole-array numpy/cupy operation. A backward adds the gradient back through the
same slices; within one slice every input position appears at most once, so ``+=`` on the
strided view is exact even where windows overlap.

Output size (PyTorch's rule): out = ⌊(in + 2p − d(k − 1) − 1 + (s − 1 if ceil_mode)) / s⌋ + 1,
minus one in ceil_mode if the last window would start past the input and its left padding.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import require_float
from .indexing import _add_at

__all__ = ["avg_pool2d", "max_pool2d", "interpolate", "upsample", "pixel_shuffle",
           "pixel_unshuffle"]


# ---------------------------------------------------------------------- geometry helpers
def _pair(op, name, v, allow_zero=False):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 1:
        v = (int(v[0]), int(v[0]))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    lo = 0 if allow_zero else 1
    if v[0] < lo or v[1] < lo:
        raise ValueError(f"{op}: {name} must be {'non-negative' if allow_zero else 'positive'}, "
                         f"got {v}")
    return v


def _out_size(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_args(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked geometry: ((kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow))."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                           f"{tuple(input.shape)}")
    k = _pair(op, "kernel_size", kernel_size)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else \
        _pair(op, "stride", stride)
    p = _pair(op, "padding", padding, allow_zero=True)
    d = _pair(op, "dilation", dilation)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    h, w = input.shape[-2:]
    out = (_out_size(h, k[0], s[0], p[0], d[0], ceil_mode),
           _out_size(w, k[1], s[1], p[1], d[1], ceil_mode))
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: the kernel {k} (dilation {d}) is larger than the padded input: "
                         f"input {h}x{w} with padding {p} gives an output of size "
                         f"{out[0]}x{out[1]}")
    return k, s, p, d, out


def _padded(xp, x, p, k, s, d, out, value):
    """x padded with ``value`` so every window of the output grid lies inside."""
    pads = []
    for n, kk, ss, pp, dd, oo in zip(x.shape[-2:], k, s, p, d, out):
        need = (oo - 1) * ss + dd * (kk - 1) + 1
        pads.append((pp, max(0, need - n - pp)))
    if not any(lo or hi for lo, hi in pads):
        return x
    # no padding of the leading dims: (N, C) or, unbatched, (C,)
    return xp.pad(x, ((0, 0),) * (x.ndim - 2) + tuple(pads), constant_values=value)


def _window(i, j, s, d, out):
    """The (…, oh, ow) strided slice of the padded input for kernel offset (i, j)."""
    return (Ellipsis,
            slice(i * d[0], i * d[0] + s[0] * (out[0] - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (out[1] - 1) + 1, s[1]))


def _crop(gpad, shape, p):
    h, w = shape[-2:]
    return gpad[..., p[0]:p[0] + h, p[1]:p[1] + w]


# ---------------------------------------------------------------------- pooling primitives
class AvgPool2d(Function):
    """y[oh, ow] = (1/D) Σ_{i<kh, j<kw} x_pad[oh·s_h + i, ow·s_w + j] (zero padding).

    D: ``divisor_override``; or the window's size clipped to the padded input
    (count_include_pad); or the number of real (non-padding) elements in the window.
    dx_pad[oh·s_h + i, ow·s_w + j] += g[oh, ow] / D for every offset (i, j).
    """
    saves_inputs = False

    def forward(self, x, k, s, p, out, divisor):
        xp = xp_of(x)
        self.shape, self.k, self.s, self.p, self.out = x.shape, k, s, p, out
        xpad = _padded(xp, x, p, k, s, (1, 1), out, 0)
        self.pad_shape = xpad.shape
        acc = xp.zeros(x.shape[:-2] + out, dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                acc += xpad[_window(i, j, s, (1, 1), out)]
        self.divisor = xp.asarray(divisor, dtype=x.dtype)
        return acc / self.divisor

    def backward(self, g):
        xp = xp_of(g)
        gd = g / self.divisor
        gpad = xp.zeros(self.pad_shape, dtype=g.dtype)
        for i in range(self.k[0]):
            for j in range(self.k[1]):
                gpad[_window(i, j, self.s, (1, 1), self.out)] += gd
        return _crop(gpad, self.shape, self.p)


def _avg_divisor(n, k, s, p, out, count_include_pad):
    """Per-output divisor along one axis (PyTorch's rule), as a numpy vector."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    size = end - start
    if count_include_pad:
        return size
    return np.minimum(end, n) - np.maximum(start, 0)


class MaxPool2d(Function):
    """y[oh, ow] = max over the window of x at (oh·s_h − p_h + i·d_h, ow·s_w − p_w + j·d_w),
    padding excluded; ties and NaN as PyTorch (first maximum in row-major window order, a NaN
    wins). The gradient goes to the chosen element only: dx[argmax] += g (summed where
    windows overlap). Second output: the chosen element's flat index h·W + w in its plane.
    """
    saves_inputs = False

    def forward(self, x, k, s, p, d, out):
        xp = xp_of(x)
        h, w = x.shape[-2:]
        self.shape, self.k, self.s, self.p, self.d, self.out = x.shape, k, s, p, d, out
        xpad = _padded(xp, x, p, k, s, d, out, 0)
        self.pad_shape = xpad.shape
        rows = xp.arange(out[0]) * s[0] - p[0]
        cols = xp.arange(out[1]) * s[1] - p[1]
        best = xp.full(x.shape[:-2] + out, -xp.inf, dtype=x.dtype)
        arg = xp.full(x.shape[:-2] + out, -1, dtype=xp.int64)
        for i in range(k[0]):
            r = rows + i * d[0]
            rvalid = (r >= 0) & (r < h)
            for j in range(k[1]):
                c = cols + j * d[1]
                valid = rvalid[:, None] & ((c >= 0) & (c < w))[None, :]
                val = xpad[_window(i, j, s, d, out)]
                take = valid & ((val > best) | xp.isnan(val) | (arg < 0))
                best = xp.where(take, val, best)
                arg = xp.where(take, i * k[1] + j, arg)
        self.arg = arg
        oi, oj = arg // k[1], arg % k[1]
        hi = rows[:, None] + oi * d[0]
        wi = cols[None, :] + oj * d[1]
        index = xp.where(arg >= 0, hi * w + wi, -1)
        return best, index

    def backward(self, g, g_index=None):
        xp = xp_of(g)
        gpad = xp.zeros(self.pad_shape, dtype=g.dtype)
        for i in range(self.k[0]):
            for j in range(self.k[1]):
                gpad[_window(i, j, self.s, self.d, self.out)] += \
                    g * (self.arg == i * self.k[1] + j)
        return _crop(gpad, self.shape, self.p)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Average over kh×kw windows of input (N, C, H, W) or (C, H, W); stride defaults to the
    kernel size, zero ``padding`` of at most half the kernel on each side."""
    op = "avg_pool2d"
    k, s, p, d, out = _pool_args(op, input, kernel_size, stride, padding, 1, ceil_mode)
    require_float(input, op)
    if divisor_override is not None:
        # PyTorch takes any non-zero int: the window sum over divisor_override (a negative one
        # flips the sign)
        if not isinstance(divisor_override, numbers.Integral) or isinstance(
                divisor_override, bool) or divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be a non-zero int, got "
                             f"{divisor_override!r}")
        divisor = np.full(out, float(divisor_override))
    else:
        h, w = input.shape[-2:]
        dh = _avg_divisor(h, k[0], s[0], p[0], out[0], count_include_pad)
        dw = _avg_divisor(w, k[1], s[1], p[1], out[1], count_include_pad)
        divisor = np.outer(dh, dw).astype(np.float64)
    if input.device.type != "cpu":
        from ..backend import array_module
        divisor = array_module(input.device).asarray(divisor)
    return AvgPool2d.apply(input, k, s, p, out, divisor)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over kh×kw windows (dilated by ``dilation``) of input (N, C, H, W) or (C, H, W);
    padding positions never win. With ``return_indices`` also the int64 flat indices h·W + w
    of the maxima (the form max_unpool2d takes). A window that holds no input element at all
    (possible with dilation) gives −inf and index −1 (PyTorch leaves that index undefined)."""
    op = "max_pool2d"
    k, s, p, d, out = _pool_args(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    require_float(input, op)
    values, indices = MaxPool2d.apply(input, k, s, p, d, out)
    return (values, indices) if return_indices else values


# ---------------------------------------------------------------------- interpolation
class Interpolate(Function):
    """Separable resampling, one spatial axis at a time.

    nearest: y[o] = x[src(o)];  linear: y[o] = (1 − λ_o) x[i0(o)] + λ_o x[i1(o)];
    taps (bicubic, area): y[o] = Σ_t w[o, t] x[idx[o, t]].
    The backward is the transpose of each axis map, in reverse order: the gradient of output o
    is added to its source element(s), with weights 1, (1 − λ_o, λ_o) or w[o, :] (add.at:
    several outputs can share a source).
    """
    saves_inputs = False

    def forward(self, x, plan):
        xp = xp_of(x)
        self.plan, self.shapes = plan, []
        for axis, kind, data in plan:
            self.shapes.append(x.shape)
            if kind == "nearest":
                x = xp.take(x, xp.asarray(data), axis=axis)
            elif kind == "taps":
                idx, w = (xp.asarray(a) for a in data)
                shape = [1] * x.ndim
                shape[axis] = -1
                acc = None
                for t in range(idx.shape[1]):
                    term = xp.take(x, idx[:, t], axis=axis) * w[:, t].astype(x.dtype).reshape(
                        shape)
                    acc = term if acc is None else acc + term
                x = acc
            else:
                i0, i1, lam = (xp.asarray(a) for a in data)
                shape = [1] * x.ndim
                shape[axis] = -1
                lam = lam.astype(x.dtype).reshape(shape)
                x0 = xp.take(x, i0, axis=axis)
                x1 = xp.take(x, i1, axis=axis)
                x = x0 + (x1 - x0) * lam
        return x

    def backward(self, g):
        xp = xp_of(g)
        for (axis, kind, data), shape in zip(reversed(self.plan), reversed(self.shapes)):
            gm = xp.moveaxis(g, axis, 0)
            acc = xp.zeros((shape[axis],) + gm.shape[1:], dtype=g.dtype)
            if kind == "nearest":
                _add_at(xp, acc, xp.asarray(data), gm)
            elif kind == "taps":
                idx, w = (xp.asarray(a) for a in data)
                for t in range(idx.shape[1]):
                    wt = w[:, t].astype(g.dtype).reshape((-1,) + (1,) * (gm.ndim - 1))
                    _add_at(xp, acc, idx[:, t], gm * wt)
            else:
                i0, i1, lam = (xp.asarray(a) for a in data)
                lam = lam.astype(g.dtype).reshape((-1,) + (1,) * (gm.ndim - 1))
                _add_at(xp, acc, i0, gm * (1 - lam))
                _add_at(xp, acc, i1, gm * lam)
            g = xp.moveaxis(acc, 0, axis)
        return g


_LINEAR_MODES = {"linear": 3, "bilinear": 4, "trilinear": 5, "bicubic": 4}
_CUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient


def _cubic_source(n_in, n_out, scale, align_corners):
    """(idx, w), each (n_out, 4): PyTorch's bicubic taps along one axis.

    src as for linear but not clamped at 0 (align_corners=False: src = (dst + ½)·scale − ½);
    with i = ⌊src⌋, t = src − i the taps are x[i − 1 .. i + 2] (indices clamped to the edge)
    with Keys' cubic convolution weights for a = −0.75:
    W(d) = (a + 2)|d|³ − (a + 3)|d|² + 1 for |d| ≤ 1,  a|d|³ − 5a|d|² + 8a|d| − 4a for
    1 < |d| < 2, at the distances d = t + 1, t, 1 − t, 2 − t."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        sc = 1.0 / scale if scale is not None and scale > 0 else n_in / n_out
        src = sc * (dst + 0.5) - 0.5
    i = np.floor(src)
    t = src - i
    a = _CUBIC_A

    def near(d):   # |d| ≤ 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):    # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    idx = np.clip(i.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    return idx, w


def _area_source(n_in, n_out):
    """(idx, w): adaptive average pooling along one axis, PyTorch's windows
    [⌊o·in/out⌋, ⌈(o + 1)·in/out⌉), each element weighted 1/(window length); the taps past
    a shorter window get weight 0."""
    o = np.arange(n_out)
    start = (o * n_in) // n_out
    end = -((-(o + 1) * n_in) // n_out)
    length = end - start
    taps = np.arange(int(length.max()))
    idx = np.minimum(start[:, None] + taps, n_in - 1)
    w = np.where(taps < length[:, None], 1.0 / length[:, None], 0.0)
    return idx, w


def _nearest_source(n_in, n_out, scale, exact):
    """PyTorch's nearest / nearest-exact source index (computed in float32, as PyTorch)."""
    sc = np.float32(1.0 / scale) if scale is not None else np.float32(n_in / n_out)
    dst = np.arange(n_out, dtype=np.float32)
    if exact:
        dst = dst + np.float32(0.5)
    src = np.floor(dst * sc).astype(np.int64)
    return np.minimum(src, n_in - 1)


def _linear_source(n_in, n_out, scale, align_corners):
    """(i0, i1, λ) of PyTorch's linear interpolation along one axis."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        sc = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * sc
    else:
        sc = 1.0 / scale if scale is not None and scale > 0 else n_in / n_out
        src = np.maximum(sc * (dst + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = np.where(i1 > i0, src - i0, 0.0)
    return i0, i1, lam


def _per_dim(op, name, v, nd, cast):
    if isinstance(v, (tuple, list)):
        if len(v) != nd:
            raise ValueError(f"{op}: {name} {tuple(v)} has {len(v)} entries but the input has "
                             f"{nd} spatial dims")
        return tuple(cast(e) for e in v)
    return (cast(v),) * nd


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize the spatial dims of input (N, C, *spatial) to ``size`` or ⌊in·scale_factor⌋.

    Modes: "nearest" (src = ⌊dst·in/out⌋), "nearest-exact" (src = ⌊(dst + ½)·in/out⌋),
    "linear" (3-D input), "bilinear" (4-D), "trilinear" (5-D), "bicubic" (4-D, Keys' cubic
    convolution with a = −0.75 on the 4×4 neighbourhood, edge indices clamped, as PyTorch),
    "area" (adaptive average pooling to the output size). Linear and cubic modes use
    PyTorch's coordinates: align_corners=True maps corner pixel centres onto each other,
    src = dst·(in − 1)/(out − 1); align_corners=False (default) maps pixel areas,
    src = (dst + ½)·scale − ½ (clamped at 0 for the linear modes) with scale =
    1/scale_factor when given, else in/out.
    """
    op = "interpolate"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (3, 4, 5):
        raise ValueError(f"{op}: expected a 3-D, 4-D or 5-D input (N, C, *spatial), got shape "
                         f"{tuple(input.shape)}")
    nd = input.ndim - 2
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError(f"{op}: align_corners can only be set with the interpolating modes "
                             "linear | bilinear | bicubic | trilinear")
        if mode == "area":
            require_float(input, op)
    elif mode in _LINEAR_MODES:
        if input.ndim != _LINEAR_MODES[mode]:
            raise ValueError(f"{op}: mode {mode!r} needs a {_LINEAR_MODES[mode]}-D input, got "
                             f"shape {tuple(input.shape)}")
        align_corners = bool(align_corners)
        require_float(input, op)
    else:
        raise NotImplementedError(f"{op}: mode {mode!r} is not implemented (available: nearest, "
                                  "nearest-exact, linear, bilinear, bicubic, trilinear, area)")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: exactly one of size and scale_factor must be given")
    in_sizes = input.shape[2:]
    if size is not None:
        out_sizes = _per_dim(op, "size", size, nd, int)
        scales = (None,) * nd
    else:
        scales = _per_dim(op, "scale_factor", scale_factor, nd, float)
        if any(not math.isfinite(sc) or sc <= 0 for sc in scales):
            raise ValueError(f"{op}: scale_factor must be positive, got {scale_factor!r}")
        out_sizes = tuple(int(math.floor(n * sc)) for n, sc in zip(in_sizes, scales))
        if recompute_scale_factor:
            scales = (None,) * nd
    if any(o < 1 for o in out_sizes):
        raise ValueError(f"{op}: output size {out_sizes} must be positive (input spatial size "
                         f"{tuple(in_sizes)})")
    plan = []
    for i, (n_in, n_out, sc) in enumerate(zip(in_sizes, out_sizes, scales)):
        if n_in == n_out and sc in (None, 1.0):
            continue
        if mode.startswith("nearest"):
            plan.append((i + 2, "nearest", _nearest_source(n_in, n_out, sc,
                                                           mode == "nearest-exact")))
        elif mode == "area":
            if n_in == n_out:
                continue
            plan.append((i + 2, "taps", _area_source(n_in, n_out)))
        elif mode == "bicubic":
            plan.append((i + 2, "taps", _cubic_source(n_in, n_out, sc, align_corners)))
        else:
            plan.append((i + 2, "linear", _linear_source(n_in, n_out, sc, align_corners)))
    if not plan:
        return input.clone()
    if mode == "nearest":
        factors = tuple(_integer_factor(n_in, n_out, sc)
                        for n_in, n_out, sc in zip(in_sizes, out_sizes, scales))
        if all(f is not None for f in factors):
            return NearestUpsampleInt.apply(input, factors)
    return Interpolate.apply(input, tuple(plan))


def _integer_factor(n_in, n_out, scale):
    """f when nearest resampling n_in → n_out is "repeat each element f times", else None.

    Checked on the very source indices the general path would use, so the fast path cannot
    disagree with it (e.g. a scale_factor of 2.0000001 that still gives n_out = 2 n_in).
    """
    if n_out % n_in:
        return None
    f = n_out // n_in
    src = _nearest_source(n_in, n_out, scale, False)
    return f if np.array_equal(src, np.arange(n_out) // f) else None


def _native_resample(a, factors):
    """minigen._C when it can upsample ``a`` (a 4-D numpy float32/float64 array, 2 factors) —
    the module's upsample_nearest2d(_backward) — else None."""
    if type(a) is not np.ndarray or a.ndim != 4 or len(factors) != 2 or \
            a.dtype not in (np.float32, np.float64) or not a.dtype.isnative:
        return None
    from .. import _native
    return _native.module() if _native.available() else None


class NearestUpsampleInt(Function):
    """Nearest upsampling by integer factors f_d per spatial dim (the general Interpolate's
    fast path): y[n, c, f_1 i_1 + a_1, ...] = x[n, c, i_1, ...] for 0 ≤ a_d < f_d;
    ∂x[n, c, i_1, ...] = Σ_{a} g[n, c, f_1 i_1 + a_1, ...].

    Forward is one broadcast write into y viewed as (N, C, H, f_1, W, f_2, ...); backward
    reduces each factor axis of g viewed the same way with f − 1 strided adds (numpy's
    multi-axis sum over such views is several times slower). A gather and a scatter-add
    (np.add.at) do the same work ~20× slower. For 2-D numpy float32/float64 images the native
    extension does both passes (csrc/resample.cpp): E2's two ×2 upsamplings went from 4.9–6.4
    to 1.6–2.4 ms per forward (bench_e2_unet.py --profile-forward, a few runs each); these
    numpy lines stay the definition and the path for everything else.
    """
    saves_inputs = False

    def forward(self, x, factors):
        xp = xp_of(x)
        self.factors = factors
        native = _native_resample(x, factors)
        if native is not None:
            out = (x.shape[0], x.shape[1], x.shape[2] * factors[0], x.shape[3] * factors[1])
            y = np.empty(out, dtype=x.dtype)
            native.upsample_nearest2d(np.ascontiguousarray(x), y, *factors)
            return y
        split, index = x.shape[:2], (slice(None), slice(None))
        for n, f in zip(x.shape[2:], factors):
            split += (n, f)
            index += (slice(None), None)
        y = xp.empty(split, dtype=x.dtype)
        y[...] = x[index]
        return y.reshape(x.shape[:2] + tuple(n * f for n, f in zip(x.shape[2:], factors)))

    def backward(self, g):
        native = _native_resample(g, self.factors)
        if native is not None:
            f = self.factors
            gx = np.empty(g.shape[:2] + (g.shape[2] // f[0], g.shape[3] // f[1]), dtype=g.dtype)
            native.upsample_nearest2d_backward(np.ascontiguousarray(g), gx, *f)
            return gx
        split = g.shape[:2]
        for n, f in zip(g.shape[2:], self.factors):
            split += (n // f, f)
        g = g.reshape(split)
        for d in reversed(range(len(self.factors))):  # last dim first: the rest is smaller
            f, ax = self.factors[d], 3 + 2 * d
            if f == 1:
                g = g.reshape(g.shape[:ax] + g.shape[ax + 1:])
                continue
            take = lambda j: g[(slice(None),) * ax + (j,)]  # noqa: E731
            acc = take(0) + take(1)
            for j in range(2, f):
                acc += take(j)
            g = acc
        return g


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Alias of ``interpolate`` (PyTorch's deprecated F.upsample)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# ---------------------------------------------------------------------- pixel shuffle
def pixel_shuffle(input, upscale_factor):
    """(*, C·r², H, W) → (*, C, H·r, W·r): out[c, h·r + i, w·r + j] = in[c·r² + i·r + j, h, w].
    A pure rearrangement (reshape, permute, reshape), so its backward is the inverse one."""
    op = "pixel_shuffle"
    r = _factor(op, "upscale_factor", upscale_factor)
    if not isinstance(input, Tensor) or input.ndim < 3:
        raise RuntimeError(f"{op}: expected an input of at least 3 dims (*, C, H, W), got "
                           f"{tuple(getattr(input, 'shape', ()))}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"{op}: the channel dim of the input of shape {tuple(input.shape)} "
                           f"({c}) is not divisible by upscale_factor² = {r * r}")
    nl = len(lead)
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    perm = list(range(nl + 1)) + [nl + 3, nl + 1, nl + 4, nl + 2]
    return x.permute(*perm).reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H·r, W·r) → (*, C·r², H, W), the inverse of ``pixel_shuffle``."""
    op = "pixel_unshuffle"
    r = _factor(op, "downscale_factor", downscale_factor)
    if not isinstance(input, Tensor) or input.ndim < 3:
        raise RuntimeError(f"{op}: expected an input of at least 3 dims (*, C, H, W), got "
                           f"{tuple(getattr(input, 'shape', ()))}")
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"{op}: the spatial size {h}x{w} of the input is not divisible by "
                           f"downscale_factor = {r}")
    nl = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    perm = list(range(nl + 1)) + [nl + 2, nl + 4, nl + 1, nl + 3]
    return x.permute(*perm).reshape(*lead, c * r * r, h // r, w // r)


def _factor(op, name, r):
    if not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {r!r}")
    return int(r)
