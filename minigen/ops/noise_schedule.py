"""Fused diffusion noise-schedule ops (kernel family ``noise_schedule``, MATH.md §6–8).

Each op is one pass over memory (one kernel launch on a GPU) that gathers its per-sample
coefficients from a ``NoiseSchedule``'s float64 table by timestep index, on the device:

    q_sample(schedule, x0, t, noise)           x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (autograd)
    predict_x0(schedule, model_output, t, x_t, prediction_type)
                                               x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t, or from v / x_0
    posterior_mean_variance(schedule, x0, x_t, t)
                                               (μ̃_t, β̃_t, log β̃_t clipped)
    ddpm_step(schedule, model_output, t, x_t, noise, ...)    x_{t−1} = μ̃_t(x̂_0, x_t) + σ_t z
    ddim_step(schedule, model_output, t, t_prev, x_t, noise, eta=..., ...)
                                               x_{t'} = √ᾱ_{t'} x̂_0 + √(1−ᾱ_{t'}−σ²) ε̂ + σ z

Timesteps: ``t`` is an integer Tensor (or backend array) of shape (N,) with one index in
0..T−1 per sample, or a 0-d / 1-element one shared by the batch, or a Python int. Keep it on
the data's device: the kernels read it there, and nothing here moves it to the host, so a
sampling loop on a GPU never synchronises (``t_prev = −1`` means ᾱ = 1, the step to x_0). On
the CPU the indices are range-checked (host memory, free); on a GPU they are not (that would
synchronise) and an index outside the table is clamped by the kernel.

Noise: ``noise`` (z, ε) is always passed in, drawn by the caller with a minigen Generator, so
that seeded sampling repeats exactly; ``noise=None`` in a step means z = 0.

Guidance (MATH.md §8): with ``guidance_scale=w`` a step combines ε̄ = (1 + w) ε_c − w ε_u
inside the same kernel. ``model_output`` is then the batched output of both branches,
(2N, *): rows [0, N) conditional, rows [N, 2N) unconditional (or pass ``uncond_output``
separately). w = 0 is the conditional model; diffusers' ``guidance_scale`` is 1 + w.

Gradients: ``q_sample`` is differentiable in x0 and noise (its backward is one fused pass
too). ``predict_x0``, ``posterior_mean_variance`` and the sampler steps are inference-only:
their results never require grad.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import dispatch, dtypes
from ..autograd.function import Function
from ..backend import array_module, xp_of
from ..schedules import COL_POST_LOGVAR, COL_POST_VAR, NoiseSchedule
from ..tensor import Tensor

__all__ = ["q_sample", "predict_x0", "posterior_mean_variance", "ddpm_step", "ddim_step"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large")


def _impl(array):
    return dispatch.get_for("noise_schedule", array)


# ------------------------------------------------------------------------ argument checking
def _schedule(schedule, op):
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"{op}: schedule must be a minigen.schedules.NoiseSchedule, got "
                        f"{type(schedule).__name__}")
    return schedule


def _data(x, name, op, like=None):
    """The backend array of a floating Tensor ``x``, checked against ``like`` (a Tensor)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if not dtypes.is_floating(x.data.dtype):
        raise TypeError(f"{op}: {name} must be a floating point tensor, got {x.data.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{op}: {name} must have a batch dimension, got a 0-d tensor")
    if like is not None:
        if x.device != like.device:
            raise RuntimeError(f"{op}: {name} is on {x.device} but the sample is on "
                               f"{like.device}")
        if x.data.dtype != like.data.dtype:
            raise TypeError(f"{op}: {name} has dtype {x.data.dtype} but the sample has "
                            f"{like.data.dtype}")
    return x.data


def _same_shape(a, name, ref, ref_name, op):
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(f"{op}: {name} has shape {tuple(a.shape)} but {ref_name} has shape "
                         f"{tuple(ref.shape)}")


