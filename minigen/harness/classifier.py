"""Training, caching and using the MNIST classifiers of evaluation (FCD features, class
accuracy) and classifier guidance; the networks are ``minigen.models.classifier``.

Training: Adam, cross-entropy, seeded (init, batch order, small ±2-pixel shifts as
augmentation for the clean classifier). ``train_classifier(cache=...)`` stores the weights in a
cache directory (``$MINIGEN_CACHE`` or ``~/.cache/minigen``, never the repository) keyed by the
settings, and loads them on the next call instead of retraining.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..nn import functional as F
from ..random import Generator
from ..tensor import tensor
from ..models.classifier import NUM_CLASSES, MNISTClassifier, NoisyClassifier

__all__ = ["MNISTClassifier", "NoisyClassifier", "train_classifier", "train_noisy_classifier",
           "load_classifier_data", "accuracy", "predict", "default_cache_dir", "to_model_range"]


def default_cache_dir() -> str:
    """``$MINIGEN_CACHE`` or ``~/.cache/minigen``: where trained helper networks are kept."""
    return os.environ.get("MINIGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "minigen")


def to_model_range(images) -> np.ndarray:
    """uint8 images (N, 28, 28) or (N, 1, 28, 28) with values 0..255 → float32 (N, 1, 28, 28)
    in [−1, 1]: x = 2·(v/255) − 1 (the scaling of the diffusion models)."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    return (a.astype(np.float32) / np.float32(127.5) - np.float32(1.0))


def load_classifier_data(data_dir: str | None = None):
    """((x_train, y_train), (x_held, y_held)) with x float32 (N, 1, 28, 28) in [−1, 1].

    The embedded MNIST subset split 90/10 by ``minigen.data.train_heldout_split(…, 0.1,
    seed=0)`` (the split every minigen MNIST model uses), or with ``data_dir`` a full MNIST in
    IDX format (train / test files).
    """
    from .. import data as datasets
    if data_dir:
        xa, ya = datasets.load_mnist_idx(data_dir, "train")
        xb, yb = datasets.load_mnist_idx(data_dir, "test")
    else:
        images, labels = datasets.load_mnist_subset()
        (xa, ya), (xb, yb) = datasets.train_heldout_split(images, labels, 0.1, seed=0)
    return (to_model_range(xa), ya.astype(np.int64)), (to_model_range(xb), yb.astype(np.int64))


# ---------------------------------------------------------------------- the networks
def predict(model, x, t=None, batch_size: int = 500, device: str = "cpu") -> np.ndarray:
    """Class probabilities (N, 10) as float64 numpy, in batches, no grad."""
    out = []
    was_training = model.training
    model.eval()
    with no_grad():
        for i in range(0, len(x), batch_size):
            xb = tensor(np.asarray(x[i:i + batch_size]), device=device)
            if t is None:
                logits = model(xb)
            else:
                tb = tensor(np.asarray(t[i:i + batch_size]), dtype=dtypes.int64, device=device)
                logits = model(xb, tb)
            out.append(F.softmax(logits, dim=1).numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES))


def accuracy(model, x, y, t=None, batch_size: int = 500, device: str = "cpu") -> float:
    """Fraction of ``x`` whose most probable class is ``y``."""
    p = predict(model, x, t=t, batch_size=batch_size, device=device)
    return float(np.mean(p.argmax(1) == np.asarray(y)))


