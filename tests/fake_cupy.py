"""A CPU stand-in for CuPy that counts device→host transfers (synchronisations).

``install(monkeypatch)`` makes minigen's ``"cuda"`` device run on ``FakeCupy``: its arrays
(``FakeArray``) wrap numpy arrays but are not ``numpy.ndarray``s, so minigen takes its GPU code
paths (the ``xp`` of every op is this module, ``dispatch`` sees a cuda array). It behaves like
CuPy where that matters for host synchronisation:

* every way of getting a value to the host — ``bool()``, ``int()``, ``float()``, ``index()``,
  ``.item()``, ``.tolist()``, ``.get()``, ``cupy.asnumpy`` — is counted in ``syncs`` (with the
  Python stack of each, for the failure message);
* implicit conversion to numpy (``np.asarray(device_array)``) raises ``TypeError``, as CuPy does;
* reductions return 0-d device arrays, never numpy scalars (so ``float(x.sum())`` is a transfer);
* mixing a numpy array into a device op raises ``TypeError`` (CuPy: "Unsupported type");
  ``asarray``/``array`` of host data (a numpy array, a Python scalar) is an upload, recorded
  in ``uploads``; numpy and Python scalars inside an op are kernel arguments, not uploads;
* ``shares_memory``/``may_share_memory`` reject numpy arguments, as CuPy's do.

Only what minigen uses is provided; an unknown attribute falls through to numpy, wrapped.
"""
from __future__ import annotations

import contextlib
import sys
import traceback
import types

import numpy as np


class Counter:
    def __init__(self):
        self.syncs = []       # (kind, stack summary) per device→host transfer
        self.uploads = []     # (kind, stack summary) per host→device copy of host data

    @staticmethod
    def _where():
        stack = traceback.extract_stack(limit=14)[:-3]
        where = [f"{f.filename.split('/')[-1]}:{f.lineno} {f.name}" for f in stack
                 if "fake_cupy" not in f.filename and "pytest" not in f.filename]
        return " <- ".join(reversed(where[-5:]))

    def sync(self, kind):
        self.syncs.append((kind, self._where()))

    def upload(self, kind):
        self.uploads.append((kind, self._where()))

    def reset(self):
        self.syncs.clear()
        self.uploads.clear()


COUNTER = Counter()


def _unwrap(obj):
    if isinstance(obj, FakeArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise TypeError(f"Unsupported type {type(obj)} (a numpy array in a device operation; "
                        "CuPy refuses it)")
    if isinstance(obj, tuple):
        return tuple(_unwrap(o) for o in obj)
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return FakeArray(obj)
    if isinstance(obj, np.generic):
        return FakeArray(np.asarray(obj))       # CuPy reductions give 0-d device arrays
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _wrapped_fn(fn):
    def call(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))
    call.__name__ = getattr(fn, "__name__", "fn")
    return call


class _Device:
    id = 0

    def __repr__(self):
        return "<CUDA Device 0>"


_DEVICE = _Device()


class FakeArray:
    """A 'device' array: numpy storage, CuPy's rules about leaving the device."""

    __array_priority__ = 100

    def __init__(self, a):
        self._a = a

    # what minigen reads to tell device arrays apart
    device = _DEVICE

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str,
                "data": (self._a.ctypes.data, False), "version": 3}

    # metadata: free
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: FakeArray(self._a.T))
    real = property(lambda self: FakeArray(self._a.real))
    imag = property(lambda self: FakeArray(self._a.imag))

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"FakeArray(shape={self._a.shape}, dtype={self._a.dtype})"

    # device → host: counted
    def __bool__(self):
        COUNTER.sync("bool")
        return bool(self._a)

    def __int__(self):
        COUNTER.sync("int")
        return int(self._a)

    def __float__(self):
        COUNTER.sync("float")
        return float(self._a)

    def __complex__(self):
        COUNTER.sync("complex")
        return complex(self._a)

    def __index__(self):
        COUNTER.sync("index")
        return self._a.__index__()

    def item(self):
        COUNTER.sync("item")
        return self._a.item()

    def tolist(self):
        COUNTER.sync("tolist")
        return self._a.tolist()

    def get(self, stream=None, out=None):
        COUNTER.sync("get")
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __iter__(self):
        for i in range(len(self._a)):
            yield FakeArray(self._a[i])

    # numpy functions and ufuncs called on a device array run "on the device", as in CuPy
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func, types_, args, kwargs):
        return getattr(FAKE, func.__name__)(*args, **kwargs)

    # indexing
    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index, value):
        self._a[_unwrap(index)] = _unwrap(value)

    def __getattr__(self, name):
        if name.startswith("__"):      # no __array_interface__ & co: numpy must not read us
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _wrapped_fn(attr)
        return _wrap(attr)

    def __dlpack__(self, *a, **k):
        raise NotImplementedError

    def __dlpack_device__(self):
        return (2, 0)


def _binop(name):
    def op(self, *args):
        out = getattr(self._a, name)(*_unwrap(args))
        return self if out is self._a else _wrap(out)      # in-place ops return self
    op.__name__ = name
    return op


