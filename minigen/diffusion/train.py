"""Train a DDPM (Algorithm 1 of Ho et al. 2020; MATH.md §6, §8): ``minigen train ddpm``.

One step, for a batch x_0 (N, C, H, W) in [−1, 1] (labels y when --conditional):

    t ~ U{0..T−1}  (index t is the paper's step t+1),  ε ~ N(0, I)
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε                                   (one fused pass, q_sample)
    target = ε                  (prediction_type "epsilon")
           = x_0                ("sample")
           = √ᾱ_t ε − √(1 − ᾱ_t) x_0   ("v_prediction", v of Salimans & Ho)
    loss = ‖target − model(x_t, t, y)‖² / (N·C·H·W)                    (the "simple" loss)
    y ← ∅ (the null class) with probability p_uncond (classifier-free guidance, §8)
    θ ← Adam(θ, clip(∇θ loss, max-norm)),  learning rate warmed up linearly over W steps
    θ̄ ← d_n θ̄ + (1 − d_n) θ,  d_n = min(d, (1 + n)/(10 + n))       (EMA, sampled from)

| symbol | name in code |
|---|---|
| x_0, x_t, ε, t, y | ``x0``, ``xt``, ``noise``, ``t``, ``y`` |
| ᾱ_t | ``schedule.alphas_cumprod[t]`` (gathered inside ``q_sample``) |
| p_uncond, d, W | ``cfg.p_uncond``, ``cfg.ema_decay``, ``cfg.warmup`` |

Defaults: the E2 UNet of BENCH.md, batch 64, T = 1000 linear. The learning rate is 1e-3 (the
E2 benchmark's 2e-4 is the DDPM paper's, for ~800k steps; a 60-minute CPU run makes a few
thousand steps, where 1e-3 with warm-up learns faster; clipping guards against spikes).

Randomness: weights from a generator seeded with ``seed``; t, ε, the label drop (and the latent
posterior sample for --latent) from one CPU generator seeded with ``seed + 1`` whose state is
checkpointed; the batch order of epoch e is the permutation seeded by (seed, e). So a run resumed
from a checkpoint continues with bit-identical parameters (tests/test_diffusion_train.py).

Anomaly guard: the loss and the total gradient norm are checked every step before the
optimizer moves; a NaN or inf stops the run with ``TrainingAnomaly`` *before* the bad update,
so the last checkpoint on disk (never overwritten afterwards) is a good one.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields

import numpy as np

from .. import creation
from ..autograd.grad_mode import detect_anomaly, no_grad
from ..nn import functional as F
from ..ops.noise_schedule import q_sample
from ..random import Generator
from ..tensor import tensor
from . import run as rundir
from .datasets import load_image_dataset
from ..models.vae_train import _Progress, _StopOnInterrupt as StopOnInterrupt

__all__ = ["TrainConfig", "train", "diffusion_loss", "TrainingAnomaly", "PRESETS"]

# Architectures (UNet constructor arguments; in/out channels and classes come from the data).
PRESETS = {
    "e2": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(),
               mid_attention=True, num_heads=1, dropout=0.0, num_groups=8),
    "tiny": dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(),
                 mid_attention=True, num_heads=1, dropout=0.0, num_groups=4),
}
DEFAULT_STEPS = 2000


class Progress(_Progress):
    """The VAE trainer's tqdm bar, with the loss shown to 4 decimals (ε-MSE is ~0.03)."""

    def step(self, loss: float):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
SAMPLE_SEED_OFFSET = 1000   # grids during training use their own generator (seed + this)


class TrainingAnomaly(FloatingPointError):
    """The loss or the gradient became NaN/inf; the message says where and what was kept."""


