"""conv2d family, numpy reference: the readable definition and the test oracle.

Versions of this family (one name everywhere): this file (numpy/CuPy, loops over the kh·kw
kernel offsets, each a whole-array matmul); ``minigen/native/conv2d.py`` + ``csrc/conv2d.cpp``
(C++ im2col/col2im + BLAS GEMMs, batch in chunks); ``kernels/conv2d.py`` (Triton implicit GEMM).

Notation (NCHW): x (N, C_in, H, W), w (C_out, C_in/G, k_h, k_w), G groups; group g owns input
channels [g·C_in/G, (g+1)·C_in/G) and output channels [g·C_out/G, (g+1)·C_out/G).
Stride s, zero padding p (the same on both sides of an axis), dilation d.

    H_out = ⌊(H + 2p_h − d_h(k_h − 1) − 1) / s_h⌋ + 1            (W_out likewise)

    y[n, o, a, b] = bias[o] + Σ_{c ∈ group(o)} Σ_{i<k_h, j<k_w}
                    w[o, c, i, j] · x_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w]

Seen as a matrix product: the column matrix ("im2col") X_col[(c, i, j), (a, b)] =
x_pad[c, a·s_h + i·d_h, b·s_w + j·d_w] of one image gives Y = W X_col per group, with
W the weight reshaped to (C_out/G, C_in/G·k_h·k_w). Work: 2·N·C_out·H_out·W_out·(C_in/G)·k_h·k_w
FLOPs forward; the two gradients below cost the same each.

Gradients (g = ∂L/∂y):
    ∂L/∂bias[o]        = Σ_{n,a,b} g[n, o, a, b]
    ∂L/∂w[o, c, i, j]  = Σ_{n,a,b} g[n, o, a, b] · x_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w]
                         (wgrad: G_y X_colᵀ)
    ∂L/∂x_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w] += Σ_o w[o, c, i, j] · g[n, o, a, b]
                         (dgrad: Wᵀ G_y, then col2im scatters the columns back; crop the pad)

conv_transpose2d IS conv2d's dgrad: the linear map x ↦ conv_transpose2d(x, w) is the adjoint
(transpose) of y ↦ conv2d(y, w) with the same weight tensor (C_in, C_out/G, k_h, k_w), read with
the roles of the channel axes swapped. Its output size is the input size of that conv2d:

    H_out = (H − 1)·s_h − 2p_h + d_h(k_h − 1) + output_padding_h + 1

so its forward is ``conv2d_input_grad``, and since the adjoint of the adjoint is the map itself,
its input gradient is a conv2d forward of g, and its weight gradient is conv2d's wgrad with
the roles of "output gradient" (its input x) and "input" (its output gradient g) swapped.
Every implementation of the family therefore only needs the three products forward, dgrad and
wgrad; the functions below make that explicit.

Family interface (same names and signatures in every implementation; stride, padding and
dilation are (h, w) pairs of ints, ``needs`` says which gradients to compute):

    conv2d_forward(x, w, b, stride, padding, dilation, groups) -> y
    conv2d_backward(g, x, w, stride, padding, dilation, groups, needs) -> (gx, gw, gb)
    conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups) -> y
    conv_transpose2d_backward(g, x, w, stride, padding, output_padding, dilation, groups,
                              needs) -> (gx, gw, gb)
"""
from __future__ import annotations

from ..backend import xp_of


