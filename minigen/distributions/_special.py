"""Special functions the distributions need, on the array level (numpy or cupy, no host
reads) and as differentiable Tensor functions.

PRIVATE STAND-INS: ``lgamma`` and ``digamma`` are used from ``minigen`` itself when it has them
(issue 18 adds them to the engine); the versions here exist so the distributions work before,
and ``trigamma`` serves the implicit Gamma gradient. Domain: x > 0 (what the distributions
need).

    lgamma(x)  = lgamma(x + n) − Σ_{k<n} log(x + k)                 (recurrence, n = 10)
    lgamma(z)  ≈ (z − ½) log z − z + ½ log 2π + Σ_j B_2j / (2j (2j−1) z^(2j−1)),  z ≥ 10
    ψ(x)       = ψ(x + n) − Σ_{k<n} 1/(x + k)
    ψ(z)       ≈ log z − 1/(2z) − Σ_j B_2j / (2j z^(2j))
    ψ₁(x)      = ψ₁(x + n) + Σ_{k<n} 1/(x + k)²
    ψ₁(z)      ≈ 1/z + 1/(2z²) + Σ_j B_2j / z^(2j+1)
With z ≥ 10 and five series terms the truncation error is below 1e-14 (the next term).
"""
from __future__ import annotations

import math

from ..autograd.function import Function
from ..backend import xp_of

_SHIFT = 10
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# Bernoulli numbers B_2 … B_12
_B = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730)


def lgamma_array(x):
    xp = xp_of(x)
    acc = xp.zeros_like(x)
    for k in range(_SHIFT):
        acc = acc + xp.log(x + k)
    z = x + _SHIFT
    inv = 1 / z
    inv2 = inv * inv
    series = xp.zeros_like(x)
    p = inv
    for j, b in enumerate(_B, start=1):
        series = series + b / (2 * j * (2 * j - 1)) * p
        p = p * inv2
    return (z - 0.5) * xp.log(z) - z + _HALF_LOG_2PI + series - acc


def digamma_array(x):
    xp = xp_of(x)
    acc = xp.zeros_like(x)
    for k in range(_SHIFT):
        acc = acc + 1 / (x + k)
    z = x + _SHIFT
    inv2 = 1 / (z * z)
    series = xp.zeros_like(x)
    p = inv2
    for j, b in enumerate(_B, start=1):
        series = series + b / (2 * j) * p
        p = p * inv2
    return xp.log(z) - 0.5 / z - series - acc


def trigamma_array(x):
    xp = xp_of(x)
    acc = xp.zeros_like(x)
    for k in range(_SHIFT):
        acc = acc + 1 / ((x + k) * (x + k))
    z = x + _SHIFT
    inv = 1 / z
    inv2 = inv * inv
    series = xp.zeros_like(x)
    p = inv * inv2
    for b in _B:
        series = series + b * p
        p = p * inv2
    return inv + 0.5 * inv2 + series + acc


class _Lgamma(Function):
    """log Γ(x); d/dx = ψ(x)."""

    def forward(self, x):
        self.x = x
        return lgamma_array(x)

    def backward(self, g):
        return g * digamma_array(self.x)


class _Digamma(Function):
    """ψ(x); d/dx = ψ₁(x)."""

    def forward(self, x):
        self.x = x
        return digamma_array(x)

    def backward(self, g):
        return g * trigamma_array(self.x)


def lgamma(t):
    import minigen
    fn = getattr(minigen, "lgamma", None)
    return fn(t) if fn is not None else _Lgamma.apply(t)


def digamma(t):
    import minigen
    fn = getattr(minigen, "digamma", None)
    return fn(t) if fn is not None else _Digamma.apply(t)


def xlogy(x, y):
    """x log y, 0 where x = 0 = y. d/dx = log y (also at x = 0, where the log-density of a
    Gamma/Beta with concentration 1 still depends on it), d/dy = x / y; at x = y = 0 the log's
    argument is made 1 so both stay finite (0)."""
    from ..ops.elementwise import where
    both_zero = (x == 0).logical_and(y == 0)
    return x * where(both_zero, 1.0, y).log()
