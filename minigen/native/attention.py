"""attention, native implementation: the GEMM of csrc/gemm.cpp (``native/gemm.py``) for the
five matrix products, C++ for the softmax pieces between them (``csrc/attention.cpp``), a few
heads at a time.

Same functions and signatures as ``minigen/reference/attention.py`` (read the math there).
The batch of B heads is walked in chunks of ``h`` heads such that one chunk's h×L×S block of
scores (float32: 4·L·S bytes per head) stays near the L2 cache: the GEMM writes it, the C++
pass turns it into probabilities in place, and the next GEMM reads it back from cache instead
of memory. Per chunk:

    forward:   S = Q Kᵀ (GEMM) → P, lse (C++: scale, mask, causal, softmax)  → O = P V (GEMM)
    backward:  S = Q Kᵀ → P = exp(c·S + mask − lse) (C++) → dV = Pᵀ dO, dP = dO Vᵀ (GEMM)
               → dS' = c·P ⊙ (dP − rowsum(dO ⊙ O)) (C++) → dQ = dS' K, dK = dS'ᵀ Q (GEMM)

Causal attention skips the key blocks above the diagonal: the queries are cut into
``CAUSAL_BLOCKS`` row blocks, and row block r multiplies only by the keys it can see
(j < end of block r), which saves ≈ (n − 1)/(2n) of the GEMM work.

Threads: one OpenMP pool for everything. A chunk holds at least one head per thread; its GEMMs
split by head (each thread a serial GEMM), the C++ passes by row. (With numpy's OpenBLAS for
the products, an OpenMP team between two BLAS calls fought OpenBLAS's spinning workers for the
cores, so the passes ran on one thread: K3 forward went from ~2 ms to tens of ms otherwise.)

Half-precision inputs run in float32. Dropout is not here (the op layer runs the reference's
math path for dropout_p > 0).
"""
from __future__ import annotations

import numpy as np

from .. import _native
from ..reference.attention import compute_dtype
from .gemm import matmul as _gemm

__all__ = ["attention_forward", "attention_backward"]

CHUNK_BYTES = 1 << 20      # target size of one chunk's score block (float32 L×S per head)
CAUSAL_BLOCKS = 4          # query row blocks for causal attention (when L ≥ 4·64)


