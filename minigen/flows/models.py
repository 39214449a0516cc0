"""RealNVP and Glow (multi-scale, for images) and small coupling flows for 2-D densities.

Multi-scale (Dinh et al. 2017, Kingma & Dhariwal 2018): level ℓ = 1..L runs a flow on h,
then (except the last) splits off half the channels as a latent z_ℓ; the last level's output
is z_L. With Split's standardisation ε_ℓ = (h₂ − μ(h₁))/σ(h₁) every latent is N(0, I) under
the model, so

    log p(x) = Σ_ℓ log N(ε_ℓ; 0, I) + log|det| of (pre-processing, every layer, every split)

and temperature-T sampling draws ε_ℓ ~ N(0, T² I) (for Glow's learned split prior that is
h₂ ~ N(μ, T² σ²), the paper's reduced temperature).

    Glow level:    squeeze → K × [ActNorm → InvConv2dLU → AffineCoupling] → split (learned prior)
    RealNVP level: 3 checkerboard couplings → squeeze → 3 channel-wise couplings → factor out
                   half (fixed N(0, I)); the last level: 4 checkerboard couplings
    pre-processing: Glow x − ½; RealNVP logit(α + (1 − 2α) x), α = 0.05 (x ∈ [0, 1], the
                    dequantized image)

Coupling networks: conv3×3 → ReLU → conv1×1 → ReLU → conv3×3 with the last layer zero-
initialised (RealNVP's couplings, Glow's split priors: start at the identity / N(0, I)).
Weights are drawn from ``generator`` (seeded runs have the same weights on every device).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..nn.module import Module
from ..random import Generator
from .base import FlowSequential, NormalizingFlow, check_finite
from .distributions import LOG_2PI, StandardNormal
from .layers import (LogitTransform, MaskedAffineCoupling, ScalarAffine, Split, Squeeze,
                     channel_mask, checkerboard_mask, vector_mask)

__all__ = ["MultiscaleFlow", "glow", "realnvp", "realnvp_2d", "glow_2d", "build_flow",
           "conv_net", "mlp"]


def _init(module, generator, zero=False):
    if zero:
        for p in module.parameters():
            p.data[...] = 0
    else:
        module.reset_parameters(generator)
    return module


def conv_net(c_in, c_out, hidden, generator, dtype=None):
    """conv3×3 → ReLU → conv1×1 → ReLU → conv3×3 (zero-initialised)."""
    return nn.Sequential(
        _init(nn.Conv2d(c_in, hidden, 3, padding=1, dtype=dtype), generator), nn.ReLU(),
        _init(nn.Conv2d(hidden, hidden, 1, dtype=dtype), generator), nn.ReLU(),
        _init(nn.Conv2d(hidden, c_out, 3, padding=1, dtype=dtype), generator, zero=True))


def mlp(d_in, d_out, hidden, generator, layers=2, dtype=None):
    """Linear → ReLU (× ``layers``) → Linear (zero-initialised)."""
    mods, d = [], d_in
    for _ in range(layers):
        mods += [_init(nn.Linear(d, hidden, dtype=dtype), generator), nn.ReLU()]
        d = hidden
    mods.append(_init(nn.Linear(d, d_out, dtype=dtype), generator, zero=True))
    return nn.Sequential(*mods)


class MultiscaleFlow(Module):
    """The multi-scale flow of the module doc: ``levels[ℓ]`` a FlowSequential, ``splits[ℓ]`` a
    Split or None (the last). ``forward(x) -> (zs, log_det)`` with zs the list of latents
    (ε_1, ..., ε_{L−1}, z_L); ``inverse(zs) -> x``; ``log_prob``; ``sample``."""

    def __init__(self, input_shape, preprocess, levels, splits, latent_shapes):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.event_shape = self.input_shape
        self.preprocess = preprocess
        self.levels = nn.ModuleList(list(levels))
        self.splits = nn.ModuleList([s if s is not None else nn.Identity() for s in splits])
        self._has_split = [s is not None for s in splits]
        self.latent_shapes = [tuple(s) for s in latent_shapes]
        self.dim = int(np.prod(self.input_shape))

    def _check_shape(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise ValueError(f"{type(self).__name__}: expected input (N, {c}, {h}, {w}), got "
                             f"shape {tuple(x.shape)}")

    def forward(self, x):
        self._check_shape(x)
        h, total = self.preprocess(x)
        zs = []
        for level, split, has in zip(self.levels, self.splits, self._has_split):
            h, ld = level(h)
            total = total + ld
            if has:
                h, eps, ld = split(h)
                total = total + ld
                zs.append(eps)
        zs.append(h)
        return zs, total

    def inverse(self, zs):
        zs = list(zs)
        if len(zs) != len(self.latent_shapes):
            raise ValueError(f"{type(self).__name__}.inverse: expected {len(self.latent_shapes)} "
                             f"latents of shapes {self.latent_shapes}, got {len(zs)}")
        h = zs[-1]
        k = len(zs) - 2
        for level, split, has in reversed(list(zip(self.levels, self.splits, self._has_split))):
            if has:
                h = split.inverse(h, zs[k])
                k -= 1
            h = level.inverse(h)[0]
        return self.preprocess.inverse(h)[0]

    def log_prob(self, x, check=True):
        """log p(x) (N,) in nats, x the (dequantized) image in the model's input space."""
        if check:
            check_finite(f"{type(self).__name__}.log_prob", x)
        zs, total = self.forward(x)
        for z in zs:
            total = total - 0.5 * (z * z).reshape(z.shape[0], -1).sum(1)
        return total - 0.5 * self.dim * LOG_2PI

    def sample(self, n, temperature=1.0, generator=None):
        from .. import creation
        p = next(iter(self.parameters()))
        zs = [creation.randn(n, *s, generator=generator, device=p.device, dtype=p.dtype)
              * float(temperature) for s in self.latent_shapes]
        return self.inverse(zs)


