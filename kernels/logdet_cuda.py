"""Kernel family ``logdet``, raw CUDA launcher (installed as ``minigen.kernels.logdet_cuda``).

``kernels/logdet.cu`` (compiled once through ``cupy.RawModule``) holds the batched small LU
with partial pivoting (one thread block per matrix, the matrix in shared memory) and the small
batched solve. They serve ``lu_factor`` and ``lu_solve`` (and so the inverse and the slogdet
backward) for n ≤ 64. Everything else (large n, the flow kernels, the C×C weight products) is
the Triton version when it can run, else the reference's CuPy array code.
"""
from __future__ import annotations

import os

from minigen.reference import logdet as _ref

try:
    from . import logdet as _fallback  # the Triton kernels (GPU)
    _fallback.triton  # noqa: B018
except Exception:  # pragma: no cover - no triton: the reference's CuPy code
    _fallback = _ref

__all__ = list(_ref.__all__)

MAX_N = 64
_MODULE = None


def _module():
    global _MODULE
    if _MODULE is None:
        import cupy as cp
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logdet.cu")
        with open(path) as f:
            _MODULE = cp.RawModule(code=f.read(), options=("--std=c++14",))
    return _MODULE


def _suffix(dtype):
    import numpy as np
    if dtype == np.float32:
        return "f32"
    if dtype == np.float64:
        return "f64"
    raise TypeError(f"logdet (cuda): float32 or float64 expected, got {dtype}")


def lu_factor(a):
    import cupy as cp
    n = a.shape[-1]
    if n > MAX_N or n == 0:
        return _fallback.lu_factor(a)
    batch = a.shape[:-2]
    src = cp.ascontiguousarray(a).reshape(-1, n, n)
    nb = src.shape[0]
    lu = cp.empty_like(src)
    piv = cp.empty((nb, n), dtype=cp.int32)
    sign = cp.empty(nb, dtype=a.dtype)
    if nb:
        kern = _module().get_function("lu_small_" + _suffix(a.dtype))
        kern((nb,), (32, 8), (src, lu, piv, sign, cp.int32(n)))
    return lu.reshape(a.shape), piv.reshape(batch + (n,)), sign.reshape(batch)


def lu_solve(lu, piv, b, transpose=False):
    import cupy as cp
    n = lu.shape[-1]
    if n > MAX_N or n == 0:
        return _fallback.lu_solve(lu, piv, b, transpose)
    L = cp.ascontiguousarray(lu).reshape(-1, n, n)
    P = cp.ascontiguousarray(piv, dtype=cp.int32).reshape(-1, n)
    k = b.shape[-1]
    X = cp.ascontiguousarray(b.astype(lu.dtype, copy=True).reshape(L.shape[0], n, k))
    if X.size:
        threads = 64
        kern = _module().get_function("solve_small_" + _suffix(lu.dtype))
        kern((L.shape[0], (k + threads - 1) // threads), (threads,),
             (L, P, X, cp.int32(n), cp.int32(k), cp.int32(bool(transpose))))
    return X.reshape(b.shape)


def inv_from_lu(lu, piv):
    import cupy as cp
    eye = cp.broadcast_to(cp.eye(lu.shape[-1], dtype=lu.dtype), lu.shape)
    return lu_solve(lu, piv, eye)


def slogdet_backward(lu, piv, g_logabsdet):
    import cupy as cp
    eye = cp.broadcast_to(cp.eye(lu.shape[-1], dtype=lu.dtype), lu.shape)
    return g_logabsdet[..., None, None].astype(lu.dtype, copy=False) * \
        lu_solve(lu, piv, eye, transpose=True)


slogdet_from_lu = _ref.slogdet_from_lu
pivots_to_permutation = _ref.pivots_to_permutation
invconv_weight = _ref.invconv_weight
invconv_weight_backward = _ref.invconv_weight_backward
conv1x1_forward = _ref.conv1x1_forward
conv1x1_backward = _ref.conv1x1_backward
actnorm_forward = _fallback.actnorm_forward
actnorm_backward = _fallback.actnorm_backward
coupling_forward = _fallback.coupling_forward
coupling_backward = _fallback.coupling_backward
