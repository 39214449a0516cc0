"""The wrong results, crashes and missing PyTorch arguments that a run over PyTorch's OpInfo
sample inputs found (issue 18): each case against a numpy formula and float64 central
differences (``check_op``), and against PyTorch where it is installed (a test-only oracle)."""
import numpy as np
import pytest

import minigen as mg
import minigen.nn.functional as F
from core_strategies import distinct, normal
from op_check import check_op


def _torch():
    return pytest.importorskip("torch")


def _np(t):
    return np.asarray(t.detach().data)


# ---------------------------------------------------------------------- wrong results
def test_masked_fill_tensor_value_gets_its_gradient():
    x = normal(0, (3, 4))
    mask = normal(1, (3, 4)) > 0
    # d out / d value = 1 where the mask is on: Σ of the cotangent there
    check_op(lambda t, v: t.masked_fill(mg.tensor(mask), v),
             lambda a, v: np.where(mask, v, a), [x, np.array(-0.7)])
    # a one-element 1-D value, and a mask that broadcasts over the rows
    row = mask[:1]
    check_op(lambda t, v: mg.masked_fill(t, mg.tensor(row), v),
             lambda a, v: np.where(row, v[0], a), [x, np.array([1.25])])


def test_masked_fill_value_gradient_value():
    v = mg.tensor(2.0, dtype=mg.float64, requires_grad=True)
    x = mg.tensor(normal(2, (5,)), requires_grad=True)
    mask = mg.tensor(np.array([True, False, True, True, False]))
    g = np.arange(1.0, 6.0)
    x.masked_fill(mask, v).backward(mg.tensor(g))
    assert v.grad is not None and float(v.grad.item()) == pytest.approx(1 + 3 + 4)
    np.testing.assert_array_equal(_np(x.grad), np.where(mask.data, 0, g))


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, True), ((0, 2), False)])
def test_norm_minus_inf(dim, keepdim):
    x = distinct(3, (3, 4, 2)) + 0.13  # no ties, no zeros
    ax = dim if dim is None or isinstance(dim, int) else tuple(dim)
    check_op(lambda t: mg.norm(t, float("-inf"), dim, keepdim),
             lambda a: np.abs(a).min(axis=ax, keepdims=keepdim), [x])


def test_norm_zero_counts_nonzeros():
    x = normal(4, (3, 5))
    x[x < 0.2] = 0.0
    check_op(lambda t: mg.norm(t, 0), lambda a: np.float64(np.count_nonzero(a)), [x])
    check_op(lambda t: t.norm(p=0, dim=1, keepdim=True),
             lambda a: np.count_nonzero(a, axis=1, keepdims=True).astype(a.dtype), [x])


@pytest.mark.parametrize("dim", [None, 1, (0, 1), (-1, 0)])
def test_norm_fro(dim):
    x = normal(5, (3, 4, 2)) if dim is not None else normal(5, (3, 4))
    ax = dim if dim is None or isinstance(dim, int) else tuple(dim)
    check_op(lambda t: mg.norm(t, "fro", dim),
             lambda a: np.sqrt((a * a).sum(axis=ax)), [x])
    check_op(lambda t: t.norm(dim=dim), lambda a: np.sqrt((a * a).sum(axis=ax)), [x])


def test_norm_nuc():
    x = normal(6, (3, 4))
    check_op(lambda t: mg.norm(t, "nuc"), lambda a: np.linalg.norm(a, "nuc"), [x])
    b = normal(7, (4, 2, 3))
    # the matrices in dims (0, 2), one per index of dim 1
    check_op(lambda t: mg.norm(t, "nuc", dim=(0, 2), keepdim=True),
             lambda a: np.linalg.svd(np.moveaxis(a, 1, 0), compute_uv=False).sum(-1)
             .reshape(1, 2, 1), [b])
    with pytest.raises(RuntimeError, match="nuc"):
        mg.norm(mg.tensor(b), "nuc")
    with pytest.raises(ValueError, match="'fr'"):
        mg.norm(mg.tensor(x), "fr")


