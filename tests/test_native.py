"""The C++ kernels of minigen._C (csrc/) against numpy references of the same equations.

Each reference below is the kernel's comment block written with numpy arrays, computed in the
kernel's dtype with Python-float scalars (as PyTorch does), so float64 agrees to ~1e-15 and
float32 to a few ulp. Sizes are odd and some exceed the OpenMP threshold, so both the serial
and the parallel paths run. When torch is importable the optimizers are also checked against
torch.optim itself.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minigen import _native

pytestmark = pytest.mark.skipif(
    not _native.available(),
    reason=f"native extension minigen._C unavailable: {_native.reason()} "
           "(pip install -e . builds it)")

C = _native.module() if _native.available() else None
DTYPES = [np.float32, np.float64]
# 1 and 7: shorter than a vector; 1001: a vector tail; 1_048_583 > kParallelMin (2^20): OpenMP path.
SIZES = [1, 7, 1001, 1_048_583]
# The portable build rounds exactly like numpy; -march=native (MINIGEN_NATIVE_ARCH=1) lets the
# compiler fuse a*b+c into one FMA, a few float32 ulp away near values that cancel to zero.
TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-15)}


@pytest.fixture
def threads():
    """Restore the native thread count after a test that changes it."""
    before = C.num_threads()
    yield
    C.set_num_threads(before)


# ---- erf --------------------------------------------------------------------------------------

def erf_reference(x: np.ndarray) -> np.ndarray:
    """math.erf in float64, rounded to x's dtype."""
    return np.array([math.erf(v) for v in x.astype(np.float64).ravel()],
                    dtype=np.float64).reshape(x.shape).astype(x.dtype)


def _erf_inputs(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    special = [0.0, -0.0, info.tiny, -info.tiny, info.smallest_subnormal,
               -info.smallest_subnormal, info.eps, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 3.0,
               5.9, 6.0, 10.0, 26.0, 27.0, -27.0, info.max, -info.max, np.inf, -np.inf]
    grid = np.linspace(-7.0, 7.0, 20_001)
    logs = np.logspace(-40 if dtype == np.float32 else -300, 2, 2_000)
    return np.concatenate([special, grid, logs, -logs]).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_erf_matches_math_erf(dtype):
    x = _erf_inputs(dtype)
    y = C.erf(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    ref = erf_reference(x)
    # glibc's erff/erf are within 1 ulp; rounding the float64 reference adds half an ulp.
    np.testing.assert_array_max_ulp(y, ref, maxulp=2)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(x))  # odd: erf(-0) = -0
    assert np.all(np.abs(y) <= 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_erf_nan_and_infinities(dtype):
    y = C.erf(np.array([np.nan, np.inf, -np.inf], dtype=dtype))
    assert np.isnan(y[0]) and y[1] == 1 and y[2] == -1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5, 7), (100_003,), (317, 331)])
