"""Compare analytic gradients with float64 central differences.

For f: Rⁿ → Rᵐ and a random cotangent v, the analytic vector-Jacobian product vᵀJ from backward
must match  ∂(v·f)/∂x_i ≈ (v·f(x + h e_i) − v·f(x − h e_i)) / 2h  for every input element i.

v·f runs over every floating output, whether or not it requires grad: an output cut off from the
graph (computed outside autograd, or detached by mistake) then shows a numeric derivative that
backward cannot produce. And when an input requires grad, every floating output must too, so that
such a cut is named directly instead of surfacing as a gradient mismatch (or not at all, for an
output that happens not to depend on the checked inputs). Integer and bool outputs (argmax
indices, masks) are piecewise constant and carry no derivative.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_device
from .grad_mode import is_grad_enabled, no_grad


def _host(array):
    """A float64 numpy copy of a numpy or cupy array."""
    return np.asarray(array.get() if hasattr(array, "get") else array, dtype=np.float64)


def _is_float(out):
    dtype = getattr(out, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "f"


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True):
    """``fn(*inputs)`` → Tensor or tuple of Tensors; inputs that require grad are checked.

    Inputs should be float64 (the differences are taken in the inputs' own dtype).
    Returns True, or raises (or returns False) naming the input and the worst element.
    A floating output that does not require grad while a checked input does raises
    AssertionError whatever ``raise_exception`` says: the check cannot mean anything then.
    """
    from ..tensor import Tensor

    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    rng = np.random.default_rng(seed)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]

    def flat_outputs():
        out = fn(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    outs = flat_outputs()
    # every floating output, by position, so that the perturbed runs pair each output with its
    # own cotangent
    positions = [k for k, o in enumerate(outs) if _is_float(o)]
    if checked and is_grad_enabled():
        cut = [k for k in positions if not (isinstance(outs[k], Tensor) and outs[k].requires_grad)]
        if cut:
            raise AssertionError(
                f"gradcheck: output(s) {cut} are floating point but do not require grad although "
                f"input(s) {checked} do: the op's result is cut off from the autograd graph")
    cotangents = {k: rng.standard_normal(np.shape(outs[k])) for k in positions}

    def scalar_value():
        with no_grad():
            vals = flat_outputs()
        return sum(float((_host(vals[k].data if isinstance(vals[k], Tensor) else vals[k])
                          * v).sum()) for k, v in cotangents.items())

    for i in checked:
        inputs[i].grad = None
    from .functional import backward
    diff = [k for k in positions if isinstance(outs[k], Tensor) and outs[k].requires_grad]
    if diff:
        backward([outs[k] for k in diff],
                 [Tensor._wrap(to_device(np.asarray(cotangents[k], dtype=outs[k].dtype),
                                         outs[k].device), outs[k].device) for k in diff])
    for i in checked:
        t = inputs[i]
        analytic = np.zeros(t.shape) if t.grad is None else _host(t.grad.data)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1) if t.data.flags.c_contiguous else None
        if flat is None:
            raise ValueError("gradcheck: inputs must be contiguous (pass a view through fn)")
        for k in range(flat.size):
            orig = float(flat[k])
            flat[k] = orig + eps
            plus = scalar_value()
            flat[k] = orig - eps
            minus = scalar_value()
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = ~(err <= atol + rtol * np.abs(numeric))   # NaN (0/0 in a backward) fails too
        if bad.any():
            k = np.unravel_index(int(np.argmax(err - rtol * np.abs(numeric))), t.shape)
            msg = (f"gradcheck: gradient of input {i} disagrees with central differences at "
                   f"{tuple(int(j) for j in k)}: analytic {analytic[k]:.8g}, numeric "
                   f"{numeric[k]:.8g} (max abs error {err.max():.3g})")
            if raise_exception:
                raise AssertionError(msg)
            return False
    return True