def test_norm_against_torch():
    torch = _torch()
    x = normal(8, (3, 4))
    x[0, 1] = 0.0
    for p, dim in [(float("-inf"), None), (float("-inf"), 1), (0, None), (0, 0), ("fro", None),
                   ("fro", (0, 1)), ("nuc", None), (3, 1), (float("inf"), 0)]:
        a = mg.tensor(x, requires_grad=True)
        ta = torch.tensor(x, requires_grad=True)
        out, ref = mg.norm(a, p, dim), torch.norm(ta, p, dim)
        np.testing.assert_allclose(_np(out), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        g = normal(9, tuple(ref.shape))
        out.backward(mg.tensor(g))
        ref.backward(torch.tensor(g))
        # PyTorch leaves the gradient of p=0 undefined: zero
        tg = ta.grad.numpy() if ta.grad is not None else np.zeros_like(x)
        np.testing.assert_allclose(_np(a.grad), tg, rtol=1e-10, atol=1e-12,
                                   err_msg=f"p={p} dim={dim}")


# ---------------------------------------------------------------------- arguments: movedim
@pytest.mark.parametrize("src, dst", [([0, 1], [2, 0]), ((-1, 0), (0, -1)), ([1], [3]),
                                      (2, 0), ([], [])])
def test_movedim_sequences(src, dst):
    x = normal(10, (2, 3, 4, 5))
    check_op(lambda t: mg.movedim(t, src, dst), lambda a: np.moveaxis(a, src, dst), [x])
    check_op(lambda t: t.movedim(src, dst), lambda a: np.moveaxis(a, src, dst), [x])


def test_movedim_bad_arguments():
    t = mg.zeros(2, 3, 4)
    with pytest.raises(RuntimeError, match="same number"):
        mg.movedim(t, [0, 1], [2])
    with pytest.raises(RuntimeError, match="repeated"):
        mg.movedim(t, [0, 0], [1, 2])
    with pytest.raises(TypeError, match="both"):
        mg.movedim(t, [0], 1)


# ---------------------------------------------------------------------- indexing
def test_take_along_dim_flattens_without_dim():
    x = normal(11, (3, 4))
    idx = np.array([[11, 0], [5, -1]])
    check_op(lambda t: mg.take_along_dim(t, mg.tensor(idx)),
             lambda a: a.reshape(-1)[idx.reshape(-1)], [x])
    # a 0-d input is read as one element (PyTorch returns a 1-D tensor)
    check_op(lambda t: mg.take_along_dim(t, mg.tensor(0)), lambda a: a.reshape(1), [np.array(1.5)])


def test_take_along_dim_broadcasts_input_and_indices():
    x = normal(12, (3, 4))
    idx = np.array([[0, 3, 3]])      # (1, 3): broadcast over the 3 rows
    check_op(lambda t: mg.take_along_dim(t, mg.tensor(idx), dim=1),
             lambda a: np.take_along_axis(a, np.broadcast_to(idx, (3, 3)), 1), [x])
    col = normal(13, (3, 1))         # (3, 1) input against (3, 2) indices along dim 0
    idx0 = np.array([[2, 0], [1, 1], [0, 2]])
    check_op(lambda t: mg.take_along_dim(t, mg.tensor(idx0), 0),
             lambda a: np.take_along_axis(np.broadcast_to(a, (3, 2)), idx0, 0), [col])
    with pytest.raises(RuntimeError, match="same number of dims"):
        mg.take_along_dim(mg.tensor(x), mg.tensor([0, 1]), 1)
    with pytest.raises(TypeError, match="integer"):
        mg.take_along_dim(mg.tensor(x), mg.tensor([0.0]))


def test_take_along_dim_against_torch():
    torch = _torch()
    x = normal(14, (2, 3, 4))
    idx = np.random.default_rng(0).integers(-4, 4, (2, 1, 5))
    # PyTorch wraps negative indices only when dim is given
    for dim, ix in [(None, idx + 4), (2, idx), (-1, idx[:1])]:
        ref = torch.take_along_dim(torch.tensor(x), torch.tensor(ix), dim)
        np.testing.assert_array_equal(_np(mg.take_along_dim(mg.tensor(x), mg.tensor(ix), dim)),
                                      ref.numpy())


def test_masked_select_broadcasts_input_to_mask():
    x = normal(15, (2, 1))
    mask = normal(16, (3, 2, 4)) > 0
    check_op(lambda t: mg.masked_select(t, mg.tensor(mask)),
             lambda a: np.broadcast_to(a, mask.shape)[mask], [x])
    check_op(lambda t: t.masked_select(mg.tensor(np.array(True))), lambda a: a.reshape(-1), [x])
    check_op(lambda t: mg.masked_select(t, mg.tensor(np.array([True, False, True]))),
             lambda a: np.broadcast_to(a, (3,))[[0, 2]], [np.array(0.5)])


def test_masked_fill_broadcasts_input_to_a_wider_mask():
    x = normal(17, (4,))
    mask = normal(18, (3, 4)) > 0
    check_op(lambda t: mg.masked_fill(t, mg.tensor(mask), 0.25),
             lambda a: np.where(mask, 0.25, a), [x])
    check_op(lambda t, v: t.masked_fill(mg.tensor(mask), v),
             lambda a, v: np.where(mask, v, a), [x, np.array(-2.0)])
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        mg.masked_fill(mg.tensor(x), mg.tensor(mask[:, :3]), 0.0)


def test_masked_ops_against_torch():
    torch = _torch()
    x = normal(19, (2, 1))
    mask = normal(20, (2, 3)) > 0
    np.testing.assert_array_equal(
        _np(mg.masked_select(mg.tensor(x), mg.tensor(mask))),
        torch.masked_select(torch.tensor(x), torch.tensor(mask)).numpy())
    np.testing.assert_array_equal(
        _np(mg.tensor(x).masked_fill(mg.tensor(mask), 3.0)),
        torch.tensor(x).masked_fill(torch.tensor(mask), 3.0).numpy())


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_nonzero_of_a_0d_tensor(value):
    t = mg.tensor(value)
    out = mg.nonzero(t)
    assert out.shape == ((1, 0) if value else (0, 0)) and out.dtype == mg.int64
    (idx,) = t.nonzero(as_tuple=True)
    np.testing.assert_array_equal(_np(idx), [0] if value else np.zeros(0, np.int64))
    assert idx.dtype == mg.int64


def test_gather_index_select_scatter_on_0d_inputs():
    s = np.array(1.75)
    zero = mg.tensor(np.array(0))
    check_op(lambda t: mg.gather(t, 0, zero), lambda a: a, [s])
    check_op(lambda t: t.gather(-1, mg.tensor([0])), lambda a: a.reshape(1), [s])
    check_op(lambda t: mg.index_select(t, 0, zero), lambda a: a, [s])
    check_op(lambda t: mg.index_select(t, 0, mg.tensor([0])), lambda a: a, [s])
    # scatter replaces the one element: the input gets no gradient, src all of it
    check_op(lambda t, u: mg.scatter(t, 0, zero, u), lambda a, b: b, [s, np.array(-0.5)])
    check_op(lambda t: mg.scatter(t, 0, zero, 4.0), lambda a: np.array(4.0), [s])
    check_op(lambda t, u: mg.scatter_add(t, 0, zero, u), lambda a, b: a + b,
             [s, np.array(-0.5)])
    with pytest.raises(RuntimeError, match="exactly one index"):
        mg.index_select(mg.tensor(s), 0, mg.tensor([0, 0]))
    with pytest.raises(IndexError):
        mg.gather(mg.tensor(s), 0, mg.tensor(1))


def test_0d_indexing_against_torch():
    torch = _torch()
    ts, ms = torch.tensor(1.75), mg.tensor(1.75)
    i0 = torch.tensor(0)
    pairs = [(mg.gather(ms, 0, mg.tensor(0)), torch.gather(ts, 0, i0)),
             (mg.index_select(ms, 0, mg.tensor(0)), torch.index_select(ts, 0, i0)),
             (mg.scatter(ms, 0, mg.tensor(0), mg.tensor(5.0)),
              torch.scatter(ts, 0, i0, torch.tensor(5.0))),
             (mg.scatter_add(ms, 0, mg.tensor(0), mg.tensor(5.0)),
              torch.scatter_add(ts, 0, i0, torch.tensor(5.0))),
             (mg.nonzero(ms), torch.nonzero(ts))]
    for got, ref in pairs:
        assert tuple(got.shape) == tuple(ref.shape)
        np.testing.assert_array_equal(_np(got), ref.numpy())


# ---------------------------------------------------------------------- pooling
def _np_max_pool(a, k, s):
    """Max over k×k windows with stride s, ceil mode: windows may hang past the edge."""
    h, w = a.shape[-2:]
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = np.empty(a.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[..., i, j] = a[..., i * s:i * s + k, j * s:j * s + k].max(axis=(-2, -1))
    return out


@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 2, 5, 7)])
def test_max_pool2d_ceil_mode_unbatched(shape):
    x = distinct(21, shape)
    check_op(lambda t: F.max_pool2d(t, 2, ceil_mode=True), lambda a: _np_max_pool(a, 2, 2), [x])
    check_op(lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True),
             lambda a: _np_max_pool(a, 3, 2), [x])


