"""Every op of ``minigen.ops.matmul`` through ``check_op``: batched broadcast matmul incl. 1-D
operands, mm, bmm, dot, outer, linear, einsum (explicit, implicit, '...', several operands)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigen as mg
from core_strategies import broadcast_shapes, normal, seeds
from op_check import check_op

sizes = st.integers(1, 4)


@st.composite
def matmul_shapes(draw):
    """Shapes for a @ b: each side 1-D, 2-D or batched with broadcastable batch dims."""
    m, k, n = draw(sizes), draw(sizes), draw(sizes)
    batch_a, batch_b = draw(broadcast_shapes(2, max_dims=2, max_side=3))
    kind_a, kind_b = draw(st.sampled_from(["1d", "2d", "nd"])), draw(
        st.sampled_from(["1d", "2d", "nd"]))
    a = (k,) if kind_a == "1d" else ((m, k) if kind_a == "2d" else batch_a + (m, k))
    b = (k,) if kind_b == "1d" else ((k, n) if kind_b == "2d" else batch_b + (k, n))
    return a, b


@given(shp=matmul_shapes(), seed=seeds)
def test_matmul(shp, seed):
    a, b = normal(seed, shp[0]), normal(seed + 1, shp[1])
    check_op(mg.matmul, np.matmul, [a, b])
    check_op(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])
    check_op(lambda x, y: x.matmul(y), np.matmul, [a, b])


def test_matmul_vector_cases():
    rng = np.random.default_rng(0)
    v, w = rng.standard_normal(3), rng.standard_normal(3)
    m, batch = rng.standard_normal((3, 4)), rng.standard_normal((2, 5, 3))
    check_op(mg.matmul, np.matmul, [v, w])        # dot: 0-d result
    check_op(mg.matmul, np.matmul, [v, m])        # (3,) @ (3, 4) -> (4,)
    check_op(mg.matmul, np.matmul, [batch, v])    # (2, 5, 3) @ (3,) -> (2, 5)
    check_op(mg.matmul, np.matmul, [v, rng.standard_normal((2, 3, 4))])  # -> (2, 4)


@given(m=sizes, k=sizes, n=sizes, seed=seeds)
def test_mm_dot_outer(m, k, n, seed):
    a, b = normal(seed, (m, k)), normal(seed + 1, (k, n))
    check_op(mg.mm, np.matmul, [a, b])
    check_op(lambda x, y: x.mm(y), np.matmul, [a, b])
    v, w = normal(seed + 2, (k,)), normal(seed + 3, (k,))
    check_op(mg.dot, np.dot, [v, w])
    check_op(lambda x, y: x.dot(y), np.dot, [v, w])
    check_op(mg.outer, np.outer, [v, normal(seed + 4, (n,))])


@given(b=sizes, m=sizes, k=sizes, n=sizes, seed=seeds)
def test_bmm(b, m, k, n, seed):
    x, y = normal(seed, (b, m, k)), normal(seed + 1, (b, k, n))
    check_op(mg.bmm, np.matmul, [x, y])
    check_op(lambda p, q: p.bmm(q), np.matmul, [x, y])


@given(lead=st.lists(sizes, max_size=2), fin=sizes, fout=sizes, bias=st.booleans(), seed=seeds)
def test_linear(lead, fin, fout, bias, seed):
    x, w = normal(seed, tuple(lead) + (fin,)), normal(seed + 1, (fout, fin))
    if bias:
        b = normal(seed + 2, (fout,))
        check_op(mg.linear, lambda x, w, b: x @ w.T + b, [x, w, b])
    else:
        check_op(mg.linear, lambda x, w: x @ w.T, [x, w])


# ---------------------------------------------------------------------- einsum
EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),              # implicit output
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 3)]),
    ("i,i->", [(4,), (4,)]),
    ("i,j->ij", [(3,), (2,)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ijk->k", [(2, 3, 4)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,kj->ik", [(2, 3), (4, 3)]),
    ("bhqd,bhkd->bhqk", [(2, 1, 3, 2), (2, 1, 4, 2)]),
    ("...ij,...jk->...ik", [(2, 3, 2, 3), (2, 3, 3, 4)]),
    ("...ij,jk->...ik", [(2, 2, 3), (3, 4)]),  # ellipsis on one operand only
    ("...i,...i->...", [(2, 3, 4), (2, 3, 4)]),
    ("...i->...", [(2, 3)]),
    ("i...->...i", [(2, 3, 4)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 2)]),  # three operands
    ("a b , b c -> a c", [(2, 3), (3, 2)]),     # spaces
    ("ij,jk,k->i", [(2, 3), (3, 4), (4,)]),
]


@pytest.mark.parametrize("eq,shps", EINSUM, ids=[e for e, _ in EINSUM])
@given(seed=seeds)
def test_einsum(eq, shps, seed):
    arrays = [normal(seed + i, s) for i, s in enumerate(shps)]
    check_op(lambda *t: mg.einsum(eq, *t), lambda *a: np.einsum(eq.replace(" ", ""), *a), arrays)
    check_op(lambda *t: mg.einsum(eq, list(t)), lambda *a: np.einsum(eq.replace(" ", ""), *a),
             arrays, noncontig=False, float32=False)


@given(shp=broadcast_shapes(2, max_dims=2, max_side=3), k=sizes, seed=seeds)
def test_einsum_ellipsis_broadcast(shp, k, seed):
    a, b = normal(seed, shp[0] + (k,)), normal(seed + 1, shp[1] + (k,))
    check_op(lambda x, y: mg.einsum("...k,...k->...", x, y),
             lambda x, y: np.einsum("...k,...k->...", x, y), [a, b])


# ---------------------------------------------------------------------- GPU variant
@pytest.mark.parametrize("case", ["batched", "vector", "linear", "einsum"])
def test_matmul_on_device(device, case):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    v = rng.standard_normal(4)
    if case == "batched":
        check_op(mg.matmul, np.matmul, [a, b], device=device)
    elif case == "vector":
        check_op(mg.matmul, np.matmul, [a, v], device=device)
    elif case == "linear":
        check_op(mg.linear, lambda x, w, c: x @ w.T + c, [a, b.T, rng.standard_normal(5)],
                 device=device)
    else:
        check_op(lambda x, y: mg.einsum("bij,jk->bik", x, y),
                 lambda x, y: np.einsum("bij,jk->bik", x, y), [a, b], device=device)


@pytest.mark.skipif(not isinstance(mg.bfloat16, np.dtype), reason="ml_dtypes not installed")
def test_bfloat16_products_keep_bfloat16():
    rng = np.random.default_rng(3)
    a_np, w_np = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    a = mg.tensor(a_np, dtype=mg.bfloat16, requires_grad=True)
    w = mg.tensor(w_np, dtype=mg.bfloat16, requires_grad=True)
    y, z = a @ w.T, mg.nn.functional.linear(a, w)
    assert y.dtype == mg.bfloat16 and z.dtype == mg.bfloat16
    # bfloat16 keeps 8 bits of mantissa: compare with the float64 product at that precision
    ref = a_np.astype(mg.bfloat16).astype(np.float64) @ w_np.astype(mg.bfloat16).astype(np.float64).T
    np.testing.assert_allclose(np.asarray(y.detach().numpy(), np.float64), ref, rtol=2e-2, atol=2e-2)
    (y.sum() + z.sum()).backward()
    assert a.grad.dtype == mg.bfloat16 and w.grad.dtype == mg.bfloat16