# ---------------------------------------------------------------------- training
def _shift(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Each image translated by up to ±max_shift pixels (zero = background −1 fill)."""
    n, c, h, w = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)),
                 constant_values=-1.0)
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def _data_key(data) -> str:
    """The cache key of the data: "mnist" for the default, else a hash of the given arrays."""
    if data is None:
        return "mnist"
    h = hashlib.sha1()
    for part in data:
        for a in part:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return "sha1:" + h.hexdigest()[:16]


def _cache_path(cache, kind: str, settings: dict) -> str | None:
    """``cache``: None/False (no cache), True (the default directory), a directory, or a
    file path ending in ``.safetensors``."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, str) and cache.endswith(".safetensors"):
        return cache
    directory = default_cache_dir() if cache is True else os.fspath(cache)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(directory, f"{kind}-{key}.safetensors")


def _try_load(path, model, settings, log):
    if path is None or not os.path.isfile(path):
        return None
    import minigen
    ckpt = minigen.load(path)
    if json.loads(str(ckpt.get("settings", "{}"))) != settings:
        log(f"(cached {path} was trained with other settings: retraining)")
        return None
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, ValueError, RuntimeError) as exc:   # the network changed since
        log(f"(cached {path} does not fit this network ({exc}): retraining)")
        return None
    model.eval()
    model.metrics = json.loads(str(ckpt.get("metrics", "{}")))
    acc = model.metrics.get("heldout_accuracy", model.metrics.get("heldout"))
    log(f"loaded {path} (held-out accuracy {acc})")
    return model


def _save(path, model, settings, metrics):
    if path is None:
        return
    import minigen
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    minigen.save({"model": model.state_dict(), "settings": json.dumps(settings),
                  "metrics": json.dumps(metrics)}, path)


