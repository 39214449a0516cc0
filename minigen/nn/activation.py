"""Activation modules: thin wrappers over ``minigen.nn.functional`` that hold the options.

| module | y |
|---|---|
| ReLU | max(x, 0) |
| LeakyReLU | x if x ≥ 0 else negative_slope·x |
| SiLU | x σ(x) |
| GELU | x Φ(x) (``approximate="tanh"``: the tanh formula) |
| Tanh, Sigmoid | tanh x, 1/(1 + e^{−x}) |
| Softplus | (1/β) log(1 + e^{βx}), linear above ``threshold`` |
| ELU | x if x > 0 else α(e^x − 1) |
| Softmax, LogSoftmax | e^{x_i}/Σ_j e^{x_j} over ``dim``, and its log |
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x, inplace=self.inplace)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope, inplace=self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class SiLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.silu(x, inplace=self.inplace)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate='{self.approximate}'"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x):
        return F.elu(x, self.alpha, inplace=self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class _SoftmaxBase(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def _dim(self):
        if self.dim is None:
            raise ValueError(f"{type(self).__name__}: pass dim explicitly, e.g. "
                             f"{type(self).__name__}(dim=-1)")
        return self.dim

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    def forward(self, x):
        return F.softmax(x, dim=self._dim())


class LogSoftmax(_SoftmaxBase):
    def forward(self, x):
        return F.log_softmax(x, dim=self._dim())


__all__ = ["ReLU", "LeakyReLU", "SiLU", "GELU", "Tanh", "Sigmoid", "Softplus", "ELU", "Softmax",
           "LogSoftmax"]
