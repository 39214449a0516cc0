"""minigen.nn.functional: normalisation, pooling, resampling, pixel shuffle, dropout, embedding.

Every op goes through ``check_op`` against a plain numpy reference written here (loops over
output pixels where that is the clearest statement of PyTorch's definition), with shapes and
parameters drawn by hypothesis; gradients are checked against float64 central differences.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minigen as mg
import minigen.nn.functional as F
from op_check import check_op

seeds = st.integers(0, 2 ** 32 - 1)


def rng_of(seed):
    return np.random.default_rng(seed)


def distinct(rng, shape):
    """Values without ties (max pooling gradients): a shuffled grid plus small noise."""
    n = math.prod(shape)
    return (rng.permutation(n) * 0.3 - n * 0.15 + rng.uniform(0, 0.05, n)).reshape(shape)


# ====================================================================== normalisation
def ref_normalise(x, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


@given(seed=seeds, lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       norm=st.lists(st.integers(1, 5), min_size=1, max_size=2), affine=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_layer_norm(seed, lead, norm, affine, eps):
    rng = rng_of(seed)
    x = rng.standard_normal(tuple(lead) + tuple(norm)) * 2 + 0.5
    axes = tuple(range(len(lead), x.ndim))
    if affine:
        w, b = rng.standard_normal(norm), rng.standard_normal(norm)
        check_op(lambda x, w, b: F.layer_norm(x, tuple(norm), w, b, eps),
                 lambda x, w, b: ref_normalise(x, axes, eps) * w + b, [x, w, b])
    else:
        check_op(lambda x: F.layer_norm(x, tuple(norm), eps=eps),
                 lambda x: ref_normalise(x, axes, eps), [x])


def test_layer_norm_int_shape_and_weight_only():
    rng = rng_of(0)
    x, w = rng.standard_normal((3, 5)), rng.standard_normal(5)
    check_op(lambda x, w: F.layer_norm(x, 5, w), lambda x, w: ref_normalise(x, (1,), 1e-5) * w,
             [x, w])


def ref_group_norm(x, groups, w, b, eps):
    n, c = x.shape[:2]
    out = np.empty_like(x)
    per = c // groups
    for i in range(n):
        for g in range(groups):
            block = x[i, g * per:(g + 1) * per]
            out[i, g * per:(g + 1) * per] = (block - block.mean()) / np.sqrt(block.var() + eps)
    cs = (1, c) + (1,) * (x.ndim - 2)
    if w is not None:
        out = out * w.reshape(cs)
    if b is not None:
        out = out + b.reshape(cs)
    return out


@given(seed=seeds, n=st.integers(1, 3), groups=st.integers(1, 3), per=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 4), min_size=0, max_size=2), affine=st.booleans())
def test_group_norm(seed, n, groups, per, spatial, affine):
    rng = rng_of(seed)
    c = groups * per
    x = rng.standard_normal((n, c) + tuple(spatial))
    assume(per * math.prod(spatial) > 1)  # a group of one element normalises to 0
    if affine:
        w, b = rng.standard_normal(c), rng.standard_normal(c)
        check_op(lambda x, w, b: F.group_norm(x, groups, w, b),
                 lambda x, w, b: ref_group_norm(x, groups, w, b, 1e-5), [x, w, b])
    else:
        check_op(lambda x: F.group_norm(x, groups, eps=1e-3),
                 lambda x: ref_group_norm(x, groups, None, None, 1e-3), [x])


def ref_batch_norm_train(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    cs = (1, -1) + (1,) * (x.ndim - 2)
    return ref_normalise(x, axes, eps) * w.reshape(cs) + b.reshape(cs)


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2))
def test_batch_norm_training(seed, n, c, spatial):
    assume(n * math.prod(spatial) > 1)
    rng = rng_of(seed)
    x = rng.standard_normal((n, c) + tuple(spatial)) * 1.5 - 0.3
    w, b = rng.standard_normal(c), rng.standard_normal(c)

    def fn(x, w, b):  # fresh running stats per call: check_op runs fn many times
        rm = mg.zeros(c, dtype=x.dtype)
        rv = mg.ones(c, dtype=x.dtype)
        return F.batch_norm(x, rm, rv, w, b, training=True)

    check_op(fn, lambda x, w, b: ref_batch_norm_train(x, w, b, 1e-5), [x, w, b])
    # without running statistics (track_running_stats=False)
    check_op(lambda x: F.batch_norm(x, None, None, training=True),
             lambda x: ref_normalise(x, (0,) + tuple(range(2, x.ndim)), 1e-5), [x], grad=False)


@given(seed=seeds, n=st.integers(2, 4), c=st.integers(1, 3), hw=st.integers(1, 3),
       momentum=st.sampled_from([0.1, 0.5, 1.0]))
def test_batch_norm_running_stats(seed, n, c, hw, momentum):
    rng = rng_of(seed)
    x = rng.standard_normal((n, c, hw, hw))
    rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    rm, rv = mg.tensor(rm0), mg.tensor(rv0)
    v0 = rm._vc[0]
    F.batch_norm(mg.tensor(x), rm, rv, training=True, momentum=momentum)
    flat = np.moveaxis(x, 1, 0).reshape(c, -1)
    exp_m = (1 - momentum) * rm0 + momentum * flat.mean(1)
    exp_v = (1 - momentum) * rv0 + momentum * flat.var(1, ddof=1)  # unbiased, as PyTorch
    np.testing.assert_allclose(rm.numpy(), exp_m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv.numpy(), exp_v, rtol=1e-12, atol=1e-12)
    assert rm._vc[0] == v0 + 1  # the in-place update is visible to saved-tensor checks
    # evaluation mode reads the running stats and leaves them alone
    before = rm.numpy().copy()
    F.batch_norm(mg.tensor(x), rm, rv, training=False)
    np.testing.assert_array_equal(rm.numpy(), before)


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2))
def test_batch_norm_eval(seed, n, c, spatial):
    rng = rng_of(seed)
    x = rng.standard_normal((n, c) + tuple(spatial))
    rm, rv = rng.standard_normal(c), rng.uniform(0.3, 2, c)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    cs = (1, -1) + (1,) * len(spatial)

    def ref(x, w, b):
        return (x - rm.reshape(cs)) / np.sqrt(rv.reshape(cs) + 1e-5) * w.reshape(cs) + \
            b.reshape(cs)

    def fn(x, w, b):
        return F.batch_norm(x, mg.tensor(rm, dtype=x.dtype), mg.tensor(rv, dtype=x.dtype), w, b)

    check_op(fn, ref, [x, w, b])


def test_norm_float16_input_keeps_dtype():
    x = mg.tensor(rng_of(1).standard_normal((2, 4, 3)), dtype=mg.float16)
    assert F.layer_norm(x, 3).dtype == mg.float16
    assert F.group_norm(x, 2).dtype == mg.float16
    assert F.batch_norm(x, None, None, training=True).dtype == mg.float16


# ====================================================================== pooling
def ref_out_size(n, k, s, p, d, ceil_mode):
    """The output length from PyTorch's docs: ⌊ or ⌈ (n + 2p − d(k−1) − 1)/s ⌉ + 1, and in
    ceil mode the last window must start inside the input or its left padding."""
    span = (n + 2 * p - d * (k - 1) - 1) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def ref_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override=None):
    n, c, h, w = x.shape
    oh = ref_out_size(h, k[0], s[0], p[0], 1, ceil_mode)
    ow = ref_out_size(w, k[1], s[1], p[1], 1, ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            pool_size = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            total = x[:, :, h0c:h1c, w0c:w1c].sum(axis=(2, 3))
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = (h1c - h0c) * (w1c - w0c)
            out[:, :, i, j] = total / div
    return out


def ref_max_pool2d(x, k, s, p, d, ceil_mode):
    """Values and flat indices; the first maximum in row-major window order wins."""
    n, c, h, w = x.shape
    oh = ref_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = ref_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    vals = np.full((n, c, oh, ow), -np.inf)
    idx = np.full((n, c, oh, ow), -1, dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    for u in range(k[0]):
                        for v in range(k[1]):
                            r, q = i * s[0] - p[0] + u * d[0], j * s[1] - p[1] + v * d[1]
                            if 0 <= r < h and 0 <= q < w and (
                                    idx[a, b, i, j] < 0 or x[a, b, r, q] > vals[a, b, i, j]):
                                vals[a, b, i, j] = x[a, b, r, q]
                                idx[a, b, i, j] = r * w + q
    return vals, idx


pair = st.tuples(st.integers(1, 4), st.integers(1, 4))


@st.composite
def pool_geometry(draw, dilation=False):
    k = draw(pair)
    s = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = draw(st.tuples(st.integers(1, 2), st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    for n, kk, ss, pp, dd in zip((h, w), k, s, p, d):
        assume(ref_out_size(n, kk, ss, pp, dd, ceil_mode) >= 1)
    return k, s, p, d, ceil_mode, (h, w)


@given(seed=seeds, geo=pool_geometry(), count_include_pad=st.booleans(),
       nc=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_avg_pool2d(seed, geo, count_include_pad, nc):
    k, s, p, _, ceil_mode, hw = geo
    x = rng_of(seed).standard_normal(nc + hw)
    check_op(lambda x: F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad),
             lambda x: ref_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad), [x])


def test_avg_pool2d_defaults_3d_input_and_divisor_override():
    x = rng_of(3).standard_normal((2, 5, 7))
    check_op(lambda x: F.avg_pool2d(x, 2), lambda x: ref_avg_pool2d(x[None], (2, 2), (2, 2),
                                                                     (0, 0), False, True)[0], [x])
    x4 = x[None]
    check_op(lambda x: F.avg_pool2d(x, 3, 2, 1, divisor_override=4),
             lambda x: ref_avg_pool2d(x, (3, 3), (2, 2), (1, 1), False, True, 4), [x4])
    # PyTorch takes any non-zero divisor, a negative one too (found by the OpInfo run)
    check_op(lambda x: F.avg_pool2d(x, 3, 2, 1, divisor_override=-2),
             lambda x: ref_avg_pool2d(x, (3, 3), (2, 2), (1, 1), False, True, -2), [x4])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="divisor_override"):
            F.avg_pool2d(mg.tensor(x4), 3, divisor_override=bad)


def _all_windows_hit_input(hw, k, s, p, d, ceil_mode):
    for n, kk, ss, pp, dd in zip(hw, k, s, p, d):
        for o in range(ref_out_size(n, kk, ss, pp, dd, ceil_mode)):
            if not any(0 <= o * ss - pp + u * dd < n for u in range(kk)):
                return False
    return True


@given(seed=seeds, geo=pool_geometry(dilation=True),
       nc=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_max_pool2d(seed, geo, nc):
    k, s, p, d, ceil_mode, hw = geo
    assume(_all_windows_hit_input(hw, k, s, p, d, ceil_mode))
    x = distinct(rng_of(seed), nc + hw)
    check_op(lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True),
             lambda x: ref_max_pool2d(x, k, s, p, d, ceil_mode), [x])
    check_op(lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode),
             lambda x: ref_max_pool2d(x, k, s, p, d, ceil_mode)[0], [x], grad=False)


def test_max_pool2d_ties_and_overlap():
    # ties: the first maximum in the window wins, and only it gets the gradient
    x = mg.tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.item() == 0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 0], [0, 0]])
    # overlapping windows that pick the same element accumulate its gradient
    x = mg.tensor(np.array([[[[0., 5., 1.], [0., 0., 0.], [0., 3., 2.]]]]), requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[0, 2, 0], [0, 0, 0], [0, 2, 0]])


def test_max_pool2d_window_of_padding_only():
    # PyTorch allows windows that hold no input element (dilation); they give −inf, index −1
    x = mg.tensor(np.arange(1., 12.).reshape(1, 1, 1, 11), requires_grad=True)
    y, idx = F.max_pool2d(x, (2, 1), (3, 3), (1, 0), (2, 2), return_indices=True)
    assert np.isneginf(y.detach().numpy()).all() and (idx.numpy() == -1).all()
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)


# ====================================================================== interpolate
def ref_nearest_index(dst, n_in, n_out, scale_factor, exact):
    """PyTorch's nearest source index; the scale is a float32 (as in PyTorch's kernels)."""
    scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(n_in / n_out)
    pos = np.float32(dst) + (np.float32(0.5) if exact else np.float32(0))
    return min(int(math.floor(pos * scale)), n_in - 1)


def ref_linear_coord(dst, n_in, n_out, scale_factor, align_corners):
    """(i0, i1, λ): source position of output ``dst`` under PyTorch's linear coordinates."""
    if align_corners:
        src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        scale = 1.0 / scale_factor if scale_factor else n_in / n_out
        src = max(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    return i0, i1, src - i0 if i1 > i0 else 0.0


def ref_resize_2d(x, out_hw, scales, mode, align_corners):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            if mode.startswith("nearest"):
                ex = mode == "nearest-exact"
                r = ref_nearest_index(i, h, oh, scales[0], ex)
                q = ref_nearest_index(j, w, ow, scales[1], ex)
                out[:, :, i, j] = x[:, :, r, q]
            else:
                r0, r1, a = ref_linear_coord(i, h, oh, scales[0], align_corners)
                q0, q1, b = ref_linear_coord(j, w, ow, scales[1], align_corners)
                out[:, :, i, j] = ((1 - a) * (1 - b) * x[:, :, r0, q0]
                                   + (1 - a) * b * x[:, :, r0, q1]
                                   + a * (1 - b) * x[:, :, r1, q0] + a * b * x[:, :, r1, q1])
    return out


@given(seed=seeds, hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       mode=st.sampled_from(["nearest", "nearest-exact", "bilinear"]),
       align_corners=st.booleans(), by_size=st.booleans(),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       scale=st.tuples(*[st.sampled_from([0.5, 1 / 3, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0])] * 2),
       recompute=st.booleans())
def test_interpolate_2d(seed, hw, mode, align_corners, by_size, size, scale, recompute):
    x = rng_of(seed).standard_normal((2, 1) + hw)
    ac = align_corners if mode == "bilinear" else None
    if by_size:
        out_hw, scales, kwargs = size, (None, None), dict(size=size)
    else:
        out_hw = tuple(int(math.floor(n * s)) for n, s in zip(hw, scale))
        assume(min(out_hw) >= 1)
        scales = (None, None) if recompute else scale
        kwargs = dict(scale_factor=scale, recompute_scale_factor=recompute)
    check_op(lambda x: F.interpolate(x, mode=mode, align_corners=ac, **kwargs),
             lambda x: ref_resize_2d(x, out_hw, scales, mode, ac), [x])


@given(seed=seeds, n_in=st.integers(1, 6), n_out=st.integers(1, 9), align_corners=st.booleans())
def test_interpolate_linear_1d(seed, n_in, n_out, align_corners):
    x = rng_of(seed).standard_normal((2, 2, n_in))

    def ref(x):
        out = np.zeros((2, 2, n_out))
        for o in range(n_out):
            i0, i1, lam = ref_linear_coord(o, n_in, n_out, None, align_corners)
            out[..., o] = (1 - lam) * x[..., i0] + lam * x[..., i1]
        return out

    check_op(lambda x: F.interpolate(x, size=n_out, mode="linear", align_corners=align_corners),
             ref, [x])


def test_interpolate_trilinear_and_nearest_3d():
    x = rng_of(5).standard_normal((1, 1, 2, 3, 3))
    size = (3, 2, 5)

    def tri(x):
        out = np.zeros((1, 1) + size)
        for a in range(size[0]):
            for b in range(size[1]):
                for c in range(size[2]):
                    acc = 0.0
                    for (i, wi) in zip(ref_linear_coord(a, 2, size[0], None, True)[:2],
                                       _lin_w(a, 2, size[0])):
                        for (j, wj) in zip(ref_linear_coord(b, 3, size[1], None, True)[:2],
                                           _lin_w(b, 3, size[1])):
                            for (k, wk) in zip(ref_linear_coord(c, 3, size[2], None, True)[:2],
                                               _lin_w(c, 3, size[2])):
                                acc = acc + wi * wj * wk * x[..., i, j, k]
                    out[..., a, b, c] = acc
        return out

    check_op(lambda x: F.interpolate(x, size=size, mode="trilinear", align_corners=True), tri,
             [x])
    check_op(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
             lambda x: x.repeat(2, 2).repeat(2, 3).repeat(2, 4), [x])


def _lin_w(dst, n_in, n_out):
    lam = ref_linear_coord(dst, n_in, n_out, None, True)[2]
    return (1 - lam, lam)


def test_interpolate_integer_nearest_and_identity():
    x = mg.tensor(np.arange(6).reshape(1, 1, 2, 3))
    y = F.interpolate(x, scale_factor=2)
    assert y.dtype == mg.int64
    np.testing.assert_array_equal(y.numpy()[0, 0], np.arange(6).reshape(2, 3).repeat(2, 0)
                                  .repeat(2, 1))
    z = F.interpolate(x, size=(2, 3))
    np.testing.assert_array_equal(z.numpy(), x.numpy())
    assert z.data is not x.data  # a copy, as PyTorch


# ====================================================================== pixel shuffle
def ref_pixel_shuffle(x, r):
    *lead, c, h, w = x.shape
    out = np.zeros((*lead, c // (r * r), h * r, w * r))
    for ch in range(c // (r * r)):
        for i in range(r):
            for j in range(r):
                out[..., ch, i::r, j::r] = x[..., ch * r * r + i * r + j, :, :]
    return out


@given(seed=seeds, lead=st.lists(st.integers(1, 2), min_size=0, max_size=2),
       c=st.integers(1, 2), r=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3))
def test_pixel_shuffle_and_unshuffle(seed, lead, c, r, h, w):
    x = rng_of(seed).standard_normal(tuple(lead) + (c * r * r, h, w))
    check_op(lambda x: F.pixel_shuffle(x, r), lambda x: ref_pixel_shuffle(x, r), [x])
    y = ref_pixel_shuffle(x, r)
    # pixel_unshuffle is the inverse map: y → x
    check_op(lambda y: F.pixel_unshuffle(y, r), lambda y: x, [y])


# ====================================================================== dropout, embedding
def test_dropout_mask_scale_and_gradient():
    x = mg.tensor(np.ones((200, 50)), requires_grad=True)
    y = F.dropout(x, 0.3)
    vals = np.unique(y.detach().numpy())
    np.testing.assert_allclose(vals, [0, 1 / 0.7])
    kept = (y.detach().numpy() != 0).mean()
    assert abs(kept - 0.7) < 0.02
    g = np.random.default_rng(0).standard_normal((200, 50))
    y.backward(mg.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), g * y.detach().numpy())  # x = 1: y is the mask


def test_dropout_seeded_runs_repeat():
    x = mg.tensor(np.ones((8, 9)))
    mg.manual_seed(123)
    a = F.dropout(x, 0.5).numpy()
    mg.manual_seed(123)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    g1, g2 = mg.Generator().manual_seed(7), mg.Generator().manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5, generator=g1).numpy(),
                                  F.dropout(x, 0.5, generator=g2).numpy())
    assert not np.array_equal(F.dropout(x, 0.5, generator=g1).numpy(),
                              F.dropout(x, 0.5, generator=g1).numpy())


