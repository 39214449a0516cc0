"""Matrix products of the native kernels: ``matmul(a, b, out)`` over csrc/gemm.cpp.

The reference is numpy's ``matmul`` (``a @ b``). The C++ version is the packed, blocked GEMM
of csrc/gemm.h / gemm.cpp (the comment there has the loop structure and the micro-kernel tiles
per instruction set). The native conv2d, attention and logdet kernels, and the engine's
matmul/linear on the CPU, call this instead of numpy's BLAS: numpy's OpenBLAS may be pinned to
older kernels (OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU halves its sgemm rate), its worker
threads keep spinning after each call and took a core from minigen's OpenMP kernels on a
2-core machine, and the many small products of a convolution chunk or an attention head pay
its per-call setup. Measured, float32, same process (2-core AVX-512 EPYC, numpy pinned to
Haswell): 1024³ at ~193 GFLOP/s on one thread against numpy's 108; 330–390 on two.

``a`` and ``b`` may be any strided views (transposes cost nothing: the packing reads them;
negative strides are copied first). ``out`` must not share memory with the inputs (blocks of
one matrix side by side are fine: the blocked LU updates A22 from A21 and A12); an ``out``
whose rows are not contiguous goes through a copy. Batch dimensions broadcast as in numpy.
"""
from __future__ import annotations

import numpy as np

from .. import _native

_C = _native.module()


def isa() -> str:
    """The instruction set the micro-kernel uses on this CPU ("avx512f", "avx2+fma", ...)."""
    return _C.gemm_isa()


def _positive_strides(x):
    """x itself when the GEMM can read it in place (non-negative strides that are multiples of
    the item size), else a C-contiguous copy (a reversed view, an unaligned record field)."""
    if all(s >= 0 and s % x.itemsize == 0 for s in x.strides):
        return x
    return np.ascontiguousarray(x)


def matmul(a, b, out=None, *, accumulate: bool = False, alpha: float = 1.0):
    """``out = alpha · a @ b`` (``out += alpha · a @ b`` with ``accumulate``); a (..., M, K),
    b (..., K, N), float32 or float64, the same dtype. Returns ``out``."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: a and b must be at least 2-D, got shapes {a.shape} and "
                         f"{b.shape}")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    shape = batch + (a.shape[-2], b.shape[-1])
    if out is None:
        if accumulate:
            raise ValueError("matmul: accumulate=True needs out")
        out = np.empty(shape, dtype=np.result_type(a, b))
    elif out.shape != shape:
        raise ValueError(f"matmul: out has shape {out.shape}, a @ b has {shape}")
    if out.size == 0:
        return out
    for name, x in (("a", a), ("b", b)):
        if np.may_share_memory(x, out) and np.shares_memory(x, out):
            raise ValueError(f"matmul: {name} and out share memory; pass a separate output")
    a, b = _positive_strides(a), _positive_strides(b)
    d = len(shape)
    a = a.reshape((1,) * (d - a.ndim) + a.shape)      # views: leading 1s
    b = b.reshape((1,) * (d - b.ndim) + b.shape)
    target = out
    if out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
        target = np.ascontiguousarray(out) if accumulate else np.empty(shape, out.dtype)
    _C.gemm(a, b, target, accumulate, alpha)
    if target is not out:
        out[...] = target
    return out