def test_pool2d_unbatched_against_torch():
    torch = _torch()
    x = distinct(22, (3, 5, 6))
    for fn, tfn in [(lambda t: F.max_pool2d(t, 2, ceil_mode=True),
                     lambda t: torch.nn.functional.max_pool2d(t, 2, ceil_mode=True)),
                    (lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
                     lambda t: torch.nn.functional.avg_pool2d(t, 3, 2, 1, ceil_mode=True))]:
        np.testing.assert_allclose(_np(fn(mg.tensor(x))), tfn(torch.tensor(x)).numpy(),
                                   rtol=1e-12)


# ---------------------------------------------------------------------- empty and 0-d inputs
@pytest.mark.parametrize("shape, dim", [((2, 0), 1), ((0, 3), 1), ((2, 0, 3), 1), ((0,), 0)])
def test_softmax_over_a_size_0_dim(shape, dim):
    x = np.zeros(shape)
    for fn in (mg.softmax, mg.log_softmax, F.softmax, F.log_softmax):
        a = mg.tensor(x, requires_grad=True)
        out = fn(a, dim)
        assert out.shape == shape and out.requires_grad
        out.backward(mg.zeros(*shape, dtype=mg.float64))
        assert a.grad.shape == shape


def test_reductions_over_empty_dims_return_their_identity():
    x = np.zeros((2, 0, 3))
    check_op(lambda t: t.sum(1), lambda a: np.zeros((2, 3)), [x])
    check_op(lambda t: t.prod(1), lambda a: np.ones((2, 3)), [x])
    # (op_check's float32 bound is relative: it cannot hold an infinite reference)
    check_op(lambda t: t.logsumexp(1), lambda a: np.full((2, 3), -np.inf), [x], float32=False)
    check_op(lambda t: t.logsumexp((0, 1), keepdim=True), lambda a: np.full((1, 1, 3), -np.inf),
             [x], float32=False)
    out32 = mg.tensor(x.astype(np.float32)).logsumexp(1)
    assert out32.dtype == mg.float32 and (_np(out32) == -np.inf).all()
    check_op(lambda t: t.norm(dim=1), lambda a: np.zeros((2, 3)), [x])
    # over a non-empty dim of an empty tensor: an empty result
    check_op(lambda t: t.max(2)[0], lambda a: np.zeros((2, 0)), [x])
    check_op(lambda t: t.logsumexp(2), lambda a: np.zeros((2, 0)), [x])
    assert mg.tensor(x).argmax(2).shape == (2, 0)
    # no identity: a clear error, as PyTorch
    for fn in (lambda t: t.amax(1), lambda t: t.max(1), lambda t: t.argmax(1),
               lambda t: t.argmin(), lambda t: t.max()):
        with pytest.raises(RuntimeError, match="empty|size 0"):
            fn(mg.tensor(x))


