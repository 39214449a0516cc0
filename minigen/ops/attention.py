"""scaled_dot_product_attention: the attention kernel family as one fused primitive.

    o = softmax(c · Q Kᵀ + M) V,   c = 1/√E unless ``scale`` is given,

with PyTorch's semantics: q (..., L, E), k (..., S, E), v (..., S, Ev); leading dims broadcast;
``attn_mask`` boolean (True = takes part) or additive float, broadcastable to (..., L, S);
``is_causal`` keeps key j for query i only when j ≤ i (top-left aligned, as
``torch.tril(ones(L, S))``); dropout on the attention probabilities whenever dropout_p > 0
(PyTorch's functional form has no training flag: callers pass 0.0 in evaluation).

The primitive flattens the broadcast leading dims into one batch dim B and hands (B, L, E)
arrays to the implementation ``minigen.dispatch`` picks (``reference``, ``native``, ``triton``;
see ``minigen/reference/attention.py`` for the math of forward and backward). The forward saves
the output and the row logsumexp; the backward recomputes the probabilities tile by tile from
them (no L×S matrix is kept between forward and backward). Gradients of broadcast inputs are
summed back to their shapes; an additive float mask that requires grad gets ∂ℓ/∂mask = dS.

Dropout (dropout_p > 0) runs the reference's math path on every device: the keep mask of
shape (..., L, S) comes from minigen's RNG (``generator=`` or the device's default generator,
so seeded runs repeat) and the L×S probabilities are materialised. The fused kernels have no
dropout.

Fully-masked rows (a boolean mask that masks every key of a query, or −inf everywhere): the
output row is 0 and its gradients are 0, as in PyTorch's fused CPU kernel (the plain math
would give NaN).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dispatch, dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..random import seed_for
from ..tensor import Tensor
from ._util import unbroadcast

__all__ = ["scaled_dot_product_attention"]

_OP = "scaled_dot_product_attention"


def _flatten(xp, a, batch, B, tail=None):
    """``a`` broadcast to batch + tail (default: its own last two dims) and viewed as
    (B,) + tail, on numpy and CuPy alike: a view whenever the batch dims collapse to one stride
    (broadcast dims keep stride 0, so a mask or k/v shared across the batch is never copied);
    a copy only when they do not (e.g. a mask broadcast over the heads but not the batch)."""
    tail = tuple(a.shape[-2:]) if tail is None else tuple(tail)
    full = xp.broadcast_to(a, tuple(batch) + tail)
    shape = (B,) + tail
    nb = len(batch)
    # dims (n, stride) of the batch, outer to inner; size-1 dims place no constraint. They
    # merge into one dim of stride s_inner iff s_outer = s_inner · n_inner at every step.
    dims = [(n, st) for n, st in zip(full.shape[:nb], full.strides[:nb]) if n != 1]
    if all(s0 == s1 * n1 for (_, s0), (n1, s1) in zip(dims, dims[1:])):
        stride = dims[-1][1] if dims else 0
        return xp.lib.stride_tricks.as_strided(full, shape=shape,
                                               strides=(stride,) + full.strides[nb:])
    return xp.ascontiguousarray(full).reshape(shape)


class ScaledDotProductAttention(Function):
    """Inputs q, k, v (and an additive float mask, or None), already dtype-checked; see the
    module docstring. ``keep``: None or the dropout keep factors, batch + (L, S)."""
    saves_inputs = (0, 1, 2, 3)
    saves_output = True

    def forward(self, q, k, v, mask, *, batch, is_causal, scale, keep):
        xp = xp_of(q)
        B = int(np.prod(batch)) if batch else 1
        self.shapes = (q.shape, k.shape, v.shape, None if mask is None else mask.shape)
        self.batch, self.B = tuple(batch), B
        q3, k3, v3 = (_flatten(xp, a, batch, B) for a in (q, k, v))
        m3 = None
        if mask is not None:
            LS = (q.shape[-2], k.shape[-2])
            m3 = _flatten(xp, mask, batch, B, LS) if mask.ndim > 2 else \
                xp.broadcast_to(mask, (B,) + LS)
        keep3 = None if keep is None else _flatten(xp, keep, batch, B)
        if keep3 is None:
            impl = dispatch.get_for("attention", q)
            o, lse = impl.attention_forward(q3, k3, v3, m3, is_causal, scale)
        else:
            from ..reference import attention as impl
            o, lse = impl.attention_forward(q3, k3, v3, m3, is_causal, scale, dropout=keep3)
        self.impl, self.saved = impl, (q3, k3, v3, m3, o, lse, keep3)
        self.is_causal, self.scale = is_causal, scale
        return o.reshape(tuple(batch) + o.shape[1:])

    def backward(self, g):
        q3, k3, v3, m3, o, lse, keep3 = self.saved
        xp = xp_of(g)
        do = xp.ascontiguousarray(g.reshape((self.B,) + g.shape[len(self.batch):]))
        need_dmask = len(self.needs_input_grad) > 3 and self.needs_input_grad[3]
        kw = {} if keep3 is None else {"dropout": keep3}
        dq, dk, dv, dm = self.impl.attention_backward(do, q3, k3, v3, o, lse, m3,
                                                      self.is_causal, self.scale, need_dmask,
                                                      **kw)
        qs, ks, vs, ms = self.shapes
        grads = []
        for grad, shape in ((dq, qs), (dk, ks), (dv, vs)):
            grad = grad.reshape(self.batch + grad.shape[1:])
            grads.append(unbroadcast(grad, shape))
        if need_dmask:
            dm = dm.reshape(self.batch + dm.shape[1:])
            grads.append(unbroadcast(dm, ms).astype(q3.dtype, copy=False))
        else:
            grads.append(None)
        return tuple(grads)


def _check(query, key, value, attn_mask, dropout_p, is_causal, scale):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise RuntimeError(f"{_OP}: {name} must have at least 2 dims (…, length, features),"
                               f" got shape {tuple(t.shape)}")
        if not dtypes.is_floating(t.data.dtype):
            raise TypeError(f"{_OP}: {name} must be a floating point tensor, got {t.dtype}")
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(f"{_OP}: query, key and value must have the same dtype, got "
                        f"{query.dtype}, {key.dtype}, {value.dtype}")
    if not (query.device == key.device == value.device):
        raise RuntimeError(f"{_OP}: query, key and value must be on the same device, got "
                           f"{query.device}, {key.device}, {value.device}")
    qs, ks, vs = tuple(query.shape), tuple(key.shape), tuple(value.shape)
    if qs[-1] != ks[-1]:
        raise RuntimeError(f"{_OP}: query's last dim ({qs[-1]}) must equal key's ({ks[-1]}); "
                           f"shapes {qs} and {ks}")
    if ks[-2] != vs[-2]:
        raise RuntimeError(f"{_OP}: key and value must have the same length (dim -2), got "
                           f"shapes {ks} and {vs}")
    try:
        batch = np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2])
    except ValueError:
        raise RuntimeError(f"{_OP}: the leading (batch) dims of query {qs}, key {ks} and value "
                           f"{vs} cannot be broadcast together") from None
    if not isinstance(dropout_p, numbers.Real) or not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{_OP}: dropout_p must be in [0, 1], got {dropout_p!r}")
    if scale is not None and (not isinstance(scale, numbers.Real) or isinstance(scale, bool)):
        raise TypeError(f"{_OP}: scale must be a float or None, got {scale!r}")
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError(f"{_OP}: pass either attn_mask or is_causal=True, not both "
                               "(PyTorch raises here too)")
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{_OP}: attn_mask must be a Tensor or None, got "
                            f"{type(attn_mask).__name__}")
        if attn_mask.device != query.device:
            raise RuntimeError(f"{_OP}: attn_mask is on {attn_mask.device}, query on "
                               f"{query.device}")
        mdt = attn_mask.data.dtype
        if mdt != np.bool_ and not dtypes.is_floating(mdt):
            raise TypeError(f"{_OP}: attn_mask must be boolean or floating point, got {mdt}")
        want = tuple(batch) + (qs[-2], ks[-2])
        ms = tuple(attn_mask.shape)
        try:
            ok = np.broadcast_shapes(ms, want) == want
        except ValueError:
            ok = False
        if not ok:
            raise RuntimeError(f"{_OP}: attn_mask of shape {ms} does not broadcast to "
                               f"(…, L, S) = {want}")
    return tuple(batch)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, *, generator=None):
    """softmax(scale · Q Kᵀ + mask) V, as ``torch.nn.functional.scaled_dot_product_attention``.

    query (…, L, E), key (…, S, E), value (…, S, Ev) → (…, L, Ev); leading dims broadcast.
    attn_mask: bool (True = attend) or additive float, broadcastable to (…, L, S); a float mask
    that requires grad gets a gradient. is_causal: key j visible to query i iff j ≤ i (cannot be
    combined with attn_mask). scale: default 1/√E. dropout_p > 0: dropout on the attention
    probabilities (always applied, as in PyTorch; ``generator`` = a ``minigen.Generator`` for
    the keep mask). A query that sees no key at all gets output 0 and zero gradients.
    """
    batch = _check(query, key, value, attn_mask, dropout_p, is_causal, scale)
    E = query.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    xp = xp_of(query.data)
    ct = (np.dtype(np.float32) if query.data.dtype.itemsize < 4 else query.data.dtype).type
    mask = attn_mask
    if mask is not None and mask.data.dtype == np.bool_:
        # boolean → additive: 0 where True (attend), −inf where False
        add = xp.where(mask.data, ct(0), ct(-np.inf)).astype(ct, copy=False)
        mask = Tensor._wrap(add, query.device)
    keep = None
    if dropout_p > 0:
        rng = seed_for(query.device, generator)
        shape = tuple(batch) + (query.shape[-2], key.shape[-2])
        if dropout_p >= 1:
            keep = xp.zeros(shape, dtype=ct)
        else:
            keep = (rng.random(shape, dtype=xp.float32) >= dropout_p).astype(ct)
            keep *= ct(1.0 / (1.0 - dropout_p))
    return ScaledDotProductAttention.apply(query, key, value, mask, batch=batch,
                                           is_causal=bool(is_causal), scale=scale, keep=keep)
