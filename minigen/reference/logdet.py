"""Kernel family ``logdet``, numpy reference: LU with partial pivoting and what it gives
(slogdet, solve, inverse), and the fused normalizing-flow primitives (MATH.md §4).

Every function works on numpy or CuPy arrays (``xp = xp_of(a)``) and is the test oracle of the
native (csrc/logdet.cpp), Triton (kernels/logdet.py) and CUDA (kernels/logdet.cu) versions,
which export the same functions with the same signatures.

LU with partial pivoting (LAPACK's getrf, 0-based pivots). For k = 0..n−1:
    p_k = argmax_{i ≥ k} |a_ik|          (first maximum on ties, as idamax)
    swap rows k and p_k (whole rows)      → piv[k] = p_k
    l_ik = a_ik / a_kk                    (i > k; skipped when a_kk = 0: the column is zero)
    a_ij ← a_ij − l_ik a_kj               (i, j > k)
leaving P A = L U with L unit lower (below the diagonal of ``lu``) and U upper (on and above).
perm_sign = (−1)^(number of k with piv[k] ≠ k) = det P.

    det A = det Pᵀ · Π u_kk   ⇒   sign = perm_sign · Π sign(u_kk),  logabsdet = Σ log|u_kk|
(a sum of logs, so a 1000×1000 matrix with det 1e-500 is fine: no product ever overflows).
A zero u_kk makes A singular: sign 0, logabsdet −inf (PyTorch's convention).

    d logabsdet / dA = A⁻ᵀ          (MATH.md §4; sign is piecewise constant: no gradient)
    A X = B   ⇒  X = U⁻¹ L⁻¹ (P B)        (forward, then back substitution)
    Aᵀ X = B  ⇒  X = Pᵀ L⁻ᵀ U⁻ᵀ B

Shapes: ``a`` (..., n, n); piv int32 (..., n); perm_sign, sign, logabsdet (...); ``b`` (..., n, k)
with the same batch dims as ``a`` (the op layer broadcasts).
"""
from __future__ import annotations

import numpy as np

from ..backend import xp_of

__all__ = ["lu_factor", "slogdet_from_lu", "lu_solve", "inv_from_lu", "slogdet_backward",
           "pivots_to_permutation",
           "actnorm_forward", "actnorm_backward",
           "invconv_weight", "invconv_weight_backward", "conv1x1_forward", "conv1x1_backward",
           "coupling_forward", "coupling_backward"]


# ------------------------------------------------------------------------------ LU and friends
def lu_factor(a):
    """(lu, piv, perm_sign) of a (..., n, n): P A = L U, L and U packed in ``lu``."""
    xp = xp_of(a)
    n = a.shape[-1]
    batch = a.shape[:-2]
    lu = a.reshape(-1, n, n).copy()
    nb = lu.shape[0]
    piv = xp.zeros((nb, n), dtype=xp.int32)
    sign = xp.ones(nb, dtype=a.dtype)
    rows = xp.arange(nb)
    for k in range(n):
        p = k + xp.argmax(xp.abs(lu[:, k:, k]), axis=1)          # pivot row of each matrix
        piv[:, k] = p
        row_k = lu[rows, k].copy()                                # swap rows k and p
        lu[rows, k] = lu[rows, p]
        lu[rows, p] = row_k
        sign = xp.where(p != k, -sign, sign)
        pivot = lu[:, k, k]
        safe = xp.where(pivot != 0, pivot, 1)                     # zero pivot: column is zero
        lu[:, k + 1:, k] /= safe[:, None]                         # l_ik = a_ik / a_kk
        lu[:, k + 1:, k + 1:] -= lu[:, k + 1:, k, None] * lu[:, k, None, k + 1:]
    return lu.reshape(a.shape), piv.reshape(batch + (n,)), sign.reshape(batch)