def test_empty_reductions_against_torch():
    torch = _torch()
    x = np.zeros((2, 0, 3))
    for name, args in [("sum", (1,)), ("prod", (1,)), ("logsumexp", (1,)), ("amax", (2,)),
                       ("softmax", (1,)), ("log_softmax", (1,)), ("norm", (2, 1))]:
        got, ref = getattr(mg.tensor(x), name)(*args), getattr(torch.tensor(x), name)(*args)
        assert tuple(got.shape) == tuple(ref.shape), name
        np.testing.assert_array_equal(_np(got), ref.numpy())


def test_group_norm_with_an_empty_batch():
    x = np.zeros((0, 4, 3))
    w, b = normal(23, (4,)), normal(24, (4,))
    check_op(lambda t, ww, bb: F.group_norm(t, 2, ww, bb), lambda a, ww, bb: a, [x, w, b])
    out = F.group_norm(mg.tensor(np.zeros((0, 6, 2, 2)), requires_grad=True), 3)
    assert out.shape == (0, 6, 2, 2)
    ww = mg.tensor(w, requires_grad=True)
    F.group_norm(mg.tensor(x), 2, ww).sum().backward()
    np.testing.assert_array_equal(_np(ww.grad), np.zeros(4))


def test_cat_skips_an_empty_1d_tensor():
    x, y = normal(25, (2, 3)), normal(26, (1, 3))
    e = np.zeros(0)
    check_op(lambda a, z: mg.cat([a, z]), lambda a, z: a, [x, e])
    check_op(lambda z, a, b: mg.cat([z, a, b], dim=0), lambda z, a, b: np.concatenate([a, b]),
             [e, x, y])
    check_op(lambda a, z: mg.cat([a, z], 1), lambda a, z: a, [x, e])
    check_op(lambda z, w: mg.cat([z, w]), lambda z, w: np.concatenate([z, w]), [e, np.ones(2)])
    # the dtype still promotes over the skipped tensor
    out = mg.cat([mg.tensor(x.astype(np.float32)), mg.tensor(e)])
    assert out.dtype == mg.float64 and out.shape == (2, 3)
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        mg.cat([mg.tensor(x), mg.tensor(np.zeros((0, 3, 1)))])


def test_cat_empty_against_torch():
    torch = _torch()
    x = normal(27, (2, 3))
    got = mg.cat([mg.tensor(np.zeros(0)), mg.tensor(x), mg.tensor(np.zeros(0))], 1)
    ref = torch.cat([torch.zeros(0, dtype=torch.float64), torch.tensor(x),
                     torch.zeros(0, dtype=torch.float64)], 1)
    np.testing.assert_array_equal(_np(got), ref.numpy())


@pytest.mark.parametrize("batch", [(), (3,), (0,)])
def test_linalg_on_0x0_matrices(batch):
    a = np.zeros(batch + (0, 0))
    b = np.zeros(batch + (0, 2))
    ones, zeros = np.ones(batch), np.zeros(batch)
    check_op(mg.linalg.det, lambda m: ones, [a])
    check_op(mg.linalg.slogdet, lambda m: (ones, zeros), [a])
    check_op(mg.linalg.inv, lambda m: m, [a])
    check_op(mg.linalg.solve, lambda m, r: r, [a, b])
    lu, piv = mg.linalg.lu_factor(mg.tensor(a))
    assert lu.shape == a.shape and piv.shape == batch + (0,) and piv.dtype == mg.int32


def test_linalg_empty_batch_of_matrices():
    a = np.zeros((0, 3, 3))
    check_op(mg.linalg.det, lambda m: np.zeros(0), [a])
    check_op(mg.linalg.inv, lambda m: m, [a])


