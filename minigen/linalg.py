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
    """P A = L U packed in one matrix. Backward (square A, as PyTorch): with L̄ = tril₋₁(Ḡ) and
    Ū = triu(Ḡ) the parts of the packed gradient, dA = Pᵀ (dL U + L dU) gives
    X = L⁻¹ P dA U⁻¹ = L⁻¹ dL + dU U⁻¹ (strictly lower + upper), so dL = L tril₋₁(X),
    dU = triu(X) U and Ā = Pᵀ L⁻ᵀ [tril₋₁(Lᵀ L̄) + triu(Ū Uᵀ)] U⁻ᵀ."""
    saves_inputs = False

    def forward(self, a):
        if a.shape[-1] == 0:
            self.lu = None
            return a.copy(), xp_of(a).zeros(a.shape[:-1], dtype=np.int32)
        lu, piv, _ = _kernels(a).lu_factor(a)
        self.lu, self.piv = lu, piv
        return lu, piv + 1  # PyTorch's pivots are 1-based (LAPACK)

    def backward(self, g, g_piv=None):
        if self.lu is None or g is None:
            return None if g is None else g * 0
        xp = xp_of(g)
        lu, n = self.lu, self.lu.shape[-1]
        L = xp.tril(lu, -1) + xp.eye(n, dtype=lu.dtype)
        U = xp.triu(lu)
        M = xp.tril(_mT(L) @ xp.tril(g, -1), -1) + xp.triu(g @ _mT(U))
        Y = _trisolve(lu, M, upper=False, transpose=True, unit=True)      # L⁻ᵀ M
        Y = _trisolve(lu, Y, upper=True, left=False, transpose=True)      # (·) U⁻ᵀ
        # Pᵀ Y: P A = A[perm] with perm the row swaps k ↔ piv[k] applied in order, so
        # (Pᵀ Y)[perm] = Y, i.e. Pᵀ Y = Y[argsort(perm)]
        piv = self.piv.reshape(-1, n)
        perm = xp.broadcast_to(xp.arange(n), piv.shape).copy()
        rows = xp.arange(piv.shape[0])
        for k in range(n):
            pk = piv[:, k]
            a, b = perm[rows, k].copy(), perm[rows, pk].copy()
            perm[rows, k], perm[rows, pk] = b, a
        inv = xp.argsort(perm, axis=-1).reshape(self.piv.shape)
        return xp.take_along_axis(Y, inv[..., None], axis=-2)


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
    LU, pivots int32 1-based (row i was swapped with row pivots[i] − 1). Differentiable in A
    through LU (the formula in ``LUFactor``).
    ``pivot=False`` (LU without row exchanges) is not implemented, as on PyTorch's CPU."""
    _check_square("linalg.lu_factor", A)
    if not isinstance(pivot, bool):
        raise TypeError(f"linalg.lu_factor: pivot must be a bool, got {pivot!r}")
    if not pivot:
        raise NotImplementedError("linalg.lu_factor: LU without pivoting (pivot=False) is not "
                                  "implemented; use pivot=True")
    return LUFactor.apply(A)


