"""The C++ group_norm / group_norm_silu / silu kernels (csrc/normalization.cpp) against the numpy
code of the same primitives (minigen/ops/normalization.py, elementwise.py), forward and
backward; the fused op through check_op (float64 gradcheck); PyTorch when importable; the
integer-factor nearest upsample of F.interpolate."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import minigen as mg
import minigen._native as native
import minigen.nn.functional as F
from minigen.ops.normalization import group_norm_silu
from op_check import check_op

needs_native = pytest.mark.skipif(not native.available(),
                                  reason=f"minigen._C unavailable: {native.reason()}")
seeds = st.integers(0, 2**31 - 1)


def ref_group_norm(x, groups, w, b, eps):
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = ((xg - mu) ** 2).mean(axis=2, keepdims=True)
    out = ((xg - mu) / np.sqrt(var + eps)).reshape(x.shape)
    cs = (1, c) + (1,) * (x.ndim - 2)
    if w is not None:
        out = out * w.reshape(cs)
    if b is not None:
        out = out + b.reshape(cs)
    return out


def ref_silu(z):
    return z / (1 + np.exp(-z))


def _run(fn, arrays, g, use_native, dtype):
    """Outputs and input gradients of fn(*tensors) with the native kernels on or off."""
    with pytest.MonkeyPatch.context() as m:
        if not use_native:
            m.setattr(native, "available", lambda: False)
        ts = [None if a is None else mg.tensor(a.astype(dtype), requires_grad=True)
              for a in arrays]
        y = fn(*ts)
        grads = mg.autograd.grad(y, [t for t in ts if t is not None], mg.tensor(g.astype(dtype)))
    return y.detach().numpy(), [gr.numpy() for gr in grads]


@needs_native
@given(seed=seeds, n=st.integers(1, 3), groups=st.integers(1, 4), per=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 7), min_size=0, max_size=2), affine=st.booleans(),
       fused=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_group_norm_native_matches_numpy(seed, n, groups, per, spatial, affine,
                                         fused, dtype):
    rng = np.random.default_rng(seed)
    c = groups * per
    shape = (n, c) + tuple(spatial)
    x = rng.standard_normal(shape) * 3 + 1
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    g = rng.standard_normal(shape)
    op = group_norm_silu if fused else F.group_norm
    fn = lambda x, w, b: op(x, groups, w, b, eps=1e-5)  # noqa: E731
    yn, gn = _run(fn, [x, w, b], g, True, dtype)
    yr, gr = _run(fn, [x, w, b], g, False, dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-10
    assert yn.dtype == yr.dtype == dtype
    np.testing.assert_allclose(yn, yr, rtol=tol, atol=tol)
    for a, r in zip(gn, gr):
        assert a.shape == r.shape and a.dtype == r.dtype
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, rtol=tol * 10, atol=tol * 10 * scale)


@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 3), per=st.integers(1, 2),
       spatial=st.lists(st.integers(1, 4), min_size=1, max_size=2), affine=st.booleans())
def test_group_norm_silu_check_op(seed, n, groups, per, spatial, affine):
    rng = np.random.default_rng(seed)
    c = groups * per
    x = rng.standard_normal((n, c) + tuple(spatial))
    assume(per * math.prod(spatial) > 1)
    if affine:
        w, b = rng.standard_normal(c), rng.standard_normal(c)
        check_op(lambda x, w, b: group_norm_silu(x, groups, w, b),
                 lambda x, w, b: ref_silu(ref_group_norm(x, groups, w, b, 1e-5)), [x, w, b])
    else:
        check_op(lambda x: group_norm_silu(x, groups, eps=1e-3),
                 lambda x: ref_silu(ref_group_norm(x, groups, None, None, 1e-3)), [x])


@needs_native
@given(seed=seeds, shape=st.lists(st.integers(1, 9), min_size=0, max_size=3),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_silu_native_matches_numpy(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 6
    g = rng.standard_normal(shape)
    yn, (gn,) = _run(F.silu, [x], g, True, dtype)
    yr, (gr,) = _run(F.silu, [x], g, False, dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert yn.shape == yr.shape == tuple(shape)
    np.testing.assert_allclose(yn, yr, rtol=tol, atol=tol)
    np.testing.assert_allclose(gn, gr, rtol=tol, atol=tol)


@needs_native
def test_silu_extremes():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    y = F.silu(mg.tensor(x)).numpy()
    np.testing.assert_allclose(y, [0.0, -100 * math.exp(-100), -20 / (1 + math.exp(20)), 0.0,
                                   20 / (1 + math.exp(-20)), 100.0, 1e4], rtol=1e-6, atol=1e-30)


def test_silu_check_op():
    x = np.random.default_rng(3).standard_normal((3, 4)) * 4
    check_op(F.silu, ref_silu, [x])


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_group_norm_matches_torch(fused, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 12, 5, 7)).astype(np.float32) * 2 + 0.5
    w = rng.standard_normal(12).astype(np.float32) if affine else None
    b = rng.standard_normal(12).astype(np.float32) if affine else None
    g = rng.standard_normal(x.shape).astype(np.float32)
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ms = [None if a is None else mg.tensor(a, requires_grad=True) for a in (x, w, b)]
    yt = torch.nn.functional.group_norm(ts[0], 4, ts[1], ts[2], 1e-5)
    if fused:
        yt = torch.nn.functional.silu(yt)
        ym = group_norm_silu(ms[0], 4, ms[1], ms[2], 1e-5)
    else:
        ym = F.group_norm(ms[0], 4, ms[1], ms[2], 1e-5)
    yt.backward(torch.tensor(g))
    ym.backward(mg.tensor(g))
    np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    for a, t in zip(ms, ts):
        if a is not None:
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_group_norm_silu_bad_input():
    x = mg.randn(2, 6, 3)
    with pytest.raises(RuntimeError, match="not divisible"):
        group_norm_silu(x, 4)
    with pytest.raises(RuntimeError, match="weight of shape"):
        group_norm_silu(x, 3, mg.ones(5))


@needs_native
def test_native_kernel_argument_errors():
    m = native.module()
    x = np.zeros((2, 6, 3), np.float32)
    with pytest.raises(ValueError, match="does not divide"):
        m.group_norm_forward(x, None, None, 4, 1e-5, False)
    with pytest.raises(ValueError, match="weight has dtype"):
        m.group_norm_forward(x, np.ones(6), None, 3, 1e-5, False)
    with pytest.raises(ValueError, match="3-D"):
        m.group_norm_forward(x.reshape(2, 18), None, None, 3, 1e-5, False)
    with pytest.raises(ValueError, match="grad"):
        m.silu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32))


# ---------------------------------------------------------------- nearest, integer factors
@given(seed=seeds, nd=st.integers(1, 3), f=st.integers(1, 3), size=st.integers(1, 4),
       as_size=st.booleans())
def test_interpolate_nearest_integer_factor(seed, nd, f, size, as_size):
    rng = np.random.default_rng(seed)
    shape = (2, 3) + (size,) * nd
    x = rng.standard_normal(shape)
    kw = {"size": size * f} if as_size else {"scale_factor": f}
    idx = np.arange(size * f) // f

    def ref(x):
        for ax in range(2, 2 + nd):
            x = np.take(x, idx, axis=ax)
        return x

    check_op(lambda t: F.interpolate(t, mode="nearest", **kw), ref, [x])


@needs_native
@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 9),
       w=st.integers(1, 9), fh=st.integers(1, 3), fw=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # patched per example
def test_native_upsample_matches_numpy_path(monkeypatch, seed, n, c, h, w, fh, fw, dtype):
    """csrc/resample.cpp against the numpy broadcast path of NearestUpsampleInt (the one every
    non-numpy array takes): forward exactly, backward up to the order of the block sums."""
    from minigen.ops import pooling
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    g = rng.standard_normal((n, c, h * fh, w * fw)).astype(dtype)

    def run():
        t = mg.tensor(x, requires_grad=True)
        y = F.interpolate(t, scale_factor=(fh, fw), mode="nearest")
        y.backward(mg.tensor(g))
        return y.detach().numpy(), t.grad.numpy()

    y_native, gx_native = run()
    with monkeypatch.context() as mp:
        mp.setattr(pooling, "_native_resample", lambda a, factors: None)
        y_numpy, gx_numpy = run()
    np.testing.assert_array_equal(y_native, y_numpy)
    np.testing.assert_allclose(gx_native, gx_numpy, rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


@needs_native
def test_native_upsample_argument_errors():
    m = native.module()
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match="y must have shape"):
        m.upsample_nearest2d(x, np.zeros((2, 3, 8, 9), np.float32), 2, 2)
    with pytest.raises(ValueError, match="share a dtype"):
        m.upsample_nearest2d(x, np.zeros((2, 3, 8, 10)), 2, 2)
    with pytest.raises(ValueError, match="factors"):
        m.upsample_nearest2d(x, np.zeros((2, 3, 0, 10), np.float32), 0, 2)
    with pytest.raises(ValueError, match="4-D"):
        m.upsample_nearest2d(x[0], np.zeros((3, 8, 10), np.float32), 2, 2)
    with pytest.raises(ValueError, match="contiguous"):
        m.upsample_nearest2d_backward(np.zeros((2, 3, 8, 10), np.float32), x[..., ::-1], 2, 2)


def test_interpolate_nearest_matches_torch_mixed():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for kw in ({"scale_factor": 2}, {"scale_factor": (3, 1)}, {"scale_factor": 2.5},
               {"size": (8, 7)}, {"size": (12, 10)}):
        tx = torch.tensor(x, requires_grad=True)
        mx = mg.tensor(x, requires_grad=True)
        yt = torch.nn.functional.interpolate(tx, mode="nearest", **kw)
        ym = F.interpolate(mx, mode="nearest", **kw)
        np.testing.assert_array_equal(ym.detach().numpy(), yt.detach().numpy())
        g = np.random.default_rng(2).standard_normal(yt.shape).astype(np.float32)
        yt.backward(torch.tensor(g))
        ym.backward(mg.tensor(g))
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
