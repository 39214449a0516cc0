"""Gamma and Beta, reparameterised through an implicit gradient of the standard Gamma draw.

    Gamma(α, β) (rate β):  p(x) = β^α x^{α−1} e^{−βx} / Γ(α),  x = z / β,  z ~ Gamma(α, 1)
        H = α − log β + lnΓ(α) + (1 − α) ψ(α),   mean α/β,   Var α/β²
    Beta(α, β):            x = X / (X + Y),  X ~ Gamma(α, 1),  Y ~ Gamma(β, 1)
        log p = (α−1) log x + (β−1) log(1−x) − ln B(α, β),   ln B = lnΓ(α) + lnΓ(β) − lnΓ(α+β)
        H = ln B − (α−1) ψ(α) − (β−1) ψ(β) + (α+β−2) ψ(α+β)
        mean α/(α+β),   Var αβ / ((α+β)² (α+β+1))

Gradient of a standard Gamma draw z with respect to α (implicit reparameterisation,
Figurnov et al. 2018): z = F⁻¹(u; α) with u = F(z; α) = P(α, z) held fixed, so

    dz/dα = −(∂P(α, z)/∂α) / p(z; α).

With P(α, z) = Σ_{n≥0} z^{α+n} e^{−z} / Γ(α+n+1) and ∂/∂α of each term = term ·
(log z − ψ(α+n+1)), dividing by p(z; α) = z^{α−1} e^{−z} / Γ(α) leaves

    dz/dα = −Σ_{n≥0} r_n (log z − ψ(α) − h_n),   r_n = Π_{k=0}^{n} z/(α+k),   h_n = Σ_{k=0}^{n} 1/(α+k)

(ψ(α+n+1) = ψ(α) + h_n). The terms shrink geometrically once α + n > z; the series is cut
after N = max(z − α, 0) + 9√z + 20 terms, where r_N / max r < e^{−40}. N is read on the host
(one device→host read per backward on CUDA; sampling and log_prob read nothing). The draws
themselves are numpy's / CuPy's ``standard_gamma`` (Marsaglia–Tsang), seeded by ``generator``.

Beta's gradient is the pathwise one through the two Gamma draws: unbiased, but for a given x
not the same number as an implicit gradient of the Beta CDF (PyTorch's), since it depends on
X and Y, not only on x; its expectation is checked instead (tests).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.function import Function
from ..backend import xp_of
from ..random import seed_for
from . import constraints
from ._special import digamma, digamma_array, lgamma, xlogy
from .distribution import Distribution
from .utils import broadcast_all

__all__ = ["Gamma", "Beta"]

_MAX_TERMS = 1 << 16


def standard_gamma_grad(alpha, z):
    """dz/dα of a standard Gamma draw z (module doc), computed in float64."""
    xp = xp_of(z)
    a = alpha.astype(np.float64)
    x = z.astype(np.float64)
    if x.size == 0:
        return xp.zeros_like(z)
    n_terms = xp.max(xp.maximum(x - a, 0) + 9 * xp.sqrt(x) + 20)
    n_terms = min(int(math.ceil(float(n_terms))), _MAX_TERMS)  # the one host read
    log_z_psi = xp.log(x) - digamma_array(a)
    r = x / a
    h = 1 / a
    total = r * (log_z_psi - h)
    for n in range(1, n_terms):
        r = r * x / (a + n)
        h = h + 1 / (a + n)
        total = total + r * (log_z_psi - h)
    return (-total).astype(z.dtype)


class _StandardGamma(Function):
    """z ~ Gamma(α, 1) elementwise (α of the sample's full shape); backward: the implicit
    gradient dz/dα (module doc)."""
    saves_output = True

    def forward(self, alpha, rng):
        z = rng.standard_gamma(alpha, size=alpha.shape, dtype=alpha.dtype) \
            if alpha.dtype in (np.float32, np.float64) else \
            rng.standard_gamma(alpha.astype(np.float64), size=alpha.shape).astype(alpha.dtype)
        # a draw can underflow to 0 for small α in float32: keep it a valid point of the support
        z = xp_of(z).maximum(z, np.finfo(alpha.dtype).tiny).astype(alpha.dtype, copy=False)
        self.alpha, self.z = alpha, z
        return z

    def backward(self, g):
        return g * standard_gamma_grad(self.alpha, self.z), None


def _standard_gamma(alpha, shape, generator):
    """Standard Gamma draws of ``shape`` (α broadcast to it), differentiable in α."""
    alpha = alpha.expand(*shape) if tuple(alpha.shape) != tuple(shape) else alpha
    rng = seed_for(alpha.device, generator)
    return _StandardGamma.apply(alpha, rng)


class Gamma(Distribution):
    """Gamma(concentration α, rate β) (module doc)."""
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate,
                                                      names=["concentration", "rate"])
        super().__init__(tuple(self.concentration.shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Gamma, _instance)
        new.concentration = self.concentration.expand(*batch_shape)
        new.rate = self.rate.expand(*batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def mode(self):
        return ((self.concentration - 1) / self.rate).clamp(min=0.0)

    @property
    def variance(self):
        return self.concentration / self.rate.square()

    def rsample(self, sample_shape=(), generator=None):
        z = _standard_gamma(self.concentration, self._extended_shape(sample_shape), generator)
        x = z / self.rate
        return x.clamp(min=float(np.finfo(x.data.dtype).tiny))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration, self.rate
        return xlogy(a, b) + xlogy(a - 1, value) - b * value - lgamma(a)

    def cdf(self, value):
        raise NotImplementedError("Gamma.cdf needs the regularised incomplete gamma function")

    def entropy(self):
        a = self.concentration
        return a - self.rate.log() + lgamma(a) + (1 - a) * digamma(a)


class Beta(Distribution):
    """Beta(concentration1 α, concentration0 β) on [0, 1] (module doc)."""
    arg_constraints = {"concentration1": constraints.positive,
                       "concentration0": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, concentration1, concentration0, validate_args=None):
        self.concentration1, self.concentration0 = broadcast_all(
            concentration1, concentration0, names=["concentration1", "concentration0"])
        super().__init__(tuple(self.concentration1.shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Beta, _instance)
        new.concentration1 = self.concentration1.expand(*batch_shape)
        new.concentration0 = self.concentration0.expand(*batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def mode(self):
        return (self.concentration1 - 1) / (self.concentration1 + self.concentration0 - 2)

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        s = a + b
        return a * b / (s.square() * (s + 1))

    def rsample(self, sample_shape=(), generator=None):
        shape = self._extended_shape(sample_shape)
        x = _standard_gamma(self.concentration1, shape, generator)
        y = _standard_gamma(self.concentration0, shape, generator)
        out = x / (x + y)
        e = float(np.finfo(out.data.dtype).eps)
        return out.clamp(min=float(np.finfo(out.data.dtype).tiny), max=1 - e)

    def _log_beta(self):
        a, b = self.concentration1, self.concentration0
        return lgamma(a) + lgamma(b) - lgamma(a + b)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        return xlogy(a - 1, value) + xlogy(b - 1, 1 - value) - self._log_beta()

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        return (self._log_beta() - (a - 1) * digamma(a) - (b - 1) * digamma(b)
                + (a + b - 2) * digamma(a + b))
