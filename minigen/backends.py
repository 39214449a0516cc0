"""Numerics switches of the GPU kernels, named as PyTorch's ``torch.backends``.

(Not to be confused with ``minigen/backend.py``, which maps devices to array modules.)

    mg.backends.cuda.matmul.allow_tf32 = True      # default False: IEEE float32 products
    with mg.backends.flags(allow_tf32=True):       # for a block of code
        y = F.conv2d(x, w)

``allow_tf32``: float32 products inside minigen's Triton kernels (conv2d's implicit GEMMs,
forward and both gradients) may round their inputs to TF32 (10 mantissa bits, ~1e-3 relative
error per product) on tensor cores, as ``torch.backends.cuda.matmul.allow_tf32`` allows for
PyTorch's matmuls. Off by default, so a float32 convolution gives the same numbers (to float32
rounding) on the GPU, in Triton's interpreter and on the CPU; the interpreter computes the
products in full precision either way. The switch is read at every kernel launch.
"""
from __future__ import annotations

import contextlib

__all__ = ["cuda", "flags"]


class _MatmulFlags:
    """``cuda.matmul``: the switches of float32 matrix products on the GPU."""

    __slots__ = ("_allow_tf32",)

    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"allow_tf32 must be True or False, got {value!r}")
        self._allow_tf32 = value

    def __repr__(self):
        return f"minigen.backends.cuda.matmul(allow_tf32={self._allow_tf32})"


class _CudaFlags:
    __slots__ = ("matmul",)

    def __init__(self):
        self.matmul = _MatmulFlags()


cuda = _CudaFlags()


@contextlib.contextmanager
def flags(*, allow_tf32: bool):
    """Set ``cuda.matmul.allow_tf32`` inside the block, restore it after."""
    before = cuda.matmul.allow_tf32
    cuda.matmul.allow_tf32 = allow_tf32
    try:
        yield
    finally:
        cuda.matmul.allow_tf32 = before
