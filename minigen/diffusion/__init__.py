"""Diffusion models on minigen (MATH.md §6–8): schedulers, sampling, training, evaluation.

    ddpm.py             DDPMScheduler: ancestral sampling, Algorithm 2 (MATH.md §6)
    ddim.py             DDIMScheduler: S-step DDIM with η (MATH.md §7)
    scheduler_base.py   what they share: config ↔ from_config, set_timesteps, add_noise
    sampling.py         sample(model, scheduler, shape, ...): the loop, classifier-free and
                        classifier guidance (MATH.md §8)
    train.py, evaluate.py (own modules: ``import minigen.diffusion.train``)

The step of each scheduler is one fused kernel (``minigen.ops.noise_schedule``) over the
float64 tables of ``minigen.schedules.NoiseSchedule``.
"""
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .sampling import sample
from .scheduler_base import SchedulerOutput

__all__ = ["DDPMScheduler", "DDIMScheduler", "SchedulerOutput", "sample",
           "scheduler_from_config"]

SCHEDULERS = {"DDPMScheduler": DDPMScheduler, "DDIMScheduler": DDIMScheduler}


def scheduler_from_config(config, **overrides):
    """The scheduler that ``config`` (a dict or JSON path with ``_class_name``) describes;
    ``_class_name`` may be overridden by passing ``cls=DDIMScheduler`` etc. in overrides."""
    import json
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    cls = overrides.pop("cls", None) or SCHEDULERS.get(config.get("_class_name"))
    if cls is None:
        raise ValueError(f"scheduler_from_config: unknown _class_name "
                         f"{config.get('_class_name')!r}; expected one of {sorted(SCHEDULERS)}")
    return cls.from_config(config, **overrides)
