"""``minigen.ops.composite``: addmm, baddbmm, addcmul/addcdiv, mv, tensordot, trace, diag,
diag_embed, repeat_interleave, index_add, index_copy, scatter_reduce, meshgrid,
broadcast_tensors, the stacks, tril/triu_indices, and Tensor.new_*.

Forward values against numpy references written here (loops where numpy has no such op),
gradients against float64 central differences through ``check_op``, PyTorch as an extra oracle
when installed, and the CUDA code path on the transfer-counting CuPy stand-in."""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import minigen as mg
from core_strategies import distinct, normal, seeds, shapes, small_ints
from op_check import check_op

import fake_cupy


def _ints(a):
    return np.asarray(a, dtype=np.int64)


# =================================================================== addmm, baddbmm, mv
def _ref_addmm(i, a, b, beta, alpha):
    p = alpha * (a @ b)
    return p if beta == 0 else beta * i + p


INPUT_SHAPES = ["full", "row", "col", "scalar", "vector"]


def _input_shape(kind, n, p):
    return {"full": (n, p), "row": (1, p), "col": (n, 1), "scalar": (), "vector": (p,)}[kind]


@given(n=st.integers(1, 4), m=st.integers(1, 4), p=st.integers(1, 4),
       kind=st.sampled_from(INPUT_SHAPES), beta=st.sampled_from([1, 0, 0.5, -2.0]),
       alpha=st.sampled_from([1, 0.25, -3.0]), seed=seeds)
@example(n=3, m=1, p=5, kind="col", beta=0.5, alpha=-3.0, seed=0)
@example(n=1, m=3, p=1, kind="scalar", beta=0, alpha=1, seed=1)
def test_addmm(n, m, p, kind, beta, alpha, seed):
    i = normal(seed, _input_shape(kind, n, p))
    a, b = normal(seed + 1, (n, m)), normal(seed + 2, (m, p))
    check_op(lambda x, y, z: mg.addmm(x, y, z, beta=beta, alpha=alpha),
             lambda x, y, z: _ref_addmm(x, y, z, beta, alpha), [i, a, b])


@given(bs=st.integers(1, 3), n=st.integers(1, 4), m=st.integers(1, 4), p=st.integers(1, 4),
       kind=st.sampled_from(["full", "batch1", "row", "scalar"]),
       beta=st.sampled_from([1, 0, -0.5]), alpha=st.sampled_from([1, 2.0]), seed=seeds)
@example(bs=3, n=2, m=5, p=1, kind="batch1", beta=-0.5, alpha=2.0, seed=0)
def test_baddbmm(bs, n, m, p, kind, beta, alpha, seed):
    shape = {"full": (bs, n, p), "batch1": (1, n, p), "row": (p,), "scalar": ()}[kind]
    i, a, b = normal(seed, shape), normal(seed + 1, (bs, n, m)), normal(seed + 2, (bs, m, p))
    check_op(lambda x, y, z: mg.baddbmm(x, y, z, beta=beta, alpha=alpha),
             lambda x, y, z: _ref_addmm(x, y, z, beta, alpha), [i, a, b])


def test_addmm_beta_zero_ignores_nan_input_and_gives_it_zero_gradient():
    i = mg.tensor(np.full((2, 3), np.nan), requires_grad=True)
    a, b = normal(0, (2, 4)), normal(1, (4, 3))
    out = mg.addmm(i, mg.tensor(a), mg.tensor(b), beta=0, alpha=2)
    np.testing.assert_allclose(out.detach().numpy(), 2 * a @ b, rtol=1e-12)
    out.sum().backward()
    np.testing.assert_array_equal(i.grad.numpy(), np.zeros((2, 3)))


def test_addmm_integer_tensors_and_methods():
    a, b = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4) - 5
    i = np.arange(4)
    out = mg.tensor(i).addmm(mg.tensor(a), mg.tensor(b), beta=2, alpha=3)
    assert out.dtype == mg.int64
    np.testing.assert_array_equal(out.numpy(), 2 * i + 3 * (a @ b))
    with pytest.raises(TypeError, match="integer"):
        mg.addmm(mg.tensor(i), mg.tensor(a), mg.tensor(b), alpha=0.5)


@given(n=st.integers(0, 4), m=st.integers(1, 4), seed=seeds)
@example(n=0, m=3, seed=0)
def test_mv(n, m, seed):
    check_op(lambda a, v: a.mv(v), lambda a, v: a @ v, [normal(seed, (n, m)), normal(seed, (m,))])


# =================================================================== addcmul, addcdiv
@given(shapes3=st.lists(shapes(max_dims=3), min_size=3, max_size=3).filter(
    lambda s: _broadcasts(*s)), value=st.sampled_from([1, 0.5, -2.0, 0]), seed=seeds)
@example(shapes3=[(3, 1), (1, 4), (4,)], value=-2.0, seed=0)
@example(shapes3=[(), (2, 3), ()], value=0.5, seed=1)
def test_addcmul_addcdiv(shapes3, value, seed):
    i, a = normal(seed, shapes3[0]), normal(seed + 1, shapes3[1])
    b = normal(seed + 2, shapes3[2])
    b = np.where(np.abs(b) < 0.3, 0.3 + np.abs(b), b)   # keep 1/b tame for the differences
    check_op(lambda x, y, z: mg.addcmul(x, y, z, value=value),
             lambda x, y, z: x + value * y * z, [i, a, b])
    check_op(lambda x, y, z: x.addcdiv(y, z, value=value),
             lambda x, y, z: x + value * y / z, [i, a, b])


def _broadcasts(*ss):
    try:
        np.broadcast_shapes(*ss)
        return True
    except ValueError:
        return False


