"""The Triton attention kernels' GPU-only hazards, checked in the interpreter: the scale's
precision, the launch grid for many batch×heads, broadcast inputs passed as zero strides, and
the backward tiles against Hopper's shared memory."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
import minigen.nn.functional as F
from minigen import dispatch
from minigen.kernels._triton import unavailable
from minigen.reference import attention as R

pytestmark = pytest.mark.skipif(unavailable("cpu") is not None,
                                reason=f"triton on cpu: {unavailable('cpu')}")


def _kernels():
    from minigen.kernels import attention as A
    return A


class _AsOnGPU:
    """A Triton kernel launched as on a GPU as far as scalar arguments go: a Python float
    kernel argument is typed float32 there (the interpreter keeps it a Python float)."""

    def __init__(self, kernel, grids=None):
        self.kernel, self.grids = kernel, grids

    def __getitem__(self, grid):
        if self.grids is not None:
            self.grids.append(grid)

        def launch(*args, **kwargs):
            args = [float(np.float32(a)) if isinstance(a, float) else a for a in args]
            return self.kernel[grid](*args, **kwargs)
        return launch


@pytest.fixture
def as_on_gpu(monkeypatch):
    A = _kernels()
    grids = []
    for name in ("_attn_fwd", "_attn_bwd_dkdv", "_attn_bwd_dq"):
        monkeypatch.setattr(A, name, _AsOnGPU(getattr(A, name), grids))
    return grids


@pytest.mark.parametrize("causal", [False, True])
def test_float64_scale_keeps_float64_precision(as_on_gpu, causal):
    """scale = 1/3 is not a float32 value: rounded to float32 it moves s = c·q kᵀ by ~1e-8
    relative. Forward and backward must match the float64 reference to ~1e-13."""
    A = _kernels()
    rng = np.random.default_rng(3)
    B, L, S, E = 2, 9, 7, 8
    q, k, v = (rng.standard_normal((B, n, E)) * 3 for n in (L, S, S))
    mask = rng.standard_normal((B, L, S)) if not causal else None
    scale = 1.0 / 3.0
    o, lse = A.attention_forward(q, k, v, mask, causal, scale)
    o_r, lse_r = R.attention_forward(q, k, v, mask, causal, scale)
    np.testing.assert_allclose(o, o_r, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(lse, lse_r, rtol=1e-13, atol=1e-13)
    do = rng.standard_normal(o.shape)
    got = A.attention_backward(do, q, k, v, o, lse, mask, causal, scale, not causal)
    want = R.attention_backward(do, q, k, v, o_r, lse_r, mask, causal, scale, not causal)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert as_on_gpu, "the kernels were not launched through the stand-in"


def test_scale_parts_are_float32_values_summing_to_the_scale():
    A = _kernels()
    for c in (1 / 3, 1 / np.sqrt(80), 0.125, 1e-3 / 7):
        hi, lo = A._scale_parts(c)
        assert float(np.float32(hi)) == hi and float(np.float32(lo)) == lo
        assert abs((hi + lo) - c) <= 2.0 ** -48 * abs(c)
