"""DDPM ancestral sampling (Ho et al. 2020; MATH.md §6, Algorithm 2), diffusers' ``DDPMScheduler``.

One step x_t → x_{t−1}, through the model's estimate of x_0 and the Gaussian posterior
q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I):

    (1) x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t           [clipped to ±clip_sample_range]
    (2) μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t
    (3) x_{t−1} = μ̃_t + σ_t z,   z ~ N(0, I),   σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t
        ("fixed_small") or β_t ("fixed_large"); σ = 0 on the last step (no noise into x_0).

Unclipped, (1)–(2) equal MATH.md's μ_θ = (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε_θ). Other model
outputs give x̂_0 directly: "sample" x̂_0 = m; "v_prediction" x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v.
All three lines are ONE fused pass, ``mg.ddpm_step`` (minigen/ops/noise_schedule.py), with the
coefficients gathered from the schedule's float64 table on the device.

Notation (code ↔ MATH.md):

    sample                   x_t               model_output            ε_θ(x_t, t) (or x̂_0, v)
    prev_sample              x_{t−1}           pred_original_sample    x̂_0
    timestep                 t (index 0..T−1; index t is the paper's step t + 1)
    schedule.betas[t]        β_t               schedule.alphas_cumprod[t]    ᾱ_t
    variance_noise           z                 num_train_timesteps     T

Fewer steps (``set_timesteps(S)``, S < T): the chain τ_0 < ... < τ_{S−1} of the chosen
timesteps is itself a DDPM with ᾱ'_k = ᾱ_{τ_k}, i.e. β'_k = 1 − ᾱ_{τ_k}/ᾱ_{τ_{k−1}} (ᾱ_{τ_{−1}}
= 1): ``self.chain`` is that NoiseSchedule and the step runs (1)–(3) on it at position k of
τ_k = timestep (diffusers computes the same "current β" per step). With S = T the chain is the
training schedule itself. Difference from diffusers: the step after the last inference timestep
never adds noise (σ = 0 into x_0), also with "trailing" spacing, where diffusers' ``t > 0``
test would add it.

    >>> sched = DDPMScheduler()                       # T = 1000, linear β, ε-prediction
    >>> x = mg.randn(16, 1, 28, 28)
    >>> for t in sched.timesteps:                     # 999, 998, ..., 0 (0-d Tensors)
    ...     x = sched.step(model(x, t), t, x).prev_sample
"""
from __future__ import annotations

import numpy as np

from .. import creation
from ..ops.noise_schedule import PREDICTION_TYPES, VARIANCE_TYPES, ddpm_step
from ..schedules import NoiseSchedule
from .scheduler_base import _INVALID, SchedulerBase, SchedulerOutput

__all__ = ["DDPMScheduler"]


class DDPMScheduler(SchedulerBase):
    """DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
    beta_schedule="linear", trained_betas=None, prediction_type="epsilon",
    variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0,
    timestep_spacing="leading", steps_offset=0)

    beta_schedule: "linear" | "scaled_linear" | "cosine" | "sigmoid" (``minigen.schedules``);
    trained_betas overrides it. ``step`` is Algorithm 2 (module docstring).
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 prediction_type: str = "epsilon", variance_type: str = "fixed_small",
                 clip_sample: bool = True, clip_sample_range: float = 1.0,
                 timestep_spacing: str = "leading", steps_offset: int = 0):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"DDPMScheduler: prediction_type must be one of "
                             f"{PREDICTION_TYPES}, got {prediction_type!r}")
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"DDPMScheduler: variance_type must be one of {VARIANCE_TYPES}, "
                             f"got {variance_type!r}")
        self.prediction_type, self.variance_type = prediction_type, variance_type
        self.clip_sample, self.clip_sample_range = bool(clip_sample), float(clip_sample_range)
        self._setup(locals())

    def _on_timesteps(self, ts: np.ndarray):
        """The chain over τ (module docstring) and timestep → position k in τ."""
        T = self.num_train_timesteps
        self._all_steps = len(ts) == T
        if self._all_steps:
            self.chain = self.schedule
        else:
            ab = self.schedule.alphas_cumprod[ts]
            ab_prev = np.concatenate([[1.0], ab[:-1]])
            self.chain = NoiseSchedule(betas=1.0 - ab / ab_prev)
        index = np.full(T, _INVALID, dtype=np.int64)
        index[ts] = np.arange(len(ts))
        self._make_lookup("index", index)

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True, *,
             variance_noise=None, guidance_scale: float | None = None):
        """x_t → x_{t−1}: equations (1)–(3) of the module docstring in one fused pass.

        model_output: (N, *) like sample — or (2N, *) with ``guidance_scale`` = w: conditional
        rows first, then unconditional, combined in the kernel as ε̄ = (1 + w) ε_c − w ε_u
        (MATH.md §8). timestep: an int, or a 0-d / (N,) int Tensor on the sample's device
        (stays there). z: ``variance_noise`` if given, else drawn from ``generator`` (a
        minigen Generator; None: minigen's global RNG), so seeded sampling repeats exactly.
        Returns SchedulerOutput(prev_sample=x_{t−1}, pred_original_sample=x̂_0), or the tuple.
        """
        k = timestep if self._all_steps else self._lookup("index", timestep, sample,
                                                           "DDPM position in τ")
        z = variance_noise
        if z is None:   # drawn every step (σ_0 = 0 zeroes it on the last): no host branch on t
            z = creation.randn(*sample.shape, generator=generator, dtype=sample.dtype,
                               device=sample.device)
        x_prev, x0_hat = ddpm_step(self.chain, model_output, k, sample, z,
                                   prediction_type=self.prediction_type,
                                   variance_type=self.variance_type,
                                   clip_sample=self.clip_sample,
                                   clip_sample_range=self.clip_sample_range,
                                   guidance_scale=guidance_scale, return_pred_original=True)
        out = SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_hat)
        return out if return_dict else (x_prev, x0_hat)

    def previous_timestep(self, timestep: int) -> int:
        """τ_{k−1} for timestep τ_k (−1 after the last), host ints (diffusers' helper)."""
        k = int(np.searchsorted(self._ts, int(timestep)))
        if k >= len(self._ts) or self._ts[k] != int(timestep):
            raise ValueError(f"timestep {timestep} is not one of the scheduler's timesteps")
        return int(self._ts[k - 1]) if k > 0 else -1
