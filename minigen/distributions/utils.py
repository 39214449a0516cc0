"""Helpers shared by the families: parameter broadcasting, probs ↔ logits."""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes
from ..backend import array_module
from ..tensor import Tensor


def broadcast_all(*values, names=None):
    """Tensors and Python numbers as Tensors of one floating dtype, one device and the
    broadcast shape (expanded views: gradients reach the original tensors).

    A Python number takes the dtype and device of the tensors given (the default dtype and the
    CPU if there are none)."""
    names = names or [f"argument {i}" for i in range(len(values))]
    tensors = [v for v in values if isinstance(v, Tensor)]
    for v, name in zip(values, names):
        if not isinstance(v, (Tensor, numbers.Number)) or isinstance(v, bool):
            raise TypeError(f"{name} must be a Tensor or a number, got {type(v).__name__}")
    device = tensors[0].device if tensors else None
    for t in tensors[1:]:
        if t.device != device:
            raise RuntimeError(f"expected all parameters on one device, got {device} and "
                               f"{t.device}")
    dt = None
    for t in tensors:
        if dtypes.is_floating(t.data.dtype):
            dt = t.data.dtype if dt is None else dtypes.promote(dt, t.data.dtype)
    if dt is None:
        dt = dtypes.get_default_dtype()
    try:
        shape = np.broadcast_shapes(*[tuple(t.shape) for t in tensors])
    except ValueError:
        raise ValueError("parameters of shapes " + ", ".join(
            f"{n}: {tuple(v.shape)}" for v, n in zip(values, names) if isinstance(v, Tensor))
            + " cannot be broadcast together") from None
    xp = array_module(device) if device is not None else np
    out = []
    for v in values:
        if isinstance(v, Tensor):
            t = v if v.data.dtype == dt else v.to(dt)
        else:
            t = Tensor._wrap(xp.asarray(v, dtype=dt), device)
        out.append(t if tuple(t.shape) == shape else t.expand(*shape))
    return tuple(out)


def as_float_tensor(value, name):
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return Tensor._wrap(np.asarray(value, dtype=dtypes.get_default_dtype()), None)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(value).__name__}")
    if not dtypes.is_floating(value.data.dtype):
        value = value.to(dtypes.get_default_dtype())
    return value


def tiny(dtype):
    return float(np.finfo(dtype).tiny)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def clamp_probs(probs):
    """probs in [eps, 1 − eps] (the logits of 0 and 1 are then finite, as in PyTorch)."""
    e = eps(probs.data.dtype)
    return probs.clamp(min=e, max=1 - e)


def probs_to_logits(probs, is_binary=False):
    p = clamp_probs(probs)
    return p.log() - (-p).log1p() if is_binary else p.log()


def logits_to_probs(logits, is_binary=False):
    return logits.sigmoid() if is_binary else logits.softmax(-1)


class lazy_property:
    """Computed on first access and cached in the instance (the other parametrisation of
    Bernoulli/Categorical: ``probs`` from ``logits`` or the reverse)."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = self.fn(instance)
        instance.__dict__[self.__name__] = value
        return value
