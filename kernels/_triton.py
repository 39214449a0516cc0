"""Launching Triton kernels on minigen's arrays, without PyTorch.

Triton treats any kernel argument that has ``data_ptr()`` and a ``dtype`` as a pointer. Our
arrays are numpy (CPU) or CuPy (GPU), so a thin adapter gives them that face:

* on a GPU (CuPy array), ``data_ptr()`` is the device address and ``dtype`` the numpy dtype,
  whose ``str`` ('float32', 'float16', 'bfloat16', ...) is what Triton reads to type the
  pointer.
* Triton launches on the stream its active driver reports (``driver.active.
  get_current_stream(device)``, read at every launch). Triton 3.6's CUDA driver is built on
  PyTorch: it is "active" only when ``torch.cuda.is_available()`` and reports torch's current
  stream; newer Tritons can run without torch and report the default stream. minigen's arrays
  are ordered on CuPy's current stream, so every launcher here runs inside
  ``launch_context``: it binds the driver's stream to CuPy's current one for the launch (a
  no-op when they already agree, e.g. both the legacy default stream 0) and refuses an array
  that lives on another device than the current one. ``driver_probe()`` says whether Triton
  can launch on the GPU at all; dispatch falls back (with its warning) when it cannot.
* under ``TRITON_INTERPRET=1`` (how CI checks the kernels on a CPU) the interpreter also wants
  the torch storage protocol to copy arguments "to the host" and back:
  ``untyped_storage()``, ``storage_offset()``, ``size()``, ``stride()`` (in elements),
  ``new_empty(0)`` and ``set_(storage, offset, size, stride)``, and ``copy_`` on the storage.
  The arrays already are on the host, so the adapter makes that round trip a no-op view of the
  same memory.

Use ``launch_args(*arrays)`` / ``ptr(array)`` to wrap arrays right before ``kernel[grid](...)``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass

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
    return driver_probe().reason


# --------------------------------------------------------------- GPU driver and launch stream
@dataclass(frozen=True)
class DriverProbe:
    """What Triton's active driver looks like: ``reason`` is None when kernels can launch on
    the GPU; ``found`` describes it either way (``minigen info`` prints it)."""
    reason: str | None
    found: str


_PROBE: list = []   # the cached DriverProbe (one probe per process: it can import torch)


def _torch_hint() -> str:
    """Why a Triton CUDA driver may be inactive, from what torch (if loaded) says."""
    torch = sys.modules.get("torch")
    if torch is None:
        return ("; Triton 3.6's CUDA driver needs PyTorch with CUDA (it counts as active only "
                "when torch.cuda.is_available()): pip install torch (a CUDA build)")
    try:
        ok = bool(torch.cuda.is_available())
    except Exception:  # a broken torch install
        ok = False
    if not ok:
        return (f"; torch {getattr(torch, '__version__', '?')} is loaded but "
                "torch.cuda.is_available() is False (a CPU-only build?), and Triton 3.6's CUDA "
                "driver counts as active only when it is True")
    return ""


def _probe_driver() -> DriverProbe:
    """Ask Triton for its active driver and its target (imports torch on Triton 3.6)."""
    triton, _ = triton_modules()
    version = getattr(triton, "__version__", "?")
    try:
        from triton.runtime import driver as config
        drv = config.active
    except Exception as exc:  # "0 active drivers", a failed libcuda load, ...
        why = f"Triton {version} has no active GPU driver ({type(exc).__name__}: {exc})"
        return DriverProbe(why + _torch_hint(), why)
    try:
        target = drv.get_current_target()
    except Exception as exc:
        why = f"Triton {version}'s driver cannot describe the GPU ({type(exc).__name__}: {exc})"
        return DriverProbe(why + _torch_hint(), why)
    backend = getattr(target, "backend", "?")
    if backend != "cuda":
        why = f"Triton {version}'s active driver targets {backend!r}, not CUDA"
        return DriverProbe(why, why)
    owner = ("torch's current stream" if "torch" in sys.modules
             else "the CUDA default stream")
    return DriverProbe(None, f"Triton {version} CUDA driver, sm_{target.arch}; it reports "
                             f"{owner}, minigen launches on CuPy's current stream")


def driver_probe() -> DriverProbe:
    """The cached result of probing Triton's active driver."""
    if not _PROBE:
        _PROBE.append(_probe_driver())
    return _PROBE[0]


def _active_driver():
    from triton.runtime import driver as config
    return config.active


def _cupy_stream_ptr() -> int:
    """The handle of CuPy's current stream on the current device (0: the legacy default)."""
    import cupy
    return int(cupy.cuda.get_current_stream().ptr)


_MISSING = object()


@contextlib.contextmanager
def bound_stream(array):
    """Launch Triton kernels on CuPy's current stream while inside; ``array`` (a CuPy array)
    must be on the current device, where Triton compiles and launches."""
    drv = _active_driver()
    device = drv.get_current_device()
    where = getattr(getattr(array, "device", None), "id", device)
    if where != device:
        raise RuntimeError(f"a Triton kernel was given an array on cuda:{where} while the "
                           f"current CUDA device is {device}: run it under "
                           f"`with cupy.cuda.Device({where}):`")
    want = _cupy_stream_ptr()
    if drv.get_current_stream(device) == want:
        yield
        return
    # Triton reads driver.active.get_current_stream at every launch; shadow it meanwhile.
    saved = drv.__dict__.get("get_current_stream", _MISSING)
    drv.get_current_stream = lambda _device: want
    try:
        yield
    finally:
        if saved is _MISSING:
            del drv.get_current_stream
        else:
            drv.get_current_stream = saved


def launch_context(args):
    """The context a launcher runs in: ``bound_stream`` for the first CuPy array among
    ``args``, nothing for numpy arrays (the interpreter has no streams)."""
    for a in args:
        if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
            return bound_stream(a)
    return contextlib.nullcontext()


def launcher(fn):
    """Decorator for the module-level functions that launch Triton kernels (see
    ``launch_context``)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with launch_context(args):
            return fn(*args, **kwargs)
    return run


# ------------------------------------------------------------------- host (interpreter) side
def _root(arr: np.ndarray) -> np.ndarray:
    """The array that owns ``arr``'s memory (walks the chain of views)."""
    while True:
        base = arr.base
        if isinstance(base, np.ndarray):
            arr = base
        elif isinstance(getattr(base, "base", None), np.ndarray):   # as_strided's holder
            arr = base.base
        else:
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