def test_dropout_identity_and_edges():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), 0)
    assert F.dropout(x.float(), 0.2).dtype == mg.float32
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)
    with pytest.raises(RuntimeError, match="generator is on"):
        class _FakeGen:  # a generator on another device is refused
            device = mg.device("cuda")
        F.dropout(x, 0.5, generator=_FakeGen())
    y = x.clone()
    assert F.dropout(y, 0.5, inplace=True) is y
    out = y.numpy()
    assert np.all((out == 0) | (out == 2 * x.numpy()))


@given(seed=seeds, vocab=st.integers(1, 6), dim=st.integers(1, 4),
       idx_shape=st.lists(st.integers(1, 4), min_size=0, max_size=2), pad=st.booleans())
def test_embedding(seed, vocab, dim, idx_shape, pad):
    rng = rng_of(seed)
    w = rng.standard_normal((vocab, dim))
    idx = rng.integers(0, vocab, idx_shape)
    padding_idx = int(rng.integers(-vocab, vocab)) if pad else None

    def ref(w, idx):
        out = np.zeros(tuple(idx_shape) + (dim,))
        for pos in np.ndindex(*idx.shape):
            out[pos] = w[idx[pos]]
        return out

    # the padding row gets no gradient by definition (differences would see one): checked below
    check_op(lambda w, idx: F.embedding(idx, w, padding_idx), ref, [w, idx],
             grad=padding_idx is None)
    if padding_idx is not None:  # the padding row gets no gradient, the others accumulate
        wt = mg.tensor(w, requires_grad=True)
        F.embedding(mg.tensor(idx), wt, padding_idx).sum().backward()
        counts = np.bincount(idx.ravel(), minlength=vocab).astype(float)
        counts[padding_idx % vocab] = 0
        np.testing.assert_array_equal(wt.grad.numpy(), np.repeat(counts[:, None], dim, 1))


