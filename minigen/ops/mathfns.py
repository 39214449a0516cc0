"""More elementwise math as primitives: inverse and hyperbolic trigonometry, atan2, hypot,
fmod, trunc, clamp_min/max, nan_to_num, the float predicates (isinf, isclose, allclose), and
the special functions (lgamma, digamma, erfc, erfinv, logit, xlogy, logaddexp, log10, ndtr,
log_ndtr, ndtri; ``minigen.special`` names them as ``torch.special`` does).

Each class is one primitive with its derivative beside the forward; the array-level special
functions (numpy and CuPy) are in ``special.py``. Integer inputs of the float functions compute
in the default float dtype (PyTorch).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..backend import xp_of
from ..tensor import Tensor
from . import special
from ._util import _as_float, _float_unary, as_pair, as_tensor_like, tensor_method, unbroadcast
from .elementwise import clamp

__all__ = [
    "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tan", "asinh",
    "acosh", "atanh", "arcsinh", "arccosh", "arctanh", "atan2", "arctan2", "hypot", "fmod",
    "trunc", "fix", "clamp_min", "clamp_max", "nan_to_num", "isinf", "isposinf", "isneginf",
    "isclose", "allclose", "lgamma", "digamma", "erfc", "erfinv", "logit", "xlogy",
    "logaddexp", "log10",
]


def _shape(x):
    return x.shape if hasattr(x, "shape") else ()


# ---------------------------------------------------------------------- trigonometric
class Asin(Function):
    """d/dx asin x = 1/√(1 − x²)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arcsin(x)

    def backward(self, g):
        return g / xp_of(g).sqrt(1 - self.x * self.x)


class Acos(Function):
    """d/dx acos x = −1/√(1 − x²)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arccos(x)

    def backward(self, g):
        return -g / xp_of(g).sqrt(1 - self.x * self.x)


class Atan(Function):
    """d/dx atan x = 1/(1 + x²)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arctan(x)

    def backward(self, g):
        return g / (1 + self.x * self.x)


class Tan(Function):
    """d/dx tan x = 1 + tan² x."""
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).tan(x)
        return self.out

    def backward(self, g):
        return g * (1 + self.out * self.out)


class Sinh(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).sinh(x)

    def backward(self, g):
        return g * xp_of(g).cosh(self.x)


class Cosh(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).cosh(x)

    def backward(self, g):
        return g * xp_of(g).sinh(self.x)


class Asinh(Function):
    """d/dx asinh x = 1/√(x² + 1)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arcsinh(x)

    def backward(self, g):
        return g / xp_of(g).sqrt(self.x * self.x + 1)


class Acosh(Function):
    """d/dx acosh x = 1/√(x² − 1) (x > 1)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arccosh(x)

    def backward(self, g):
        return g / xp_of(g).sqrt(self.x * self.x - 1)


class Atanh(Function):
    """d/dx atanh x = 1/(1 − x²)."""
    def forward(self, x):
        self.x = x
        return xp_of(x).arctanh(x)

    def backward(self, g):
        return g / (1 - self.x * self.x)


class Atan2(Function):
    """θ = atan2(y, x); ∂θ/∂y = x/(x² + y²), ∂θ/∂x = −y/(x² + y²)."""
    def forward(self, y, x):
        self.y, self.x = y, x
        return xp_of(y).arctan2(y, x)

    def backward(self, g):
        n = self.needs_input_grad
        y, x = self.y, self.x
        r2 = x * x + y * y
        return (unbroadcast(g * x / r2, _shape(y)) if n[0] else None,
                unbroadcast(-g * y / r2, _shape(x)) if n[1] else None)


class Hypot(Function):
    """h = √(a² + b²) (numpy's hypot: no overflow in a²); ∂h/∂a = a/h, ∂h/∂b = b/h."""
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = xp_of(a).hypot(a, b)
        return self.out

    def backward(self, g):
        n = self.needs_input_grad
        return (unbroadcast(g * self.a / self.out, _shape(self.a)) if n[0] else None,
                unbroadcast(g * self.b / self.out, _shape(self.b)) if n[1] else None)


