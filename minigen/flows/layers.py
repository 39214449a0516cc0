"""Flow layers beyond Glow's three (``minigen.nn.ActNorm``, ``InvConv2dLU``, ``AffineCoupling``).
All map data → latent in ``forward`` and return (out, log_det (N,)); ``inverse`` returns the
input and the negated log-det. D below is the number of elements of one example.

    MaskedAffineCoupling  (RealNVP) with a binary mask m (1: conditioned on, 0: transformed):
                          (s̃, t) = NN(m ⊙ x),  s = a ⊙ tanh(s̃) ⊙ (1 − m),  t ← t ⊙ (1 − m)
                          y = x ⊙ exp(s) + t,   log_det = Σ s
                          (tanh bounds the log-scale by the learned a: no exp blow-up)
    Squeeze               (C, H, W) → (4C, H/2, W/2), each 2×2 patch into channels; log_det 0
    LogitTransform(α)     y = logit(p), p = α + (1 − 2α) x for x ∈ [0, 1]:
                          log_det = Σ [log(1 − 2α) − log p − log(1 − p)]
    ScalarAffine(a, b)    y = a x + b,  log_det = D log|a|
    ExpTransform          the data are x = exp(z): forward z = log x,  log_det = −Σ log x
    InvertibleLinear(W)   y = W x per position (a full matrix, no LU: log_det = M log|det W|
                          from ``minigen.linalg.slogdet``, whose gradient is M W⁻ᵀ)
    Split                 Glow's split / RealNVP's factor-out: h → (h₁, ε) with h₂ ~ p(h₂|h₁)
                          = N(μ(h₁), σ(h₁)²) (learned, zero-initialised: starts at N(0, I)),
                          ε = (h₂ − μ)/σ, log_det = −Σ log σ; a fixed N(0, I) without the prior

Masks: ``checkerboard_mask(c, h, w, parity)``, ``channel_mask(c, parity)``,
``vector_mask(d, parity)``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import creation, linalg
from ..dtypes import get_default_dtype
from ..nn import functional as F
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..ops.shape import cat
from ..tensor import tensor as _tensor
from .base import Flow, zero_logdet

__all__ = ["MaskedAffineCoupling", "Squeeze", "LogitTransform", "ScalarAffine", "ExpTransform",
           "InvertibleLinear", "Split", "checkerboard_mask", "channel_mask", "vector_mask"]


def _event_sum(t):
    return t.reshape(t.shape[0], -1).sum(1)


def checkerboard_mask(c, h, w, parity=0):
    """(c, h, w) with m = 1 where (i + j + parity) is even."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    m = ((i + j + parity) % 2 == 0).astype(np.float64)
    return np.broadcast_to(m, (c, h, w)).copy()


def channel_mask(c, parity=0):
    """(c, 1, 1): the first half of the channels conditioned on (parity 0), or the second."""
    if c % 2:
        raise ValueError(f"channel_mask: needs an even channel count, got {c}")
    m = np.zeros((c, 1, 1))
    m[: c // 2] = 1.0
    return m if parity == 0 else 1.0 - m


def vector_mask(d, parity=0):
    """(d,) alternating 1, 0, 1, ... (parity 0) or 0, 1, 0, ..."""
    return ((np.arange(d) + parity) % 2 == 0).astype(np.float64)


class MaskedAffineCoupling(Flow):
    """RealNVP's affine coupling with a binary mask (module doc). ``net`` maps (N, *event) to
    (N, 2·C, ...) (images) or (N, 2·D) (vectors): log-scale and shift, in that order along
    dim 1. Give it a zero-initialised last layer to start at the identity."""

    def __init__(self, mask, net, dtype=None, device=None):
        super().__init__()
        mask = np.asarray(mask, dtype=np.float64)
        if not np.isin(mask, (0.0, 1.0)).all() or mask.all() or not mask.any():
            raise ValueError("MaskedAffineCoupling: the mask must be 0/1 with both values")
        dtype = dtype if dtype is not None else get_default_dtype()
        self.register_buffer("mask", _tensor(mask, dtype=dtype, device=device))
        scale_shape = (mask.shape[0],) + (1,) * (mask.ndim - 1)
        self.scale = Parameter(creation.ones(*scale_shape, dtype=dtype, device=device))
        self.net = net

    def _scale_shift(self, x):
        m = self.mask
        if tuple(x.shape[1:2]) != tuple(m.shape[:1]) or x.ndim != m.ndim + 1:
            raise ValueError(f"MaskedAffineCoupling: expected input (N, {m.shape[0]}, ...) "
                             f"with {m.ndim} event dims (the mask's shape {tuple(m.shape)}), "
                             f"got shape {tuple(x.shape)}")
        h = self.net(x * m)
        want = (x.shape[0], 2 * x.shape[1]) + tuple(x.shape[2:])
        if tuple(h.shape) != want:
            raise ValueError(f"MaskedAffineCoupling: net(x) must have shape {want} (log-scale "
                             f"and shift), got {tuple(h.shape)}")
        raw, t = h.chunk(2, dim=1)
        free = 1.0 - m
        return self.scale * raw.tanh() * free, t * free

    def forward(self, x):
        s, t = self._scale_shift(x)
        return x * s.exp() + t, _event_sum(s)

    def inverse(self, y):
        s, t = self._scale_shift(y)     # m ⊙ y = m ⊙ x: the same s, t as forward
        return (y - t) * (-s).exp(), -_event_sum(s)


class Squeeze(Flow):
    """(N, C, H, W) → (N, 4C, H/2, W/2) (pixel_unshuffle by 2); volume preserving."""

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"Squeeze: expected (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"Squeeze: the spatial size {x.shape[2]}x{x.shape[3]} must be even "
                             "(each 2x2 patch becomes 4 channels)")
        return F.pixel_unshuffle(x, 2), zero_logdet(x)

    def inverse(self, z):
        if z.ndim != 4 or z.shape[1] % 4:
            raise ValueError(f"Squeeze.inverse: expected (N, 4C, H, W), got {tuple(z.shape)}")
        return F.pixel_shuffle(z, 2), zero_logdet(z)


