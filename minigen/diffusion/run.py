"""The run directory of a diffusion training (``minigen train ddpm --out RUN``) and how to read
it back (``minigen sample RUN``, ``minigen eval RUN``):

    RUN/config.json             training settings, UNet config, scheduler config, data, latent
    RUN/checkpoint.safetensors  model, EMA, optimizer, LR scheduler, step/epoch/batch, RNG state,
                                scheduler config (written atomically: temp file, fsync, rename)
    RUN/autoencoder.safetensors the KL autoencoder of a --latent run (its config in config.json)
    RUN/samples/*.png           sample grids (EMA weights) during and after training
    RUN/loss.csv, RUN/loss.png  the training loss per step, and its plot
    RUN/metrics.json            what the run measured (and ``eval``'s results under "eval")

``load_run(RUN)`` rebuilds the UNet with its EMA weights, the scheduler, and the decoder that
maps the diffusion space back to images (the identity, or the autoencoder for --latent).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Run", "load_run", "sample_run", "evaluate_run_dir", "save_grid", "save_strip",
           "write_json", "read_loss_csv", "write_loss_csv", "plot_loss", "CHECKPOINT", "CONFIG",
           "METRICS", "AUTOENCODER"]

CHECKPOINT = "checkpoint.safetensors"
AUTOENCODER = "autoencoder.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
LOSS_CSV = "loss.csv"
LOSS_FIELDS = ("step", "loss", "grad_norm", "lr")


def write_json(path: str, obj):
    """Atomic JSON write (temp file + rename: a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- images
def require_pillow():
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError('writing PNG grids needs Pillow, which is not installed: pip install '
                          'pillow (or pip install "minigen[train]"), or pass --no-images') from None


def _to_uint8(images) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] → uint8 (N, H, W, C) with v = round((x + 1)/2 · 255)."""
    a = np.asarray(images, dtype=np.float32)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return a.transpose(0, 2, 3, 1)


def _save_png(grid: np.ndarray, path: str, scale: int):
    from PIL import Image
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid,
                          mode="L" if grid.shape[-1] == 1 else "RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)


def save_grid(images, path: str, ncol: int = 8, scale: int | None = None, pad: int = 2):
    """Write images (N, C, H, W) with values in [−1, 1] (C = 1 or 3) as one PNG grid, row-major,
    ``pad``-pixel black gaps, magnified ``scale``× (default: to about 56 pixels per image)."""
    require_pillow()
    pix = _to_uint8(images)
    n, h, w, c = pix.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    scale = scale or max(1, 56 // max(h, w))
    grid = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[y0:y0 + h, x0:x0 + w] = pix[i]
    _save_png(grid, path, scale)


def save_strip(trajectory, path: str, frames: int = 11, index: int = 0, scale=None):
    """One denoising trajectory x_T → x_0 as a strip of ``frames`` images evenly spaced along
    the list (the first and the last always included), of sample ``index``."""
    k = len(trajectory)
    picks = sorted({round(i * (k - 1) / (frames - 1)) for i in range(frames)}) if k > 1 else [0]
    chosen = np.stack([np.asarray(trajectory[i][index]) for i in picks])
    save_grid(chosen, path, ncol=len(picks), scale=scale)


# ---------------------------------------------------------------------- loss log
def read_loss_csv(path: str, upto_step: int | None = None) -> list:
    """Rows of loss.csv as dicts of floats (``step`` an int), optionally those ≤ upto_step."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {k: float(r[k]) for k in LOSS_FIELDS}
            row["step"] = int(row["step"])
            if upto_step is None or row["step"] <= upto_step:
                rows.append(row)
    return rows


def write_loss_csv(path: str, rows: list):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LOSS_FIELDS)
        for r in rows:
            w.writerow([r["step"], repr(float(r["loss"])), repr(float(r["grad_norm"])),
                        repr(float(r["lr"]))])
    os.replace(tmp, path)


def plot_loss(rows: list, path: str, width: int = 640, height: int = 360):
    """loss.png: per-step loss (grey) and its 1%-of-run moving average (black), log y axis."""
    require_pillow()
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 15, 25, height - 35
    losses = np.array([r["loss"] for r in rows if r["loss"] > 0], dtype=np.float64)
    steps = np.array([r["step"] for r in rows if r["loss"] > 0], dtype=np.float64)
    d.rectangle([left, top, right, bottom], outline="black")
    if len(losses) >= 2:
        lo, hi = math.log10(losses.min()), math.log10(losses.max())
        hi = hi if hi > lo else lo + 1.0
        s0, s1 = steps.min(), max(steps.max(), steps.min() + 1)
        px = lambda s: left + (s - s0) / (s1 - s0) * (right - left)           # noqa: E731
        py = lambda v: bottom - (math.log10(v) - lo) / (hi - lo) * (bottom - top)  # noqa: E731
        for s, v in zip(steps, losses):
            d.point((px(s), py(v)), fill=(170, 170, 170))
        k = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        d.line([(px(s), py(v)) for s, v in zip(steps[k - 1:], smooth)], fill="black", width=2)
        for e in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = m * 10.0 ** e
                if lo <= math.log10(v) <= hi:
                    d.line([(left - 4, py(v)), (left, py(v))], fill="black")
                    d.text((5, py(v) - 6), f"{v:g}", fill="black")
        d.text((left, bottom + 8), f"step {int(s0)}", fill="black")
        d.text((right - 90, bottom + 8), f"step {int(s1)}", fill="black")
    d.text((left, 6), "training loss per step (log scale)", fill="black")
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- reading a run back
@dataclass
class Run:
    """A trained run: the UNet (EMA weights unless asked otherwise), its scheduler config, the
    data description and, for latent runs, the autoencoder and latent scale."""
    path: str
    model: object
    config: dict
    scheduler_config: dict
    step: int
    autoencoder: object = None
    latent_scale: float = 1.0

    @property
    def sample_shape(self) -> tuple:
        """(C, H, W) of the space the diffusion runs in (latents for --latent runs)."""
        return tuple(self.config["diffusion_shape"])

    @property
    def num_classes(self):
        return self.model.num_classes

    def scheduler(self, kind: str = "ddpm", **overrides):
        """A DDPMScheduler or DDIMScheduler with the run's training schedule."""
        from .ddim import DDIMScheduler
        from .ddpm import DDPMScheduler
        cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}.get(kind)
        if cls is None:
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {kind!r}")
        return cls.from_config(self.scheduler_config, **overrides)

    def decode(self, z):
        """Diffusion space → images in [−1, 1]: identity, or D(z / s) for latent runs."""
        if self.autoencoder is None:
            return z
        from .latent import decode_latents
        return decode_latents(self.autoencoder, z, self.config["latent"])


