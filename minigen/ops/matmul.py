"""Matrix products: matmul/@ (batched, broadcast), bmm, linear, einsum.

C = A B  ⇒  dA = dC Bᵀ,  dB = Aᵀ dC (summed over broadcast batch dims). On the CPU the float32
and float64 products go through minigen's GEMM (csrc/gemm.cpp, ``minigen.native.gemm``) when
the native extension is built, so that every product of a training step (conv2d, attention,
linear layers) shares one OpenMP thread pool: numpy's OpenBLAS keeps its own threads spinning
for a while after each call, and on a 2-core machine they took a core from the next OpenMP
kernel (measured: the E3 UNet forward at 397 ms with the linear layers on OpenBLAS, 157 ms
with OpenBLAS held to one thread). Otherwise, and on the GPU (cupy → cuBLAS), the backend's
matmul.
"""
from __future__ import annotations

import string

import numpy as np

from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from ._util import same_dtype, tensor_method, unbroadcast

__all__ = ["matmul", "bmm", "mm", "linear", "einsum", "outer", "dot"]

_FLOATS = ("float32", "float64")
_native_matmul = None


def _gemm():
    """minigen.native.gemm.matmul, or False when the extension is not built."""
    global _native_matmul
    if _native_matmul is None:
        try:
            from .. import _native
            if not _native.available():
                raise ImportError
            from ..native.gemm import matmul as fn
            _native_matmul = fn
        except ImportError:
            _native_matmul = False
    return _native_matmul


# Below this many multiply-adds per matrix (m·k·n; 16³) numpy's matmul is used: the native
# wrapper's argument checks cost ~10 µs a call, numpy's 4×4 product ~1.6 µs in all.
SMALL_GEMM = 4096


def _mm(a, b):
    """a @ b for arrays of at least 2 dimensions: the native GEMM for numpy float32/float64
    operands of one dtype (past SMALL_GEMM multiply-adds), else the backend's matmul."""
    # (the size test first: it is the cheap one, and dtype.name is slow in numpy 2)
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim >= 2 and b.ndim >= 2 and \
            a.shape[-2] * a.shape[-1] * b.shape[-1] > SMALL_GEMM and a.dtype == b.dtype and \
            a.dtype.name in _FLOATS and a.dtype.isnative:
        fn = _gemm()
        if fn:
            return fn(a, b)
    return a @ b


class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        out = _mm(a, b) if a.ndim >= 2 and b.ndim >= 2 else a @ b
        # numpy computes bfloat16 products in float32 and returns float32: keep the input dtype
        return out if out.dtype == a.dtype else out.astype(a.dtype)

    def backward(self, g):
        xp = xp_of(g)
        a, b = self.a, self.b
        n = self.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:                 # dot product: g is 0-d
            return (g * b if n[0] else None), (g * a if n[1] else None)
        a2 = a[None, :] if a.ndim == 1 else a           # (1, k)
        b2 = b[:, None] if b.ndim == 1 else b           # (k, 1)
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if n[0]:
            ga = _mm(g2, xp.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if n[1]:
            gb = _mm(xp.swapaxes(a2, -1, -2), g2)
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


class Linear(Function):
    """y = x Wᵀ + b over the last dim of x; dx = g W, dW = gᵀ x, db = Σ g."""
    def forward(self, x, w, b):
        self.x, self.w = x, w
        y = _mm(x, w.T) if x.ndim >= 2 else x @ w.T
        if y.dtype != x.dtype:  # bfloat16 products come back as float32 (see MatMul)
            y = y.astype(x.dtype)
        if b is not None:
            y += b
        return y

    def backward(self, g):
        n = self.needs_input_grad
        gx = (_mm(g, self.w) if g.ndim >= 2 else g @ self.w) if n[0] else None
        gw = gb = None
        if n[1]:
            g2 = g.reshape(-1, g.shape[-1])
            gw = _mm(g2.T, self.x.reshape(-1, self.x.shape[-1]))
        if len(n) > 2 and n[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(axis=0)
        return gx, gw, gb


def _check_matmul(a, b, op):
    ad, bd = getattr(a, "data", None), getattr(b, "data", None)
    if ad is not None and bd is not None and ad.ndim == 2 and bd.ndim == 2 and \
            ad.dtype is bd.dtype and ad.shape[1] == bd.shape[0] and isinstance(a, Tensor) and \
            isinstance(b, Tensor):
        return  # the common case, checked cheaply
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"{op}: both arguments need at least 1 dimension, got shapes "
                           f"{tuple(a.shape)} and {tuple(b.shape)}")
    same_dtype(op, a, b)
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise RuntimeError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                           f"multiplied ({ka} != {kb})")
    if a.ndim > 2 and b.ndim > 2:
        from ._util import broadcast_shape
        broadcast_shape(op + " (batch dims)", a.shape[:-2], b.shape[:-2])


