"""minigen.linalg: slogdet, det, inv, solve and lu_factor on one LU factorisation (kernel
family ``logdet``; PyTorch's names and semantics).

Every function factors A once, P A = L U with partial pivoting (see
``minigen/reference/logdet.py`` for the algorithm), and reads everything from that:

    slogdet   sign = det P · Π sign(u_kk),  logabsdet = Σ log|u_kk|   (never forms det: no
              overflow for ill-conditioned or large matrices); singular → (0, −inf)
    inv       A⁻¹ = U⁻¹ L⁻¹ P                    (triangular solves against P)
    solve     X = A⁻¹ B = U⁻¹ L⁻¹ (P B)

Gradients (MATH.md §4), from the saved LU or the output, never a second factorisation:

    slogdet   dA = g_logabsdet · A⁻ᵀ        (sign: none, it is piecewise constant)
    inv       dA = −A⁻ᵀ G A⁻ᵀ = −Xᵀ G Xᵀ
    solve     dB = A⁻ᵀ G  (a transposed solve with the same LU),  dA = −dB Xᵀ

inv and solve raise ``RuntimeError`` naming the batch element of a singular matrix (a zero
pivot u_kk), as PyTorch does.

    >>> import minigen as mg
    >>> A = mg.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=mg.float64, requires_grad=True)
    >>> sign, logabsdet = mg.linalg.slogdet(A)
    >>> logabsdet.backward()            # A.grad = A⁻ᵀ
"""
from __future__ import annotations

import numpy as np

from . import dispatch
from .autograd.function import Function
from .backend import xp_of
from .tensor import Tensor

__all__ = ["slogdet", "det", "inv", "solve", "lu_factor"]


def _kernels(array):
    return dispatch.get_for("logdet", array)


def _check_square(op: str, a, name="A"):
    if not isinstance(a, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(a).__name__}")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise RuntimeError(f"{op}: {name} must be a batch of square matrices (..., n, n), "
                           f"got shape {tuple(a.shape)}")
    if a.data.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.data.dtype}")


def _raise_if_singular(op: str, lu):
    """RuntimeError naming the first batch element with a zero pivot u_kk."""
    d = lu.diagonal(axis1=-2, axis2=-1)
    zero = d == 0
    if not bool(zero.any()):
        return
    where = np.argwhere(np.asarray(zero.get() if hasattr(zero, "get") else zero))[0]
    batch, k = tuple(int(i) for i in where[:-1]), int(where[-1])
    at = f"(batch element {batch}) " if batch else ""
    raise RuntimeError(f"{op}: {at}the matrix is singular: pivot U[{k}, {k}] of its LU "
                       "factorisation is zero, so it cannot be inverted")


class SLogDet(Function):
    """(sign, logabsdet) of A (..., n, n); backward g · A⁻ᵀ from the saved LU."""
    saves_inputs = False

    def forward(self, a):
        if a.shape[-1] == 0:  # det of a 0×0 matrix is the empty product 1: (sign 1, log 0)
            self.empty = a.shape
            xp = xp_of(a)
            return xp.ones(a.shape[:-2], dtype=a.dtype), xp.zeros(a.shape[:-2], dtype=a.dtype)
        k = _kernels(a)
        lu, piv, perm_sign = k.lu_factor(a)
        self.lu, self.piv = lu, piv
        return k.slogdet_from_lu(lu, perm_sign)

    def backward(self, g_sign, g_logabsdet):
        if g_logabsdet is None:
            return (None,)
        if getattr(self, "empty", None) is not None:  # A has no entries: an empty gradient
            return xp_of(g_logabsdet).zeros(self.empty, dtype=g_logabsdet.dtype)
        return _kernels(self.lu).slogdet_backward(self.lu, self.piv, g_logabsdet)


class Inv(Function):
    """X = A⁻¹ from A's LU; backward −Xᵀ G Xᵀ (from the output)."""
    saves_inputs = False
    saves_output = True

    def forward(self, a):
        if a.shape[-1] == 0:  # the inverse of a 0×0 matrix is 0×0 (backward: empty products)
            self.x = a.copy()
            return self.x
        k = _kernels(a)
        lu, piv, _ = k.lu_factor(a)
        _raise_if_singular("linalg.inv", lu)
        self.x = k.inv_from_lu(lu, piv)
        return self.x

    def backward(self, g):
        xt = self.x.swapaxes(-1, -2)
        return -(xt @ g @ xt)