# ================================================================================ part 2
# cholesky, solve_triangular, qr, svd/svdvals, eigh/eigvalsh, logdet and the norms, with
# PyTorch's names and semantics. Triangular solves go through the logdet family's lu_solve
# (a triangular T is its own LU with identity pivots, see _trisolve); the factorizations call
# the array module's LAPACK (numpy.linalg / cupy.linalg, batched over leading dims).
#
# Gradients (real matrices; Ḡ is d loss/d G, sym(X) = (X + Xᵀ)/2, ∘ the elementwise product):
#
#   cholesky   A = L Lᵀ:  Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹),  Φ(X) = tril(X) with its diagonal halved.
#              (L⁻¹ dA L⁻ᵀ = X + Xᵀ with X = L⁻¹ dL lower, so dL = L Φ(L⁻¹ dA L⁻ᵀ); Φ is
#              self-adjoint.) Symmetric, as PyTorch's: the gradient for a symmetric perturbation.
#   solve_triangular  X = A⁻¹B:  B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ;   X = B A⁻¹:  B̄ = X̄ A⁻ᵀ,  Ā = −Xᵀ B̄;
#              Ā is then restricted to A's triangle (strictly, when unitriangular).
#   qr (m ≥ n, reduced)  A = Q R:  M = R̄ Rᵀ − Qᵀ Q̄,  Ā = (Q̄ + Q copyu(M)) R⁻ᵀ, with
#              copyu(M) = triu(M) + triu(M, 1)ᵀ (Qᵀ dQ is skew, dR R⁻¹ upper). R must be
#              invertible (A of full column rank).
#      (m < n) A = Q [R₁ R₂], A = [X Y]:  Ā_X = the square formula with Q̄ + Y R̄₂ᵀ and R̄₁,
#              Ā_Y = Q R̄₂.  mode='complete' with m > n and mode='r' have no derivative
#              (Q's last m − n columns are not unique; 'r' does not compute Q): RuntimeError
#              in backward, as PyTorch.
#   svd   A = U S Vᵀ (reduced, k = min(m, n)), F_ij = 1/(s_j² − s_i²) (i ≠ j), F_ii = 0:
#              Ā = U [(F ∘ (UᵀŪ − ŪᵀU)) S + diag(S̄) + S (F ∘ (VᵀV̄ − V̄ᵀV))] Vᵀ
#                  + (I − U Uᵀ) Ū S⁻¹ Vᵀ + U S⁻¹ V̄ᵀ (I − V Vᵀ)
#              Needs distinct singular values (and non-zero ones for the last two terms, which
#              exist only when m ≠ n) when Ū or V̄ is given: otherwise F or S⁻¹ is infinite and
#              the gradient holds inf/nan, as in PyTorch. The loss must not depend on the sign
#              of a pair (u_i, v_i) (then the gradient is well defined). full_matrices=True
#              with m ≠ n and a gradient for U or Vh: RuntimeError (the extra columns are not
#              unique; use full_matrices=False).
#   svdvals    Ā = U diag(S̄) Vᵀ (fine with repeated singular values).
#   eigh  A = V diag(λ) Vᵀ, F_ij = 1/(λ_j − λ_i) (i ≠ j), F_ii = 0:
#              Ā = V (diag(λ̄) + F ∘ (K − Kᵀ)/2) Vᵀ,  K = Vᵀ V̄  (symmetric, as cholesky's).
#              Needs distinct eigenvalues when V̄ is given (inf/nan otherwise, as PyTorch); the
#              loss must not depend on the sign of an eigenvector.
#   eigvalsh   Ā = V diag(λ̄) Vᵀ.
#   vector_norm  ‖x‖_p = (Σ|x_i|^p)^{1/p}:  x̄ = ḡ sign(x) |x|^{p−1} / ‖x‖^{p−1} (0 where
#              ‖x‖ = 0); p = ∞ / −∞: ḡ sign(x) spread evenly over the entries where |x| reaches
#              the max / min; p = 0 (the count of non-zeros): zero.
#   matrix_norm  compositions: 'fro' = ‖vec A‖₂, 'nuc' = Σ s_i, ±2 = max/min s_i, ±1 / ±∞ =
#              max/min of the column / row sums of |A|.
#   logdet     log det A: logabsdet where det > 0, −inf where det = 0, nan where det < 0.

from .backend import xp_of as _xp_of  # noqa: E402

__all__ += ["cholesky", "solve_triangular", "qr", "svd", "svdvals", "eigh", "eigvalsh",
            "logdet", "vector_norm", "matrix_norm", "norm"]


def _check_matrix(op: str, a, name="A"):
    if not isinstance(a, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(a).__name__}")
    if a.ndim < 2:
        raise RuntimeError(f"{op}: {name} must be a batch of matrices (..., m, n), got shape "
                           f"{tuple(a.shape)}")
    if a.data.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.data.dtype}")


def _mT(x):
    return x.swapaxes(-1, -2)


