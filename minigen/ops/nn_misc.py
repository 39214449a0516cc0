"""Layer helpers of ``nn.functional`` that are not losses, pools or norms: dropout, embedding,
normalize.
"""
from __future__ import annotations

import numbers

from .. import dtypes
from ..autograd.function import Function
from ..autograd.grad_mode import value_checks
from ..backend import xp_of
from ..random import seed_for
from ..tensor import Tensor
from ._util import norm_dim, require_float
from .indexing import _add_at

__all__ = ["dropout", "embedding", "normalize"]


class Dropout(Function):
    """y = x ⊙ m, m_i = 1/(1 − p) with probability 1 − p, else 0 (inverted dropout: E[y] = x);
    dx = g ⊙ m."""
    saves_inputs = False

    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, g):
        return g * self.mask


def dropout(input, p=0.5, training=True, inplace=False, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1 − p) (identity when
    not training or p = 0). The mask comes from ``generator`` (a ``minigen.Generator`` on the
    input's device) or the device's default generator, so seeded runs repeat."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p!r}")
    if not training or p == 0:
        return input
    require_float(input, "dropout")
    rng = seed_for(input.device, generator)
    xp = xp_of(input.data)
    if p == 1:
        mask = xp.zeros(input.shape, dtype=input.dtype)
    else:
        keep = rng.random(input.shape, dtype=xp.float32) >= p
        # the scale as a scalar of the input's dtype: a kernel argument, not an upload
        mask = keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    if inplace:
        return input._inplace_from(lambda a: Dropout.apply(a, mask))
    return Dropout.apply(input, mask)


class Embedding(Function):
    """y[..., :] = W[idx[...], :];  dW[v] = Σ_{idx = v} g (scatter-add, repeated indices
    accumulate), dW[padding_idx] = 0."""
    saves_inputs = False

    def forward(self, weight, idx, padding_idx):
        self.idx, self.shape, self.padding_idx = idx, weight.shape, padding_idx
        return weight[idx]

    def backward(self, g):
        xp = xp_of(g)
        gw = xp.zeros(self.shape, dtype=g.dtype)
        _add_at(xp, gw, self.idx.reshape(-1), g.reshape(-1, self.shape[1]))
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input`` of any
    shape → (*input.shape, dim). The row ``padding_idx`` (may be negative) gets no gradient.
    Indices outside [0, num_embeddings) raise IndexError; on CUDA that check synchronises, so
    it runs only under ``minigen.debug_checks()`` / anomaly detection (``grad_mode``)."""
    op = "embedding"
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{op}: input and weight must be Tensors")
    if input.dtype.kind not in "iu":
        raise TypeError(f"{op}: input must hold integer indices, got dtype {input.dtype}")
    if weight.ndim != 2:
        raise RuntimeError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                           f"{tuple(weight.shape)}")
    if input.device is not weight.device:
        raise RuntimeError(f"{op}: input is on {input.device} but weight is on {weight.device}")
    v = weight.shape[0]
    if padding_idx is not None:
        if not isinstance(padding_idx, numbers.Integral) or not -v <= padding_idx < v:
            raise ValueError(f"{op}: padding_idx must be within num_embeddings ({v}), got "
                             f"{padding_idx!r}")
        padding_idx = int(padding_idx) % v
    if input.numel() and value_checks(input.device):   # on CUDA a sync: debug mode only
        lo, hi = int(input.data.min()), int(input.data.max())
        if lo < 0 or hi >= v:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{op}: index {bad} is out of range for {v} embeddings")
    return Embedding.apply(weight, input.data, padding_idx)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(‖x‖_p, eps) along ``dim``, composed as x / max(Σ|x|^p, eps^p)^(1/p) so that a
    zero vector gets a zero (not NaN) gradient; p = inf uses max |x|."""
    op = "normalize"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if not dtypes.is_floating(input.dtype):
        raise TypeError(f"{op}: expected a floating point tensor, got dtype {input.dtype}")
    if not isinstance(p, numbers.Real) or p <= 0:
        raise ValueError(f"{op}: p must be a positive number, got {p!r}")
    d = norm_dim(dim, input.ndim, op)
    if p == float("inf"):
        return input / input.abs().amax(d, keepdim=True).clamp(min=eps)
    if p == 2:
        s = (input * input).sum(d, keepdim=True)
    else:
        s = (input.abs() ** p).sum(d, keepdim=True)
    s = s.clamp(min=float(eps) ** p)
    return input / (s.sqrt() if p == 2 else s ** (1.0 / p))