class Solve(Function):
    """X = A⁻¹ B for A (..., n, n), B (..., n, k) with equal batch dims (broadcast before)."""
    saves_inputs = False

    def forward(self, a, b):
        if a.shape[-1] == 0:  # n = 0: X is (..., 0, k), as B; nothing to factor
            self.lu = None
            self.x = b.copy()
            return self.x
        k = _kernels(a)
        lu, piv, _ = k.lu_factor(a)
        _raise_if_singular("linalg.solve", lu)
        self.lu, self.piv = lu, piv
        self.x = k.lu_solve(lu, piv, b)
        return self.x

    def backward(self, g):
        if self.lu is None:   # n = 0: dB is (..., 0, k), dA = −dB Xᵀ is (..., 0, 0)
            gb = g.copy()
        else:
            gb = _kernels(self.lu).lu_solve(self.lu, self.piv, g, transpose=True)  # A⁻ᵀ G
        ga = -(gb @ self.x.swapaxes(-1, -2)) if self.needs_input_grad[0] else None
        return ga, gb


class LUFactor(Function):
    differentiable = False

    def forward(self, a):
        if a.shape[-1] == 0:
            return a.copy(), xp_of(a).zeros(a.shape[:-1], dtype=np.int32)
        lu, piv, _ = _kernels(a).lu_factor(a)
        return lu, piv + 1  # PyTorch's pivots are 1-based (LAPACK)


def slogdet(A):
    """(sign, logabsdet) of a square matrix or a batch (..., n, n), as torch.linalg.slogdet.

    sign ∈ {−1, 0, 1} (0 for a singular matrix, then logabsdet = −inf). Differentiable in A
    through logabsdet: d logabsdet/dA = A⁻ᵀ.
    """
    _check_square("linalg.slogdet", A)
    return SLogDet.apply(A)


def det(A):
    """det A = sign · exp(logabsdet) (so its gradient is det A · A⁻ᵀ, from the same LU)."""
    _check_square("linalg.det", A)
    sign, logabsdet = SLogDet.apply(A)
    return sign * logabsdet.exp()


def inv(A):
    """A⁻¹ of a square matrix or a batch (..., n, n); RuntimeError if one is singular."""
    _check_square("linalg.inv", A)
    return Inv.apply(A)


def solve(A, B):
    """X with A X = B, as torch.linalg.solve (left side).

    A (*, n, n); B (*, n, k) or, as a vector, (n,) or (*, n) when B.shape == A.shape[:-1];
    the batch dims broadcast. RuntimeError if some A is singular.
    """
    _check_square("linalg.solve", A)
    if not isinstance(B, Tensor):
        raise TypeError(f"linalg.solve: B must be a Tensor, got {type(B).__name__}")
    if B.data.dtype != A.data.dtype:
        raise TypeError(f"linalg.solve: A and B must have the same dtype, got {A.data.dtype} "
                        f"and {B.data.dtype}")
    n = A.shape[-1]
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    Bm = B.unsqueeze(-1) if vector else B
    if Bm.ndim < 2 or Bm.shape[-2] != n:
        raise RuntimeError(f"linalg.solve: A has shape {tuple(A.shape)}, so B must have shape "
                           f"(..., {n}, k) or ({n},), got {tuple(B.shape)}")
    try:
        batch = tuple(np.broadcast_shapes(tuple(A.shape[:-2]), tuple(Bm.shape[:-2])))
    except ValueError:
        raise RuntimeError(f"linalg.solve: the batch dims of A {tuple(A.shape)} and B "
                           f"{tuple(B.shape)} cannot be broadcast together") from None
    a = A if tuple(A.shape[:-2]) == batch else A.expand(*batch, n, n)
    b = Bm if tuple(Bm.shape[:-2]) == batch else Bm.expand(*batch, n, Bm.shape[-1])
    x = Solve.apply(a.contiguous(), b.contiguous())
    return x.squeeze(-1) if vector else x


def lu_factor(A, *, pivot=True):
    """(LU, pivots) as torch.linalg.lu_factor: L (unit, below the diagonal) and U packed in
    LU, pivots int32 1-based (row i was swapped with row pivots[i] − 1). No gradient.
    ``pivot=False`` (LU without row exchanges) is not implemented, as on PyTorch's CPU."""
    _check_square("linalg.lu_factor", A)
    if not isinstance(pivot, bool):
        raise TypeError(f"linalg.lu_factor: pivot must be a bool, got {pivot!r}")
    if not pivot:
        raise NotImplementedError("linalg.lu_factor: LU without pivoting (pivot=False) is not "
                                  "implemented; use pivot=True")
    return LUFactor.apply(A)
