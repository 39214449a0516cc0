"""minigen.flows: normalizing flows with exact likelihood (MATH.md §4), normflows/nflows style.

A flow layer maps data → latent: ``forward(x) -> (z, log_det)``, ``inverse(z) -> (x, log_det)``.
Models (``NormalizingFlow``, ``MultiscaleFlow``) add ``log_prob(x)``, ``inverse(z) -> x`` and
``sample(n, temperature=1.0, generator=None)``.

    base.py           Flow, FlowSequential (sums log-dets), NormalizingFlow (flow + base density)
    distributions.py  StandardNormal, Uniform
    layers.py         MaskedAffineCoupling (RealNVP), Squeeze, LogitTransform, ScalarAffine,
                      ExpTransform, InvertibleLinear, Split (factor-out, learned prior)
    models.py         glow(), realnvp() (multi-scale, images), realnvp_2d(), glow_2d()
    family.py         the ``realnvp`` and ``glow`` families of the run harness

Glow's ActNorm, InvConv2dLU and AffineCoupling are ``minigen.nn``'s (re-exported here).
"""
from ..nn.flows import ActNorm, AffineCoupling, InvConv2dLU
from .base import Flow, FlowSequential, NormalizingFlow
from .distributions import StandardNormal, Uniform
from .layers import (ExpTransform, InvertibleLinear, LogitTransform, MaskedAffineCoupling,
                     ScalarAffine, Split, Squeeze, channel_mask, checkerboard_mask, vector_mask)
from .models import MultiscaleFlow, build_flow, glow, glow_2d, realnvp, realnvp_2d

__all__ = ["ActNorm", "AffineCoupling", "InvConv2dLU", "Flow", "FlowSequential",
           "NormalizingFlow", "StandardNormal", "Uniform", "ExpTransform", "InvertibleLinear",
           "LogitTransform", "MaskedAffineCoupling", "ScalarAffine", "Split", "Squeeze",
           "channel_mask", "checkerboard_mask", "vector_mask", "MultiscaleFlow", "build_flow",
           "glow", "glow_2d", "realnvp", "realnvp_2d"]
