"""minigen.linalg part 2: cholesky, solve_triangular, qr, svd/svdvals, eigh/eigvalsh, logdet and
the norms. Forward values against numpy references written here (Cholesky–Banachiewicz,
Gram–Schmidt, cyclic Jacobi, the norm formulas: none of them the code under test), gradients
against float64 central differences (op_check.check_op), and PyTorch when installed.

Decompositions are unique only up to signs (QR, SVD, eigh): the checked functions fix the sign
(positive diagonal of R; the largest entry of each singular/eigen vector positive), which is also
what makes the loss gauge-invariant, as the backward formulas require."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
from minigen import dispatch
from minigen import linalg as LA
from kernel_impls import implementations
from op_check import check_op

IMPLS = implementations("logdet", exclude=("triton",))
TRITON = implementations("logdet", exclude=("reference", "native"))


# --------------------------------------------------------------------- numpy references
def ref_cholesky(a):
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape[:-2]):
        A, L = a[idx], out[idx]
        n = A.shape[0]
        for i in range(n):
            for j in range(i + 1):
                s = A[i, j] - L[i, :j] @ L[j, :j]
                L[i, j] = np.sqrt(s) if i == j else s / L[j, j]
    return out


def ref_qr_pos(a):
    """Modified Gram–Schmidt: Q (m, n), R (n, n) with R's diagonal positive (m ≥ n)."""
    a = np.asarray(a, dtype=np.float64)
    m, n = a.shape[-2:]
    Q = np.zeros(a.shape[:-2] + (m, n))
    R = np.zeros(a.shape[:-2] + (n, n))
    for idx in np.ndindex(a.shape[:-2]):
        V = a[idx].copy()
        for j in range(n):
            R[idx][j, j] = np.linalg.norm(V[:, j])
            Q[idx][:, j] = V[:, j] / R[idx][j, j]
            for k in range(j + 1, n):
                R[idx][j, k] = Q[idx][:, j] @ V[:, k]
                V[:, k] -= R[idx][j, k] * Q[idx][:, j]
    return Q, R