def _fit(model, make_batch, n_train, epochs, batch_size, lr, seed, log, device, evaluate):
    """The shared loop: Adam on the cross-entropy, batches from make_batch(idx, rng) →
    ((model inputs...), labels); learning rate on a cosine from lr down to 5% of it."""
    from ..optim import Adam
    opt = Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-n_train // batch_size)
    total = epochs * steps_per_epoch
    step = 0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n_train)
        rng = np.random.Generator(np.random.PCG64([seed, epoch, 1]))
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            # cosine decay of the learning rate to 5% over the run
            frac = step / max(1, total - 1)
            for g in opt.param_groups:
                g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
            idx = order[b * batch_size:(b + 1) * batch_size]
            args, y = make_batch(idx, rng)
            logits = model(*[tensor(a, device=device) for a in args])
            loss = F.cross_entropy(logits, tensor(y, device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.item())
            step += 1
        log(f"epoch {epoch + 1}/{epochs}: train loss {loss_sum / steps_per_epoch:.4f}, "
            f"{evaluate()}, {time.time() - t0:.0f} s")
    model.eval()
    return time.time() - t0


def train_classifier(epochs: int = 12, batch_size: int = 64, lr: float = 2e-3,
                     feature_dim: int = 128, seed: int = 0, data_dir: str | None = None,
                     cache=True, device: str = "cpu", log=print, data=None,
                     augment: bool = True):
    """Train (or load from the cache) the clean ``MNISTClassifier``; returns the model, with
    ``model.metrics`` = {"heldout_accuracy", "train_seconds", ...}.

    augment: shift each training image by up to ±2 pixels (fresh per step, seeded).

    cache: True (``default_cache_dir()``), a directory, a ``.safetensors`` path, or None/False.
    data: ((x_train, y_train), (x_held, y_held)) to use instead of ``load_classifier_data``.
    """
    settings = dict(kind="mnist_classifier", epochs=epochs, batch_size=batch_size, lr=lr,
                    feature_dim=feature_dim, seed=seed, data_dir=data_dir,
                    data=_data_key(data), **({} if augment else {"augment": False}))
    log = log or (lambda *a: None)
    size = 28 if data is None else int(np.shape(data[0][0])[-1])
    model = MNISTClassifier(feature_dim=feature_dim, image_size=size, device=device,
                            generator=Generator(device).manual_seed(seed))
    path = _cache_path(cache, "classifier", settings)
    if _try_load(path, model, settings, log) is not None:
        return model
    (xtr, ytr), (xho, yho) = data if data is not None else load_classifier_data(data_dir)

    def make_batch(idx, rng):
        return ((_shift(xtr[idx], rng) if augment else xtr[idx]),), ytr[idx]

    def evaluate():
        return f"held-out accuracy {accuracy(model, xho, yho, device=device):.4f}"

    seconds = _fit(model, make_batch, len(xtr), epochs, batch_size, lr, seed, log, device,
                   evaluate)
    model.metrics = dict(heldout_accuracy=accuracy(model, xho, yho, device=device),
                         train_accuracy=accuracy(model, xtr, ytr, device=device),
                         train_seconds=seconds, n_train=len(xtr), n_heldout=len(xho))
    _save(path, model, settings, model.metrics)
    return model


def train_noisy_classifier(scheduler, epochs: int = 12, batch_size: int = 64, lr: float = 2e-3,
                           feature_dim: int = 128, seed: int = 0, data_dir: str | None = None,
                           cache=True, device: str = "cpu", log=print, data=None):
    """Train (or load) the ``NoisyClassifier`` p_φ(y | x_t, t) for classifier guidance.

    Each batch: t ~ U{0..T−1}, ε ~ N(0, I), x_t = ``scheduler.add_noise(x_0, ε, t)`` (any
    object with ``add_noise`` and ``config['num_train_timesteps']``, or a
    ``minigen.schedules.NoiseSchedule``, through ``minigen.q_sample``). Held-out accuracy is
    reported at a few fixed t.
    """
    from ..ops.noise_schedule import q_sample
    from ..schedules import NoiseSchedule
    if isinstance(scheduler, NoiseSchedule):
        sched, T = scheduler, scheduler.num_train_timesteps
        sched_cfg = dict(T=T, betas=hashlib.sha1(sched.betas.tobytes()).hexdigest()[:12])
        noise_fn = lambda x0, eps, t: q_sample(sched, x0, t, eps)  # noqa: E731
    else:
        T = int(scheduler.config["num_train_timesteps"])
        sched_cfg = dict(scheduler.config)
        noise_fn = scheduler.add_noise
    settings = dict(kind="noisy_classifier", epochs=epochs, batch_size=batch_size, lr=lr,
                    feature_dim=feature_dim, seed=seed, data_dir=data_dir, scheduler=sched_cfg,
                    data=_data_key(data))
    log = log or (lambda *a: None)
    size = 28 if data is None else int(np.shape(data[0][0])[-1])
    model = NoisyClassifier(feature_dim=feature_dim, image_size=size, device=device,
                            generator=Generator(device).manual_seed(seed))
    path = _cache_path(cache, "noisy_classifier", settings)
    if _try_load(path, model, settings, log) is not None:
        return model
    (xtr, ytr), (xho, yho) = data if data is not None else load_classifier_data(data_dir)

    def noised(x0, t, rng):
        eps = rng.standard_normal(x0.shape).astype(np.float32)
        with no_grad():
            xt = noise_fn(tensor(x0, device=device), tensor(eps, device=device),
                          tensor(t, dtype=dtypes.int64, device=device))
        return xt.numpy()

    def make_batch(idx, rng):
        t = rng.integers(0, T, len(idx)).astype(np.int64)
        return (noised(xtr[idx], t, rng), t), ytr[idx]

    probe_t = [0, T // 4, T // 2, (3 * T) // 4]

    def evaluate(t_values=probe_t):
        rng = np.random.Generator(np.random.PCG64(12345))
        accs = []
        for tv in t_values:
            t = np.full(len(xho), tv, dtype=np.int64)
            accs.append(accuracy(model, noised(xho, t, rng), yho, t=t, device=device))
        return "held-out accuracy at t=" + ", ".join(f"{tv}: {a:.3f}"
                                                     for tv, a in zip(t_values, accs))

    seconds = _fit(model, make_batch, len(xtr), epochs, batch_size, lr, seed, log, device,
                   evaluate)
    model.metrics = dict(heldout=evaluate(), train_seconds=seconds)
    _save(path, model, settings, model.metrics)
    return model
