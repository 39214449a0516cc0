"""Every op of ``minigen.ops.reduce`` through ``check_op``: dims None / int / negative / tuple,
keepdim, 0-d inputs, the unbiased flag, ties for max/min/amax, zeros for prod."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigen as mg
from core_strategies import (distinct, dim_tuples, normal, np_axes, positive, seeds, shapes,
                             small_ints)
from op_check import check_op


@st.composite
def shape_and_dims(draw, min_dims=0, max_dims=3):
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    return shape, draw(dim_tuples(len(shape)))


@st.composite
def shape_and_dim(draw, min_dims=1, max_dims=3):
    """A shape and one dim (negative allowed); 0-d shapes take dim 0 or -1."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    n = max(len(shape), 1)
    return shape, draw(st.integers(-n, n - 1))


# ---------------------------------------------------------------------- sum / mean
@given(sd=shape_and_dims(), keepdim=st.booleans(), seed=seeds)
def test_sum(sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    check_op(lambda t: mg.sum(t, dim, keepdim), lambda x: np.sum(x, axis=ax, keepdims=keepdim),
             [normal(seed, shape)])
    check_op(lambda t: t.sum(dim=dim, keepdim=keepdim),
             lambda x: np.sum(x, axis=ax, keepdims=keepdim), [normal(seed, shape)])


def test_sum_dtypes():
    assert mg.tensor([True, True, False]).sum().dtype == mg.int64
    assert mg.tensor([1, 2], dtype=mg.int32).sum().item() == 3
    assert mg.tensor([1, 2], dtype=mg.int32).sum().dtype == mg.int64
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    s = x.sum(dtype=mg.float64)
    assert s.dtype == mg.float64
    s.backward()
    assert x.grad.dtype == mg.float32


@given(sd=shape_and_dims(), keepdim=st.booleans(), seed=seeds)
def test_mean(sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    check_op(lambda t: mg.mean(t, dim, keepdim), lambda x: np.mean(x, axis=ax, keepdims=keepdim),
             [normal(seed, shape)])


# ---------------------------------------------------------------------- var / std
@given(sd=shape_and_dims(min_dims=1), keepdim=st.booleans(),
       unbiased=st.sampled_from([None, True, False]), seed=seeds)
def test_var_std(sd, keepdim, unbiased, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    n = np.prod([shape[a] for a in np.atleast_1d(ax)]) if ax is not None else np.prod(shape)
    ddof = 0 if unbiased is False else 1
    if n - ddof <= 0:
        ddof = 0  # keep the reference finite; the N - 1 = 0 case is tested separately
        unbiased = False
    x = normal(seed, shape)
    check_op(lambda t: mg.var(t, dim, unbiased=unbiased, keepdim=keepdim),
             lambda a: np.var(a, axis=ax, ddof=ddof, keepdims=keepdim), [x])
    if n > 1 or ddof == 0:
        check_op(lambda t: t.std(dim, unbiased=unbiased, keepdim=keepdim),
                 lambda a: np.std(a, axis=ax, ddof=ddof, keepdims=keepdim), [x])


@given(shape=shapes(min_dims=1), correction=st.sampled_from([0, 1, 2]), seed=seeds)
def test_var_correction(shape, correction, seed):
    if shape[-1] <= correction:
        return
    check_op(lambda t: mg.var(t, -1, correction=correction),
             lambda a: np.var(a, axis=-1, ddof=correction), [normal(seed, shape)])


def test_var_of_one_element_unbiased_is_nan():
    assert np.isnan(mg.tensor([2.0]).var().item())
    assert mg.tensor([2.0]).var(unbiased=False).item() == 0.0


@given(sd=shape_and_dims(min_dims=1), seed=seeds)
def test_var_mean_std_mean(sd, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    x = normal(seed, shape)
    check_op(lambda t: mg.var_mean(t, dim, unbiased=False),
             lambda a: (np.var(a, axis=ax), np.mean(a, axis=ax)), [x])
    check_op(lambda t: mg.std_mean(t, dim, unbiased=False),
             lambda a: (np.std(a, axis=ax), np.mean(a, axis=ax)), [x])


# ---------------------------------------------------------------------- max / min / amax
@given(shape=shapes(), seed=seeds)
def test_max_min_full(shape, seed):
    x = distinct(seed, shape)
    check_op(mg.max, np.max, [x])
    check_op(mg.min, np.min, [x])
    check_op(lambda t: t.max(), np.max, [x])


@given(sd=shape_and_dim(min_dims=0), keepdim=st.booleans(), seed=seeds)
def test_max_min_dim_values_and_indices(sd, keepdim, seed):
    shape, dim = sd
    x = distinct(seed, shape)
    ax, kd = (dim, keepdim) if shape else (None, False)  # 0-d: the value and index 0
    check_op(lambda t: mg.max(t, dim, keepdim),
             lambda a: (np.max(a, axis=ax, keepdims=kd), np.argmax(a, axis=ax, keepdims=kd)), [x])
    check_op(lambda t: t.min(dim=dim, keepdim=keepdim),
             lambda a: (np.min(a, axis=ax, keepdims=kd), np.argmin(a, axis=ax, keepdims=kd)), [x])
    out = mg.max(mg.tensor(x), dim)
    assert out.values is out[0] and out.indices.dtype == mg.int64


@given(sd=shape_and_dims(), keepdim=st.booleans(), seed=seeds)
def test_amax_amin(sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    x = distinct(seed, shape)
    check_op(lambda t: mg.amax(t, dim, keepdim), lambda a: np.amax(a, axis=ax, keepdims=keepdim),
             [x])
    check_op(lambda t: t.amin(dim, keepdim), lambda a: np.amin(a, axis=ax, keepdims=keepdim), [x])


@given(shape=shapes(min_dims=1), seed=seeds)
def test_amax_ties_share_gradient_evenly(shape, seed):
    x = small_ints(seed, shape, 0, 2)  # values 0 and 1: many ties
    t = mg.tensor(x, requires_grad=True)
    t.amax(-1).sum().backward()
    mask = x == x.max(-1, keepdims=True)
    np.testing.assert_allclose(t.grad.numpy(), mask / mask.sum(-1, keepdims=True))
    t.grad = None
    t.amin().backward()
    mask = x == x.min()
    np.testing.assert_allclose(t.grad.numpy(), mask / mask.sum())
    t.grad = None
    t.max().backward()  # full max: ties share too
    mask = x == x.max()
    np.testing.assert_allclose(t.grad.numpy(), mask / mask.sum())


def test_max_dim_ties_send_gradient_to_the_returned_index():
    t = mg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=mg.float64, requires_grad=True)
    values, indices = t.max(1)
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    values.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_max_with_tensor_is_elementwise():
    a, b = np.array([1.0, 4.0, -2.0]), np.array([3.0, 0.5, -1.0])
    check_op(mg.max, np.maximum, [a, b])
    check_op(mg.min, np.minimum, [a, b])


@given(sd=shape_and_dim(), keepdim=st.booleans(), seed=seeds)
def test_argmax_argmin(sd, keepdim, seed):
    shape, dim = sd
    x = small_ints(seed, shape)  # ties: the first index wins, as in numpy
    check_op(lambda t: mg.argmax(t, dim, keepdim), lambda a: np.argmax(a, dim, keepdims=keepdim),
             [x])
    check_op(lambda t: t.argmin(dim, keepdim), lambda a: np.argmin(a, dim, keepdims=keepdim), [x])
    check_op(mg.argmax, np.argmax, [x])
    check_op(lambda t: t.argmin(), np.argmin, [x])


# ---------------------------------------------------------------------- prod
@given(sd=shape_and_dim(min_dims=0), keepdim=st.booleans(), zeros=st.integers(0, 2), seed=seeds)
def test_prod(sd, keepdim, zeros, seed):
    shape, dim = sd
    x = normal(seed, shape) + 0.5
    flat = x.reshape(-1)
    rng = np.random.default_rng(seed)
    flat[rng.choice(flat.size, min(zeros, flat.size), replace=False)] = 0.0  # one or two zeros
    ax = np_axes(dim, len(shape))
    check_op(lambda t: mg.prod(t, dim, keepdim), lambda a: np.prod(a, axis=ax, keepdims=keepdim),
             [x])
    check_op(mg.prod, np.prod, [x])


def test_prod_gradient_with_single_zero():
    t = mg.tensor([2.0, 0.0, 3.0], dtype=mg.float64, requires_grad=True)
    t.prod().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [0.0, 6.0, 0.0])


# ---------------------------------------------------------------------- logsumexp, softmax
@given(sd=shape_and_dims(min_dims=1), keepdim=st.booleans(), seed=seeds)
def test_logsumexp(sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))

    def ref(a):
        return np.log(np.sum(np.exp(a), axis=ax, keepdims=keepdim))

    check_op(lambda t: mg.logsumexp(t, dim, keepdim), ref, [normal(seed, shape, 3.0)])


def test_logsumexp_large_values_do_not_overflow():
    x = mg.tensor([1000.0, 1000.0], dtype=mg.float64)
    np.testing.assert_allclose(mg.logsumexp(x, 0).item(), 1000 + np.log(2))


@given(sd=shape_and_dim(min_dims=0), seed=seeds)
def test_cumsum(sd, seed):
    shape, dim = sd
    ax = dim if shape else None
    check_op(lambda t: mg.cumsum(t, dim), lambda a: np.cumsum(a, axis=ax).reshape(a.shape),
             [normal(seed, shape)])


def test_cumsum_integers_and_bools_accumulate_in_int64():
    out = mg.tensor([True, True, False]).cumsum(0)
    assert out.dtype == mg.int64 and out.tolist() == [1, 2, 2]
    assert mg.tensor([1, 2], dtype=mg.int32).cumsum(0).dtype == mg.int64


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(sd=shape_and_dim(min_dims=0), seed=seeds)
def test_softmax_log_softmax(sd, seed):
    shape, dim = sd
    x = normal(seed, shape, 3.0)
    ax = dim if shape else None
    check_op(lambda t: mg.softmax(t, dim), lambda a: np_softmax(a, ax), [x])
    check_op(lambda t: t.log_softmax(dim), lambda a: np.log(np_softmax(a, ax)), [x])


def test_softmax_extreme_values():
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]])
    check_op(lambda t: mg.softmax(t, -1), lambda a: np_softmax(a, -1), [x], grad=False)
    check_op(lambda t: mg.log_softmax(t, 1), lambda a: a - a.max(1, keepdims=True) - np.log(
        np.exp(a - a.max(1, keepdims=True)).sum(1, keepdims=True)), [x], grad=False)