def jacobi_eigh(a, sweeps=30):
    """Cyclic Jacobi rotations: eigenvalues ascending and eigenvectors of symmetric matrices."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[-1]
    W = np.zeros(a.shape[:-1])
    V = np.zeros(a.shape)
    for idx in np.ndindex(a.shape[:-2]):
        A, E = a[idx].copy(), np.eye(n)
        for _ in range(sweeps):
            if np.abs(A - np.diag(np.diag(A))).max() < 1e-15 * np.abs(A).max():
                break
            for p in range(n - 1):
                for q in range(p + 1, n):
                    if A[p, q] == 0:
                        continue
                    theta = (A[q, q] - A[p, p]) / (2 * A[p, q])
                    t = np.sign(theta) / (abs(theta) + np.sqrt(theta * theta + 1)) if theta else 1.0
                    c = 1 / np.sqrt(t * t + 1)
                    s = t * c
                    J = np.eye(n)
                    J[p, p] = J[q, q] = c
                    J[p, q], J[q, p] = s, -s
                    A = J.T @ A @ J
                    E = E @ J
        order = np.argsort(np.diag(A))
        W[idx], V[idx] = np.diag(A)[order], E[:, order]
    return W, V


def np_fix_sign(v):
    """Flip each column so its largest-magnitude entry is positive."""
    k = np.argmax(np.abs(v), axis=-2)[..., None, :]
    return v * np.sign(np.take_along_axis(v, k, axis=-2))


def mg_fix_sign(v, other=None):
    """The same sign fix in minigen ops (piecewise constant, so gradients flow through v)."""
    k = v.detach().abs().argmax(dim=-2, keepdim=True)
    s = v.detach().gather(-2, k).sign()
    return (v * s, other * s) if other is not None else v * s


def spd(rng, batch, n):
    x = rng.standard_normal(batch + (n, n))
    return x @ np.swapaxes(x, -1, -2) + n * np.eye(n)


def distinct_sym(rng, batch, n):
    """Symmetric with eigenvalues 1, 2, …, n (well separated) in a random basis."""
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    return (q * np.arange(1.0, n + 1)[..., None, :]) @ np.swapaxes(q, -1, -2)


def distinct_sv(rng, batch, m, n):
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal(batch + (m, k)))
    v, _ = np.linalg.qr(rng.standard_normal(batch + (n, k)))
    s = np.linspace(3.0, 1.0, k)
    return (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)


def sym(x):
    return (x + x.transpose(-1, -2)) * 0.5


# ------------------------------------------------------------------------------ cholesky
@pytest.mark.parametrize("batch,n", [((), 1), ((), 4), ((2, 3), 3)])
def test_cholesky_forward_and_grad(batch, n):
    rng = np.random.default_rng(n)
    a = spd(rng, batch, n)
    check_op(lambda t: LA.cholesky(sym(t)), ref_cholesky, [a])
    check_op(lambda t: LA.cholesky(sym(t), upper=True),
             lambda x: np.swapaxes(ref_cholesky(x), -1, -2), [a])


def test_cholesky_reads_lower_triangle_only():
    rng = np.random.default_rng(0)
    a = spd(rng, (), 4)
    junk = a + np.triu(rng.standard_normal((4, 4)) * 100, 1)
    np.testing.assert_allclose(LA.cholesky(mg.tensor(junk)).numpy(), ref_cholesky(a),
                               rtol=1e-12, atol=1e-12)


def test_cholesky_not_positive_definite_names_the_minor():
    a = np.array([[[4.0, 0, 0], [0, 1, 0], [0, 0, 1]], [[1.0, 2, 0], [2, 1, 0], [0, 0, 1]]])
    with pytest.raises(RuntimeError, match=r"batch element \(1,\).*leading minor of order 2"):
        LA.cholesky(mg.tensor(a))
    with pytest.raises(RuntimeError, match="square"):
        LA.cholesky(mg.tensor(np.ones((2, 3))))


# ---------------------------------------------------------------------- solve_triangular
def _tri(rng, batch, n, upper):
    a = rng.standard_normal(batch + (n, n)) * 0.3
    a += np.eye(n) * 2                       # well conditioned
    return np.triu(a) if upper else np.tril(a)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("unit", [False, True])
def test_solve_triangular(impl, upper, left, unit):
    rng = np.random.default_rng(int(upper) + 2 * int(left) + 4 * int(unit))
    n, k = 4, 3
    a = _tri(rng, (2,), n, upper)
    a_full = a + (np.tril(rng.standard_normal((n, n)), -1) if upper
                  else np.triu(rng.standard_normal((n, n)), 1))  # junk the op must ignore
    b = rng.standard_normal((2, n, k) if left else (2, k, n))

    def ref(A, B):
        T = np.triu(A) if upper else np.tril(A)
        if unit:
            T = np.where(np.eye(n, dtype=bool), 1.0, T)
        return np.linalg.solve(T, B) if left else \
            np.swapaxes(np.linalg.solve(np.swapaxes(T, -1, -2), np.swapaxes(B, -1, -2)), -1, -2)

    with dispatch.use(logdet=impl):
        check_op(lambda A, B: LA.solve_triangular(A, B, upper=upper, left=left,
                                                  unitriangular=unit), ref, [a_full, b])
        # the gradient to A lives on its triangle (strictly, when unitriangular)
        A = mg.tensor(a_full, requires_grad=True)
        LA.solve_triangular(A, mg.tensor(b), upper=upper, left=left,
                            unitriangular=unit).sum().backward()
        g = A.grad.numpy()
        outside = np.tril(g, -1) if upper else np.triu(g, 1)
        assert not outside.any()
        assert np.diagonal(g, axis1=-2, axis2=-1).any() != unit


@pytest.mark.parametrize("impl", TRITON)
def test_solve_triangular_triton(impl):
    """The Triton lu_solve (in the interpreter here) with identity pivots: forward, and the
    backward's transposed solve, against numpy (kept small: the interpreter is slow)."""
    rng = np.random.default_rng(11)
    b = rng.standard_normal((3, 2))
    for upper in (True, False):
        a = _tri(rng, (), 3, upper)
        with dispatch.use(logdet=impl):
            A = mg.tensor(a, requires_grad=True)
            x = LA.solve_triangular(A, mg.tensor(b), upper=upper)
            x.sum().backward()
        np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(a, b), rtol=1e-12)
        gb = np.linalg.solve(a.T, np.ones((3, 2)))
        want = -(gb @ np.linalg.solve(a, b).T)
        np.testing.assert_allclose(A.grad.numpy(), np.triu(want) if upper else np.tril(want),
                                   rtol=1e-12)