@dataclass
class TrainConfig:
    """The knobs of one run (``minigen train ddpm --help`` describes each)."""
    data: str = "mnist"
    data_dir: str | None = None
    limit: int | None = None
    conditional: bool = False
    p_uncond: float = 0.1            # label → ∅ with this probability (conditional runs)
    latent: bool = False
    ae_epochs: int | None = None     # autoencoder training epochs (None: its default)
    steps: int | None = None         # total steps to reach (None and no minutes: DEFAULT_STEPS)
    minutes: float | None = None     # stop after this much training wall time (whole run)
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.999
    warmup: int = 200
    grad_clip: float = 1.0           # max total gradient norm (0: no clipping)
    prediction_type: str = "epsilon"
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    preset: str = "e2"
    seed: int = 0
    out: str = "runs/ddpm"
    sample_every: int = 1000         # steps between sample grids (0: only at the end)
    sample_steps: int = 50           # DDIM steps for the grids
    num_samples: int = 64
    checkpoint_every: int = 250      # steps between checkpoints (and every 120 s)
    device: str = "cpu"
    progress: bool = True
    images: bool = True
    detect_anomaly: bool = False     # name the op that makes the first NaN (slow)

    RESUME_KEYS = ("data", "data_dir", "limit", "conditional", "p_uncond", "latent",
                   "ae_epochs", "batch_size", "lr", "ema_decay", "warmup", "grad_clip", "prediction_type",
                   "num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "preset",
                   "seed")

    def identity(self) -> dict:
        """The settings a resumed run must share with its checkpoint."""
        return {k: getattr(self, k) for k in self.RESUME_KEYS}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def diffusion_loss(model, schedule, x0, t, noise, y=None, prediction_type="epsilon"):
    """The simple loss of Algorithm 1 (module doc): mean squared error of the model's
    prediction at x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε against ε, x_0 or v."""
    xt = q_sample(schedule, x0, t, noise)
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "sample":
        target = x0
    elif prediction_type == "v_prediction":
        with no_grad():   # v = √ᾱ_t ε − √(1 − ᾱ_t) x_0: q_sample with (ε, −x_0) in one pass
            target = q_sample(schedule, noise, t, -x0)
    else:
        raise ValueError(f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got "
                         f"{prediction_type!r}")
    out = model(xt, t) if y is None else model(xt, t, y)
    return F.mse_loss(out, target)


def _validate(cfg: TrainConfig):
    checks = [(cfg.batch_size >= 1, "--batch-size must be ≥ 1"),
              (cfg.lr > 0, "--lr must be > 0"),
              (0.0 <= cfg.ema_decay <= 1.0, "--ema-decay must be in [0, 1]"),
              (cfg.warmup >= 0, "--warmup must be ≥ 0"),
              (cfg.grad_clip >= 0, "--grad-clip must be ≥ 0 (0: off)"),
              (0.0 <= cfg.p_uncond < 1.0, "--p-uncond must be in [0, 1)"),
              (cfg.steps is None or cfg.steps >= 0, "--steps must be ≥ 0"),
              (cfg.minutes is None or cfg.minutes >= 0, "--minutes must be ≥ 0"),
              (cfg.sample_every >= 0 and cfg.checkpoint_every >= 1,
               "--sample-every must be ≥ 0 and checkpoint_every ≥ 1"),
              (cfg.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}")]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def _build(cfg: TrainConfig, data, diffusion_shape):
    """The UNet, DDPMScheduler, Adam, warm-up LR schedule and EMA of a fresh run."""
    from .. import optim
    from ..models import UNet
    from .ddpm import DDPMScheduler

    c, h, w = diffusion_shape
    model = UNet(in_channels=c, out_channels=c, **PRESETS[cfg.preset],
                 num_classes=data.num_classes if cfg.conditional else None)
    model.reset_parameters(Generator("cpu").manual_seed(cfg.seed))
    if cfg.device != "cpu":
        model.to(cfg.device)
    scheduler = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps,
                              beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                              beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type,
                              clip_sample=not cfg.latent)   # latents are not confined to [−1, 1]
    opt = optim.Adam(model.parameters(), lr=cfg.lr)
    # η(t) = η₀ (t + 1)/(W + 1) for t < W, then η₀ (LinearLR with end factor 1)
    lr_sched = optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / (cfg.warmup + 1),
                                           end_factor=1.0, total_iters=max(cfg.warmup, 1))
    ema = optim.EMA(model, decay=cfg.ema_decay, warmup=True)
    return model, scheduler, opt, lr_sched, ema


def _num_params(model) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))