def test_linalg_0x0_against_torch():
    torch = _torch()
    ta, ma = torch.zeros(2, 0, 0, dtype=torch.float64), mg.tensor(np.zeros((2, 0, 0)))
    np.testing.assert_array_equal(_np(mg.linalg.det(ma)), torch.linalg.det(ta).numpy())
    for got, ref in zip(mg.linalg.slogdet(ma), torch.linalg.slogdet(ta)):
        np.testing.assert_array_equal(_np(got), ref.numpy())
    assert mg.linalg.inv(ma).shape == tuple(torch.linalg.inv(ta).shape)
    assert mg.linalg.solve(ma, mg.tensor(np.zeros((2, 0, 3)))).shape == \
        tuple(torch.linalg.solve(ta, torch.zeros(2, 0, 3, dtype=torch.float64)).shape)


def test_lu_factor_pivot_argument():
    a = normal(28, (4, 4))
    lu, piv = mg.linalg.lu_factor(mg.tensor(a), pivot=True)
    lu0, piv0 = mg.linalg.lu_factor(mg.tensor(a))
    np.testing.assert_array_equal(_np(lu), _np(lu0))
    # P A = L U: apply the 1-based row swaps to A, compare with L U
    pa = a.copy()
    for i, p in enumerate(_np(piv)):
        pa[[i, p - 1]] = pa[[p - 1, i]]
    lo, up = np.tril(_np(lu), -1) + np.eye(4), np.triu(_np(lu))
    np.testing.assert_allclose(lo @ up, pa, atol=1e-12)
    with pytest.raises(NotImplementedError, match="pivot=False"):
        mg.linalg.lu_factor(mg.tensor(a), pivot=False)
    with pytest.raises(TypeError, match="pivot"):
        mg.linalg.lu_factor(mg.tensor(a), pivot="yes")


def test_lu_factor_against_torch():
    torch = _torch()
    a = normal(29, (2, 4, 4))
    lu, piv = mg.linalg.lu_factor(mg.tensor(a), pivot=True)
    tlu, tpiv = torch.linalg.lu_factor(torch.tensor(a), pivot=True)
    np.testing.assert_allclose(_np(lu), tlu.numpy(), atol=1e-12)
    np.testing.assert_array_equal(_np(piv), tpiv.numpy())


@pytest.mark.parametrize("p", [2, 3, 1.5, "fro"])
def test_norm_gradient_at_zero_is_zero(p):
    # PyTorch's subgradient at ‖x‖ = 0 is 0 (not 0 · ∞ = nan); the other rows are untouched
    x = normal(30, (3, 4))
    x[1] = 0.0
    a = mg.tensor(x, requires_grad=True)
    mg.norm(a, p, 1).sum().backward()
    g = _np(a.grad)
    assert np.isfinite(g).all() and (g[1] == 0).all()
    pp = 2 if p == "fro" else p
    n = (np.abs(x[0]) ** pp).sum() ** (1 / pp)
    np.testing.assert_allclose(g[0], np.sign(x[0]) * (np.abs(x[0]) / n) ** (pp - 1), rtol=1e-12)


# ---------------------------------------------------------------------- PyTorch's arguments
def test_randint_two_argument_form():
    mg.manual_seed(0)
    a = mg.randint(10, (3, 4))
    assert a.shape == (3, 4) and a.dtype == mg.int64
    assert 0 <= int(a.data.min()) and int(a.data.max()) < 10
    g1, g2 = mg.Generator().manual_seed(5), mg.Generator().manual_seed(5)
    np.testing.assert_array_equal(_np(mg.randint(7, (50,), generator=g1)),
                                  _np(mg.randint(0, 7, (50,), generator=g2)))
    b = mg.randint(-3, 2, [200])
    assert b.shape == (200,) and set(np.unique(_np(b))) <= set(range(-3, 2))
    with pytest.raises(TypeError, match="size given twice"):
        mg.randint(10, (3,), size=(3,))


def _np_div_trunc(a, b):
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


def test_div_rounding_modes_float():
    x = normal(31, (3, 4)) * 5
    y = normal(32, (4,)) * 2
    check_op(lambda a, b: mg.div(a, b, rounding_mode="trunc"), lambda a, b: np.trunc(a / b),
             [x, y])
    check_op(lambda a, b: a.div(b, rounding_mode="floor"), lambda a, b: np.floor(a / b), [x, y])
    check_op(lambda a: mg.div(a, -1.5, rounding_mode="floor"), lambda a: np.floor(a / -1.5), [x])
    # the quotient is piecewise constant: zero gradient, as PyTorch
    a = mg.tensor(x, requires_grad=True)
    mg.div(a, 2.0, rounding_mode="trunc").sum().backward()
    np.testing.assert_array_equal(_np(a.grad), np.zeros_like(x))
    check_op(lambda a: mg.div(a, 2.0, rounding_mode=None), lambda a: a / 2.0, [x])
    with pytest.raises(ValueError, match="rounding_mode"):
        mg.div(mg.tensor(x), 2.0, rounding_mode="round")


