"""attention, reference implementation: scaled dot-product attention in plain array math.

Versions of this family: this file (numpy/CuPy, the definition and the test oracle, plus a
blocked online-softmax version that spells out what the flash kernel does);
``minigen/native/attention.py`` + ``csrc/attention.cpp`` (CPU: BLAS GEMMs and fused C++
softmax pieces); ``kernels/attention.py`` (Triton flash attention, forward and backward).

Shapes (the op layer has already flattened and broadcast the leading dims into B):
q (B, L, E), k (B, S, E), v (B, S, Ev); mask None or an additive float array that broadcasts to
(B, L, S) (3 dims, size-1 or stride-0 where it is shared; a boolean mask arrives as 0 / −inf).

Forward, one row i of one batch entry (scale c, default 1/√E):

    s_ij = c · q_i·k_j + mask_ij          (−inf where is_causal and j > i: top-left aligned)
    lse_i = log Σ_j exp(s_ij)             (logsumexp; kept for the backward)
    p_ij = exp(s_ij − lse_i)              (softmax)
    o_i = Σ_j p_ij v_j

Backward, given do = ∂ℓ/∂o:

    dv_j = Σ_i p_ij do_i                  (dV = Pᵀ dO)
    dp_ij = do_i · v_j                    (dP = dO Vᵀ)
    δ_i = Σ_j p_ij dp_ij = do_i · o_i     (rowsum(dO ⊙ O): no L×S pass needed)
    ds_ij = p_ij (dp_ij − δ_i)            (softmax backward; also ∂ℓ/∂mask_ij)
    dq_i = c Σ_j ds_ij k_j,  dk_j = c Σ_i ds_ij q_i

Fully-masked rows (every s_ij = −inf): like PyTorch's fused CPU kernel, the output row is 0 and
its gradients are 0 (the math formula would give 0/0 = NaN). We store lse_i = +inf for such a
row, so that the backward's p = exp(s − lse) recomputes as 0 with no special case.

Half-precision inputs are computed in float32 and the outputs cast back; lse is float32
(float64 for float64 inputs).

Work: forward 2 GEMMs, 2·B·L·S·(E + Ev) FLOPs, plus O(B·L·S) exp; backward 5 GEMMs when P is
recomputed from lse (QKᵀ, dO Vᵀ, Pᵀ dO, dS K, dSᵀ Q), 2.5× the forward.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import xp_of

__all__ = ["attention_forward", "attention_backward", "attention_forward_blocked",
           "attention_backward_blocked", "compute_dtype"]


def compute_dtype(dt):
    """float32 for half precision (float16/bfloat16), else the input dtype."""
    return np.dtype(np.float32) if np.dtype(dt).itemsize < 4 else np.dtype(dt)


def _causal(xp, L, S):
    """(L, S) boolean: True where key j may be attended by query i (j ≤ i, top-left)."""
    return xp.arange(S)[None, :] <= xp.arange(L)[:, None]


def _scores(q, k, mask, is_causal, scale):
    """s = c·QKᵀ + mask, −inf above the diagonal when causal; in the compute dtype."""
    xp = xp_of(q)
    ct = compute_dtype(q.dtype)
    s = xp.matmul(q.astype(ct, copy=False), xp.swapaxes(k.astype(ct, copy=False), -1, -2))
    s *= ct.type(scale)
    if mask is not None:
        s += mask.astype(ct, copy=False)
    if is_causal:
        s = xp.where(_causal(xp, s.shape[-2], s.shape[-1]), s, ct.type(-np.inf))
    return s


def _probabilities(s, lse):
    """p = exp(s − lse); rows with lse = +inf (fully masked) give 0."""
    xp = xp_of(s)
    return xp.exp(s - lse[..., None])


def attention_forward(q, k, v, mask, is_causal, scale, *, dropout=None):
    """(o (B, L, Ev) in q's dtype, lse (B, L) in the compute dtype).

    ``dropout``: None, or a (B, L, S) array of keep factors (0 or 1/(1 − p)) multiplied into
    P before P V (PyTorch drops attention probabilities); only this implementation takes it.
    """
    xp = xp_of(q)
    ct = compute_dtype(q.dtype)
    s = _scores(q, k, mask, is_causal, scale)
    m = s.max(axis=-1, keepdims=True)
    m = xp.where(m == -np.inf, ct.type(0), m)          # fully-masked row: avoid −inf − −inf
    e = xp.exp(s - m)
    l = e.sum(axis=-1, keepdims=True)
    lse = xp.where(l > 0, m + xp.log(xp.where(l > 0, l, 1)), ct.type(np.inf))[..., 0]
    p = e / xp.where(l > 0, l, 1)
    if dropout is not None:
        p = p * dropout.astype(ct, copy=False)
    o = xp.matmul(p, v.astype(ct, copy=False))
    return o.astype(q.dtype, copy=False), lse


def attention_backward(do, q, k, v, o, lse, mask, is_causal, scale, need_dmask=False, *,
                       dropout=None):
    """(dq, dk, dv, dmask): dq/dk/dv in the inputs' dtype; dmask (B, L, S) = dS in the compute
    dtype when ``need_dmask`` (the op layer sums it down to the mask's shape), else None."""
    xp = xp_of(q)
    ct = compute_dtype(q.dtype)
    q32, k32, v32 = (a.astype(ct, copy=False) for a in (q, k, v))
    do32, o32 = do.astype(ct, copy=False), o.astype(ct, copy=False)
    p = _probabilities(_scores(q, k, mask, is_causal, scale), lse)
    pd = p if dropout is None else p * dropout.astype(ct, copy=False)
    dv = xp.matmul(xp.swapaxes(pd, -1, -2), do32)                  # dV = P̃ᵀ dO
    dp = xp.matmul(do32, xp.swapaxes(v32, -1, -2))                 # dP̃ = dO Vᵀ
    if dropout is not None:
        dp = dp * dropout.astype(ct, copy=False)                  # through P̃ = P ⊙ keep
    delta = (do32 * o32).sum(axis=-1, keepdims=True)              # δ = rowsum(dO ⊙ O)
    ds = p * (dp - delta)                                          # dS = P ⊙ (dP − δ)
    dq = xp.matmul(ds, k32) * ct.type(scale)                       # dQ = c dS K
    dk = xp.matmul(xp.swapaxes(ds, -1, -2), q32) * ct.type(scale)  # dK = c dSᵀ Q
    return (dq.astype(q.dtype, copy=False), dk.astype(k.dtype, copy=False),
            dv.astype(v.dtype, copy=False), ds if need_dmask else None)


# ----------------------------------------------------------------------------------------
# The blocked version: what the flash kernel computes, one (BLOCK_M × BLOCK_N) tile at a time.
# The L×S matrix never exists; each query block keeps a running max m, a running sum ℓ of
# exp(s − m) and an unnormalised output acc. When a new key block raises the max from m to m',
# the old terms are rescaled by α = exp(m − m'):
#     ℓ ← α ℓ + Σ_j exp(s_j − m'),   acc ← α acc + Σ_j exp(s_j − m') v_j.
# At the end o = acc / ℓ and lse = m + log ℓ. The backward walks key blocks (outer) and query
# blocks (inner), recomputing p = exp(s − lse) per tile: dK, dV accumulate over query blocks;
# dQ accumulates over key blocks (the GPU kernel does dQ in a second pass to avoid atomics).
# ----------------------------------------------------------------------------------------
def _tile_scores(q, k, mask, is_causal, scale, i0, i1, j0, j1):
    xp = xp_of(q)
    ct = q.dtype
    s = xp.matmul(q[:, i0:i1], xp.swapaxes(k[:, j0:j1], -1, -2)) * ct.type(scale)
    if mask is not None:
        s = s + mask[:, i0:i1, j0:j1].astype(ct, copy=False)
    if is_causal:
        keep = xp.arange(j0, j1)[None, :] <= xp.arange(i0, i1)[:, None]
        s = xp.where(keep, s, ct.type(-np.inf))
    return s


def _broadcast_mask(mask, B, L, S):
    if mask is None:
        return None
    return xp_of(mask).broadcast_to(mask, (B, L, S))


def attention_forward_blocked(q, k, v, mask, is_causal, scale, block_m=16, block_n=16):
    """The same (o, lse) as ``attention_forward``, by online softmax over key blocks."""
    xp = xp_of(q)
    ct = compute_dtype(q.dtype)
    q, k, v = (a.astype(ct, copy=False) for a in (q, k, v))
    B, L, _ = q.shape
    S, Ev = k.shape[1], v.shape[2]
    mask = _broadcast_mask(mask, B, L, S)
    o = xp.empty((B, L, Ev), ct)
    lse = xp.empty((B, L), ct)
    for i0 in range(0, L, block_m):
        i1 = min(i0 + block_m, L)
        m = xp.full((B, i1 - i0, 1), -np.inf, ct)      # running max
        ell = xp.zeros((B, i1 - i0, 1), ct)            # running Σ exp(s − m)
        acc = xp.zeros((B, i1 - i0, Ev), ct)           # running Σ exp(s − m) v
        # causal: key blocks entirely right of the diagonal hold only −inf; skip them
        j_end = min(S, i1) if is_causal else S
        for j0 in range(0, j_end, block_n):
            j1 = min(j0 + block_n, S)
            s = _tile_scores(q, k, mask, is_causal, scale, i0, i1, j0, j1)
            m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))
            m_safe = xp.where(m_new == -np.inf, ct.type(0), m_new)
            alpha = xp.exp(m - m_safe)                 # rescales the old terms (0 if m = −inf)
            pt = xp.exp(s - m_safe)
            ell = alpha * ell + pt.sum(axis=-1, keepdims=True)
            acc = alpha * acc + xp.matmul(pt, v[:, j0:j1])
            m = m_new
        ok = ell > 0
        o[:, i0:i1] = xp.where(ok, acc / xp.where(ok, ell, 1), ct.type(0))
        lse[:, i0:i1] = xp.where(ok, m + xp.log(xp.where(ok, ell, 1)), ct.type(np.inf))[..., 0]
    return o, lse