def load_run(path: str, device: str = "cpu", ema: bool = True) -> Run:
    """Rebuild the run in directory ``path`` (module doc)."""
    import minigen
    from ..models import UNet
    from ..optim import EMA

    cfg_path, ck_path = os.path.join(path, CONFIG), os.path.join(path, CHECKPOINT)
    if not os.path.isfile(cfg_path) or not os.path.isfile(ck_path):
        raise FileNotFoundError(f"{path!r} is not a training run directory: it needs {CONFIG} "
                                f"and {CHECKPOINT} (made by minigen train ddpm --out {path})")
    with open(cfg_path) as f:
        config = json.load(f)
    ck = minigen.load(ck_path)
    model = UNet(**config["model"])
    model.load_state_dict(ck["model"])
    if ema:
        averager = EMA(model)
        averager.load_state_dict(ck["ema"])
        averager.copy_to()
    model.eval()
    if device != "cpu":
        model.to(device)
    autoencoder, scale = None, 1.0
    if config.get("latent"):
        from .latent import load_autoencoder
        autoencoder = load_autoencoder(os.path.join(path, AUTOENCODER), config["latent"],
                                       device)
        scale = float(config["latent"]["scale"])
    return Run(path, model, config, dict(ck["scheduler_config"]), int(ck["step"]),
               autoencoder, scale)


# ---------------------------------------------------------------------- sampling a run
def sample_run(run: Run, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
               guidance: float = 0.0, class_label: int | None = None, num: int = 64,
               seed: int = 0, device: str = "cpu", progress: bool = False):
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
    gen = Generator(device).manual_seed(seed)
    x, traj = sample(run.model, sched, (num, *run.sample_shape), num_inference_steps=steps,
                     generator=gen, class_labels=labels, guidance_scale=guidance, device=device,
                     progress=progress, return_trajectory=True)
    nt = len(traj)   # 11 frames evenly spaced from x_T to x_0 (decoded: latent runs)
    picks = sorted({round(i * (nt - 1) / 10) for i in range(11)})
    host = lambda a: np.asarray(a.to("cpu").numpy())  # noqa: E731
    return host(run.decode(x)), [host(run.decode(traj[i][:1])) for i in picks]


# ---------------------------------------------------------------------- evaluating a run
def evaluate_run_dir(path: str, device: str = "cpu", seed: int = 0, progress: bool = True,
                     log=print, out: str = "eval.json", **opts) -> dict:
    """``minigen eval RUN``: ``minigen.diffusion.evaluate.evaluate_run(run, ...)`` on the EMA
    weights; the results go to RUN/``out`` (default eval.json) and to the section of
    RUN/metrics.json named by its stem ("eval" for eval.json).

    When the evaluate module has no ``evaluate_run``, the held-out bits/dim alone is computed
    with its ``bits_per_dim(model, scheduler, x0)`` (pixel-space runs only)."""
    if os.path.basename(out) != out or not out.endswith(".json"):
        raise ValueError(f"out={out!r}: give a file name ending in .json (it goes inside RUN)")
    from . import evaluate
    run = load_run(path, device=device)
    fn = getattr(evaluate, "evaluate_run", None)
    if fn is not None:
        results = fn(run, device=device, seed=seed, progress=progress, log=log, **opts)
    else:
        if run.autoencoder is not None:
            raise ValueError("bits/dim of a latent run is not defined in pixel space (and "
                             "minigen.diffusion.evaluate has no evaluate_run)")
        from ..tensor import tensor
        from .datasets import load_image_dataset
        cfg = run.config["train"]
        data = load_image_dataset(cfg["data"], cfg["data_dir"])
        n = int(opts.get("heldout", 64))
        x0 = tensor(data.to_float(data.heldout[:n]), device=device)
        bpd = evaluate.bits_per_dim(run.model, run.scheduler("ddpm"), x0)
        results = {"heldout_bits_per_dim": float(bpd if not hasattr(bpd, "item")
                                                 else bpd.mean().item()),
                   "heldout_images": int(x0.shape[0])}
    results = {**results, "step": run.step}
    write_json(os.path.join(path, out), results)
    mpath = os.path.join(path, METRICS)
    metrics = {}
    if os.path.exists(mpath):
        with open(mpath) as f:
            metrics = json.load(f)
    section = os.path.splitext(out)[0]
    metrics[section] = results
    write_json(mpath, metrics)
    log(json.dumps(results, indent=2))
    log(f"wrote {os.path.join(path, out)} and the {section!r} section of {mpath}")
    return results
