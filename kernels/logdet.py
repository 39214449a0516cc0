"""Kernel family ``logdet``, Triton version (installed as ``minigen.kernels.logdet``).

Versions of the family: numpy reference (minigen/reference/logdet.py, the math), C++
(csrc/logdet.cpp), this file, raw CUDA (kernels/logdet.cu: the batched LU, first choice on GPU).

Kernels here:
  _lu_kernel        one program per matrix, n ≤ 64: the whole matrix lives in registers as a
                    BLOCK×BLOCK tile (power of two, padded with the identity so padding never
                    pivots); each of the n steps selects column k and rows k, p with masked
                    reductions, swaps, stores multipliers and does the rank-1 update of the
                    tile: O(BLOCK²) work per step, n steps. Reads and writes n² elements once.
  _lu_solve_kernel  one program per (matrix, block of BLOCK_K right-hand sides): pivots, then
                    forward and back substitution on register tiles (A X = B or Aᵀ X = B).
  _coupling_fwd/_bwd, _actnorm_fwd/_bwd
                    elementwise passes over blocks of one sample (coupling) or of the flat
                    array (actnorm); per-block partial sums of log s (or of g·x, g) are written
                    to a small buffer and summed by the array module, which keeps the result
                    deterministic (no float atomics).
The slogdet from the LU diagonal, the weight products of the invertible 1×1 conv (C×C) and
the 1×1 conv itself (a GEMM: cuBLAS through CuPy) run as the reference's array code. Matrices
with n > 64 also take the reference path here: a blocked LU on the GPU is future work.
No ``tl.dot`` is used (the tiles are reduced with elementwise products), so no ≥ 16 rule.
"""
from __future__ import annotations

import numpy as np

from minigen.backend import xp_of
from minigen.reference import logdet as _ref
from minigen.reference.logdet import (conv1x1_backward, conv1x1_forward,  # noqa: F401
                                      invconv_weight, invconv_weight_backward,
                                      pivots_to_permutation, slogdet_from_lu)

from ._triton import launcher, ptr, triton_modules

triton, tl = triton_modules()

__all__ = list(_ref.__all__)

MAX_N = 64