def _trisolve(T, B, upper, left=True, transpose=False, unit=False):
    """X with op(T) X = B (left) or X op(T) = B (right), op(T) = Tᵀ when ``transpose``; T
    (..., n, n) triangular (only its ``upper``/lower triangle is read, its diagonal taken as 1
    when ``unit``), B with the same batch dims. Through the logdet family's lu_solve: an upper
    triangular U is its own packed LU with identity pivots (L = I), so lu_solve(U, id, B)
    solves U X = B and lu_solve(U, id, B, transpose=True) solves Uᵀ X = B; a lower T is Uᵀ
    with U = Tᵀ."""
    xp = _xp_of(T)
    if not left:  # X op(T) = B  ⇔  op(T)ᵀ Xᵀ = Bᵀ
        return _mT(_trisolve(T, _mT(B), upper, True, not transpose, unit))
    n = T.shape[-1]
    if n == 0 or B.shape[-1] == 0:
        return xp.zeros(B.shape, dtype=T.dtype)
    lu = xp.triu(T) if upper else xp.triu(_mT(T))
    if unit:
        lu = lu.copy()
        idx = xp.arange(n)
        lu[..., idx, idx] = 1
    lu = xp.ascontiguousarray(lu)
    piv = xp.ascontiguousarray(xp.broadcast_to(xp.arange(n, dtype=xp.int32), lu.shape[:-1]))
    b = xp.ascontiguousarray(B)
    return _kernels(lu).lu_solve(lu, piv, b, transpose=(transpose if upper else not transpose))


def _broadcast_batch(op, A, B):
    try:
        batch = tuple(np.broadcast_shapes(tuple(A.shape[:-2]), tuple(B.shape[:-2])))
    except ValueError:
        raise RuntimeError(f"{op}: the batch dims of A {tuple(A.shape)} and B "
                           f"{tuple(B.shape)} cannot be broadcast together") from None
    a = A if tuple(A.shape[:-2]) == batch else A.expand(*batch, *A.shape[-2:])
    b = B if tuple(B.shape[:-2]) == batch else B.expand(*batch, *B.shape[-2:])
    return a.contiguous(), b.contiguous()


# ------------------------------------------------------------------------------- cholesky
def _phi(xp, X):
    """tril(X) with the diagonal halved."""
    out = xp.tril(X)
    n = X.shape[-1]
    idx = xp.arange(n)
    out[..., idx, idx] *= 0.5
    return out


def _sym(X):
    return (X + _mT(X)) * 0.5


class Cholesky(Function):
    """L with A = L Lᵀ (or U = Lᵀ when ``upper``); backward sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹)."""
    saves_inputs = False

    def forward(self, a, upper):
        xp = _xp_of(a)
        low = xp.tril(a)
        sym = low + _mT(xp.tril(a, -1))          # the lower triangle only, as PyTorch reads
        try:
            L = xp.linalg.cholesky(sym)
        except np.linalg.LinAlgError:
            L = None
        if L is None or not bool(xp.isfinite(L).all()):
            _raise_not_pd(xp, sym)
        self.L, self.upper = L, upper
        return xp.ascontiguousarray(_mT(L)) if upper else L

    def backward(self, g):
        xp = _xp_of(g)
        L = self.L
        gL = _mT(g) if self.upper else g
        P = _phi(xp, _mT(L) @ gL)
        Y = _trisolve(L, _trisolve(L, P, upper=False, transpose=True),   # L⁻ᵀ P L⁻¹
                      upper=False, left=False)
        return _sym(Y)


def _raise_not_pd(xp, sym):
    """RuntimeError naming the (first) failing batch element and the order of its first
    leading minor that is not positive definite (found by factoring the leading minors)."""
    n = sym.shape[-1]
    mats = sym.reshape(-1, n, n)
    host = mats.get() if hasattr(mats, "get") else np.asarray(mats)
    for b in range(host.shape[0]):
        for k in range(1, n + 1):
            try:
                ok = bool(np.isfinite(np.linalg.cholesky(host[b, :k, :k])).all())
            except np.linalg.LinAlgError:
                ok = False
            if not ok:
                where = np.unravel_index(b, sym.shape[:-2]) if sym.ndim > 2 else ()
                at = f"(batch element {tuple(int(i) for i in where)}) " if where else ""
                raise RuntimeError(
                    f"linalg.cholesky: {at}the factorization could not be completed because "
                    f"the input is not positive-definite (the leading minor of order {k} is "
                    "not positive-definite)")
    raise RuntimeError("linalg.cholesky: the factorization produced non-finite values "
                       "(the input holds inf or nan)")