class LogitTransform(Flow):
    """x ∈ [0, 1] → logit(α + (1 − 2α) x) (RealNVP's pre-processing), with its exact
    log-det Σ [log(1 − 2α) − log p − log(1 − p)]."""

    def __init__(self, alpha=0.05):
        super().__init__()
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must be in (0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def _logdet(self, p):
        d = int(np.prod(p.shape[1:]))
        return (d * math.log(1.0 - 2.0 * self.alpha)
                - _event_sum(p.log()) - _event_sum((1.0 - p).log()))

    def forward(self, x):
        p = x * (1.0 - 2.0 * self.alpha) + self.alpha
        return p.log() - (1.0 - p).log(), self._logdet(p)

    def inverse(self, y):
        p = y.sigmoid()
        return (p - self.alpha) / (1.0 - 2.0 * self.alpha), -self._logdet(p)


class ScalarAffine(Flow):
    """y = a x + b (a ≠ 0), log_det = D log|a|: e.g. Glow's x − ½ pre-processing."""

    def __init__(self, scale=1.0, shift=0.0):
        super().__init__()
        if scale == 0:
            raise ValueError("ScalarAffine: the scale must be nonzero")
        self.a, self.b = float(scale), float(shift)

    def _ld(self, x, sign):
        d = int(np.prod(x.shape[1:]))
        return zero_logdet(x) + sign * d * math.log(abs(self.a))

    def forward(self, x):
        return x * self.a + self.b, self._ld(x, 1.0)

    def inverse(self, y):
        return (y - self.b) / self.a, self._ld(y, -1.0)


class ExpTransform(Flow):
    """Data x = exp(z) > 0: forward z = log x with log_det = −Σ log x; inverse x = exp(z),
    log_det = Σ z."""

    def forward(self, x):
        z = x.log()
        return z, -_event_sum(z)

    def inverse(self, z):
        return z.exp(), _event_sum(z)


class InvertibleLinear(Flow):
    """y = W x over dim 1 of (N, C, *) (every position), W a full C×C parameter (Glow's 1×1
    convolution without the LU form); log_det = M log|det W| (M positions) from
    ``linalg.slogdet``; the inverse uses ``linalg.inv``."""

    def __init__(self, weight):
        super().__init__()
        w = weight if hasattr(weight, "data") and hasattr(weight, "grad") else None
        self.weight = Parameter(w.detach() if w is not None else _tensor(np.asarray(weight)))
        if self.weight.ndim != 2 or self.weight.shape[0] != self.weight.shape[1]:
            raise ValueError(f"InvertibleLinear: W must be square, got {tuple(self.weight.shape)}")

    def _apply(self, x, w):
        c = w.shape[0]
        if x.ndim < 2 or x.shape[1] != c:
            raise ValueError(f"InvertibleLinear: expected input (N, {c}, *), got shape "
                             f"{tuple(x.shape)}")
        return (w @ x.movedim(1, -1).unsqueeze(-1)).squeeze(-1).movedim(-1, 1)

    def _ld(self, x, sign):
        m = int(np.prod(x.shape[2:])) if x.ndim > 2 else 1
        return linalg.slogdet(self.weight)[1].expand(x.shape[0]) * (sign * m)

    def forward(self, x):
        return self._apply(x, self.weight), self._ld(x, 1.0)

    def inverse(self, y):
        return self._apply(y, linalg.inv(self.weight)), self._ld(y, -1.0)


class Split(Module):
    """Factor out half the channels (module doc). ``prior`` (a zero-initialised network from
    h₁ (N, C/2, ...) to (N, C, ...): μ and log σ) or None for a fixed N(0, I)."""

    def __init__(self, channels, prior=None):
        super().__init__()
        if channels % 2:
            raise ValueError(f"Split: needs an even channel count, got {channels}")
        self.channels = int(channels)
        self.prior = prior

    def forward(self, h):
        if h.shape[1] != self.channels:
            raise ValueError(f"Split: expected (N, {self.channels}, ...), got {tuple(h.shape)}")
        h1, h2 = h.chunk(2, dim=1)
        if self.prior is None:
            return h1, h2, zero_logdet(h)
        mean, log_std = self.prior(h1).chunk(2, dim=1)
        return h1, (h2 - mean) * (-log_std).exp(), -_event_sum(log_std)

    def inverse(self, h1, eps):
        if self.prior is None:
            return cat([h1, eps], dim=1)
        mean, log_std = self.prior(h1).chunk(2, dim=1)
        return cat([h1, mean + log_std.exp() * eps], dim=1)