def train(cfg: TrainConfig | None = None, resume: bool = False, log=print, **kwargs) -> dict:
    """Train (or resume) a DDPM into the run directory ``cfg.out``; return the metrics dict.

    Raises TrainingAnomaly on a NaN/inf loss or gradient (the last checkpoint is kept)."""
    import minigen

    cfg = cfg or TrainConfig(**kwargs)
    _validate(cfg)
    if cfg.images:
        rundir.require_pillow()          # fail before training, not after
    os.makedirs(cfg.out, exist_ok=True)
    ck_path = os.path.join(cfg.out, rundir.CHECKPOINT)
    csv_path = os.path.join(cfg.out, rundir.LOSS_CSV)
    if not resume and os.path.exists(ck_path):
        raise ValueError(f"{cfg.out} already holds a run ({rundir.CHECKPOINT}): pass --resume "
                         "to continue it, or choose another --out")
    data = load_image_dataset(cfg.data, cfg.data_dir, cfg.limit)
    if len(data.train) < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} "
                         "training images")

    latent_info, latents, decoder = None, None, None
    diffusion_shape = data.shape
    if cfg.latent:
        from .latent import decode_latents, prepare_latents
        multiple = 2 ** len(PRESETS[cfg.preset]["channel_mult"])   # the UNet's downsampling
        latent_info, latents, ae = prepare_latents(cfg, data, log, multiple)
        diffusion_shape = tuple(latent_info["shape"])
        decoder = lambda z: decode_latents(ae, z, latent_info)  # noqa: E731
    model, scheduler, opt, lr_sched, ema = _build(cfg, data, diffusion_shape)
    schedule = scheduler.schedule
    noise_gen = Generator("cpu").manual_seed(cfg.seed + 1)
    config = {"train": cfg.to_dict(), "model": model.config, "scheduler": scheduler.config,
              "data": {"name": data.name, "source": data.source, "shape": list(data.shape),
                       "num_classes": data.num_classes, "label_names": data.label_names,
                       "n_train": len(data.train), "n_heldout": len(data.heldout)},
              "diffusion_shape": list(diffusion_shape), "latent": latent_info}
    step = epoch = batch = 0
    seconds = 0.0
    if resume and os.path.exists(ck_path):
        ck = minigen.load(ck_path)
        saved = ck["config"]
        if saved != cfg.identity():
            diff = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
            raise ValueError(f"--resume: the checkpoint in {cfg.out} was made with different "
                             f"settings (checkpoint, now): {diff}")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        lr_sched.load_state_dict(ck["lr_scheduler"])
        noise_gen.set_state(ck["rng"])
        step, epoch, batch = int(ck["step"]), int(ck["epoch"]), int(ck["batch"])
        seconds = float(ck["seconds"])
        log(f"resumed from {ck_path} at step {step} (epoch {epoch}, batch {batch})")
    elif resume:
        log(f"--resume: no checkpoint in {cfg.out}; starting fresh")
    rundir.write_json(os.path.join(cfg.out, rundir.CONFIG), config)
    rows = rundir.read_loss_csv(csv_path, upto_step=step)   # drop rows past the checkpoint
    state = {"last_saved": step if os.path.exists(ck_path) else None}

    def checkpoint():
        minigen.save({"model": model.state_dict(), "ema": ema.state_dict(),
                      "optimizer": opt.state_dict(), "lr_scheduler": lr_sched.state_dict(),
                      "step": step, "epoch": epoch, "batch": batch, "seconds": seconds,
                      "rng": noise_gen.get_state(), "scheduler_config": scheduler.config,
                      "config": cfg.identity()}, ck_path)
        rundir.write_loss_csv(csv_path, rows)
        state["last_saved"] = step

    def grid(name, num=None):
        if cfg.images:
            _sample_grid(cfg, model, ema, scheduler, diffusion_shape, decoder,
                         os.path.join(cfg.out, "samples", name), num)

    target = cfg.steps if cfg.steps is not None else (None if cfg.minutes else DEFAULT_STEPS)
    budget = None if cfg.minutes is None else 60.0 * cfg.minutes
    n_batches = len(data.train) // cfg.batch_size     # full batches only (drop_last)
    c, h, w = diffusion_shape
    log(f"DDPM ({cfg.preset} UNet, {_num_params(model):,} parameters"
        f"{', class-conditional' if cfg.conditional else ''}) on {data.describe()}"
        f"{f', latent {c}x{h}x{w}' if cfg.latent else ''}; T={cfg.num_train_timesteps} "
        f"{cfg.beta_schedule}, {cfg.prediction_type} prediction, batch {cfg.batch_size}, Adam lr "
        f"{cfg.lr} (warm-up {cfg.warmup}), EMA {cfg.ema_decay}, clip {cfg.grad_clip or 'off'}; "
        + (f"{target} steps" if target is not None else "") + (" or " if target and budget else "")
        + (f"{cfg.minutes} minutes" if budget else "") + f", seed {cfg.seed}")

    def done():
        return (target is not None and step >= target) or (budget is not None and
                                                           seconds >= budget)

    progress = Progress(cfg.progress, log, target, step)
    stop = StopOnInterrupt()
    params = list(model.parameters())
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    it = None
    last_time_save = time.perf_counter()
    try:
        with detect_anomaly(cfg.detect_anomaly):
            while not done():
                t0 = time.perf_counter()
                if it is None:   # epoch e's order: the permutation seeded by (seed, e)
                    it = minigen.data.batches(np.arange(len(data.train)),
                                              batch_size=cfg.batch_size, seed=cfg.seed,
                                              epoch=epoch, start=batch, drop_last=True)
                (idx,) = next(it)
                n, yb = len(idx), data.train_labels[idx]
                # the random draws of one step, in a fixed order (resume depends on it)
                if latents is not None:   # z ~ q(z | x_0) = N(μ, σ²), scaled (latent.py)
                    mean, std = latents
                    eps_z = creation.randn(n, *diffusion_shape, generator=noise_gen)
                    x0 = tensor(mean[idx]) + tensor(std[idx]) * eps_z
                else:
                    x0 = tensor(data.to_float(data.train[idx]))
                t = creation.randint(0, cfg.num_train_timesteps, (n,), generator=noise_gen)
                noise = creation.randn(n, *diffusion_shape, generator=noise_gen)
                y = None
                if cfg.conditional:
                    drop = creation.rand(n, generator=noise_gen).numpy() < cfg.p_uncond
                    y = tensor(np.where(drop, data.num_classes, yb).astype(np.int64))
                if cfg.device != "cpu":
                    x0, t, noise = x0.to(cfg.device), t.to(cfg.device), noise.to(cfg.device)
                    y = None if y is None else y.to(cfg.device)
                loss = diffusion_loss(model, schedule, x0, t, noise, y, cfg.prediction_type)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise TrainingAnomaly(_anomaly_message(cfg, "loss", value, step, state))
                opt.zero_grad()
                loss.backward()
                gnorm = float(minigen.optim.clip_grad_norm_(params, max_norm).item())
                if not math.isfinite(gnorm):
                    raise TrainingAnomaly(_anomaly_message(cfg, "gradient norm", gnorm, step,
                                                           state))
                lr = opt.param_groups[0]["lr"]
                opt.step()
                lr_sched.step()
                ema.update()
                step, batch = step + 1, batch + 1
                if batch == n_batches:
                    epoch, batch, it = epoch + 1, 0, None
                rows.append({"step": step, "loss": value, "grad_norm": gnorm, "lr": lr})
                seconds += time.perf_counter() - t0
                progress.step(value)
                if stop.requested:
                    raise KeyboardInterrupt
                if cfg.sample_every and step % cfg.sample_every == 0 and not done():
                    t1 = time.perf_counter()
                    # a small grid while training (2 per class when conditional), the full one
                    # at the end
                    grid(f"step_{step:07d}.png", 2 * data.num_classes if cfg.conditional
                         else 16)
                    seconds += time.perf_counter() - t1
                if (step % cfg.checkpoint_every == 0
                        or time.perf_counter() - last_time_save >= 120.0):
                    checkpoint()
                    last_time_save = time.perf_counter()
    except KeyboardInterrupt:
        progress.close()
        if stop.requested:           # between steps: the state is consistent
            checkpoint()
            log(f"interrupted: checkpoint saved at step {step}; continue with --resume")
        raise
    except TrainingAnomaly:
        progress.close()
        rundir.write_loss_csv(csv_path, rows)   # the losses up to the anomaly, for diagnosis
        raise
    finally:
        stop.restore()
    progress.close()
    if state["last_saved"] != step:
        checkpoint()
    return _finish(cfg, data, model, ema, scheduler, diffusion_shape, decoder, rows,
                   step, epoch, seconds, log, grid)