def test_solve_triangular_broadcasts_and_checks():
    rng = np.random.default_rng(1)
    a = _tri(rng, (), 3, False)
    b = rng.standard_normal((5, 3, 2))
    x = LA.solve_triangular(mg.tensor(a), mg.tensor(b), upper=False).numpy()
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-12)
    with pytest.raises(RuntimeError, match="must have shape"):
        LA.solve_triangular(mg.tensor(a), mg.tensor(b[..., :2, :]), upper=False)
    with pytest.raises(TypeError):
        LA.solve_triangular(mg.tensor(a), mg.tensor(b), False)   # upper is keyword-only


# ------------------------------------------------------------------------------------ qr
def _qr_pos(t, mode="reduced"):
    q, r = LA.qr(t, mode=mode)
    d = r.detach().diagonal(dim1=-2, dim2=-1).sign()
    return q * d.unsqueeze(-2), r * d.unsqueeze(-1)


@pytest.mark.parametrize("batch,m,n", [((), 4, 4), ((), 5, 3), ((2,), 6, 2)])
def test_qr_reduced_forward_and_grad(batch, m, n):
    rng = np.random.default_rng(m * 10 + n)
    check_op(_qr_pos, ref_qr_pos, [rng.standard_normal(batch + (m, n))])


def test_qr_wide_grad():
    """m < n: A = Q [R1 R2]; the reference factors the leading square block."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 5))

    def ref(x):
        q, r1 = ref_qr_pos(x[..., :3])
        return q, np.concatenate([r1, np.swapaxes(q, -1, -2) @ x[..., 3:]], axis=-1)
    check_op(_qr_pos, ref, [a])
    check_op(lambda t: _qr_pos(t, "complete"), ref, [a])   # complete = reduced when m ≤ n


def test_qr_modes_shapes_and_errors():
    rng = np.random.default_rng(4)
    a = mg.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    q, r = LA.qr(a, mode="complete")
    assert q.shape == (5, 5) and r.shape == (5, 3)
    np.testing.assert_allclose((q @ r).detach().numpy(), a.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose((q.mT @ q).detach().numpy(), np.eye(5), atol=1e-12)
    with pytest.raises(RuntimeError, match="mode='complete' with m > n"):
        r.sum().backward()
    q0, r0 = LA.qr(a, mode="r")
    assert q0.shape == (0,) and r0.shape == (3, 3)
    np.testing.assert_allclose(np.abs(r0.detach().numpy()), np.abs(LA.qr(a)[1].detach().numpy()))
    with pytest.raises(RuntimeError, match="mode='r'"):
        r0.sum().backward()
    with pytest.raises(ValueError, match="mode"):
        LA.qr(a, mode="full")


# ----------------------------------------------------------------------------------- svd
def ref_svd_pos(x):
    """Singular values from Jacobi on AᵀA (or AAᵀ), U from A V / s, signs fixed on U."""
    m, n = x.shape[-2:]
    k = min(m, n)
    xt = np.swapaxes(x, -1, -2)
    if m >= n:
        w, v = jacobi_eigh(xt @ x)
        s = np.sqrt(w[..., ::-1])
        v = v[..., ::-1]
        u = x @ v / s[..., None, :]
    else:
        w, u = jacobi_eigh(x @ xt)
        s = np.sqrt(w[..., ::-1])
        u = u[..., ::-1]
        v = xt @ u / s[..., None, :]
    kk = np.argmax(np.abs(u), axis=-2)[..., None, :]
    sg = np.sign(np.take_along_axis(u, kk, axis=-2))
    return u[..., :k] * sg, s, np.swapaxes(v * sg, -1, -2)


def _svd_pos(t):
    u, s, vh = LA.svd(t, full_matrices=False)
    u, v = mg_fix_sign(u, vh.mT)
    return u, s, v.mT


@pytest.mark.parametrize("batch,m,n", [((), 3, 3), ((2,), 5, 3), ((), 2, 4)])
def test_svd_forward_and_grad(batch, m, n):
    rng = np.random.default_rng(m + 7 * n)
    check_op(_svd_pos, ref_svd_pos, [distinct_sv(rng, batch, m, n)])
    check_op(LA.svdvals, lambda x: ref_svd_pos(x)[1], [distinct_sv(rng, batch, m, n)])


def test_svd_full_matrices():
    rng = np.random.default_rng(5)
    a = mg.tensor(distinct_sv(rng, (), 5, 3), requires_grad=True)
    u, s, vh = LA.svd(a)
    assert u.shape == (5, 5) and s.shape == (3,) and vh.shape == (3, 3)
    np.testing.assert_allclose((u.mT @ u).detach().numpy(), np.eye(5), atol=1e-12)
    s.sum().backward()                                  # S alone: fine
    np.testing.assert_allclose(a.grad.numpy(), (u[:, :3] @ vh).detach().numpy(), atol=1e-12)
    u, s, vh = LA.svd(a)
    with pytest.raises(RuntimeError, match="full_matrices=False"):
        u.sum().backward()


@pytest.mark.parametrize("m, n", [(5, 3), (3, 5)])
def test_svd_full_matrices_gradient_through_the_first_k_vectors(m, n):
    # a loss that reads only the first k = min(m, n) singular vectors has a zero gradient on
    # the extra ones: full_matrices=True then gives full_matrices=False's gradient (PyTorch
    # narrows to k; minigen raised; found by the OpInfo run), here of the gauge-invariant U Vh
    rng = np.random.default_rng(6)
    a = distinct_sv(rng, (2,), m, n)
    w = rng.standard_normal((2, m, n))
    k = min(m, n)
    grads = []
    for full in (True, False):
        t = mg.tensor(a, requires_grad=True)
        u, s, vh = LA.svd(t, full_matrices=full)
        ((u[..., :k] @ vh[..., :k, :]) * mg.tensor(w) + s.sum()).sum().backward()
        grads.append(t.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------- eigh
def _eigh_pos(t, uplo="L"):
    w, v = LA.eigh(sym(t), UPLO=uplo)
    return w, mg_fix_sign(v)


@pytest.mark.parametrize("batch,n", [((), 1), ((), 4), ((2, 2), 3)])
def test_eigh_forward_and_grad(batch, n):
    rng = np.random.default_rng(n)
    a = distinct_sym(rng, batch, n)

    def ref(x):
        w, v = jacobi_eigh(x)
        return w, np_fix_sign(v)
    check_op(_eigh_pos, ref, [a])
    check_op(lambda t: _eigh_pos(t, "U"), ref, [a])
    check_op(lambda t: LA.eigvalsh(sym(t)), lambda x: jacobi_eigh(x)[0], [a])


def test_eigh_reads_one_triangle():
    rng = np.random.default_rng(2)
    a = distinct_sym(rng, (), 4)
    low = np.tril(a) + np.triu(rng.standard_normal((4, 4)), 1)
    up = np.triu(a) + np.tril(rng.standard_normal((4, 4)), -1)
    want = jacobi_eigh(a)[0]
    np.testing.assert_allclose(LA.eigvalsh(mg.tensor(low)).numpy(), want, atol=1e-12)
    np.testing.assert_allclose(LA.eigvalsh(mg.tensor(up), UPLO="U").numpy(), want, atol=1e-12)
    with pytest.raises(ValueError, match="UPLO"):
        LA.eigh(mg.tensor(a), UPLO="X")


# -------------------------------------------------------------------------------- logdet
def test_logdet():
    rng = np.random.default_rng(6)
    a = spd(rng, (3,), 3)
    check_op(LA.logdet, lambda x: np.log(np.linalg.det(x)), [a])
    neg = np.diag([1.0, -2.0])
    sing = np.zeros((2, 2))
    out = LA.logdet(mg.tensor(np.stack([neg, sing, np.eye(2) * 2]))).numpy()
    assert np.isnan(out[0]) and out[1] == -np.inf and out[2] == pytest.approx(2 * np.log(2))


# --------------------------------------------------------------------------------- norms
def ref_vector_norm(x, ord, axis=None, keepdims=False):
    a = np.abs(x)
    if ord == np.inf:
        return a.max(axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return a.min(axis=axis, keepdims=keepdims)
    if ord == 0:
        return (a != 0).sum(axis=axis, keepdims=keepdims).astype(x.dtype)
    return (a ** ord).sum(axis=axis, keepdims=keepdims) ** (1.0 / ord)


@pytest.mark.parametrize("ord", [2, 1, 3, 0.5, -1.5, np.inf, -np.inf, 0])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (1, True), ((0, 2), False)])
def test_vector_norm(ord, dim, keepdim):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 2)) + np.sign(rng.standard_normal((3, 4, 2))) * 0.1
    check_op(lambda t: LA.vector_norm(t, ord, dim, keepdim),
             lambda a: ref_vector_norm(a, ord, dim, keepdim), [x])


def test_vector_norm_zero_vector_has_zero_gradient_and_ties_share():
    x = mg.tensor(np.zeros(3), requires_grad=True)
    LA.vector_norm(x).backward()
    assert np.array_equal(x.grad.numpy(), np.zeros(3))
    y = mg.tensor(np.array([2.0, -2.0, 1.0]), requires_grad=True)
    LA.vector_norm(y, float("inf")).backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.5, -0.5, 0.0])
    with pytest.raises(ValueError, match="matrix_norm"):
        LA.vector_norm(y, "fro")
    with pytest.raises(RuntimeError, match="zero-size"):
        LA.vector_norm(mg.tensor(np.zeros((0, 2))), float("inf"), dim=0)


def ref_matrix_norm(a, ord):
    if ord == "fro":
        return np.sqrt((a * a).sum(axis=(-2, -1)))
    s = ref_svd_pos(a)[1]
    if ord == "nuc":
        return s.sum(-1)
    if ord in (2, -2):
        return s[..., 0] if ord == 2 else s[..., -1]
    col, row = np.abs(a).sum(-2), np.abs(a).sum(-1)
    return {1: col.max(-1), -1: col.min(-1), np.inf: row.max(-1), -np.inf: row.min(-1)}[ord]


@pytest.mark.parametrize("ord", ["fro", "nuc", 2, -2, 1, -1, np.inf, -np.inf])
def test_matrix_norm(ord):
    rng = np.random.default_rng(8)
    a = distinct_sv(rng, (2,), 4, 3) + rng.standard_normal((2, 4, 3)) * 0.01
    check_op(lambda t: LA.matrix_norm(t, ord), lambda x: ref_matrix_norm(x, ord), [a])
    # other dims, keepdim: b[k, i, j] = a[i, j, k], so dim=(2, 0) picks the matrices a[i]
    b = np.moveaxis(a, (0, 1, 2), (1, 2, 0))
    got = LA.matrix_norm(mg.tensor(b), ord, dim=(2, 0), keepdim=True).numpy()
    want = ref_matrix_norm(a, ord)
    assert got.shape == (1, 2, 1)
    np.testing.assert_allclose(got[0, :, 0], want, rtol=1e-10)


def test_norm_dispatch():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((3, 4))
    t = mg.tensor(a)
    assert LA.norm(t).item() == pytest.approx(np.sqrt((a * a).sum()))
    assert LA.norm(t, 1).item() == pytest.approx(np.abs(a).sum(0).max())
    np.testing.assert_allclose(LA.norm(t, 3, dim=1).numpy(), (np.abs(a) ** 3).sum(1) ** (1 / 3))
    assert LA.norm(t, "nuc").item() == pytest.approx(ref_svd_pos(a)[1].sum())
    with pytest.raises(RuntimeError, match="1-D or 2-D"):
        LA.norm(mg.tensor(np.ones((2, 2, 2))), 2)


# ------------------------------------------------------------------------------ PyTorch
def test_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)

    def both(fn_mg, fn_t, *arrays):
        """Values and input gradients under one random upstream gradient."""
        ts = [mg.tensor(a, requires_grad=True) for a in arrays]
        tt = [torch.tensor(a, requires_grad=True) for a in arrays]
        om, ot = fn_mg(*ts), fn_t(*tt)
        om, ot = (om if isinstance(om, tuple) else (om,)), (ot if isinstance(ot, tuple) else (ot,))
        loss_m, loss_t = 0, 0
        for a, b in zip(om, ot):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-9,
                                       atol=1e-10)
            w = rng.standard_normal(tuple(b.shape))
            loss_m = loss_m + (a * mg.tensor(w)).sum()
            loss_t = loss_t + (b * torch.tensor(w)).sum()
        loss_m.backward()
        loss_t.backward()
        for x, y in zip(ts, tt):
            np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-8, atol=1e-10)

    tsym = lambda t: (t + t.mT) / 2  # noqa: E731
    s = spd(rng, (2,), 4)
    both(lambda t: LA.cholesky(sym(t)), lambda t: torch.linalg.cholesky(tsym(t)), s)
    both(lambda t: LA.cholesky(sym(t), upper=True),
         lambda t: torch.linalg.cholesky(tsym(t), upper=True), s)
    tri, b = _tri(rng, (2,), 4, False), rng.standard_normal((2, 4, 3))
    for up, left in [(False, True), (True, False)]:
        A = np.swapaxes(tri, -1, -2) if up else tri
        B = b if left else np.swapaxes(b, -1, -2)
        both(lambda x, y: LA.solve_triangular(x, y, upper=up, left=left),
             lambda x, y: torch.linalg.solve_triangular(x, y, upper=up, left=left), A, B)
    for shape in [(2, 5, 3), (3, 5)]:
        both(lambda t: LA.qr(t), lambda t: torch.linalg.qr(t), rng.standard_normal(shape))
    d = distinct_sv(rng, (2,), 5, 3)
    both(lambda t: _svd_pos(t), lambda t: tuple(
        x for x in _torch_svd_pos(torch, t)), d)
    both(LA.svdvals, torch.linalg.svdvals, d)
    e = distinct_sym(rng, (2,), 4)
    both(lambda t: _eigh_pos(t), lambda t: _torch_eigh_pos(torch, tsym(t)), e)
    both(LA.logdet, torch.logdet, s)
    x = rng.standard_normal((3, 4))
    for ord in [2, 1, 0.5, float("inf"), -float("inf")]:
        both(lambda t: LA.vector_norm(t, ord, dim=1), lambda t: torch.linalg.vector_norm(
            t, ord, dim=1), x)
    for ord in ["fro", "nuc", 2, -2, 1, -1, float("inf"), -float("inf")]:
        both(lambda t: LA.matrix_norm(t, ord), lambda t: torch.linalg.matrix_norm(t, ord), d)
        both(lambda t: LA.norm(t, ord), lambda t: torch.linalg.norm(t, ord), d[0])


def _torch_svd_pos(torch, t):
    u, s, vh = torch.linalg.svd(t, full_matrices=False)
    k = u.detach().abs().argmax(dim=-2, keepdim=True)
    sg = u.detach().gather(-2, k).sign()
    return u * sg, s, (vh.mT * sg).mT


def _torch_eigh_pos(torch, t):
    w, v = torch.linalg.eigh(t)
    k = v.detach().abs().argmax(dim=-2, keepdim=True)
    return w, v * v.detach().gather(-2, k).sign()


def test_logdet_tensor_method_and_top_level():
    a = mg.tensor(np.diag([2.0, 3.0]))
    assert a.logdet().item() == pytest.approx(np.log(6.0))
    assert mg.logdet(a).item() == pytest.approx(np.log(6.0))


# --------------------------------------------------------------- the CuPy path (stand-in)
def test_cuda_path_matches_cpu(monkeypatch):
    """The same code on the CuPy stand-in of fake_cupy (device arrays that are not numpy's):
    values and gradients as on the CPU, and no device→host transfer except cholesky's one
    positive-definiteness check."""
    import fake_cupy
    counter = fake_cupy.install(monkeypatch)
    rng = np.random.default_rng(12)
    s, t = spd(rng, (2,), 3), _tri(rng, (2,), 3, True)
    b, d, e = rng.standard_normal((2, 3, 2)), distinct_sv(rng, (2,), 4, 3), distinct_sym(
        rng, (2,), 3)
    calls = [("cholesky", lambda x: LA.cholesky(sym(x)), [s], 1),
             ("solve_triangular", lambda x, y: LA.solve_triangular(x, y, upper=True), [t, b], 0),
             ("qr", _qr_pos, [d], 0), ("svd", _svd_pos, [d], 0), ("svdvals", LA.svdvals, [d], 0),
             ("eigh", _eigh_pos, [e], 0), ("logdet", LA.logdet, [s], 0),
             ("vector_norm", lambda x: LA.vector_norm(x, 3, dim=-1), [d], 0),
             ("matrix_norm inf", lambda x: LA.matrix_norm(x, float("inf")), [d], 0),
             ("matrix_norm nuc", lambda x: LA.matrix_norm(x, "nuc"), [d], 0)]
    for name, fn, arrays, n_sync in calls:
        cpu_leaves = [mg.tensor(a, requires_grad=True) for a in arrays]
        cpu = fn(*cpu_leaves)
        cpu = cpu if isinstance(cpu, tuple) else (cpu,)
        gs = [rng.standard_normal(o.shape) for o in cpu]
        mg.autograd.backward(list(cpu), [mg.tensor(g) for g in gs])
        with dispatch.use("reference"):
            leaves = [mg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
            gdev = [mg.tensor(g, device="cuda") for g in gs]
            counter.reset()
            dev = fn(*leaves)
            dev = dev if isinstance(dev, tuple) else (dev,)
            mg.autograd.backward(list(dev), gdev)
        assert len(counter.syncs) == n_sync, f"{name}: host transfers {counter.syncs}"
        for o, r in zip(dev, cpu):
            assert isinstance(o.data, fake_cupy.FakeArray)
            np.testing.assert_allclose(o.detach().data.get(), r.detach().numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=name)
        for lv, r in zip(leaves, cpu_leaves):
            np.testing.assert_allclose(lv.grad.data.get(), r.grad.numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=name)


# ------------------------------------------------------- lu_factor's gradient (OpInfo run)
def _np_lu_packed(a):
    """Packed LU with partial pivoting (largest |a_ik| in column k), batched by a loop."""
    a = np.array(a, dtype=np.float64)
    flat = a.reshape(-1, *a.shape[-2:])
    for m in flat:
        n = m.shape[0]
        for k in range(n):
            p = k + int(np.argmax(np.abs(m[k:, k])))
            m[[k, p]] = m[[p, k]]
            m[k + 1:, k] /= m[k, k]
            m[k + 1:, k + 1:] -= np.outer(m[k + 1:, k], m[k, k + 1:])
    return flat.reshape(a.shape)


@pytest.mark.parametrize("shape, seed", [((4, 4), 0), ((2, 3, 3), 1), ((1, 1), 2)])
def test_lu_factor_gradient(shape, seed):
    # LU was cut from the graph (no gradient; PyTorch differentiates it): now
    # Ā = Pᵀ L⁻ᵀ [tril₋₁(Lᵀ L̄) + triu(Ū Uᵀ)] U⁻ᵀ, checked by float64 central differences
    # (random matrices: the pivots' order does not change under the finite-difference steps)
    a = np.random.default_rng(seed).standard_normal(shape)
    check_op(lambda t: mg.linalg.lu_factor(t)[0], _np_lu_packed, [a])
    A = mg.tensor(a, requires_grad=True)
    lu, piv = mg.linalg.lu_factor(A)
    assert lu.requires_grad and not piv.requires_grad


@pytest.mark.parametrize("ord", [2, -2])
def test_spectral_norm_subgradient_shared_among_tied_singular_values(ord):
    # A = 3·I has four equal singular values: PyTorch's subgradient (amax / amin of the
    # singular values) shares the gradient evenly, (1/4) Σ u_i v_iᵀ = I/4, where taking the
    # first (last) singular value gave u_1 v_1ᵀ (found by the OpInfo run)
    for norm in (LA.matrix_norm, LA.norm):
        A = mg.tensor(3.0 * np.eye(4), requires_grad=True)
        out = norm(A, ord)
        assert float(out.item()) == pytest.approx(3.0)
        out.backward()
        np.testing.assert_allclose(A.grad.numpy(), np.eye(4) / 4, atol=1e-14)
