"""Evaluating diffusion models (MATH.md §6 and §11): the variational bound in bits/dim, the
Fréchet classifier distance (FCD) beside its floor, class accuracy of conditional samples,
and the DDIM table.

Variational bound (DDPM, Ho et al. 2020, eq. 5), per image of D dimensions, in nats:

    L = L_T + Σ_{t=2}^{T} L_{t−1} + L_0
    L_T     = KL(q(x_T | x_0) ‖ N(0, I))
            = ½ Σ_d [ᾱ_T x_0² + (1 − ᾱ_T) − 1 − log(1 − ᾱ_T)]
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))           x_t ~ q(x_t | x_0)
            = ½ Σ_d [log(σ_t² / β̃_t) + (β̃_t + (μ̃_t − μ_θ)²) / σ_t² − 1]
      with μ̃_t − μ_θ = c1_t (x_0 − x̂_0)   (both means are c1_t·(x_0 or x̂_0) + c2_t·x_t),
      x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t, and σ_t² = β̃_t ("fixed_small") or β_t
      ("fixed_large");
    L_0     = −log p_θ(x_0 | x_1),  the discretised Gaussian decoder N(μ_θ(x_1, 1), σ_1²) on the
      256 bins of [−1, 1]: bin k (x = 2k/255 − 1) is [x − 1/255, x + 1/255], the first bin
      extends to −∞ and the last to +∞:
            p(x) = Φ((x + 1/255 − μ)/σ) − Φ((x − 1/255 − μ)/σ)
      computed as log(Φ(b) − Φ(a)) in log space (module functions ``log_ndtr``, ``log_diff_ndtr``).
    bits/dim = L / (D ln 2).

Index convention (``minigen.schedules``): array index i = 0..T−1 is the paper's step i + 1, so
L_T uses ᾱ[T−1], the KL terms run over i = 1..T−1, and L_0 is at i = 0. The decoder variance
at i = 0 is β̃ at i = 1 for both variance types (DDPM's clipped log-variance: β̃ at i = 0 is 0).

The sum over t: ``num_timesteps=None`` evaluates all T − 1 KL terms; ``num_timesteps=K`` draws
K distinct indices uniformly from 1..T−1 per batch and scales their sum by (T − 1)/K, an
unbiased estimate of the sum (E[(T−1)/K Σ_{i∈S} L_i] = Σ_i L_i).

Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2):

    FD = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}

(the symmetric form of Tr (Σ1 Σ2)^{1/2}: the two matrices are similar), with both square roots
from ``eigh`` of symmetric PSD matrices in float64, negative round-off eigenvalues clipped to 0.

FCD: FD between Gaussians fitted to the penultimate features of ``MNISTClassifier``
(``minigen.models.classifier``), trained by minigen on the same data. Its floor is the FCD of
the held-out split against the training split: a model cannot be expected to beat real unseen
data. FCD is NOT comparable with Inception FID (other features, other dimension, other data);
compare FCD only with FCD, at the same sample count (FD is biased upward at small n: the floor
uses the n held-out images, so evaluate generated sets of that same n).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.grad_mode import no_grad
from ..schedules import (COL_BETA, COL_POST_C1, COL_POST_VAR, COL_SQRT_AB,
                         COL_SQRT_OMAB, NoiseSchedule)
from ..tensor import Tensor, tensor

__all__ = ["bits_per_dim", "variational_bound", "prior_kl", "timestep_kl",
           "discretized_gaussian_log_likelihood", "log_ndtr", "log_diff_ndtr", "to_model_range",
           "frechet_distance", "feature_statistics", "fcd", "fcd_floor", "class_accuracy",
           "ddim_table", "format_ddim_table", "evaluate_run"]

LN2 = math.log(2.0)
BIN = 1.0 / 255.0          # half the spacing of the 256 levels of [−1, 1]


# ---------------------------------------------------------------------- the normal CDF in logs
_erfc = np.frompyfunc(math.erfc, 1, 1)


def log_ndtr(z) -> np.ndarray:
    """log Φ(z), float64, accurate for every z: Φ(z) = ½ erfc(−z/√2) where erfc does not
    underflow (z ≥ −37), else the asymptotic series
    log Φ(z) = −z²/2 − log(−z √(2π)) + log(1 − 1/z² + 3/z⁴ − 15/z⁶ + 105/z⁸)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    far, pos = z < -37.0, z > 0.0
    near = ~far & ~pos
    if near.any():
        out[near] = np.log(0.5 * _erfc(-z[near] / math.sqrt(2.0)).astype(np.float64))
    if pos.any():                  # log(1 − Φ(−z)): log1p keeps the tiny tail exact
        out[pos] = np.log1p(-0.5 * _erfc(z[pos] / math.sqrt(2.0)).astype(np.float64))
    if far.any():
        zf = z[far]
        with np.errstate(over="ignore", invalid="ignore"):
            r = 1.0 / (zf * zf)
            series = 1.0 - r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r)))
            tail = -0.5 * zf * zf - np.log(-zf * math.sqrt(2.0 * math.pi)) + np.log(series)
        out[far] = np.where(np.isneginf(zf), -np.inf, tail)
    return out