def _anomaly_message(cfg, what, value, step, state):
    kept = (f"the last good checkpoint (step {state['last_saved']}) is kept in "
            f"{os.path.join(cfg.out, rundir.CHECKPOINT)}; continue from it with --resume "
            "(perhaps with a lower --lr or --grad-clip)" if state["last_saved"] is not None
            else "no checkpoint had been written yet")
    hint = "" if cfg.detect_anomaly else "; rerun with --detect-anomaly to name the op"
    return (f"training stopped: the {what} became {value} at step {step + 1} (before the "
            f"optimizer step, so no parameter was touched); {kept}{hint}")


def _sample_grid(cfg, model, ema, scheduler, shape, decoder, path, num=None):
    """A grid of EMA samples (DDIM, cfg.sample_steps steps; one column per class when
    conditional), from a generator of its own so that training randomness is untouched."""
    from .ddim import DDIMScheduler
    from .sampling import sample
    num = num or cfg.num_samples
    gen = Generator(cfg.device).manual_seed(cfg.seed + SAMPLE_SEED_OFFSET)
    sched = DDIMScheduler.from_config(scheduler.config)
    k = model.num_classes
    labels = None if k is None else tensor(np.arange(num) % k, device=cfg.device)
    with no_grad(), ema.average_parameters():
        model.eval()
        x = sample(model, sched, (num, *shape), num_inference_steps=min(
            cfg.sample_steps, cfg.num_train_timesteps), generator=gen, class_labels=labels,
            device=cfg.device)
        model.train()
    if decoder:
        x = decoder(x)
    rundir.save_grid(x.numpy() if cfg.device == "cpu" else x.to("cpu").numpy(), path,
                     ncol=k or 8)