def _timesteps(t, n, like, T, op, name="t", lowest=0):
    """``t`` as a C-contiguous int64 backend array of shape (n,) on ``like``'s device.

    Never reads a device value on the host: a CuPy ``t`` stays on the GPU (astype and
    broadcast are device ops); only CPU (host) indices and Python ints are range-checked.
    """
    xp = array_module(like.device)
    if isinstance(t, bool):
        raise TypeError(f"{op}: {name} must be an integer timestep, got a bool")
    if isinstance(t, numbers.Integral):
        t = int(t)
        if not lowest <= t < T:
            raise ValueError(f"{op}: {name}={t} is out of range [{lowest}, {T - 1}] for a "
                             f"schedule of {T} timesteps")
        return xp.full((n,), t, dtype=np.int64)
    if isinstance(t, Tensor):
        if t.device != like.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but the sample is on "
                               f"{like.device}: keep the timesteps on the sample's device")
        arr = t.data
    else:
        arr = t
        if not hasattr(arr, "dtype") or not hasattr(arr, "shape"):
            raise TypeError(f"{op}: {name} must be an int, an integer Tensor or an integer "
                            f"array, got {type(t).__name__}")
        if xp_of(arr) is not xp:
            raise RuntimeError(f"{op}: {name} is a {type(arr).__module__} array but the "
                               f"sample is on {like.device}")
    if np.dtype(arr.dtype).kind not in "iu":
        raise TypeError(f"{op}: {name} must hold integer timestep indices, got dtype "
                        f"{arr.dtype}")
    if arr.ndim == 0 or tuple(arr.shape) == (1,):
        arr = xp.broadcast_to(arr.reshape(()), (n,))
    elif tuple(arr.shape) != (n,):
        raise ValueError(f"{op}: {name} has shape {tuple(arr.shape)}; expected ({n},) (one "
                         f"timestep per sample) or a single timestep")
    arr = xp.ascontiguousarray(arr, dtype=np.int64)
    if xp is np and n:
        lo, hi = arr.min(), arr.max()
        if lo < lowest or hi >= T:
            bad = lo if lo < lowest else hi
            raise ValueError(f"{op}: {name} holds {int(bad)}, out of range [{lowest}, {T - 1}] "
                             f"for a schedule of {T} timesteps")
    return arr


def _contig(a):
    return xp_of(a).ascontiguousarray(a)


def _wrap(arr, like):
    return Tensor._wrap(arr, like.device)