def test_addcmul_promotes_and_addcdiv_refuses_integer_division():
    out = mg.addcmul(mg.tensor([1, 2]), mg.tensor([1, 2]), mg.tensor([1.5, 2.0]), value=2)
    assert out.dtype == mg.float32
    np.testing.assert_allclose(out.numpy(), [4.0, 10.0])
    with pytest.raises(RuntimeError, match="integer division"):
        mg.addcdiv(mg.tensor([1.0, 2.0]), mg.tensor([1, 2]), mg.tensor([1, 2]))


# =================================================================== tensordot
def _ref_tensordot(a, b, da, db):
    """Σ over the paired dims, by an explicit einsum subscript (independent of the GEMM path)."""
    letters = "abcdefghijklmnop"
    sa = list(letters[:a.ndim])
    sb = list(letters[a.ndim:a.ndim + b.ndim])
    for i, j in zip(da, db):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in da] + [c for k, c in enumerate(sb)
                                                          if k not in db]
    return np.einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


@st.composite
def tensordot_case(draw):
    a_shape = draw(shapes(min_dims=0, max_dims=3))
    k = draw(st.integers(0, len(a_shape)))
    da = draw(st.permutations(range(len(a_shape))))[:k]
    extra = draw(shapes(min_dims=0, max_dims=2))
    b_nd = k + len(extra)
    db = draw(st.permutations(range(b_nd)))[:k]
    b_shape = [0] * b_nd
    for i, j in zip(da, db):
        b_shape[j] = a_shape[i]
    free = iter(extra)
    b_shape = tuple(s if j in db else next(free) for j, s in enumerate(b_shape))
    as_int = draw(st.booleans()) and list(da) == list(range(len(a_shape) - k, len(a_shape))) \
        and list(db) == list(range(k))
    return a_shape, b_shape, list(da), list(db), as_int


@given(case=tensordot_case(), seed=seeds)
@example(case=((2, 3, 4), (4, 3, 5), [1, 2], [1, 0], False), seed=0)
@example(case=((3,), (2,), [], [], True), seed=1)           # dims=0: the outer product
@example(case=((3, 1), (1, 3), [1], [0], True), seed=2)
def test_tensordot(case, seed):
    a_shape, b_shape, da, db, as_int = case
    dims = len(da) if as_int else (da, db)
    check_op(lambda a, b: mg.tensordot(a, b, dims=dims),
             lambda a, b: _ref_tensordot(a, b, da, db),
             [normal(seed, a_shape), normal(seed + 1, b_shape)])


# =================================================================== trace, diag, diag_embed
@given(shape=shapes(min_dims=2, max_dims=2, min_side=0), seed=seeds)
@example(shape=(3, 5), seed=0)
@example(shape=(0, 3), seed=0)
def test_trace(shape, seed):
    check_op(lambda x: x.trace(), lambda x: np.asarray(sum(x[i, i] for i in range(min(shape)))),
             [normal(seed, shape)])


def test_trace_of_integers_is_int64():
    out = mg.tensor(np.arange(6, dtype=np.int32).reshape(2, 3)).trace()
    assert out.dtype == mg.int64 and out.item() == 0 + 4


def _ref_diag_embed(x, offset, d1, d2):
    n = x.shape[-1]
    m = n + abs(offset)
    out = np.zeros(x.shape[:-1] + (m, m))
    for i in range(n):
        out[..., i + max(-offset, 0), i + max(offset, 0)] = x[..., i]
    return np.moveaxis(out, (-2, -1), (d1, d2))


@given(shape=shapes(min_dims=1, max_dims=3), offset=st.integers(-2, 2), data=st.data(),
       seed=seeds)
@example(shape=(2, 3), offset=1, data=None, seed=0)
def test_diag_embed(shape, offset, data, seed):
    nd = len(shape) + 1
    if data is None:
        d1, d2 = -1, -2                     # dims in reverse order: the offset follows dim1
    else:
        d1, d2 = data.draw(st.lists(st.integers(-nd, nd - 1), min_size=2, max_size=2).filter(
            lambda d: d[0] % nd != d[1] % nd))
    check_op(lambda x: x.diag_embed(offset, d1, d2),
             lambda x: _ref_diag_embed(x, offset, d1 % nd, d2 % nd), [normal(seed, shape)])


@given(n=st.integers(1, 4), m=st.integers(1, 4), k=st.integers(-4, 4), seed=seeds)
@example(n=3, m=5, k=-1, seed=0)
def test_diag(n, m, k, seed):
    def ref_vec(v):
        out = np.zeros((n + abs(k), n + abs(k)))
        for i in range(n):
            out[i + max(-k, 0), i + max(k, 0)] = v[i]
        return out

    def ref_mat(a):
        return np.asarray([a[i, i + k] for i in range(n) if 0 <= i + k < m])

    check_op(lambda v: mg.diag(v, k), ref_vec, [normal(seed, (n,))])
    check_op(lambda a: a.diag(k), lambda a: ref_mat(a).reshape(-1), [normal(seed, (n, m))])


# =================================================================== repeat_interleave
@given(shape=shapes(min_dims=0, max_dims=3), r=st.integers(0, 3), data=st.data(), seed=seeds)
@example(shape=(), r=3, data=None, seed=0)
def test_repeat_interleave_int(shape, r, data, seed):
    dim = None if data is None or not shape else data.draw(
        st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    check_op(lambda x: x.repeat_interleave(r, dim), lambda x: np.repeat(x, r, axis=dim),
             [normal(seed, shape)])


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds,
       give_size=st.booleans())
@example(shape=(3, 2), data=None, seed=0, give_size=False)
def test_repeat_interleave_tensor(shape, data, seed, give_size):
    if data is None:
        dim, reps = 0, np.array([2, 0, 3])                   # a zero count in the middle
    else:
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        reps = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=shape[dim],
                                             max_size=shape[dim])))
    size = int(reps.sum()) if give_size else None
    check_op(lambda x: mg.repeat_interleave(x, mg.tensor(reps), dim=dim, output_size=size),
             lambda x: np.repeat(x, reps, axis=dim), [normal(seed, shape)])


