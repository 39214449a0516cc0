"""The Triton conv2d kernels' GPU-only concerns, on the CPU: the TF32 switch reaches every
kernel's constexpr (IEEE by default), offsets are 64-bit, and the kernels (forward, input and
weight gradients, transposed) against the numpy reference in float64, float32 and bfloat16 —
in Triton's interpreter here, on the GPU under the ``gpu`` mark."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
from minigen import backends
from minigen.kernels._triton import unavailable

pytestmark = pytest.mark.skipif(unavailable("cpu") is not None,
                                reason=f"triton on cpu: {unavailable('cpu')}")


def _kernels():
    from minigen.kernels import conv2d as C
    return C


class _Spy:
    """Wraps a Triton kernel: records the constexpr keyword arguments of each launch."""

    def __init__(self, kernel, seen):
        self.kernel, self.seen = kernel, seen

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.seen.append(dict(kwargs))
            return self.kernel[grid](*args, **kwargs)
        return launch


@pytest.fixture
def spy(monkeypatch):
    C = _kernels()
    seen = []
    for name in ("_fwd_kernel", "_dgrad_kernel", "_wgrad_kernel"):
        monkeypatch.setattr(C, name, _Spy(getattr(C, name), seen))
    return seen


def _all_three(dtype):
    C = _kernels()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    y = C.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    C.conv2d_backward(np.ones_like(y), x, w, (1, 1), (1, 1), (1, 1), 1)


def test_tf32_is_off_by_default(spy):
    assert backends.cuda.matmul.allow_tf32 is False
    _all_three(np.float32)
    assert len(spy) == 3 and all(s["TF32"] is False for s in spy)


def test_tf32_switch_reaches_every_kernel(spy):
    with backends.flags(allow_tf32=True):
        assert mg.backends.cuda.matmul.allow_tf32 is True
        _all_three(np.float32)
    assert backends.cuda.matmul.allow_tf32 is False          # restored
    assert len(spy) == 3 and all(s["TF32"] is True for s in spy)
    spy.clear()
    backends.cuda.matmul.allow_tf32 = True
    try:
        _all_three(np.float64)                                # never for float64
    finally:
        backends.cuda.matmul.allow_tf32 = False
    assert all(s["TF32"] is False and s["F64"] is True for s in spy)


def test_tf32_switch_rejects_non_booleans():
    with pytest.raises(TypeError, match="allow_tf32 must be True or False"):
        backends.cuda.matmul.allow_tf32 = 1
    assert backends.cuda.matmul.allow_tf32 is False


# ------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("name", ["_fwd_kernel", "_dgrad_kernel", "_wgrad_kernel"])
def test_element_offsets_are_int64(name):
    """A tensor of ≥ 2³¹ elements (one 141 GB GPU holds many) must be addressed in int64: the
    batch index n is widened before it multiplies the channel and pixel extents, and no
    pointer offset is built from the int32 n (the source is the only place to see this
    without 8 GB of memory)."""
    import inspect
    import re
    src = inspect.getsource(getattr(_kernels(), name).fn)
    assert re.search(r"n64 = .*\.to\(tl\.int64\)", src), "the batch index is not widened"
    assert not re.search(r"\bn\[", src), "an offset is built from the int32 batch index"
    assert src.count("n64") >= 3


def test_pixel_count_beyond_int32_is_refused_before_any_work():
    C = _kernels()
    x = np.broadcast_to(np.zeros(1, np.float32), (2 ** 15, 1, 2 ** 8, 2 ** 8))  # 2³¹ pixels
    w = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"2147483648 pixels .* int32 pixel index"):
        C.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)


def test_wgrad_split_keeps_grid_axis_2_within_limits(monkeypatch):
    C = _kernels()
    grids = []

    class Record:
        def __getitem__(self, grid):
            grids.append(grid)
            return lambda *a, **k: None

    monkeypatch.setattr(C, "_wgrad_kernel", Record())
    monkeypatch.setattr(C, "MAX_GRID_YZ", 6)
    g = np.zeros((4, 4, 8, 8), np.float32)
    x = np.zeros((4, 4, 8, 8), np.float32)
    C._wgrad(g, x, (3, 3), (1, 1), (1, 1), (1, 1), 2, split=50)
    assert grids and grids[0][2] <= 6