# -------------------------------------------------------------------------------- q_sample
class QSample(Function):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε;  backward: ∂x_0 = √ᾱ_t g, ∂ε = √(1 − ᾱ_t) g (one pass)."""
    saves_inputs = False

    def forward(self, x0, noise, t, table):
        self.t, self.table = t, table
        return _impl(x0).q_sample(table, _contig(x0), t, _contig(noise))

    def backward(self, grad):
        need = self.needs_input_grad
        gx0, gnoise = _impl(grad).q_sample_backward(self.table, self.t, _contig(grad),
                                                    need[0], need[1])
        return gx0, gnoise, None, None


def q_sample(schedule: NoiseSchedule, x0: Tensor, t, noise: Tensor) -> Tensor:
    """Diffuse x0 to step t in one pass: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (MATH.md §6).

    x0, noise: (N, *) of one floating dtype; t: (N,) integer timesteps (or one for all).
    Differentiable in x0 and noise. diffusers' ``add_noise(x0, noise, t)``.
    """
    op = "q_sample"
    _schedule(schedule, op)
    _data(x0, "x0", op)
    _data(noise, "noise", op, like=x0)
    _same_shape(noise, "noise", x0, "x0", op)
    ts = _timesteps(t, x0.shape[0], x0, schedule.num_train_timesteps, op)
    return QSample.apply(x0, noise, ts, schedule.device_table(x0.device))


# ---------------------------------------------------------------- predictions, posterior
def _prediction_type(p, op):
    if p not in PREDICTION_TYPES:
        raise ValueError(f"{op}: prediction_type must be one of {PREDICTION_TYPES}, got {p!r}")
    return p


def predict_x0(schedule: NoiseSchedule, model_output: Tensor, t, sample: Tensor,
               prediction_type: str = "epsilon") -> Tensor:
    """x̂_0 from the model output at step t (inference only):
    epsilon: (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t;  v_prediction: √ᾱ_t x_t − √(1 − ᾱ_t) v;  sample: m."""
    op = "predict_x0"
    _schedule(schedule, op)
    _prediction_type(prediction_type, op)
    xt = _data(sample, "sample", op)
    m = _data(model_output, "model_output", op, like=sample)
    _same_shape(model_output, "model_output", sample, "sample", op)
    ts = _timesteps(t, sample.shape[0], sample, schedule.num_train_timesteps, op)
    out = _impl(xt).predict_x0(schedule.device_table(sample.device), _contig(xt), ts,
                               _contig(m), prediction_type)
    return _wrap(out, sample)


def posterior_mean_variance(schedule: NoiseSchedule, x0: Tensor, xt: Tensor, t):
    """q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) (MATH.md §6), inference only:
    returns (μ̃_t of x_t's shape, β̃_t and log β̃_t (clipped as in DDPM: log β̃_1 at t = 0),
    both of shape (N, 1, ..., 1), broadcastable against x_t)."""
    op = "posterior_mean_variance"
    _schedule(schedule, op)
    a = _data(xt, "xt", op)
    b = _data(x0, "x0", op, like=xt)
    _same_shape(x0, "x0", xt, "xt", op)
    ts = _timesteps(t, xt.shape[0], xt, schedule.num_train_timesteps, op)
    table = schedule.device_table(xt.device)
    mean = _impl(a).posterior_mean(table, _contig(b), _contig(a), ts)
    shape = (-1,) + (1,) * (xt.ndim - 1)
    var = table[ts, COL_POST_VAR].astype(a.dtype).reshape(shape)
    logvar = table[ts, COL_POST_LOGVAR].astype(a.dtype).reshape(shape)
    return _wrap(mean, xt), _wrap(var, xt), _wrap(logvar, xt)


# ---------------------------------------------------------------------------- sampler steps
def _branches(model_output, sample, guidance_scale, uncond_output, op):
    """(ε_c, ε_u or None, w) as backend arrays, checked; ε_c/ε_u are views, not copies."""
    xt = sample.data
    m = _data(model_output, "model_output", op, like=sample)
    if guidance_scale is None:
        if uncond_output is not None:
            raise ValueError(f"{op}: uncond_output given without guidance_scale")
        _same_shape(model_output, "model_output", sample, "sample", op)
        return _contig(m), None, 0.0
    w = float(guidance_scale)
    if uncond_output is not None:
        _same_shape(model_output, "model_output", sample, "sample", op)
        mu = _data(uncond_output, "uncond_output", op, like=sample)
        _same_shape(uncond_output, "uncond_output", sample, "sample", op)
        return _contig(m), _contig(mu), w
    n = xt.shape[0]
    if tuple(m.shape) != (2 * n,) + tuple(xt.shape[1:]):
        raise ValueError(f"{op}: with guidance_scale, model_output must hold both branches "
                         f"batched, shape {(2 * n,) + tuple(xt.shape[1:])} (conditional rows "
                         f"first), got {tuple(m.shape)}; or pass uncond_output")
    m = _contig(m)
    return m[:n], m[n:], w        # contiguous halves of a contiguous array: no copy


def _step_inputs(model_output, sample, noise, guidance_scale, uncond_output, clip_sample,
                 clip_sample_range, prediction_type, op):
    xt = _data(sample, "sample", op)
    eps_c, eps_u, w = _branches(model_output, sample, guidance_scale, uncond_output, op)
    z = None
    if noise is not None:
        z = _data(noise, "noise", op, like=sample)
        _same_shape(noise, "noise", sample, "sample", op)
        z = _contig(z)
    _prediction_type(prediction_type, op)
    clip = None
    if clip_sample:
        clip = float(clip_sample_range)
        if not clip > 0:
            raise ValueError(f"{op}: clip_sample_range must be > 0, got {clip_sample_range}")
    return _contig(xt), eps_c, eps_u, w, z, clip


def ddpm_step(schedule: NoiseSchedule, model_output: Tensor, t, sample: Tensor,
              noise: Tensor | None = None, *, prediction_type: str = "epsilon",
              variance_type: str = "fixed_small", clip_sample: bool = False,
              clip_sample_range: float = 1.0, guidance_scale: float | None = None,
              uncond_output: Tensor | None = None, return_pred_original: bool = False):
    """One DDPM ancestral step x_t → x_{t−1} (MATH.md §6, Algorithm 2), one fused pass:

        ε̄ = (1 + w) ε_c − w ε_u                       (guidance_scale = w; else ε̄ = ε_c)
        x̂_0 = (x_t − √(1 − ᾱ_t) ε̄)/√ᾱ_t              (clipped to ±clip_sample_range)
        x_{t−1} = μ̃_t(x̂_0, x_t) + σ_t z,  σ_t² = β̃_t ("fixed_small") or β_t ("fixed_large"),
                  σ_0 = 0: no noise on the last step.

    t: (N,) int timesteps on the sample's device (or one for all); noise: z, like sample
    (None: z = 0). Inference only. Returns x_{t−1}, or (x_{t−1}, x̂_0) with
    ``return_pred_original=True`` (x̂_0 costs one more write).
    """
    op = "ddpm_step"
    _schedule(schedule, op)
    if variance_type not in VARIANCE_TYPES:
        raise ValueError(f"{op}: variance_type must be one of {VARIANCE_TYPES}, got "
                         f"{variance_type!r}")
    xt, eps_c, eps_u, w, z, clip = _step_inputs(model_output, sample, noise, guidance_scale,
                                                uncond_output, clip_sample,
                                                clip_sample_range, prediction_type, op)
    ts = _timesteps(t, xt.shape[0], sample, schedule.num_train_timesteps, op)
    prev, x0 = _impl(xt).ddpm_step(schedule.device_table(sample.device), xt, ts, eps_c,
                                   eps_u, z, w=w, prediction_type=prediction_type,
                                   variance_type=variance_type, clip=clip,
                                   return_x0=return_pred_original)
    if return_pred_original:
        return _wrap(prev, sample), _wrap(x0, sample)
    return _wrap(prev, sample)


def ddim_step(schedule: NoiseSchedule, model_output: Tensor, t, t_prev, sample: Tensor,
              noise: Tensor | None = None, *, eta: float = 0.0,
              prediction_type: str = "epsilon", clip_sample: bool = False,
              clip_sample_range: float = 1.0, guidance_scale: float | None = None,
              uncond_output: Tensor | None = None, return_pred_original: bool = False):
    """One DDIM step x_t → x_{t'} (MATH.md §7), one fused pass:

        ε̄ = (1 + w) ε_c − w ε_u,   x̂_0 = (x_t − √(1 − ᾱ_t) ε̄)/√ᾱ_t
        σ_t = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})
        x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̄ + σ_t z

    t_prev: (N,) or one index in −1..T−1 with t' < t; −1 means ᾱ_{t'} = 1 (the step to
    x_0). η = 0 is deterministic (noise is then not read); η = 1 matches DDPM's variance.
    With clip_sample, ε̂ is re-derived from the clipped x̂_0. Inference only. Returns x_{t'},
    or (x_{t'}, x̂_0) with ``return_pred_original=True``.
    """
    op = "ddim_step"
    _schedule(schedule, op)
    eta = float(eta)
    if eta < 0:
        raise ValueError(f"{op}: eta must be ≥ 0, got {eta}")
    xt, eps_c, eps_u, w, z, clip = _step_inputs(model_output, sample, noise, guidance_scale,
                                                uncond_output, clip_sample,
                                                clip_sample_range, prediction_type, op)
    if eta == 0:
        z = None
    elif z is None:
        raise ValueError(f"{op}: eta={eta} > 0 needs noise (z, shaped like sample)")
    T = schedule.num_train_timesteps
    n = xt.shape[0]
    ts = _timesteps(t, n, sample, T, op)
    tps = _timesteps(t_prev, n, sample, T, op, name="t_prev", lowest=-1)
    if isinstance(ts, np.ndarray) and n and not (tps < ts).all():
        raise ValueError(f"{op}: t_prev must be smaller than t for every sample (DDIM steps "
                         f"go from t to an earlier t')")
    prev, x0 = _impl(xt).ddim_step(schedule.device_table(sample.device), xt, ts, tps, eps_c,
                                   eps_u, z, eta=eta, w=w, prediction_type=prediction_type,
                                   clip=clip, return_x0=return_pred_original)
    if return_pred_original:
        return _wrap(prev, sample), _wrap(x0, sample)
    return _wrap(prev, sample)