# ---------------------------------------------------------------------- norm, all, any
@pytest.mark.parametrize("p", [1, 2, 3, float("inf")])
@given(sd=shape_and_dims(min_dims=1), keepdim=st.booleans(), seed=seeds)
def test_norm(p, sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    x = distinct(seed, shape) + 0.13  # no zeros (|x| kink), no ties (inf-norm)

    def ref(a):
        if p == float("inf"):
            return np.max(np.abs(a), axis=ax, keepdims=keepdim)
        return np.sum(np.abs(a) ** p, axis=ax, keepdims=keepdim) ** (1 / p)

    check_op(lambda t: mg.norm(t, p, dim, keepdim), ref, [x])


@given(sd=shape_and_dims(), keepdim=st.booleans(), seed=seeds)
def test_all_any(sd, keepdim, seed):
    shape, dim = sd
    ax = np_axes(dim, len(shape))
    x = normal(seed, shape) > -0.5
    check_op(lambda t: mg.all(t, dim, keepdim), lambda a: np.all(a, axis=ax, keepdims=keepdim), [x])
    check_op(lambda t: t.any(dim, keepdim), lambda a: np.any(a, axis=ax, keepdims=keepdim), [x])
    check_op(mg.any, np.any, [small_ints(seed, shape)])


# ---------------------------------------------------------------------- GPU variant
@pytest.mark.parametrize("name", ["sum", "mean", "var", "amax", "logsumexp", "softmax", "prod"])
def test_reduce_on_device(device, name):
    x = positive(0, (3, 4, 5))
    fn = {"sum": lambda t: t.sum((0, 2)), "mean": lambda t: t.mean(-1, keepdim=True),
          "var": lambda t: t.var(1), "amax": lambda t: t.amax(0),
          "logsumexp": lambda t: mg.logsumexp(t, -1), "softmax": lambda t: t.softmax(1),
          "prod": lambda t: t.prod(2)}[name]
    ref = {"sum": lambda a: a.sum((0, 2)), "mean": lambda a: a.mean(-1, keepdims=True),
           "var": lambda a: a.var(1, ddof=1), "amax": lambda a: a.max(0),
           "logsumexp": lambda a: np.log(np.exp(a).sum(-1)),
           "softmax": lambda a: np_softmax(a, 1), "prod": lambda a: a.prod(2)}[name]
    check_op(fn, ref, [x], device=device)


def test_std_gradient_is_zero_where_std_is_zero():
    """PyTorch's choice at σ = 0 (the composition through sqrt would give 0 · ∞ = nan)."""
    for x, kw in ((np.array([2.0]), dict(unbiased=False)), (np.array([[3.0, 3.0]]), dict(dim=1))):
        t = mg.tensor(x, dtype=mg.float64, requires_grad=True)
        t.std(**kw).sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), np.zeros_like(x))