def _log1mexp(d):
    """log(1 − e^d) for d ≤ 0 (Mächler's switch at −ln 2 between expm1 and log1p)."""
    d = np.minimum(d, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(d > -LN2, np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def log_diff_ndtr(a, b) -> np.ndarray:
    """log(Φ(b) − Φ(a)) for a < b, float64, without cancellation: by Φ(b) − Φ(a) =
    Φ(−a) − Φ(−b), take the side where the larger bound is ≤ 0 (the small tail), then
    log Φ(hi) + log(1 − Φ(lo)/Φ(hi)). a = −∞ or b = +∞ give log Φ(b), log Φ(−a)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    flip = a > 0                              # then both are > 0: use the reflected pair
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    straddle = (lo < 0) & (hi > 0)
    log_hi = log_ndtr(np.where(straddle, 0.0, hi))
    log_lo = log_ndtr(lo)
    tail = log_hi + _log1mexp(log_lo - log_hi)
    # lo < 0 < hi: Φ(hi) − Φ(lo) ≥ min(Φ(hi) − ½, ½ − Φ(lo)): plain subtraction is accurate
    with np.errstate(divide="ignore"):
        mid = np.log(np.maximum(np.exp(log_ndtr(np.where(straddle, hi, 0.0)))
                                - np.exp(log_lo), 0.0))
    return np.where(straddle, mid, tail)


def discretized_gaussian_log_likelihood(x, mean, std) -> np.ndarray:
    """log p(x) elementwise for x on the 256 levels 2k/255 − 1 of [−1, 1] under a Gaussian of
    ``mean``, ``std`` integrated over the bin [x − 1/255, x + 1/255] (edge bins to ±∞)."""
    x, mean, std = (np.asarray(v, np.float64) for v in (x, mean, std))
    lower = np.where(x < -1.0 + 1e-3, -np.inf, (x - BIN - mean) / std)
    upper = np.where(x > 1.0 - 1e-3, np.inf, (x + BIN - mean) / std)
    return log_diff_ndtr(lower, upper)


# ---------------------------------------------------------------------- the bound's terms
def to_model_range(x0) -> np.ndarray:
    """Images as float64 numpy in [−1, 1]: uint8 v → 2v/255 − 1; floats are taken as already
    scaled (a Tensor is copied to the host)."""
    if isinstance(x0, Tensor):
        x0 = np.asarray(x0.detach().to("cpu").numpy())
    a = np.asarray(x0)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 127.5 - 1.0
    if a.dtype.kind != "f":
        raise TypeError(f"bits_per_dim: x0 must be uint8 (0..255) or floating in [−1, 1], got "
                        f"{a.dtype}")
    return a.astype(np.float64)


def _schedule_of(scheduler):
    """(NoiseSchedule, prediction_type, variance_type) from a scheduler or a NoiseSchedule."""
    if isinstance(scheduler, NoiseSchedule):
        return scheduler, "epsilon", "fixed_small"
    cfg = scheduler.config
    return (scheduler.schedule, cfg.get("prediction_type", "epsilon"),
            cfg.get("variance_type", "fixed_small"))


def _predict_x0(model, x_t, i, tab, prediction_type, class_labels, device, dtype, clip):
    """x̂_0 (float64 numpy) from one model call at index i (an int shared by the batch)."""
    n = x_t.shape[0]
    xt = tensor(x_t.astype(dtype), device=device)
    t = tensor(np.full(n, i, dtype=np.int64), device=device)
    with no_grad():
        out = model(xt, t) if class_labels is None else model(xt, t, class_labels)
    out = np.asarray(out.to("cpu").numpy(), dtype=np.float64)
    sab, somab = tab[i, COL_SQRT_AB], tab[i, COL_SQRT_OMAB]
    if prediction_type == "epsilon":
        x0 = (x_t - somab * out) / sab
    elif prediction_type == "sample":
        x0 = out
    elif prediction_type == "v_prediction":
        x0 = sab * x_t - somab * out
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    return np.clip(x0, -1.0, 1.0) if clip else x0


def prior_kl(x0, schedule: NoiseSchedule) -> np.ndarray:
    """L_T per image (N,), nats: KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)) summed over dimensions."""
    x0 = to_model_range(x0)
    ab = schedule.alphas_cumprod[-1]
    kl = 0.5 * (ab * x0 * x0 + (1.0 - ab) - 1.0 - math.log1p(-ab))
    return kl.reshape(len(x0), -1).sum(1)


def _sigma2(tab, i, variance_type):
    if i == 0:                                   # DDPM's clipped value: β̃ at index 1
        return tab[min(1, len(tab) - 1), COL_POST_VAR] if len(tab) > 1 else tab[0, COL_BETA]
    return tab[i, COL_POST_VAR] if variance_type == "fixed_small" else tab[i, COL_BETA]


def timestep_kl(model, scheduler, x0, i: int, noise=None, class_labels=None, device="cpu",
                dtype=np.float32, clip_denoised=False, rng=None) -> np.ndarray:
    """L_{t−1} at array index i ≥ 1 per image (N,), nats (module doc); x_t = √ᾱ x_0 + √(1−ᾱ) ε
    with ``noise`` ε (float64 numpy like x0) or ε drawn from ``rng`` (numpy Generator).
    At i = 0 returns L_0 = −log p_θ(x_0 | x_1) instead."""
    sched, ptype, vtype = _schedule_of(scheduler)
    tab = sched.table
    x0 = to_model_range(x0)
    if noise is None:
        rng = rng if rng is not None else np.random.default_rng(0)
        noise = rng.standard_normal(x0.shape)
    x_t = tab[i, COL_SQRT_AB] * x0 + tab[i, COL_SQRT_OMAB] * noise
    x0_hat = _predict_x0(model, x_t, i, tab, ptype, class_labels, device, dtype, clip_denoised)
    s2 = _sigma2(tab, i, vtype)
    n = len(x0)
    if i == 0:     # c1 = 1, c2 = 0 at index 0: μ_θ(x_1, 1) = x̂_0
        ll = discretized_gaussian_log_likelihood(x0, x0_hat, math.sqrt(s2))
        return -ll.reshape(n, -1).sum(1)
    bt, c1 = tab[i, COL_POST_VAR], tab[i, COL_POST_C1]
    d2 = (c1 * (x0 - x0_hat)) ** 2
    kl = 0.5 * (math.log(s2 / bt) + (bt + d2) / s2 - 1.0)
    return kl.reshape(n, -1).sum(1)


def variational_bound(model, scheduler, x0, *, num_timesteps=None, class_labels=None,
                      batch_size: int = 100, seed: int = 0, device="cpu", dtype=np.float32,
                      clip_denoised: bool = False, progress: bool = False) -> dict:
    """The bound L of the module doc on images ``x0`` ((N, C, H, W) uint8 0..255, or float on
    the 256 levels of [−1, 1], numpy or Tensor).

    Returns {"bits_per_dim": mean over images, "stderr": its standard error over images,
    "prior_bpd", "vb_bpd", "decoder_bpd": the three parts (L_T, Σ L_{t−1}, L_0), "per_image":
    (N,) bits/dim, "num_timesteps": terms evaluated, "exact_sum": bool}. Seeded by ``seed``
    (numpy PCG64): ε per (image, t) and the timestep subset.
    """
    sched, _, _ = _schedule_of(scheduler)
    T = sched.num_train_timesteps
    x = to_model_range(x0)
    grid = np.abs((x + 1.0) * 127.5 - np.round((x + 1.0) * 127.5))
    if x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6 or grid.max() > 1e-3:
        raise ValueError("bits_per_dim: x0 must hold 8-bit images (uint8, or floats 2v/255 − 1 "
                         "on the 256 levels of [−1, 1]): the decoder likelihood is over those "
                         "bins")
    if num_timesteps is not None and not 1 <= num_timesteps <= T - 1:
        raise ValueError(f"num_timesteps must be in 1..{T - 1} (or None: all), got "
                         f"{num_timesteps}")
    n, D = len(x), int(np.prod(x.shape[1:]))
    ys = class_labels
    rng = np.random.Generator(np.random.PCG64(seed))
    prior, vb, dec = (np.zeros(n) for _ in range(3))
    all_t = np.arange(1, T)
    bar = _bar(progress, -(-n // batch_size))
    for s in range(0, n, batch_size):
        xb = x[s:s + batch_size]
        yb = None if ys is None else _slice_labels(ys, s, batch_size, device)
        kw = dict(class_labels=yb, device=device, dtype=dtype, clip_denoised=clip_denoised)
        prior[s:s + len(xb)] = prior_kl(xb, sched)
        if num_timesteps is None:
            idx, scale = all_t, 1.0
        else:
            idx = np.sort(rng.choice(all_t, size=num_timesteps, replace=False))
            scale = (T - 1) / num_timesteps
        for i in idx:
            vb[s:s + len(xb)] += scale * timestep_kl(model, scheduler, xb, int(i), rng=rng, **kw)
        dec[s:s + len(xb)] = timestep_kl(model, scheduler, xb, 0, rng=rng, **kw)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    to_bpd = 1.0 / (D * LN2)
    per_image = (prior + vb + dec) * to_bpd
    return {"bits_per_dim": float(per_image.mean()),
            "stderr": float(per_image.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "prior_bpd": float(prior.mean() * to_bpd), "vb_bpd": float(vb.mean() * to_bpd),
            "decoder_bpd": float(dec.mean() * to_bpd), "per_image": per_image,
            "num_timesteps": T - 1 if num_timesteps is None else int(num_timesteps),
            "exact_sum": num_timesteps is None, "num_images": n}


def bits_per_dim(model, scheduler, x0, **kwargs) -> float:
    """The variational bound in bits/dim averaged over ``x0`` (``variational_bound``'s
    arguments; ``num_timesteps=K`` for the unbiased K-term estimate of the sum)."""
    return variational_bound(model, scheduler, x0, **kwargs)["bits_per_dim"]


def _slice_labels(ys, s, batch_size, device):
    if isinstance(ys, Tensor):
        ys = np.asarray(ys.to("cpu").numpy())
    return tensor(np.asarray(ys[s:s + batch_size], dtype=np.int64), device=device)


def _bar(progress, total):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="batch", dynamic_ncols=True)


# Fréchet distance, FCD and class accuracy are shared by every family: minigen/harness/metrics.py
from ..harness.metrics import (class_accuracy, fcd, fcd_floor, feature_statistics,  # noqa: E402,F401
                               frechet_distance)


# ---------------------------------------------------------------------- sampling-based tables
class _NullClass:
    """A class-conditional model's unconditional branch (every call gets the learned null
    class ∅ = ``model.num_classes``), or an unconditional model with the labels dropped: the
    model classifier guidance steers (the labels go to the classifier only)."""

    num_classes = None        # no classifier-free guidance through this wrapper

    def __init__(self, model):
        self.model = model

    def __call__(self, x, t, y=None):
        k = getattr(self.model, "num_classes", None)
        if k is None:
            return self.model(x, t)
        from ..creation import full
        from ..dtypes import int64
        return self.model(x, t, full((x.shape[0],), k, dtype=int64, device=x.device))


def _sample_images(model, scheduler, shape, num, *, steps, seed, batch_size, class_labels,
                   guidance_scale, decode, device, progress, classifier=None,
                   classifier_scale=0.0):
    """``num`` images (float32 numpy) from ``sample`` in batches, one seeded generator."""
    from ..random import Generator
    from .sampling import sample
    gen = Generator(device).manual_seed(seed)
    out = []
    for s in range(0, num, batch_size):
        m = min(batch_size, num - s)
        ys = None if class_labels is None else _slice_labels(class_labels, s, m, device)
        x = sample(model, scheduler, (m, *shape), num_inference_steps=steps, generator=gen,
                   class_labels=ys, guidance_scale=guidance_scale, device=device,
                   classifier=classifier, classifier_scale=classifier_scale,
                   progress=progress)
        if decode is not None:
            x = decode(x)
        out.append(np.asarray(x.to("cpu").numpy(), dtype=np.float32))
    return np.concatenate(out)


def ddim_table(model, scheduler, classifier, reference, shape, *, num_samples: int = 500,
               steps=(10, 20, 50, 100, 1000), etas=(0.0, 1.0), seed: int = 0,
               batch_size: int = 250, class_labels=None, guidance_scale: float = 0.0,
               decode=None, device="cpu", log=print, progress: bool = False) -> dict:
    """The DDIM paper's table (MATH.md §7) with FCD: samples from ``DDIMScheduler`` with S
    steps and η, for every S in ``steps`` and η in ``etas``, same trained model.

    scheduler: the run's scheduler (its config gives the training schedule). reference: the
    (μ, Σ) of the training split's features (``feature_statistics``). shape: (C, H, W) of the
    diffusion space; ``decode`` maps samples to images (latent runs). Every cell starts from
    the same seed. Returns {"fcd": {"eta=0.0": {"10": value, ...}, ...}, "num_samples": n}.
    """
    from .ddim import DDIMScheduler
    T = int(scheduler.config["num_train_timesteps"])
    table = {}
    for eta in etas:
        sched = DDIMScheduler.from_config(scheduler.config, eta=float(eta))
        row = table.setdefault(f"eta={float(eta)}", {})
        for S in steps:
            if not 1 <= S <= T:
                raise ValueError(f"ddim_table: S={S} is not in 1..{T}")
            x = _sample_images(model, sched, shape, num_samples, steps=int(S), seed=seed,
                               batch_size=batch_size, class_labels=class_labels,
                               guidance_scale=guidance_scale, decode=decode, device=device,
                               progress=progress)
            row[str(S)] = fcd(classifier, x, reference, device=device)
            if log:
                log(f"DDIM η={eta} S={S}: FCD {row[str(S)]:.3f} ({num_samples} samples)")
    return {"fcd": table, "num_samples": int(num_samples)}


def format_ddim_table(result: dict, floor: float | None = None) -> str:
    """A Markdown table: one row per η, one column per S (the DDIM paper's layout)."""
    rows = result["fcd"]
    steps = list(next(iter(rows.values())).keys())
    lines = ["| η \\ S | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name.split('=')[1]} | " + " | ".join(f"{row[s]:.3f}" for s in steps)
                     + " |")
    note = f"FCD, {result['num_samples']} samples"
    if floor is not None:
        note += f"; floor (held-out vs train) {floor:.3f}"
    return "\n".join(lines + ["", note + ". Not comparable with Inception FID."])


def evaluate_run(run, device="cpu", seed: int = 0, progress: bool = True, log=print,
                 num_samples: int | None = None, sampler: str = "ddim", steps: int | None = None,
                 eta: float = 0.0, guidance: float = 0.0, heldout: int = 100,
                 bpd_timesteps: int | None = 100, ddim: bool = False,
                 unconditional: bool = False, classifier_scale: float = 0.0) -> dict:
    """``minigen eval RUN`` (``minigen.diffusion.run.evaluate_run_dir`` calls this): for MNIST
    runs the classifier (trained once, cached), FCD of ``num_samples`` samples (default: as
    many as held-out images) beside the floor, class accuracy for conditional runs (labels
    0..K−1 cycling, guidance w; ``steps`` default: 50 for DDIM with ``eta``, all T for
    DDPM), the bits/dim bound on ``heldout`` held-out
    images with a ``bpd_timesteps``-term estimate (None or 0: the full sum of T − 1 terms;
    pixel-space runs only), and with ``ddim=True`` the DDIM table.

    unconditional: sample a class-conditional run through its null class ∅ (its unconditional
    branch; FCD only). classifier_scale γ > 0: classifier guidance (MATH.md §8) of that
    unconditional branch (or of an unconditional run) toward labels 0..9 cycling, with the
    noisy classifier of ``train_noisy_classifier`` (trained once on this run's schedule,
    cached); reports FCD and the class accuracy of the guided samples."""
    if (unconditional or classifier_scale) and guidance:
        raise ValueError("evaluate_run: classifier-free guidance (guidance) cannot be combined "
                         "with unconditional / classifier_scale sampling (the null-class model)")
    if classifier_scale < 0:
        raise ValueError(f"evaluate_run: classifier_scale must be ≥ 0, got {classifier_scale}")
    from ..harness.classifier import train_classifier
    from .datasets import load_image_dataset
    cfg = run.config
    data = load_image_dataset(cfg.data, cfg.data_dir)
    res = {}
    if run.autoencoder is None and heldout and data.max_value != 255:
        log(f"(bits/dim needs 8-bit images; this data has {int(data.max_value) + 1} levels: skipped)")
    elif run.autoencoder is None and heldout:
        x0 = data.heldout[:heldout]
        vb = variational_bound(run.model, run.scheduler("ddpm"), x0.astype(np.uint8),
                               num_timesteps=bpd_timesteps or None, seed=seed, device=device,
                               progress=progress)
        res.update({k: v for k, v in vb.items() if k != "per_image"})
        res["heldout_bits_per_dim"] = vb["bits_per_dim"]
        log(f"bits/dim bound on {len(x0)} held-out images: {vb['bits_per_dim']:.4f} "
            f"± {vb['stderr']:.4f}")
    if data.shape != (1, 28, 28):
        log(f"(FCD needs the MNIST classifier: skipped for {data.shape} images)")
        return res
    clf = train_classifier(device=device, log=log)
    ref = feature_statistics(clf, data.to_float(data.train), device=device)
    floor = fcd(clf, data.to_float(data.heldout), ref, device=device)
    n = num_samples or len(data.heldout)
    k = run.num_classes
    labels = None if k is None else (np.arange(n) % k).astype(np.int64)
    model, noisy = run.model, None
    if unconditional or classifier_scale:
        model = _NullClass(run.model)
        labels = (np.arange(n) % 10).astype(np.int64) if classifier_scale else None
    if classifier_scale:
        from ..harness.classifier import train_noisy_classifier
        if run.autoencoder is not None:
            raise ValueError("evaluate_run: classifier guidance runs in pixel space; this run "
                             "is a latent one")
        noisy = train_noisy_classifier(run.scheduler("ddpm"), device=device, log=log)
    T = int(run.scheduler_config["num_train_timesteps"])
    steps = steps or (T if sampler == "ddpm" else min(50, T))      # as ``minigen sample``
    sched = run.scheduler(sampler, **({"eta": eta} if sampler == "ddim" else {}))
    x = _sample_images(model, sched, run.sample_shape, n, steps=steps, seed=seed,
                       batch_size=250, class_labels=labels, guidance_scale=guidance,
                       decode=run.decode if run.autoencoder is not None else None,
                       device=device, progress=progress, classifier=noisy,
                       classifier_scale=classifier_scale)
    res.update({"fcd": fcd(clf, x, ref, device=device), "fcd_floor": floor,
                "fcd_samples": n, "sampler": sampler, "steps": steps,
                "eta": eta if sampler == "ddim" else 1.0,
                "classifier_heldout_accuracy": clf.metrics.get("heldout_accuracy")})
    if unconditional or classifier_scale:
        res.update({"unconditional": True, "classifier_scale": float(classifier_scale)})
        if noisy is not None:
            res["noisy_classifier"] = noisy.metrics.get("heldout")
    log(f"FCD ({sampler}, {steps} steps, {n} samples): {res['fcd']:.3f}; floor {floor:.3f}")
    if labels is not None:
        res["class_accuracy"] = class_accuracy(clf, x, labels, device=device)
        res["guidance"] = guidance
        how = f"classifier guidance γ={classifier_scale}" if classifier_scale else \
            f"w={guidance}"
        log(f"classifier accuracy on class-conditional samples ({how}): "
            f"{res['class_accuracy']:.4f}")
    if ddim:
        table = ddim_table(run.model, run.scheduler("ddpm"), clf, ref, run.sample_shape,
                           num_samples=n, seed=seed, class_labels=labels,
                           guidance_scale=guidance, decode=run.decode
                           if run.autoencoder is not None else None, device=device, log=log)
        res["ddim_table"] = table
        log(format_ddim_table(table, floor))
    return res