class Fmod(Function):
    """C's fmod: a − trunc(a/b)·b, the sign of a (``remainder`` takes the sign of b);
    ∂/∂a = 1, ∂/∂b = −trunc(a/b)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return xp_of(a).fmod(a, b)

    def backward(self, g):
        n = self.needs_input_grad
        xp = xp_of(g)
        return (unbroadcast(g, _shape(self.a)) if n[0] else None,
                unbroadcast(-g * xp.trunc(self.a / self.b), _shape(self.b)) if n[1] else None)


class Trunc(Function):
    """Rounds toward zero; piecewise constant, gradient zero (PyTorch)."""
    saves_inputs = False

    def forward(self, x):
        return xp_of(x).trunc(x)

    def backward(self, g):
        return g * 0


class NanToNum(Function):
    """NaN, +∞, −∞ replaced; the gradient passes where x is finite, 0 elsewhere (PyTorch)."""
    def forward(self, x, nan, posinf, neginf):
        self.x = x
        return xp_of(x).nan_to_num(x, copy=True, nan=nan, posinf=posinf, neginf=neginf)

    def backward(self, g):
        return g * xp_of(g).isfinite(self.x)


# ---------------------------------------------------------------------- special functions
class Lgamma(Function):
    """log |Γ(x)|; d/dx = ψ(x)."""
    def forward(self, x):
        self.x = x
        return special.lgamma(x)

    def backward(self, g):
        return g * special.digamma(self.x)


class Digamma(Function):
    """ψ(x); d/dx = ψ'(x) (trigamma)."""
    def forward(self, x):
        self.x = x
        return special.digamma(x)

    def backward(self, g):
        return g * special.trigamma(self.x)


class Erfc(Function):
    """1 − erf x; d/dx = −2/√π e^(−x²)."""
    def forward(self, x):
        self.x = x
        return special.erfc(x)

    def backward(self, g):
        return g * (-2 / math.sqrt(math.pi)) * xp_of(g).exp(-self.x * self.x)


class Erfinv(Function):
    """y = erf⁻¹ x; d/dx = 1 / erf'(y) = (√π/2) e^(y²)."""
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = special.erfinv(x)
        return self.out

    def backward(self, g):
        return g * (math.sqrt(math.pi) / 2) * xp_of(g).exp(self.out * self.out)


class Ndtr(Function):
    """Φ(x); d/dx = φ(x) = e^(−x²/2)/√(2π)."""
    def forward(self, x):
        self.x = x
        return special.ndtr(x)

    def backward(self, g):
        return g * xp_of(g).exp(-0.5 * self.x * self.x) / math.sqrt(2 * math.pi)


class LogNdtr(Function):
    """log Φ(x); d/dx = φ(x)/Φ(x) (``special.ndtr_ratio``: finite where both underflow, ≈ −x
    in the lower tail; x = −40 gives 40.02)."""
    def forward(self, x):
        self.x = x
        return special.log_ndtr(x)

    def backward(self, g):
        return g * special.ndtr_ratio(self.x)


class Ndtri(Function):
    """y = Φ⁻¹(p); d/dp = 1/φ(y) = √(2π) e^(y²/2)."""
    saves_inputs, saves_output = False, True

    def forward(self, p):
        self.out = special.ndtri(p)
        return self.out

    def backward(self, g):
        return g * math.sqrt(2 * math.pi) * xp_of(g).exp(0.5 * self.out * self.out)


class Logit(Function):
    """log(x / (1 − x)), x first clamped to [eps, 1 − eps] when eps is given; d/dx =
    1/(x(1 − x)), 0 outside [eps, 1 − eps] (PyTorch)."""
    def forward(self, x, eps):
        xp = xp_of(x)
        self.x, self.eps = x, eps
        z = x if eps is None else xp.clip(x, eps, 1 - eps).astype(x.dtype, copy=False)
        return xp.log(z / (1 - z))

    def backward(self, g):
        x, eps = self.x, self.eps
        d = g / (x * (1 - x))
        if eps is not None:
            d = d * ((x >= eps) & (x <= 1 - eps))
        return d