# ------------------------------------------------------------- dtype= (found by the OpInfo run)
@pytest.mark.parametrize("name, ref", [
    ("cumsum", lambda a: np.cumsum(a, axis=1)),
    ("prod", lambda a: np.prod(a, axis=1)),
    ("softmax", lambda a: np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)),
    ("log_softmax", lambda a: a - np.log(np.exp(a).sum(axis=1, keepdims=True))),
])
def test_dtype_argument_casts_first(name, ref):
    # PyTorch's dtype=: the float32 input is cast to float64 before the op, so the result is
    # float64 and exact to float64 rounding (not a float32 result cast afterwards)
    a32 = (normal(11, (3, 5)) * 0.5).astype(np.float32)
    x = mg.tensor(a32, requires_grad=True)
    out = getattr(mg, name)(x, 1, dtype=mg.float64)
    assert out.dtype == mg.float64
    np.testing.assert_allclose(out.data, ref(a32.astype(np.float64)), rtol=1e-13)
    assert getattr(x, name)(1, dtype=mg.float64).dtype == mg.float64
    out.sum().backward()
    assert x.grad is not None and x.grad.dtype == mg.float32
    # float64 central differences through the cast
    from minigen.autograd import gradcheck
    x64 = mg.tensor(normal(12, (2, 4)) * 0.5, requires_grad=True)
    assert gradcheck(lambda t: getattr(mg, name)(t, 1, dtype=mg.float64), [x64])
