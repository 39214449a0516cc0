"""Training the KL autoencoder of latent diffusion (``minigen train ddpm --latent`` trains it
first; the network is ``minigen.models.autoencoder.AutoencoderKL``, its loss in that file).
"""
from __future__ import annotations

import time

import numpy as np

from ..models.autoencoder import AutoencoderKL
from ..random import Generator
from ..tensor import tensor

__all__ = ["train_autoencoder"]


def train_autoencoder(images, *, epochs: int = 20, batch_size: int = 64, lr: float = 2e-3,
                      beta: float = 1e-3, latent_channels: int = 4, channels=(16, 32),
                      seed: int = 0, device="cpu", log=print, progress: bool = False,
                      max_steps: int | None = None):
    """Train an ``AutoencoderKL`` on ``images`` (float32 numpy (N, C, H, W) in [−1, 1]) with
    Adam; returns the model in eval mode with ``model.history`` (per-epoch mean loss terms).

    Seeded (initialisation, batch order, ε): the same arguments give the same weights.
    On the 4500-image MNIST split the default 20 epochs take ~100 s on 2 cores and give a
    held-out RMSE of 0.083 per pixel (on [−1, 1]); the FCD of held-out reconstructions is 8.1
    against the floor's 5.9 (5 epochs: RMSE 0.137, FCD 33): the latent model's FCD ceiling.
    max_steps: stop after this many steps (quick checks).
    """
    from ..optim import Adam
    x_all = np.ascontiguousarray(images, dtype=np.float32)
    if x_all.ndim != 4:
        raise ValueError(f"train_autoencoder: images must be (N, C, H, W), got {x_all.shape}")
    gen = Generator(device).manual_seed(seed)
    model = AutoencoderKL(x_all.shape[1], latent_channels, channels, beta, device=device,
                          generator=gen)
    opt = Adam(model.parameters(), lr=lr)
    log = log or (lambda *a: None)
    n = len(x_all)
    steps_per_epoch = -(-n // batch_size)
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=epochs * steps_per_epoch, unit="step", dynamic_ncols=True)
        except ImportError:
            pass
    model.history = []
    step, t0 = 0, time.time()
    for epoch in range(epochs):
        order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
        sums = np.zeros(3)
        count = 0
        for b in range(steps_per_epoch):
            xb = tensor(x_all[order[b * batch_size:(b + 1) * batch_size]], device=device)
            total, rec, kl = model.loss(xb, generator=gen)
            opt.zero_grad()
            total.backward()
            opt.step()
            sums += [float(total.item()), float(rec.item()), float(kl.item())]
            count += 1
            step += 1
            if bar is not None:
                bar.update(1)
            if max_steps is not None and step >= max_steps:
                break
        entry = dict(epoch=epoch + 1, loss=sums[0] / count, reconstruction=sums[1] / count,
                     kl=sums[2] / count)
        model.history.append(entry)
        log(f"autoencoder epoch {epoch + 1}/{epochs}: loss {entry['loss']:.3f} "
            f"(reconstruction {entry['reconstruction']:.3f}, KL {entry['kl']:.2f}), "
            f"{time.time() - t0:.0f} s")
        if max_steps is not None and step >= max_steps:
            break
    if bar is not None:
        bar.close()
    model.eval()
    return model
