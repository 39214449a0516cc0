"""Normal, Laplace, Uniform: location-scale families with reparameterised samplers.

    Normal(μ, σ):   x = μ + σ ε, ε ~ N(0, 1)
                    log p = −(x − μ)²/(2σ²) − log σ − ½ log 2π,   H = ½ + ½ log 2π + log σ
    Laplace(μ, b):  x = μ − b sign(u) log(1 − |u|), u ~ U(−1, 1)
                    log p = −|x − μ|/b − log 2b,                  H = 1 + log 2b,  Var = 2b²
    Uniform(a, b):  x = a + (b − a) u, u ~ U[0, 1)
                    log p = −log(b − a) on [a, b),                H = log(b − a)
"""
from __future__ import annotations

import math

from ..creation import rand, randn
from ..ops.elementwise import where
from . import constraints
from .distribution import Distribution
from .utils import broadcast_all, eps

__all__ = ["Normal", "Laplace", "Uniform"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _LocScale(Distribution):
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale, names=["loc", "scale"])
        super().__init__(tuple(self.loc.shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(type(self), _instance)
        new.loc = self.loc.expand(*batch_shape)
        new.scale = self.scale.expand(*batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _draw(self, fn, sample_shape, generator, **kw):
        return fn(*self._extended_shape(sample_shape), generator=generator,
                  dtype=self.loc.dtype, device=self.loc.device, **kw)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc


class Normal(_LocScale):
    """Normal(loc, scale): the Gaussian N(μ, σ²) (module doc for the formulas)."""

    @property
    def variance(self):
        return self.scale.square()

    @property
    def stddev(self):
        return self.scale

    def rsample(self, sample_shape=(), generator=None):
        return self.loc + self._draw(randn, sample_shape, generator) * self.scale

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        return -0.5 * z.square() - self.scale.log() - _HALF_LOG_2PI

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 * (1 + ((value - self.loc) / (self.scale * math.sqrt(2))).erf())

    def icdf(self, value):
        import minigen
        erfinv = getattr(minigen, "erfinv", None)
        if erfinv is None:
            raise NotImplementedError("Normal.icdf needs minigen.erfinv")
        return self.loc + self.scale * erfinv(2 * value - 1) * math.sqrt(2)

    def entropy(self):
        return 0.5 + _HALF_LOG_2PI + self.scale.log()


class Laplace(_LocScale):
    """Laplace(loc, scale): density e^{−|x−μ|/b} / (2b) (module doc for the formulas)."""

    @property
    def variance(self):
        return 2 * self.scale.square()

    @property
    def stddev(self):
        return math.sqrt(2) * self.scale

    def rsample(self, sample_shape=(), generator=None):
        # u ~ U(−1 + eps, 1): |u| < 1, so log1p(−|u|) is finite (PyTorch's choice of range)
        e = eps(self.loc.data.dtype)
        u = self._draw(rand, sample_shape, generator) * (2 - e) + (e - 1)
        return self.loc - self.scale * u.sign() * (-u.abs()).log1p()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -(value - self.loc).abs() / self.scale - (2 * self.scale).log()

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = value - self.loc
        return 0.5 - 0.5 * z.sign() * (-z.abs() / self.scale).expm1()

    def icdf(self, value):
        t = value - 0.5
        return self.loc - self.scale * t.sign() * (-2 * t.abs()).log1p()

    def entropy(self):
        return 1 + (2 * self.scale).log()


class Uniform(Distribution):
    """Uniform(low, high) on [low, high) (module doc for the formulas)."""
    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}
    has_rsample = True

    def __init__(self, low, high, validate_args=None):
        self.low, self.high = broadcast_all(low, high, names=["low", "high"])
        super().__init__(tuple(self.low.shape), validate_args=validate_args)
        if self._validate_args:
            self._check_values(constraints.positive, self.high - self.low,
                               "parameter high − low")

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Uniform, _instance)
        new.low = self.low.expand(*batch_shape)
        new.high = self.high.expand(*batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self):
        return constraints.interval(self.low, self.high, half_open=True)

    @property
    def mean(self):
        return (self.high + self.low) / 2

    @property
    def mode(self):
        return self.mean * float("nan")

    @property
    def variance(self):
        return (self.high - self.low).square() / 12

    def rsample(self, sample_shape=(), generator=None):
        u = rand(*self._extended_shape(sample_shape), generator=generator,
                 dtype=self.low.dtype, device=self.low.device)
        return self.low + u * (self.high - self.low)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        inside = (value >= self.low).logical_and(value < self.high)
        return where(inside, -(self.high - self.low).log(), float("-inf"))

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return ((value - self.low) / (self.high - self.low)).clamp(min=0.0, max=1.0)

    def icdf(self, value):
        return self.low + value * (self.high - self.low)

    def entropy(self):
        return (self.high - self.low).log()
