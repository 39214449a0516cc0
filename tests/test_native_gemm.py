"""csrc/gemm.cpp (minigen.native.gemm.matmul) against numpy's matmul in float64: shapes drawn
by hypothesis around the micro-kernel tiles and cache blocks (ragged edges, K across the KC
block, N across a thread split), strided and transposed operands, broadcast batches,
accumulate and alpha, 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minigen import _native

pytestmark = pytest.mark.skipif(not _native.available(), reason="minigen._C not built")


def _matmul():
    from minigen.native.gemm import matmul
    return matmul


def _operand(rng, shape, dtype, layout):
    """An array of ``shape`` whose memory layout is C order, Fortran order, a transposed view
    or a strided slice of a bigger array."""
    x = rng.standard_normal(shape)
    if layout == "F":
        return np.asfortranarray(x.astype(dtype))
    if layout == "T":   # a swapaxes view of a C array
        return np.ascontiguousarray(np.swapaxes(x, -1, -2).astype(dtype)).swapaxes(-1, -2)
    if layout == "strided":
        big = np.zeros(shape[:-2] + (2 * shape[-2], 3 * shape[-1]), dtype=dtype)
        view = big[..., ::2, 1::3]
        view[...] = x
        return view
    return x.astype(dtype)


def _tol(dtype, k):
    return (1e-5 if dtype == np.float32 else 1e-13) * max(1.0, np.sqrt(k))


dims = st.one_of(st.integers(1, 40), st.sampled_from([63, 64, 65, 95, 96, 97, 255, 257, 300]))
layouts = st.sampled_from(["C", "F", "T", "strided"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(m=dims, n=dims, k=dims, la=layouts, lb=layouts, accumulate=st.booleans(),
       alpha=st.sampled_from([1.0, -1.0, 0.5]), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_matmul_2d(dtype, m, n, k, la, lb, accumulate, alpha, seed):
    matmul = _matmul()
    rng = np.random.default_rng(seed)
    a = _operand(rng, (m, k), dtype, la)
    b = _operand(rng, (k, n), dtype, lb)
    out = rng.standard_normal((m, n)).astype(dtype)
    before = out.astype(np.float64)
    a0, b0 = a.copy(), b.copy()
    matmul(a, b, out, accumulate=accumulate, alpha=alpha)
    want = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + (before if accumulate else 0)
    np.testing.assert_allclose(out, want, rtol=_tol(dtype, k), atol=_tol(dtype, k))
    np.testing.assert_array_equal(a, a0)                    # inputs untouched
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(batch_a=st.sampled_from([(), (1,), (3,), (2, 1), (2, 3)]),
       batch_b=st.sampled_from([(), (1,), (3,), (1, 3)]), m=dims, n=dims, k=st.integers(1, 70),
       la=layouts, lb=layouts, seed=st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_matmul_batched_broadcast(dtype, batch_a, batch_b, m, n, k, la, lb, seed):
    matmul = _matmul()
    rng = np.random.default_rng(seed)
    a = _operand(rng, batch_a + (m, k), dtype, la)
    b = _operand(rng, batch_b + (k, n), dtype, lb)
    got = matmul(a, b)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=_tol(dtype, k), atol=_tol(dtype, k))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(32, 3920, 288), (200, 64, 600), (4, 33, 9000)])
def test_matmul_threads_large(threads, shape):
    """Products above the threading threshold, split by columns or by rows."""
    matmul = _matmul()
    C = _native.module()
    old = C.num_threads()
    C.set_num_threads(threads)
    try:
        m, n, k = shape
        rng = np.random.default_rng(m + n + k)
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        got = matmul(a, b)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4,
                                   atol=_tol(np.float32, k))
        # a batch of them, split by batch entry
        ab = np.stack([a[:, :64], a[:, 64:128]])
        bb = np.stack([b[:64, :40], b[64:128, :40]])
        np.testing.assert_allclose(matmul(ab, bb), ab.astype(np.float64) @ bb, rtol=1e-4,
                                   atol=1e-4)
    finally:
        C.set_num_threads(old)


def test_matmul_negative_strides_and_engine_matmul():
    """Reversed views are copied, not rejected; the engine's matmul (which routes float
    products here) takes them and non-native byte orders, forward and backward."""
    import minigen as mg
    matmul = _matmul()
    rng = np.random.default_rng(3)
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((5, 9)).astype(np.float32)
    np.testing.assert_allclose(matmul(a[::-1], b[:, ::-1]), a[::-1] @ b[:, ::-1], rtol=1e-5,
                               atol=1e-5)
    for x, y in ((a[::-1], b), (a.astype(">f4"), b.astype(">f4"))):
        tx, ty = mg.tensor(x, requires_grad=True), mg.tensor(y, requires_grad=True)
        out = tx @ ty
        np.testing.assert_allclose(out.detach().numpy(), x.astype(np.float64) @ y, rtol=1e-5,
                                   atol=1e-5)
        out.sum().backward()
        np.testing.assert_allclose(tx.grad.numpy(), np.ones((7, 9)) @ y.astype(np.float64).T,
                                   rtol=1e-5, atol=1e-5)


def test_matmul_zero_k_and_empty():
    matmul = _matmul()
    a = np.ones((3, 0), np.float32)
    b = np.ones((0, 4), np.float32)
    out = np.full((3, 4), 7.0, np.float32)
    np.testing.assert_array_equal(matmul(a, b, out), np.zeros((3, 4)))
    out[...] = 7.0
    np.testing.assert_array_equal(matmul(a, b, out, accumulate=True), np.full((3, 4), 7.0))
    assert matmul(np.ones((0, 5)), np.ones((5, 2))).shape == (0, 2)


def test_matmul_errors():
    matmul = _matmul()
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="share a dtype"):
        _native.module().gemm(a, np.ones((4, 2), np.float64), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="do not give"):
        matmul(a, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        matmul(a, np.ones((4, 2), np.float32), np.empty((3, 3), np.float32))
    buf = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        matmul(buf[:3, :2], buf[:2, :3], buf[1:, 1:])
    matmul(buf[1:, :1], buf[:1, 1:], buf[1:, 1:], accumulate=True)   # side by side: fine
    np.testing.assert_array_equal(buf[1:, 1:], 2.0)
    with pytest.raises(ValueError, match="at least 2-D"):
        matmul(np.ones(3, np.float32), a)


def test_micro_kernel_matches_the_cpu():
    """The GEMM picks the widest micro-kernel this CPU runs (a build that silently fell back to
    the portable SSE2 kernel ran 5× slower and passed every other test)."""
    import platform
    isa = _native.module().gemm_isa()
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not flags:
        pytest.skip("x86-64 Linux only")
    if "avx512f" in flags:
        assert isa == "avx512f"
    elif {"avx2", "fma"} <= flags:
        assert isa == "avx2+fma"
    else:
        assert isa == "portable"
