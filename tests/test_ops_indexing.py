"""Every op of ``minigen.ops.indexing`` through ``check_op``: basic, advanced (repeated indices)
and boolean-mask reads, index assignment, gather, scatter_add, scatter, index_select,
masked_fill, one_hot, take_along_dim, nonzero, masked_select."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigen as mg
from core_strategies import normal, seeds, shapes
from op_check import check_op


# ---------------------------------------------------------------------- basic indexing
@st.composite
def basic_index(draw, shape):
    """A tuple of ints (negative too), slices with steps, None and maybe one Ellipsis."""
    items = []
    dims = list(shape)
    use_ellipsis = draw(st.booleans()) and len(dims) > 0
    ell_at = draw(st.integers(0, len(dims))) if use_ellipsis else -1
    i = 0
    while i < len(dims):
        if i == ell_at:
            items.append(Ellipsis)
            skip = draw(st.integers(0, len(dims) - i))
            i += skip
            ell_at = -1
            continue
        n = dims[i]
        kind = draw(st.sampled_from(["int", "slice", "none", "full"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n, n)))
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
            items.append(slice(start, stop, step))
        elif kind == "none":
            items.append(None)
            continue  # None does not consume a dim
        else:
            items.append(slice(None))
        i += 1
    return tuple(items)


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_getitem_basic(shape, data, seed):
    idx = data.draw(basic_index(shape))
    check_op(lambda t: t[idx], lambda a: a[idx], [normal(seed, shape)])


def test_getitem_basic_single_items():
    x = normal(0, (3, 4))
    for idx in (0, -1, slice(1, None), (1, 2), (Ellipsis, 1), (None, 0), (slice(None, None, -1),)):
        check_op(lambda t: t[idx], lambda a: a[idx], [x])


# ---------------------------------------------------------------------- advanced indexing
@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_getitem_integer_array_with_repeats(shape, data, seed):
    n = shape[0]
    idx = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
    check_op(lambda t: t[mg.tensor(idx)], lambda a: a[idx], [normal(seed, shape)])
    idx2 = idx.reshape(-1, 1) if idx.size % 2 else idx.reshape(2, -1)
    check_op(lambda t: t[mg.tensor(idx2)], lambda a: a[idx2], [normal(seed, shape)])


@given(shape=shapes(min_dims=2, max_dims=3), data=st.data(), seed=seeds)
def test_getitem_mixed_advanced_and_basic(shape, data, seed):
    n0, n1 = shape[0], shape[1]
    k = data.draw(st.integers(1, 4))
    i0 = np.asarray(data.draw(st.lists(st.integers(0, n0 - 1), min_size=k, max_size=k)))
    i1 = np.asarray(data.draw(st.lists(st.integers(-n1, n1 - 1), min_size=k, max_size=k)))
    x = normal(seed, shape)
    check_op(lambda t: t[mg.tensor(i0), mg.tensor(i1)], lambda a: a[i0, i1], [x])  # pairs
    check_op(lambda t: t[:, mg.tensor(i1)], lambda a: a[:, i1], [x])
    check_op(lambda t: t[mg.tensor(i0), 1:], lambda a: a[i0, 1:], [x])
    last = i0 % shape[-1]
    check_op(lambda t: t[..., mg.tensor(last)], lambda a: a[..., last], [x])
    check_op(lambda t: t[i0.tolist()], lambda a: a[i0], [x])  # a python list


def test_getitem_repeated_index_accumulates_gradient():
    x = mg.tensor([1.0, 2.0, 3.0], dtype=mg.float64, requires_grad=True)
    x[mg.tensor([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds)
def test_getitem_bool_mask(shape, seed):
    x = normal(seed, shape)
    mask = normal(seed + 1, shape) > 0
    check_op(lambda t: t[mg.tensor(mask)], lambda a: a[mask], [x])
    check_op(lambda t, m: t[m], lambda a, m: a[m], [x, mask])
    row_mask = normal(seed + 2, shape[:1]) > 0
    check_op(lambda t: t[mg.tensor(row_mask)], lambda a: a[row_mask], [x])
    check_op(lambda t: mg.masked_select(t, mg.tensor(mask)), lambda a: a[mask], [x])
    check_op(lambda t: t.masked_select(mg.tensor(mask)), lambda a: a[mask], [x])


def test_masked_select_broadcasts_mask():
    x = normal(0, (3, 4))
    mask = np.array([True, False, True, True])
    check_op(lambda t: mg.masked_select(t, mg.tensor(mask)),
             lambda a: a[np.broadcast_to(mask, a.shape)], [x])


# ---------------------------------------------------------------------- index assignment
@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_setitem_forward(shape, data, seed):
    idx = data.draw(basic_index(shape))
    x = normal(seed, shape)
    target = x[idx]
    value = normal(seed + 1, target.shape)
    t = mg.tensor(x)
    t[idx] = mg.tensor(value)
    expected = x.copy()
    expected[idx] = value
    np.testing.assert_array_equal(t.numpy(), expected)
    t[idx] = 0.5  # python scalar, broadcast
    expected[idx] = 0.5
    np.testing.assert_array_equal(t.numpy(), expected)


@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds)
def test_setitem_differentiable(shape, seed):
    """out = x.clone(); out[mask] = v: grad x is zero where written, v gets the rest."""
    mask = normal(seed + 1, shape) > 0

    def fn(x, v):
        out = x * 1.0
        out[mg.tensor(mask)] = v
        return out

    def ref(x, v):
        out = x.copy()
        out[mask] = v
        return out

    check_op(fn, ref, [normal(seed, shape), np.array(0.7)], noncontig=False)
    idx = np.array([0, -1])

    def fn2(x, v):
        out = x.clone()
        out[mg.tensor(idx)] = v
        return out

    def ref2(x, v):
        out = x.copy()
        out[idx] = v
        return out

    if shape[0] >= 2:
        check_op(fn2, ref2, [normal(seed, shape), normal(seed + 2, shape[1:])], noncontig=False)


# ---------------------------------------------------------------------- gather / scatter
@st.composite
def gather_case(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    n = len(shape)
    dim = draw(st.integers(-n, n - 1))
    d = dim % n
    ishape = tuple(draw(st.integers(1, 4)) if i == d else draw(st.integers(1, s))
                   for i, s in enumerate(shape))
    rng = np.random.default_rng(draw(seeds))
    index = rng.integers(0, shape[d], ishape)  # repeats likely
    return shape, dim, index


def np_gather(a, dim, index):
    """out[i][j][k] = a[i][index[i][j][k]][k] (dim 1), index may be smaller than a."""
    out = np.empty(index.shape, dtype=a.dtype)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = a[tuple(src)]
    return out


def np_scatter_add(a, dim, index, src):
    out = a.copy()
    for pos in np.ndindex(*index.shape):
        dst = list(pos)
        dst[dim] = index[pos]
        out[tuple(dst)] += src[pos]
    return out


def np_scatter(a, dim, index, src):
    out = a.copy()
    for pos in np.ndindex(*index.shape):
        dst = list(pos)
        dst[dim] = index[pos]
        out[tuple(dst)] = src[pos] if np.ndim(src) else src
    return out


@given(case=gather_case(), seed=seeds)
def test_gather(case, seed):
    shape, dim, index = case
    x = normal(seed, shape)
    d = dim % len(shape)
    check_op(lambda t: mg.gather(t, dim, mg.tensor(index)), lambda a: np_gather(a, d, index), [x])
    check_op(lambda t: t.gather(dim, mg.tensor(index)), lambda a: np_gather(a, d, index), [x])
    if all(i == s for k, (i, s) in enumerate(zip(index.shape, shape)) if k != d):
        # PyTorch's take_along_dim(input, indices, dim) is gather where the shapes match
        check_op(lambda t: mg.take_along_dim(t, mg.tensor(index), dim),
                 lambda a: np.take_along_axis(a, index, d), [x])


@given(case=gather_case(), seed=seeds)
def test_scatter_add(case, seed):
    shape, dim, index = case
    d = dim % len(shape)
    if index.shape[d] > shape[d]:  # src is as large as the index; trim to keep a valid case
        index = np.take(index, range(shape[d]), axis=d)
    src_shape = tuple(max(i, s) for i, s in zip(index.shape, shape))
    x, src = normal(seed, shape), normal(seed + 1, src_shape)
    check_op(lambda t, s: mg.scatter_add(t, dim, mg.tensor(index), s),
             lambda a, s: np_scatter_add(a, d, index, s), [x, src])
    check_op(lambda t, s: t.scatter_add(dim, mg.tensor(index), s),
             lambda a, s: np_scatter_add(a, d, index, s), [x, src])


def test_scatter_add_repeated_indices_accumulate():
    x = np.zeros(4)
    index = np.array([1, 1, 3, 1])
    src = np.array([1.0, 2.0, 3.0, 4.0])
    check_op(lambda t, s: mg.scatter_add(t, 0, mg.tensor(index), s),
             lambda a, s: np_scatter_add(a, 0, index, s), [x, src])
    out = mg.scatter_add(mg.tensor(x), 0, mg.tensor(index), mg.tensor(src))
    assert out.tolist() == [0.0, 7.0, 0.0, 3.0]


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_scatter_unique_indices(shape, data, seed):
    """scatter with distinct target positions (repeated ones have no defined winner)."""
    n = len(shape)
    dim = data.draw(st.integers(-n, n - 1))
    d = dim % n
    rng = np.random.default_rng(seed)
    k = data.draw(st.integers(1, shape[d]))
    perm = np.stack([rng.permutation(shape[d])[:k] for _ in range(int(np.prod(
        [s for i, s in enumerate(shape) if i != d])))], axis=-1)
    index = np.moveaxis(perm.reshape((k,) + tuple(s for i, s in enumerate(shape) if i != d)), 0, d)
    x, src = normal(seed, shape), normal(seed + 1, index.shape)
    check_op(lambda t, s: mg.scatter(t, dim, mg.tensor(index), s),
             lambda a, s: np_scatter(a, d, index, s), [x, src])
    check_op(lambda t: t.scatter(dim, mg.tensor(index), 2.5),
             lambda a: np_scatter(a, d, index, 2.5), [x])


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_index_select(shape, data, seed):
    n = len(shape)
    dim = data.draw(st.integers(-n, n - 1))
    size = shape[dim]
    index = np.asarray(data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=5)))
    check_op(lambda t: mg.index_select(t, dim, mg.tensor(index)),
             lambda a: np.take(a, index, axis=dim), [normal(seed, shape)])
    check_op(lambda t: t.index_select(dim, mg.tensor(index)),
             lambda a: np.take(a, index, axis=dim), [normal(seed, shape)])


@given(shp=st.data(), seed=seeds)
def test_masked_fill(shp, seed):
    shape = shp.draw(shapes(min_dims=0, max_dims=3))
    # a mask that broadcasts to the input's shape: drop leading dims / set some to 1
    mshape = tuple(1 if shp.draw(st.booleans()) else s for s in shape)
    mshape = mshape[shp.draw(st.integers(0, len(mshape))):]
    mask = normal(seed + 1, mshape) > 0
    x = normal(seed, shape)
    check_op(lambda t: mg.masked_fill(t, mg.tensor(mask), -1.5),
             lambda a: np.where(mask, -1.5, a), [x])
    check_op(lambda t: t.masked_fill(mg.tensor(mask), mg.tensor(2.0)),
             lambda a: np.where(mask, 2.0, a), [x])


@given(shape=shapes(min_dims=0, max_dims=3), classes=st.integers(1, 5), seed=seeds)
def test_one_hot(shape, classes, seed):
    labels = np.random.default_rng(seed).integers(0, classes, shape)
    ref = lambda lab: (lab[..., None] == np.arange(classes)).astype(np.int64)  # noqa: E731
    check_op(lambda t: mg.one_hot(t, classes), ref, [labels])
    out = mg.one_hot(mg.tensor(labels))
    assert out.dtype == mg.int64 and out.shape == shape + (int(labels.max()) + 1,)


def test_nonzero():
    x = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    check_op(mg.nonzero, lambda a: np.stack(np.nonzero(a), axis=1), [x])
    check_op(lambda t: t.nonzero(as_tuple=True), np.nonzero, [x])


# ---------------------------------------------------------------------- GPU variant
@pytest.mark.parametrize("name", ["basic", "advanced", "mask", "gather", "scatter_add"])
def test_indexing_on_device(device, name):
    x = normal(0, (4, 5))
    idx = np.array([3, 0, 3, 1])
    mask = x > 0
    index = np.array([[0, 2, 2, 1, 0]] * 4)
    cases = {
        "basic": (lambda t: t[1:, ::2], lambda a: a[1:, ::2]),
        "advanced": (lambda t: t[mg.tensor(idx, device=device)], lambda a: a[idx]),
        "mask": (lambda t: t[mg.tensor(mask, device=device)], lambda a: a[mask]),
        "gather": (lambda t: t.gather(1, mg.tensor(index[:, :3], device=device)),
                   lambda a: np_gather(a, 1, index[:, :3])),
        "scatter_add": (lambda t: t.scatter_add(0, mg.tensor(index % 4, device=device), t * 2),
                        lambda a: np_scatter_add(a, 0, index % 4, a * 2)),
    }
    fn, ref = cases[name]
    check_op(fn, ref, [x], device=device)


@pytest.mark.parametrize("index_shape", [(2, 0), (0,), (0, 3, 1)])
def test_gather_empty_index_of_any_rank(index_shape):
    # PyTorch: an empty index reads nothing whatever its rank: an empty result of its shape,
    # in the graph with a zero gradient (minigen refused the rank; found by the OpInfo run)
    x = mg.tensor(normal(3, (5,)), requires_grad=True)
    idx = mg.tensor(np.zeros(index_shape, dtype=np.uint8))
    out = mg.gather(x, 0, idx)
    assert tuple(out.shape) == index_shape and out.dtype == mg.float64
    (g,) = mg.autograd.grad(out, x, mg.zeros(*index_shape, dtype=mg.float64))
    np.testing.assert_array_equal(g.data, np.zeros(5))
    # a non-empty index of another rank is still refused
    with pytest.raises(RuntimeError, match="dims"):
        mg.gather(x, 0, mg.tensor(np.zeros((2, 1), dtype=np.int64)))
