"""attention, Triton implementation: flash attention forward and backward.

Versions of this family: ``minigen/reference/attention.py`` (numpy: the definition, and
``attention_forward_blocked`` / ``attention_backward_blocked``, this file's algorithm written
with numpy tiles); ``csrc/attention.cpp`` + ``minigen/native/attention.py`` (CPU); this file
(GPU, and the CPU under TRITON_INTERPRET=1 for tests).

Math (per batch entry b, scale c; see the reference for the full derivation):
  forward   s = c·q kᵀ + mask (−inf where causal hides j > i), online softmax over key blocks:
            m' = max(m, rowmax s), α = e^{m − m'}, ℓ ← αℓ + Σ e^{s − m'}, acc ← α acc + e^{s−m'} v;
            o = acc/ℓ, lse = m + log ℓ (+inf and o = 0 for a row that sees no key).
  backward  δ = rowsum(dO ⊙ O) (preprocess, one array op); p = e^{s − lse} recomputed per tile;
            kernel 1, one program per key block: dV = Σ_q pᵀ dO, dK = c Σ_q dSᵀ Q with
            dS = p ⊙ (dO Vᵀ − δ) (optionally stored: ∂ℓ/∂mask);
            kernel 2, one program per query block: dQ = c Σ_k dS K. Two kernels, no atomics.
The L×S matrix is never stored (except dS when the mask's gradient is asked for).

Bytes and FLOPs per (b, head): forward reads Q, K, V (K, V once per query block) and writes
O and lse; 4·L·S·E FLOPs (2 GEMMs, E = Ev), half with causal. Backward 2.5× the forward's
FLOPs plus the recomputation of S in both kernels (7 tile GEMMs in all).

Tiles: BLOCK_M query rows × BLOCK_N keys; the head dims E, Ev are padded to powers of two
≥ 16 (masked loads), and lengths are masked, so any L, S and head dims 1–256 work; every
tl.dot operand dimension is ≥ 16. Accumulation in float32 (float64 for float64 inputs); the
P·V and dS·K products take P, dS in the input dtype (fp16/bf16 tensor cores). float32 inputs
use full-precision dots (no TF32), to match the reference. The scale c reaches the kernels as
two float32 values rebuilt as hi + lo in the accumulation dtype (``_scale_parts``): Triton
types a Python float argument as float32, which would cost float64 attention ~1e-8 relative.
"""
from __future__ import annotations

import numpy as np

from minigen.backend import xp_of
from minigen.kernels._triton import interpreting, launcher, ptr, triton_modules

triton, tl = triton_modules()

__all__ = ["attention_forward", "attention_backward"]


