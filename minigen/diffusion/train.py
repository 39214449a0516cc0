"""``minigen train ddpm`` from Python: ``train(TrainConfig(...))``.

The family (the loss of a step, the UNet, latent diffusion, sampling) is ``family.py``; the loop
is the harness's (``minigen/harness/loop.py``). This module keeps the names existing code
imports.
"""
from __future__ import annotations

from ..harness.loop import TrainingAnomaly, fit
from .family import PRESETS, DDPMConfig, DDPMFamily, diffusion_loss, drop_labels

__all__ = ["TrainConfig", "train", "diffusion_loss", "drop_labels", "TrainingAnomaly", "PRESETS",
           "DEFAULT_STEPS"]

TrainConfig = DDPMConfig
DEFAULT_STEPS = DDPMConfig.DEFAULT_STEPS


def train(cfg: DDPMConfig | None = None, resume: bool = False, log=print, **kwargs) -> dict:
    """Train (or resume) a DDPM into the run directory ``cfg.out``; return the metrics dict.

    Raises TrainingAnomaly on a NaN/inf loss or gradient (the last checkpoint is kept)."""
    return fit(DDPMFamily, cfg or DDPMConfig(**kwargs), resume=resume, log=log)