def out_size(n, k, s, p, d):
    """H_out of conv2d along one axis."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def transpose_out_size(n, k, s, p, d, output_padding):
    """H_out of conv_transpose2d along one axis (the input size of the adjoint conv2d)."""
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def _window(i, j, stride, dilation, out_hw):
    """Slice of x_pad holding x_pad[a·s_h + i·d_h, b·s_w + j·d_w] for all output (a, b)."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    return (Ellipsis,
            slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def _pad(xp, x, padding):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv2d(x, w) + b: for each kernel offset (i, j), y_g += W_g[:, :, i, j] · window."""
    xp = xp_of(x)
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], dilation[1])
    xg = _pad(xp, x, padding).reshape(n, groups, cg, h + 2 * padding[0], wd + 2 * padding[1])
    wg = w.reshape(groups, c_out // groups, cg, kh, kw)
    y = xp.zeros((n, groups, c_out // groups, ho * wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            win = xg[_window(i, j, stride, dilation, (ho, wo))].reshape(n, groups, cg, ho * wo)
            y += xp.matmul(wg[:, :, :, i, j], win)          # (G, O, C) @ (N, G, C, P)
    y = y.reshape(n, c_out, ho, wo)
    if b is not None:
        y += b.reshape(1, c_out, 1, 1)
    return y


def conv2d_input_grad(g, w, in_hw, stride, padding, dilation, groups):
    """dgrad: ∂L/∂x = col2im(Wᵀ G), cropped to the input size ``in_hw``."""
    xp = xp_of(g)
    n, c_out, ho, wo = g.shape
    _, cg, kh, kw = w.shape
    h, wd = in_hw
    gg = g.reshape(n, groups, c_out // groups, ho * wo)
    wg = w.reshape(groups, c_out // groups, cg, kh, kw)
    gx = xp.zeros((n, groups, cg, h + 2 * padding[0], wd + 2 * padding[1]), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            col = xp.matmul(xp.swapaxes(wg[:, :, :, i, j], -1, -2), gg)   # (N, G, C, P)
            # within one offset (i, j) every x_pad position appears at most once: += is exact
            gx[_window(i, j, stride, dilation, (ho, wo))] += col.reshape(n, groups, cg, ho, wo)
    gx = gx.reshape(n, groups * cg, h + 2 * padding[0], wd + 2 * padding[1])
    return gx[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd]


def conv2d_weight_grad(g, x, kernel_hw, stride, padding, dilation, groups):
    """wgrad: ∂L/∂w[o, c, i, j] = Σ_{n,a,b} g[n, o, a, b] · window_{ij}[n, c, a, b]."""
    xp = xp_of(g)
    n, c_out, ho, wo = g.shape
    _, c_in, h, wd = x.shape
    kh, kw = kernel_hw
    cg = c_in // groups
    gg = g.reshape(n, groups, c_out // groups, ho * wo)
    xg = _pad(xp, x, padding).reshape(n, groups, cg, h + 2 * padding[0], wd + 2 * padding[1])
    gw = xp.zeros((groups, c_out // groups, cg, kh, kw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            win = xg[_window(i, j, stride, dilation, (ho, wo))].reshape(n, groups, cg, ho * wo)
            gw[:, :, :, i, j] = xp.matmul(gg, xp.swapaxes(win, -1, -2)).sum(axis=0)
    return gw.reshape(c_out, cg, kh, kw)


def conv2d_backward(g, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    """(∂L/∂x, ∂L/∂w, ∂L/∂b) of conv2d; None where ``needs`` says no."""
    gx = conv2d_input_grad(g, w, x.shape[2:], stride, padding, dilation, groups) \
        if needs[0] else None
    gw = conv2d_weight_grad(g, x, w.shape[2:], stride, padding, dilation, groups) \
        if needs[1] else None
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return gx, gw, gb


def conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups):
    """y = conv_transpose2d(x, w) + b = (conv2d dgrad of x with weight w) + b."""
    _, _, h, wd = x.shape
    kh, kw = w.shape[2:]
    out_hw = (transpose_out_size(h, kh, stride[0], padding[0], dilation[0], output_padding[0]),
              transpose_out_size(wd, kw, stride[1], padding[1], dilation[1], output_padding[1]))
    y = conv2d_input_grad(x, w, out_hw, stride, padding, dilation, groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(g, x, w, stride, padding, output_padding, dilation, groups,
                              needs=(True, True, True)):
    """Adjoint of the adjoint: ∂L/∂x = conv2d(g, w); ∂L/∂w = conv2d wgrad(x as the output
    gradient, g as the input); ∂L/∂b = Σ g."""
    gx = None
    if needs[0]:
        # an output_padding ≥ stride (allowed when < dilation) makes conv2d(g) larger than x by
        # ⌊output_padding/stride⌋ rows/columns at the end, which x never reached: crop them
        gx = conv2d_forward(g, w, None, stride, padding, dilation, groups)
        gx = gx[:, :, :x.shape[2], :x.shape[3]]
    gw = conv2d_weight_grad(x, g, w.shape[2:], stride, padding, dilation, groups) \
        if needs[1] else None
    gb = g.sum(axis=(0, 2, 3)) if needs[2] else None
    return gx, gw, gb
