"""What every diffusion scheduler shares: config, the noise schedule, timesteps, add_noise.

A scheduler (``DDPMScheduler`` in ``ddpm.py``, ``DDIMScheduler`` in ``ddim.py``; diffusers'
names and signatures) holds

    schedule      the training NoiseSchedule (``minigen.schedules``): β_t, ᾱ_t, ... in float64,
                  T = num_train_timesteps indices t = 0..T−1 (index t is the paper's step t+1)
    timesteps     the inference timesteps τ_{S−1} > ... > τ_0 as an int64 Tensor on the sampling
                  device (descending: the order a sampling loop visits them); set_timesteps(S)
    config        a JSON-able dict of the constructor's arguments (+ "_class_name"), saved with
                  checkpoints; ``Scheduler.from_config(config)`` rebuilds the scheduler.

``add_noise(x0, noise, t)`` is q(x_t | x_0) in closed form, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
(MATH.md §6), one fused pass (``mg.q_sample``); it uses the training schedule only, so it works
before ``set_timesteps``.

Timestep spacing (``timestep_spacing``, diffusers' option and defaults), for S of T steps:

    "leading"   τ = arange(0, S) · (T // S) + steps_offset     (diffusers' default; S = T: all t)
    "trailing"  τ = round(arange(T, 0, −T/S)) − 1               (always includes t = T − 1)
    "linspace"  τ = round(linspace(0, T − 1, S))

Timesteps never travel to the host inside a sampling loop: ``step`` maps a timestep to what
the kernel needs (its position in τ, or the previous timestep τ') by gathering from small int64
lookup tables that live on the sampling device (``_lookup``), so a 0-d or (N,) timestep Tensor
on a GPU stays there.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import numpy as np

from ..ops.noise_schedule import q_sample
from ..schedules import NoiseSchedule
from ..tensor import Tensor

__all__ = ["SchedulerOutput", "SchedulerBase", "TIMESTEP_SPACINGS"]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclass
class SchedulerOutput:
    """``step``'s result (diffusers' names): x_{t'} and the model's estimate x̂_0 of x_0."""
    prev_sample: Tensor
    pred_original_sample: Tensor | None = None

    def __iter__(self):             # prev, x0 = scheduler.step(...)
        return iter((self.prev_sample, self.pred_original_sample))

    def __getitem__(self, i):       # step(...)[0], as diffusers' outputs allow
        return (self.prev_sample, self.pred_original_sample)[i]


def spaced_timesteps(T: int, n: int, spacing: str = "leading", steps_offset: int = 0):
    """The n inference timesteps of a T-step schedule, ascending, int64 numpy (module doc)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= T:
        raise ValueError(f"num_inference_steps must be an int in [1, {T}] (the number of "
                         f"training timesteps), got {n!r}")
    if spacing == "leading":
        ts = np.arange(n, dtype=np.int64) * (T // n) + int(steps_offset)
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64)[::-1] - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, n)).astype(np.int64)
    else:
        raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
    if ts[0] < 0 or ts[-1] >= T or np.any(np.diff(ts) <= 0):
        raise ValueError(f"timestep_spacing={spacing!r} with steps_offset={steps_offset} gives "
                         f"timesteps outside 0..{T - 1} or repeated ones for S={n}")
    return ts