def _finish(cfg, data, model, ema, scheduler, shape, decoder, rows, step, epoch, seconds, log,
            grid):
    csv_path = os.path.join(cfg.out, rundir.LOSS_CSV)
    rundir.write_loss_csv(csv_path, rows)
    outputs = [rundir.CHECKPOINT, rundir.CONFIG, rundir.LOSS_CSV, rundir.METRICS]
    if cfg.images:
        rundir.plot_loss(rows, os.path.join(cfg.out, "loss.png"))
        grid("final.png")
        outputs += ["loss.png", "samples/final.png"]
    tail = [r["loss"] for r in rows[-100:]]
    metrics = {"steps": step, "epochs": epoch, "train_seconds": seconds,
               "steps_per_second": step / seconds if seconds > 0 else None,
               "final_loss_mean_last_100": float(np.mean(tail)) if tail else None,
               "first_loss": rows[0]["loss"] if rows else None,
               "n_train": len(data.train), "n_heldout": len(data.heldout),
               "data": data.name, "image_shape": list(data.shape),
               "diffusion_shape": list(shape), "model_parameters": _num_params(model),
               "scheduler_config": scheduler.config, "config": cfg.to_dict()}
    path = os.path.join(cfg.out, rundir.METRICS)
    old = {}
    if os.path.exists(path):           # keep an earlier ``minigen eval`` section
        import json
        with open(path) as f:
            old = json.load(f)
    if "eval" in old:
        metrics["eval"] = old["eval"]
    rundir.write_json(path, metrics)
    log(f"{step} steps in {seconds:.1f} s, mean loss of the last {len(tail)} steps "
        f"{metrics['final_loss_mean_last_100'] or float('nan'):.4f}; wrote {cfg.out}/"
        f"{{{', '.join(outputs)}}}")
    return metrics

