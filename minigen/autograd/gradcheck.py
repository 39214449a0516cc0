"""Compare analytic gradients with float64 central differences.

For f: Rⁿ → Rᵐ and a random cotangent v, the analytic vector-Jacobian product vᵀJ from backward
must match  ∂(v·f)/∂x_i ≈ (v·f(x + h e_i) − v·f(x − h e_i)) / 2h  for every input element i.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_device
from .grad_mode import no_grad


def _host(array):
    """A float64 numpy copy of a numpy or cupy array."""
    return np.asarray(array.get() if hasattr(array, "get") else array, dtype=np.float64)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True):
    """``fn(*inputs)`` → Tensor or tuple of Tensors; inputs that require grad are checked.

    Inputs should be float64 (the differences are taken in the inputs' own dtype).
    Returns True, or raises (or returns False) naming the input and the worst element.
    """
    from ..tensor import Tensor

    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    rng = np.random.default_rng(seed)

    def flat_outputs():
        out = fn(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    outs = flat_outputs()
    # the differentiable outputs, by position, so that the perturbed runs pair each output
    # with its own cotangent
    positions = [k for k, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
    outs = [outs[k] for k in positions]
    cotangents = [rng.standard_normal(o.shape) for o in outs]

    def scalar_value():
        with no_grad():
            vals = flat_outputs()
        return sum(float((_host(vals[k].data) * v).sum())
                   for k, v in zip(positions, cotangents))

    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    for i in checked:
        inputs[i].grad = None
    from .functional import backward
    if outs:
        backward(outs, [Tensor._wrap(to_device(np.asarray(v, dtype=o.dtype), o.device), o.device)
                        for o, v in zip(outs, cotangents)])
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
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            k = np.unravel_index(int(np.argmax(err - rtol * np.abs(numeric))), t.shape)
            msg = (f"gradcheck: gradient of input {i} disagrees with central differences at "
                   f"{tuple(int(j) for j in k)}: analytic {analytic[k]:.8g}, numeric "
                   f"{numeric[k]:.8g} (max abs error {err.max():.3g})")
            if raise_exception:
                raise AssertionError(msg)
            return False
    return True