def test_erf_shapes(dtype, shape, rng):
    x = np.asarray(rng.standard_normal(shape) * 2, dtype=dtype)
    x_before = x.copy()
    y = C.erf(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not np.shares_memory(x, y)
    np.testing.assert_array_equal(x, x_before)  # the input is not touched
    np.testing.assert_array_max_ulp(y, erf_reference(x), maxulp=2)


def test_erf_through_minigen_special(rng):
    from minigen.ops.special import erf

    x = rng.standard_normal((4, 9)).astype(np.float32)[:, ::2]  # special.erf makes it contiguous
    np.testing.assert_array_max_ulp(erf(x), erf_reference(x), maxulp=2)


def test_erf_rejects_bad_input():
    with pytest.raises(ValueError, match=r"erf: x must be a float32 or float64 .* got int64"):
        C.erf(np.arange(5, dtype=np.int64))
    with pytest.raises(ValueError, match=r"got float16"):
        C.erf(np.ones(3, dtype=np.float16))
    with pytest.raises(ValueError, match=r"native byte order, got >f8"):
        C.erf(np.ones(3, dtype=">f8"))
    with pytest.raises(ValueError, match=r"erf: x must be C-contiguous, got a view of shape "
                                         r"\(4, 2\) with strides \(24, 16\)"):
        C.erf(np.ones((4, 3))[:, ::2])
    with pytest.raises(ValueError, match=r"C-contiguous"):
        C.erf(np.ones((4, 3)).T)
    with pytest.raises(TypeError, match=r"erf: x must be a numpy.ndarray, got list"):
        C.erf([1.0, 2.0])


# ---- add_broadcast (the engine's large adds) ---------------------------------------------
ADD_CASES = [((1_048_583,), (1_048_583,)),            # same shape, over the OpenMP threshold
             ((7, 3), (7, 3)), ((64, 32, 28, 28), (64, 32, 1, 1)),   # the time embedding
             ((5, 3, 1, 9), (5, 3, 1, 1)), ((4, 2, 3), (4, 1, 1)), ((3, 4), (3, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big_shape,small_shape", ADD_CASES)
def test_add_broadcast_matches_numpy(threads, dtype, big_shape, small_shape, rng):
    big = rng.standard_normal(big_shape).astype(dtype)
    small = rng.standard_normal(small_shape).astype(dtype)
    for n in (1, 2):
        C.set_num_threads(n)
        out = np.full(big_shape, np.nan, dtype)
        C.add_broadcast(big, small, out)
        np.testing.assert_array_equal(out, big + small)   # one rounding each: exact


@pytest.mark.parametrize("a_shape,b_shape,native", [
    ((64, 32, 28, 28), (64, 32, 1, 1), True), ((64, 32, 1, 1), (64, 32, 28, 28), True),
    ((64, 32, 28, 28), (64, 32, 28, 28), True), ((2, 300_000), (2, 1), True),
    ((64, 32, 28, 28), (32, 1, 1), False), ((600, 600), (600,), False),   # middle broadcasts
    ((8, 1), (1, 8), False), ((7, 3), (7, 1), False)])                    # outer, small
def test_engine_add_takes_the_native_path_only_where_it_applies(a_shape, b_shape, native, rng):
    """minigen's Add (ops/elementwise.py) against numpy, forward and both gradients, on the
    broadcasts the native kernel takes and on ones it must leave to numpy."""
    import minigen as mg
    from minigen.ops.elementwise import _native_add
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    out_shape = np.broadcast_shapes(a_shape, b_shape)
    assert (_native_add(a, b) is not None) == native
    ta, tb = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    y = ta + tb
    np.testing.assert_array_equal(y.detach().numpy(), a + b)
    g = rng.standard_normal(out_shape).astype(np.float32)
    y.backward(mg.tensor(g))
    np.testing.assert_allclose(ta.grad.numpy(), _unbroadcast(g, a_shape), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(tb.grad.numpy(), _unbroadcast(g, b_shape), rtol=1e-5, atol=1e-3)


def _unbroadcast(g, shape):
    g = g.astype(np.float64)
    while g.ndim > len(shape):
        g = g.sum(0)
    for ax, n in enumerate(shape):
        if n == 1 and g.shape[ax] != 1:
            g = g.sum(ax, keepdims=True)
    return g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes,axis", [
    ([(64, 64, 28, 28), (64, 32, 28, 28)], 1),       # the UNet's skip concatenation
    ([(3, 5, 7), (3, 1, 7), (3, 0, 7), (3, 4, 7)], 1),   # small: numpy's path; an empty input
    ([(2, 300_000), (1, 300_000)], 0), ([(600, 300), (600, 500)], -1)])
def test_engine_cat_matches_numpy(threads, dtype, shapes, axis, rng):
    """minigen.cat (ops/shape.py Cat; the native copy_rows for large inputs) against
    np.concatenate, on one and two threads, and its gradient (slices of g)."""
    import minigen as mg
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    want = np.concatenate(xs, axis=axis)
    for n in (1, 2):
        C.set_num_threads(n)
        ts = [mg.tensor(x, requires_grad=True) for x in xs]
        y = mg.cat(ts, axis)
        np.testing.assert_array_equal(y.detach().numpy(), want)
    g = rng.standard_normal(want.shape).astype(dtype)
    y.backward(mg.tensor(g))
    bounds = np.cumsum([0] + [x.shape[axis] for x in xs])
    for t, a, b in zip(ts, bounds[:-1], bounds[1:]):
        np.testing.assert_array_equal(t.grad.numpy(), np.take(g, np.arange(a, b), axis=axis))


def test_copy_rows_rejects_bad_input():
    out = np.zeros((4, 10), np.float32)
    with pytest.raises(ValueError, match="dst must have shape"):
        C.copy_rows(np.ones((4, 3), np.float32), out[:, :4])
    with pytest.raises(ValueError, match="contiguous, non-overlapping rows"):
        C.copy_rows(np.ones((4, 3), np.float32), out[:, 0:6:2])
    with pytest.raises(ValueError, match="share a dtype"):
        C.copy_rows(np.ones((4, 3)), out[:, :3])
    with pytest.raises(ValueError, match="share memory"):
        C.copy_rows(out[0:1, 0:5], out[0:1, 3:8])


def test_add_broadcast_rejects_bad_input():
    a = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="share a dtype"):
        C.add_broadcast(a, np.ones((4, 1)), np.empty_like(a))
    with pytest.raises(ValueError, match="must divide"):
        C.add_broadcast(a, np.ones(5, np.float32), np.empty_like(a))
    with pytest.raises(ValueError, match="contiguous"):
        C.add_broadcast(np.ones((4, 12), np.float32)[:, ::2], np.ones(4, np.float32),
                        np.empty_like(a))
    with pytest.raises(ValueError, match="share memory"):
        C.add_broadcast(a, np.ones(4, np.float32), a)


# ---- Adam / AdamW -----------------------------------------------------------------------------

def adam_reference(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """The equations of csrc/optim.cpp, in place, with numpy arrays."""
    if decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay != 0:
        g = g + weight_decay * p
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    denom = np.sqrt(v) / math.sqrt(bc2) + eps
    p -= (lr / bc1) * m / denom


def _adam_states(rng, shape, dtype):
    p = rng.standard_normal(shape).astype(dtype)
    return p, np.zeros_like(p), np.zeros_like(p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("decoupled,weight_decay", [(False, 0.0), (False, 0.05), (True, 0.0),
                                                    (True, 0.1)])
def test_adam_step_matches_reference(dtype, size, decoupled, weight_decay, rng):
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                 decoupled=decoupled)
    p, m, v = _adam_states(rng, size, dtype)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    for step in range(1, 6):
        g = rng.standard_normal(size).astype(dtype)
        if step == 3:
            g[: size // 2] = 0  # zero gradients: v decays, denom leans on eps
        C.adam_step(p, g, m, v, step=step, **hyper)
        adam_reference(p_ref, g, m_ref, v_ref, step=step, **hyper)
    for got, want in ((p, p_ref), (m, m_ref), (v, v_ref)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_2d_and_grad_untouched(dtype, rng):
    p, m, v = _adam_states(rng, (37, 29), dtype)
    g = rng.standard_normal((37, 29)).astype(dtype)
    g_before, p_ref, m_ref, v_ref = g.copy(), p.copy(), m.copy(), v.copy()
    C.adam_step(p, g, m, v, 3e-3, 0.8, 0.99, 1e-6, 0.01, 1, False)
    adam_reference(p_ref, g, m_ref, v_ref, 3e-3, 0.8, 0.99, 1e-6, 0.01, 1, False)
    np.testing.assert_array_equal(g, g_before)
    np.testing.assert_allclose(p, p_ref, **TOL[dtype])


def test_adam_step_empty_arrays():
    e = np.zeros(0, dtype=np.float32)
    C.adam_step(e, e.copy(), e.copy(), e.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, True)


def test_adam_step_same_result_for_any_thread_count(threads, rng):
    if not C.build_info()["openmp"]:
        pytest.skip("minigen._C was built without OpenMP: one thread only")
    size = 200_001
    g = rng.standard_normal(size).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        C.set_num_threads(n)
        p, m, v = _adam_states(np.random.default_rng(1), size, np.float32)
        C.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 1, True)
        results.append(p)
    np.testing.assert_array_equal(results[0], results[1])  # elementwise: bit-identical
    np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_step_matches_torch(decoupled, rng):
    torch = pytest.importorskip("torch")
    shape, wd = (64, 33), 0.05
    p = rng.standard_normal(shape)
    tp = torch.tensor(p, requires_grad=True)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([tp], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd, foreach=False)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 6):
        g = rng.standard_normal(shape)
        tp.grad = torch.tensor(g)
        opt.step()
        C.adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, wd, step, decoupled)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    state = opt.state[tp]
    np.testing.assert_allclose(m, state["exp_avg"].numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), rtol=1e-12, atol=1e-14)


def test_adam_step_rejects_bad_input():
    p, g, m, v = (np.zeros(5) for _ in range(4))
    args = (1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match=r"adam_step: param must be a float32 or float64"):
        C.adam_step(np.zeros(5, np.int32), g, m, v, *args)
    with pytest.raises(ValueError, match=r"adam_step: grad is float32 but param is float64"):
        C.adam_step(p, g.astype(np.float32), m, v, *args)
    # same type number, other byte order: still a different dtype (not read as native)
    with pytest.raises(ValueError, match=r"adam_step: grad is >f8 but param is float64"):
        C.adam_step(p, g.astype(">f8"), m, v, *args)
    with pytest.raises(ValueError, match=r"adam_step: exp_avg_sq has shape \(4,\) but param has "
                                         r"shape \(5,\)"):
        C.adam_step(p, g, m, np.zeros(4), *args)
    with pytest.raises(ValueError, match=r"adam_step: exp_avg has shape \(5, 1\)"):
        C.adam_step(p, g, np.zeros((5, 1)), v, *args)
    with pytest.raises(ValueError, match=r"adam_step: grad must be C-contiguous"):
        C.adam_step(p, np.zeros(10)[::2], m, v, *args)
    readonly = np.zeros(5)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"adam_step: exp_avg is read-only"):
        C.adam_step(p, g, readonly, v, *args)
    with pytest.raises(ValueError, match=r"adam_step: exp_avg_sq and exp_avg share memory"):
        C.adam_step(p, g, m, m, *args)
    with pytest.raises(ValueError, match=r"adam_step: step counts from 1"):
        C.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, False)
    with pytest.raises(ValueError, match=r"adam_step: beta2 must be in \[0, 1\)"):
        C.adam_step(p, g, m, v, 1e-3, 0.9, 1.0, 1e-8, 0.0, 1, False)
    with pytest.raises(TypeError, match=r"adam_step: param must be a numpy.ndarray, got list"):
        C.adam_step([0.0] * 5, g, m, v, *args)


