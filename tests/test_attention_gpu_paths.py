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


# ------------------------------------------------------------------------ grid axis 1 limit
class _Record:
    """Records the grid of each launch; runs nothing."""

    def __init__(self, grids):
        self.grids = grids

    def __getitem__(self, grid):
        self.grids.append(grid)
        return lambda *args, **kwargs: None


def test_batch_beyond_grid_axis_1_is_split_into_launches(monkeypatch):
    """B × heads = 70 000 > 65 535: the wrapper launches twice, never over the limit, and the
    launches cover every batch entry once."""
    A = _kernels()
    grids = []
    for name in ("_attn_fwd", "_attn_bwd_dkdv", "_attn_bwd_dq"):
        monkeypatch.setattr(A, name, _Record(grids))
    B = 70_000
    q = np.zeros((B, 1, 16), np.float32)
    A.attention_forward(q, q, q, None, False, 0.25)
    assert [g[1] for g in grids] == [65_535, B - 65_535]
    grids.clear()
    o, lse = np.zeros_like(q), np.zeros((B, 1), np.float32)
    A.attention_backward(q, q, q, q, o, lse, None, False, 0.25)
    assert sorted(g[1] for g in grids) == sorted([65_535, B - 65_535] * 2)
    assert all(g[1] <= A.MAX_GRID_Y for g in grids)


@pytest.mark.parametrize("causal", [False, True])
def test_split_batch_gives_the_reference_results(monkeypatch, causal):
    """With the axis limit lowered to 2, a batch of 5 runs as 3 launches per kernel (B0 = 0, 2,
    4); forward and backward still match the reference, mask and dmask included."""
    A = _kernels()
    monkeypatch.setattr(A, "MAX_GRID_Y", 2)
    grids = []
    for name in ("_attn_fwd", "_attn_bwd_dkdv", "_attn_bwd_dq"):
        monkeypatch.setattr(A, name, _AsOnGPU(getattr(A, name), grids))
    rng = np.random.default_rng(5)
    B, L, S, E = 5, 6, 7, 8
    q, k, v = (rng.standard_normal((B, n, E)) for n in (L, S, S))
    mask = None if causal else rng.standard_normal((B, L, S))
    o, lse = A.attention_forward(q, k, v, mask, causal, 0.3)
    o_r, lse_r = R.attention_forward(q, k, v, mask, causal, 0.3)
    np.testing.assert_allclose(o, o_r, rtol=1e-12, atol=1e-12)
    do = rng.standard_normal(o.shape)
    got = A.attention_backward(do, q, k, v, o, lse, mask, causal, 0.3, not causal)
    want = R.attention_backward(do, q, k, v, o_r, lse_r, mask, causal, 0.3, not causal)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert [g[1] for g in grids] == [2, 2, 1] + [2, 2, 2, 2, 1, 1]


# ------------------------------------------------------------------- Hopper shared memory
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("head", [16, 32, 64, 80, 128, 256])
@pytest.mark.parametrize("backward", [False, True])
def test_gpu_tiles_fit_hoppers_shared_memory(monkeypatch, dtype, head, backward):
    """The GPU tile choice (not the interpreter's) keeps every kernel's tiles within 200 KB of
    the 227 KB a program may use on an H100/H200, by the model in ``smem_bytes``."""
    A = _kernels()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    be = A._pow2(head)
    bm, bn, warps, stages = A._config(dtype, be, be, backward)
    item = np.dtype(dtype).itemsize
    for kind in (("dkdv", "dq") if backward else ("fwd",)):
        need = A.smem_bytes(kind, bm, bn, be, be, item, stages)
        assert need <= A.SMEM_BUDGET < A.SMEM_LIMIT == 227 * 1024, (kind, bm, bn, stages, need)
    assert bm >= 16 and bn >= 16 and stages >= 1


def test_smem_model_arithmetic():
    """The issue's case: float64, head dim 128, the old (32, 64) tiles with 2 stages need
    (2·128·64 + 2·2·32·128 + 2·32·64)·8 = 294 912 B in dkdv, over Hopper's 232 448."""
    A = _kernels()
    assert A.smem_bytes("dkdv", 32, 64, 128, 128, 8, 2) == 294_912 > 227 * 1024
    assert A.smem_bytes("dkdv", 16, 32, 128, 128, 8, 2) == 139_264


# --------------------------------------------------------------------- broadcast q/k/v/mask
class _NotNumpy:
    """An array module that is numpy under another name (as CuPy would be to the op layer)."""

    def __init__(self):
        self.lib = np.lib

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("shape, batch", [((1, 1, 6, 8), (3, 4)),     # shared by all
                                          ((6, 8), (3, 4)),
                                          ((1, 6, 8), (5,)),          # shared across batch
                                          ((3, 4, 6, 8), (3, 4)),     # no broadcast
                                          ((3, 1, 6, 8), (3, 1))])
def test_broadcast_inputs_are_views_not_copies(shape, batch):
    from minigen.ops.attention import _flatten
    a = np.random.default_rng(0).standard_normal(shape)
    B = int(np.prod(batch))
    for xp in (np, _NotNumpy()):
        got = _flatten(xp, a, batch, B)
        assert got.shape == (B, 6, 8)
        assert np.shares_memory(got, a), "copied"
        np.testing.assert_array_equal(got, np.broadcast_to(a, batch + (6, 8)).reshape(B, 6, 8))


def test_unmergeable_broadcast_still_gives_the_right_values():
    from minigen.ops.attention import _flatten
    for shape in ((3, 1, 6, 8), (1, 4, 6, 8)):   # no single batch stride: copied
        a = np.random.default_rng(0).standard_normal(shape)
        got = _flatten(_NotNumpy(), a, (3, 4), 12)
        np.testing.assert_array_equal(got, np.broadcast_to(a, (3, 4, 6, 8)).reshape(12, 6, 8))


def test_broadcast_attention_through_the_op_matches_the_reference():
    """The op with k, v and a float mask shared across the batch (zero batch strides reach
    the kernel) against the reference implementation, values and gradients."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 3, 5, 8))
    k, v = rng.standard_normal((4, 8)), rng.standard_normal((1, 1, 4, 8))
    m = rng.standard_normal((5, 4))
    outs = {}
    for impl in ("reference", "triton"):
        ts = [mg.tensor(a, requires_grad=True) for a in (q, k, v, m)]
        with dispatch.use(attention=impl):
            o = F.scaled_dot_product_attention(*ts[:3], attn_mask=ts[3])
            (o * o).sum().backward()
        outs[impl] = [o.detach().numpy()] + [t.grad.numpy() for t in ts]
    for g, w in zip(outs["triton"], outs["reference"]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
