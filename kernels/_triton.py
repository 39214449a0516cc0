"""Launching Triton kernels on minigen's arrays, without PyTorch.

Triton treats any kernel argument that has ``data_ptr()`` and a ``dtype`` as a pointer. Our
arrays are numpy (CPU) or CuPy (GPU), so a thin adapter gives them that face:

* on a GPU (CuPy array), ``data_ptr()`` is the device address and ``dtype`` the numpy dtype,
  whose ``str`` ('float32', 'float16', 'bfloat16', ...) is what Triton reads to type the
  pointer. Without torch, Triton launches on the default stream; CuPy's default stream is the
  same (legacy) stream, so kernels and CuPy ops stay ordered without synchronising.
* under ``TRITON_INTERPRET=1`` (how CI checks the kernels on a CPU) the interpreter also wants
  the torch storage protocol to copy arguments "to the host" and back:
  ``untyped_storage()``, ``storage_offset()``, ``size()``, ``stride()`` (in elements),
  ``new_empty(0)`` and ``set_(storage, offset, size, stride)``, and ``copy_`` on the storage.
  The arrays already are on the host, so the adapter makes that round trip a no-op view of the
  same memory.

Use ``launch_args(*arrays)`` / ``ptr(array)`` to wrap arrays right before ``kernel[grid](...)``.
"""
from __future__ import annotations

import os

import numpy as np

_TRITON = None
_ERROR: str | None = None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


def triton_modules():
    """(triton, triton.language), imported on first use."""
    global _TRITON, _ERROR
    if _TRITON is None and _ERROR is None:
        try:
            import triton
            import triton.language as tl
            _TRITON = (triton, tl)
        except Exception as exc:  # ImportError, or a triton without a usable backend
            _ERROR = f"{type(exc).__name__}: {exc}"
    if _TRITON is None:
        raise RuntimeError(f"triton unavailable ({_ERROR}); pip install triton")
    return _TRITON


def unavailable(device_type: str) -> str | None:
    """None when Triton kernels can run on ``device_type``, else the reason."""
    try:
        triton_modules()
    except RuntimeError as exc:
        return str(exc)
    if device_type == "cpu":
        if not interpreting():
            return ("on a CPU Triton runs only in its interpreter: set TRITON_INTERPRET=1 "
                    "before triton is imported")
        return None
    if interpreting():
        return "TRITON_INTERPRET=1 is set: Triton runs on the CPU only"
    from minigen.backend import cuda_available
    if not cuda_available():
        return "no CUDA device (CuPy with a GPU is needed)"
    return None


# ------------------------------------------------------------------- host (interpreter) side
def _root(arr: np.ndarray) -> np.ndarray:
    """The array that owns ``arr``'s memory (walks the chain of views)."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


class _HostStorage:
    def __init__(self, owner: np.ndarray):
        self.owner = owner

    def data_ptr(self) -> int:
        return self.owner.__array_interface__["data"][0]

    def cpu(self):
        return self

    def copy_(self, other):  # host and "device" are the same memory
        return self


class HostTensor:
    """A numpy array seen as a torch tensor by Triton's interpreter."""

    __slots__ = ("array", "dtype", "_owner")

    def __init__(self, array: np.ndarray, owner: np.ndarray | None = None):
        self.array = array
        self.dtype = array.dtype
        self._owner = _root(array) if owner is None else owner

    def data_ptr(self) -> int:
        return self.array.__array_interface__["data"][0]

    def untyped_storage(self) -> _HostStorage:
        return _HostStorage(self._owner)

    def storage_offset(self) -> int:
        return (self.data_ptr() - _HostStorage(self._owner).data_ptr()) // self.dtype.itemsize

    def size(self):
        return self.array.shape

    def stride(self):
        return tuple(s // self.dtype.itemsize for s in self.array.strides)

    def new_empty(self, *size, device=None):
        return HostTensor(np.empty(0, self.dtype))

    def set_(self, storage: _HostStorage, offset, size, stride):
        item = self.dtype.itemsize
        owner = storage.owner
        flat = owner.reshape(-1).view(np.uint8) if owner.flags.c_contiguous else owner
        self.array = np.ndarray(tuple(size), self.dtype, buffer=flat, offset=offset * item,
                                strides=tuple(s * item for s in stride))
        self._owner = owner
        return self


# ------------------------------------------------------------------------------ device side
class DeviceTensor:
    """A CuPy array seen as a pointer by Triton: ``data_ptr()`` and ``dtype``."""

    __slots__ = ("array", "dtype")

    def __init__(self, array):
        self.array = array
        self.dtype = array.dtype

    def data_ptr(self) -> int:
        return self.array.data.ptr


def ptr(array):
    """Wrap one numpy or CuPy array for a Triton launch."""
    if isinstance(array, np.ndarray):
        if not interpreting():
            raise RuntimeError("a numpy array was passed to a Triton kernel outside the "
                               "interpreter (set TRITON_INTERPRET=1 to run Triton on the CPU)")
        return HostTensor(array)
    return DeviceTensor(array)


def launch_args(*arrays):
    return tuple(ptr(a) for a in arrays)
