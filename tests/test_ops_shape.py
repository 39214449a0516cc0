"""Every op of ``minigen.ops.shape`` through ``check_op``: reshape/view, permute, expand,
squeeze, flatten, cat/stack/split/chunk, flip, repeat/tile, roll, pad (all modes), diagonal,
tril/triu; plus the view semantics (shared memory and version counter)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigen as mg
from core_strategies import normal, seeds, shapes
from op_check import check_op


@st.composite
def shape_and_dim(draw, min_dims=1, max_dims=3, extra=0):
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    n = len(shape) + extra
    return shape, draw(st.integers(-n, n - 1))


# ---------------------------------------------------------------------- reshape family
@st.composite
def reshape_target(draw):
    shape = draw(shapes(min_dims=0, max_dims=4))
    n = math.prod(shape)
    # factor n into a new shape, maybe with one -1
    factors = []
    rest = n
    while rest > 1:
        f = draw(st.sampled_from([d for d in range(2, rest + 1) if rest % d == 0]))
        factors.append(f)
        rest //= f
    factors = draw(st.permutations(factors)) if factors else []
    factors = list(factors) + [1] * draw(st.integers(0, 1))
    if factors and draw(st.booleans()):
        factors[draw(st.integers(0, len(factors) - 1))] = -1
    return shape, tuple(factors)


@given(st_=reshape_target(), seed=seeds)
def test_reshape_view(st_, seed):
    shape, target = st_
    x = normal(seed, shape)
    check_op(lambda t: mg.reshape(t, target), lambda a: np.reshape(a, target), [x])
    check_op(lambda t: t.view(*target) if target else t.view(()), lambda a: a.reshape(target), [x])
    check_op(lambda t: t.reshape(target), lambda a: a.reshape(target), [x])


def test_view_as_reshape_as():
    a, b = normal(0, (2, 6)), normal(1, (3, 4))
    check_op(lambda x, y: x.view_as(y), lambda x, y: x.reshape(y.shape), [a, b], grad_inputs=[0])
    check_op(lambda x, y: mg.reshape_as(x, y), lambda x, y: x.reshape(y.shape), [a, b],
             grad_inputs=[0])


@st.composite
def shape_and_perm(draw):
    shape = draw(shapes(min_dims=1, max_dims=4))
    perm = draw(st.permutations(range(len(shape))))
    return shape, tuple(p - len(shape) if draw(st.booleans()) else p for p in perm)


@given(sp=shape_and_perm(), seed=seeds)
def test_permute(sp, seed):
    shape, perm = sp
    check_op(lambda t: mg.permute(t, perm), lambda a: np.transpose(a, perm), [normal(seed, shape)])
    check_op(lambda t: t.permute(*perm), lambda a: np.transpose(a, perm), [normal(seed, shape)])


@given(shape=shapes(min_dims=1, max_dims=4), data=st.data(), seed=seeds)
def test_transpose_swapaxes_movedim(shape, data, seed):
    n = len(shape)
    d0, d1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    x = normal(seed, shape)
    check_op(lambda t: mg.transpose(t, d0, d1), lambda a: np.swapaxes(a, d0, d1), [x])
    check_op(lambda t: t.swapaxes(d0, d1), lambda a: np.swapaxes(a, d0, d1), [x])
    check_op(lambda t: mg.movedim(t, d0, d1), lambda a: np.moveaxis(a, d0, d1), [x])


@given(shape=shapes(min_dims=0, max_dims=2), seed=seeds)
def test_t_T_mT(shape, seed):
    x = normal(seed, shape)
    check_op(mg.t, lambda a: a.T, [x])
    check_op(lambda t: t.T, lambda a: a.T, [x])
    if len(shape) >= 2:
        check_op(lambda t: t.mT, lambda a: np.swapaxes(a, -1, -2), [x])


@given(shape=shapes(), seed=seeds)
def test_contiguous_clone(shape, seed):
    x = normal(seed, shape)
    check_op(mg.contiguous, lambda a: a, [x])
    check_op(lambda t: t.clone(), lambda a: a.copy(), [x])
    t = mg.tensor(normal(seed, (3, 4))).transpose(0, 1)
    assert not t.is_contiguous() and t.contiguous().is_contiguous()


def test_clone_has_its_own_memory():
    x = mg.tensor([1.0, 2.0])
    c = x.clone()
    c.add_(1)
    assert x.tolist() == [1.0, 2.0]


@st.composite
def expand_case(draw):
    shape = draw(shapes(min_dims=0, max_dims=3))
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    target = list(lead)
    for s in shape:
        if s == 1:
            target.append(draw(st.sampled_from([1, 3, -1])))
        else:
            target.append(draw(st.sampled_from([s, -1])))
    return shape, tuple(target)


@given(case=expand_case(), seed=seeds)
def test_expand_broadcast_to(case, seed):
    shape, target = case
    full = tuple(s if s != -1 else shape[i - (len(target) - len(shape))]
                 for i, s in enumerate(target))
    x = normal(seed, shape)
    check_op(lambda t: t.expand(*target), lambda a: np.broadcast_to(a, full), [x])
    check_op(lambda t: mg.expand(t, target), lambda a: np.broadcast_to(a, full), [x])
    check_op(lambda t: mg.broadcast_to(t, full), lambda a: np.broadcast_to(a, full), [x])
    y = normal(seed + 1, full)
    check_op(lambda t, u: t.expand_as(u), lambda a, b: np.broadcast_to(a, b.shape), [x, y],
             grad_inputs=[0])


@st.composite
def squeeze_case(draw):
    shape = draw(shapes(min_dims=0, max_dims=4, max_side=3).map(
        lambda s: tuple(1 if d == 2 else d for d in s)))  # plenty of size-1 dims
    n = len(shape)
    kind = draw(st.sampled_from(["none", "one", "tuple"]) if n else st.just("none"))
    if kind == "none":
        return shape, None
    if kind == "one":
        return shape, draw(st.integers(-n, n - 1))
    return shape, tuple(draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True)))


@given(case=squeeze_case(), seed=seeds)
def test_squeeze(case, seed):
    shape, dim = case
    if dim is None:
        ref = np.squeeze
    else:
        dims = (dim,) if isinstance(dim, int) else dim
        axes = tuple(d % len(shape) for d in dims if shape[d] == 1)
        ref = lambda a: np.squeeze(a, axis=axes)  # noqa: E731
    check_op(lambda t: mg.squeeze(t, dim), ref, [normal(seed, shape)])
    check_op(lambda t: t.squeeze(dim), ref, [normal(seed, shape)])


@given(sd=shape_and_dim(min_dims=0, extra=1), seed=seeds)
def test_unsqueeze(sd, seed):
    shape, dim = sd
    check_op(lambda t: mg.unsqueeze(t, dim), lambda a: np.expand_dims(a, dim),
             [normal(seed, shape)])


@given(shape=shapes(min_dims=0, max_dims=4), data=st.data(), seed=seeds)
def test_flatten(shape, data, seed):
    n = len(shape)
    x = normal(seed, shape)
    if n == 0:
        check_op(mg.flatten, lambda a: a.reshape(1), [x])
        return
    s = data.draw(st.integers(0, n - 1))
    e = data.draw(st.integers(s, n - 1))
    ref_shape = shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:]
    check_op(lambda t: mg.flatten(t, s, e - n), lambda a: a.reshape(ref_shape), [x])
    check_op(lambda t: t.flatten(), lambda a: a.reshape(-1), [x])


def test_unflatten():
    x = normal(0, (2, 12, 3))
    check_op(lambda t: mg.unflatten(t, 1, (3, 4)), lambda a: a.reshape(2, 3, 4, 3), [x])
    check_op(lambda t: t.unflatten(-1, (3, 1)), lambda a: a.reshape(2, 12, 3, 1), [x])


# ---------------------------------------------------------------------- cat / stack / split
@st.composite
def cat_case(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    n = len(shape)
    dim = draw(st.integers(-n, n - 1))
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    if sum(sizes) == 0:
        sizes[0] = 1
    out = []
    for k in sizes:
        s = list(shape)
        s[dim] = k
        out.append(tuple(s))
    return out, dim


@given(case=cat_case(), seed=seeds)
def test_cat(case, seed):
    shps, dim = case
    arrays = [normal(seed + i, s) for i, s in enumerate(shps)]
    ref = lambda *a: np.concatenate(a, axis=dim)  # noqa: E731
    check_op(lambda *t: mg.cat(t, dim), ref, arrays)
    check_op(lambda *t: mg.concat(list(t), dim=dim), ref, arrays)
    check_op(lambda *t: mg.concatenate(t, dim), ref, arrays)


def test_cat_promotes_dtypes():
    out = mg.cat([mg.tensor([1, 2]), mg.tensor([0.5], dtype=mg.float32)])
    assert out.dtype == mg.float32 and out.tolist() == [1.0, 2.0, 0.5]
    a = mg.tensor([1.0], dtype=mg.float32, requires_grad=True)
    b = mg.tensor([2.0], dtype=mg.float64, requires_grad=True)
    out = mg.cat([a, b])
    assert out.dtype == mg.float64
    (out * mg.tensor([3.0, 4.0], dtype=mg.float64)).sum().backward()
    assert a.grad.dtype == mg.float32 and a.grad.tolist() == [3.0]
    assert b.grad.tolist() == [4.0]


@given(shape=shapes(min_dims=0, max_dims=3), k=st.integers(1, 3), data=st.data(), seed=seeds)
def test_stack(shape, k, data, seed):
    n = len(shape) + 1
    dim = data.draw(st.integers(-n, n - 1))
    arrays = [normal(seed + i, shape) for i in range(k)]
    check_op(lambda *t: mg.stack(t, dim), lambda *a: np.stack(a, axis=dim), arrays)


@given(sd=shape_and_dim(max_dims=3), size=st.integers(1, 5), seed=seeds)
def test_split_by_size(sd, size, seed):
    shape, dim = sd
    n = shape[dim]
    cuts = list(range(size, n, size))
    check_op(lambda t: mg.split(t, size, dim), lambda a: tuple(np.split(a, cuts, axis=dim)),
             [normal(seed, shape)])


@given(sd=shape_and_dim(max_dims=3), data=st.data(), seed=seeds)
def test_split_sections(sd, data, seed):
    shape, dim = sd
    n = shape[dim]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = np.diff([0] + cuts + [n]).tolist()
    check_op(lambda t: t.split(sizes, dim), lambda a: tuple(np.split(a, cuts, axis=dim)),
             [normal(seed, shape)])


@given(sd=shape_and_dim(max_dims=3), chunks=st.integers(1, 5), seed=seeds)
def test_chunk(sd, chunks, seed):
    shape, dim = sd
    n = shape[dim]
    size = -(-n // chunks)
    cuts = list(range(size, n, size))
    check_op(lambda t: mg.chunk(t, chunks, dim), lambda a: tuple(np.split(a, cuts, axis=dim)),
             [normal(seed, shape)])
    assert len(mg.chunk(mg.zeros(*shape), chunks, dim)) <= chunks


@given(sd=shape_and_dim(max_dims=3), seed=seeds)
def test_unbind(sd, seed):
    shape, dim = sd
    check_op(lambda t: mg.unbind(t, dim),
             lambda a: tuple(np.moveaxis(a, dim, 0)), [normal(seed, shape)])


@given(sd=shape_and_dim(max_dims=3), data=st.data(), seed=seeds)
def test_narrow(sd, data, seed):
    shape, dim = sd
    n = shape[dim]
    start = data.draw(st.integers(0, n - 1))
    length = data.draw(st.integers(0, n - start))
    check_op(lambda t: mg.narrow(t, dim, start, length),
             lambda a: np.take(a, range(start, start + length), axis=dim), [normal(seed, shape)])


# ---------------------------------------------------------------------- flip / repeat / roll
@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_flip(shape, data, seed):
    n = len(shape)
    dims = tuple(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=n,
                                    unique_by=lambda d: d % n)))
    check_op(lambda t: mg.flip(t, dims), lambda a: np.flip(a, dims), [normal(seed, shape)])
    check_op(lambda t: t.flip(dims[0]), lambda a: np.flip(a, dims[0]), [normal(seed, shape)])


@given(shape=shapes(min_dims=0, max_dims=3), data=st.data(), seed=seeds)
def test_repeat_tile(shape, data, seed):
    reps = tuple(data.draw(st.lists(st.integers(1, 3), min_size=len(shape),
                                    max_size=len(shape) + 2)))
    x = normal(seed, shape)
    check_op(lambda t: t.repeat(*reps), lambda a: np.tile(a, reps), [x])
    check_op(lambda t: mg.repeat(t, reps), lambda a: np.tile(a, reps), [x])
    short = reps[:max(len(shape) - 1, 0)]  # tile pads missing leading reps with 1
    check_op(lambda t: mg.tile(t, short), lambda a: np.tile(a, short), [x])


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds)
def test_roll(shape, data, seed):
    n = len(shape)
    x = normal(seed, shape)
    s = data.draw(st.integers(-5, 5))
    check_op(lambda t: mg.roll(t, s), lambda a: np.roll(a, s), [x])  # flattened
    d = data.draw(st.integers(-n, n - 1))
    check_op(lambda t: t.roll(s, d), lambda a: np.roll(a, s, axis=d), [x])
    dims = tuple(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    shifts = tuple(data.draw(st.lists(st.integers(-4, 4), min_size=len(dims),
                                      max_size=len(dims))))
    check_op(lambda t: mg.roll(t, shifts, dims), lambda a: np.roll(a, shifts, axis=dims), [x])


# ---------------------------------------------------------------------- pad
NP_PAD_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap"}


@st.composite
def pad_case(draw, mode):
    shape = draw(shapes(min_dims=1, max_dims=3, min_side=2))
    k = draw(st.integers(1, len(shape)))
    pads = []
    for i in range(k):
        size = shape[len(shape) - 1 - i]
        hi = size - 1 if mode == "reflect" else (size if mode == "circular" else 3)
        pads += [draw(st.integers(0, hi)), draw(st.integers(0, hi))]
    return shape, tuple(pads)


def np_pad_ref(a, pads, mode, value=0.0):
    widths = [(0, 0)] * a.ndim
    for i in range(len(pads) // 2):  # (left, right) pairs from the last dim backwards
        widths[a.ndim - 1 - i] = (pads[2 * i], pads[2 * i + 1])
    if mode == "constant":
        return np.pad(a, widths, mode="constant", constant_values=value)
    return np.pad(a, widths, mode=NP_PAD_MODE[mode])


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@given(data=st.data(), seed=seeds)
def test_pad(mode, data, seed):
    shape, pads = data.draw(pad_case(mode))
    check_op(lambda t: mg.pad(t, pads, mode=mode), lambda a: np_pad_ref(a, pads, mode),
             [normal(seed, shape)])


def test_pad_constant_value_and_known_examples():
    x = np.array([[1.0, 2.0, 3.0]])
    check_op(lambda t: mg.pad(t, (1, 2), value=-1.0), lambda a: np_pad_ref(a, (1, 2),
                                                                           "constant", -1.0), [x])
    t = mg.tensor(x)
    # PyTorch's semantics, written out
    assert mg.pad(t, (2, 1), mode="reflect").tolist() == [[3, 2, 1, 2, 3, 2]]
    assert mg.pad(t, (2, 1), mode="replicate").tolist() == [[1, 1, 1, 2, 3, 3]]
    assert mg.pad(t, (2, 1), mode="circular").tolist() == [[2, 3, 1, 2, 3, 1]]
    assert mg.pad(t, (0, 0, 1, 0)).tolist() == [[0, 0, 0], [1, 2, 3]]


# ---------------------------------------------------------------------- diagonal / tril / triu
@given(shape=shapes(min_dims=2, max_dims=3, max_side=5), data=st.data(), seed=seeds)
def test_diagonal(shape, data, seed):
    n = len(shape)
    d1, d2 = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    offset = data.draw(st.integers(-2, 2))
    check_op(lambda t: mg.diagonal(t, offset, d1, d2 - n),
             lambda a: np.diagonal(a, offset, d1, d2), [normal(seed, shape)])


@given(shape=shapes(min_dims=2, max_dims=3, max_side=5), k=st.integers(-2, 2), seed=seeds)
def test_tril_triu(shape, k, seed):
    x = normal(seed, shape)
    check_op(lambda t: mg.tril(t, k), lambda a: np.tril(a, k), [x])
    check_op(lambda t: t.triu(k), lambda a: np.triu(a, k), [x])


# ---------------------------------------------------------------------- views
@pytest.mark.parametrize("make_view", [
    lambda t: t.reshape(6), lambda t: t.view(3, 2), lambda t: t.permute(1, 0),
    lambda t: t.transpose(0, 1), lambda t: t.unsqueeze(0), lambda t: t[0], lambda t: t[:, 1:],
    lambda t: t.T, lambda t: t.detach(), lambda t: t.flatten(), lambda t: t[1, 2],
])
def test_views_share_memory_and_version_counter(make_view):
    x = mg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    v = make_view(x)
    assert v._vc is x._vc and v._base is x
    before = x._vc[0]
    v.mul_(10)
    assert x._vc[0] == before + 1
    assert np.shares_memory(v.data, x.data)
    assert x.numpy().max() >= 10  # the write went through to x


def test_copying_ops_are_not_views():
    x = mg.tensor([[1.0, 2.0], [3.0, 4.0]])
    for y in (x.clone(), x.T.contiguous(), x.flip(0), x.repeat(1, 2), x[mg.tensor([0, 1])]):
        assert y._vc is not x._vc


# ---------------------------------------------------------------------- GPU variant
@pytest.mark.parametrize("name", ["reshape", "permute", "expand", "cat", "pad", "roll", "flip"])
def test_shape_on_device(device, name):
    a, b = normal(0, (2, 3, 4)), normal(1, (2, 1, 4))
    cases = {
        "reshape": (lambda t, u: t.reshape(6, 4), lambda x, y: x.reshape(6, 4), [a, b], [0]),
        "permute": (lambda t, u: t.permute(2, 0, 1), lambda x, y: x.transpose(2, 0, 1), [a, b],
                    [0]),
        "expand": (lambda t, u: u.expand(2, 3, 4), lambda x, y: np.broadcast_to(y, (2, 3, 4)),
                   [a, b], [1]),
        "cat": (lambda t, u: mg.cat([t, u], 1), lambda x, y: np.concatenate([x, y], 1), [a, b],
                None),
        "pad": (lambda t, u: mg.pad(t, (1, 2, 0, 1), mode="reflect"),
                lambda x, y: np_pad_ref(x, (1, 2, 0, 1), "reflect"), [a, b], [0]),
        "roll": (lambda t, u: t.roll((1, -2), (0, 2)), lambda x, y: np.roll(x, (1, -2), (0, 2)),
                 [a, b], [0]),
        "flip": (lambda t, u: t.flip((0, 2)), lambda x, y: np.flip(x, (0, 2)), [a, b], [0]),
    }
    fn, ref, arrays, gi = cases[name]
    check_op(fn, ref, arrays, device=device, grad_inputs=gi)


@pytest.mark.parametrize("pad", [(-4, 5, 0, 0), (0, 0, 2, -4), (5, -4, -4, 3), (-1, -2, 1, 0)])
def test_pad_replicate_negative_widths_read_the_clipped_index(pad):
    # PyTorch's replicate with a negative width: output j of an axis reads the input at
    # clip(j − lo, 0, n − 1) of the ORIGINAL axis, so a crop of the whole width on one side and
    # a pad on the other repeat the remaining edge (this crashed in numpy's pad; OpInfo run)
    x = normal(5, (2, 4, 4))

    def ref(a):
        for i in range(len(pad) // 2):
            lo, hi = pad[2 * i], pad[2 * i + 1]
            ax = a.ndim - 1 - i
            n = a.shape[ax]
            a = np.take(a, np.clip(np.arange(-lo, n + hi), 0, n - 1), axis=ax)
        return a
    check_op(lambda t: mg.nn.functional.pad(t, pad, mode="replicate"), ref, [x])


def test_pad_replicate_of_an_empty_dim_is_refused():
    with pytest.raises(ValueError, match="empty"):
        mg.nn.functional.pad(mg.zeros(2, 0), (1, 1), mode="replicate")
