"""DDIM sampling (Song et al. 2021; MATH.md §7), diffusers' ``DDIMScheduler``.

One step from timestep t to the previous inference timestep t' < t (t' = −1 after the last,
where ᾱ_{t'} = 1: the step lands on x_0), for any η ≥ 0:

    (1) x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t          [clipped to ±clip_sample_range;
                                                               ε̂ is then re-derived from it]
    (2) σ_t = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})
    (3) x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) · ε̂ + σ_t z,   z ~ N(0, I)

η = 0: deterministic (z is not drawn). η = 1: σ_t² = β̃ of the strided chain, the DDPM
posterior variance (and the mean equals DDPM's posterior mean: same trained model as DDPM).
"sample" and "v_prediction" outputs give x̂_0 as in ``ddpm.py`` and ε̂ = (x_t − √ᾱ_t x̂_0)/
√(1 − ᾱ_t). The three lines are ONE fused pass, ``mg.ddim_step``
(minigen/ops/noise_schedule.py), coefficients gathered from the float64 table on the device.

Notation (code ↔ MATH.md):

    sample                   x_t               model_output            ε_θ(x_t, t) (or x̂_0, v)
    prev_sample              x_{t'}            pred_original_sample    x̂_0
    timestep                 t                 prev timestep           t' (τ_{k−1}, or −1)
    schedule.alphas_cumprod  ᾱ                 eta                     η
    variance_noise           z                 num_inference_steps     S (the length of τ)

Differences from diffusers: ``eta`` is also a constructor argument (config; ``step(eta=...)``
overrides it); with ``clip_sample`` the direction term uses ε̂ re-derived from the clipped x̂_0
(diffusers' ``use_clipped_model_output=True``); the step after the last timestep always lands
on ᾱ = 1 (diffusers' ``set_alpha_to_one=True``, its default).

    >>> sched = DDIMScheduler(eta=0.0); sched.set_timesteps(50)    # τ = 980, 960, ..., 0
    >>> x = mg.randn(16, 1, 28, 28)
    >>> for t in sched.timesteps:
    ...     x = sched.step(model(x, t), t, x).prev_sample
"""
from __future__ import annotations

import numpy as np

from .. import creation
from ..ops.noise_schedule import PREDICTION_TYPES, ddim_step
from .scheduler_base import _INVALID, SchedulerBase, SchedulerOutput

__all__ = ["DDIMScheduler"]


class DDIMScheduler(SchedulerBase):
    """DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
    beta_schedule="linear", trained_betas=None, eta=0.0, prediction_type="epsilon",
    clip_sample=True, clip_sample_range=1.0, timestep_spacing="leading", steps_offset=0)

    ``set_timesteps(S)`` picks the sub-sequence τ (default spacing "leading": τ = arange(S) ·
    (T // S), reversed); ``step`` is equations (1)–(3) of the module docstring.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 eta: float = 0.0, prediction_type: str = "epsilon", clip_sample: bool = True,
                 clip_sample_range: float = 1.0, timestep_spacing: str = "leading",
                 steps_offset: int = 0):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"DDIMScheduler: prediction_type must be one of "
                             f"{PREDICTION_TYPES}, got {prediction_type!r}")
        if not float(eta) >= 0:
            raise ValueError(f"DDIMScheduler: eta must be ≥ 0, got {eta!r}")
        self.eta, self.prediction_type = float(eta), prediction_type
        self.clip_sample, self.clip_sample_range = bool(clip_sample), float(clip_sample_range)
        self._setup(locals())

    def _on_timesteps(self, ts: np.ndarray):
        """timestep τ_k → τ_{k−1} (−1 for τ_0): the t' of equation (3)."""
        prev = np.full(self.num_train_timesteps, _INVALID, dtype=np.int64)
        prev[ts] = np.concatenate([[-1], ts[:-1]])
        self._make_lookup("prev", prev)

    def previous_timestep(self, timestep: int) -> int:
        """t' for the host int ``timestep`` (−1 after the last)."""
        return self._lookup("prev", int(timestep), None, "DDIM previous timestep")

    def step(self, model_output, timestep, sample, eta: float | None = None, generator=None,
             return_dict: bool = True, *, variance_noise=None,
             guidance_scale: float | None = None):
        """x_t → x_{t'}: equations (1)–(3) of the module docstring in one fused pass.

        model_output: (N, *) like sample — or (2N, *) with ``guidance_scale`` = w (conditional
        rows first), combined in the kernel as ε̄ = (1 + w) ε_c − w ε_u (MATH.md §8).
        timestep: an int, or a 0-d / (N,) int Tensor on the sample's device (t' is gathered
        there). eta: η (None: the configured one). z (η > 0 only): ``variance_noise``, else
        drawn from ``generator`` (None: minigen's global RNG).
        Returns SchedulerOutput(prev_sample=x_{t'}, pred_original_sample=x̂_0), or the tuple.
        """
        eta = self.eta if eta is None else float(eta)
        t_prev = self._lookup("prev", timestep, sample, "DDIM previous timestep")
        z = None
        if eta > 0:
            z = variance_noise
            if z is None:
                z = creation.randn(*sample.shape, generator=generator, dtype=sample.dtype,
                                   device=sample.device)
        x_prev, x0_hat = ddim_step(self.schedule, model_output, timestep, t_prev, sample, z,
                                   eta=eta, prediction_type=self.prediction_type,
                                   clip_sample=self.clip_sample,
                                   clip_sample_range=self.clip_sample_range,
                                   guidance_scale=guidance_scale, return_pred_original=True)
        out = SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_hat)
        return out if return_dict else (x_prev, x0_hat)
