"""``MultiheadAttention``: PyTorch's module, names and semantics, on minigen's fused attention.

    head_h = Attention(Q W_q,hᵀ, K W_k,hᵀ, V W_v,hᵀ),   out = concat(head_1 … head_H) W_oᵀ + b_o

Parameters as in ``torch.nn.MultiheadAttention``: ``in_proj_weight`` (3E, E) and
``in_proj_bias`` (3E,) when key and value have the embedding dim E; otherwise
``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim) and
``in_proj_weight`` None; ``out_proj`` a ``Linear(E, E)``; ``bias_k``, ``bias_v`` (1, 1, E) with
``add_bias_kv``. Initialisation as PyTorch: xavier_uniform projections, zero biases,
xavier_normal bias_k / bias_v, ``out_proj.weight`` as a Linear.

Masks follow the module's convention (the opposite of ``scaled_dot_product_attention``'s
boolean mask): a boolean ``attn_mask`` (L, S) or (N·H, L, S) and ``key_padding_mask`` (N, S)
are True where attention is NOT allowed; float masks are added to the scores. Both merge
into one additive mask.

``need_weights=True`` computes the weights explicitly (softmax(c·QKᵀ + mask), dropout in
training) and returns them averaged over heads (N, L, S) unless ``average_attn_weights=False``
(N, H, L, S). ``need_weights=False`` runs the fused ``scaled_dot_product_attention`` and
returns None for the weights. ``is_causal`` is a hint that ``attn_mask`` is the causal mask (it
requires ``attn_mask``, as in PyTorch); with no weights and no padding mask the fused causal
path runs.
"""
from __future__ import annotations

import math

import numpy as np

from .. import creation
from ..ops import attention as _attn
from ..tensor import Tensor
from . import functional as F
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention"]


def _additive(mask, dtype, what):
    """A boolean mask (True = not allowed) as 0 / −inf, or a float mask as is."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {what} must be a Tensor or None, got "
                        f"{type(mask).__name__}")
    if mask.data.dtype == np.bool_:
        zeros = creation.zeros(*mask.shape, dtype=dtype, device=mask.device)
        return zeros.masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim = int(kdim) if kdim is not None else self.embed_dim
        self.vdim = int(vdim) if vdim is not None else self.embed_dim
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self.head_dim = self.embed_dim // self.num_heads
        self.add_zero_attn = bool(add_zero_attn)
        E = self.embed_dim
        kw = {"dtype": dtype, "device": device}
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(creation.empty(3 * E, E, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(creation.empty(E, E, **kw))
            self.k_proj_weight = Parameter(creation.empty(E, self.kdim, **kw))
            self.v_proj_weight = Parameter(creation.empty(E, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(creation.empty(3 * E, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(creation.empty(1, 1, E, **kw))
            self.bias_v = Parameter(creation.empty(1, 1, E, **kw))
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    # ------------------------------------------------------------------------------ forward
    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise RuntimeError(f"MultiheadAttention: query, key and value must all be 3-D "
                               f"(batched) or 2-D (unbatched), got shapes {tuple(query.shape)},"
                               f" {tuple(key.shape)}, {tuple(value.shape)}")
        if not batched:                     # (L, E) → (L, 1, E)
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:               # (N, L, E) → (L, N, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        L, N, E = query.shape
        S = key.shape[0]
        H, hd = self.num_heads, self.head_dim
        if E != self.embed_dim:
            raise RuntimeError(f"MultiheadAttention: query has embedding dim {E}, expected "
                               f"{self.embed_dim}")
        if key.shape[:2] != value.shape[:2] or key.shape[1] != N:
            raise RuntimeError(f"MultiheadAttention: key {tuple(key.shape)} and value "
                               f"{tuple(value.shape)} must share (S, N) with N = {N}")
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: is_causal is a hint that attn_mask is the "
                               "causal mask; pass attn_mask too (as in PyTorch)")
        dt = query.dtype
        attn_mask = _additive(attn_mask, dt, "attn_mask")
        key_padding_mask = _additive(key_padding_mask, dt, "key_padding_mask")
        if attn_mask is not None:
            if attn_mask.ndim == 2:
                if tuple(attn_mask.shape) != (L, S):
                    raise RuntimeError(f"MultiheadAttention: 2-D attn_mask must be ({L}, {S}),"
                                       f" got {tuple(attn_mask.shape)}")
                attn_mask = attn_mask.reshape(1, 1, L, S)
            elif attn_mask.ndim == 3:
                if tuple(attn_mask.shape) != (N * H, L, S):
                    raise RuntimeError(f"MultiheadAttention: 3-D attn_mask must be "
                                       f"({N * H}, {L}, {S}), got {tuple(attn_mask.shape)}")
                attn_mask = attn_mask.reshape(N, H, L, S)
            else:
                raise RuntimeError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got "
                                   f"{attn_mask.ndim}-D")
        if key_padding_mask is not None and tuple(key_padding_mask.shape) != (N, S):
            raise RuntimeError(f"MultiheadAttention: key_padding_mask must be ({N}, {S}), got "
                               f"{tuple(key_padding_mask.shape)}")

        q, k, v = self._project(query, key, value)            # (L, N, E), (S, N, E), (S, N, E)
        if self.bias_k is not None:                           # one more key/value position
            k = F_cat([k, self.bias_k.expand(1, N, E)], 0)
            v = F_cat([v, self.bias_v.expand(1, N, E)], 0)
            attn_mask = _pad_last(attn_mask)
            key_padding_mask = _pad_last(key_padding_mask)
            S += 1
        # (L, N, E) → (N, H, L, hd)
        q = q.reshape(L, N, H, hd).permute(1, 2, 0, 3)
        k = k.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        v = v.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        if self.add_zero_attn:                                # a zero key/value position
            zeros = creation.zeros(N, H, 1, hd, dtype=dt, device=q.device)
            k = F_cat([k, zeros], 2)
            v = F_cat([v, zeros], 2)
            attn_mask = _pad_last(attn_mask)
            key_padding_mask = _pad_last(key_padding_mask)
            S += 1
        mask = attn_mask
        if key_padding_mask is not None:
            kpm = key_padding_mask.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        p = self.dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(hd)
        if need_weights:
            scores = (q * scale) @ k.transpose(-1, -2)         # (N, H, L, S)
            if mask is not None:
                scores = scores + mask
            weights = F.softmax(scores, dim=-1)
            dropped = F.dropout(weights, p, True) if p > 0 else weights
            out = dropped @ v                                  # (N, H, L, hd)
        else:
            causal = bool(is_causal) and key_padding_mask is None and self.bias_k is None \
                and not self.add_zero_attn
            out = _attn.scaled_dot_product_attention(q, k, v, None if causal else mask,
                                                     dropout_p=p, is_causal=causal)
            weights = None
        out = out.permute(2, 0, 1, 3).reshape(L, N, E)        # (L, N, E)
        out = self.out_proj(out)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)                  # (N, L, S)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


def F_cat(tensors, dim):
    from ..ops.shape import cat
    return cat(tensors, dim)


def _pad_last(mask):
    """Append a zero (attend) column to an additive mask's last dim."""
    if mask is None:
        return None
    from ..ops.shape import pad
    return pad(mask, (0, 1))
