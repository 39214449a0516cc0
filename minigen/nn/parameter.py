"""``Parameter``: a Tensor that a ``Module`` registers as learnable when assigned to it.

A Parameter is a plain ``Tensor`` subclass (no extra fields, ``__slots__ = ()``), so
``isinstance(p, Parameter)`` is the test ``Module.__setattr__`` uses and ops on parameters cost
exactly what they cost on tensors. Results of ops on a Parameter are ordinary Tensors.
"""
from __future__ import annotations

import numpy as np

from ..backend import CPU
from ..tensor import Tensor


class Parameter(Tensor):
    """``Parameter(data, requires_grad=True)``: shares ``data``'s memory and version counter.

    ``data`` is a Tensor (or an array / nested list, copied into a new tensor); with no data the
    parameter is an empty float32 tensor of shape (0,).
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            src = Tensor._wrap(np.empty((0,), dtype=np.float32), CPU)
        elif isinstance(data, Tensor):
            src = data
        else:
            from ..tensor import tensor
            src = tensor(data)
        p = Tensor._wrap.__func__(cls, src.data, src._device, False)
        p._vc = src._vc  # in-place writes through ``data`` are seen by graphs that saved p
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (Tensor.__init__ would build a copy)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # pickle / deepcopy: rebuild from a plain tensor holding the same values
        grad = None if self.grad is None else self.grad.data
        return (_rebuild_parameter, (self.data, str(self._device), self.requires_grad, grad))


def _rebuild_parameter(array, device, requires_grad, grad=None):
    from ..backend import Device
    device = Device(device)
    p = Parameter(Tensor._wrap(array, device), requires_grad=requires_grad)
    if grad is not None:
        p.grad = Tensor._wrap(grad, device)
    return p


__all__ = ["Parameter"]


def zero_grads(params, set_to_none: bool = True):
    """Clear the gradients of ``params``: drop them (default) or zero them in place (bumping
    the version counter so a graph that saved them notices). Module.zero_grad and
    Optimizer.zero_grad both call this."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad.data[...] = 0
            p.grad._vc[0] += 1
