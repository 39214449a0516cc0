"""GPU hazards of the flow (logdet family) and noise-schedule Triton kernels, checked in the
interpreter: mismatched actnorm dtypes are refused (they change a loop-carried type, a GPU
compile error the interpreter accepts), non-contiguous inputs give the reference's results;
and the actnorm/coupling kernels against the numpy reference in float32/float64 — here in the
interpreter, on the GPU under the ``gpu`` mark."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
from minigen import schedules as S
from minigen.kernels._triton import unavailable
from minigen.reference import logdet as RL
from minigen.reference import noise_schedule as RN

interpreter = pytest.mark.skipif(unavailable("cpu") is not None,
                                 reason=f"triton on cpu: {unavailable('cpu')}")
# the same kernels in Triton's interpreter (CI) and compiled on a GPU
DEVICES = [pytest.param("cpu", marks=interpreter),
           pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               unavailable("cuda") is not None, reason=f"triton on cuda: {unavailable('cuda')}")])]


def _xp(device):
    if device == "cpu":
        return np
    import cupy
    return cupy


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _tol(dt):
    return dict(rtol=1e-12, atol=1e-12) if dt == np.float64 else dict(rtol=2e-5, atol=2e-5)


# ---------------------------------------------------------------------------- actnorm dtypes
@interpreter
def test_actnorm_kernels_refuse_mixed_dtypes():
    from minigen.kernels import logdet as K
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=r"one dtype, got x float32, log_scale float64"):
        K.actnorm_forward(x, np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"saved float64, log_scale float32"):
        K.actnorm_backward(np.ones((2, 3, 4)), None, np.ones((2, 3, 4)),
                           np.zeros(3, np.float32))


def test_actnorm_op_refuses_mixed_dtypes_before_running():
    x = mg.ones(2, 3, 4, dtype=mg.float32, requires_grad=True)
    with pytest.raises(TypeError, match=r"actnorm: log_scale has dtype float64, input float32"):
        mg.actnorm(x, mg.zeros(3, dtype=mg.float64), mg.zeros(3, dtype=mg.float32))
    with pytest.raises(TypeError, match=r"actnorm: bias has dtype float64, input float32"):
        mg.actnorm(x, mg.zeros(3, dtype=mg.float32), mg.zeros(3, dtype=mg.float64))
    assert x.grad is None


# ------------------------------------------------------------ noise schedule: any layout in
def _noncontig(a):
    """A view of ``a``'s values that is not C-contiguous (every other element of a larger
    array, transposed back)."""
    big = np.zeros(a.shape[::-1] + (2,), a.dtype)
    big[..., 0] = a.T
    v = big[..., 0].T
    assert not v.flags.c_contiguous and np.array_equal(v, a)
    return v


@interpreter
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_noise_schedule_kernels_on_non_contiguous_inputs(dt):
    from minigen.kernels import noise_schedule as K
    rng = np.random.default_rng(2)
    s = S.NoiseSchedule(20, "linear")
    n = 3
    x, e, u, z, g = (rng.standard_normal((n, 2, 5)).astype(dt) for _ in range(5))
    t = np.array([0, 7, 19], np.int64)
    tp = np.array([-1, 3, 12], np.int64)
    nc = _noncontig
    np.testing.assert_allclose(K.q_sample(s.table, nc(x), nc(t), nc(e)),
                               RN.q_sample(s.table, x, t, e), **_tol(dt))
    for got, want in zip(K.q_sample_backward(s.table, nc(t), nc(g)),
                         RN.q_sample_backward(s.table, t, g)):
        np.testing.assert_allclose(got, want, **_tol(dt))
    np.testing.assert_allclose(K.predict_x0(s.table, nc(x), nc(t), nc(e)),
                               RN.predict_x0(s.table, x, t, e), **_tol(dt))
    got = K.ddim_step(s.table, nc(x), nc(t), nc(tp), nc(e), nc(u), nc(z), eta=0.3, w=1.5)
    want = RN.ddim_step(s.table, x, t, tp, e, u, z, eta=0.3, w=1.5)
    np.testing.assert_allclose(got[0], want[0], **_tol(dt))
    got = K.ddpm_step(s.table, nc(x), nc(t), nc(e), None, nc(z))
    want = RN.ddpm_step(s.table, x, t, e, None, z)
    np.testing.assert_allclose(got[0], want[0], **_tol(dt))


# ------------------------------------------------------- flow kernels against the reference
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_actnorm_kernels_vs_reference(device, dt, reverse):
    from minigen.kernels import logdet as K
    xp = _xp(device)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 7)).astype(dt)
    ls = (rng.standard_normal(3) * 0.3).astype(dt)
    b = rng.standard_normal(3).astype(dt)
    g = rng.standard_normal(x.shape).astype(dt)
    gl = rng.standard_normal(2).astype(dt)
    out, ld = K.actnorm_forward(xp.asarray(x), xp.asarray(ls), xp.asarray(b), reverse)
    out_r, ld_r = RL.actnorm_forward(x, ls, b, reverse)
    np.testing.assert_allclose(_host(out), out_r, **_tol(dt))
    np.testing.assert_allclose(_host(ld), ld_r, **_tol(dt))
    saved = out_r if reverse else x
    got = K.actnorm_backward(xp.asarray(g), xp.asarray(gl), xp.asarray(saved), xp.asarray(ls),
                             reverse)
    want = RL.actnorm_backward(g, gl, saved, ls, reverse)
    for a, w in zip(got, want):
        np.testing.assert_allclose(_host(a), w, **_tol(dt))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_coupling_kernels_vs_reference(device, dt, reverse):
    from minigen.kernels import logdet as K
    xp = _xp(device)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3, 5)).astype(dt)
    h = rng.standard_normal((2, 4, 3, 5)).astype(dt)
    g = rng.standard_normal(x.shape).astype(dt)
    gl = rng.standard_normal(2).astype(dt)
    out, ld = K.coupling_forward(xp.asarray(x), xp.asarray(h), reverse)
    out_r, ld_r = RL.coupling_forward(x, h, reverse)
    np.testing.assert_allclose(_host(out), out_r, **_tol(dt))
    np.testing.assert_allclose(_host(ld), ld_r, **_tol(dt))
    got = K.coupling_backward(xp.asarray(g), xp.asarray(gl), xp.asarray(x), xp.asarray(h),
                              reverse)
    want = RL.coupling_backward(g, gl, x, h, reverse)
    for a, w in zip(got, want):
        np.testing.assert_allclose(_host(a), w, **_tol(dt))