@triton.jit
def _lu_kernel(A, LU, PIV, SIGN, n, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    r = tl.arange(0, BLOCK)
    rows = r[:, None]
    cols = r[None, :]
    inside = (rows < n) & (cols < n)
    base = b.to(tl.int64) * n * n
    a = tl.load(A + base + rows * n + cols, mask=inside, other=0.0)
    a = tl.where((rows == cols) & (rows >= n), 1.0, a)          # identity in the padding
    swaps = 0
    for k in range(0, n):
        colk = tl.sum(tl.where(cols == k, a, 0.0), axis=1)
        cand = tl.where((r >= k) & (r < n), tl.abs(colk), -1.0)
        best = tl.max(cand, axis=0)
        p = tl.min(tl.where(cand == best, r, BLOCK), axis=0)    # first maximum, as idamax
        tl.store(PIV + b * n + k, p.to(tl.int32))
        swaps += (p != k).to(tl.int32)
        rowk = tl.sum(tl.where(rows == k, a, 0.0), axis=0)
        rowp = tl.sum(tl.where(rows == p, a, 0.0), axis=0)
        a = tl.where(rows == k, rowp[None, :], tl.where(rows == p, rowk[None, :], a))
        pivot = tl.sum(tl.where(r == k, rowp, 0.0), axis=0)
        colk = tl.sum(tl.where(cols == k, a, 0.0), axis=1)
        safe = tl.where(pivot != 0.0, pivot, 1.0)
        l = tl.where(r > k, colk / safe, 0.0)                   # l_ik = a_ik / a_kk
        a = tl.where((rows > k) & (cols == k), l[:, None], a)
        a = a - tl.where((rows > k) & (cols > k), l[:, None] * rowp[None, :], 0.0)
    tl.store(LU + base + rows * n + cols, a, mask=inside)
    tl.store(SIGN + b, tl.where(swaps % 2 == 1, -1.0, 1.0).to(SIGN.dtype.element_ty))


@triton.jit
def _lu_solve_kernel(LU, PIV, X, n, k, TRANS: tl.constexpr, BLOCK: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    """X (n, k) ← A⁻¹ X or A⁻ᵀ X in place from A's LU; one (matrix, column block) each."""
    b = tl.program_id(0)
    cb = tl.program_id(1)
    r = tl.arange(0, BLOCK)
    rows = r[:, None]
    cols = r[None, :]
    kc = cb * BLOCK_K + tl.arange(0, BLOCK_K)[None, :]
    base = b.to(tl.int64) * n * n
    xbase = b.to(tl.int64) * n * k
    if TRANS:   # Aᵀ = Uᵀ Lᵀ P: the transposed tile has Uᵀ (lower) and Lᵀ (unit upper)
        t = tl.load(LU + base + cols * n + rows, mask=(rows < n) & (cols < n), other=0.0)
    else:       # P A = L U: L (unit lower), U (upper)
        t = tl.load(LU + base + rows * n + cols, mask=(rows < n) & (cols < n), other=0.0)
    xmask = (rows < n) & (kc < k)
    x = tl.load(X + xbase + rows * k + kc, mask=xmask, other=0.0)
    if not TRANS:
        for s in range(0, n):                                   # P B: swaps in order
            p = tl.load(PIV + b * n + s)
            xs = tl.sum(tl.where(rows == s, x, 0.0), axis=0)
            xp = tl.sum(tl.where(rows == p, x, 0.0), axis=0)
            x = tl.where(rows == s, xp[None, :], tl.where(rows == p, xs[None, :], x))
    for i in range(0, n):                                       # lower solve (forward)
        ti = tl.sum(tl.where(rows == i, t, 0.0), axis=0)        # row i of the tile
        acc = tl.sum(tl.where(r < i, ti, 0.0)[:, None] * x, axis=0)
        xi = tl.sum(tl.where(rows == i, x, 0.0), axis=0) - acc
        if TRANS:
            xi = xi / tl.sum(tl.where(r == i, ti, 0.0), axis=0)
        x = tl.where(rows == i, xi[None, :], x)
    for j in range(0, n):                                       # upper solve (backward)
        i = n - 1 - j
        ti = tl.sum(tl.where(rows == i, t, 0.0), axis=0)
        acc = tl.sum(tl.where(r > i, ti, 0.0)[:, None] * x, axis=0)
        xi = tl.sum(tl.where(rows == i, x, 0.0), axis=0) - acc
        if not TRANS:
            xi = xi / tl.sum(tl.where(r == i, ti, 0.0), axis=0)
        x = tl.where(rows == i, xi[None, :], x)
    if TRANS:
        for j in range(0, n):                                   # Pᵀ: swaps in reverse order
            s = n - 1 - j
            p = tl.load(PIV + b * n + s)
            xs = tl.sum(tl.where(rows == s, x, 0.0), axis=0)
            xp = tl.sum(tl.where(rows == p, x, 0.0), axis=0)
            x = tl.where(rows == s, xp[None, :], tl.where(rows == p, xs[None, :], x))
    tl.store(X + xbase + rows * k + kc, x, mask=xmask)


@triton.jit
def _log_sigmoid_pair(z):
    e = tl.exp(-tl.abs(z))
    log_s = tl.minimum(z, 0.0) - tl.log(1.0 + e)
    s = tl.where(z >= 0, 1.0, e) / (1.0 + e)
    return s, log_s


@triton.jit
def _coupling_fwd(Xp, H, OUT, PART, half, nblocks, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < half
    base = n.to(tl.int64) * 2 * half
    xa = tl.load(Xp + base + offs, mask=mask, other=0.0)
    raw = tl.load(H + base + offs, mask=mask, other=0.0)
    t = tl.load(H + base + half + offs, mask=mask, other=0.0)
    s, log_s = _log_sigmoid_pair(raw + 2.0)
    if REVERSE:
        y = (xa - t) / s
    else:
        y = s * xa + t
    tl.store(OUT + base + offs, y, mask=mask)
    xb = tl.load(Xp + base + half + offs, mask=mask, other=0.0)
    tl.store(OUT + base + half + offs, xb, mask=mask)            # y_b = x_b
    tl.store(PART + n * nblocks + blk, tl.sum(tl.where(mask, log_s, 0.0), axis=0))


@triton.jit
def _coupling_bwd(G, GLD, INP, H, GIN, GH, half, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < half
    base = n.to(tl.int64) * 2 * half
    ga = tl.load(G + base + offs, mask=mask, other=0.0)
    xa = tl.load(INP + base + offs, mask=mask, other=0.0)
    raw = tl.load(H + base + offs, mask=mask, other=0.0)
    t = tl.load(H + base + half + offs, mask=mask, other=0.0)
    gl = tl.load(GLD + n)
    s, log_s = _log_sigmoid_pair(raw + 2.0)
    if REVERSE:
        x = (xa - t) / s
        tl.store(GIN + base + offs, ga / s, mask=mask)
        tl.store(GH + base + half + offs, -ga / s, mask=mask)
        tl.store(GH + base + offs, -(ga * x + gl) * (1.0 - s), mask=mask)
    else:
        tl.store(GIN + base + offs, ga * s, mask=mask)
        tl.store(GH + base + half + offs, ga, mask=mask)
        tl.store(GH + base + offs, (ga * xa * s + gl) * (1.0 - s), mask=mask)
    gb = tl.load(G + base + half + offs, mask=mask, other=0.0)
    tl.store(GIN + base + half + offs, gb, mask=mask)


@triton.jit
def _actnorm_fwd(Xp, LS, BIAS, OUT, total, C, M, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    c = (offs // M) % C
    x = tl.load(Xp + offs, mask=mask, other=0.0)
    ls = tl.load(LS + c, mask=mask, other=0.0)
    bias = tl.load(BIAS + c, mask=mask, other=0.0)
    if REVERSE:
        y = (x - bias) * tl.exp(-ls)
    else:
        y = tl.exp(ls) * x + bias
    tl.store(OUT + offs, y, mask=mask)


@triton.jit
def _actnorm_bwd(G, Xp, LS, GIN, PART, C, M, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (sample, channel) plane: g_in = g e^{±ℓ}, partial Σ g x and Σ g."""
    q = tl.program_id(0)
    c = q % C
    ls = tl.load(LS + c)
    k = tl.exp(-ls) if REVERSE else tl.exp(ls)
    base = q.to(tl.int64) * M
    sgx = tl.sum(tl.zeros([BLOCK], dtype=tl.float32), axis=0).to(ls.dtype)
    sg = sgx
    for m0 in range(0, M, BLOCK):
        offs = m0 + tl.arange(0, BLOCK)
        mask = offs < M
        g = tl.load(G + base + offs, mask=mask, other=0.0)
        x = tl.load(Xp + base + offs, mask=mask, other=0.0)
        tl.store(GIN + base + offs, g * k, mask=mask)
        sgx += tl.sum(g * x, axis=0)
        sg += tl.sum(g, axis=0)
    tl.store(PART + 2 * q, sgx)
    tl.store(PART + 2 * q + 1, sg)


# ------------------------------------------------------------------------------ launchers
def _block(n):
    return max(2, triton.next_power_of_2(n))


@launcher
def lu_factor(a):
    n = a.shape[-1]
    if n > MAX_N:
        return _ref.lu_factor(a)
    xp = xp_of(a)
    batch = a.shape[:-2]
    src = xp.ascontiguousarray(a).reshape(-1, n, n)
    nb = src.shape[0]
    lu = xp.empty_like(src)
    piv = xp.empty((nb, n), dtype=xp.int32)
    sign = xp.empty(nb, dtype=a.dtype)
    if nb and n:
        _lu_kernel[(nb,)](ptr(src), ptr(lu), ptr(piv), ptr(sign), n, BLOCK=_block(n))
    elif nb:
        sign[...] = 1
    return lu.reshape(a.shape), piv.reshape(batch + (n,)), sign.reshape(batch)


@launcher
def lu_solve(lu, piv, b, transpose=False):
    n = lu.shape[-1]
    if n > MAX_N:
        return _ref.lu_solve(lu, piv, b, transpose)
    xp = xp_of(lu)
    L = xp.ascontiguousarray(lu).reshape(-1, n, n)
    P = xp.ascontiguousarray(piv).reshape(-1, n)
    k = b.shape[-1]
    X = b.astype(lu.dtype, copy=True).reshape(L.shape[0], n, k)
    X = xp.ascontiguousarray(X)
    if X.size:
        block_k = min(16, _block(k))
        grid = (L.shape[0], triton.cdiv(k, block_k))
        _lu_solve_kernel[grid](ptr(L), ptr(P), ptr(X), n, k, TRANS=bool(transpose),
                               BLOCK=_block(n), BLOCK_K=block_k)
    return X.reshape(b.shape)


def inv_from_lu(lu, piv):
    xp = xp_of(lu)
    eye = xp.broadcast_to(xp.eye(lu.shape[-1], dtype=lu.dtype), lu.shape)
    return lu_solve(lu, piv, eye)


def slogdet_backward(lu, piv, g_logabsdet):
    """g · A⁻ᵀ, A⁻ᵀ solving Aᵀ X = I with the saved LU."""
    xp = xp_of(lu)
    eye = xp.broadcast_to(xp.eye(lu.shape[-1], dtype=lu.dtype), lu.shape)
    return g_logabsdet[..., None, None].astype(lu.dtype, copy=False) * \
        lu_solve(lu, piv, eye, transpose=True)


_FLOW_BLOCK = 256


@launcher
def coupling_forward(x, h, reverse=False):
    xp = xp_of(x)
    x, h = xp.ascontiguousarray(x), xp.ascontiguousarray(h)
    n, half = x.shape[0], x[0, : x.shape[1] // 2].size
    out = xp.empty_like(x)
    nblocks = max(1, triton.cdiv(half, _FLOW_BLOCK))
    part = xp.zeros((n, nblocks), dtype=x.dtype)
    if x.size:
        _coupling_fwd[(n, nblocks)](ptr(x), ptr(h), ptr(out), ptr(part), half, nblocks,
                                    REVERSE=bool(reverse), BLOCK=_FLOW_BLOCK)
    ld = part.sum(axis=1)
    return out, (-ld if reverse else ld).astype(x.dtype, copy=False)


@launcher
def coupling_backward(g_out, g_logdet, inp, h, reverse=False):
    xp = xp_of(inp)
    inp, h = xp.ascontiguousarray(inp), xp.ascontiguousarray(h)
    g = xp.zeros_like(inp) if g_out is None else xp.ascontiguousarray(g_out)
    n, half = inp.shape[0], inp[0, : inp.shape[1] // 2].size
    gld = xp.zeros(n, inp.dtype) if g_logdet is None else \
        xp.ascontiguousarray(g_logdet.astype(inp.dtype, copy=False))
    g_inp, g_h = xp.empty_like(inp), xp.empty_like(h)
    if inp.size:
        grid = (n, max(1, triton.cdiv(half, _FLOW_BLOCK)))
        _coupling_bwd[grid](ptr(g), ptr(gld), ptr(inp), ptr(h), ptr(g_inp), ptr(g_h), half,
                            REVERSE=bool(reverse), BLOCK=_FLOW_BLOCK)
    return g_inp, g_h


def _same_dtype(op, **arrays):
    """Triton types each loaded value by its array: a log-scale of another dtype than x would
    change the type of _actnorm_bwd's loop-carried sums (a GPU compile error the interpreter
    lets through) and mix precisions in _actnorm_fwd. One dtype, said clearly, instead."""
    dts = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dts.values())) > 1:
        raise TypeError(f"{op}: the arrays must share one dtype, got " +
                        ", ".join(f"{k} {v}" for k, v in dts.items()))


@launcher
def actnorm_forward(x, log_scale, bias, reverse=False):
    _same_dtype("actnorm_forward", x=x, log_scale=log_scale, bias=bias)
    xp = xp_of(x)
    x = xp.ascontiguousarray(x)
    c = x.shape[1]
    m = int(np.prod(x.shape[2:])) if x.ndim > 2 else 1
    out = xp.empty_like(x)
    if x.size:
        _actnorm_fwd[(triton.cdiv(x.size, _FLOW_BLOCK),)](
            ptr(x), ptr(xp.ascontiguousarray(log_scale)), ptr(xp.ascontiguousarray(bias)),
            ptr(out), x.size, c, m, REVERSE=bool(reverse), BLOCK=_FLOW_BLOCK)
    ld = m * log_scale.sum()
    return out, xp.full(x.shape[0], -ld if reverse else ld, dtype=x.dtype)


@launcher
def actnorm_backward(g_out, g_logdet, saved, log_scale, reverse=False):
    _same_dtype("actnorm_backward", saved=saved, log_scale=log_scale, g_out=g_out)
    xp = xp_of(saved)
    saved = xp.ascontiguousarray(saved)
    g = xp.zeros_like(saved) if g_out is None else xp.ascontiguousarray(g_out)
    n, c = saved.shape[:2]
    m = int(np.prod(saved.shape[2:])) if saved.ndim > 2 else 1
    g_in = xp.empty_like(saved)
    part = xp.zeros((n, c, 2), dtype=saved.dtype)
    if saved.size:
        _actnorm_bwd[(n * c,)](ptr(g), ptr(saved), ptr(xp.ascontiguousarray(log_scale)),
                               ptr(g_in), ptr(part), c, m, REVERSE=bool(reverse),
                               BLOCK=min(1024, _block(m)))
    sum_gx, sum_g = part.sum(axis=0).T
    gld = m * g_logdet.sum() if g_logdet is not None else 0.0
    if not reverse:
        g_ls, g_b = xp.exp(log_scale) * sum_gx + gld, sum_g
    else:
        g_ls, g_b = -sum_gx - gld, -xp.exp(-log_scale) * sum_g
    dt = saved.dtype
    return g_in, g_ls.astype(dt, copy=False), g_b.astype(dt, copy=False)
