"""Diffusion noise schedules (MATH.md §6–7), computed once in float64.

    β_1..β_T                 the schedule: "linear", "scaled_linear", "cosine" or "sigmoid"
    α_t = 1 − β_t,           ᾱ_t = Π_{s≤t} α_s
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t                      posterior variance
    μ̃_t = c1_t x_0 + c2_t x_t,   c1_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t),
                                 c2_t = √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)   posterior mean

Index convention (diffusers'): the timestep index ``t`` runs over 0..T−1 and index t holds
the paper's step t+1, so ᾱ_{t−1} at t = 0 is 1 (x_0 is the data) and the last DDIM step goes
to ``t' = −1``, where ᾱ = 1.

``NoiseSchedule`` keeps the float64 numpy arrays (``betas``, ``alphas``, ``alphas_cumprod``,
...) and a coefficient table, one row per t, one column per coefficient the fused kernels of
``minigen.ops.noise_schedule`` need (the ``COL_*`` constants below). Every coefficient is
computed here in float64 from the closed forms, so a kernel only gathers ``table[t, COL]`` by
the per-sample timestep on the device and rounds once to the data's dtype: no scalar is
recomputed per step, and no timestep travels to the host. ``schedule.on(device, dtype)``
returns the device copy, cached per (device, dtype).

    >>> s = NoiseSchedule(1000, "linear")               # β: 1e-4 → 0.02
    >>> s.alphas_cumprod[-1]                            # ᾱ_T ≈ 4.04e-5
    >>> tab = s.on("cpu", minigen.float32)              # cached; tab.alphas_cumprod is a Tensor
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["NoiseSchedule", "make_betas", "linear_betas", "scaled_linear_betas",
           "cosine_betas", "sigmoid_betas"]

# ----------------------------------------------------------------------- the schedules
def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """β_t evenly spaced from beta_start to beta_end (DDPM: 1e-4 → 0.02 at T = 1000)."""
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def scaled_linear_betas(T: int, beta_start: float = 0.00085,
                        beta_end: float = 0.012) -> np.ndarray:
    """√β_t evenly spaced (latent diffusion / Stable Diffusion)."""
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=np.float64) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021): ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2),
    β_t = min(1 − ᾱ(t+1)/ᾱ(t), max_beta) (the clip keeps β < 1 near t = T)."""
    steps = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """β_t = beta_start + (beta_end − beta_start) · sigmoid(u_t), u evenly spaced on [−6, 6]
    (GeoDiff's schedule: flat at both ends, steep in the middle)."""
    u = np.linspace(-6.0, 6.0, T, dtype=np.float64)
    return beta_start + (beta_end - beta_start) / (1.0 + np.exp(-u))


_SCHEDULES = {"linear": linear_betas, "scaled_linear": scaled_linear_betas,
              "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def make_betas(kind: str, T: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
    """β_1..β_T (float64) of the named schedule; the cosine schedule ignores beta_start/end."""
    if kind not in _SCHEDULES:
        raise ValueError(f"unknown beta_schedule {kind!r}; expected one of {sorted(_SCHEDULES)}")
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"num_train_timesteps must be a positive int, got {T!r}")
    if kind == "cosine":
        return cosine_betas(int(T))
    return _SCHEDULES[kind](int(T), beta_start, beta_end)


# ------------------------------------------------------------ the coefficient table columns
# table[t, COL] in float64; the kernels gather these by the per-sample index t.
COL_AB = 0               # ᾱ_t
COL_OMAB = 1             # 1 − ᾱ_t
COL_SQRT_AB = 2          # √ᾱ_t                           q_sample: x_t = √ᾱ x_0 + √(1−ᾱ) ε
COL_SQRT_OMAB = 3        # √(1 − ᾱ_t)
COL_SQRT_RECIP_AB = 4    # 1/√ᾱ_t                         x̂_0 = x_t/√ᾱ − √(1/ᾱ − 1) ε
COL_SQRT_RECIPM1_AB = 5  # √(1/ᾱ_t − 1)
COL_POST_C1 = 6          # √ᾱ_{t−1} β_t / (1 − ᾱ_t)        μ̃ = c1 x̂_0 + c2 x_t
COL_POST_C2 = 7          # √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
COL_POST_VAR = 8         # β̃_t (0 at t = 0)
COL_POST_LOGVAR = 9      # log β̃_t, with β̃_0 replaced by β̃_1 (DDPM's clipped log-variance)
COL_SIGMA_LARGE = 10     # σ_t = √β_t  ("fixed_large"), 0 at t = 0: no noise on the last step
COL_SIGMA_SMALL = 11     # σ_t = √β̃_t ("fixed_small"), 0 at t = 0
COL_BETA = 12            # β_t
NUM_COLS = 13


