"""Latent diffusion (MATH.md §8, Rombach et al. 2022): the DDPM runs in the latent space of a
KL-regularised convolutional autoencoder (``minigen.models.autoencoder``), trained first.

    q(z | x) = N(μ(x), diag σ²(x))          the encoder's posterior ("encode(x) → mean, logvar")
    z_0 = s · (μ + σ ε),  ε ~ N(0, I)         a fresh posterior sample every training step, scaled
    s = 1 / std(μ over the training set)      so that z_0 has about unit variance, as the
                                              schedule's x_T ~ N(0, I) assumes (LDM's scale_factor)
    x̂ = D(z_0 / s)                           one decode after sampling

The UNet halves the resolution once per level, so its input side must be a multiple of
2^levels; latents whose side is not (MNIST 28×28 → 4×7×7) are zero-padded at the bottom/right
to the next multiple (7 → 8 for the E2 UNet): the padded positions are exactly 0 in every z_0,
the model learns them like any other pixel, and sampling crops them off before decoding.

The autoencoder is trained once per run directory and stored in ``RUN/autoencoder.safetensors``
with its config; a resumed run loads it, so the latents (and the resume) are exact.
"""
from __future__ import annotations

import inspect
import os

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, tensor

__all__ = ["prepare_latents", "load_autoencoder", "decode_latents", "encode_posterior"]

ENCODE_BATCH = 256


def _module():
    try:
        from ..models import autoencoder
    except ImportError as exc:
        raise ImportError("--latent needs minigen.models.autoencoder (the KL autoencoder), "
                          f"which could not be imported: {exc}") from None
    return autoencoder


def _posterior(out):
    """(mean, logvar) from what ``encode`` returns: a pair, an object with .mean/.logvar
    (diffusers' DiagonalGaussianDistribution), or a dict."""
    if isinstance(out, dict):
        return out["mean"], out["logvar"]
    if hasattr(out, "mean") and hasattr(out, "logvar") and not isinstance(out, Tensor):
        return out.mean, out.logvar
    mean, logvar = out
    return mean, logvar


def encode_posterior(ae, images: np.ndarray, device="cpu"):
    """μ and σ (float32 numpy, (N, c, h, w)) of q(z | x) for images in [−1, 1]."""
    means, stds = [], []
    with no_grad():
        for i in range(0, len(images), ENCODE_BATCH):
            x = tensor(np.ascontiguousarray(images[i:i + ENCODE_BATCH]), device=device)
            mean, logvar = _posterior(ae.encode(x))
            means.append(np.asarray(mean.to("cpu").numpy(), dtype=np.float32))
            stds.append(np.exp(0.5 * np.asarray(logvar.to("cpu").numpy(), dtype=np.float32)))
    return np.concatenate(means), np.concatenate(stds)


def _config_of(ae) -> dict:
    cfg = getattr(ae, "config", None)
    if not isinstance(cfg, dict):
        raise TypeError(f"{type(ae).__name__} has no .config dict: cannot store it with the run")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def _train_autoencoder(images, cfg, log):
    """Call ``train_autoencoder`` with the arguments of ours it takes (images first)."""
    from .autoencoder_train import train_autoencoder as fn
    params = inspect.signature(fn).parameters
    offered = {"seed": cfg.seed, "device": cfg.device, "log": log, "progress": cfg.progress}
    if cfg.ae_epochs is not None:
        offered["epochs"] = cfg.ae_epochs
    kwargs = {k: v for k, v in offered.items() if k in params}
    out = fn(images, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def load_autoencoder(path: str, info: dict, device="cpu"):
    """The autoencoder stored by ``prepare_latents`` (class and config from ``info``)."""
    import minigen
    cls = getattr(_module(), info.get("class", "AutoencoderKL"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: a --latent run keeps its autoencoder there")
    state = minigen.load(path)
    ae = cls(**info["autoencoder_config"])
    ae.load_state_dict(state["model"])
    ae.eval()
    if device != "cpu":
        ae.to(device)
    return ae


def prepare_latents(cfg, data, log=print, multiple: int = 1):
    """Train (or load) the run's autoencoder and encode the training images.

    Returns (info, (s·μ, s·σ), autoencoder): info = {"shape" (padded to ``multiple``),
    "latent_shape", "scale", "class", "autoencoder_config"} for config.json, and the scaled
    posterior parameters of every training image, padded."""
    import minigen
    path = os.path.join(cfg.out, "autoencoder.safetensors")
    images = data.to_float(data.train)
    if os.path.isfile(path):
        saved = minigen.load(path)
        ae = load_autoencoder(path, {"class": saved["class"],
                                     "autoencoder_config": saved["config"]}, cfg.device)
        log(f"latent: loaded the autoencoder from {path}")
    else:
        log(f"latent: training the autoencoder on {len(images)} images first")
        ae = _train_autoencoder(images, cfg, log)
        minigen.save({"model": ae.state_dict(), "config": _config_of(ae),
                      "class": type(ae).__name__}, path)
        ae.eval()
    mean, std = encode_posterior(ae, images, cfg.device)
    scale = float(1.0 / mean.std())
    c, h, w = mean.shape[1:]
    ph, pw = -h % multiple, -w % multiple
    pad = lambda a: np.pad(a * np.float32(scale), ((0, 0), (0, 0), (0, ph), (0, pw)))  # noqa
    info = {"shape": [c, h + ph, w + pw], "latent_shape": [c, h, w], "scale": scale,
            "class": type(ae).__name__, "autoencoder_config": _config_of(ae)}
    log(f"latent: {tuple(data.shape)} → {(c, h, w)}"
        f"{f' (zero-padded to {(c, h + ph, w + pw)})' if ph or pw else ''}, "
        f"scale s = {scale:.4f}")
    return info, (pad(mean).astype(np.float32), pad(std).astype(np.float32)), ae


def decode_latents(ae, z, info: dict):
    """x̂ = D(z / s) of the unpadded latents, clipped to [−1, 1]."""
    c, h, w = info["latent_shape"]
    with no_grad():
        z = z[:, :, :h, :w]
        return ae.decode(z * (1.0 / float(info["scale"]))).clamp(-1.0, 1.0)
