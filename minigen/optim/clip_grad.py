"""Gradient clipping, in place on ``p.grad``.

``clip_grad_norm_``: total norm N = ‖(‖g_1‖_p, ..., ‖g_k‖_p)‖_p over all gradients (max |g| for
p = inf); every gradient is scaled by min(1, max_norm/(N + 1e-6)). Returns N (before clipping).
``clip_grad_value_``: clamp every gradient element to [−clip_value, clip_value].
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..backend import CPU, xp_of
from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """‖(‖t_1‖_p, ..., ‖t_k‖_p)‖_p as a Python float (accumulated in float64)."""
    norm_type = float(norm_type)
    norms = []
    for t in tensors:
        a = t.data if isinstance(t, Tensor) else t
        xp = xp_of(a)
        if a.size == 0:
            norms.append(0.0)
            continue
        a = a.astype(np.float64) if a.dtype != np.float64 else a
        if norm_type == math.inf:
            norms.append(float(xp.abs(a).max()))
        elif norm_type == 2.0:
            norms.append(math.sqrt(float(xp.vdot(a.ravel(), a.ravel()).real)))
        else:
            norms.append(float((xp.abs(a) ** norm_type).sum()) ** (1.0 / norm_type))
    if not norms:
        return 0.0
    v = np.asarray(norms, dtype=np.float64)
    if norm_type == math.inf:
        total = float(v.max())
    else:
        total = float((v ** norm_type).sum() ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is "
                           f"non-finite ({total}), so it cannot be clipped; pass "
                           "error_if_nonfinite=False to clip anyway")
    return total


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False):
    """Scale all gradients so that their total ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping as a 0-d tensor (float32, or the gradients' dtype
    when that is float64)."""
    grads = _grads(parameters)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    out_dtype = dtypes.float64 if grads and all(g.dtype == np.float64 for g in grads) \
        else dtypes.float32
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    if coef < 1.0 or not math.isfinite(total):
        for g in grads:
            g.data *= coef
            g._vc[0] += 1
    return Tensor._wrap(np.asarray(total, dtype=out_dtype), CPU)


def clip_grad_value_(parameters, clip_value: float):
    """Clamp every gradient element to [−clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp_of(g.data).clip(g.data, -clip_value, clip_value, out=g.data)
        g._vc[0] += 1


__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]
