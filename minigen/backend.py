"""Devices and array modules.

A minigen Tensor holds a backend array: a ``numpy.ndarray`` on ``"cpu"`` and a ``cupy.ndarray``
on ``"cuda"``. Every primitive is written once against the array module ``xp`` (numpy and CuPy
share one API), so this file is the only place that knows which module goes with which device.
CuPy is imported lazily: everything works without it or without a GPU.
"""
from __future__ import annotations

import numpy as np

_cupy = None
_cupy_error: str | None = None


def cupy_module():
    """Return the cupy module, or raise a clear error saying why it is not usable."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy  # noqa: F401

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("CuPy found no CUDA device")
            _cupy = cupy
            return cupy
        except Exception as exc:  # ImportError, CUDA driver errors
            _cupy_error = f"{type(exc).__name__}: {exc}"
    raise RuntimeError(f"device 'cuda' is not available ({_cupy_error}); "
                       "install the [gpu] extra (cupy) on a machine with an NVIDIA GPU")


def cuda_available() -> bool:
    try:
        cupy_module()
        return True
    except RuntimeError:
        return False


class Device:
    """A device: ``type`` is ``"cpu"`` or ``"cuda"``, ``index`` the GPU ordinal (None on cpu).

    Devices are interned, so ``a.device is b.device`` is the fast equality test of the engine;
    a Device also compares equal to its string form (``t.device == "cpu"``).
    """

    __slots__ = ("type", "index", "_str")
    _interned: dict = {}

    def __new__(cls, spec="cpu", index=None):
        if isinstance(spec, Device):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"bad device index in {spec!r}")
            index = int(idx)
        if kind == "cuda" and index is None:
            index = 0
        if kind == "cpu":
            index = None
        key = (kind, index)
        dev = cls._interned.get(key)
        if dev is None:
            dev = object.__new__(cls)
            dev.type, dev.index = kind, index
            dev._str = kind if index is None else f"{kind}:{index}"
            cls._interned[key] = dev
        return dev

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, TypeError):
                return False
        return self is other

    def __hash__(self):
        return hash(self._str)

    def __repr__(self):
        return f"device('{self._str}')"

    def __str__(self):
        return self._str


CPU = Device("cpu")


def array_module(device: Device):
    """numpy for cpu, cupy for cuda."""
    return np if device.type == "cpu" else cupy_module()


def device_of(array) -> Device:
    if isinstance(array, (np.ndarray, np.generic)):  # numpy scalars come from 0-d arithmetic
        return CPU
    dev = getattr(array, "device", None)
    ident = getattr(dev, "id", 0)
    return Device("cuda", ident)


def xp_of(array):
    """The array module an array belongs to."""
    return np if isinstance(array, (np.ndarray, np.generic)) else cupy_module()


def to_device(array, device: Device):
    """Copy ``array`` onto ``device`` (no copy when it is already there)."""
    src = device_of(array)
    if src is device:
        return array
    if device.type == "cpu":
        return array.get()
    cp = cupy_module()
    with cp.cuda.Device(device.index):
        return cp.asarray(array)