class Xlogy(Function):
    """x · log y, 0 where x = 0 (unless y is NaN). Gradients as PyTorch's:
    ∂/∂x = xlogy(x ≠ 0, y) (0 where x = 0), ∂/∂y = x / y."""
    def forward(self, x, y):
        xp = xp_of(x)
        self.x, self.y = x, y
        with np.errstate(divide="ignore", invalid="ignore"):
            out = x * xp.log(y)
        return xp.where((x == 0) & ~xp.isnan(y), 0, out).astype(out.dtype, copy=False)

    def backward(self, g):
        n = self.needs_input_grad
        xp = xp_of(g)
        x, y = self.x, self.y
        gx = gy = None
        if n[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gx = unbroadcast(g * xp.where((x != 0) | xp.isnan(y), xp.log(y), 0), _shape(x))
        if n[1]:
            gy = unbroadcast(g * x / y, _shape(y))
        return gx, gy


class LogAddExp(Function):
    """log(eᵃ + eᵇ) = max + log1p(e^(−|a − b|)) (numpy's logaddexp); ∂/∂a = e^(a − out),
    ∂/∂b = e^(b − out). Where both are −∞ the output is −∞ and the gradient splits ½, ½."""
    saves_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = xp_of(a).logaddexp(a, b)
        return self.out

    def backward(self, g):
        n = self.needs_input_grad
        xp = xp_of(g)
        both = xp.isneginf(self.out)
        out = xp.where(both, 0, self.out)
        with np.errstate(invalid="ignore"):
            wa = xp.where(both, 0.5, xp.exp(xp.where(both, 0, self.a) - out))
            wb = xp.where(both, 0.5, xp.exp(xp.where(both, 0, self.b) - out))
        return (unbroadcast(g * wa, _shape(self.a)) if n[0] else None,
                unbroadcast(g * wb, _shape(self.b)) if n[1] else None)


class Log10(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log10(x)

    def backward(self, g):
        return g / (self.x * math.log(10.0))


class _Predicate(Function):
    differentiable = False

    def forward(self, x, fn):
        return getattr(xp_of(x), fn)(x)


class IsClose(Function):
    differentiable = False

    def forward(self, a, b, rtol, atol, equal_nan):
        return xp_of(a).isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


# ---------------------------------------------------------------------- public functions
asin = tensor_method("asin", "arcsin")(_float_unary(Asin, "arcsine"))
acos = tensor_method("acos", "arccos")(_float_unary(Acos, "arccosine"))
atan = tensor_method("atan", "arctan")(_float_unary(Atan, "arctangent"))
arcsin, arccos, arctan = asin, acos, atan
tan = tensor_method("tan")(_float_unary(Tan, "tangent"))
sinh = tensor_method("sinh")(_float_unary(Sinh, "hyperbolic sine"))
cosh = tensor_method("cosh")(_float_unary(Cosh, "hyperbolic cosine"))
asinh = tensor_method("asinh", "arcsinh")(_float_unary(Asinh, "inverse hyperbolic sine"))
acosh = tensor_method("acosh", "arccosh")(_float_unary(Acosh, "inverse hyperbolic cosine"))
atanh = tensor_method("atanh", "arctanh")(_float_unary(Atanh, "inverse hyperbolic tangent"))
arcsinh, arccosh, arctanh = asinh, acosh, atanh
lgamma = tensor_method("lgamma")(_float_unary(Lgamma, "log |Γ(x)|"))
digamma = tensor_method("digamma")(_float_unary(Digamma, "ψ(x) = d/dx log Γ(x)"))
erfc = tensor_method("erfc")(_float_unary(Erfc, "complementary error function 1 − erf(x)"))
erfinv = tensor_method("erfinv")(_float_unary(Erfinv, "inverse error function"))
log10 = tensor_method("log10")(_float_unary(Log10, "log₁₀ x"))
ndtr = _float_unary(Ndtr, "standard normal CDF Φ(x)")
log_ndtr = _float_unary(LogNdtr, "log Φ(x), accurate in both tails")
ndtri = _float_unary(Ndtri, "standard normal quantile Φ⁻¹(p)")


def _float_pair(input, other, op):
    """(a, b) as tensors of one float dtype for a float binary op: at least one argument is a
    tensor, PyTorch's promotion, integer tensors computed in the default float dtype."""
    if isinstance(input, Tensor):
        a, b = as_pair(_as_float(input), other, op)
    elif isinstance(other, Tensor):
        b, a = as_pair(_as_float(other), input, op)
    else:
        raise TypeError(f"{op}: expected at least one Tensor argument")
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b)
    if not isinstance(b, Tensor):
        b = as_tensor_like(b, a)
    return a, b


@tensor_method("atan2", "arctan2")
def atan2(input, other):
    """The angle of the point (other, input): atan2(y, x) ∈ (−π, π]."""
    a, b = _float_pair(input, other, "atan2")
    return Atan2.apply(a, b)


arctan2 = atan2


@tensor_method()
def hypot(input, other):
    a, b = _float_pair(input, other, "hypot")
    return Hypot.apply(a, b)


@tensor_method()
def fmod(input, other):
    """Remainder of the division truncated toward zero (the sign of ``input``)."""
    a, b = as_pair(input, other, "fmod")
    return Fmod.apply(a, b)


@tensor_method("trunc", "fix")
def trunc(input):
    if input.data.dtype.kind in "biu":
        return input.clone()
    return Trunc.apply(input)


fix = trunc


@tensor_method()
def clamp_min(input, min):
    return clamp(input, min=min)


@tensor_method()
def clamp_max(input, max):
    return clamp(input, max=max)


@tensor_method()
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN → ``nan``; ±∞ → ``posinf``/``neginf``, by default the dtype's largest/lowest
    finite values. Integer tensors come back unchanged (as a copy)."""
    if not dtypes.is_floating(input.data.dtype):
        return input.clone()
    return NanToNum.apply(input, nan, posinf, neginf)


def _finite_float(input, fn):
    if not dtypes.is_floating(input.data.dtype):   # integers are never infinite
        return Tensor._wrap(xp_of(input.data).zeros(input.shape, dtype=bool), input.device)
    return _Predicate.apply(input, fn)


@tensor_method()
def isinf(input):
    return _finite_float(input, "isinf")


@tensor_method()
def isposinf(input):
    return _finite_float(input, "isposinf")


@tensor_method()
def isneginf(input):
    return _finite_float(input, "isneginf")


def _check_tol(op, rtol, atol):
    if not (rtol >= 0 and atol >= 0):
        raise RuntimeError(f"{op}: rtol and atol must be non-negative, got rtol={rtol}, "
                           f"atol={atol}")


@tensor_method()
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input − other| ≤ atol + rtol·|other| elementwise (equal infinities are close)."""
    _check_tol("isclose", rtol, atol)
    if isinstance(other, Tensor) and other.data.dtype != input.data.dtype:
        raise RuntimeError(f"isclose: expected tensors of the same dtype, got "
                           f"{input.data.dtype} and {other.data.dtype}")
    a, b = as_pair(input, other, "isclose")
    return IsClose.apply(a, b, rtol, atol, builtins.bool(equal_nan))


@tensor_method()
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """Whether every element is ``isclose`` (a Python bool: one read from the device)."""
    return builtins.bool(isclose(input, other, rtol, atol, equal_nan).data.all())


@tensor_method()
def logit(input, eps=None):
    """log(p / (1 − p)); ``eps`` clamps p to [eps, 1 − eps] first (PyTorch)."""
    if eps is not None and not 0 <= eps <= 0.5:
        raise ValueError(f"logit: eps must be in [0, 0.5], got {eps}")
    return Logit.apply(_as_float(input), eps)


@tensor_method()
def xlogy(input, other):
    """input · log(other), 0 where input = 0 (the entropy convention 0 log 0 = 0)."""
    a, b = _float_pair(input, other, "xlogy")
    return Xlogy.apply(a, b)


@tensor_method()
def logaddexp(input, other):
    """log(e^input + e^other), without overflow."""
    a, b = _float_pair(input, other, "logaddexp")
    return LogAddExp.apply(a, b)