@triton.jit
def _attn_fwd(Q, K, V, M, O, LSE,
              sqb, sql, sqe, skb, sks, ske, svb, svs, sve, smb, sml, sms, sob, sol, soe,
              L, S, E, EV, scale_hi, scale_lo, B0,
              HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr,
              PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    pid_m = tl.program_id(0)
    scale = tl.cast(scale_hi, ACC) + tl.cast(scale_lo, ACC)   # see _scale_parts
    b = tl.program_id(1).to(tl.int64) + B0      # this launch's first batch entry
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_E)
    offs_ev = tl.arange(0, BLOCK_EV)
    row_ok = offs_m < L
    q = tl.load(Q + b * sqb + offs_m[:, None] * sql + offs_e[None, :] * sqe,
                mask=row_ok[:, None] & (offs_e[None, :] < E), other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_EV], ACC)
    hi = S
    if CAUSAL:  # key blocks right of this query block's last row see nothing
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < S
        kt = tl.load(K + b * skb + offs_n[None, :] * sks + offs_e[:, None] * ske,
                     mask=col_ok[None, :] & (offs_e[:, None] < E), other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION, out_dtype=ACC) * scale
        if HAS_MASK:
            s += tl.load(M + b * smb + offs_m[:, None] * sml + offs_n[None, :] * sms,
                         mask=row_ok[:, None] & col_ok[None, :], other=0.0).to(ACC)
        ok = col_ok[None, :]
        if CAUSAL:
            ok = ok & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)   # no −inf − −inf
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * svb + offs_n[:, None] * svs + offs_ev[None, :] * sve,
                    mask=col_ok[:, None] & (offs_ev[None, :] < EV), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION,
                                            out_dtype=ACC)
        m_i = m_new
    seen = l_i > 0
    l_safe = tl.where(seen, l_i, 1.0)
    o = tl.where(seen[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(seen, m_i + tl.log(l_safe), float("inf"))
    tl.store(O + b * sob + offs_m[:, None] * sol + offs_ev[None, :] * soe,
             o.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_ev[None, :] < EV))
    tl.store(LSE + b * L + offs_m, lse.to(LSE.dtype.element_ty), mask=row_ok)


@triton.jit
def _tile_p(q, kt, M, b, smb, sml, sms, offs_m, offs_n, lse, L, S, scale,
            HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr,
            PRECISION: tl.constexpr):
    """p = exp(c·q kᵀ + mask − lse) for one tile; 0 where hidden or out of range."""
    s = tl.dot(q, kt, input_precision=PRECISION, out_dtype=ACC) * scale
    ok = (offs_m[:, None] < L) & (offs_n[None, :] < S)
    if HAS_MASK:
        s += tl.load(M + b * smb + offs_m[:, None] * sml + offs_n[None, :] * sms,
                     mask=ok, other=0.0).to(ACC)
    if CAUSAL:
        ok = ok & (offs_n[None, :] <= offs_m[:, None])
    return tl.where(ok, tl.exp(s - lse[:, None]), 0.0)


@triton.jit
def _attn_bwd_dkdv(Q, K, V, M, DO, LSE, DELTA, DK, DV, DM,
                   sqb, sql, sqe, skb, sks, ske, svb, svs, sve, smb, sml, sms,
                   sdb, sdl, sde, sdkb, sdks, sdke, sdvb, sdvs, sdve,
                   L, S, E, EV, scale_hi, scale_lo, B0,
                   HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, STORE_DS: tl.constexpr,
                   ACC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    pid_n = tl.program_id(0)
    scale = tl.cast(scale_hi, ACC) + tl.cast(scale_lo, ACC)   # see _scale_parts
    b = tl.program_id(1).to(tl.int64) + B0      # this launch's first batch entry
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, BLOCK_E)
    offs_ev = tl.arange(0, BLOCK_EV)
    col_ok = offs_n < S
    kt = tl.load(K + b * skb + offs_n[None, :] * sks + offs_e[:, None] * ske,
                 mask=col_ok[None, :] & (offs_e[:, None] < E), other=0.0)      # (E, N)
    vt = tl.load(V + b * svb + offs_n[None, :] * svs + offs_ev[:, None] * sve,
                 mask=col_ok[None, :] & (offs_ev[:, None] < EV), other=0.0)    # (Ev, N)
    dk = tl.zeros([BLOCK_N, BLOCK_E], ACC)
    dv = tl.zeros([BLOCK_N, BLOCK_EV], ACC)
    lo = 0
    if CAUSAL:  # query rows above this key block's first key see none of it
        lo = (pid_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, L, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < L
        q = tl.load(Q + b * sqb + offs_m[:, None] * sql + offs_e[None, :] * sqe,
                    mask=row_ok[:, None] & (offs_e[None, :] < E), other=0.0)
        do = tl.load(DO + b * sdb + offs_m[:, None] * sdl + offs_ev[None, :] * sde,
                     mask=row_ok[:, None] & (offs_ev[None, :] < EV), other=0.0)
        lse = tl.load(LSE + b * L + offs_m, mask=row_ok, other=float("inf")).to(ACC)
        delta = tl.load(DELTA + b * L + offs_m, mask=row_ok, other=0.0).to(ACC)
        p = _tile_p(q, kt, M, b, smb, sml, sms, offs_m, offs_n, lse, L, S, scale,
                    HAS_MASK, CAUSAL, ACC, PRECISION)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION, out_dtype=ACC)
        dp = tl.dot(do, vt, input_precision=PRECISION, out_dtype=ACC)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION, out_dtype=ACC)
        if STORE_DS:
            tl.store(DM + b * L * S + offs_m[:, None] * S + offs_n[None, :],
                     ds.to(DM.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])
    tl.store(DK + b * sdkb + offs_n[:, None] * sdks + offs_e[None, :] * sdke,
             (dk * scale).to(DK.dtype.element_ty), mask=col_ok[:, None] & (offs_e[None, :] < E))
    tl.store(DV + b * sdvb + offs_n[:, None] * sdvs + offs_ev[None, :] * sdve,
             dv.to(DV.dtype.element_ty), mask=col_ok[:, None] & (offs_ev[None, :] < EV))