def attention_backward_blocked(do, q, k, v, o, lse, mask, is_causal, scale, need_dmask=False,
                               block_m=16, block_n=16):
    """The same gradients as ``attention_backward``, tile by tile from the saved lse."""
    xp = xp_of(q)
    ct = compute_dtype(q.dtype)
    q, k, v, do, o = (a.astype(ct, copy=False) for a in (q, k, v, do, o))
    B, L, _ = q.shape
    S = k.shape[1]
    mask = _broadcast_mask(mask, B, L, S)
    delta = (do * o).sum(axis=-1)                      # preprocess: δ_i = do_i · o_i
    dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    dmask = xp.zeros((B, L, S), ct) if need_dmask else None
    c = ct.type(scale)
    for j0 in range(0, S, block_n):                    # one program per key block on the GPU
        j1 = min(j0 + block_n, S)
        i_start = (j0 // block_m) * block_m if is_causal else 0   # rows above see none of it
        for i0 in range(i_start, L, block_m):
            i1 = min(i0 + block_m, L)
            s = _tile_scores(q, k, mask, is_causal, scale, i0, i1, j0, j1)
            p = xp.exp(s - lse[:, i0:i1, None])
            dv[:, j0:j1] += xp.matmul(xp.swapaxes(p, -1, -2), do[:, i0:i1])
            dp = xp.matmul(do[:, i0:i1], xp.swapaxes(v[:, j0:j1], -1, -2))
            ds = p * (dp - delta[:, i0:i1, None])
            dk[:, j0:j1] += c * xp.matmul(xp.swapaxes(ds, -1, -2), q[:, i0:i1])
            dq[:, i0:i1] += c * xp.matmul(ds, k[:, j0:j1])
            if need_dmask:
                dmask[:, i0:i1, j0:j1] = ds
    return dq, dk, dv, dmask


def default_scale(E: int) -> float:
    return 1.0 / math.sqrt(E)