def cholesky(A, *, upper=False):
    """L (lower, A = L Lᵀ) of a symmetric positive-definite A (..., n, n), as
    torch.linalg.cholesky: only the lower triangle of A is read; ``upper=True`` returns
    U = Lᵀ. RuntimeError if A is not positive definite. Differentiable (see the top of this
    part: Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹))."""
    _check_square("linalg.cholesky", A)
    return Cholesky.apply(A, bool(upper))


# ----------------------------------------------------------------------- solve_triangular
class SolveTriangular(Function):
    """X = A⁻¹ B (left) or B A⁻¹ (right) for a triangular A; backward as at the top."""

    def forward(self, a, b, upper, left, unit):
        self.a, self.opts = a, (upper, left, unit)
        self.x = _trisolve(a, b, upper, left, False, unit)
        return self.x

    def backward(self, g):
        xp = _xp_of(g)
        upper, left, unit = self.opts
        gb = _trisolve(self.a, g, upper, left, True, unit)      # A⁻ᵀ G  or  G A⁻ᵀ
        ga = None
        if self.needs_input_grad[0]:
            ga = -(gb @ _mT(self.x)) if left else -(_mT(self.x) @ gb)
            k = (1 if unit else 0)
            ga = xp.triu(ga, k) if upper else xp.tril(ga, -k)
        return ga, (gb if self.needs_input_grad[1] else None)


def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """X with A X = B (``left``) or X A = B, A (*, n, n) upper or lower triangular (only that
    triangle is read; its diagonal is taken as ones when ``unitriangular``), B (*, n, k) (left)
    or (*, k, n); batch dims broadcast. As torch.linalg.solve_triangular: ``upper`` is
    required and keyword-only; a zero on A's diagonal gives inf/nan, no error."""
    op = "linalg.solve_triangular"
    _check_square(op, A)
    _check_matrix(op, B, "B")
    if B.data.dtype != A.data.dtype:
        raise TypeError(f"{op}: A and B must have the same dtype, got {A.data.dtype} and "
                        f"{B.data.dtype}")
    n = A.shape[-1]
    if (B.shape[-2] if left else B.shape[-1]) != n:
        want = f"(..., {n}, k)" if left else f"(..., k, {n})"
        raise RuntimeError(f"{op}: A has shape {tuple(A.shape)}, so B must have shape {want} "
                           f"(left={left}), got {tuple(B.shape)}")
    a, b = _broadcast_batch(op, A, B)
    return SolveTriangular.apply(a, b, bool(upper), bool(left), bool(unitriangular))


# ------------------------------------------------------------------------------------- qr
def _qr_backward_tall(xp, Q, R, gQ, gR):
    """Ā for A = Q R, Q (m, n) with m ≥ n, R (n, n) upper: (Q̄ + Q copyu(M)) R⁻ᵀ."""
    M = gR @ _mT(R) - _mT(Q) @ gQ
    N = xp.triu(M) + _mT(xp.triu(M, 1))
    return _trisolve(R, gQ + Q @ N, upper=True, left=False, transpose=True)


class QR(Function):
    saves_inputs = False

    def forward(self, a, mode):
        xp = _xp_of(a)
        m, n = a.shape[-2:]
        self.mode, self.shape = mode, (m, n)
        if mode == "r":
            r = xp.linalg.qr(a, mode="r")
            return xp.zeros((0,), dtype=a.dtype), xp.ascontiguousarray(r)
        q, r = xp.linalg.qr(a, mode=mode)
        self.q, self.r = q, r
        if m < n:
            self.a = a
        return xp.ascontiguousarray(q), xp.ascontiguousarray(r)

    def backward(self, gQ, gR):
        m, n = self.shape
        if self.mode == "r":
            raise RuntimeError("linalg.qr: the derivative of mode='r' is not defined: it needs "
                               "Q, which mode='r' does not compute; use mode='reduced'")
        if self.mode == "complete" and m > n:
            raise RuntimeError("linalg.qr: the derivative of mode='complete' with m > n is not "
                               "defined (Q's last m − n columns are not unique); use "
                               "mode='reduced'")
        xp = _xp_of(self.q)
        Q, R = self.q, self.r
        gQ = xp.zeros_like(Q) if gQ is None else gQ
        gR = xp.zeros_like(R) if gR is None else gR
        if m >= n:
            return _qr_backward_tall(xp, Q, R, gQ, gR)
        Y = self.a[..., m:]
        g_x = _qr_backward_tall(xp, Q, R[..., :m], gQ + Y @ _mT(gR[..., m:]), gR[..., :m])
        return xp.concatenate([g_x, Q @ gR[..., m:]], axis=-1)