def slogdet_from_lu(lu, perm_sign):
    """(sign, logabsdet): sign = perm_sign · Π sign(u_kk), logabsdet = Σ log|u_kk|."""
    xp = xp_of(lu)
    d = xp.diagonal(lu, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        logabsdet = xp.log(xp.abs(d)).sum(axis=-1)               # −inf when some u_kk = 0
    sign = perm_sign * xp.prod(xp.sign(d), axis=-1) + 0.0        # 0 (not −0) when u_kk = 0
    return sign.astype(lu.dtype, copy=False), logabsdet.astype(lu.dtype, copy=False)


def pivots_to_permutation(piv):
    """perm with (P A)[i] = A[perm[i]]: the row swaps k ↔ piv[k] applied in order to 0..n−1."""
    xp = xp_of(piv)
    n = piv.shape[-1]
    p = piv.reshape(-1, n)
    rows = xp.arange(p.shape[0])
    perm = xp.broadcast_to(xp.arange(n, dtype=xp.int64), p.shape).copy()
    for k in range(n):
        tk = perm[:, k].copy()
        perm[:, k] = perm[rows, p[:, k]]
        perm[rows, p[:, k]] = tk
    return perm.reshape(piv.shape)


def lu_solve(lu, piv, b, transpose=False):
    """X with A X = B (or Aᵀ X = B when ``transpose``), from A's LU; b (..., n, k)."""
    xp = xp_of(lu)
    n = lu.shape[-1]
    L = lu.reshape(-1, n, n)
    B = b.reshape(L.shape[0], n, b.shape[-1]).astype(lu.dtype, copy=True)
    perm = pivots_to_permutation(piv).reshape(-1, n)
    if not transpose:
        y = xp.take_along_axis(B, perm[:, :, None], axis=1)       # P B
        for i in range(1, n):                                      # L y = P B  (unit lower)
            y[:, i] -= (L[:, i, None, :i] @ y[:, :i])[:, 0]
        for i in range(n - 1, -1, -1):                             # U x = y
            s = y[:, i] - (L[:, i, None, i + 1:] @ y[:, i + 1:])[:, 0]
            y[:, i] = s / L[:, i, i, None]
        return y.reshape(b.shape)
    z = B
    for i in range(n):                                             # Uᵀ z = B  (lower, u_ii)
        s = z[:, i] - (L[:, None, :i, i] @ z[:, :i])[:, 0]
        z[:, i] = s / L[:, i, i, None]
    for i in range(n - 2, -1, -1):                                 # Lᵀ w = z  (unit upper)
        z[:, i] -= (L[:, None, i + 1:, i] @ z[:, i + 1:])[:, 0]
    x = xp.empty_like(z)                                           # x = Pᵀ w: x[perm] = w
    xp.put_along_axis(x, xp.broadcast_to(perm[:, :, None], z.shape), z, axis=1)
    return x.reshape(b.shape)


def inv_from_lu(lu, piv):
    """A⁻¹ = U⁻¹ L⁻¹ P: ``lu_solve`` against the identity."""
    xp = xp_of(lu)
    n = lu.shape[-1]
    eye = xp.broadcast_to(xp.eye(n, dtype=lu.dtype), lu.shape)
    return lu_solve(lu, piv, eye)


def slogdet_backward(lu, piv, g_logabsdet):
    """dA = g · A⁻ᵀ from the saved LU (no second factorisation): A⁻ᵀ solves Aᵀ X = I."""
    xp = xp_of(lu)
    n = lu.shape[-1]
    eye = xp.broadcast_to(xp.eye(n, dtype=lu.dtype), lu.shape)
    inv_t = lu_solve(lu, piv, eye, transpose=True)
    return g_logabsdet[..., None, None].astype(lu.dtype, copy=False) * inv_t


# ------------------------------------------------------------------------------------ actnorm
# x (N, C, *spatial), ℓ = log s and b of shape (C,), s = exp(ℓ) > 0, M = Π spatial:
#   forward  y = s ⊙ x + b,       log-det = M Σ_c ℓ_c   (the same for every sample)
#   inverse  x = (y − b) ⊙ e^{−ℓ}, log-det = −M Σ_c ℓ_c
def _cshape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def actnorm_forward(x, log_scale, bias, reverse=False):
    """(out, logdet (N,)): the actnorm map (or its inverse) and its per-sample log-det."""
    xp = xp_of(x)
    cs = _cshape(x)
    m = int(np.prod(x.shape[2:])) if x.ndim > 2 else 1
    ld = m * log_scale.sum()
    if not reverse:
        out = xp.exp(log_scale).reshape(cs) * x + bias.reshape(cs)
    else:
        out = (x - bias.reshape(cs)) * xp.exp(-log_scale).reshape(cs)
        ld = -ld
    return out.astype(x.dtype, copy=False), xp.full(x.shape[0], ld, dtype=x.dtype)


def actnorm_backward(g_out, g_logdet, saved, log_scale, reverse=False):
    """(g_in, g_log_scale, g_bias). ``saved`` is x: the input (forward) or the output (reverse).

    forward:  g_x = g s,    g_ℓ = Σ g s x + M Σ_n g_ld,   g_b = Σ g
    reverse:  g_y = g / s,  g_ℓ = −Σ g x − M Σ_n g_ld,    g_b = −Σ g / s
    (sums over the batch and the positions; g = d loss/d out, g_ld = d loss/d logdet)
    """
    xp = xp_of(saved)
    cs = _cshape(saved)
    axes = (0,) + tuple(range(2, saved.ndim))
    m = int(np.prod(saved.shape[2:])) if saved.ndim > 2 else 1
    gld = m * g_logdet.sum() if g_logdet is not None else 0.0
    if g_out is None:
        g_out = xp.zeros_like(saved)
    if not reverse:
        s = xp.exp(log_scale)
        g_in = g_out * s.reshape(cs)
        g_ls = s * (g_out * saved).sum(axis=axes) + gld
        g_b = g_out.sum(axis=axes)
    else:
        r = xp.exp(-log_scale)
        g_in = g_out * r.reshape(cs)
        g_ls = -(g_out * saved).sum(axis=axes) - gld
        g_b = -r * g_out.sum(axis=axes)
    dt = saved.dtype
    return g_in.astype(dt, copy=False), g_ls.astype(dt, copy=False), g_b.astype(dt, copy=False)


# ------------------------------------------------------------- invertible 1×1 conv, LU form
# W = P L (U + diag s), P a fixed permutation matrix (C, C), L = tril(lower, −1) + I,
# U = triu(upper, 1), s = sign_s ⊙ exp(log_s). log|det W| = Σ log|s|, so a 1×1 conv over M
# positions has log-det M Σ log_s. The inverse weight is W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ,
# computed by two triangular solves against Pᵀ (never a general inverse).
def _lu_parts(lower, upper, log_s, sign_s):
    xp = xp_of(lower)
    c = lower.shape[0]
    L = xp.tril(lower, -1) + xp.eye(c, dtype=lower.dtype)
    D = xp.triu(upper, 1) + xp.diag(sign_s * xp.exp(log_s))
    return L, D


def _tri_solve(T, B, lower):
    """T⁻¹ B for a triangular T (row by row: the readable substitution)."""
    xp = xp_of(T)
    n = T.shape[0]
    X = B.astype(T.dtype, copy=True)
    order = range(n) if lower else range(n - 1, -1, -1)
    for i in order:
        sl = slice(0, i) if lower else slice(i + 1, n)
        X[i] = (X[i] - T[i, sl] @ X[sl]) / T[i, i]
    return X


def invconv_weight(perm, lower, upper, log_s, sign_s, inverse=False):
    """W = P L (U + diag s), or W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ when ``inverse``; (C, C)."""
    L, D = _lu_parts(lower, upper, log_s, sign_s)
    P = perm.astype(lower.dtype, copy=False)
    if not inverse:
        return P @ L @ D
    return _tri_solve(D, _tri_solve(L, P.T, lower=True), lower=False)


def invconv_weight_backward(g_w, perm, lower, upper, log_s, sign_s, w, inverse=False):
    """(g_lower, g_upper, g_log_s) from g_w = d loss/d W (or d loss/d W⁻¹; ``w`` is what
    ``invconv_weight`` returned).

    With D = U + diag s:  g_L = tril(Pᵀ g_W Dᵀ, −1), g_D = (P L)ᵀ g_W, g_U = triu(g_D, 1),
    g_log_s = diag(g_D) ⊙ s. For the inverse V = W⁻¹: g_W = −Vᵀ g_V Vᵀ first.
    """
    xp = xp_of(g_w)
    L, D = _lu_parts(lower, upper, log_s, sign_s)
    P = perm.astype(lower.dtype, copy=False)
    if inverse:
        g_w = -(w.T @ g_w @ w.T)
    g_L = xp.tril(P.T @ g_w @ D.T, -1)
    g_D = (P @ L).T @ g_w
    g_U = xp.triu(g_D, 1)
    g_ls = xp.diagonal(g_D) * sign_s * xp.exp(log_s)
    return g_L, g_U, g_ls


def conv1x1_forward(x, w):
    """y[n, :, p] = W x[n, :, p] at every position p; x (N, C, *spatial), w (C_out, C)."""
    n, c = x.shape[:2]
    y = w @ x.reshape(n, c, -1)
    return y.reshape((n, w.shape[0]) + x.shape[2:])


def conv1x1_backward(g, x, w):
    """(g_x, g_w): g_x = Wᵀ g per position, g_w = Σ_n Σ_p g[n, :, p] x[n, :, p]ᵀ."""
    n, c = x.shape[:2]
    g3 = g.reshape(n, w.shape[0], -1)
    x3 = x.reshape(n, c, -1)
    g_x = (w.T @ g3).reshape(x.shape)
    g_w = (g3 @ x3.transpose(0, 2, 1)).sum(axis=0)
    return g_x, g_w


# ------------------------------------------------------------------------- affine coupling
# Glow's layer with the convention of MATH.md §4. x (N, C, *spatial), C even; x_a = first C/2
# channels (transformed), x_b = last C/2 (passed through, and the input of the user's network).
# h = NN(x_b) has C channels: raw = h[:, :C/2] (the log-scale, pre-activation), t = h[:, C/2:]:
#   s = sigmoid(raw + 2)       (Glow's choice: s ∈ (0, 1), ≈ 0.88 at raw = 0: stable start)
#   forward  y_a = s ⊙ x_a + t,       y_b = x_b,   log-det = Σ log s      (per sample)
#   inverse  x_a = (y_a − t) / s,     x_b = y_b,   log-det = −Σ log s
# log s = log sigmoid(z) = min(z, 0) − log1p(exp(−|z|)) (no overflow for any z).
def _log_sigmoid(xp, z):
    return xp.minimum(z, 0) - xp.log1p(xp.exp(-xp.abs(z)))


def coupling_forward(x, h, reverse=False):
    """(out (N, C, *), logdet (N,)): the coupling map (or its inverse) and Σ ±log s."""
    xp = xp_of(x)
    ca = x.shape[1] // 2
    z = h[:, :ca] + 2.0
    t = h[:, ca:]
    log_s = _log_sigmoid(xp, z)
    s = xp.exp(log_s)
    out = x.copy()
    if not reverse:
        out[:, :ca] = s * x[:, :ca] + t
    else:
        out[:, :ca] = (x[:, :ca] - t) / s
    ld = log_s.reshape(x.shape[0], -1).sum(axis=1)
    return out, (-ld if reverse else ld).astype(x.dtype, copy=False)


def coupling_backward(g_out, g_logdet, inp, h, reverse=False):
    """(g_inp, g_h) with inp the input of ``coupling_forward`` (x, or y when ``reverse``).

    ds/draw = s(1 − s), dlog s/draw = 1 − s. forward: g_x_a = g_a s, g_x_b = g_b, g_t = g_a,
    g_raw = (g_a x_a s + g_ld)(1 − s). reverse (x_a = (y_a − t)/s): g_y_a = g_a / s,
    g_t = −g_a / s, g_raw = −(g_a x_a + g_ld)(1 − s).
    """
    xp = xp_of(inp)
    n, c = inp.shape[:2]
    ca = c // 2
    s = xp.exp(_log_sigmoid(xp, h[:, :ca] + 2.0))
    if g_out is None:
        g_out = xp.zeros_like(inp)
    gld = (xp.zeros(n, inp.dtype) if g_logdet is None else g_logdet).reshape(
        (n,) + (1,) * (inp.ndim - 1))
    ga = g_out[:, :ca]
    g_inp = g_out.copy()
    g_h = xp.empty_like(h)
    if not reverse:
        g_inp[:, :ca] = ga * s
        g_h[:, ca:] = ga
        g_h[:, :ca] = (ga * inp[:, :ca] * s + gld) * (1 - s)
    else:
        xa = (inp[:, :ca] - h[:, ca:]) / s
        g_inp[:, :ca] = ga / s
        g_h[:, ca:] = -ga / s
        g_h[:, :ca] = -(ga * xa + gld) * (1 - s)
    return g_inp, g_h