def coefficient_table(betas: np.ndarray) -> np.ndarray:
    """The (T, NUM_COLS) float64 table of per-timestep coefficients (see the COL_* names)."""
    b = np.asarray(betas, dtype=np.float64)
    a = 1.0 - b
    ab = np.cumprod(a)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    omab = 1.0 - ab
    post_var = b * (1.0 - ab_prev) / omab
    tab = np.empty((len(b), NUM_COLS), dtype=np.float64)
    tab[:, COL_AB] = ab
    tab[:, COL_OMAB] = omab
    tab[:, COL_SQRT_AB] = np.sqrt(ab)
    tab[:, COL_SQRT_OMAB] = np.sqrt(omab)
    tab[:, COL_SQRT_RECIP_AB] = 1.0 / np.sqrt(ab)
    tab[:, COL_SQRT_RECIPM1_AB] = np.sqrt(1.0 / ab - 1.0)
    tab[:, COL_POST_C1] = np.sqrt(ab_prev) * b / omab
    tab[:, COL_POST_C2] = np.sqrt(a) * (1.0 - ab_prev) / omab
    tab[:, COL_POST_VAR] = post_var
    # β̃_0 = 0: DDPM clips its log to log β̃_1 (the value never multiplies noise at t = 0)
    clipped = np.concatenate([post_var[1:2], post_var[1:]]) if len(b) > 1 else b
    with np.errstate(divide="ignore"):
        tab[:, COL_POST_LOGVAR] = np.log(clipped)
    tab[:, COL_SIGMA_LARGE] = np.sqrt(b)
    tab[0, COL_SIGMA_LARGE] = 0.0
    tab[:, COL_SIGMA_SMALL] = np.sqrt(post_var)
    tab[0, COL_SIGMA_SMALL] = 0.0
    tab[:, COL_BETA] = b
    return tab


# ------------------------------------------------------------------------- NoiseSchedule
class DeviceSchedule:
    """A NoiseSchedule's arrays on one device: ``table`` (the float64 coefficient table as a
    backend array: numpy or CuPy) for the kernels, and the named 1-D arrays as minigen Tensors
    of ``dtype`` (``betas``, ``alphas``, ``alphas_cumprod``, ``alphas_cumprod_prev``,
    ``posterior_variance``, ...), built once by ``NoiseSchedule.on``."""

    _NAMES = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev",
              "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "posterior_variance",
              "posterior_log_variance_clipped", "posterior_mean_coef1",
              "posterior_mean_coef2")

    def __init__(self, schedule: "NoiseSchedule", device, dtype, table):
        from .backend import array_module
        from .tensor import Tensor

        self.num_train_timesteps = schedule.num_train_timesteps
        self.device, self.dtype, self.table = device, dtype, table
        xp = array_module(device)
        for name in self._NAMES:
            arr = xp.asarray(getattr(schedule, name).astype(dtype))
            setattr(self, name, Tensor._wrap(arr, device))

    def __repr__(self):
        return (f"DeviceSchedule(T={self.num_train_timesteps}, device={self.device}, "
                f"dtype={np.dtype(self.dtype).name})")


class NoiseSchedule:
    """β_1..β_T and everything derived from it, in float64 (numpy), plus cached device copies.

    NoiseSchedule(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                  beta_end=0.02, betas=None)

    ``betas`` (a 1-D array in (0, 1)) overrides ``beta_schedule``. Attributes (float64 numpy,
    shape (T,)): ``betas``, ``alphas``, ``alphas_cumprod`` (ᾱ_t), ``alphas_cumprod_prev``
    (ᾱ_{t−1}, 1 at t = 0), ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``,
    ``posterior_variance`` (β̃_t), ``posterior_log_variance_clipped``,
    ``posterior_mean_coef1`` / ``coef2``; ``table`` (T, NUM_COLS) for the kernels.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02, betas=None):
        if betas is None:
            betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
            self.beta_schedule = beta_schedule
        else:
            betas = np.array(betas, dtype=np.float64).reshape(-1)
            self.beta_schedule = "custom"
        if betas.size < 1 or not np.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a non-empty 1-D array with every β in (0, 1)")
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.num_train_timesteps = int(betas.size)
        self.table = coefficient_table(betas)
        self.table.setflags(write=False)
        tab = self.table
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = tab[:, COL_AB].copy()
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = tab[:, COL_SQRT_AB].copy()
        self.sqrt_one_minus_alphas_cumprod = tab[:, COL_SQRT_OMAB].copy()
        self.posterior_variance = tab[:, COL_POST_VAR].copy()
        self.posterior_log_variance_clipped = tab[:, COL_POST_LOGVAR].copy()
        self.posterior_mean_coef1 = tab[:, COL_POST_C1].copy()
        self.posterior_mean_coef2 = tab[:, COL_POST_C2].copy()
        for arr in (self.betas, self.alphas, self.alphas_cumprod, self.alphas_cumprod_prev):
            arr.setflags(write=False)
        self._cache: dict = {}
        self._tables: dict = {}

    def __len__(self):
        return self.num_train_timesteps

    def __repr__(self):
        return (f"NoiseSchedule(num_train_timesteps={self.num_train_timesteps}, "
                f"beta_schedule={self.beta_schedule!r})")

    def config(self) -> dict:
        """What rebuilds this schedule (saved with a scheduler's checkpoint)."""
        cfg = {"num_train_timesteps": self.num_train_timesteps,
               "beta_schedule": self.beta_schedule, "beta_start": self.beta_start,
               "beta_end": self.beta_end}
        if self.beta_schedule == "custom":
            cfg["betas"] = self.betas.tolist()
        return cfg

    def device_table(self, device):
        """The float64 coefficient table as a backend array on ``device`` (cached)."""
        from .backend import Device, array_module

        device = Device(device)
        tab = self._tables.get(device)
        if tab is None:
            xp = array_module(device)
            if xp is np:
                tab = self.table
            else:
                with xp.cuda.Device(device.index):
                    tab = xp.ascontiguousarray(xp.asarray(self.table))
            self._tables[device] = tab
        return tab

    def on(self, device="cpu", dtype=None) -> DeviceSchedule:
        """The schedule on ``device``: named arrays as Tensors of ``dtype`` (default float32)
        and the float64 kernel table; built on the first call, cached afterwards."""
        from . import dtypes
        from .backend import Device

        device = Device(device)
        dt = np.dtype(dtypes.float32 if dtype is None else dtype)
        key = (device, dt)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = DeviceSchedule(self, device, dt, self.device_table(device))
        return hit
