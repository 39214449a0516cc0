"""Base distributions of a flow: log-density summed over the event dims, seeded sampling.

    StandardNormal(shape)   log p(z) = −½ Σ z² − ½ D log 2π;   sample: T · ε, ε ~ N(0, I)
    Uniform(low, high, shape)   log p(z) = −D log(high − low) inside the box, −inf outside

``temperature`` T scales the standard deviation of the normal (Glow's reduced-temperature
sampling draws from N(0, T² I)).
"""
from __future__ import annotations

import math

import numpy as np

from .. import creation
from ..nn.module import Module

__all__ = ["StandardNormal", "Uniform", "LOG_2PI"]

LOG_2PI = math.log(2.0 * math.pi)


def _event_sum(t):
    return t.reshape(t.shape[0], -1).sum(1)


class StandardNormal(Module):
    """N(0, I) over events of ``shape``."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.dim = int(np.prod(self.shape))

    def log_prob(self, z):
        return _event_sum(z * z) * -0.5 - 0.5 * self.dim * LOG_2PI

    def sample(self, n, temperature=1.0, generator=None, device=None, dtype=None):
        eps = creation.randn(n, *self.shape, generator=generator, device=device, dtype=dtype)
        return eps if temperature == 1.0 else eps * float(temperature)

    def extra_repr(self):
        return f"{self.shape}"


class Uniform(Module):
    """U[low, high]^D over events of ``shape``."""

    def __init__(self, low, high, shape=(1,)):
        super().__init__()
        if not high > low:
            raise ValueError(f"Uniform: need high > low, got [{low}, {high}]")
        self.low, self.high = float(low), float(high)
        self.shape = tuple(int(s) for s in shape)
        self.dim = int(np.prod(self.shape))

    def log_prob(self, z):
        inside = ((z >= self.low).logical_and(z <= self.high)).reshape(z.shape[0], -1).all(1)
        value = -self.dim * math.log(self.high - self.low)
        full = creation.full((z.shape[0],), value, dtype=z.dtype, device=z.device)
        return full.masked_fill(inside.logical_not(), -math.inf)

    def sample(self, n, temperature=1.0, generator=None, device=None, dtype=None):
        if temperature != 1.0:
            raise ValueError("Uniform: temperature sampling is defined for the normal base only")
        u = creation.rand(n, *self.shape, generator=generator, device=device, dtype=dtype)
        return u * (self.high - self.low) + self.low
