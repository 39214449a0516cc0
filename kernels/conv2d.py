"""conv2d family, Triton version: implicit-GEMM kernels (no column matrix in memory).

Versions of the family: ``minigen/reference/conv2d.py`` (numpy, the definition and the math),
``minigen/native/conv2d.py`` + ``csrc/conv2d.cpp`` (CPU im2col + BLAS), this file (GPU; on a CPU
it runs only in Triton's interpreter, for the tests).

Each product of the reference is a GEMM whose operands are gathered on the fly from the NCHW
tensors (per group g; P = H_out·W_out; K_w = C_in/G·k_h·k_w):

    forward  y[n, o, a, b]   = Σ_{(c,i,j)}  w[o, c, i, j] · x[n, c, a·s−p+i·d, b·s−p+j·d]
             GEMM  M = N·P (output pixels) × N_cols = C_out/G × K = K_w         (_fwd_kernel)
    dgrad    gx[n, c, h, w]  = Σ_{(o,i,j)}  g[n, o, (h+p−i·d)/s, (w+p−j·d)/s] · w[o, c, i, j]
             (terms where (h+p−i·d) is not a multiple of s, or falls outside, are zero)
             GEMM  M = N·H·W × N_cols = C_in/G × K = C_out/G·k_h·k_w              (_dgrad_kernel)
    wgrad    gw[o, (c,i,j)]  = Σ_{(n,a,b)}  g[n, o, a, b] · x[n, c, a·s−p+i·d, b·s−p+j·d]
             GEMM  M = C_out/G × N_cols = K_w × K = N·P, split along K over SPLIT programs
             whose fp32 partial sums are added afterwards (deterministic)     (_wgrad_kernel)
    bias     gb[o] = Σ g[n, o, a, b]   (a reduction; the array module's sum)

Grid: (M tiles, N_cols tiles, groups [× SPLIT for wgrad]). Every tile loops over K in BLOCK_K
chunks with ``tl.dot`` (block dims ≥ 16, powers of two; masks for ragged edges), accumulating
in fp32 (fp64 for float64 inputs) and storing in the output's dtype. fp32 products are IEEE
fp32 unless ``minigen.backends.cuda.matmul.allow_tf32`` is set (opt-in, like
``torch.backends.cuda.matmul.allow_tf32``; PyTorch's cuDNN convolutions default to TF32, so
compare like with like); the switch is read at every launch and reaches the kernels as the
``TF32`` constexpr. The interpreter computes tl.dot in full precision whatever it says.

Work: 2·N·C_out·P·K_w FLOPs per product. Bytes (ideal, each tensor once): forward reads x and
w, writes y; dgrad reads g and w, writes gx; wgrad reads g and x, writes gw. The gathered
operand tiles are re-read from L2 by the k_h·k_w overlapping windows.

conv_transpose2d (the adjoint): forward = dgrad with the output size given, its input gradient
= forward restricted to the input's size, its weight gradient = wgrad with x and g swapped.
"""
from __future__ import annotations

from minigen import backends
from minigen.backend import xp_of

from ._triton import interpreting, launcher, ptr, triton_modules

triton, tl = triton_modules()

# Fixed blocks under the interpreter (and the fallback on a GPU when autotuning is off).
_SMALL = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)