@triton.jit
def _attn_bwd_dq(Q, K, V, M, DO, LSE, DELTA, DQ,
                 sqb, sql, sqe, skb, sks, ske, svb, svs, sve, smb, sml, sms,
                 sdb, sdl, sde, sdqb, sdql, sdqe,
                 L, S, E, EV, scale_hi, scale_lo, B0,
                 HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, ACC: tl.constexpr,
                 PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_EV: tl.constexpr):
    pid_m = tl.program_id(0)
    scale = tl.cast(scale_hi, ACC) + tl.cast(scale_lo, ACC)   # see _scale_parts
    b = tl.program_id(1).to(tl.int64) + B0      # this launch's first batch entry
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_E)
    offs_ev = tl.arange(0, BLOCK_EV)
    row_ok = offs_m < L
    q = tl.load(Q + b * sqb + offs_m[:, None] * sql + offs_e[None, :] * sqe,
                mask=row_ok[:, None] & (offs_e[None, :] < E), other=0.0)
    do = tl.load(DO + b * sdb + offs_m[:, None] * sdl + offs_ev[None, :] * sde,
                 mask=row_ok[:, None] & (offs_ev[None, :] < EV), other=0.0)
    lse = tl.load(LSE + b * L + offs_m, mask=row_ok, other=float("inf")).to(ACC)
    delta = tl.load(DELTA + b * L + offs_m, mask=row_ok, other=0.0).to(ACC)
    dq = tl.zeros([BLOCK_M, BLOCK_E], ACC)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < S
        kt = tl.load(K + b * skb + offs_n[None, :] * sks + offs_e[:, None] * ske,
                     mask=col_ok[None, :] & (offs_e[:, None] < E), other=0.0)
        vt = tl.load(V + b * svb + offs_n[None, :] * svs + offs_ev[:, None] * sve,
                     mask=col_ok[None, :] & (offs_ev[:, None] < EV), other=0.0)
        p = _tile_p(q, kt, M, b, smb, sml, sms, offs_m, offs_n, lse, L, S, scale,
                    HAS_MASK, CAUSAL, ACC, PRECISION)
        dp = tl.dot(do, vt, input_precision=PRECISION, out_dtype=ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION, out_dtype=ACC)
    tl.store(DQ + b * sdqb + offs_m[:, None] * sdql + offs_e[None, :] * sdqe,
             (dq * scale).to(DQ.dtype.element_ty), mask=row_ok[:, None] & (offs_e[None, :] < E))


# ------------------------------------------------------------------------------ launchers
def _pow2(n: int) -> int:
    return max(16, 1 << (max(1, int(n)) - 1).bit_length())