def test_div_rounding_modes_integer():
    a = np.array([-7, 7, -6, 6, 0, -1, 9])
    b = np.array([2, 2, -4, -4, 3, 5, -2])
    for mode, ref in (("trunc", _np_div_trunc(a, b)), ("floor", a // b)):
        out = mg.div(mg.tensor(a), mg.tensor(b), rounding_mode=mode)
        assert out.dtype == mg.int64
        np.testing.assert_array_equal(_np(out), ref)
    np.testing.assert_array_equal(_np(mg.div(mg.tensor(a), 3, rounding_mode="trunc")),
                                  _np_div_trunc(a, np.array(3)))
    # int / float promotes to float
    assert mg.div(mg.tensor(a), 2.0, rounding_mode="floor").dtype == mg.float32
    with pytest.raises(ZeroDivisionError):
        mg.div(mg.tensor(a), 0, rounding_mode="trunc")
    with pytest.raises(ZeroDivisionError):
        mg.div(mg.tensor(a), mg.tensor(b * 0), rounding_mode="floor")


def test_div_rounding_against_torch():
    torch = _torch()
    x = normal(33, (20,)) * 7
    y = normal(34, (20,)) * 3
    xi, yi = np.arange(-10, 10), np.array([3, -3, 7, -2] * 5)
    for mode in ("trunc", "floor"):
        for a, b in ((x, y), (xi, yi), (xi, 2.5), (x, 3)):
            tb = torch.tensor(b) if isinstance(b, np.ndarray) else b
            mb = mg.tensor(b) if isinstance(b, np.ndarray) else b
            ref = torch.div(torch.tensor(a), tb, rounding_mode=mode)
            got = mg.div(mg.tensor(a), mb, rounding_mode=mode)
            assert str(got.dtype).split(".")[-1] == str(ref.dtype).split(".")[-1]
            np.testing.assert_array_equal(_np(got), ref.numpy())


def test_round_decimals_half_to_even():
    # x·10^d lands exactly on .5 for these: half to even
    x = np.array([0.125, 0.375, -0.625, 2.5, 1.2345, 15.0, 25.0, -35.0])
    # (these sit on rounding jumps: central differences there see the jump, so values only)
    check_op(lambda t: mg.round(t, decimals=2), lambda a: np.round(a, 2), [x], float32=False,
             grad=False)
    away = normal(48, (3, 4)) * 10 + 0.0013  # a gradient check off the jumps
    check_op(lambda t: mg.round(t, decimals=2), lambda a: np.round(a, 2), [away],
             float32=False)
    np.testing.assert_array_equal(_np(mg.round(mg.tensor(x), decimals=2))[:3], [0.12, 0.38, -0.62])
    np.testing.assert_array_equal(_np(mg.tensor(x).round(decimals=-1))[5:], [20.0, 20.0, -40.0])
    a = mg.tensor(x, requires_grad=True)
    mg.round(a, decimals=1).sum().backward()
    np.testing.assert_array_equal(_np(a.grad), np.zeros_like(x))
    with pytest.raises(TypeError, match="floating"):
        mg.round(mg.tensor([15, 25]), decimals=-1)


def test_round_decimals_against_torch():
    torch = _torch()
    x = normal(35, (2000,)) * 100
    for dt in (np.float32, np.float64):
        for d in (-2, -1, 1, 2, 3):
            np.testing.assert_array_equal(
                _np(mg.round(mg.tensor(x.astype(dt)), decimals=d)),
                torch.round(torch.tensor(x.astype(dt)), decimals=d).numpy())


@pytest.mark.parametrize("fn", ["var", "std"])
def test_var_std_unbiased_positionally(fn):
    x = normal(36, (3, 5))
    nfn = getattr(np, fn)
    check_op(lambda t: getattr(mg, fn)(t, False), lambda a: nfn(a), [x])
    check_op(lambda t: getattr(t, fn)(True), lambda a: nfn(a, ddof=1), [x])
    check_op(lambda t: getattr(mg, fn)(t, 1, False, True), lambda a: nfn(a, 1, keepdims=True),
             [x])
    check_op(lambda t: getattr(mg, fn)(t, 0, correction=2), lambda a: nfn(a, 0, ddof=2), [x])
    with pytest.raises(RuntimeError, match="only one"):
        getattr(mg, fn)(mg.tensor(x), 0, True, correction=0)
    with pytest.raises(TypeError, match="bool dim"):
        getattr(mg, fn)(mg.tensor(x), False, True)


@pytest.mark.parametrize("fn", ["var_mean", "std_mean"])
def test_var_std_mean_unbiased_positionally(fn):
    x = normal(37, (3, 5))
    nfn = np.var if fn == "var_mean" else np.std
    check_op(lambda t: getattr(mg, fn)(t, False), lambda a: (nfn(a), a.mean()), [x])
    check_op(lambda t: getattr(mg, fn)(t, 1, False), lambda a: (nfn(a, 1), a.mean(1)), [x])
    check_op(lambda t: getattr(mg, fn)(t, [0], True, True),
             lambda a: (nfn(a, 0, ddof=1, keepdims=True), a.mean(0, keepdims=True)), [x])


def test_var_std_against_torch():
    torch = _torch()
    x = normal(38, (4, 3))
    for args in [(False,), (True,), (1, False), (0, True, True)]:
        for name in ("var", "std", "var_mean", "std_mean"):
            got, ref = getattr(mg, name)(mg.tensor(x), *args), getattr(torch, name)(
                torch.tensor(x), *args)
            for g_, r_ in zip(got if isinstance(got, tuple) else (got,),
                              ref if isinstance(ref, tuple) else (ref,)):
                np.testing.assert_allclose(_np(g_), r_.numpy(), rtol=1e-12, err_msg=str(args))


def test_normal_with_tensor_mean_and_std():
    mean, std = normal(39, (3,)), np.abs(normal(40, (2, 1))) + 0.1
    g = mg.Generator().manual_seed(3)
    out = mg.normal(mg.tensor(mean), mg.tensor(std), generator=g)
    eps = _np(mg.randn(2, 3, dtype=mg.float64, generator=mg.Generator().manual_seed(3)))
    assert out.shape == (2, 3) and out.dtype == mg.float64
    np.testing.assert_allclose(_np(out), mean + std * eps, rtol=1e-14)
    # normal(mean_tensor, std=float) and normal(float, std_tensor)
    assert mg.normal(mg.tensor(mean), 2.0).shape == (3,)
    assert mg.normal(0.5, mg.tensor(std)).shape == (2, 1)
    assert mg.normal(0.0, 1.0, (4, 2)).shape == (4, 2)
    # a sample carries a zero gradient (PyTorch's NormalBackward); the graph stays connected
    m, s = mg.tensor(mean, requires_grad=True), mg.tensor(std, requires_grad=True)
    y = mg.normal(m, s)
    assert y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(_np(m.grad), np.zeros(3))
    np.testing.assert_array_equal(_np(s.grad), np.zeros((2, 1)))
    with pytest.raises(RuntimeError, match="std >= 0"):
        mg.normal(mg.tensor(mean), mg.tensor(-std))
    with pytest.raises(TypeError, match="size"):
        mg.normal(0.0, 1.0)


def test_normal_statistics():
    mean = np.array([-2.0, 0.0, 3.0])
    std = np.array([0.5, 1.0, 2.0])
    out = mg.normal(mg.tensor(np.broadcast_to(mean, (20000, 3)).copy()), mg.tensor(std),
                    generator=mg.Generator().manual_seed(1))
    # 5 standard errors: σ/√n for the mean, σ·√(2/n) (normal) for the std
    np.testing.assert_array_less(np.abs(_np(out).mean(0) - mean), 5 * std / np.sqrt(20000))
    np.testing.assert_array_less(np.abs(_np(out).std(0) - std), 5 * std * np.sqrt(2 / 20000))


def test_normal_against_torch_shapes():
    torch = _torch()
    for m, s in [((3,), (2, 1)), ((2, 3), ()), ((), (4,))]:
        ref = torch.normal(torch.zeros(m, dtype=torch.float64), torch.ones(s, dtype=torch.float64))
        assert mg.normal(mg.zeros(*m, dtype=mg.float64), mg.ones(*s, dtype=mg.float64)).shape \
            == tuple(ref.shape)


# ---------------------------------------------------------------------- F.pad, interpolate
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", [(-1, 2), (2, -1), (-1, -2), (-2, 0, 1, -1)])
def test_pad_negative_crops(mode, pad):
    x = normal(41, (2, 4, 5))

    def ref(a):
        # crop first, then pad the cropped array (numpy's pad modes under their names)
        sl = [slice(None)] * a.ndim
        widths = [(0, 0)] * a.ndim
        for i in range(len(pad) // 2):
            d = a.ndim - 1 - i
            lo, hi = pad[2 * i], pad[2 * i + 1]
            sl[d] = slice(max(-lo, 0), a.shape[d] - max(-hi, 0))
            widths[d] = (max(lo, 0), max(hi, 0))
        c = a[tuple(sl)]
        np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}[mode]
        return np.pad(c, widths, mode=np_mode)

    check_op(lambda t: F.pad(t, pad, mode=mode), ref, [x])


def test_pad_negative_errors_and_torch():
    with pytest.raises(ValueError, match="negative size"):
        F.pad(mg.zeros(2, 3), (-2, -2))
    torch = _torch()
    x = normal(42, (1, 3, 4))
    for mode in ("constant", "reflect", "replicate", "circular"):
        for pad in [(-1, 2), (2, -1), (-2, 0, 1, -1)]:
            np.testing.assert_array_equal(
                _np(F.pad(mg.tensor(x), pad, mode=mode)),
                torch.nn.functional.pad(torch.tensor(x), pad, mode=mode).numpy())


def _keys(d, a=-0.75):
    d = abs(d)
    if d <= 1:
        return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
    if d < 2:
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
    return 0.0


def _np_resample_2d(a, out_hw, kernel, align_corners):
    """Direct 2-D resampling: out[oy, ox] = Σ_{iy, ix} k(sy − iy) k(sx − ix) a[clamp(iy),
    clamp(ix)] over the source neighbourhood, loops over every output pixel."""
    h, w = a.shape[-2:]
    oh, ow = out_hw
    reach = 2 if kernel is _keys else 1

    def src(o, n_in, n_out):
        if align_corners:
            return o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        s = (o + 0.5) * n_in / n_out - 0.5
        return s if kernel is _keys else max(s, 0.0)

    out = np.zeros(a.shape[:-2] + (oh, ow))
    for oy in range(oh):
        sy = src(oy, h, oh)
        for ox in range(ow):
            sx = src(ox, w, ow)
            for iy in range(int(np.floor(sy)) - reach + 1, int(np.floor(sy)) + reach + 1):
                for ix in range(int(np.floor(sx)) - reach + 1, int(np.floor(sx)) + reach + 1):
                    wgt = kernel(sy - iy) * kernel(sx - ix)
                    if wgt:
                        out[..., oy, ox] += wgt * a[..., min(max(iy, 0), h - 1),
                                                    min(max(ix, 0), w - 1)]
    return out


def _tent(d):
    return max(0.0, 1.0 - abs(d))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("out_hw", [(7, 3), (2, 6)])
def test_interpolate_bicubic(align_corners, out_hw):
    x = normal(43, (1, 2, 4, 5))
    check_op(lambda t: F.interpolate(t, size=out_hw, mode="bicubic", align_corners=align_corners),
             lambda a: _np_resample_2d(a, out_hw, _keys, align_corners), [x])


@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_bilinear(align_corners):
    x = normal(44, (2, 1, 4, 5))
    check_op(lambda t: F.interpolate(t, size=(6, 3), mode="bilinear",
                                     align_corners=align_corners),
             lambda a: _np_resample_2d(a, (6, 3), _tent, align_corners), [x])


def _np_adaptive_avg(a, out):
    """Mean over PyTorch's adaptive windows [⌊o·in/out⌋, ⌈(o + 1)·in/out⌉) per spatial dim."""
    spatial = a.shape[2:]
    res = np.zeros(a.shape[:2] + tuple(out))
    for o in np.ndindex(*out):
        sl = tuple(slice(int(np.floor(i * n / m)), int(np.ceil((i + 1) * n / m)))
                   for i, n, m in zip(o, spatial, out))
        res[(Ellipsis,) + o] = a[(Ellipsis,) + sl].mean(axis=tuple(range(2, a.ndim)))
    return res


@pytest.mark.parametrize("shape, out", [((1, 2, 7, 5), (3, 2)), ((2, 1, 4, 6), (8, 4)),
                                        ((1, 2, 7), (3,)), ((1, 1, 3, 4, 5), (2, 3, 2))])
def test_interpolate_area(shape, out):
    x = normal(45, shape)
    check_op(lambda t: F.interpolate(t, size=out, mode="area"),
             lambda a: _np_adaptive_avg(a, out), [x])


def test_interpolate_modes_against_torch():
    torch = _torch()
    tf = torch.nn.functional
    x = normal(46, (2, 3, 5, 7))
    cases = [dict(size=(8, 4), mode="bicubic"), dict(size=(8, 4), mode="bicubic",
                                                     align_corners=True),
             dict(scale_factor=1.7, mode="bicubic"), dict(scale_factor=(0.5, 2.5),
                                                          mode="bicubic"),
             dict(size=(3, 4), mode="area"), dict(size=(8, 11), mode="area"),
             dict(scale_factor=0.5, mode="area"), dict(size=(9, 3), mode="bilinear"),
             dict(size=(9, 3), mode="bilinear", align_corners=True)]
    for kw in cases:
        a = mg.tensor(x, requires_grad=True)
        ta = torch.tensor(x, requires_grad=True)
        out, ref = F.interpolate(a, **kw), tf.interpolate(ta, **kw)
        np.testing.assert_allclose(_np(out), ref.detach().numpy(), atol=1e-13, err_msg=str(kw))
        g = normal(47, tuple(ref.shape))
        out.backward(mg.tensor(g))
        ref.backward(torch.tensor(g))
        np.testing.assert_allclose(_np(a.grad), ta.grad.numpy(), atol=1e-12, err_msg=str(kw))


def test_interpolate_mode_errors():
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(mg.zeros(1, 1, 4, 4), size=2, mode="area", align_corners=False)
    with pytest.raises(ValueError, match="4-D"):
        F.interpolate(mg.zeros(1, 1, 4), size=2, mode="bicubic")