for _name in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
              "rfloordiv", "mod", "rmod", "pow", "rpow", "matmul", "rmatmul", "and", "rand",
              "or", "ror", "xor", "rxor", "lshift", "rshift", "lt", "le", "gt", "ge", "eq", "ne",
              "neg", "pos", "abs", "invert", "iadd", "isub", "imul", "itruediv", "ipow", "iand",
              "ior", "ixor", "ifloordiv", "imod"):
    _dn = f"__{_name}__"
    if hasattr(np.ndarray, _dn):
        setattr(FakeArray, _dn, _binop(_dn))
FakeArray.__hash__ = None


class _Ufunc:
    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        return _wrap(self._uf(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        if name == "at":
            raise AttributeError("CuPy ufuncs have no .at (use cupyx.scatter_add)")
        attr = getattr(self._uf, name)
        return _wrapped_fn(attr) if callable(attr) else attr


class _IndexTricks:
    def __init__(self, obj):
        self._obj = obj

    def __getitem__(self, key):
        return _wrap(self._obj[_unwrap(key)])


class _Namespace(types.SimpleNamespace):
    pass


class _RandomGenerator:
    """cupy.random.Generator over numpy's PCG64 (only the draws minigen makes)."""

    def __init__(self, bitgen):
        self._g = np.random.Generator(np.random.PCG64(bitgen.seed))

    def __getattr__(self, name):
        return _wrapped_fn(getattr(self._g, name))


class _XORWOW:
    def __init__(self, seed):
        self.seed = seed


class FakeCupyModule(types.ModuleType):
    ndarray = FakeArray

    def __init__(self):
        super().__init__("cupy")
        self.cuda = _Namespace(
            Device=lambda index=0: contextlib.nullcontext(),
            runtime=_Namespace(getDeviceCount=lambda: 1),
            get_current_stream=lambda: _Namespace(ptr=0, synchronize=lambda: None),
        )
        self.random = _Namespace(Generator=_RandomGenerator, XORWOW=_XORWOW)

    def asarray(self, a, dtype=None, order=None, **kw):
        if isinstance(a, FakeArray):
            return a if dtype is None or a.dtype == dtype else FakeArray(a._a.astype(dtype))
        COUNTER.upload("asarray")
        return FakeArray(np.array(_unwrap_host(a), dtype=dtype, order=order or "K"))

    def array(self, a, dtype=None, copy=True, order="K", **kw):
        if isinstance(a, FakeArray):
            return FakeArray(np.array(a._a, dtype=dtype, copy=copy, order=order))
        COUNTER.upload("array")
        return FakeArray(np.array(_unwrap_host(a), dtype=dtype, order=order))

    def ascontiguousarray(self, a, dtype=None):
        if isinstance(a, FakeArray):
            return FakeArray(np.ascontiguousarray(a._a, dtype=dtype))
        return self.asarray(np.ascontiguousarray(a, dtype=dtype))

    def asnumpy(self, a, stream=None, **kw):
        if isinstance(a, FakeArray):
            return a.get()
        return np.asarray(a)

    def shares_memory(self, a, b, max_work=None):
        for x in (a, b):
            if not isinstance(x, FakeArray):
                raise TypeError(f"Unsupported type {type(x)}")
        return bool(np.shares_memory(a._a, b._a))

    may_share_memory = shares_memory

    def from_dlpack(self, obj):
        raise NotImplementedError

    def get_array_module(self, *args):
        return self

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr)
        if isinstance(attr, type) or not callable(attr):
            if name in ("ogrid", "mgrid", "r_", "c_", "s_", "index_exp"):
                return _IndexTricks(attr)
            if isinstance(attr, types.ModuleType):
                return _SubModule(attr)
            return attr
        return _wrapped_fn(attr)


def _unwrap_host(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_unwrap_host(x) for x in a)
    if isinstance(a, FakeArray):
        return a._a
    return a


class _SubModule:
    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        attr = getattr(self._mod, name)
        if isinstance(attr, types.ModuleType):     # cupy.lib.stride_tricks.as_strided, ...
            return _SubModule(attr)
        return _wrapped_fn(attr) if callable(attr) and not isinstance(attr, type) else attr


def _scatter_add(target, index, values):
    np.add.at(target._a, _unwrap(index), _unwrap(values))


FAKE = FakeCupyModule()
FAKE_CUPYX = types.ModuleType("cupyx")
FAKE_CUPYX.scatter_add = _scatter_add


@contextlib.contextmanager
def _no_sync():
    yield


FAKE_CUPYX.allow_synchronize = lambda allow: _no_sync()


def install(monkeypatch):
    """Make minigen's "cuda" device this stand-in for the rest of the test; returns COUNTER.

    Dispatch is forced to the numpy references (they are written against ``xp`` and run
    unchanged on device arrays); the Triton and raw-CUDA kernels need a real GPU."""
    from minigen import backend, dispatch
    from minigen import random as mg_random

    monkeypatch.setattr(backend, "_cupy", FAKE)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setitem(sys.modules, "cupyx", FAKE_CUPYX)
    monkeypatch.setattr(dispatch, "_CACHE", {})
    monkeypatch.setattr(dispatch, "_WARNED", set())
    monkeypatch.setattr(mg_random, "_default", {})
    COUNTER.reset()
    return COUNTER
