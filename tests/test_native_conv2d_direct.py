"""csrc/conv2d_direct.cpp (the groups-1 direct convolution of the native conv2d) against the numpy
reference in float64: forward with and without bias, weight gradient; shapes drawn by
hypothesis around the micro-tile sizes (output channels across the MR-row panels and the NR-
column tiles of ∂Wᵀ, padded rows across NR pixels, K across the KC block), kernel sizes 1–5,
strides 1–3 (the stride phases), paddings 0–3, dilations 1–3; the one-thread path, the split of
a single image's tiles or ∂W's rows over threads, and the split of the batch with per-thread
partial sums; and the argument errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minigen import _native
from minigen.reference import conv2d as ref

pytestmark = pytest.mark.skipif(not _native.available(), reason="minigen._C not built")


def _C():
    return _native.module()


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    C = _C()
    before = C.num_threads()
    C.set_num_threads(request.param)
    yield request.param
    C.set_num_threads(before)


def _case(rng, n, c_in, c_out, h, w, k, s, p, d, dtype):
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in) + k).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    g = rng.standard_normal((n, c_out, ho, wo)).astype(dtype)
    return x, wt, b, g


def _tol(dtype, k):
    return (1e-5 if dtype == np.float32 else 1e-12) * max(1.0, np.sqrt(k))


def _check(n, c_in, c_out, h, w, k, s, p, d, dtype, with_bias, seed):
    C = _C()
    rng = np.random.default_rng(seed)
    x, wt, b, g = _case(rng, n, c_in, c_out, h, w, k, s, p, d, dtype)
    x0, w0, g0 = x.copy(), wt.copy(), g.copy()
    f64 = [a.astype(np.float64) for a in (x, wt, b, g)]
    y = np.full(g.shape, np.nan, dtype)
    C.conv2d_direct_forward(x, wt, b if with_bias else None, y, *s, *p, *d)
    want = ref.conv2d_forward(f64[0], f64[1], f64[2] if with_bias else None, s, p, d, 1)
    scale = np.abs(want).max() + 1
    np.testing.assert_allclose(y, want, atol=_tol(dtype, c_in * k[0] * k[1]) * scale, rtol=0)
    gw = np.full(wt.shape, np.nan, dtype)
    C.conv2d_direct_wgrad(g, x, gw, *s, *p, *d)
    _, want_w, _ = ref.conv2d_backward(f64[3], f64[0], f64[1], s, p, d, 1)
    scale = np.abs(want_w).max() + 1
    np.testing.assert_allclose(gw, want_w, atol=_tol(dtype, n * g[0, 0].size) * scale, rtol=0)
    for a, a0 in ((x, x0), (wt, w0), (g, g0)):
        np.testing.assert_array_equal(a, a0)     # inputs untouched


channels = st.one_of(st.integers(1, 12), st.sampled_from([15, 16, 17, 31, 32, 33, 40]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(n=st.integers(1, 4), c_in=channels, c_out=channels, h=st.integers(1, 12),
       w=st.integers(1, 40), kh=st.integers(1, 5), kw=st.integers(1, 5), sh=st.integers(1, 3),
       sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3), dh=st.integers(1, 3),
       dw=st.integers(1, 3), with_bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # set once per test
def test_direct_matches_reference(threads, dtype, n, c_in, c_out, h, w, kh, kw, sh, sw, ph, pw,
                                  dh, dw, with_bias, seed):
    # keep the kernel inside the padded image (smaller images raise: test_direct_errors)
    h = max(h, dh * (kh - 1) + 1 - 2 * ph)
    w = max(w, dw * (kw - 1) + 1 - 2 * pw)
    _check(n, c_in, c_out, h, w, (kh, kw), (sh, sw), (ph, pw), (dh, dw), dtype, with_bias, seed)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_direct_long_reduction_and_batch_splits(threads, n, stride):
    """K = 40·9 = 360 across the 256-row KC block, 33 output channels (a ragged row panel and
    a second ∂Wᵀ column tile), 28×28 images (many pixel tiles): every thread split."""
    _check(n, 40, 33, 28, 28, (3, 3), (stride, stride), (1, 1), (1, 1), np.float32, True, 5)


def test_direct_empty_batch_and_no_input_channels():
    C = _C()
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y = np.zeros((0, 4, 5, 5), np.float32)
    C.conv2d_direct_forward(x, w, None, y, 1, 1, 1, 1, 1, 1)
    gw = np.full(w.shape, np.nan, np.float32)
    C.conv2d_direct_wgrad(y, x, gw, 1, 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(gw, 0)                  # an empty sum
    x0 = np.zeros((2, 0, 5, 5), np.float32)               # K = 0: y is the bias
    y0 = np.full((2, 4, 5, 5), np.nan, np.float32)
    bias = np.arange(4, dtype=np.float32)
    C.conv2d_direct_forward(x0, np.zeros((4, 0, 3, 3), np.float32), bias, y0, 1, 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(y0, np.broadcast_to(bias.reshape(1, 4, 1, 1), y0.shape))


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_large_images_leave_the_direct_kernel(monkeypatch, limit):
    """Above DIRECT_MAX_IMAGE_BYTES per image the native conv2d takes its GEMM paths (no
    per-thread copy of a huge image); the results agree with the reference either way."""
    from minigen.native import conv2d as nat
    monkeypatch.setattr(nat, "DIRECT_MAX_IMAGE_BYTES", limit)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    g = rng.standard_normal((2, 5, 5, 4))
    calls = []
    real = _C()
    monkeypatch.setattr(nat, "_C", lambda: _Spy(real, calls))
    for stride in [(1, 1), (2, 2)]:
        y = nat.conv2d_forward(x, w, b, stride, (1, 1), (1, 1), 1)
        np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, stride, (1, 1), (1, 1), 1),
                                   rtol=1e-10, atol=1e-10)
        gy = g if stride == (2, 2) else rng.standard_normal(y.shape)
        got = nat.conv2d_backward(gy, x, w, stride, (1, 1), (1, 1), 1)
        want = ref.conv2d_backward(gy, x, w, stride, (1, 1), (1, 1), 1)
        for a, r in zip(got, want):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)
    assert any(c.startswith("conv2d_direct") for c in calls) == (limit > 0)


class _Spy:
    """minigen._C with the names of the kernels called recorded."""

    def __init__(self, module, calls):
        self._module, self._calls = module, calls

    def __getattr__(self, name):
        self._calls.append(name)
        return getattr(self._module, name)


def test_direct_errors():
    C = _C()
    x = np.zeros((2, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    y = np.zeros((2, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="y must have shape"):
        C.conv2d_direct_forward(x, w, None, y[:, :, :4], 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="C_in must match"):
        C.conv2d_direct_forward(x, w[:, :2], None, y, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="share a dtype"):
        C.conv2d_direct_forward(x, w.astype(np.float64), None, y, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="bias must have shape"):
        C.conv2d_direct_forward(x, w, np.zeros(3, np.float32), y, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="larger than the padded image"):
        C.conv2d_direct_forward(x, w, None, y, 1, 1, 0, 0, 3, 3)
    with pytest.raises(ValueError, match="dilation"):
        C.conv2d_direct_forward(x, w, None, y, 1, 1, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="stride"):
        C.conv2d_direct_forward(x, w, None, y, 0, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="contiguous"):
        C.conv2d_direct_forward(x[:, :, :, ::-1], w, None, y, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="share memory|overlap"):
        C.conv2d_direct_forward(y, np.zeros((4, 4, 3, 3), np.float32), None, y,
                                1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="g must have shape"):
        C.conv2d_direct_wgrad(y[:1], x, np.zeros_like(w), 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="gw"):
        C.conv2d_direct_wgrad(y, x, np.zeros((4, 3, 3, 3)), 1, 1, 1, 1, 1, 1)
    with pytest.raises(TypeError):
        C.conv2d_direct_forward(x.tolist(), w, None, y, 1, 1, 1, 1, 1, 1)
