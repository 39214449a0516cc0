"""Gradient clipping, in place on ``p.grad``.

``clip_grad_norm_``: total norm N = ‖(‖g_1‖_p, ..., ‖g_k‖_p)‖_p = (Σ_i Σ_j |g_ij|^p)^(1/p) over
all gradients (max |g| for p = inf), accumulated in float64; every gradient is multiplied by
c = min(1, max_norm/(N + 1e-6)). Returns N (before clipping).
``clip_grad_value_``: clamp every gradient element to [−clip_value, clip_value].

No host synchronisation: N and c stay 0-d arrays on the gradients' device and every gradient is
multiplied by c there, even when c = 1 (exact, as PyTorch does), so a CUDA training step never
waits for the GPU here. N comes back as a 0-d tensor on that device; reading it (``float``,
``.item()``) is the transfer, which a training loop can do every few steps. Only
``error_if_nonfinite=True`` transfers N (once) to test it. A NaN or inf N gives c = NaN (or 0):
the gradients become NaN, as in PyTorch; check ``N.isfinite()`` on the device to catch that.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..backend import device_of, to_device, xp_of
from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _total_norm(arrays, norm_type: float):
    """The total norm of the module doc as a 0-d float64 array on the first array's device
    (arrays elsewhere are moved there); None for no arrays. No host transfer."""
    if not arrays:
        return None
    device = device_of(arrays[0])
    xp = xp_of(arrays[0])
    parts = []   # per array: max |a| (p = inf) or Σ |a|^p, each 0-d on the device
    for a in arrays:
        if a.size == 0:
            continue
        if device_of(a) is not device:
            a = to_device(a, device)
        a = a if a.dtype == np.float64 else a.astype(np.float64)
        if norm_type == math.inf:
            parts.append(xp.abs(a).max())
        elif norm_type == 2.0:
            flat = a.ravel()
            parts.append(xp.vdot(flat, flat).real)
        else:
            parts.append((xp.abs(a) ** norm_type).sum())
    if not parts:
        return xp.zeros((), dtype=np.float64)
    v = xp.stack(parts)
    if norm_type == math.inf:
        return v.max()
    if norm_type == 2.0:
        return xp.sqrt(v.sum())
    return v.sum() ** (1.0 / norm_type)


def _raise_nonfinite(total, norm_type):
    raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite "
                       f"({total}), so it cannot be clipped; pass error_if_nonfinite=False to "
                       "clip anyway")


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """‖(‖t_1‖_p, ..., ‖t_k‖_p)‖_p as a Python float (accumulated in float64): one host
    transfer. ``clip_grad_norm_`` returns the same number as a device tensor without one."""
    norm_type = float(norm_type)
    total = _total_norm([t.data if isinstance(t, Tensor) else t for t in tensors], norm_type)
    total = 0.0 if total is None else float(total)
    if error_if_nonfinite and not math.isfinite(total):
        _raise_nonfinite(total, norm_type)
    return total


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False):
    """Scale all gradients so that their total ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping as a 0-d tensor on the gradients' device (float32,
    or float64 when every gradient is float64); no host synchronisation unless
    ``error_if_nonfinite`` (module doc)."""
    norm_type, max_norm = float(norm_type), float(max_norm)
    grads = _grads(parameters)
    total = _total_norm([g.data for g in grads], norm_type)
    if total is None:
        return Tensor._wrap(np.zeros((), dtype=np.float32), None)
    if error_if_nonfinite and not math.isfinite(float(total)):   # the one deliberate transfer
        _raise_nonfinite(float(total), norm_type)
    xp = xp_of(total)
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)     # 0-d; NaN when N is NaN
    for g in grads:
        c = coef if device_of(g.data) is device_of(total) else to_device(coef, g.device)
        g.data *= c.astype(g.data.dtype)
        g._vc[0] += 1
    out_dtype = dtypes.float64 if all(g.dtype == np.float64 for g in grads) else dtypes.float32
    return Tensor._wrap(total.astype(out_dtype), device_of(total))


def clip_grad_value_(parameters, clip_value: float):
    """Clamp every gradient element to [−clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp_of(g.data).clip(g.data, -clip_value, clip_value, out=g.data)
        g._vc[0] += 1


__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]
