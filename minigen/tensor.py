"""``Tensor``: a backend array plus what autograd needs to know about it.

Fields: ``data`` (numpy or cupy array), ``requires_grad``, ``grad``, ``_ctx``/``_idx`` (the node
that produced it and which of its outputs it is; None for leaves), ``_vc`` (version counter,
shared with every view of the same memory, bumped by in-place ops), ``_base`` (the tensor this
is a view of, if any). Ops live in ``minigen/ops``; they attach themselves as methods here, so
``x.exp()`` and ``minigen.exp(x)`` are the same function.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import dtypes
from .autograd import engine
from .autograd.grad_mode import STATE
from .backend import CPU, Device, array_module, cupy_module, device_of, to_device


class Tensor:
    __slots__ = ("data", "requires_grad", "grad", "_ctx", "_idx", "_vc", "_base", "_device",
                 "_hooks", "__weakref__")
    __array_priority__ = 1000  # numpy scalars and arrays defer to Tensor's operators

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        for name in ("data", "requires_grad", "grad", "_ctx", "_idx", "_vc", "_base",
                     "_device", "_hooks"):
            setattr(self, name, getattr(t, name))

    @classmethod
    def _wrap(cls, array, device, requires_grad=False, base=None):
        """Fast internal constructor: ``array`` must already be a backend array."""
        t = object.__new__(cls)
        if type(array) is not np.ndarray:
            if isinstance(array, (np.ndarray, np.generic)):
                array = np.asarray(array)  # numpy returns scalars from 0-d arithmetic
                if device is None:
                    device = CPU
            elif device is None or device is CPU:
                device = device_of(array)  # a cupy array (e.g. from a move to the GPU)
        elif device is None:
            device = CPU
        t.data = array
        t.requires_grad = requires_grad
        t.grad = None
        t._ctx = None
        t._idx = 0
        t._vc = base._vc if base is not None else [0]
        t._base = base
        t._device = device
        t._hooks = None
        return t

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> Device:
        return self._device

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def shape(self):
        return self.data.shape

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def stride(self, dim=None):
        st = tuple(s // self.data.itemsize for s in self.data.strides)
        return st if dim is None else st[dim]

    def is_contiguous(self):
        return bool(self.data.flags.c_contiguous)

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    @property
    def is_cuda(self):
        return self._device.type == "cuda"

    @property
    def T(self):
        return self.permute(*range(self.ndim - 1, -1, -1))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def is_floating_point(self):
        return dtypes.is_floating(self.data.dtype)

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad=True):
        if self._ctx is not None and not requires_grad:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        if requires_grad and not dtypes.is_floating(self.data.dtype):
            raise RuntimeError(f"only floating point tensors can require gradients, got dtype "
                               f"{self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def detach(self):
        """Same memory, cut from the graph."""
        return Tensor._wrap(self.data, self._device, False, base=self)

    def detach_(self):
        self._ctx, self.requires_grad = None, False
        return self

    def retain_grad(self):
        """Keep ``.grad`` on a non-leaf tensor after backward."""
        if self._ctx is None:
            return
        retained = getattr(self._ctx, "_retained", None)
        if retained is None:
            retained = self._ctx._retained = {}
        retained[self._idx] = weakref.ref(self)

    def register_hook(self, hook):
        """``hook(grad) -> Tensor or None`` runs each time backward computes the gradient of this
        tensor, before it is accumulated into a leaf's ``.grad`` or passed on through a non-leaf;
        a returned tensor replaces the gradient. Returns a handle with ``.remove()``."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        if self._ctx is None:
            self._hooks = (self._hooks or ()) + (hook,)
            return _HookHandle(self, None, 0, hook)
        hooks = getattr(self._ctx, "_grad_hooks", None)
        if hooks is None:
            hooks = self._ctx._grad_hooks = {}
        hooks[self._idx] = hooks.get(self._idx, ()) + (hook,)
        return _HookHandle(None, self._ctx, self._idx, hook)

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d self / d leaf into every leaf's ``.grad``.

        ``gradient`` is required for non-scalar tensors (it is the vector of the vector-Jacobian
        product); after backward the graph is freed unless ``retain_graph``.
        """
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn: nothing to differentiate")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; this "
                                   f"tensor has shape {tuple(self.shape)}: pass gradient=")
            g = array_module(self._device).ones_like(self.data)
        else:
            if isinstance(gradient, Tensor):
                if gradient._device is not self._device:
                    raise RuntimeError(f"gradient is on {gradient.device} but the tensor is on "
                                       f"{self.device}")
                g = gradient.data.astype(self.data.dtype, copy=False)
            else:
                g = array_module(self._device).asarray(gradient, dtype=self.data.dtype)
            if g.shape != self.data.shape:
                raise RuntimeError(f"gradient has shape {tuple(g.shape)} but the tensor has shape "
                                   f"{tuple(self.shape)}")
        engine.run_backward([self], [g], retain_graph=retain_graph)

    # ------------------------------------------------------------------ conversions
    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("can't call numpy() on a tensor that requires grad: use "
                               ".detach().numpy()")
        if self._device.type != "cpu":
            raise TypeError(f"can't convert a {self._device} tensor to numpy: use .cpu() first")
        return self.data

    def __array__(self, dtype=None, copy=None):
        arr = self.data if self._device.type == "cpu" else self.data.get()
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(f"item() needs a tensor with one element, got shape "
                               f"{tuple(self.shape)}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.__array__().tolist()

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    @property
    def __cuda_array_interface__(self):
        if self._device.type != "cuda":
            raise AttributeError("__cuda_array_interface__ exists on cuda tensors only")
        return self.data.__cuda_array_interface__

    def to(self, *args, dtype=None, device=None, copy=False):
        """``t.to("cuda")``, ``t.to(minigen.float64)``, ``t.to("cpu", minigen.float16)``,
        ``t.to(other_tensor)``. Differentiable: gradients flow back across the move or cast."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, Device) or (isinstance(a, str) and a.partition(":")[0] in
                                           ("cpu", "cuda")):
                device = a
            else:
                dtype = a  # a dtype, or a dtype name such as "float16"
        out = self
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if dtype != self.data.dtype:
                from .ops.elementwise import Cast
                out = Cast.apply(out, dtype=dtype)
        if device is not None:
            device = Device(device)
            if device is not out._device:
                from .ops.elementwise import ToDevice
                out = ToDevice.apply(out, device=device)
                out._device = device
                # ToDevice.apply wrapped with the input's device; fix the output's
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(Device("cuda", index))

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    # ------------------------------------------------------------------ new_* (PyTorch's)
    # A new tensor with this one's dtype and device unless given (creation.py does the work).
    def _new_args(self, dtype, device):
        return (self.data.dtype if dtype is None else dtype,
                self._device if device is None else device)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import zeros
        dt, dev = self._new_args(dtype, device)
        return zeros(*size, dtype=dt, device=dev, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import ones
        dt, dev = self._new_args(dtype, device)
        return ones(*size, dtype=dt, device=dev, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import empty
        dt, dev = self._new_args(dtype, device)
        return empty(*size, dtype=dt, device=dev, requires_grad=requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        from .creation import full
        dt, dev = self._new_args(dtype, device)
        return full(tuple(size), fill_value, dtype=dt, device=dev, requires_grad=requires_grad)

    def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
        """A copy of ``data`` (detached if a tensor) with this tensor's dtype and device."""
        dt, dev = self._new_args(dtype, device)
        if isinstance(data, Tensor):
            data = data.detach()
        return tensor(data, dtype=dt, device=dev, requires_grad=requires_grad)

    # ------------------------------------------------------------------ in-place machinery
    def _check_inplace(self):
        """Raise before anything changes if an in-place op on self would break autograd."""
        if not STATE.grad_enabled:
            return False
        if self.requires_grad and self._ctx is None:
            raise RuntimeError("a leaf tensor that requires grad is used in an in-place operation; "
                               "do it under minigen.no_grad() (as optimizers do)")
        return True

    def _inplace_from(self, fn, *args):
        """Run out-of-place ``fn(self, *args)`` and make self the result, in place.

        With gradients recorded the op reads a copy of self (so the node's saved arrays are not
        overwritten) and self takes over the node: self becomes the op's output in the graph.
        """
        record = self._check_inplace() and (
            self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))
        if record and self._base is not None:
            # the tensor this views would keep its old node and miss the change in the graph
            raise RuntimeError("in-place operation on a view while gradients are recorded is not "
                               "supported: assign into the viewed tensor with base[index] = value, "
                               "or use the out-of-place op")
        if record:
            src = Tensor._wrap(self.data.copy(), self._device, self.requires_grad)
            src._ctx, src._idx = self._ctx, self._idx
            out = fn(src, *args)
        else:
            with _no_grad():
                out = fn(self, *args)
        if out.data.shape != self.data.shape:
            raise RuntimeError(f"in-place result of shape {tuple(out.shape)} does not fit the "
                               f"tensor of shape {tuple(self.shape)}")
        if out.data.dtype != self.data.dtype and not np.can_cast(out.data.dtype, self.data.dtype,
                                                                 "same_kind"):
            raise RuntimeError(f"result type {out.data.dtype} can't be cast to the in-place "
                               f"tensor's dtype {self.data.dtype}")
        array_module(self._device).copyto(self.data, out.data, casting="unsafe")
        self._vc[0] += 1
        if record:
            self._ctx, self._idx, self.requires_grad = out._ctx, out._idx, out.requires_grad
            if self._ctx is not None and getattr(self._ctx, "_versions", None) is not None:
                # the node now produces self: its saved-output check follows self's counter
                self._ctx._versions = [(self._vc, self._vc[0], p) if p < 0 else (vc, v, p)
                                       for vc, v, p in self._ctx._versions]
        return self

    def add_(self, other, alpha=1):
        return self._inplace_from(lambda a, b: a + (b * alpha if alpha != 1 else b), other)

    def sub_(self, other, alpha=1):
        return self._inplace_from(lambda a, b: a - (b * alpha if alpha != 1 else b), other)

    def mul_(self, other):
        return self._inplace_from(lambda a, b: a * b, other)

    def div_(self, other):
        return self._inplace_from(lambda a, b: a / b, other)

    # ``x += y`` is in place, as in PyTorch (without these Python would rebind x to x + y, and
    # ``p -= lr * p.grad`` under no_grad would leave a model's parameter untouched).
    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def clamp_(self, min=None, max=None):
        return self._inplace_from(lambda a: a.clamp(min, max))

    def copy_(self, src):
        """Write ``src`` (broadcast, cast, moved to this device) into self. Recorded, the
        gradient flows to ``src``; the old values of self get none."""
        src_t = src if isinstance(src, Tensor) else tensor(src, device=self._device)
        if self._check_inplace() and (self.requires_grad or src_t.requires_grad):
            from .ops.shape import broadcast_to
            # the new values never read the old ones (a * 0 would turn inf/NaN garbage into NaN)
            return self._inplace_from(
                lambda a, s: broadcast_to(s.to(a.device, a.dtype), a.shape).clone(), src_t)
        data = to_device(src_t.data, self._device)
        try:
            array_module(self._device).copyto(self.data, data, casting="unsafe")
        except ValueError as exc:
            raise RuntimeError(f"copy_: source of shape {tuple(src_t.shape)} does not broadcast "
                               f"to the tensor's shape {tuple(self.shape)} ({exc})") from None
        self._vc[0] += 1
        return self

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        self._check_inplace()
        if self.requires_grad and STATE.grad_enabled:
            from .ops.elementwise import where
            # select the value everywhere: zero gradient to the old values, no NaN from inf * 0
            return self._inplace_from(lambda a: where(
                Tensor._wrap(array_module(a._device).zeros(a.shape, dtype=bool), a._device),
                a, value))
        self.data[...] = value.data if isinstance(value, Tensor) else value
        self._vc[0] += 1
        return self

    def __setitem__(self, index, value):
        from .ops.indexing import IndexPut, _show, _unwrap_index
        idx = _unwrap_index(index)
        if isinstance(value, Tensor):
            if value._device is not self._device:
                raise RuntimeError(f"index assignment: value is on {value.device} but the tensor "
                                   f"is on {self.device}")
        else:
            value = Tensor._wrap(array_module(self._device).asarray(value, dtype=self.data.dtype),
                                 self._device)
        if self._check_inplace() and (self.requires_grad or value.requires_grad):
            self._inplace_from(lambda a, v: IndexPut.apply(a, v, index=idx), value)
            return
        try:  # nothing to record: write straight into the array
            self.data[idx] = value.data
        except (IndexError, ValueError, TypeError) as exc:
            raise RuntimeError(f"index assignment of a value of shape {tuple(value.shape)} at "
                               f"{_show(idx)} into shape {tuple(self.shape)} failed: "
                               f"{exc}") from None
        self._vc[0] += 1

    def __pos__(self):
        return self

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.data.shape[0]):
            yield self[i]

    # ------------------------------------------------------------------ printing
    def __repr__(self):
        body = np.array2string(self.__array__(), separator=", ", prefix="tensor(",
                               precision=4, threshold=200)
        extra = []
        if self._device is not CPU:
            extra.append(f"device='{self._device}'")
        if self.data.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool_):
            extra.append(f"dtype={self.data.dtype}")
        if self._ctx is not None:
            extra.append(f"grad_fn=<{self._ctx.name}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"truth value of a tensor with {self.data.size} elements is "
                               "ambiguous")
        return bool(self.data.reshape(()))

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__