# ---- SGD with momentum ------------------------------------------------------------------------

def sgd_reference(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """The equations of csrc/optim.cpp, in place, with numpy arrays."""
    d = g + weight_decay * p if weight_decay != 0 else g
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf[...] = momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


SGD_CASES = [  # momentum, dampening, weight_decay, nesterov
    (0.9, 0.0, 0.0, False),
    (0.9, 0.0, 1e-2, True),
    (0.5, 0.1, 1e-2, False),
    (0.0, 0.0, 1e-2, False),  # plain SGD: buf untouched
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", SGD_CASES)
def test_sgd_momentum_step_matches_reference(dtype, size, momentum, dampening, weight_decay,
                                             nesterov, rng):
    hyper = dict(lr=0.05, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                 nesterov=nesterov)
    p = rng.standard_normal(size).astype(dtype)
    buf = np.full(size, 123.0, dtype=dtype)  # garbage: the first step must not read it
    p_ref, buf_ref = p.copy(), buf.copy()
    for step in range(5):
        g = rng.standard_normal(size).astype(dtype)
        C.sgd_momentum_step(p, g, buf, first_step=step == 0, **hyper)
        sgd_reference(p_ref, g, buf_ref, first_step=step == 0, **hyper)
    np.testing.assert_allclose(p, p_ref, **TOL[dtype])
    np.testing.assert_allclose(buf, buf_ref, **TOL[dtype])
    if momentum == 0:
        assert np.all(buf == 123.0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_step_matches_torch(nesterov, rng):
    torch = pytest.importorskip("torch")
    shape, hyper = (50, 7), dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-2)
    p = rng.standard_normal(shape)
    tp = torch.tensor(p, requires_grad=True)
    opt = torch.optim.SGD([tp], nesterov=nesterov, foreach=False, **hyper)
    buf = np.empty_like(p)
    for step in range(5):
        g = rng.standard_normal(shape)
        tp.grad = torch.tensor(g)
        opt.step()
        C.sgd_momentum_step(p, g, buf, nesterov=nesterov, first_step=step == 0, **hyper)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(buf, opt.state[tp]["momentum_buffer"].numpy(), rtol=1e-12,
                               atol=1e-14)


def test_sgd_momentum_step_rejects_bad_input():
    p, g, b = (np.zeros((3, 4), np.float32) for _ in range(3))
    args = (0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"sgd_momentum_step: buf has shape \(4, 3\) but param "
                                         r"has shape \(3, 4\)"):
        C.sgd_momentum_step(p, g, np.zeros((4, 3), np.float32), *args)
    with pytest.raises(ValueError, match=r"sgd_momentum_step: grad is float64 but param is "
                                         r"float32"):
        C.sgd_momentum_step(p, g.astype(np.float64), b, *args)
    with pytest.raises(ValueError, match=r"sgd_momentum_step: param must be C-contiguous"):
        C.sgd_momentum_step(np.zeros((4, 3), np.float32).T, g, b, *args)
    with pytest.raises(ValueError, match=r"sgd_momentum_step: buf and param share memory"):
        C.sgd_momentum_step(p, g, p, *args)
    with pytest.raises(ValueError, match=r"sgd_momentum_step: momentum must be >= 0"):
        C.sgd_momentum_step(p, g, b, 0.1, -0.9, 0.0, 0.0, False, False)


# ---- threads and build info -------------------------------------------------------------------

def test_num_threads(threads):
    info = C.build_info()
    assert C.num_threads() >= 1
    C.set_num_threads(1)
    assert C.num_threads() == 1
    if info["openmp"]:
        C.set_num_threads(3)
        assert C.num_threads() == 3
    else:
        assert C.num_threads() == 1
    with pytest.raises(ValueError, match=r"set_num_threads: n must be >= 1, got 0"):
        C.set_num_threads(0)


def test_build_info():
    info = C.build_info()
    for key in ("compiler", "compiler_id", "compiler_version", "openmp", "openmp_version",
                "flags", "build_type", "native_arch", "num_threads"):
        assert key in info, key
    assert info["compiler_id"] != "unknown" and info["build_type"] != "unknown"
    assert isinstance(info["openmp"], bool)
    if info["openmp"]:
        assert info["openmp_version"] and "openmp" in info["flags"].lower()
    else:
        assert info["openmp_version"] is None
    assert {"erf", "adam_step", "sgd_momentum_step"} <= set(info["kernels"])
    assert len(set(info["kernels"])) == len(info["kernels"]), "a kernel registered twice"
    assert all(hasattr(C, name) for name in info["kernels"])


def test_info_report_names_the_extension():
    from minigen.info import info_text

    text = info_text()
    assert "✓ native extension minigen._C" in text
    assert "numpy" in text and "cupy" in text and "triton" in text
