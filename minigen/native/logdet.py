"""Kernel family ``logdet``, native (C++ CPU) face: the functions of
``minigen/reference/logdet.py`` with the same signatures, over ``minigen._C`` (csrc/logdet.cpp).

Small matrices (n ≤ SMALL_N): one C++ call factors / solves the whole batch, OpenMP over the
batch, each matrix unblocked (it lives in L1/L2).

Large matrices: a blocked right-looking LU, as LAPACK's getrf (one C++ call per matrix,
csrc/logdet.cpp's lu_blocked; it was a Python loop over the steps below until the ~5 µs per
call of ~40 calls came to a fifth of the K6 slogdet 256 forward + backward). For each panel of
NB columns:
    1. the panel A[k:, k:k+NB] is factored in C++ (pivot search, whole-row swaps, rank-1
       updates inside the panel)                                             O(n·NB²)
    2. U12 = L11⁻¹ A12, a unit-lower triangular solve in C++                  O(NB²·n)
    3. A22 −= L21 U12: the trailing update, ≈ all of the 2n³/3 FLOPs, through the packed GEMM
       of csrc/gemm.cpp (``native/gemm.py``), in place on the blocks of A.
Solves are blocked the same way: the diagonal NB×NB blocks in C++ (register-tiled), the
off-diagonal updates with the GEMM (driven from here, ``_trsm``). The inverse, and the slogdet
backward A⁻ᵀ, come from A⁻¹ = U⁻¹ L⁻¹ P with L⁻¹ computed as a triangular matrix (4n³/3
multiply-adds, not the 2n³ of solve(A, I); one C++ call, inv_transposed). Measured, one thread, float32, n = 256 (median ms): LU 0.37 → 0.29 (packed
panels), inverse 0.72 → 0.40 (tiled diagonal solves, triangular L⁻¹).

The 1×1 convolution of the invertible 1×1 conv is a batched GEMM (csrc/gemm.cpp, split by
image); the small flow-weight products (C×C) are the reference's numpy functions.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .gemm import matmul as _gemm
from ..reference import logdet as _ref
from ..reference.logdet import invconv_weight_backward  # noqa: F401  (C×C products)

_C = _native.module()

__all__ = list(_ref.__all__)

SMALL_N = 96    # up to here the unblocked C++ kernels; above, the blocked LU and solves whose
                # trailing updates go through a GEMM (numpy's BLAS when this was measured, now
                # csrc/gemm.cpp). Measured on the quiet 2-core machine
                # (median ms, LU + inverse): n = 64: 0.024 + 0.054 unblocked, 0.027 + 0.062
                # blocked; n = 128: 0.22 + 0.71 unblocked, 0.12 + 0.23 blocked; n = 256:
                # 1.10 + 2.50 unblocked, 0.55–0.69 + 1.44 blocked. (An earlier threshold of 512
                # came from runs on a loaded machine, where threaded BLAS calls collapse.)
NB = 32          # panel width of the blocked LU


def _nb_solve(n):
    """Diagonal block of the blocked triangular solves (n = 128: 32 best; n = 256: 64)."""
    return 32 if n < 256 else 64


def _batched(a, n):
    """(B, n, n) C-contiguous float copy of a (..., n, n)."""
    return np.array(a, dtype=a.dtype, order="C", copy=True).reshape(-1, n, n)


# ----------------------------------------------------------------------------------- LU
def _lu_blocked(A, piv):
    """In-place blocked LU of one C-contiguous (n, n) matrix; returns the number of swaps.
    One C++ call (csrc/logdet.cpp, lu_blocked): for each panel of NB columns k..e, factor the
    panel, U12 = L11⁻¹ A12, A22 −= L21 U12 (the GEMM)."""
    return _C.logdet_lu_blocked(A, piv, NB)


def lu_factor(a):
    n = a.shape[-1]
    batch = a.shape[:-2]
    lu = _batched(a, n)
    nb = lu.shape[0]
    piv = np.empty((nb, n), dtype=np.int32)
    sign = np.empty(nb, dtype=a.dtype)
    if n <= SMALL_N:
        _C.logdet_lu_factor_batched(lu, piv, sign)
    else:
        for b in range(nb):
            sign[b] = -1.0 if _lu_blocked(lu[b], piv[b]) & 1 else 1.0
    return lu.reshape(a.shape), piv.reshape(batch + (n,)), sign.reshape(batch)


def slogdet_from_lu(lu, perm_sign):
    return _ref.slogdet_from_lu(lu, perm_sign)  # O(n) per matrix: the diagonal only


pivots_to_permutation = _ref.pivots_to_permutation


# ------------------------------------------------------------------------------- solves
def _trsm(T, B, lower, unit):
    """B ← T⁻¹ B in place, blocked: diagonal blocks in C++, the rest with matmul."""
    n = T.shape[0]
    nb = _nb_solve(n)
    starts = range(0, n, nb)
    for i0 in (starts if lower else reversed(starts)):
        i1 = min(i0 + nb, n)
        _C.logdet_tri_solve(T[i0:i1, i0:i1], B[i0:i1], lower, unit)
        if lower and i1 < n:
            _gemm(T[i1:, i0:i1], B[i0:i1], B[i1:], accumulate=True, alpha=-1.0)
        elif not lower and i0 > 0:
            _gemm(T[:i0, i0:i1], B[i0:i1], B[:i0], accumulate=True, alpha=-1.0)


def _solve_one(lu, piv, X, transpose):
    if not transpose:
        _C.logdet_swap_rows(X, piv, False)                 # P B
        _trsm(lu, X, lower=True, unit=True)                # L⁻¹
        _trsm(lu, X, lower=False, unit=False)              # U⁻¹
    else:
        luT = np.ascontiguousarray(lu.T)                   # rows of Uᵀ and Lᵀ contiguous
        _trsm(luT, X, lower=True, unit=False)              # U⁻ᵀ
        _trsm(luT, X, lower=False, unit=True)              # L⁻ᵀ
        _C.logdet_swap_rows(X, piv, True)                  # Pᵀ


def lu_solve(lu, piv, b, transpose=False):
    n = lu.shape[-1]
    L = np.ascontiguousarray(lu).reshape(-1, n, n)
    P = np.ascontiguousarray(piv, dtype=np.int32).reshape(-1, n)
    X = np.array(b, dtype=lu.dtype, order="C", copy=True).reshape(L.shape[0], n, b.shape[-1])
    if n <= SMALL_N:
        _C.logdet_lu_solve_batched(L, P, X, bool(transpose))
    else:
        for i in range(L.shape[0]):
            _solve_one(L[i], P[i], X[i], transpose)
    return X.reshape(b.shape)


def _inv_transposed_one(lu, piv):
    """A⁻ᵀ of one large matrix from P A = L U: A⁻¹ = U⁻¹ L⁻¹ P, so with Y = U⁻¹ L⁻¹,
    A⁻ᵀ = Pᵀ Yᵀ; L⁻¹ computed as a triangular matrix. 4n³/3 multiply-adds (n³/3 for L⁻¹, n³
    for U⁻¹ against it), against 2n³ for solve(A, I). One C++ call (csrc/logdet.cpp,
    inv_transposed), blocked by _nb_solve(n) rows."""
    out = np.empty_like(lu)
    _C.logdet_inv_transposed(lu, piv, out, _nb_solve(lu.shape[0]))
    return out


def _inv_transposed(lu, piv):
    """A⁻ᵀ for every matrix of lu (..., n, n)."""
    n = lu.shape[-1]
    if n <= SMALL_N:
        eye = np.broadcast_to(np.eye(n, dtype=lu.dtype), lu.shape)
        return np.swapaxes(lu_solve(lu, piv, eye), -1, -2)
    L = np.ascontiguousarray(lu).reshape(-1, n, n)
    P = np.ascontiguousarray(piv, dtype=np.int32).reshape(-1, n)
    out = np.empty_like(L)
    for i in range(L.shape[0]):
        out[i] = _inv_transposed_one(L[i], P[i])
    return out.reshape(lu.shape)


def inv_from_lu(lu, piv):
    n = lu.shape[-1]
    if n <= SMALL_N:
        eye = np.broadcast_to(np.eye(n, dtype=lu.dtype), lu.shape)
        return lu_solve(lu, piv, eye)
    return np.ascontiguousarray(np.swapaxes(_inv_transposed(lu, piv), -1, -2))


def slogdet_backward(lu, piv, g_logabsdet):
    """g · A⁻ᵀ from the saved LU."""
    g = np.asarray(g_logabsdet, dtype=lu.dtype)[..., None, None]
    return g * _inv_transposed(lu, piv)


# ------------------------------------------------------------------------------ flows
def conv1x1_forward(x, w):
    """y[n] = W x[n] (C_out × C times C × positions): one batched GEMM, split by image."""
    n, c = x.shape[:2]
    x3 = np.ascontiguousarray(x).reshape(n, c, -1)
    y = _gemm(np.ascontiguousarray(w, dtype=x3.dtype), x3)
    return y.reshape((n, w.shape[0]) + x.shape[2:])


def conv1x1_backward(g, x, w):
    """g_x[n] = Wᵀ g[n];  g_w = Σ_n g[n] x[n]ᵀ (per-image products, then the sum over n)."""
    n, c = x.shape[:2]
    g3 = np.ascontiguousarray(g).reshape(n, w.shape[0], -1)
    x3 = np.ascontiguousarray(x, dtype=g3.dtype).reshape(n, c, -1)
    g_x = _gemm(np.ascontiguousarray(w, dtype=g3.dtype).T, g3).reshape(x.shape)
    g_w = _gemm(g3, x3.transpose(0, 2, 1)).sum(axis=0)
    return g_x, g_w


def _c(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def actnorm_forward(x, log_scale, bias, reverse=False):
    x = _c(x)
    out = np.empty_like(x)
    _C.logdet_actnorm_forward(x, _c(log_scale), _c(bias), out, bool(reverse))
    m = int(np.prod(x.shape[2:])) if x.ndim > 2 else 1
    ld = m * log_scale.sum()
    return out, np.full(x.shape[0], -ld if reverse else ld, dtype=x.dtype)


def actnorm_backward(g_out, g_logdet, saved, log_scale, reverse=False):
    saved = _c(saved)
    g = np.zeros_like(saved) if g_out is None else _c(g_out)
    c = saved.shape[1]
    g_in = np.empty_like(saved)
    sum_gx = np.empty(c, dtype=saved.dtype)
    sum_g = np.empty(c, dtype=saved.dtype)
    _C.logdet_actnorm_backward(g, saved, _c(log_scale), g_in, sum_gx, sum_g, bool(reverse))
    m = int(np.prod(saved.shape[2:])) if saved.ndim > 2 else 1
    gld = m * g_logdet.sum() if g_logdet is not None else 0.0
    if not reverse:   # g_ℓ = s Σ g x + M Σ g_ld,  g_b = Σ g
        g_ls, g_b = np.exp(log_scale) * sum_gx + gld, sum_g
    else:             # g_ℓ = −Σ g x − M Σ g_ld,  g_b = −e^{−ℓ} Σ g
        g_ls, g_b = -sum_gx - gld, -np.exp(-log_scale) * sum_g
    dt = saved.dtype
    return g_in, g_ls.astype(dt, copy=False), g_b.astype(dt, copy=False)


def coupling_forward(x, h, reverse=False):
    x, h = _c(x), _c(h)
    out = np.empty_like(x)
    logdet = np.empty(x.shape[0], dtype=x.dtype)
    _C.logdet_coupling_forward(x, h, out, logdet, bool(reverse))
    return out, logdet


def coupling_backward(g_out, g_logdet, inp, h, reverse=False):
    inp, h = _c(inp), _c(h)
    g = np.zeros_like(inp) if g_out is None else _c(g_out)
    gld = None if g_logdet is None else _c(np.asarray(g_logdet, dtype=inp.dtype))
    g_inp, g_h = np.empty_like(inp), np.empty_like(h)
    _C.logdet_coupling_backward(g, gld, inp, h, g_inp, g_h, bool(reverse))
    return g_inp, g_h


def invconv_weight(perm, lower, upper, log_s, sign_s, inverse=False):
    """W = P L (U + diag s) with numpy's products (C×C); W⁻¹ by two C++ triangular solves
    against Pᵀ."""
    if not inverse:
        return _ref.invconv_weight(perm, lower, upper, log_s, sign_s)
    c = lower.shape[0]
    X = np.array(perm.T, dtype=lower.dtype, order="C")
    T = np.tril(lower, -1) + np.triu(upper, 1)
    T[np.diag_indices(c)] = sign_s * np.exp(log_s)
    T = np.ascontiguousarray(T, dtype=lower.dtype)
    _trsm(T, X, lower=True, unit=True)                     # L⁻¹ Pᵀ
    _trsm(T, X, lower=False, unit=False)                   # (U + diag s)⁻¹ L⁻¹ Pᵀ
    return X