class _HookHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, leaf, node, idx, hook):
        self._leaf, self._node, self._idx, self._hook = leaf, node, idx, hook

    def remove(self):
        if self._leaf is not None:
            self._leaf._hooks = tuple(h for h in self._leaf._hooks or () if h is not self._hook)
        else:
            hooks = getattr(self._node, "_grad_hooks", None) or {}
            if self._idx in hooks:
                hooks[self._idx] = tuple(h for h in hooks[self._idx] if h is not self._hook)


class _no_grad:
    def __enter__(self):
        self.prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc):
        STATE.grad_enabled = self.prev


# ---------------------------------------------------------------------- construction from data
def _to_backend(data, dtype, device):
    """Turn python data / numpy / cupy / Tensor into an array of ``dtype`` on ``device``."""
    xp = array_module(device)
    if isinstance(data, Tensor):
        data = data.data
    if device.type == "cpu" and not isinstance(data, np.ndarray) and hasattr(data, "get") \
            and hasattr(data, "__cuda_array_interface__"):
        data = data.get()
    if dtype is None:
        if isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__"):
            arr = xp.asarray(data)  # numpy data keeps its dtype (np.float64(1.0) -> float64)
        else:
            try:
                arr = np.asarray(data)
            except ValueError as exc:  # numpy 2 refuses ragged nesting outright
                raise TypeError(f"can't make a tensor from {type(data).__name__} data (ragged "
                                f"nesting or non-numeric objects): {exc}") from None
            if arr.dtype.kind == "f":
                arr = arr.astype(dtypes.get_default_dtype())
            elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
                arr = arr.astype(np.int64)
            elif arr.dtype.kind == "O":
                raise TypeError(f"can't make a tensor from {type(data).__name__} data "
                                "(ragged nesting or non-numeric objects)")
            arr = xp.asarray(arr)
    else:
        arr = xp.asarray(data, dtype=dtype)
    return arr


