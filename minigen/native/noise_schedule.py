"""noise_schedule family, native CPU version: the one-pass C++ kernels of
``csrc/noise_schedule.cpp`` (``ns_lincomb``, ``ns_scale2``, ``ns_step``).

The math and the family interface: ``minigen/reference/noise_schedule.py``. This face only
picks table columns and kernel variants and allocates the outputs. float16/bfloat16 arrays
(no C++ kernel) run the reference.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .. import schedules as S
from ..reference import noise_schedule as ref

_PRED = {"epsilon": 0, "sample": 1, "v_prediction": 2}
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# x̂_0 = a x_t + b m, as (col_a, sign_a, col_b, sign_b) of the table
_X0_COLS = {"epsilon": (S.COL_SQRT_RECIP_AB, 1.0, S.COL_SQRT_RECIPM1_AB, -1.0),
            "v_prediction": (S.COL_SQRT_AB, 1.0, S.COL_SQRT_OMAB, -1.0)}


def _C():
    return _native.module()


def q_sample(table, x0, t, noise):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (one pass: read x0, ε; write x_t)."""
    if x0.dtype not in _KERNEL_DTYPES:
        return ref.q_sample(table, x0, t, noise)
    out = np.empty_like(x0)
    _C().ns_lincomb(table, t, x0, noise, out, S.COL_SQRT_AB, 1.0, S.COL_SQRT_OMAB, 1.0)
    return out


def q_sample_backward(table, t, grad, need_x0=True, need_noise=True):
    """(√ᾱ_t g, √(1 − ᾱ_t) g) in one pass over g (None where not needed)."""
    if grad.dtype not in _KERNEL_DTYPES:
        return ref.q_sample_backward(table, t, grad, need_x0, need_noise)
    gx0 = np.empty_like(grad) if need_x0 else None
    gnoise = np.empty_like(grad) if need_noise else None
    _C().ns_scale2(table, t, grad, gx0, gnoise, S.COL_SQRT_AB, S.COL_SQRT_OMAB)
    return gx0, gnoise


def predict_x0(table, xt, t, model_output, prediction_type="epsilon"):
    if xt.dtype not in _KERNEL_DTYPES or prediction_type not in _X0_COLS:
        return ref.predict_x0(table, xt, t, model_output, prediction_type)
    ca, sa, cb, sb = _X0_COLS[prediction_type]
    out = np.empty_like(xt)
    _C().ns_lincomb(table, t, xt, model_output, out, ca, sa, cb, sb)
    return out


def posterior_mean(table, x0, xt, t):
    """μ̃_t = c1_t x_0 + c2_t x_t (one pass)."""
    if xt.dtype not in _KERNEL_DTYPES:
        return ref.posterior_mean(table, x0, xt, t)
    out = np.empty_like(xt)
    _C().ns_lincomb(table, t, x0, xt, out, S.COL_POST_C1, 1.0, S.COL_POST_C2, 1.0)
    return out


def _step(kind, table, xt, t, t_prev, eps_c, eps_u, noise, *, eta, w, prediction_type,
          sigma_col, clip, return_x0):
    out = np.empty_like(xt)
    x0 = np.empty_like(xt) if return_x0 else None
    _C().ns_step(table, t, t_prev, xt, eps_c, eps_u, noise, out, x0, kind,
                 _PRED[prediction_type], sigma_col, eta, w, -1.0 if clip is None else clip)
    return out, x0


def ddpm_step(table, xt, t, eps_c, eps_u, noise, *, w=0.0, prediction_type="epsilon",
              variance_type="fixed_small", clip=None, return_x0=False):
    if xt.dtype not in _KERNEL_DTYPES:
        return ref.ddpm_step(table, xt, t, eps_c, eps_u, noise, w=w,
                             prediction_type=prediction_type, variance_type=variance_type,
                             clip=clip, return_x0=return_x0)
    col = S.COL_SIGMA_SMALL if variance_type == "fixed_small" else S.COL_SIGMA_LARGE
    return _step(0, table, xt, t, None, eps_c, eps_u, noise, eta=0.0, w=w,
                 prediction_type=prediction_type, sigma_col=col, clip=clip,
                 return_x0=return_x0)


def ddim_step(table, xt, t, t_prev, eps_c, eps_u, noise, *, eta=0.0, w=0.0,
              prediction_type="epsilon", clip=None, return_x0=False):
    if xt.dtype not in _KERNEL_DTYPES:
        return ref.ddim_step(table, xt, t, t_prev, eps_c, eps_u, noise, eta=eta, w=w,
                             prediction_type=prediction_type, clip=clip, return_x0=return_x0)
    if eta == 0:
        noise = None
    return _step(1, table, xt, t, t_prev, eps_c, eps_u, noise, eta=eta, w=w,
                 prediction_type=prediction_type, sigma_col=S.COL_SIGMA_SMALL, clip=clip,
                 return_x0=return_x0)