@tensor_method("matmul", "__matmul__")
def matmul(input, other):
    _check_matmul(input, other, "matmul")
    return MatMul.apply(input, other)


@tensor_method("__rmatmul__")
def _rmatmul(input, other):
    return matmul(other, input)


@tensor_method()
def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got shapes {tuple(input.shape)} and "
                           f"{tuple(mat2.shape)}")
    return matmul(input, mat2)


@tensor_method()
def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: expected 3-D tensors with the same batch size, got shapes "
                           f"{tuple(input.shape)} and {tuple(mat2.shape)}")
    return matmul(input, mat2)


@tensor_method()
def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError("dot: expected 1-D tensors")
    return matmul(input, other)


def outer(input, vec2):
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


def linear(input, weight, bias=None):
    """y = x Wᵀ + b with W of shape (out_features, in_features)."""
    if weight.ndim != 2:
        raise RuntimeError(f"linear: weight must be 2-D, got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(input.shape)} does not match weight of "
                           f"shape {tuple(weight.shape)} (in_features {weight.shape[1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(f"linear: bias of shape {tuple(bias.shape)} does not match "
                           f"out_features {weight.shape[0]}")
    same_dtype("linear", input, weight, bias)
    if bias is None:
        return Linear.apply(input, weight, None)
    return Linear.apply(input, weight, bias)


class Einsum(Function):
    def forward(self, *ops, subs, out):
        xp = xp_of(ops[0])
        self.ops, self.subs, self.out = ops, subs, out
        return xp.einsum(",".join(subs) + "->" + out, *ops, optimize=len(ops) > 2)

    def backward(self, g):
        xp = xp_of(g)
        grads = []
        for i, need in enumerate(self.needs_input_grad):
            if not need:
                grads.append(None)
                continue
            mine = self.subs[i]
            others = [s for j, s in enumerate(self.subs) if j != i]
            avail = set(self.out).union(*others) if others else set(self.out)
            target = "".join(c for c in mine if c in avail)
            eq = ",".join([self.out] + others) + "->" + target
            ops = [g] + [o for j, o in enumerate(self.ops) if j != i]
            gi = xp.einsum(eq, *ops, optimize=len(ops) > 2)
            # a size-1 dim of this operand that broadcast against a larger one: sum it back
            size = dict(zip(mine, self.ops[i].shape))
            axes = tuple(k for k, c in enumerate(target) if size[c] == 1 and gi.shape[k] != 1)
            if axes:
                gi = gi.sum(axis=axes, keepdims=True)
            shape = [self.ops[i].shape[k] if c in avail else 1 for k, c in enumerate(mine)]
            gi = xp.broadcast_to(gi.reshape(shape), self.ops[i].shape)
            grads.append(xp.ascontiguousarray(gi))
        return tuple(grads)


def einsum(equation, *operands):
    """Einstein summation with gradients (explicit '->' or implicit output, '...' allowed)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise RuntimeError(f"einsum: equation has {len(subs)} operands but {len(operands)} given")
    free = [c for c in string.ascii_letters if c not in eq]
    ell_nd = 0
    for s, op in zip(subs, operands):
        if "..." in s:
            ell_nd = max(ell_nd, op.ndim - (len(s) - 3))
    ell = "".join(free[:ell_nd])
    new_subs = []
    for s, op in zip(subs, operands):
        if "..." in s:
            k = op.ndim - (len(s) - 3)
            s = s.replace("...", ell[ell_nd - k:] if k else "")
        if len(s) != op.ndim:
            raise RuntimeError(f"einsum: subscripts {s!r} do not match an operand of shape "
                               f"{tuple(op.shape)}")
        if len(set(s)) != len(s):
            raise NotImplementedError(f"einsum: repeated index within one operand ({s!r}) is not "
                                      "supported; take the diagonal first")
        new_subs.append(s)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for s in new_subs:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    same_dtype("einsum", *operands)
    return Einsum.apply(*operands, subs=tuple(new_subs), out=out)
