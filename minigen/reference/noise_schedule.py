"""noise_schedule, the reference: the diffusion equations of MATH.md §6–8, one numpy (or CuPy)
expression per equation. The test oracle of the fused kernels (native, triton).

Every function takes ``table``, the float64 coefficient table of a ``NoiseSchedule``
(``minigen.schedules``: one row per timestep index t = 0..T−1, columns ``COL_*``) on the
arrays' device, and ``t``, an int64 array of shape (N,) with one timestep per sample, on the
device too. Per-sample coefficients are gathered as ``table[t, COL]`` (no host round trip),
broadcast over the sample's other dims, and rounded once to the compute dtype (the data's
dtype; float32 for float16/bfloat16), so that the kernels and this file agree to rounding.

Shapes: x (N, *), model outputs and noise like x. ``eps_u`` is the unconditional branch for
classifier-free guidance (None without guidance):  ε̄ = (1 + w) ε_c − w ε_u   (MATH.md §8).
Unlike the kernels, these functions make several passes over memory (one per expression).
"""
from __future__ import annotations

import numpy as np

from .. import schedules as S
from ..backend import xp_of

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large")


def _compute_dtype(dt):
    return np.dtype(np.float32) if np.dtype(dt).itemsize < 4 else np.dtype(dt)


def _coef(table, t, col, like, ct):
    """table[t, col] as a (N, 1, ..., 1) array of the compute dtype, broadcasting over x."""
    return table[t, col].astype(ct).reshape((-1,) + (1,) * (like.ndim - 1))


def _guided(eps_c, eps_u, w, ct):
    """ε̄ = (1 + w) ε_c − w ε_u  (classifier-free guidance, MATH.md §8); ε_c without it."""
    if eps_u is None:
        return eps_c.astype(ct, copy=False)
    return ct.type(1 + w) * eps_c.astype(ct) - ct.type(w) * eps_u.astype(ct)


# ----------------------------------------------------------------------------- forward process
def q_sample(table, x0, t, noise):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (closed form of q(x_t | x_0))."""
    ct = _compute_dtype(x0.dtype)
    sqrt_ab = _coef(table, t, S.COL_SQRT_AB, x0, ct)
    sqrt_omab = _coef(table, t, S.COL_SQRT_OMAB, x0, ct)
    xt = sqrt_ab * x0.astype(ct) + sqrt_omab * noise.astype(ct)
    return xt.astype(x0.dtype, copy=False)


def q_sample_backward(table, t, grad, need_x0=True, need_noise=True):
    """∂L/∂x_0 = √ᾱ_t g,  ∂L/∂ε = √(1 − ᾱ_t) g."""
    ct = _compute_dtype(grad.dtype)
    g = grad.astype(ct)
    gx0 = gnoise = None
    if need_x0:
        gx0 = (_coef(table, t, S.COL_SQRT_AB, g, ct) * g).astype(grad.dtype, copy=False)
    if need_noise:
        gnoise = (_coef(table, t, S.COL_SQRT_OMAB, g, ct) * g).astype(grad.dtype, copy=False)
    return gx0, gnoise


# ------------------------------------------------------------------------ predictions of x_0
def _predict_x0(table, xt, t, m, prediction_type, ct):
    """x̂_0 from the model output m (compute dtype in, compute dtype out):
        epsilon:       x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε
        v_prediction:  x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v
        sample:        x̂_0 = m
    """
    if prediction_type == "epsilon":
        return (_coef(table, t, S.COL_SQRT_RECIP_AB, xt, ct) * xt
                - _coef(table, t, S.COL_SQRT_RECIPM1_AB, xt, ct) * m)
    if prediction_type == "v_prediction":
        return (_coef(table, t, S.COL_SQRT_AB, xt, ct) * xt
                - _coef(table, t, S.COL_SQRT_OMAB, xt, ct) * m)
    if prediction_type == "sample":
        return m
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                     f"got {prediction_type!r}")


def _predict_eps(table, xt, t, m, x0, prediction_type, ct):
    """ε̂ consistent with x̂_0:  epsilon: m;  v_prediction: √(1−ᾱ_t) x_t + √ᾱ_t v;
    otherwise (sample, or after clipping x̂_0): (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t)."""
    if prediction_type == "epsilon":
        return m
    if prediction_type == "v_prediction":
        return (_coef(table, t, S.COL_SQRT_OMAB, xt, ct) * xt
                + _coef(table, t, S.COL_SQRT_AB, xt, ct) * m)
    return ((xt - _coef(table, t, S.COL_SQRT_AB, xt, ct) * x0)
            / _coef(table, t, S.COL_SQRT_OMAB, xt, ct))


def predict_x0(table, xt, t, model_output, prediction_type="epsilon"):
    """x̂_0 from the model output (see ``_predict_x0``), in x_t's dtype."""
    ct = _compute_dtype(xt.dtype)
    x0 = _predict_x0(table, xt.astype(ct), t, model_output.astype(ct), prediction_type, ct)
    return x0.astype(xt.dtype)