@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       p=st.sampled_from([1.0, 2.0, 3.0, float("inf")]), data=st.data())
def test_normalize(seed, shape, p, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rng_of(seed).standard_normal(shape)

    def ref(x):
        nrm = np.linalg.norm(np.moveaxis(x, dim, -1), ord=p, axis=-1, keepdims=True)
        return x / np.maximum(np.moveaxis(nrm, -1, dim), 1e-12)

    check_op(lambda x: F.normalize(x, p, dim), ref, [x])


def test_normalize_zero_vector_gradient_is_finite():
    # x / max(‖x‖, eps) at x = 0: the norm is clamped, so d/dx = 1/eps (PyTorch's value), not NaN
    x = mg.tensor(np.zeros((2, 3)), requires_grad=True)
    F.normalize(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1e12)


# ====================================================================== the F namespace
def test_functional_namespace_and_inplace_activations():
    for name in ["relu", "leaky_relu", "silu", "gelu", "softplus", "elu", "logsigmoid", "sigmoid",
                 "tanh", "softmax", "log_softmax", "linear", "pad", "one_hot", "layer_norm",
                 "group_norm", "batch_norm", "avg_pool2d", "max_pool2d", "interpolate",
                 "pixel_shuffle", "pixel_unshuffle", "dropout", "embedding", "mse_loss",
                 "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                 "cross_entropy", "nll_loss", "gaussian_nll_loss"]:
        assert callable(getattr(F, name)), name
    x = np.array([[-1.0, 2.0], [0.5, -3.0]])
    check_op(lambda t: F.leaky_relu(t, 0.2), lambda t: np.where(t > 0, t, 0.2 * t), [x])
    t = mg.tensor(x)
    out = F.relu(t, inplace=True)
    assert out is t
    np.testing.assert_array_equal(t.numpy(), np.maximum(x, 0))
    # in place inside a graph: gradients flow through the rewritten tensor
    a = mg.tensor(x, requires_grad=True)
    b = a * 1
    F.elu(b, inplace=True).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.where(x > 0, 1, np.exp(x)))
    s = F.softmax(mg.tensor(x, dtype=mg.float32), dim=1, dtype=mg.float64)
    assert s.dtype == mg.float64
    check_op(lambda t: F.log_softmax(t, 0),
             lambda t: t - np.log(np.exp(t).sum(0, keepdims=True)), [x])


# ====================================================================== argument errors
def test_normalisation_errors():
    x = mg.tensor(np.zeros((2, 3, 4)))
    with pytest.raises(RuntimeError, match=r"normalized_shape \(3,\) does not match.*\(2, 3, 4\)"):
        F.layer_norm(x, 3)
    with pytest.raises(RuntimeError, match=r"weight of shape \(3,\) does not match.*\(4,\)"):
        F.layer_norm(x, 4, mg.ones(3, dtype=mg.float64))
    with pytest.raises(TypeError, match="floating point"):
        F.layer_norm(mg.tensor(np.zeros((2, 3), dtype=np.int64)), 3)
    with pytest.raises(RuntimeError, match="not divisible into num_groups=2"):
        F.group_norm(x, 2)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        F.group_norm(mg.tensor(np.zeros(4)), 1)
    with pytest.raises(RuntimeError, match="evaluation"):
        F.batch_norm(x, None, None)
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements"):
        F.batch_norm(x, mg.zeros(4, dtype=mg.float64), mg.ones(4, dtype=mg.float64))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(mg.tensor(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(TypeError, match="dtype"):
        F.layer_norm(x, 4, mg.ones(4, dtype=mg.float32))
    # raised before anything changes: a bad weight leaves the running stats untouched
    rm, rv = mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)
    with pytest.raises(RuntimeError, match="weight"):
        F.batch_norm(mg.tensor(np.ones((2, 3, 4))), rm, rv, mg.ones(5, dtype=mg.float64),
                     training=True)
    np.testing.assert_array_equal(rm.numpy(), 0)
    np.testing.assert_array_equal(rv.numpy(), 1)


def test_pooling_and_resampling_errors():
    x = mg.tensor(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.max_pool2d(x, 2, dilation=3)
    with pytest.raises(ValueError, match="at most half of the kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match=r"3-D \(C, H, W\) or 4-D"):
        F.avg_pool2d(mg.tensor(np.zeros((3, 3))), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        F.max_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match="stride must be positive"):
        F.avg_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners can only be set"):
        F.interpolate(x, size=4, align_corners=True)
    with pytest.raises(ValueError, match="'bilinear' needs a 4-D input"):
        F.interpolate(mg.tensor(np.zeros((1, 1, 3))), size=4, mode="bilinear")
    with pytest.raises(NotImplementedError, match="'lanczos' is not implemented"):
        F.interpolate(x, size=4, mode="lanczos")
    with pytest.raises(ValueError, match="has 3 entries but the input has 2 spatial dims"):
        F.interpolate(x, size=(1, 2, 3))
    with pytest.raises(ValueError, match="output size"):
        F.interpolate(x, scale_factor=0.2)
    with pytest.raises(RuntimeError, match=r"channel dim .* \(3\) is not divisible by "
                                           r"upscale_factor² = 4"):
        F.pixel_shuffle(mg.tensor(np.zeros((1, 3, 2, 2))), 2)
    with pytest.raises(RuntimeError, match="not divisible by downscale_factor = 2"):
        F.pixel_unshuffle(x, 2)
    with pytest.raises(TypeError, match="integer indices"):
        F.embedding(mg.tensor([0.0, 1.0]), mg.zeros(3, 2))
    with pytest.raises(IndexError, match="index 3 is out of range for 3 embeddings"):
        F.embedding(mg.tensor([0, 3]), mg.zeros(3, 2))
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(mg.tensor([0, 1]), mg.zeros(3, 2), padding_idx=3)


# ====================================================================== every op on every device
def _device_cases():
    rng = rng_of(11)
    x4 = rng.standard_normal((2, 3, 5, 4))
    w3, b3 = rng.standard_normal(3), rng.standard_normal(3)
    return {
        "layer_norm": (lambda x, w, b: F.layer_norm(x, 4, w[:1].expand(4), b[:1].expand(4)),
                       lambda x, w, b: ref_normalise(x, (3,), 1e-5) * w[0] + b[0], [x4, w3, b3]),
        "group_norm": (lambda x, w, b: F.group_norm(x, 3, w, b),
                       lambda x, w, b: ref_group_norm(x, 3, w, b, 1e-5), [x4, w3, b3]),
        "batch_norm": (lambda x, w, b: F.batch_norm(
                           x, mg.zeros(3, dtype=x.dtype, device=x.device),
                           mg.ones(3, dtype=x.dtype, device=x.device), w, b, training=True),
                       lambda x, w, b: ref_batch_norm_train(x, w, b, 1e-5), [x4, w3, b3]),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
                       lambda x: ref_avg_pool2d(x, (3, 3), (2, 2), (1, 1), True, False), [x4]),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2, 1, 1, 2, return_indices=True),
                       lambda x: ref_max_pool2d(x, (2, 2), (1, 1), (1, 1), (2, 2), False),
                       [distinct(rng, (1, 2, 5, 4))]),
        "bilinear": (lambda x: F.interpolate(x, size=(7, 3), mode="bilinear"),
                     lambda x: ref_resize_2d(x, (7, 3), (None, None), "bilinear", False), [x4]),
        "nearest": (lambda x: F.interpolate(x, scale_factor=1.5),
                    lambda x: ref_resize_2d(x, (7, 6), (1.5, 1.5), "nearest", None), [x4]),
        "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), lambda x: ref_pixel_shuffle(x, 2),
                          [rng.standard_normal((1, 8, 2, 3))]),
        "embedding": (lambda w, i: F.embedding(i, w), lambda w, i: w[i],
                      [rng.standard_normal((5, 3)), rng.integers(0, 5, (2, 4))]),
    }


@pytest.mark.parametrize("name", sorted(_device_cases()))
def test_functional_on_device(device, name):
    fn, ref, arrays = _device_cases()[name]
    check_op(fn, ref, arrays, device=device)


def test_dropout_on_device(device):
    x = mg.ones(50, 40, device=device, requires_grad=True)
    gen = mg.Generator(device).manual_seed(3)
    y = F.dropout(x, 0.25, generator=gen)
    assert y.device == device
    y.sum().backward()
    mask = y.detach().cpu().numpy()
    np.testing.assert_allclose(x.grad.cpu().numpy(), mask)
    assert abs((mask != 0).mean() - 0.75) < 0.03