@triton.jit
def _fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr,
                NPIX, C, H, W, O, HO, WO, CG, OG, KH, KW,
                SH, SW, PH, PW, DH, DW,
                HAS_BIAS: tl.constexpr, F64: tl.constexpr, TF32: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n, grp = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)          # output pixel (n, a, b)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)          # output channel in the group
    n = offs_m // (HO * WO)
    rem = offs_m % (HO * WO)
    ih0 = (rem // WO) * SH - PH
    iw0 = (rem % WO) * SW - PW
    m_ok = offs_m < NPIX
    n_ok = offs_n < OG
    KK = KH * KW
    KW_TOT = CG * KK
    n64 = n.to(tl.int64)                    # element offsets in int64: tensors ≥ 2³¹ elements
    x_base = (n64 * C + grp * CG) * H                          # (n, first channel of group)
    o = grp * OG + offs_n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64 if F64 else tl.float32)
    for k0 in range(0, KW_TOT, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)                    # (c, i, j) in the group
        k_ok = offs_k < KW_TOT
        c = offs_k // KK
        i = (offs_k % KK) // KW
        j = offs_k % KW
        ih = ih0[:, None] + (i * DH)[None, :]
        iw = iw0[:, None] + (j * DW)[None, :]
        a_ok = m_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_ptr + ((x_base[:, None] + c[None, :] * H + ih) * W + iw), mask=a_ok,
                    other=0.0)
        bmat = tl.load(w_ptr + (o[None, :] * KW_TOT + offs_k[:, None]),
                       mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a, bmat, acc, input_precision="tf32" if TF32 else "ieee",
                     out_dtype=tl.float64 if F64 else tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=n_ok, other=0.0).to(acc.dtype)[None, :]
    y_off = ((n64[:, None] * O + o[None, :]) * HO + (rem // WO)[:, None]) * WO + \
        (rem % WO)[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _dgrad_kernel(g_ptr, w_ptr, gx_ptr,
                  NPIX, C, H, W, O, HO, WO, CG, OG, KH, KW,
                  SH, SW, PH, PW, DH, DW,
                  F64: tl.constexpr, TF32: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n, grp = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)          # input pixel (n, h, w)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)          # input channel in the group
    n = offs_m // (H * W)
    rem = offs_m % (H * W)
    h = rem // W
    w = rem % W
    n64 = n.to(tl.int64)                    # element offsets in int64: tensors ≥ 2³¹ elements
    m_ok = offs_m < NPIX
    n_ok = offs_n < CG
    KK = KH * KW
    K_TOT = OG * KK
    c = grp * CG + offs_n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64 if F64 else tl.float32)
    for k0 in range(0, K_TOT, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)                    # (o, i, j) in the group
        k_ok = offs_k < K_TOT
        o = grp * OG + offs_k // KK
        i = (offs_k % KK) // KW
        j = offs_k % KW
        th = h[:, None] + PH - (i * DH)[None, :]               # = a·s when a exists
        tw = w[:, None] + PW - (j * DW)[None, :]
        th_c = tl.maximum(th, 0)                               # keep % and // on non-negatives
        tw_c = tl.maximum(tw, 0)
        a_h = th_c // SH
        a_w = tw_c // SW
        ok = (th >= 0) & (tw >= 0) & (th_c % SH == 0) & (tw_c % SW == 0) & \
            (a_h < HO) & (a_w < WO)
        a_ok = m_ok[:, None] & k_ok[None, :] & ok
        a = tl.load(g_ptr + (((n64[:, None] * O + o[None, :]) * HO + a_h) * WO + a_w),
                    mask=a_ok, other=0.0)
        bmat = tl.load(w_ptr + ((o[:, None] * CG + offs_n[None, :]) * KK +
                                (offs_k % KK)[:, None]),
                       mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a, bmat, acc, input_precision="tf32" if TF32 else "ieee",
                     out_dtype=tl.float64 if F64 else tl.float32)
    gx_off = ((n64[:, None] * C + c[None, :]) * H + h[:, None]) * W + w[:, None]
    tl.store(gx_ptr + gx_off, acc.to(gx_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _wgrad_kernel(g_ptr, x_ptr, part_ptr,
                  NPIX, C, H, W, O, HO, WO, CG, OG, KH, KW,
                  SH, SW, PH, PW, DH, DW, K_PER_SPLIT,
                  F64: tl.constexpr, TF32: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n, pid_gs = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n_split = tl.num_programs(2) // (C // CG)
    grp = pid_gs // n_split
    split = pid_gs % n_split
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)          # output channel in the group
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)          # (c, i, j) in the group
    KK = KH * KW
    KW_TOT = CG * KK
    m_ok = offs_m < OG
    n_ok = offs_n < KW_TOT
    o = grp * OG + offs_m
    c = grp * CG + offs_n // KK
    i = (offs_n % KK) // KW
    j = offs_n % KW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64 if F64 else tl.float32)
    k_start = split * K_PER_SPLIT
    for k0 in range(k_start, k_start + K_PER_SPLIT, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)                    # output pixel (n, a, b)
        k_ok = (offs_k < NPIX) & (offs_k < k_start + K_PER_SPLIT)
        n64 = (offs_k // (HO * WO)).to(tl.int64)   # int64 offsets: tensors ≥ 2³¹ elements
        rem = offs_k % (HO * WO)
        oa = rem // WO
        ob = rem % WO
        a = tl.load(g_ptr + (((n64[None, :] * O + o[:, None]) * HO + oa[None, :]) * WO +
                             ob[None, :]), mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        ih = (oa * SH - PH)[:, None] + (i * DH)[None, :]
        iw = (ob * SW - PW)[:, None] + (j * DW)[None, :]
        b_ok = k_ok[:, None] & n_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        bmat = tl.load(x_ptr + (((n64[:, None] * C + c[None, :]) * H + ih) * W + iw),
                       mask=b_ok, other=0.0)
        acc = tl.dot(a, bmat, acc, input_precision="tf32" if TF32 else "ieee",
                     out_dtype=tl.float64 if F64 else tl.float32)
    # partial sums: part[split, o, (c, i, j)]
    off = (split * O + o[:, None]) * KW_TOT + offs_n[None, :]
    tl.store(part_ptr + off, acc, mask=m_ok[:, None] & n_ok[None, :])


# ------------------------------------------------------------------------------ launchers
def _cdiv(a, b):
    return (a + b - 1) // b


def _blocks(kind, m, ncols):
    """Block shapes and launch options: fixed small ones in the interpreter, sized to the
    problem on a GPU."""
    if interpreting():
        return dict(_SMALL)
    bm = 128 if m >= 128 else 64 if m >= 64 else 32 if m >= 32 else 16
    bn = 128 if ncols >= 128 else 64 if ncols >= 64 else 32 if ncols >= 32 else 16
    if kind == "wgrad":
        return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=32, num_warps=8 if bm * bn >= 16384 else 4,
                    num_stages=3)
    return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=32, num_warps=8 if bm * bn >= 16384 else 4,
                num_stages=3)


MAX_PIXELS = 2 ** 31 - 1      # pixel (n, a, b) indices stay int32 inside the kernels
MAX_GRID_YZ = 65535           # CUDA's limit on grid axes 1 and 2


def _check_sizes(what, npix, groups):
    """The kernels index output/input pixels in int32 (element offsets are int64: a tensor may
    have ≥ 2³¹ elements, its pixel count N·H·W may not) and put the groups on grid axis 2."""
    if npix > MAX_PIXELS:
        raise ValueError(f"conv2d ({what}): {npix} pixels (batch × height × width) exceed the "
                         f"Triton kernels' int32 pixel index ({MAX_PIXELS}): split the batch")
    if groups > MAX_GRID_YZ:
        raise ValueError(f"conv2d ({what}): groups={groups} exceeds CUDA's grid limit of "
                         f"{MAX_GRID_YZ} on the axis that holds the groups")


def _flags(x):
    f64 = x.dtype.itemsize == 8
    tf32 = x.dtype.itemsize == 4 and backends.cuda.matmul.allow_tf32
    return dict(F64=f64, TF32=tf32)


def _dims(x_shape, w_shape, out_hw, groups):
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    return n, c, h, w, o, out_hw[0], out_hw[1], cg, o // groups, kh, kw


@launcher
def _forward(x, w, b, out_hw, stride, padding, dilation, groups):
    """y (N, C_out, *out_hw) = conv2d(x, w) + b, only the first ``out_hw`` output pixels."""
    xp = xp_of(x)
    _check_sizes("forward", x.shape[0] * out_hw[0] * out_hw[1], groups)
    x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
    n, c, h, wd, o, ho, wo, cg, og, kh, kw = _dims(x.shape, w.shape, out_hw, groups)
    y = xp.empty((n, o, ho, wo), dtype=x.dtype)
    blk = _blocks("fwd", n * ho * wo, og)
    grid = (_cdiv(n * ho * wo, blk["BLOCK_M"]), _cdiv(og, blk["BLOCK_N"]), groups)
    bias = xp.ascontiguousarray(b) if b is not None else y
    _fwd_kernel[grid](ptr(x), ptr(w), ptr(bias), ptr(y), n * ho * wo, c, h, wd, o, ho, wo,
                      cg, og, kh, kw, *stride, *padding, *dilation,
                      HAS_BIAS=b is not None, **_flags(x), **blk)
    return y


@launcher
def _dgrad(g, w, in_hw, stride, padding, dilation, groups):
    """gx (N, C_in, *in_hw): conv2d's input gradient."""
    xp = xp_of(g)
    _check_sizes("input gradient", g.shape[0] * in_hw[0] * in_hw[1], groups)
    g, w = xp.ascontiguousarray(g), xp.ascontiguousarray(w)
    n, o, ho, wo = g.shape
    cg, kh, kw = w.shape[1:]
    c = cg * groups
    h, wd = in_hw
    gx = xp.empty((n, c, h, wd), dtype=g.dtype)
    blk = _blocks("dgrad", n * h * wd, cg)
    grid = (_cdiv(n * h * wd, blk["BLOCK_M"]), _cdiv(cg, blk["BLOCK_N"]), groups)
    _dgrad_kernel[grid](ptr(g), ptr(w), ptr(gx), n * h * wd, c, h, wd, o, ho, wo, cg,
                        o // groups, kh, kw, *stride, *padding, *dilation, **_flags(g), **blk)
    return gx


@launcher
def _wgrad(g, x, kernel_hw, stride, padding, dilation, groups, split=None):
    """gw (C_out, C_in/G, kh, kw) = Σ_{n,a,b} g · window(x), K split over ``split`` programs."""
    xp = xp_of(g)
    _check_sizes("weight gradient", g.shape[0] * g.shape[2] * g.shape[3], groups)
    g, x = xp.ascontiguousarray(g), xp.ascontiguousarray(x)
    n, o, ho, wo = g.shape
    c, h, wd = x.shape[1:]
    cg, og = c // groups, o // groups
    kh, kw = kernel_hw
    kw_tot = cg * kh * kw
    npix = n * ho * wo
    blk = _blocks("wgrad", og, kw_tot)
    tiles = _cdiv(og, blk["BLOCK_M"]) * _cdiv(kw_tot, blk["BLOCK_N"]) * groups
    if split is None:   # enough programs to fill the GPU (~4 per SM on an H100/H200)
        split = 1 if interpreting() else max(1, min(_cdiv(npix, 4 * blk["BLOCK_K"]),
                                                   _cdiv(528, tiles)))
    split = max(1, min(split, MAX_GRID_YZ // groups))   # groups × split on grid axis 2
    per = _cdiv(_cdiv(npix, split), blk["BLOCK_K"]) * blk["BLOCK_K"]
    split = _cdiv(npix, per)
    acc_dtype = xp.float64 if g.dtype.itemsize == 8 else xp.float32
    part = xp.empty((split, o, kw_tot), dtype=acc_dtype)
    grid = (_cdiv(og, blk["BLOCK_M"]), _cdiv(kw_tot, blk["BLOCK_N"]), groups * split)
    _wgrad_kernel[grid](ptr(g), ptr(x), ptr(part), npix, c, h, wd, o, ho, wo, cg, og, kh, kw,
                        *stride, *padding, *dilation, per, **_flags(g), **blk)
    return part.sum(axis=0).astype(g.dtype).reshape(o, cg, kh, kw)


def _out_hw(h, w, kh, kw, stride, padding, dilation):
    return ((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


# ------------------------------------------------------------------------ family interface
def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    out_hw = _out_hw(*x.shape[2:], *w.shape[2:], stride, padding, dilation)
    return _forward(x, w, b, out_hw, stride, padding, dilation, groups)


def conv2d_backward(g, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    gx = _dgrad(g, w, x.shape[2:], stride, padding, dilation, groups) if needs[0] else None
    gw = _wgrad(g, x, w.shape[2:], stride, padding, dilation, groups) if needs[1] else None
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return gx, gw, gb


def conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups):
    kh, kw = w.shape[2:]
    out_hw = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op in
                   zip(x.shape[2:], (kh, kw), stride, padding, dilation, output_padding))
    y = _dgrad(x, w, out_hw, stride, padding, dilation, groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(g, x, w, stride, padding, output_padding, dilation, groups,
                              needs=(True, True, True)):
    # the adjoint of the adjoint: conv2d(g, w) over x's pixels only
    gx = _forward(g, w, None, x.shape[2:], stride, padding, dilation, groups) \
        if needs[0] else None
    gw = _wgrad(x, g, w.shape[2:], stride, padding, dilation, groups) if needs[1] else None
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return gx, gw, gb