def _may_alias(arr, src, device) -> bool:
    """Whether the backend array ``arr`` made from ``src`` may share its memory.

    numpy's ``shares_memory`` must see two numpy arrays: given a CuPy array it defers to
    ``cupy.shares_memory``, which rejects the numpy one. An upload (host ``src``, device
    ``arr``) is always a copy; two device arrays are compared by their address ranges (host
    metadata, no synchronisation; an overlap that is not a true alias only costs a copy)."""
    if arr is src:
        return True
    if isinstance(arr, np.ndarray):
        return isinstance(src, np.ndarray) and np.shares_memory(arr, src)
    if isinstance(src, (np.ndarray, np.generic)) or type(src) is not type(arr):
        return False
    return bool(array_module(device).may_share_memory(arr, src))


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data``.

    Python floats become the default float dtype (float32), Python ints int64, as in PyTorch.
    """
    device = Device(device) if device is not None else (
        data.device if isinstance(data, Tensor) else CPU)
    dtype = dtypes.as_dtype(dtype) if dtype is not None else None
    arr = _to_backend(data, dtype, device)
    if _may_alias(arr, data.data if isinstance(data, Tensor) else data, device):
        arr = arr.copy()
    t = Tensor._wrap(arr, device, False)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with a numpy/cupy array when dtype and device allow."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    device = Device(device) if device is not None else (
        CPU if isinstance(data, (np.ndarray, list, tuple, int, float, bool)) else device_of(data))
    return Tensor._wrap(_to_backend(data, dtypes.as_dtype(dtype) if dtype else None, device),
                        device)


def from_numpy(array):
    """A tensor sharing memory with a numpy array (writes show on both sides)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array, CPU)


def from_dlpack(obj):
    """Zero-copy import of any DLPack producer (numpy, cupy, PyTorch, JAX, ...)."""
    if isinstance(obj, Tensor):
        return obj
    dev_type, dev_id = obj.__dlpack_device__()
    if int(dev_type) == 1:  # kDLCPU
        return Tensor._wrap(np.from_dlpack(obj), CPU)
    if int(dev_type) == 2:  # kDLCUDA
        cp = cupy_module()
        return Tensor._wrap(cp.from_dlpack(obj), Device("cuda", int(dev_id)))
    raise RuntimeError(f"from_dlpack: unsupported DLPack device type {dev_type}")


def _ensure_tensor(x, like: Tensor):
    """Python scalars / arrays to a tensor on ``like``'s device (used by binary ops)."""
    if isinstance(x, Tensor):
        return x
    return Tensor._wrap(array_module(like._device).asarray(x, dtype=like.data.dtype),
                        like._device)


__all__ = ["Tensor", "tensor", "as_tensor", "from_numpy", "from_dlpack", "to_device"]


def _register():
    from .autograd import function
    function._TENSOR[0] = Tensor


_register()