def qr(A, mode="reduced"):
    """(Q, R) with A = Q R, as torch.linalg.qr: A (*, m, n), k = min(m, n); mode 'reduced':
    Q (*, m, k), R (*, k, n); 'complete': Q (*, m, m), R (*, m, n); 'r': Q empty, R (*, k, n).
    R's diagonal may be negative (Householder, as LAPACK and PyTorch). Differentiable for
    'reduced' (R invertible), and 'complete' when m ≤ n."""
    _check_matrix("linalg.qr", A)
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"linalg.qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    return QR.apply(A, mode)


# ------------------------------------------------------------------------------------ svd
def _inv_gap(xp, v):
    """F with F_ij = 1/(v_j − v_i) for i ≠ j, 0 on the diagonal (v (..., k))."""
    d = v[..., None, :] - v[..., :, None]
    k = v.shape[-1]
    eye = xp.eye(k, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xp.where(eye, 0, 1 / xp.where(eye, 1, d))


class SVD(Function):
    saves_inputs = False

    def forward(self, a, full_matrices):
        xp = _xp_of(a)
        u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
        self.u, self.s, self.vh, self.full = u, s, vh, full_matrices
        return xp.ascontiguousarray(u), s, xp.ascontiguousarray(vh)

    def backward(self, gU, gS, gVh):
        xp = _xp_of(self.s)
        m, n = self.u.shape[-2], self.vh.shape[-1]
        k = min(m, n)
        if self.full and m != n:
            # the m − k (or n − k) extra singular vectors are not unique: a gradient through
            # them is undefined. A zero one (the loss reads only the first k, as after
            # U[..., :k]) is dropped, as PyTorch narrows U and Vh to k; any other is refused.
            extra_u = gU[..., k:] if gU is not None else None
            extra_v = gVh[..., k:, :] if gVh is not None else None
            if any(e is not None and e.size and bool(xp.any(e != 0))
                   for e in (extra_u, extra_v)):
                raise RuntimeError("linalg.svd: the gradient with respect to the extra singular "
                                   "vectors of full_matrices=True on a non-square matrix is not "
                                   "defined (they are not unique); use full_matrices=False")
            gU = gU[..., :k] if gU is not None else None
            gVh = gVh[..., :k, :] if gVh is not None else None
        U, S, V = self.u[..., :k], self.s, _mT(self.vh[..., :k, :])
        inner = xp.zeros(S.shape + (k,), dtype=S.dtype)
        if gS is not None:
            idx = xp.arange(k)
            inner[..., idx, idx] = gS
        extra = 0
        if gU is not None or gVh is not None:
            F = _inv_gap(xp, S * S)
            if gU is not None:
                J = _mT(U) @ gU
                inner = inner + (F * (J - _mT(J))) * S[..., None, :]
                if m > k:
                    extra = extra + (gU - U @ J) / S[..., None, :] @ _mT(V)
            if gVh is not None:
                gV = _mT(gVh)
                K = _mT(V) @ gV
                inner = inner + S[..., :, None] * (F * (K - _mT(K)))
                if n > k:
                    extra = extra + (U / S[..., None, :]) @ _mT(gV - V @ K)
        return U @ inner @ _mT(V) + extra


class SVDVals(Function):
    saves_inputs = False

    def forward(self, a):
        xp = _xp_of(a)
        self.u, s, self.vh = xp.linalg.svd(a, full_matrices=False)
        return s

    def backward(self, gS):
        return (self.u * gS[..., None, :]) @ self.vh


def svd(A, full_matrices=True):
    """(U, S, Vh) with A = U diag(S) Vh, S descending, as torch.linalg.svd: A (*, m, n),
    k = min(m, n); full_matrices=True: U (*, m, m), Vh (*, n, n); False: U (*, m, k),
    Vh (*, k, n). Differentiable (distinct singular values for gradients through U or Vh)."""
    _check_matrix("linalg.svd", A)
    return SVD.apply(A, bool(full_matrices))


def svdvals(A):
    """The singular values (*, min(m, n)), descending, as torch.linalg.svdvals; gradient
    U diag(S̄) Vᵀ."""
    _check_matrix("linalg.svdvals", A)
    return SVDVals.apply(A)


# ----------------------------------------------------------------------------------- eigh
class Eigh(Function):
    saves_inputs = False

    def forward(self, a, uplo):
        xp = _xp_of(a)
        if uplo == "L":
            sym = xp.tril(a) + _mT(xp.tril(a, -1))
        else:
            sym = xp.triu(a) + _mT(xp.triu(a, 1))
        w, v = xp.linalg.eigh(sym)
        self.w, self.v = w, v
        return w, xp.ascontiguousarray(v)

    def backward(self, gw, gV):
        xp = _xp_of(self.w)
        V = self.v
        n = V.shape[-1]
        inner = xp.zeros(self.w.shape + (n,), dtype=V.dtype)
        if gw is not None:
            idx = xp.arange(n)
            inner[..., idx, idx] = gw
        if gV is not None:
            K = _mT(V) @ gV
            inner = inner + _inv_gap(xp, self.w) * (K - _mT(K)) * 0.5
        return V @ inner @ _mT(V)


def _check_uplo(op, UPLO):
    if UPLO not in ("L", "U"):
        raise ValueError(f"{op}: UPLO must be 'L' or 'U', got {UPLO!r}")


def eigh(A, UPLO="L"):
    """(eigenvalues ascending (*, n), eigenvectors as columns (*, n, n)) of a symmetric A,
    as torch.linalg.eigh: only the ``UPLO`` triangle of A is read. Differentiable (distinct
    eigenvalues for gradients through the eigenvectors)."""
    _check_square("linalg.eigh", A)
    _check_uplo("linalg.eigh", UPLO)
    return Eigh.apply(A, UPLO)


def eigvalsh(A, UPLO="L"):
    """The eigenvalues (ascending) of a symmetric A, as torch.linalg.eigvalsh."""
    _check_square("linalg.eigvalsh", A)
    _check_uplo("linalg.eigvalsh", UPLO)
    return Eigh.apply(A, UPLO)[0]


# --------------------------------------------------------------------------------- logdet
def logdet(A):
    """log det A of a square matrix or a batch, as torch.logdet: from slogdet's LU, so
    logabsdet where det > 0, −inf where det = 0, nan where det < 0; gradient A⁻ᵀ."""
    from .ops.elementwise import where
    _check_square("logdet", A)
    sign, logabsdet = SLogDet.apply(A)
    return where(sign < 0, float("nan"), logabsdet)


# ---------------------------------------------------------------------------------- norms
def _norm_axes(op, dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {dim!r}")
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"{op}: dim {d} is out of range for a tensor of {ndim} "
                             "dimensions")
        out.append(int(d) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise RuntimeError(f"{op}: dim {tuple(dims)} names a dimension twice")
    return tuple(sorted(out)) if ndim else ()


class VectorNorm(Function):
    """(Σ|x|^p)^{1/p} over ``axes``; backward as at the top of this part."""

    def forward(self, x, ord, axes, keepdim):
        xp = _xp_of(x)
        self.x, self.ord, self.axes, self.keepdim = x, ord, axes, keepdim
        a = xp.abs(x)
        if ord == float("inf"):
            n = a.max(axis=axes, keepdims=True)
        elif ord == float("-inf"):
            n = a.min(axis=axes, keepdims=True)
        elif ord == 0:
            n = (a != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        elif ord == 1:
            n = a.sum(axis=axes, keepdims=True)
        elif ord == 2:
            n = xp.sqrt((a * a).sum(axis=axes, keepdims=True))
        else:
            with np.errstate(divide="ignore"):
                n = ((a ** ord).sum(axis=axes, keepdims=True)) ** (1.0 / ord)
        self.n = n
        return n if keepdim else n.reshape(tuple(s for i, s in enumerate(n.shape)
                                                 if i not in axes))

    def backward(self, g):
        xp = _xp_of(g)
        x, n, p = self.x, self.n, self.ord
        if not self.keepdim:
            g = g.reshape(n.shape)
        if p == 0:
            return xp.zeros_like(x)
        if p == 1:
            return g * xp.sign(x)
        if p in (float("inf"), float("-inf")):
            hit = (xp.abs(x) == n)
            return g * xp.sign(x) * hit / hit.sum(axis=self.axes, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 2:
                out = g * x / n
            else:
                out = g * xp.sign(x) * xp.abs(x) ** (p - 1) / n ** (p - 1)
        return xp.where((n == 0) | (x == 0), 0, out)


def _check_float(op, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point input, got {x.data.dtype}")


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """‖x‖_ord over ``dim`` (all dims when None), as torch.linalg.vector_norm: ord any real
    number or ±inf (0 counts the non-zero entries). Computed in ``dtype`` when given."""
    op = "linalg.vector_norm"
    if dtype is not None:
        x = x.to(dtype)
    _check_float(op, x)
    if isinstance(ord, bool) or not isinstance(ord, (int, float, np.integer, np.floating)):
        raise ValueError(f"{op}: ord must be a real number or ±inf, got {ord!r} (use "
                         "linalg.matrix_norm for 'fro' and 'nuc')")
    axes = _norm_axes(op, dim, x.ndim)
    ord = float(ord)
    if (ord < 0 or ord == float("inf")) and any(x.shape[a] == 0 for a in axes):
        raise RuntimeError(f"{op}: ord={ord} over a zero-size dimension is not defined (the "
                           "reduction has no identity)")
    return VectorNorm.apply(x, ord, axes, bool(keepdim))


def _matrix_dims(op, dim, ndim):
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise ValueError(f"{op}: dim must be a pair of ints, got {dim!r}")
    d = _norm_axes(op, tuple(dim), ndim)
    return int(dim[0]) % ndim, int(dim[1]) % ndim


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """The matrix norm of A over the two dims ``dim``, as torch.linalg.matrix_norm: ord 'fro',
    'nuc' (Σ s_i), 2 / −2 (largest / smallest singular value), 1 / −1 (max / min column sum
    of |A|), inf / −inf (max / min row sum of |A|)."""
    op = "linalg.matrix_norm"
    if dtype is not None:
        A = A.to(dtype)
    _check_float(op, A)
    if A.ndim < 2:
        raise RuntimeError(f"{op}: A must have at least 2 dimensions, got shape "
                           f"{tuple(A.shape)}")
    r, c = _matrix_dims(op, dim, A.ndim)
    inf = float("inf")
    if ord == "fro":
        return vector_norm(A, 2, dim=(r, c), keepdim=keepdim)
    if ord in ("nuc", 2, -2):
        s = svdvals(A.movedim((r, c), (-2, -1)))
        # amax / amin, not s[..., 0] / s[..., -1]: where singular values tie (a multiple of an
        # orthogonal matrix, the zero matrix) the gradient is shared evenly among the tied
        # ones, PyTorch's subgradient (the first one alone is another subgradient)
        out = s.sum(-1) if ord == "nuc" else (s.amax(-1) if ord == 2 else s.amin(-1))
    elif ord in (1, -1, inf, -inf):
        over, then = (r, c) if ord in (1, -1) else (c, r)     # sum |a| over rows → per column
        sums = vector_norm(A, 1, dim=over, keepdim=True)
        out = (sums.amax(then, keepdim=True) if ord in (1, inf)
               else sums.amin(then, keepdim=True))
        return out if keepdim else out.squeeze(max(r, c)).squeeze(min(r, c))
    else:
        raise ValueError(f"{op}: ord must be 'fro', 'nuc', inf, -inf, 1, -1, 2 or -2, got "
                         f"{ord!r}")
    if keepdim:
        lo, hi = min(r, c), max(r, c)
        out = out.unsqueeze(lo).unsqueeze(hi)
    return out


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a vector norm when ``dim`` is an int (or ord is given and A is 1-D),
    a matrix norm when ``dim`` is a pair (or ord is given and A is 2-D); ord=None and
    dim=None: the 2-norm of A flattened."""
    op = "linalg.norm"
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        dim = (int(dim),)
    if dim is not None:
        if len(dim) == 1:
            return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
        if len(dim) == 2:
            return matrix_norm(A, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
        raise RuntimeError(f"{op}: dim must be an int, a pair or None, got {dim!r}")
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise RuntimeError(f"{op}: with ord={ord!r} and dim=None, A must be 1-D or 2-D, got "
                       f"shape {tuple(A.shape)}")


Tensor.logdet = logdet  # A.logdet(), as torch.Tensor.logdet