def _chunk(B, L, S, itemsize):
    """Heads per chunk: CHUNK_BYTES of scores per thread, and at least one head per thread, so
    that every GEMM of the chunk splits by head (one serial GEMM per thread, no team per
    product)."""
    per_thread = max(1, CHUNK_BYTES // max(1, L * S * itemsize))
    return max(1, min(B, per_thread * _native.module().num_threads()))


def _row_blocks(L, S, is_causal):
    """[(i0, i1, j1)]: query rows i0:i1 see keys 0:j1 (all keys unless causal)."""
    if not is_causal:
        return [(0, L, S)]
    n = CAUSAL_BLOCKS if L >= 64 * CAUSAL_BLOCKS else 1
    edges = [round(L * r / n) for r in range(n + 1)]
    return [(edges[r], edges[r + 1], min(S, edges[r + 1])) for r in range(n)
            if edges[r + 1] > edges[r]]


def _prep(arrays, ct):
    return [None if a is None else np.asarray(a).astype(ct, copy=False) for a in arrays]



def attention_forward(q, k, v, mask, is_causal, scale):
    C = _native.module()
    ct = compute_dtype(q.dtype)
    q, k, v, mask = _prep((q, k, v, mask), ct)
    B, L, _ = q.shape
    S, Ev = k.shape[1], v.shape[2]
    o = np.empty((B, L, Ev), ct)
    lse = np.empty((B, L), ct)
    kt = k.transpose(0, 2, 1)
    h = _chunk(B, L, S, ct.itemsize)
    buf = np.empty(h * L * S, ct)
    for i0, i1, j1 in _row_blocks(L, S, is_causal):
        for b0 in range(0, B, h):
            b1 = min(B, b0 + h)
            s = buf[:(b1 - b0) * (i1 - i0) * j1].reshape(b1 - b0, i1 - i0, j1)
            _gemm(q[b0:b1, i0:i1], kt[b0:b1, :, :j1], s)                    # S = Q Kᵀ
            m = None if mask is None else mask[b0:b1, i0:i1, :j1]
            C.attention_softmax_forward(s, m, lse[b0:b1, i0:i1], is_causal, i0, scale, True)
            _gemm(s, v[b0:b1, :j1], o[b0:b1, i0:i1])                        # O = P V
    return o, lse


def attention_backward(do, q, k, v, o, lse, mask, is_causal, scale, need_dmask=False):
    C = _native.module()
    ct = compute_dtype(q.dtype)
    in_dtypes = (q.dtype, k.dtype, v.dtype)
    do, q, k, v, o, mask = _prep((do, q, k, v, o, mask), ct)
    lse = np.asarray(lse).astype(ct, copy=False)
    B, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    delta = np.einsum("ble,ble->bl", do, o)                                # δ = rowsum(dO ⊙ O)
    dq = np.empty((B, L, E), ct)
    blocks = _row_blocks(L, S, is_causal)
    single = len(blocks) == 1
    # causal row blocks accumulate into dK, dV; keys no query sees (j ≥ L) get 0
    alloc = np.empty if single and blocks[0][2] == S else np.zeros
    dk = alloc((B, S, E), ct)
    dv = alloc((B, S, Ev), ct)
    dmask = np.zeros((B, L, S), ct) if need_dmask else None
    alpha = 1.0 if need_dmask else scale        # fold c of dQ = c dS K into dS unless dS is out
    kt, vt = k.transpose(0, 2, 1), v.transpose(0, 2, 1)
    h = _chunk(B, L, S, ct.itemsize)
    buf_p = np.empty(h * L * S, ct)
    buf_d = np.empty(h * L * S, ct)
    for i0, i1, j1 in blocks:
        for b0 in range(0, B, h):
            b1 = min(B, b0 + h)
            n = (b1 - b0) * (i1 - i0) * j1
            p = buf_p[:n].reshape(b1 - b0, i1 - i0, j1)
            d = buf_d[:n].reshape(b1 - b0, i1 - i0, j1)
            _gemm(q[b0:b1, i0:i1], kt[b0:b1, :, :j1], p)                    # S = Q Kᵀ
            m = None if mask is None else mask[b0:b1, i0:i1, :j1]
            C.attention_softmax_recompute(p, m, lse[b0:b1, i0:i1], is_causal, i0, scale, True)
            pt = p.transpose(0, 2, 1)
            _gemm(do[b0:b1, i0:i1], vt[b0:b1, :, :j1], d)                   # dP = dO Vᵀ
            C.attention_softmax_backward(p, d, delta[b0:b1, i0:i1], alpha, True)  # α P⊙(dP−δ)
            _gemm(d, k[b0:b1, :j1], dq[b0:b1, i0:i1])                       # dQ = dS' K
            dt = d.transpose(0, 2, 1)
            if single:
                _gemm(pt, do[b0:b1], dv[b0:b1, :j1])                        # dV = Pᵀ dO
                _gemm(dt, q[b0:b1], dk[b0:b1, :j1])                         # dK = dS'ᵀ Q
            else:                                                            # accumulate
                _gemm(pt, do[b0:b1, i0:i1], dv[b0:b1, :j1], accumulate=True)
                _gemm(dt, q[b0:b1, i0:i1], dk[b0:b1, :j1], accumulate=True)
            if need_dmask:
                dmask[b0:b1, i0:i1, :j1] = d
    if need_dmask:
        dq *= ct.type(scale)
        dk *= ct.type(scale)
    return (dq.astype(in_dtypes[0], copy=False), dk.astype(in_dtypes[1], copy=False),
            dv.astype(in_dtypes[2], copy=False), dmask)
