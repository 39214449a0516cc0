"""Reading a diffusion run back (``minigen sample RUN``, ``minigen eval RUN``).

The run directory is the harness's (``minigen/harness/rundir.py``); a --latent run also keeps
``RUN/autoencoder.safetensors``. ``load_run(RUN)`` returns the ``DDPMFamily`` of the run with
the UNet's EMA weights as ``.model``, ``.scheduler(kind)`` for DDPM/DDIM with the training
schedule, and ``.decode`` mapping the diffusion space back to images (the identity, or the
autoencoder for --latent).
"""
from __future__ import annotations

import os

import numpy as np

from ..harness.rundir import (CHECKPOINT, CONFIG, LOSS_CSV, METRICS, plot_loss,  # noqa: F401
                              read_loss_csv, save_grid, save_strip, write_json, write_loss_csv)

__all__ = ["load_run", "sample_run", "evaluate_run_dir", "save_grid", "save_strip",
           "write_json", "read_loss_csv", "write_loss_csv", "plot_loss", "CHECKPOINT", "CONFIG",
           "METRICS", "AUTOENCODER"]

AUTOENCODER = "autoencoder.safetensors"


def load_run(path: str, device: str = "cpu", ema: bool = True):
    """The DDPMFamily of the run in ``path`` (EMA weights unless ema=False), in eval mode."""
    from ..harness import load_run as harness_load
    run = harness_load(path, device=device, ema=ema)
    if run.name != "ddpm":
        raise ValueError(f"{path!r} is a {run.name} run, not a diffusion run")
    return run


def evaluate_run_dir(path: str, device: str = "cpu", seed: int = 0, progress: bool = True,
                     log=print, out: str = "eval.json", **opts) -> dict:
    """``minigen eval RUN`` for a diffusion run (``minigen.harness.evaluate_run_dir``)."""
    from ..harness import evaluate_run_dir as harness_eval
    return harness_eval(path, device=device, seed=seed, progress=progress, log=log, out=out,
                        **opts)


# ---------------------------------------------------------------------- sampling a run
def sample_run(run, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
               guidance: float = 0.0, class_label: int | None = None, num: int = 64,
               seed: int = 0, device: str = "cpu", progress: bool = False, generator=None):
    """Samples (N, C, H, W) of a trained run and 11 frames of the first one's trajectory
    x_T → x_0 (each (1, C, H, W)); images in [−1, 1], decoded for latent runs; seeded: the same
    arguments give the same images.

    steps: inference steps (default: all T for ddpm, 50 for ddim). Conditional models get
    ``class_label`` for every sample, or classes 0, 1, ..., K−1 cycling when it is None;
    guidance w is classifier-free guidance ε̄ = (1 + w) ε(x, t, y) − w ε(x, t, ∅)."""
    from ..random import Generator
    from ..tensor import tensor
    from .sampling import sample

    T = int(run.scheduler_config["num_train_timesteps"])
    steps = steps or (T if sampler == "ddpm" else min(50, T))
    sched = run.scheduler(sampler, **({"eta": eta} if sampler == "ddim" else {}))
    if sampler == "ddpm" and eta:
        raise ValueError("--eta applies to --sampler ddim (DDPM is η = 1 by construction)")
    k = run.num_classes
    if k is None and (guidance or class_label is not None):
        raise ValueError("--guidance and --class need a class-conditional run (trained with "
                         "--conditional)")
    labels = None
    if k is not None:
        if class_label is not None and not 0 <= class_label < k:
            raise ValueError(f"--class must be in 0..{k - 1}, got {class_label}")
        ys = np.full(num, class_label) if class_label is not None else np.arange(num) % k
        labels = tensor(ys.astype(np.int64), device=device)
    gen = generator if generator is not None else Generator(device).manual_seed(seed)
    x, traj = sample(run.model, sched, (num, *run.sample_shape), num_inference_steps=steps,
                     generator=gen, class_labels=labels, guidance_scale=guidance, device=device,
                     progress=progress, return_trajectory=True)
    nt = len(traj)   # 11 frames evenly spaced from x_T to x_0 (decoded: latent runs)
    picks = sorted({round(i * (nt - 1) / 10) for i in range(11)})
    host = lambda a: np.asarray(a.to("cpu").numpy())  # noqa: E731
    return host(run.decode(x)), [host(run.decode(traj[i][:1])) for i in picks]
