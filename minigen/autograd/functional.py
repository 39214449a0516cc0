"""``backward(tensors, grad_tensors)`` and ``grad(outputs, inputs)``: the engine's entry points."""
from __future__ import annotations

from ..backend import array_module
from . import engine


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _root_grads(outputs, grad_outputs):
    from ..tensor import Tensor
    grads = []
    for i, out in enumerate(outputs):
        g = grad_outputs[i] if grad_outputs is not None else None
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise RuntimeError(f"output {i} does not require grad and has no grad_fn")
        if g is None:
            if out.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"output {i} has shape {tuple(out.shape)}: pass grad_outputs")
            grads.append(array_module(out.device).ones_like(out.data))
        else:
            g = g.data if isinstance(g, Tensor) else array_module(out.device).asarray(g)
            if g.shape != out.data.shape:
                raise RuntimeError(f"grad_outputs[{i}] has shape {tuple(g.shape)} but output {i} "
                                   f"has shape {tuple(out.shape)}")
            grads.append(g.astype(out.data.dtype, copy=False))
    return grads


def backward(tensors, grad_tensors=None, retain_graph=False):
    """Accumulate gradients of several outputs at once (their vector-Jacobian products add)."""
    tensors = _as_list(tensors)
    if grad_tensors is not None:
        grad_tensors = _as_list(grad_tensors)
    engine.run_backward(tensors, _root_grads(tensors, grad_tensors), retain_graph=retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, create_graph=False,
         allow_unused=False):
    """d outputs / d inputs as a tuple of tensors, without touching any ``.grad``.

    Used for input gradients, e.g. classifier guidance: ∇ₓ log p(y | x).
    ``create_graph=True`` (gradients of gradients) is not supported: backward functions run on
    raw arrays, so the result is not itself differentiable.
    """
    from ..tensor import Tensor
    if create_graph:
        raise NotImplementedError("grad(create_graph=True): higher-order gradients are not "
                                  "supported by minigen's engine")
    single = isinstance(inputs, Tensor)
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    if grad_outputs is not None:
        grad_outputs = _as_list(grad_outputs)
    capture = {}
    keys = []
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"input {i} does not require grad")
        key = id(t) if t._ctx is None else (id(t._ctx), t._idx)
        capture[key] = None
        keys.append(key)
    engine.run_backward(outputs, _root_grads(outputs, grad_outputs), retain_graph=retain_graph,
                        capture=capture)
    result = []
    for i, (t, key) in enumerate(zip(inputs, keys)):
        g = capture[key]
        if g is None:
            if not allow_unused:
                raise RuntimeError(f"input {i} was not used to compute the outputs; pass "
                                   "allow_unused=True to get None for it")
            result.append(None)
        else:
            result.append(Tensor._wrap(g, t.device))
    return tuple(result)