class SchedulerBase:
    """Config handling, schedule, timesteps and add_noise (see the module docstring).

    Subclasses list their constructor arguments in ``__init__`` and call
    ``self._setup(locals())`` first; ``_on_timesteps`` builds their lookup tables.
    """

    order = 1                       # diffusers: model evaluations per step
    init_noise_sigma = 1.0          # x_T ~ N(0, init_noise_sigma² I)

    # ------------------------------------------------------------------------------- config
    def _setup(self, args: dict):
        params = inspect.signature(type(self).__init__).parameters
        self._config = {k: args[k] for k in params if k != "self"}
        if self._config.get("trained_betas") is not None:     # T is then len(trained_betas)
            betas = np.asarray(self._config["trained_betas"], dtype=np.float64).reshape(-1)
            self._config["trained_betas"] = [float(b) for b in betas]
            self._config["num_train_timesteps"] = int(betas.size)
        self._config["_class_name"] = type(self).__name__
        spacing = self._config.get("timestep_spacing", "leading")
        if spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got "
                             f"{spacing!r}")
        self.schedule = NoiseSchedule(args["num_train_timesteps"], args["beta_schedule"],
                                      args["beta_start"], args["beta_end"],
                                      betas=args.get("trained_betas"))
        self.num_train_timesteps = self.schedule.num_train_timesteps
        self.num_inference_steps = None
        self._device = "cpu"
        self._lookups: dict = {}
        self._set(np.arange(self.num_train_timesteps, dtype=np.int64), "cpu")
        self.num_inference_steps = None      # no set_timesteps call yet: all T steps

    @property
    def config(self) -> dict:
        """The constructor's arguments (JSON-able) and ``_class_name``; a copy."""
        return json.loads(json.dumps(self._config))

    @classmethod
    def from_config(cls, config, **overrides):
        """Rebuild from ``config`` (a dict, or the path of a JSON file written by
        ``save_config``). Keys this class does not take but the other schedulers do (e.g. a
        DDPM config's ``variance_type`` given to DDIM) are ignored, as in diffusers."""
        if isinstance(config, str):
            with open(config) as f:
                config = json.load(f)
        config = {**dict(config), **overrides}
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        known = set()
        for sub in _all_schedulers():
            known |= set(inspect.signature(sub.__init__).parameters)
        unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_config: unknown config keys {unknown}")
        return cls(**{k: v for k, v in config.items() if k in params})

    def save_config(self, path: str):
        """Write ``config`` as JSON to ``path`` (a file)."""
        with open(path, "w") as f:
            json.dump(self.config, f, indent=2)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items()
                         if not k.startswith("_") and k != "trained_betas")
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------------------- timesteps
    def set_timesteps(self, num_inference_steps: int, device="cpu"):
        """Choose the S = num_inference_steps timesteps used for sampling (``timestep_spacing``,
        module doc) and put ``timesteps`` (descending) and the lookup tables on ``device``."""
        ts = spaced_timesteps(self.num_train_timesteps, num_inference_steps,
                              self._config.get("timestep_spacing", "leading"),
                              self._config.get("steps_offset", 0))
        self._set(ts, device)
        self.num_inference_steps = int(num_inference_steps)

    def _set(self, ts_ascending: np.ndarray, device):
        from ..tensor import tensor
        self._device = device
        self._ts = ts_ascending                                # host copy (ascending)
        self.timesteps = tensor(np.ascontiguousarray(ts_ascending[::-1]), device=device)
        self._lookups = {}
        self._on_timesteps(ts_ascending)

    def _on_timesteps(self, ts: np.ndarray):
        """Subclass hook: build what ``step`` needs for these (ascending) timesteps."""

    def _make_lookup(self, name: str, values: np.ndarray):
        """Register an int64 table of length T (indexed by timestep) on the sampling device."""
        from ..tensor import tensor
        self._lookups[name] = (np.asarray(values, dtype=np.int64),
                               tensor(np.asarray(values, dtype=np.int64), device=self._device))

    def _lookup(self, name: str, timestep, like: Tensor, what: str):
        """table[timestep] with the timestep kept where it is: a Python int → an int; a Tensor
        → a gathered Tensor on its device. Host timesteps are checked (free); device ones are
        not (that would synchronise)."""
        host, dev = self._lookups[name]
        if isinstance(timestep, (int, np.integer)) and not isinstance(timestep, bool):
            t = int(timestep)
            if not 0 <= t < self.num_train_timesteps or host[t] == _INVALID:
                raise ValueError(f"{type(self).__name__}.step: timestep {t} is not one of the "
                                 f"timesteps set by set_timesteps ({what})")
            return int(host[t])
        if not isinstance(timestep, Tensor):
            raise TypeError(f"{type(self).__name__}.step: timestep must be an int or an integer "
                            f"Tensor, got {type(timestep).__name__}")
        if timestep.device != like.device:
            raise RuntimeError(f"{type(self).__name__}.step: timestep is on {timestep.device} "
                               f"but the sample is on {like.device}")
        if dev.device != timestep.device:           # set_timesteps was called for another device
            dev = dev.to(timestep.device)
            self._lookups[name] = (host, dev)
        if timestep.device.type == "cpu":
            t = np.asarray(timestep.data)
            if t.dtype.kind not in "iu":
                raise TypeError(f"{type(self).__name__}.step: timestep must hold integers, "
                                f"got {t.dtype}")
            if t.size and (t.min() < 0 or t.max() >= self.num_train_timesteps
                           or np.any(host[t] == _INVALID)):
                raise ValueError(f"{type(self).__name__}.step: timestep {t.tolist()} is not "
                                 f"among the timesteps set by set_timesteps ({what})")
        return dev[timestep]

    # ----------------------------------------------------------------------------- add_noise
    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (MATH.md §6), one fused pass; differentiable.

        original_samples x_0 and noise ε: (N, *); timesteps: (N,) int Tensor (or one int).
        Uses the training schedule: valid before ``set_timesteps``."""
        return q_sample(self.schedule, original_samples, timesteps, noise)

    def get_velocity(self, sample: Tensor, noise: Tensor, timesteps) -> Tensor:
        """The v-prediction target v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (``sample`` is x_0), one fused
        pass (q_sample with the roles of x_0 and ε swapped); differentiable."""
        return q_sample(self.schedule, noise, timesteps, -sample)

    def scale_model_input(self, sample: Tensor, timestep=None) -> Tensor:
        """Identity for DDPM/DDIM (diffusers' interface, for samplers that rescale x_t)."""
        return sample

    def __len__(self):
        return self.num_train_timesteps


_INVALID = -(2 ** 62)     # lookup entry of a timestep that is not in the inference set


def _all_schedulers():
    from . import ddim, ddpm
    return (ddpm.DDPMScheduler, ddim.DDIMScheduler)
