"""conv2d family, native CPU version: a direct convolution for groups 1
(csrc/conv2d_direct.cpp), and for the rest C++ im2col/col2im (csrc/conv2d.cpp) + minigen's
GEMM (csrc/gemm.cpp through ``native/gemm.py``).

The math and the family interface: ``minigen/reference/conv2d.py``.

Groups 1 (``_direct``; every convolution of the E2 UNet): the GEMM micro-kernel reads its B
operand in place from a zero-padded copy of each image, the output numbered at the padded width
so that row k = (c, i, j) of B is the padded image shifted by c·H_p·W_p + i·d_h·W_p + j·d_w
(with a stride, the image is first split into its stride phases; the derivation is at the top
of conv2d_direct.cpp). No column matrix is written, read or packed. The forward adds the bias
in its copy-out; the input gradient is the same forward on g with the flipped weights
(``_dgrad_as_conv``); the weight gradient is the direct ∂Wᵀ kernel, also for 1×1 kernels (one
call instead of a GEMM per image). Measured at batch 64, float32, 2 threads, 2-core AVX-512
EPYC, training paused (``python benchmarks/bench_conv2d.py --e2-shapes``), GFLOP/s direct vs
the im2col/GEMM paths, forward | weight gradient | input gradient: 32→32 at 28×28 366 vs 193 |
352 vs 132 | 353 vs 191; 64→64 at 28×28 387 vs 252 | 341 vs 199 | 381 vs 248; 96→32 at 28×28
368 vs 193 | 349 vs 148 | 376 vs 293; 64→64 at 14×14 363 vs 226 | 371 vs 188 | 359 vs 226;
64→64 at 7×7 293 vs 173 | 317 vs 157 | 285 vs 181; 1×1 weight gradients 182–271 vs 48–104. E2
training step (``bench_e2_unet.py --profile-only``): 344 → 211 ms (before the shared borders
and the native adds, upsampling and concatenations; 194–203 ms with them,
benchmarks/RESULTS.md). The price: dropped columns, p_w per row of pitch W + p_w (rows share
their zero border): 3% at 28×28, 12.5% at 7×7.

Everything else (groups > 1, the input gradient of a strided convolution, ``USE_DIRECT =
False``): each product is a GEMM on the column matrix X_col, built for a chunk of m images in
the "wide" layout (C_in·k_h·k_w, m·P), P = H_out·W_out, so that one GEMM per group covers the
whole chunk:

    forward  Y    = W X_col                (C_out/G × K) · (K × m·P), then Y → (m, C_out, P)
    wgrad    ∂W  += G X_colᵀ               (C_out/G × m·P) · (m·P × K), G copied to (C_out, m·P)
    dgrad    ∂x   = conv2d(g, w') when the stride is 1 (w' flipped in space, channel axes
                    swapped, padding d(k−1) − p): a gather (im2col) and a GEMM with
                    K = C_out/G·k_h·k_w; otherwise col2im(Wᵀ G), a scatter-add.

The chunk (``CHUNK_BYTES`` of columns, one image for K1) keeps X_col in cache between its write
by im2col and its read by the GEMM; the buffers are allocated once per call. A 1×1 kernel with
stride 1 and no padding needs no im2col: X_col is the image itself.

Where the time went on these GEMM paths, before the direct kernel (K1, float32, 2 threads,
2-core AVX-512 EPYC, nothing else running): forward ≈ 9–10 ms, backward ≈ 20–22 ms, almost all
of it in the GEMMs (≈ 250 GFLOP/s on these shapes), the im2col passes ≈ 3 ms per forward +
backward. Until this session the products went through numpy's OpenBLAS, which that machine's
environment pins to its Haswell/AVX2 kernels (OPENBLAS_CORETYPE): ~105 GFLOP/s per core, K1
forward + backward ≈ 48 ms; and OpenBLAS's spinning worker threads made im2col/col2im run
single-threaded between the GEMMs. With one OpenMP pool for both, im2col/col2im run on all
threads (``parallel=True``).

Tried and dropped (2-core EPYC, K2 32×32 3×3 at 28×28, batch 64): the shifted-GEMM columns for
stride 1 (pad the chunk once, every column row a single memcpy of the flat padded buffer
shifted by i·d_h·W_p + j·d_w, the GEMM run over the padded grid and cropped) halve the column
build (17 vs 37 µs per image) but add (H_p·W_p)/(H_out·W_out) = 1.15× to the GEMM (+20 µs per
image at 1 thread) and a strided crop: 15.9 vs 12.1 ms forward at 1 thread, no clear gain at 2.
Column row building is at ~24 GB/s per thread already; the GEMMs are what is left. (The
direct kernel above uses the same shifted rows, but inside the micro-kernel: no column matrix
written, no packing of it. That, not the cheaper column build, is what gained 2–3×.)
Also tried (this session): the forward GEMM writing each image's output straight into y (a
batched GEMM over the chunk's images) instead of a chunk buffer and one transposing copy:
the kernels alone timed the same, the K1 forward + backward through the op layer went from
34 to 50 ms, for a reason not found; reverted. And the implicit GEMM over the whole batch for
small images (N = n·P, the panels packed across image boundaries, one transposing copy out):
slower than the im2col chunks on every E2 shape (K2 19.1 vs 17.3 ms forward + backward, 14×14
15.5 vs 14.1, 28×28 96→32 64–81 vs 44–46); removed.
Tried with the direct kernel (one run each, 2 threads, batch 64): the input gradient of a
stride-2 convolution as one stride-1 direct convolution of g over the stride phases (2×2
sub-kernels, 16/9 of the FLOPs, then a scatter of the phases): 6.1 vs 1.4 ms for col2im at
32→32 28×28, 4.9 vs 1.6 ms at 64→64 14×14; dropped. K split into equal blocks ≤ KC in the
direct forward (288 = 144 + 144 instead of 256 + 32): no measurable change; dropped.

conv_transpose2d uses the same three products (it is conv2d's adjoint): forward = dgrad,
input gradient = forward, weight gradient = wgrad with x and g swapped.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .gemm import matmul as _gemm

# Column-buffer budget per chunk (bytes). Chosen by timing K1 on the 2-core machine
# (benchmarks/bench_conv2d.py --chunk; 1 thread, fwd/bwd ms: 1 image per chunk 24.3/49.8,
# 3 images 25.1/51.4, 7 images 27.9/57.2, 14 images 31.7/63.3): X_col must stay in cache
# (L2 512 KB, L3 shared) between im2col and the GEMM; more images per GEMM gain nothing.
# At 2 threads (fwd/bwd ms, 1/2/4/8/16 MB): K1 14.4/28.7, 13.9/29.3, 13.9/29.6, 16.8/31.8,
# 16.5/31.6; K2 7.7/16.3, 7.8/16.6, 7.4/15.8, 7.2/15.5, 8.3/17.8; K2 stride 2 3.0/6.1, 2.8/5.9,
# 2.8/5.8, 2.9/5.9, 3.1/6.0: flat between 2 and 8 MB.
CHUNK_BYTES = 4 << 20

# groups = 1 forward products (the forward, and the input gradient of stride-1 convolutions)
# with at least this many output pixels per image run as an implicit GEMM: C++ packs the
# GEMM's B panels straight from the image (conv2d_forward_gemm), one GEMM per image, no column
# matrix. Smaller images go through im2col chunks (several images per GEMM: wider products).
# Measured, forward + backward, 2 threads, same process, chunked vs implicit (ms): K1 (32×32
# outputs) 29.7 vs 27.4; K2 (28×28) 17.0 vs 18.3; 14×14, 64 channels 14.1 vs 15.9; 7×7 4.4 vs
# 5.6. The implicit packing gathers runs of ≤ W_out pixels per kernel row, which costs more
# than im2col's row copies once the images are small.
IMPLICIT_GEMM_MIN_PIXELS = 1024


def _C():
    return _native.module()


def _out_hw(h, w, kh, kw, stride, padding, dilation):
    return ((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


def _pointwise(kh, kw, stride, padding, dilation):
    return (kh, kw, stride, padding) == (1, 1, (1, 1), (0, 0))


def chunk_images(n, k, p, itemsize):
    """Images per chunk so that one chunk's columns (k × p each) fit CHUNK_BYTES."""
    return int(max(1, min(n, CHUNK_BYTES // max(1, k * p * itemsize))))


def _geom(kh, kw, stride, padding, dilation):
    return (kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])


# Groups-1 products (the forward, the input gradient of a stride-1 convolution as a
# convolution, the weight gradient) go through the direct convolution (csrc/conv2d_direct.cpp)
# when True; False keeps them on the GEMM paths below (for the tests of those paths, and for
# comparison).
USE_DIRECT = True


# The direct kernel copies one padded image per thread (C_in·H_p·W_p) and buffers its output
# (C_out·H_out·W_p); above this many bytes for either, the convolution takes the GEMM paths,
# which stream through CHUNK_BYTES instead (the per-thread buffers are kept between calls).
DIRECT_MAX_IMAGE_BYTES = 64 << 20


def _direct(w, stride, padding, dilation, groups, x_shape, itemsize):
    """Groups 1, not a plain 1×1 product, one image's buffers within DIRECT_MAX_IMAGE_BYTES:
    the direct convolution applies."""
    if not (USE_DIRECT and groups == 1 and
            not _pointwise(*w.shape[2:], stride, padding, dilation)):
        return False
    hp, wp = x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
    ho = _out_hw(*x_shape[2:], *w.shape[2:], stride, padding, dilation)[0]
    return itemsize * max(x_shape[1] * hp * wp, w.shape[0] * ho * wp) <= DIRECT_MAX_IMAGE_BYTES


def _forward(x, w, stride, padding, dilation, groups, b=None):
    """conv2d(x, w) (+ b when given); x, w, b C-contiguous, one dtype. Returns (N, C_out,
    H_out, W_out)."""
    if _direct(w, stride, padding, dilation, groups, x.shape, x.itemsize):   # bias in copy-out
        n, _, h, wd = x.shape
        ho, wo = _out_hw(h, wd, *w.shape[2:], stride, padding, dilation)
        y = np.empty((n, w.shape[0], ho, wo), dtype=x.dtype)
        _C().conv2d_direct_forward(x, w, b, y, *stride, *padding, *dilation)
        return y
    y = _forward_gemm(x, w, stride, padding, dilation, groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _forward_gemm(x, w, stride, padding, dilation, groups):
    """Y = W X_col per chunk and group: a 1×1 product, the implicit GEMM or im2col chunks."""
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    ho, wo = _out_hw(h, wd, kh, kw, stride, padding, dilation)
    p, kg, og = ho * wo, cg * kh * kw, c_out // groups
    wg = w.reshape(groups, og, kg)
    y = np.empty((n, c_out, p), dtype=x.dtype)
    if _pointwise(kh, kw, stride, padding, dilation):   # X_col is x itself
        _gemm(wg, x.reshape(n, groups, cg, p), y.reshape(n, groups, og, p))
        return y.reshape(n, c_out, ho, wo)
    if groups == 1 and p >= IMPLICIT_GEMM_MIN_PIXELS:   # the columns packed inside the GEMM
        _C().conv2d_forward_gemm(x, w, y.reshape(n, c_out, ho, wo),
                                 *_geom(kh, kw, stride, padding, dilation))
        return y.reshape(n, c_out, ho, wo)
    nb = chunk_images(n, c_in * kh * kw, p, x.itemsize)
    cols_buf = np.empty(c_in * kh * kw * nb * p, dtype=x.dtype)
    out_buf = np.empty(c_out * nb * p, dtype=x.dtype)
    im2col, geom = _C().conv2d_im2col, _geom(kh, kw, stride, padding, dilation)
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        cols = cols_buf[:c_in * kh * kw * m * p].reshape(c_in * kh * kw, m * p)   # wide
        im2col(x[n0:n0 + m], cols, *geom, True)
        out = out_buf[:c_out * m * p].reshape(groups, og, m * p)
        _gemm(wg, cols.reshape(groups, kg, m * p), out)   # one GEMM per group
        y[n0:n0 + m] = out.reshape(c_out, m, p).transpose(1, 0, 2)
    return y.reshape(n, c_out, ho, wo)


def _flipped(w, groups):
    """w'[c, o, i, j] = w[o, c, k_h−1−i, k_w−1−j] per group: (C_in, C_out/G, k_h, k_w)."""
    c_out, cg, kh, kw = w.shape
    wf = w.reshape(groups, c_out // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wf).reshape(groups * cg, c_out // groups, kh, kw)


def _dgrad_as_conv(w, stride, padding, dilation):
    """With stride 1, dgrad is itself a convolution: ∂x = conv2d(g, w', padding d(k−1) − p),
    w' the weight flipped in space with its channel axes swapped (a gather, im2col, instead of
    the scatter-add of col2im, and a GEMM with K = C_out/G·k_h·k_w instead of C_out/G)."""
    kh, kw = w.shape[2:]
    return stride == (1, 1) and padding[0] <= dilation[0] * (kh - 1) and \
        padding[1] <= dilation[1] * (kw - 1)


def _backward(g, x, w, stride, padding, dilation, groups, need_x, need_w, x_shape=None):
    """(dgrad, wgrad) in one pass over the batch; g, x, w C-contiguous. x may be None when only
    the input gradient is wanted (then ``x_shape`` gives the input's shape)."""
    if need_x and _dgrad_as_conv(w, stride, padding, dilation) and \
            not _pointwise(*w.shape[2:], stride, padding, dilation):
        kh, kw = w.shape[2:]
        pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
        gx = _forward(g, _flipped(w, groups), stride, pad, dilation, groups)
        gw = _backward(g, x, w, stride, padding, dilation, groups, False, True)[1] \
            if need_w else None
        return gx, gw
    if need_w and _direct(w, stride, padding, dilation, groups, x.shape, x.itemsize):
        gw = np.empty(w.shape, dtype=g.dtype)
        _C().conv2d_direct_wgrad(g, x, gw, *stride, *padding, *dilation)
        gx = _backward(g, x, w, stride, padding, dilation, groups, True, False)[0] \
            if need_x else None
        return gx, gw
    n, c_in, h, wd = x.shape if x is not None else x_shape
    c_out, cg, kh, kw = w.shape
    ho, wo = g.shape[2:]
    p, kg, og = ho * wo, cg * kh * kw, c_out // groups
    dt = g.dtype
    wg = w.reshape(groups, og, kg)
    wgt = np.ascontiguousarray(np.swapaxes(wg, 1, 2))            # Wᵀ per group (G, K, O)
    gx = np.empty((n, c_in, h, wd), dtype=dt) if need_x else None
    gw = np.zeros((groups, og, kg), dtype=dt) if need_w else None
    if _pointwise(kh, kw, stride, padding, dilation):
        gg = g.reshape(n, groups, og, p)
        if need_x:
            _gemm(wgt, gg, gx.reshape(n, groups, cg, p))
        if need_w and groups == 1 and USE_DIRECT and \
                dt.itemsize * max(c_in, c_out) * p <= DIRECT_MAX_IMAGE_BYTES:
            # one call instead of n small GEMMs
            gw = gw.reshape(w.shape)   # (E2's 96→32 at 28×28: 5.0 → 1.7 ms)
            _C().conv2d_direct_wgrad(g, x, gw, 1, 1, 0, 0, 1, 1)
        elif need_w:
            xg = x.reshape(n, groups, cg, p)
            for i in range(n):
                _gemm(gg[i], np.swapaxes(xg[i], -1, -2), gw, accumulate=True)
        return gx, (gw.reshape(w.shape) if need_w else None)
    nb = chunk_images(n, c_in * kh * kw, p, dt.itemsize)
    cols_buf = np.empty(c_in * kh * kw * nb * p, dtype=dt)
    gt_buf = np.empty(c_out * nb * p, dtype=dt)
    geom = _geom(kh, kw, stride, padding, dilation)
    C = _C()
    g3 = g.reshape(n, c_out, p)
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        cols = cols_buf[:c_in * kh * kw * m * p].reshape(c_in * kh * kw, m * p)   # wide
        gt = gt_buf[:c_out * m * p].reshape(c_out, m, p)
        np.copyto(gt, g3[n0:n0 + m].transpose(1, 0, 2))          # G as (C_out, m·P)
        gt = gt.reshape(groups, og, m * p)
        if need_w:                                   # ∂W += G X_colᵀ  (K of the GEMM: m·P)
            C.conv2d_im2col(x[n0:n0 + m], cols, *geom, True)
            _gemm(gt, np.swapaxes(cols.reshape(groups, kg, m * p), 1, 2), gw, accumulate=True)
        if need_x:                                   # ∂x = col2im(Wᵀ G)
            _gemm(wgt, gt, cols.reshape(groups, kg, m * p))
            C.conv2d_col2im(cols, gx[n0:n0 + m], *geom, True)
    return gx, (gw.reshape(w.shape) if need_w else None)


def _dgrad(g, w, in_hw, stride, padding, dilation, groups):
    """∂x of conv2d (= conv_transpose2d forward) for an input of spatial size ``in_hw``."""
    x_shape = (g.shape[0], w.shape[1] * groups) + tuple(in_hw)
    return _backward(g, None, w, stride, padding, dilation, groups, True, False, x_shape)[0]


def _c(a):
    """C-contiguous, in a dtype the C++ kernels take: float16/bfloat16 run in float32 (the
    results are cast back by the family functions below)."""
    if a.dtype not in (np.float32, np.float64):
        return np.ascontiguousarray(a, dtype=np.float32)
    return np.ascontiguousarray(a)


def _back(r, dtype):
    return None if r is None else r.astype(dtype, copy=False)


# ------------------------------------------------------------------------ family interface
def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    xc = _c(x)
    bc = None if b is None else np.ascontiguousarray(b, dtype=xc.dtype)
    y = _forward(xc, _c(w), stride, padding, dilation, groups, bc)
    return _back(y, x.dtype)


def conv2d_backward(g, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    gx = gw = None
    if needs[0] or needs[1]:
        gx, gw = _backward(_c(g), _c(x), _c(w), stride, padding, dilation, groups,
                           bool(needs[0]), bool(needs[1]))
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return _back(gx, x.dtype), _back(gw, w.dtype), gb


def _natural(x, w, out_hw, stride, padding, dilation):
    """x zero-extended at the end to the output size conv2d gives for an input of ``out_hw``.

    That is x's size plus ⌊output_padding/stride⌋, non-zero only when output_padding ≥ stride
    (allowed when it is < dilation); the added entries are zeros, so the products are unchanged
    and im2col/col2im keep their own geometry.
    """
    kh, kw = w.shape[2:]
    ho, wo = _out_hw(out_hw[0], out_hw[1], kh, kw, stride, padding, dilation)
    if (ho, wo) == x.shape[2:]:
        return x
    return np.pad(x, ((0, 0), (0, 0), (0, ho - x.shape[2]), (0, wo - x.shape[3])))


def conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups):
    dtype = x.dtype
    _, _, h, wd = x.shape
    kh, kw = w.shape[2:]
    out_hw = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op in
                   zip((h, wd), (kh, kw), stride, padding, dilation, output_padding))
    x = _natural(_c(x), w, out_hw, stride, padding, dilation)
    y = _dgrad(x, _c(w), out_hw, stride, padding, dilation, groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return _back(y, dtype)


def conv_transpose2d_backward(g, x, w, stride, padding, output_padding, dilation, groups,
                              needs=(True, True, True)):
    dtypes = (x.dtype, w.dtype)
    g, x, w = _c(g), _c(x), _c(w)
    gx = gw = None
    if needs[0]:   # conv2d(g, w), cropped to x's size (see _natural)
        gx = _forward(g, w, stride, padding, dilation, groups)
        if gx.shape != x.shape:
            gx = np.ascontiguousarray(gx[:, :, :x.shape[2], :x.shape[3]])
    if needs[1]:
        xe = _natural(x, w, g.shape[2:], stride, padding, dilation)
        gw = _backward(xe, g, w, stride, padding, dilation, groups, False, True)[1]
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return _back(gx, dtypes[0]), _back(gw, dtypes[1]), gb