def glow(input_shape=(1, 28, 28), levels=2, steps=8, hidden=64, learn_prior=True,
         generator=None, dtype=None):
    """Glow for images of ``input_shape`` in [0, 1] (pre-processing x − ½)."""
    from ..nn.flows import ActNorm, AffineCoupling, InvConv2dLU
    gen = generator or Generator("cpu").manual_seed(0)
    c, h, w = input_shape
    lvls, splits, shapes = [], [], []
    for ell in range(levels):
        if h % 2 or w % 2:
            raise ValueError(f"glow: level {ell + 1} squeezes a {h}x{w} input; the spatial size "
                             f"must be divisible by 2^levels = {2 ** levels}")
        c, h, w = 4 * c, h // 2, w // 2
        layers = [Squeeze()]
        for _ in range(steps):
            layers += [ActNorm(c, dtype=dtype), InvConv2dLU(c, generator=gen, dtype=dtype),
                       AffineCoupling(conv_net(c // 2, c, hidden, gen, dtype))]
        lvls.append(FlowSequential(layers))
        if ell < levels - 1:
            prior = (_init(nn.Conv2d(c // 2, c, 3, padding=1, dtype=dtype), gen, zero=True)
                     if learn_prior else None)
            splits.append(Split(c, prior))
            shapes.append((c // 2, h, w))
            c //= 2
        else:
            splits.append(None)
            shapes.append((c, h, w))
    return MultiscaleFlow(input_shape, ScalarAffine(1.0, -0.5), lvls, splits, shapes)


def realnvp(input_shape=(1, 28, 28), levels=2, hidden=64, alpha=0.05, generator=None,
            dtype=None):
    """RealNVP for images of ``input_shape`` in [0, 1] (logit pre-processing)."""
    gen = generator or Generator("cpu").manual_seed(0)
    c, h, w = input_shape

    def coupling(mask):
        ch = mask.shape[0]
        return MaskedAffineCoupling(mask, conv_net(ch, 2 * ch, hidden, gen, dtype), dtype=dtype)

    lvls, splits, shapes = [], [], []
    for ell in range(levels):
        last = ell == levels - 1
        layers = [coupling(checkerboard_mask(c, h, w, i % 2)) for i in range(4 if last else 3)]
        if not last:
            if h % 2 or w % 2:
                raise ValueError(f"realnvp: level {ell + 1} squeezes a {h}x{w} input; the "
                                 f"spatial size must be divisible by 2^(levels−1)")
            c, h, w = 4 * c, h // 2, w // 2
            layers.append(Squeeze())
            layers += [coupling(channel_mask(c, i % 2)) for i in range(3)]
            splits.append(Split(c, None))
            shapes.append((c // 2, h, w))
            c //= 2
        else:
            splits.append(None)
            shapes.append((c, h, w))
        lvls.append(FlowSequential(layers))
    return MultiscaleFlow(input_shape, LogitTransform(alpha), lvls, splits, shapes)


def realnvp_2d(dim=2, couplings=8, hidden=64, generator=None, dtype=None):
    """Alternating masked affine couplings on ℝ^dim with MLPs (N(0, I) base)."""
    gen = generator or Generator("cpu").manual_seed(0)
    layers = []
    for i in range(couplings):
        layers.append(MaskedAffineCoupling(vector_mask(dim, i % 2),
                                           mlp(dim, 2 * dim, hidden, gen, dtype=dtype),
                                           dtype=dtype))
    return NormalizingFlow(FlowSequential(layers), StandardNormal((dim,)), event_shape=(dim,))


def glow_2d(dim=2, steps=8, hidden=64, generator=None, dtype=None):
    """Glow steps on ℝ^dim (dim even): ActNorm → invertible linear (LU) → affine coupling
    with an MLP; N(0, I) base."""
    from ..nn.flows import ActNorm, AffineCoupling, InvConv2dLU
    gen = generator or Generator("cpu").manual_seed(0)
    layers = []
    for _ in range(steps):
        layers += [ActNorm(dim, dtype=dtype), InvConv2dLU(dim, generator=gen, dtype=dtype),
                   AffineCoupling(mlp(dim // 2, dim, hidden, gen, dtype=dtype))]
    return NormalizingFlow(FlowSequential(layers), StandardNormal((dim,)), event_shape=(dim,))


def build_flow(spec: dict, generator=None, dtype=None):
    """A model from its description (config.json's "model"): {"kind": "glow" | "realnvp" |
    "realnvp_2d" | "glow_2d", ...its keyword arguments}."""
    spec = dict(spec)
    kind = spec.pop("kind")
    fns = {"glow": glow, "realnvp": realnvp, "realnvp_2d": realnvp_2d, "glow_2d": glow_2d}
    if kind not in fns:
        raise ValueError(f"unknown flow kind {kind!r}; known: {', '.join(fns)}")
    if "input_shape" in spec:
        spec["input_shape"] = tuple(spec["input_shape"])
    return fns[kind](**spec, generator=generator, dtype=dtype)
