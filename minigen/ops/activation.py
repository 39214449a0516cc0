"""Activation functions as primitives: sigmoid, relu, leaky_relu, silu, gelu, softplus, elu,
logsigmoid (each with its derivative beside it), and mish and hardtanh composed from them.

Numerically stable forms: σ and log σ never exponentiate a large positive number; softplus
switches to the identity above ``threshold``. SiLU runs the C++ kernel (csrc/normalization.cpp)
on CPU float32/float64 when the native extension is built.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _native
from ..autograd.function import Function
from ..backend import xp_of
from . import special
from ._util import _as_float, _float_unary, _unary, tensor_method

__all__ = ["sigmoid", "relu", "leaky_relu", "silu", "gelu", "softplus", "elu", "logsigmoid",
           "mish", "hardtanh"]


class Sigmoid(Function):
    """σ(x) = ½(1 + tanh(x/2)): no overflow for large |x|; σ' = σ(1 − σ)."""
    saves_inputs, saves_output = False, True

    def forward(self, x):
        xp = xp_of(x)
        self.out = (xp.tanh(x * 0.5) + 1) * 0.5
        return self.out.astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.out * (1 - self.out)


class Relu(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).maximum(x, 0)
        return self.out

    def backward(self, g):
        return g * (self.out > 0)


class LeakyRelu(Function):
    def forward(self, x, slope):
        self.x, self.slope = x, slope
        return xp_of(x).where(x > 0, x, x * slope)

    def backward(self, g):
        return xp_of(g).where(self.x > 0, g, g * self.slope)


class Silu(Function):
    """x σ(x); d/dx = σ(x)(1 + x(1 − σ(x))).

    CPU float32/float64 with minigen._C: the C++ loops of csrc/normalization.cpp (one pass,
    σ recomputed in backward instead of saved); otherwise this numpy code, their reference.
    """
    def forward(self, x):
        self.x = x
        self.native = (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
                       and _native.available())
        if self.native:
            self.x = x if x.flags.c_contiguous else np.ascontiguousarray(x)
            return _native.module().silu_forward(self.x)
        xp = xp_of(x)
        self.s = ((xp.tanh(x * 0.5) + 1) * 0.5).astype(x.dtype, copy=False)
        return x * self.s

    def backward(self, g):
        if self.native:
            g = g.astype(self.x.dtype, copy=False)
            return _native.module().silu_backward(
                g if g.flags.c_contiguous else np.ascontiguousarray(g), self.x)
        s = self.s
        return g * (s * (1 + self.x * (1 - s)))


class Gelu(Function):
    """exact: x Φ(x) with Φ(x) = ½(1 + erf(x/√2)); 'tanh': ½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    def forward(self, x, approximate):
        xp = xp_of(x)
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            self.th = xp.tanh(k * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1 + self.th)
        self.cdf = 0.5 * (1 + special.erf(x * (1 / math.sqrt(2))))
        return x * self.cdf

    def backward(self, g):
        xp, x = xp_of(g), self.x
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            th = self.th
            return g * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x))
        pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (self.cdf + x * pdf)


class Softplus(Function):
    """(1/β) log(1 + e^{βx}), linear above the threshold; d/dx = σ(βx)."""
    def forward(self, x, beta, threshold):
        xp = xp_of(x)
        self.x, self.beta, self.threshold = x, beta, threshold
        bx = x * beta
        out = xp.logaddexp(0, bx) / beta
        return xp.where(bx > threshold, x, out).astype(x.dtype, copy=False)

    def backward(self, g):
        xp = xp_of(g)
        bx = self.x * self.beta
        s = (xp.tanh(bx * 0.5) + 1) * 0.5
        return xp.where(bx > self.threshold, g, g * s).astype(g.dtype, copy=False)


class Elu(Function):
    def forward(self, x, alpha):
        xp = xp_of(x)
        self.x, self.alpha = x, alpha
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    def backward(self, g):
        xp = xp_of(g)
        return xp.where(self.x > 0, g, g * self.alpha * xp.exp(xp.minimum(self.x, 0)))


class LogSigmoid(Function):
    """log σ(x) = −softplus(−x) = min(x, 0) − log1p(e^{−|x|}); d/dx = 1 − σ(x) = σ(−x)."""
    def forward(self, x):
        xp = xp_of(x)
        self.x = x
        return xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, g):
        xp = xp_of(g)
        return g * (xp.tanh(-self.x * 0.5) + 1) * 0.5


# ---------------------------------------------------------------------- public functions
sigmoid = tensor_method("sigmoid")(_float_unary(Sigmoid, "1 / (1 + e^{−x})"))
relu = tensor_method("relu")(_unary(Relu, "max(x, 0)"))
silu = tensor_method("silu")(_float_unary(Silu, "x σ(x)"))
logsigmoid = _float_unary(LogSigmoid, "log σ(x), stable")


@tensor_method()
def leaky_relu(input, negative_slope=0.01):
    return LeakyRelu.apply(input, negative_slope)


@tensor_method()
def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_as_float(input), approximate)


@tensor_method()
def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(_as_float(input), beta, threshold)


@tensor_method()
def elu(input, alpha=1.0):
    return Elu.apply(_as_float(input), alpha)


def mish(input):
    """x tanh(softplus(x))."""
    from .elementwise import tanh
    return input * tanh(softplus(input))


def hardtanh(input, min_val=-1.0, max_val=1.0):
    from .elementwise import clamp
    return clamp(input, min_val, max_val)
