"""The Triton conv2d kernels (forward, input gradient, weight gradient; conv_transpose2d) and
the attention kernels in float64, float32 and bfloat16 against the numpy reference, on small
shapes: in Triton's interpreter here (where it supports the dtype) and compiled on a GPU under
the ``gpu`` mark. The reference runs in float64 on the inputs as the kernel sees them (bfloat16
inputs rounded first), so the tolerance measures the kernel alone: float64 to 1e-12, float32 to
1e-5 (IEEE products: TF32 is off by default), bfloat16 to 2⁻⁷ of the output's scale (the output
is stored in bfloat16)."""
from __future__ import annotations

import numpy as np
import pytest

from minigen.kernels._triton import unavailable
from minigen.reference import attention as RA
from minigen.reference import conv2d as RC

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # [dev] has it; without it bfloat16 is skipped
    BF16 = None

_CPU_WHY = unavailable("cpu")
_CUDA_WHY = unavailable("cuda")
DEVICES = [pytest.param("cpu", marks=pytest.mark.skipif(_CPU_WHY is not None,
                                                        reason=f"triton on cpu: {_CPU_WHY}")),
           pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               _CUDA_WHY is not None, reason=f"triton on cuda: {_CUDA_WHY}")])]
DTYPES = ["float64", "float32", "bfloat16"]


def _dtype(name, device):
    if name != "bfloat16":
        return np.dtype(name)
    if BF16 is None:
        pytest.skip("bfloat16 needs ml_dtypes (pip install ml_dtypes)")
    if device == "cpu":
        pytest.skip("Triton's interpreter multiplies bfloat16 tl.dot operands as raw bits "
                    "(np.matmul on the storage): bfloat16 is checked on the GPU only")
    return BF16


def _xp(device):
    if device == "cpu":
        return np
    import cupy
    return cupy


def _host(a):
    return np.asarray(a.get() if hasattr(a, "get") else a).astype(np.float64)


def _close(got, want, dt):
    got = _host(got)
    scale = 1.0 + np.abs(want).max()
    tol = {np.dtype("float64"): 1e-12, np.dtype("float32"): 1e-5}.get(np.dtype(dt), 2.0 ** -7)
    np.testing.assert_allclose(got / scale, want / scale, rtol=tol, atol=tol)


def _inputs(rng, dt, *shapes):
    """Arrays in dtype ``dt`` and their float64 values (what the kernel actually reads)."""
    arrs = [rng.standard_normal(s).astype(dt) for s in shapes]
    return arrs, [a.astype(np.float64) for a in arrs]


CONV_CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 4, 7, 6), (6, 2, 3, 3), (2, 1), (1, 2), (1, 2), 2),
    ((1, 3, 5, 5), (5, 3, 1, 3), (1, 1), (0, 1), (1, 1), 1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtname", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=["grouped_strided", "plain"])
def test_conv2d_kernels_vs_reference(device, dtname, case):
    dt = _dtype(dtname, device)
    from minigen.kernels import conv2d as C
    xp = _xp(device)
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(7)
    (x, w, b), (x64, w64, b64) = _inputs(rng, dt, xs, ws, (ws[0],))
    args = (stride, padding, dilation, groups)
    y = C.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *args)
    y_r = RC.conv2d_forward(x64, w64, b64, *args)
    _close(y, y_r, dt)
    g = rng.standard_normal(y_r.shape).astype(dt)
    gx, gw, gb = C.conv2d_backward(xp.asarray(g), xp.asarray(x), xp.asarray(w), *args)
    want = RC.conv2d_backward(g.astype(np.float64), x64, w64, *args)
    for got, ref in zip((gx, gw, gb), want):
        _close(got, ref, dt)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtname", DTYPES)
def test_conv_transpose2d_kernels_vs_reference(device, dtname):
    dt = _dtype(dtname, device)
    from minigen.kernels import conv2d as C
    xp = _xp(device)
    rng = np.random.default_rng(8)
    (x, w, b), (x64, w64, b64) = _inputs(rng, dt, (2, 4, 4, 5), (4, 3, 3, 2), (6,))
    args = ((2, 1), (1, 0), (1, 0), (1, 1), 2)     # stride, padding, output_padding, dil, G
    y = C.conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), *args)
    y_r = RC.conv_transpose2d_forward(x64, w64, b64, *args)
    _close(y, y_r, dt)
    g = rng.standard_normal(y_r.shape).astype(dt)
    got = C.conv_transpose2d_backward(xp.asarray(g), xp.asarray(x), xp.asarray(w), *args)
    want = RC.conv_transpose2d_backward(g.astype(np.float64), x64, w64, *args)
    for a, r in zip(got, want):
        _close(a, r, dt)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtname", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_kernels_vs_reference(device, dtname, causal):
    dt = _dtype(dtname, device)
    from minigen.kernels import attention as A
    xp = _xp(device)
    rng = np.random.default_rng(9)
    B, L, S, E = 3, 9, 7 if not causal else 9, 24     # E = 24: padded head dim 32
    (q, k, v), (q64, k64, v64) = _inputs(rng, dt, (B, L, E), (B, S, E), (B, S, E))
    scale = 1.0 / 3.0
    o, lse = A.attention_forward(xp.asarray(q), xp.asarray(k), xp.asarray(v), None, causal,
                                 scale)
    o_r, lse_r = RA.attention_forward(q64, k64, v64, None, causal, scale)
    _close(o, o_r, dt)
    _close(lse, lse_r, dt if dt == np.float64 else np.float32)
    do = rng.standard_normal(o_r.shape).astype(dt)
    got = A.attention_backward(xp.asarray(do), xp.asarray(q), xp.asarray(k), xp.asarray(v), o,
                               lse, None, causal, scale)
    want = RA.attention_backward(do.astype(np.float64), q64, k64, v64, o_r, lse_r, None,
                                 causal, scale)
    for a, r in zip(got[:3], want[:3]):
        _close(a, r, dt)