# --------------------------------------------------------------------------- the posterior
def posterior_mean(table, x0, xt, t):
    """μ̃_t = [√ᾱ_{t−1} β_t/(1 − ᾱ_t)] x_0 + [√α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t)] x_t."""
    ct = _compute_dtype(xt.dtype)
    mean = (_coef(table, t, S.COL_POST_C1, xt, ct) * x0.astype(ct)
            + _coef(table, t, S.COL_POST_C2, xt, ct) * xt.astype(ct))
    return mean.astype(xt.dtype, copy=False)


# ---------------------------------------------------------------------------- sampler steps
def ddpm_step(table, xt, t, eps_c, eps_u, noise, *, w=0.0, prediction_type="epsilon",
              variance_type="fixed_small", clip=None, return_x0=False):
    """One ancestral step (Algorithm 2), through x̂_0 and the posterior:
        ε̄ = (1 + w) ε_c − w ε_u                        (guidance; ε_c when eps_u is None)
        x̂_0 = predict(x_t, ε̄), clipped to [−clip, clip] when clip is not None
        x_{t−1} = μ̃_t(x̂_0, x_t) + σ_t z,   σ_t² = β̃_t (fixed_small) or β_t (fixed_large),
                  σ_0 = 0 (no noise on the last step); z = noise, or 0 when noise is None.
    Without clipping, μ̃_t(x̂_0(ε), x_t) = (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε): MATH.md's form.
    Returns (x_{t−1}, x̂_0 or None)."""
    ct = _compute_dtype(xt.dtype)
    x = xt.astype(ct)
    m = _guided(eps_c, eps_u, w, ct)
    x0 = _predict_x0(table, x, t, m, prediction_type, ct)
    if clip is not None:
        x0 = xp_of(x0).clip(x0, -clip, clip)
    mean = _coef(table, t, S.COL_POST_C1, x, ct) * x0 + _coef(table, t, S.COL_POST_C2, x, ct) * x
    if variance_type not in VARIANCE_TYPES:
        raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
    col = S.COL_SIGMA_SMALL if variance_type == "fixed_small" else S.COL_SIGMA_LARGE
    prev = mean if noise is None else mean + _coef(table, t, col, x, ct) * noise.astype(ct)
    return prev.astype(xt.dtype), (x0.astype(xt.dtype) if return_x0 else None)


def ddim_alphas(table, t, t_prev):
    """(ᾱ_t, 1 − ᾱ_t, ᾱ_{t'}, 1 − ᾱ_{t'}) in float64, with ᾱ_{−1} = 1 (the step to x_0)."""
    xp = xp_of(table)
    last = t_prev < 0
    tp = xp.where(last, 0, t_prev)
    ab_p = xp.where(last, 1.0, table[tp, S.COL_AB])
    omab_p = xp.where(last, 0.0, table[tp, S.COL_OMAB])
    return table[t, S.COL_AB], table[t, S.COL_OMAB], ab_p, omab_p


def ddim_step(table, xt, t, t_prev, eps_c, eps_u, noise, *, eta=0.0, w=0.0,
              prediction_type="epsilon", clip=None, return_x0=False):
    """One DDIM step t → t' (MATH.md §7), t' = −1 meaning ᾱ_{t'} = 1:
        ε̄ = (1 + w) ε_c − w ε_u,   x̂_0 = predict(x_t, ε̄) (clipped: ε̂ re-derived from it)
        σ_t = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})
        x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̂ + σ_t z
    (1 − ᾱ_t/ᾱ_{t'} is computed as ((1 − ᾱ_t) − (1 − ᾱ_{t'}))/ᾱ_{t'}: no cancellation near
    t = 0.) Returns (x_{t'}, x̂_0 or None)."""
    xp = xp_of(xt)
    ct = _compute_dtype(xt.dtype)
    x = xt.astype(ct)
    m = _guided(eps_c, eps_u, w, ct)
    x0 = _predict_x0(table, x, t, m, prediction_type, ct)
    if clip is not None:
        x0 = xp.clip(x0, -clip, clip)
        eps = _predict_eps(table, x, t, m, x0, "sample", ct)
    else:
        eps = _predict_eps(table, x, t, m, x0, prediction_type, ct)
    ab, omab, ab_p, omab_p = ddim_alphas(table, t, t_prev)
    var = eta ** 2 * (omab_p / omab) * ((omab - omab_p) / ab_p)    # σ_t² in float64
    shape = (-1,) + (1,) * (xt.ndim - 1)
    sqrt_ab_p = xp.sqrt(ab_p).astype(ct).reshape(shape)
    dir_coef = xp.sqrt(xp.maximum(omab_p - var, 0.0)).astype(ct).reshape(shape)
    prev = sqrt_ab_p * x0 + dir_coef * eps
    if noise is not None and eta != 0:
        prev = prev + xp.sqrt(var).astype(ct).reshape(shape) * noise.astype(ct)
    return prev.astype(xt.dtype), (x0.astype(xt.dtype) if return_x0 else None)