def test_repeat_interleave_counts_alone_and_one_count_for_all():
    np.testing.assert_array_equal(mg.repeat_interleave(mg.tensor([1, 0, 2])).numpy(),
                                  [0, 2, 2])
    x = normal(0, (3,))
    np.testing.assert_array_equal(mg.tensor(x).repeat_interleave(mg.tensor([2])).numpy(),
                                  np.repeat(x, 2))


# =================================================================== index_add, index_copy
def _ref_index_add(x, idx, src, dim, alpha):
    out = x.copy()
    xs, ss = np.moveaxis(out, dim, 0), np.moveaxis(src, dim, 0)
    for k, i in enumerate(idx):
        xs[i] += alpha * ss[k]
    return out


@st.composite
def index_case(draw, unique=False):
    shape = draw(shapes(min_dims=1, max_dims=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    if unique:
        idx = draw(st.permutations(range(n)))[:draw(st.integers(0, n))]
    else:
        idx = draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=5))
    src_shape = list(shape)
    src_shape[dim] = len(idx)
    return shape, dim, list(idx), tuple(src_shape)


@given(case=index_case(), alpha=st.sampled_from([1, -0.5, 2.0]), seed=seeds)
@example(case=((3, 2), 0, [1, 1, 1, 0], (4, 2)), alpha=2.0, seed=0)      # repeated indices
@example(case=((2, 5, 3), -2, [4, 0, 4], (2, 3, 3)), alpha=1, seed=1)
def test_index_add(case, alpha, seed):
    shape, dim, idx, src_shape = case
    check_op(lambda x, s: x.index_add(dim, mg.tensor(_ints(idx)), s, alpha=alpha),
             lambda x, s: _ref_index_add(x, idx, s, dim % len(shape), alpha),
             [normal(seed, shape), normal(seed + 1, src_shape)])


@given(case=index_case(unique=True), seed=seeds)
@example(case=((4, 3), 0, [2, 0], (2, 3)), seed=0)
def test_index_copy(case, seed):
    shape, dim, idx, src_shape = case

    def ref(x, s):
        out = x.copy()
        xs, ss = np.moveaxis(out, dim, 0), np.moveaxis(s, dim, 0)
        for k, i in enumerate(idx):
            xs[i] = ss[k]
        return out

    check_op(lambda x, s: mg.index_copy(x, dim, mg.tensor(_ints(idx)), s), ref,
             [normal(seed, shape), normal(seed + 1, src_shape)])


def test_index_add_and_copy_on_0d_input():
    x = mg.tensor(1.0, requires_grad=True)
    s = mg.tensor(2.0, requires_grad=True)
    out = x.index_add(0, mg.tensor([0]), s, alpha=3)
    assert out.shape == () and out.item() == 7.0
    out.backward()
    assert x.grad.item() == 1.0 and s.grad.item() == 3.0
    assert mg.index_copy(mg.tensor(1.0), 0, mg.tensor([0]), mg.tensor(5.0)).item() == 5.0


# =================================================================== scatter_reduce
def _ref_scatter_reduce(x, dim, idx, src, reduce, include_self):
    """A loop over every index position, as the docs define the op."""
    out = x.copy()
    groups = {}
    for pos in np.ndindex(*idx.shape):
        tgt = list(pos)
        tgt[dim] = idx[pos]
        groups.setdefault(tuple(tgt), []).append(src[pos])
    for tgt, vals in groups.items():
        vals = ([x[tgt]] if include_self else []) + vals
        if reduce == "sum":
            out[tgt] = sum(vals)
        elif reduce == "prod":
            out[tgt] = np.prod(vals)
        elif reduce == "mean":
            out[tgt] = sum(vals) / len(vals)
            if x.dtype.kind in "iu":
                out[tgt] = sum(vals) // len(vals)
        elif reduce == "amax":
            out[tgt] = max(vals)
        else:
            out[tgt] = min(vals)
    return out


def _ref_scatter_reduce_tie_grads(x, dim, idx, src, reduce, include_self, g):
    """amax/amin gradients: each target's g split evenly among the elements equal to its
    result: src elements scattered there and x itself. (PyTorch counts x when it equals the
    result even with include_self=False, and then gives x no gradient: src gets 1/(k+1).)"""
    out = _ref_scatter_reduce(x, dim, idx, src, reduce, include_self)
    ties = (x == out).astype(float)
    for pos in np.ndindex(*idx.shape):
        tgt = list(pos)
        tgt[dim] = idx[pos]
        ties[tuple(tgt)] += src[pos] == out[tuple(tgt)]
    gx = np.where(x == out, g / ties, 0.0)
    gs = np.zeros(src.shape)
    for pos in np.ndindex(*idx.shape):
        tgt = list(pos)
        tgt[dim] = idx[pos]
        tgt = tuple(tgt)
        if not include_self:
            gx[tgt] = 0.0
        if src[pos] == out[tgt]:
            gs[pos] = g[tgt] / ties[tgt]
    return gx, gs