def _strides(a):
    return tuple(s // a.itemsize for s in a.strides)


SMEM_LIMIT = 227 * 1024      # bytes of shared memory one program may use on Hopper (opt-in)
SMEM_BUDGET = 200 * 1024     # what the tiles may take: the rest for Triton's own scratch


def smem_bytes(kind, bm, bn, be, bev, itemsize, stages):
    """Shared memory of one program's tiles, counting every tl.dot operand as staged in shared
    memory and each tile loaded inside the loop ``stages`` times (software pipelining):

        fwd   q (bm·be) + stages·(k (be·bn) + v (bn·bev)) + p (bm·bn)
        dkdv  kᵀ, vᵀ (be·bn + bev·bn) + stages·(q (bm·be) + dO (bm·bev)) + p, dS (2·bm·bn)
        dq    q, dO (bm·be + bm·bev) + stages·(kᵀ, vᵀ (be·bn + bev·bn)) + p, dS (2·bm·bn)

    all × itemsize. E.g. float64, head dim 128, (bm, bn) = (32, 64), 2 stages: dkdv =
    (2·128·64 + 2·2·32·128 + 2·32·64)·8 = 294 912 B > 227 KB; (16, 32) gives 139 264 B."""
    if kind == "fwd":
        elems = bm * be + stages * (be * bn + bn * bev) + bm * bn
    elif kind == "dkdv":
        elems = (be + bev) * bn + stages * bm * (be + bev) + 2 * bm * bn
    else:
        elems = bm * (be + bev) + stages * (be + bev) * bn + 2 * bm * bn
    return elems * itemsize


def _config(dtype, be, bev, backward):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages): small fixed tiles in the interpreter; on the
    GPU, the preferred tiles for the dtype and head dims, shrunk (pipelining first, then the
    larger of the two tile dims, never below 16) until ``smem_bytes`` fits SMEM_BUDGET."""
    if interpreting():
        return 16, 16, 1, 1
    wide = max(be, bev)
    item = np.dtype(dtype).itemsize
    big = item >= 4
    if backward:
        bm, bn = (64, 64) if wide <= 64 and not big else (32, 64) if wide <= 128 else (16, 32)
        warps, stages = 4 if wide <= 64 else 8, 2
    elif big:
        bm, bn = (64, 32) if wide <= 128 else (32, 16)
        warps, stages = 4, 2
    else:
        bm, bn = (128, 64) if wide <= 64 else (128, 32) if wide <= 128 else (64, 32)
        warps, stages = 4 if wide <= 64 else 8, 3 if wide <= 64 else 2
    kinds = ("dkdv", "dq") if backward else ("fwd",)

    def need(bm, bn, stages):
        return max(smem_bytes(k, bm, bn, be, bev, item, stages) for k in kinds)

    while need(bm, bn, stages) > SMEM_BUDGET:
        if stages > 1:
            stages -= 1
        elif max(bm, bn) > 16:
            if bn >= bm:
                bn //= 2
            else:
                bm //= 2
        else:
            break   # 16×16 tiles: head dims ≤ 256 always fit (see the test)
    return bm, bn, warps, stages


def _scale_parts(scale):
    """(hi, lo), both exact float32 values with hi + lo = scale to 2⁻⁴⁸ relative.

    Triton types a Python float kernel argument as float32, which would cost float64
    attention ~1e-8 relative in c·q kᵀ; the kernels rebuild c = hi + lo in the accumulation
    dtype instead (float32 kernels get hi, the float32 rounding of c)."""
    hi = float(np.float32(scale))
    return hi, float(np.float32(float(scale) - hi))


MAX_GRID_Y = 65535   # CUDA's limit on grid axes 1 and 2


def _batch_chunks(B):
    """(first batch entry, count) per launch: the batch (× heads) dimension rides on grid axis
    1, which holds at most 65 535 programs, so a larger batch takes several launches (the
    kernels add the launch's first entry B0 to program_id(1))."""
    for b0 in range(0, B, MAX_GRID_Y):
        yield b0, min(MAX_GRID_Y, B - b0)


def _acc(dtype):
    return (tl.float64, "ieee") if np.dtype(dtype) == np.float64 else \
        (tl.float32, "ieee" if np.dtype(dtype) == np.float32 else "tf32")


def _mask_args(mask, q):
    if mask is None:
        return q, (0, 0, 0), False
    return mask, _strides(mask), True


@launcher
def attention_forward(q, k, v, mask, is_causal, scale):
    xp = xp_of(q)
    B, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    ct = np.float64 if q.dtype == np.float64 else np.float32
    o = xp.empty((B, L, Ev), q.dtype)
    lse = xp.empty((B, L), ct)
    if B == 0 or L == 0:
        return o, lse
    be, bev = _pow2(E), _pow2(Ev)
    bm, bn, warps, stages = _config(q.dtype, be, bev, False)
    acc, prec = _acc(q.dtype)
    m, ms, has_mask = _mask_args(mask, q)
    for b0, nb in _batch_chunks(B):
        _attn_fwd[(triton.cdiv(L, bm), nb)](
            ptr(q), ptr(k), ptr(v), ptr(m), ptr(o), ptr(lse),
            *_strides(q), *_strides(k), *_strides(v), *ms, *_strides(o),
            L, S, E, Ev, *_scale_parts(scale), b0,
            HAS_MASK=has_mask, CAUSAL=bool(is_causal), ACC=acc, PRECISION=prec,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_E=be, BLOCK_EV=bev,
            num_warps=warps, num_stages=stages)
    return o, lse


@launcher
def attention_backward(do, q, k, v, o, lse, mask, is_causal, scale, need_dmask=False):
    xp = xp_of(q)
    B, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    ct = np.float64 if q.dtype == np.float64 else np.float32
    # preprocess: δ_i = rowsum(dO ⊙ O) in the accumulation dtype
    delta = xp.ascontiguousarray((do.astype(ct) * o.astype(ct)).sum(axis=-1))
    lse = xp.ascontiguousarray(lse)
    dq = xp.empty((B, L, E), q.dtype)
    dk = xp.empty((B, S, E), k.dtype)
    dv = xp.empty((B, S, Ev), v.dtype)
    dm = xp.zeros((B, L, S), ct) if need_dmask else None
    if B == 0 or L == 0 or S == 0:
        dq[...] = 0
        dk[...] = 0
        dv[...] = 0
        return dq, dk, dv, dm
    be, bev = _pow2(E), _pow2(Ev)
    bm, bn, warps, stages = _config(q.dtype, be, bev, True)
    acc, prec = _acc(q.dtype)
    m, ms, has_mask = _mask_args(mask, q)
    common = dict(HAS_MASK=has_mask, CAUSAL=bool(is_causal), ACC=acc, PRECISION=prec,
                  BLOCK_M=bm, BLOCK_N=bn, BLOCK_E=be, BLOCK_EV=bev, num_warps=warps,
                  num_stages=stages)
    for b0, nb in _batch_chunks(B):
        _attn_bwd_dkdv[(triton.cdiv(S, bn), nb)](
            ptr(q), ptr(k), ptr(v), ptr(m), ptr(do), ptr(lse), ptr(delta), ptr(dk), ptr(dv),
            ptr(dm if need_dmask else delta),
            *_strides(q), *_strides(k), *_strides(v), *ms, *_strides(do), *_strides(dk),
            *_strides(dv), L, S, E, Ev, *_scale_parts(scale), b0, STORE_DS=bool(need_dmask),
            **common)
        _attn_bwd_dq[(triton.cdiv(L, bm), nb)](
            ptr(q), ptr(k), ptr(v), ptr(m), ptr(do), ptr(lse), ptr(delta), ptr(dq),
            *_strides(q), *_strides(k), *_strides(v), *ms, *_strides(do), *_strides(dq),
            L, S, E, Ev, *_scale_parts(scale), b0, **common)
    return dq, dk, dv, dm