@st.composite
def scatter_case(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    dim = draw(st.integers(0, len(shape) - 1))
    idx_shape = tuple(draw(st.integers(0, 4)) if i == dim else draw(st.integers(1, s))
                      for i, s in enumerate(shape))
    src_shape = tuple(s + draw(st.integers(0, 1)) for s in idx_shape)   # src may be larger
    idx = draw(st.lists(st.integers(0, shape[dim] - 1), min_size=int(np.prod(idx_shape)),
                        max_size=int(np.prod(idx_shape))))
    return shape, dim, np.asarray(idx, dtype=np.int64).reshape(idx_shape), src_shape


REDUCES = ["sum", "prod", "mean", "amax", "amin"]
PINNED = (((3,), 0, np.array([0, 0, 2, 0]), (4,)),              # one target hit three times
          ((2, 3), 1, np.array([[1, 1], [0, 1]]), (3, 2)),     # src larger than index
          ((2, 2), 0, np.zeros((0, 2), dtype=np.int64), (0, 2)))  # nothing scattered


@given(case=scatter_case(), reduce=st.sampled_from(REDUCES), include_self=st.booleans(),
       seed=seeds)
@example(case=PINNED[0], reduce="prod", include_self=True, seed=0)
@example(case=PINNED[1], reduce="amax", include_self=False, seed=1)
@example(case=PINNED[0], reduce="mean", include_self=False, seed=2)
@example(case=PINNED[2], reduce="amin", include_self=True, seed=3)
def test_scatter_reduce_values_and_gradients(case, reduce, include_self, seed):
    """Distinct values (max/min are differentiable there); sum, mean and prod are multilinear,
    so central differences are exact for them even with zeros and ties."""
    shape, dim, idx, src_shape = case
    vals = distinct(seed, (int(np.prod(shape)) + int(np.prod(src_shape)),))
    x, src = vals[:int(np.prod(shape))].reshape(shape), vals[int(np.prod(shape)):].reshape(
        src_shape)
    check_op(lambda a, s: a.scatter_reduce(dim, mg.tensor(idx), s, reduce,
                                           include_self=include_self),
             lambda a, s: _ref_scatter_reduce(a, dim, idx, s, reduce, include_self), [x, src],
             eps32=1e-4 if reduce == "prod" else 2e-5)


@given(case=scatter_case(), include_self=st.booleans(), seed=seeds)
@example(case=PINNED[0], include_self=True, seed=0)
@example(case=PINNED[0], include_self=False, seed=5)
def test_scatter_reduce_prod_gradient_with_zeros(case, include_self, seed):
    """Values drawn from {−1, 0, 1, 2}: targets with one zero, with two, with x zero."""
    shape, dim, idx, src_shape = case
    x = small_ints(seed, shape, -1, 3)
    src = small_ints(seed + 1, src_shape, -1, 3)
    check_op(lambda a, s: a.scatter_reduce(dim, mg.tensor(idx), s, "prod",
                                           include_self=include_self),
             lambda a, s: _ref_scatter_reduce(a, dim, idx, s, "prod", include_self), [x, src])


def test_scatter_reduce_prod_single_zero_gets_product_of_the_rest():
    x = mg.tensor([2.0, 5.0], requires_grad=True)
    s = mg.tensor([0.0, 3.0, 4.0, 0.0, 0.0], requires_grad=True)
    out = x.scatter_reduce(0, mg.tensor([0, 0, 0, 1, 1]), s, "prod")
    out.backward(mg.tensor([1.0, 1.0]))
    np.testing.assert_array_equal(out.detach().numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])
    # target 0: one zero, whose gradient is 2·3·4; target 1: two zeros, all gradients 0
    np.testing.assert_array_equal(s.grad.numpy(), [24.0, 0.0, 0.0, 0.0, 0.0])
    # a zero input: its gradient is the product of what was scattered onto it (not 0/0)
    x = mg.tensor([0.0, 0.0, 1.0], requires_grad=True)
    s = mg.tensor([3.0, 4.0, 0.0], requires_grad=True)
    out = x.scatter_reduce(0, mg.tensor([0, 0, 1]), s, "prod")
    out.backward(mg.tensor([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [12.0, 0.0, 1.0])
    np.testing.assert_array_equal(s.grad.numpy(), [0.0, 0.0, 0.0])


@given(case=scatter_case(), reduce=st.sampled_from(["amax", "amin"]),
       include_self=st.booleans(), seed=seeds)
@example(case=PINNED[0], reduce="amax", include_self=True, seed=0)
@example(case=PINNED[0], reduce="amin", include_self=False, seed=0)
def test_scatter_reduce_max_min_split_gradient_among_ties(case, reduce, include_self, seed):
    shape, dim, idx, src_shape = case
    x = small_ints(seed, shape, 0, 2)            # values in {0, 1}: ties everywhere
    src = small_ints(seed + 1, src_shape, 0, 2)
    g = normal(seed + 2, shape)
    xt, st_ = mg.tensor(x, requires_grad=True), mg.tensor(src, requires_grad=True)
    out = xt.scatter_reduce(dim, mg.tensor(idx), st_, reduce, include_self=include_self)
    np.testing.assert_array_equal(out.detach().numpy(),
                                  _ref_scatter_reduce(x, dim, idx, src, reduce, include_self))
    out.backward(mg.tensor(g))
    gx, gs = _ref_scatter_reduce_tie_grads(x, dim, idx, src, reduce, include_self, g)
    np.testing.assert_allclose(xt.grad.numpy(), gx, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(st_.grad.numpy(), gs, rtol=1e-12, atol=1e-15)


def test_scatter_reduce_integer_mean_rounds_down_and_0d_input():
    x = mg.tensor([5, 1])
    out = x.scatter_reduce(0, mg.tensor([0, 0]), mg.tensor([-3, 0]), "mean", include_self=False)
    np.testing.assert_array_equal(out.numpy(), [-2, 1])                 # floor(−3 / 2)
    out = x.scatter_reduce(0, mg.tensor([0, 0]), mg.tensor([-3, 0]), "amax", include_self=False)
    np.testing.assert_array_equal(out.numpy(), [0, 1])
    out = mg.tensor(2.0).scatter_reduce(0, mg.tensor(0), mg.tensor(3.0), "prod")
    assert out.shape == () and out.item() == 6.0


@given(m=st.integers(0, 40), size=st.integers(1, 6), reduce=st.sampled_from(
    ["prod", "amax", "amin"]), seed=seeds)
@example(m=33, size=2, reduce="prod", seed=0)     # long runs: several scan rounds per segment
def test_segment_scan_matches_ufunc_at(m, size, reduce, seed):
    """The CUDA path's fold (sorted segmented scan) against numpy's ufunc.at."""
    from minigen.ops.composite import _segment_reduce
    rng = np.random.default_rng(seed)
    out = rng.uniform(0.5, 1.5, (size, 2))
    idx = rng.integers(0, size, (m, 2))
    vals = rng.uniform(0.5, 1.5, (m, 2))
    full = (idx, np.arange(2)[None, :])
    want = out.copy()
    getattr(np, {"prod": "multiply", "amax": "maximum", "amin": "minimum"}[reduce]).at(
        want, full, vals)
    np.testing.assert_allclose(_segment_reduce(np, out.copy(), full, vals, reduce), want,
                               rtol=1e-13)


# =================================================================== meshgrid, broadcasting
@given(sizes=st.lists(st.integers(0, 4), min_size=1, max_size=3), scalar_first=st.booleans(),
       indexing=st.sampled_from(["ij", "xy"]), seed=seeds)
@example(sizes=[2, 3, 4], scalar_first=False, indexing="xy", seed=0)
def test_meshgrid(sizes, scalar_first, indexing, seed):
    arrays = [normal(seed + k, (s,)) for k, s in enumerate(sizes)]
    if scalar_first:
        arrays[0] = normal(seed, ())
    check_op(lambda *ts: mg.meshgrid(*ts, indexing=indexing),
             lambda *xs: np.meshgrid(*[np.atleast_1d(x) for x in xs], indexing=indexing),
             arrays)


def test_meshgrid_default_is_ij_and_takes_a_list():
    a, b = mg.arange(2.0), mg.arange(3.0)
    xs, ys = mg.meshgrid([a, b])
    assert xs.shape == (2, 3)
    np.testing.assert_array_equal(ys.numpy(), np.tile(np.arange(3.0), (2, 1)))


@given(shapes3=st.lists(shapes(max_dims=3), min_size=1, max_size=3).filter(
    lambda s: _broadcasts(*s)), seed=seeds)
@example(shapes3=[(3, 1), (4,), ()], seed=0)
def test_broadcast_tensors(shapes3, seed):
    arrays = [normal(seed + k, s) for k, s in enumerate(shapes3)]
    check_op(lambda *ts: mg.broadcast_tensors(*ts), lambda *xs: np.broadcast_arrays(*xs), arrays)
    assert mg.broadcast_shapes(*shapes3) == np.broadcast_shapes(*shapes3)


# =================================================================== the stacks
@given(nd=st.integers(0, 3), k=st.integers(1, 3), seed=seeds)
@example(nd=0, k=2, seed=0)
@example(nd=1, k=3, seed=1)
def test_stacks(nd, k, seed):
    rng = np.random.default_rng(seed)
    base = tuple(rng.integers(1, 4, nd))
    # the input dim each stack concatenates along, where the inputs can differ in size there
    varying = {mg.hstack: {1: 0, 2: 1, 3: 1}, mg.vstack: {2: 0, 3: 0}, mg.dstack: {3: 2},
               mg.column_stack: {2: 1, 3: 1}}
    for fn, ref in ((mg.hstack, np.hstack), (mg.vstack, np.vstack), (mg.dstack, np.dstack),
                    (mg.column_stack, np.column_stack)):
        shp = []
        for j in range(k):
            s = list(base)
            if nd in varying[fn]:
                s[varying[fn][nd]] = j + 1
            shp.append(tuple(s))
        arrays = [normal(seed + j, s) for j, s in enumerate(shp)]
        check_op(lambda *ts: fn(list(ts)), lambda *xs: ref(list(xs)), arrays)


def test_atleast():
    x = mg.tensor(3.0)
    assert mg.atleast_1d(x).shape == (1,)
    assert mg.atleast_2d(mg.arange(3.0)).shape == (1, 3)
    assert mg.atleast_3d(mg.arange(3.0)).shape == (1, 3, 1)
    assert [t.shape for t in mg.atleast_3d(x, mg.zeros(2, 3))] == [(1, 1, 1), (2, 3, 1)]


# =================================================================== triangle indices
@given(row=st.integers(0, 5), col=st.integers(0, 5), offset=st.integers(-6, 6))
@example(row=3, col=4, offset=1)
@example(row=4, col=3, offset=-1)
def test_tril_triu_indices(row, col, offset):
    low = [(r, c) for r in range(row) for c in range(col) if c - r <= offset]
    up = [(r, c) for r in range(row) for c in range(col) if c - r >= offset]
    for got, want in ((mg.tril_indices(row, col, offset), low),
                      (mg.triu_indices(row, col, offset), up)):
        assert got.dtype == mg.int64 and got.shape == (2, len(want))
        want = np.asarray(want, dtype=np.int64).reshape(-1, 2).T
        np.testing.assert_array_equal(got.numpy(), want)


# =================================================================== new_*
def test_new_methods_take_dtype_and_device_from_self():
    x = mg.zeros(2, dtype=mg.float64)
    for t, shape in ((x.new_zeros(2, 3), (2, 3)), (x.new_ones((4,)), (4,)),
                     (x.new_empty(1, 2), (1, 2)), (x.new_full((2,), 3), (2,)),
                     (x.new_tensor([1, 2]), (2,))):
        assert t.dtype == mg.float64 and t.shape == shape and t.device == "cpu"
    np.testing.assert_array_equal(x.new_ones(3).numpy(), np.ones(3))
    np.testing.assert_array_equal(x.new_full((2,), 3).numpy(), [3.0, 3.0])
    assert x.new_zeros(2, dtype=mg.int32).dtype == mg.int32
    y = mg.tensor([1.0, 2.0], requires_grad=True)
    c = x.new_tensor(y)        # a detached copy
    assert not c.requires_grad and c.dtype == mg.float64
    c.data[0] = 9
    assert y.data[0] == 1.0
    assert x.new_zeros(2, requires_grad=True).requires_grad


# =================================================================== errors
ERRORS = [
    (lambda: mg.addmm(mg.zeros(3, 1, 2), mg.zeros(2, 3), mg.zeros(3, 2)), RuntimeError,
     "does not broadcast"),
    (lambda: mg.addmm(mg.zeros(2, 2), mg.zeros(2, 3), mg.zeros(2, 2)), RuntimeError,
     "cannot be multiplied"),
    (lambda: mg.addmm(mg.zeros(2, 2), mg.zeros(2, 3), mg.zeros(3, 2, dtype=mg.float64)),
     TypeError, "same dtype"),
    (lambda: mg.baddbmm(mg.zeros(2, 2), mg.zeros(2, 2, 3), mg.zeros(3, 3, 2)), RuntimeError,
     "cannot be multiplied"),
    (lambda: mg.mv(mg.zeros(2, 3), mg.zeros(2)), RuntimeError, "mv"),
    (lambda: mg.addcmul(mg.zeros(2), mg.zeros(3), mg.zeros(2)), RuntimeError, "broadcast"),
    (lambda: mg.tensordot(mg.zeros(2, 3), mg.zeros(2, 3), dims=1), RuntimeError, "does not match"),
    (lambda: mg.tensordot(mg.zeros(2, 3), mg.zeros(3), dims=3), RuntimeError, "does not fit"),
    (lambda: mg.tensordot(mg.zeros(2, 3), mg.zeros(3), dims=([1, 0], [0])), RuntimeError,
     "paired"),
    (lambda: mg.trace(mg.zeros(3)), RuntimeError, "matrix"),
    (lambda: mg.diag(mg.zeros(2, 2, 2)), RuntimeError, "1-D or 2-D"),
    (lambda: mg.diag_embed(mg.zeros(2), 0, 0, -2), RuntimeError, "same dimension"),
    (lambda: mg.repeat_interleave(mg.zeros(3), -1), RuntimeError, "negative"),
    (lambda: mg.repeat_interleave(mg.zeros(3), mg.tensor([1, -1, 2])), RuntimeError, "negative"),
    (lambda: mg.repeat_interleave(mg.zeros(3), mg.tensor([1, 2])), RuntimeError, "2 repeats"),
    (lambda: mg.repeat_interleave(mg.zeros(3), mg.tensor([1, 1, 1]), output_size=4),
     RuntimeError, "output_size"),
    (lambda: mg.repeat_interleave(mg.zeros(3), mg.tensor([1.0, 1.0, 1.0])), TypeError,
     "integer"),
    (lambda: mg.zeros(3, 2).index_add(0, mg.tensor([0, 3]), mg.ones(2, 2)), IndexError,
     "out of range"),
    (lambda: mg.zeros(3, 2).index_add(0, mg.tensor([0, 1]), mg.ones(2, 3)), RuntimeError,
     "source of shape"),
    (lambda: mg.zeros(3, 2).index_add(0, mg.tensor([[0]]), mg.ones(1, 2)), TypeError, "1-D"),
    (lambda: mg.zeros(3, 2).index_copy(0, mg.tensor([0]), mg.ones(1, 2, dtype=mg.float64)),
     TypeError, "same dtype"),
    (lambda: mg.zeros(3).scatter_reduce(0, mg.tensor([0]), mg.ones(1), "max"), RuntimeError,
     "reduce must be"),
    (lambda: mg.zeros(3).scatter_reduce(0, mg.tensor([3]), mg.ones(1), "sum"), IndexError,
     "out of bounds"),
    (lambda: mg.zeros(3).scatter_reduce(0, mg.tensor([-1]), mg.ones(1), "sum"), IndexError,
     "out of range"),
    (lambda: mg.zeros(3).scatter_reduce(0, mg.tensor([0, 1]), mg.ones(1), "sum"), RuntimeError,
     "larger than src"),
    (lambda: mg.meshgrid(mg.zeros(2, 2)), RuntimeError, "1-D"),
    (lambda: mg.meshgrid(mg.zeros(2), mg.zeros(2, dtype=mg.int64)), TypeError, "same dtype"),
    (lambda: mg.meshgrid(mg.zeros(2), indexing="yx"), ValueError, "indexing"),
    (lambda: mg.broadcast_tensors(mg.zeros(2), mg.zeros(3)), RuntimeError, "broadcast"),
    (lambda: mg.vstack([]), RuntimeError, "non-empty"),
    (lambda: mg.tril_indices(-1, 2), RuntimeError, "non-negative"),
    (lambda: mg.triu_indices(2, 2, dtype=mg.float32), TypeError, "integer dtype"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_errors_leave_inputs_unchanged():
    x = mg.ones(3, 2)
    before = x.numpy().copy()
    with pytest.raises(IndexError):
        x.index_add(0, mg.tensor([0, 5]), mg.ones(2, 2))
    with pytest.raises(IndexError):
        x.scatter_reduce(0, mg.tensor([[0, 4]]), mg.ones(1, 2), "amax")
    np.testing.assert_array_equal(x.numpy(), before)


# =================================================================== CUDA path, no transfers
@pytest.fixture
def fake_cuda(monkeypatch):
    counter = fake_cupy.install(monkeypatch)
    with mg.dispatch.use("reference"):
        yield counter


def _composite_calls(dev):
    """(name, fn(*leaves) → output, arrays): every op, with the integer args built inside."""
    rng = np.random.default_rng(0)
    x23, x34 = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    idx = np.array([[0, 1, 0], [0, 0, 1]])
    tensor = lambda a: mg.tensor(a, device=dev)     # noqa: E731
    calls = [
        ("addmm", lambda i, a, b: mg.addmm(i, a, b, beta=0.5, alpha=2),
         [rng.standard_normal(4), x23, x34]),
        ("baddbmm", lambda i, a, b: mg.baddbmm(i, a, b, beta=0),
         [rng.standard_normal((1, 2, 4)), x23[None], x34[None]]),
        ("addcdiv", lambda i, a, b: mg.addcdiv(i, a, b, value=0.5), [x23, x23[0], x23 + 3]),
        ("tensordot", lambda a, b: mg.tensordot(a, b, dims=([1], [0])), [x23, x34]),
        ("trace", lambda a: a.trace(), [x34]),
        ("diag_embed", lambda a: a.diag_embed(1, 0, 2), [x23]),
        ("repeat_interleave", lambda a: a.repeat_interleave(
            tensor(np.array([1, 0, 2])), dim=1, output_size=3), [x23]),
        ("index_add", lambda a, s: a.index_add(1, tensor(np.array([2, 2])), s, alpha=2),
         [x23, x23[:, :2]]),
        ("index_copy", lambda a, s: a.index_copy(1, tensor(np.array([2, 0])), s),
         [x23, x23[:, :2]]),
        ("meshgrid", lambda a, b: mg.meshgrid(a, b, indexing="xy"), [x23[0], x34[0]]),
        ("vstack", lambda a, b: mg.vstack([a, b]), [x23, x23[0]]),
    ]
    for red in ("sum", "prod", "mean", "amax", "amin"):
        for inc in (True, False):
            calls.append((f"scatter_reduce {red} {inc}",
                          lambda a, s, red=red, inc=inc: a.scatter_reduce(
                              0, tensor(idx), s, red, include_self=inc),
                          [np.array([[1.0, 0.0, 2.0], [2.0, -1.0, 1.0]]),
                           np.array([[0.0, 2.0, 2.0], [3.0, 2.0, 0.0]])]))
    return calls


def _run(fn, arrays, dev, grads):
    leaves = [mg.tensor(a, device=dev, requires_grad=True) for a in arrays]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    mg.autograd.backward(list(outs), [mg.tensor(g, device=dev) for g in grads])
    return outs, leaves


def test_cuda_path_matches_cpu_without_transfers(fake_cuda):
    cpu = {name: (fn, arrays) for name, fn, arrays in _composite_calls("cpu")}
    for name, fn, arrays in _composite_calls("cuda"):
        cfn, carrays = cpu[name]
        outs = cfn(*[mg.tensor(a) for a in carrays])
        outs = outs if isinstance(outs, tuple) else (outs,)
        grads = [np.random.default_rng(1).standard_normal(o.shape) for o in outs]
        ref_outs, ref_leaves = _run(cfn, carrays, "cpu", grads)
        # the device inputs are made (uploads) before counting starts
        leaves = [mg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
        gs = [mg.tensor(g, device="cuda") for g in grads]
        fake_cuda.reset()
        dev_outs = fn(*leaves)
        dev_outs = dev_outs if isinstance(dev_outs, tuple) else (dev_outs,)
        mg.autograd.backward(list(dev_outs), gs)
        syncs = [k for k, _ in fake_cuda.syncs]
        assert syncs == [], f"{name}: host transfers {fake_cuda.syncs}"
        for o, r in zip(dev_outs, ref_outs):
            np.testing.assert_allclose(o.detach().data.get(), r.detach().numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=name)
        for lv, r in zip(leaves, ref_leaves):
            np.testing.assert_allclose(lv.grad.data.get(), r.grad.numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=name)


def test_cuda_repeat_interleave_without_output_size_reads_the_size_once(fake_cuda):
    x = mg.ones(3, device="cuda")
    reps = mg.tensor([1, 0, 2], device="cuda")
    fake_cuda.reset()
    out = mg.repeat_interleave(x, reps)
    assert len(fake_cuda.syncs) == 1 and out.shape == (3,)


# =================================================================== PyTorch as an oracle
def _torch_compare(torch, mg_fn, t_fn, arrays, grad=True):
    rng = np.random.default_rng(7)
    floats = [a.dtype.kind == "f" for a in arrays]
    mts = [mg.tensor(a, requires_grad=f and grad) for a, f in zip(arrays, floats)]
    tts = [torch.tensor(a, requires_grad=f and grad) for a, f in zip(arrays, floats)]
    mo, to = mg_fn(*mts), t_fn(*tts)
    mo = mo if isinstance(mo, tuple) else (mo,)
    to = to if isinstance(to, tuple) else (to,)
    for m, t in zip(mo, to):
        assert tuple(m.shape) == tuple(t.shape)
        np.testing.assert_allclose(m.detach().numpy(), t.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)
    if grad:
        gs = [rng.standard_normal(tuple(t.shape)) for t in to]
        mg.autograd.backward(list(mo), [mg.tensor(g) for g in gs])
        torch.autograd.backward(list(to), [torch.tensor(g) for g in gs])
        for m, t, f in zip(mts, tts, floats):
            if f:
                want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
                got = np.zeros(m.shape) if m.grad is None else m.grad.numpy()
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@given(case=scatter_case(), reduce=st.sampled_from(REDUCES), include_self=st.booleans(),
       seed=seeds)
@example(case=PINNED[0], reduce="amax", include_self=False, seed=0)
@example(case=PINNED[0], reduce="prod", include_self=True, seed=3)
def test_scatter_reduce_against_torch(case, reduce, include_self, seed):
    torch = pytest.importorskip("torch")
    shape, dim, idx, src_shape = case
    src_shape = idx.shape        # PyTorch's backward refuses a src larger than the index
    x, src = small_ints(seed, shape, -1, 3), small_ints(seed + 1, src_shape, -1, 3)
    _torch_compare(torch,
                   lambda a, s: a.scatter_reduce(dim, mg.tensor(idx), s, reduce,
                                                 include_self=include_self),
                   lambda a, s: a.scatter_reduce(dim, torch.tensor(idx), s, reduce,
                                                 include_self=include_self), [x, src])


def test_other_ops_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x23, x34 = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    cases = [
        (lambda i, a, b: mg.addmm(i, a, b, beta=-1.5, alpha=0.5),
         lambda i, a, b: torch.addmm(i, a, b, beta=-1.5, alpha=0.5), [x34[0], x23, x34]),
        (lambda i, a, b: mg.baddbmm(i, a, b, alpha=2),
         lambda i, a, b: torch.baddbmm(i, a, b, alpha=2), [x23[:, None, :1], x23[:, None],
                                                          np.stack([x34, x34 + 1])[:, :, :1]]),
        (lambda i, a, b: mg.addcmul(i, a, b, value=3),
         lambda i, a, b: torch.addcmul(i, a, b, value=3), [x23, x23[:1], x23[0]]),
        (lambda a, b: mg.tensordot(a, b, dims=([0, 1], [1, 0])),
         lambda a, b: torch.tensordot(a, b, dims=([0, 1], [1, 0])), [x23, x23.T.copy()]),
        (lambda a: mg.diag_embed(a, -1, 2, 0), lambda a: torch.diag_embed(a, -1, 2, 0), [x23]),
        (lambda a: mg.diag(a, 2), lambda a: torch.diag(a, 2), [x34]),
        (lambda a: a.trace(), lambda a: a.trace(), [x34]),
        (lambda a: a.repeat_interleave(mg.tensor([2, 0, 1]), dim=-1),
         lambda a: a.repeat_interleave(torch.tensor([2, 0, 1]), dim=-1), [x23]),
        (lambda a, s: a.index_add(0, mg.tensor([2, 0, 2]), s, alpha=-2),
         lambda a, s: a.index_add(0, torch.tensor([2, 0, 2]), s, alpha=-2), [x34, x34]),
        (lambda a, s: a.index_copy(1, mg.tensor([3, 0]), s),
         lambda a, s: a.index_copy(1, torch.tensor([3, 0]), s), [x34, x34[:, :2]]),
        (lambda a, b, c: mg.meshgrid(a, b, c, indexing="xy"),
         lambda a, b, c: torch.meshgrid(a, b, c, indexing="xy"), [x23[0], x34[0], x23[1, :2]]),
        (lambda a, b: mg.broadcast_tensors(a, b), lambda a, b: torch.broadcast_tensors(a, b),
         [x23[:, :1], x34[0, :3]]),
        (lambda a, b: mg.hstack([a, b]), lambda a, b: torch.hstack([a, b]), [x23, x23]),
        (lambda a, b: mg.column_stack([a, b]), lambda a, b: torch.column_stack([a, b]),
         [x23[0], x23.T.copy()]),
        (lambda a, b: mg.dstack([a, b]), lambda a, b: torch.dstack([a, b]), [x23, x23]),
    ]
    for mfn, tfn, arrays in cases:
        _torch_compare(torch, mfn, tfn, arrays)
    for r, c, o in ((3, 4, 1), (4, 3, -2), (0, 3, 0), (5, 5, 7)):
        np.testing.assert_array_equal(mg.tril_indices(r, c, o).numpy(),
                                      torch.tril_indices(r, c, o).numpy())
        np.testing.assert_array_equal(mg.triu_indices(r, c, o).numpy(),
                                      torch.triu_indices(r, c, o).numpy())


# =================================================================== in-place variants
def test_inplace_variants_write_into_self_and_keep_the_graph():
    x0, s0 = normal(0, (3, 2)), normal(1, (2, 2))
    x = mg.tensor(x0)
    v = x._vc[0]
    assert x.index_add_(0, mg.tensor([2, 2]), mg.tensor(s0), alpha=2) is x
    np.testing.assert_allclose(x.numpy(), _ref_index_add(x0, [2, 2], s0, 0, 2), rtol=1e-15)
    assert x._vc[0] == v + 1
    # a non-leaf: the gradient flows through the in-place op to both the base and the source
    leaf = mg.tensor(x0, requires_grad=True)
    src = mg.tensor(s0, requires_grad=True)
    y = leaf * 3
    y.scatter_reduce_(0, mg.tensor([[0, 1], [0, 1]]), src, "sum", include_self=False)
    y.sum().backward()
    # targets (index[i][j], j): (0, 0) and (1, 1) are overwritten, so x there gets no gradient
    np.testing.assert_array_equal(leaf.grad.numpy(), [[0, 3], [3, 0], [3, 3]])
    np.testing.assert_array_equal(src.grad.numpy(), np.ones((2, 2)))
    z = mg.tensor(x0)
    z.addcmul_(mg.tensor(s0[0]), mg.tensor(x0), value=0.5)
    np.testing.assert_allclose(z.numpy(), x0 + 0.5 * s0[0] * x0, rtol=1e-15)
    # a bad argument raises before anything is written
    with pytest.raises(IndexError):
        z.index_copy_(0, mg.tensor([0, 3]), mg.ones(2, 2, dtype=mg.float64))
    np.testing.assert_allclose(z.numpy(), x0 + 0.5 * s0[0] * x0, rtol=1e-15)


def test_mixed_devices_are_refused_by_name(fake_cuda):
    c, g = mg.ones(2, 2), mg.ones(2, 2, device="cuda")
    for call in (lambda: mg.addmm(c, g, g), lambda: mg.addcmul(g, c, g),
                 lambda: mg.tensordot(c, g), lambda: g.index_add(0, mg.tensor([0]), c[:1]),
                 lambda: g.scatter_reduce(0, mg.tensor([[0, 1]], device="cuda"), c, "sum"),
                 lambda: mg.repeat_interleave(g, mg.tensor([1, 1])),
                 lambda: mg.meshgrid(c[0], g[0])):
        with pytest.raises(RuntimeError, match="same device|repeats on"):
            call()
