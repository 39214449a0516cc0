"""Elementwise primitives: arithmetic with broadcasting, math functions, comparisons (the
activations are in ``activation.py``).

Each class is one primitive; its backward is the derivative written next to the forward.
``unbroadcast`` sums a gradient back to the shape an operand had before broadcasting.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..backend import to_device, xp_of
from ..tensor import Tensor
from . import special
from ._util import _float_unary, _unary, as_pair, as_tensor_like, tensor_method, unbroadcast

__all__ = [
    "add", "sub", "mul", "div", "true_divide", "pow", "neg", "exp", "log", "log1p", "expm1",
    "sqrt", "rsqrt", "abs", "sign", "reciprocal", "sin", "cos", "tanh", "erf", "clamp", "clip",
    "where",
    "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "floor", "ceil", "round", "square",
    "logical_not", "logical_and", "logical_or", "isnan", "isfinite", "log2", "exp2", "lerp",
    "floor_divide", "remainder", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_not",
]


def _shape(x):
    return x.shape if hasattr(x, "shape") else ()


# ---------------------------------------------------------------------- casts and moves
class Cast(Function):
    saves_inputs = False

    def forward(self, x, dtype):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.src) if dtypes.is_floating(self.src) else None


class ToDevice(Function):
    saves_inputs = False

    def forward(self, x, device):
        from ..backend import device_of
        self.src = device_of(x)
        return to_device(x, device)

    def backward(self, g):
        return to_device(g, self.src)


# ---------------------------------------------------------------------- binary arithmetic
# Below this many output elements Add stays with numpy (the call overhead of the native
# kernel is then comparable to the work).
_NATIVE_ADD_MIN = 1 << 18


def _native_add(a, b):
    """a + b through minigen._C.add_broadcast (two threads) when both are numpy float32/float64
    arrays of one dtype, C-contiguous, with at least _NATIVE_ADD_MIN elements, and one of them
    is either of the output's shape or constant over its trailing dims ((N, C, 1, 1) against
    (N, C, H, W)); else None (numpy's `a + b`). Addition commutes exactly, so either may be the
    broadcast one. E3's 13 adds, per forward (bench_e2_unet.py --profile-forward): 4.9 ms
    before, 2.0 ms after in one pair of runs; these memory-bound ops vary up to 3× between
    processes on the 2-core VM (6.0 ms in a later profile).
    """
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype or \
            a.dtype not in (np.float32, np.float64) or not a.dtype.isnative:
        return None
    big, small = (a, b) if a.size >= b.size else (b, a)
    if big.size < _NATIVE_ADD_MIN or not (big.flags.c_contiguous and small.flags.c_contiguous):
        return None
    shape = big.shape
    lead = (1,) * (len(shape) - small.ndim) + small.shape if small.ndim <= len(shape) else None
    if lead is None:
        return None
    k = len(shape)
    while k > 0 and lead[k - 1] == 1 and shape[k - 1] != 1:
        k -= 1
    if lead[:k] != shape[:k] or any(d != 1 for d in lead[k:]):
        return None
    from .. import _native
    if not _native.available():
        return None
    out = np.empty(shape, dtype=big.dtype)
    _native.module().add_broadcast(big, small, out)
    return out


class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        if self.needs_input_grad:
            self.sa, self.sb = _shape(a), _shape(b)
        out = _native_add(a, b)
        return a + b if out is None else out

    def backward(self, g):
        n = self.needs_input_grad
        return (unbroadcast(g, self.sa) if n[0] else None,
                unbroadcast(g, self.sb) if n[1] else None)


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        if self.needs_input_grad:
            self.sa, self.sb = _shape(a), _shape(b)
        return a - b

    def backward(self, g):
        n = self.needs_input_grad
        return (unbroadcast(g, self.sa) if n[0] else None,
                unbroadcast(-g, self.sb) if n[1] else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        n = self.needs_input_grad
        return (unbroadcast(g * self.b, _shape(self.a)) if n[0] else None,
                unbroadcast(g * self.a, _shape(self.b)) if n[1] else None)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        n = self.needs_input_grad
        ga = unbroadcast(g / self.b, _shape(self.a)) if n[0] else None
        gb = unbroadcast(-g * self.a / (self.b * self.b), _shape(self.b)) if n[1] else None
        return ga, gb


class Pow(Function):
    """out = a ** b; d/da = b a^(b-1), d/db = out · ln a."""
    saves_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, g):
        n = self.needs_input_grad
        a, b = self.a, self.b
        ga = gb = None
        if n[0]:
            if isinstance(b, (builtins.int, builtins.float)):
                if b == 0:  # d/da a⁰ = 0, also at a = 0 (where 0 · a⁻¹ would give NaN)
                    ga = g * 0
                else:
                    ga = g * (b * a ** (b - 1)) if b != 2 else g * (2 * a)
            else:
                ga = unbroadcast(g * b * a ** (b - 1), _shape(a))
        if n[1]:
            xp = xp_of(self.out)
            loga = xp.log(xp.where(a > 0, a, 1)) if not isinstance(a, (int, float)) else math.log(a)
            gb = unbroadcast(g * self.out * loga, _shape(b))
        return ga, gb


def _wrap_int_div(a):
    # true division of integer tensors gives the default float dtype (PyTorch)
    return a.to(dtypes.get_default_dtype()) if not dtypes.is_floating(a.data.dtype) else a


@tensor_method("add", "__add__", "__radd__")
def add(input, other, alpha=1):
    a, b = as_pair(input, other, "add")
    if alpha != 1:
        b = b * alpha
    return Add.apply(a, b)


@tensor_method("sub", "__sub__")
def sub(input, other, alpha=1):
    a, b = as_pair(input, other, "sub")
    if alpha != 1:
        b = b * alpha
    return Sub.apply(a, b)


@tensor_method("__rsub__")
def _rsub(input, other):
    a, b = as_pair(input, other, "sub")
    return Sub.apply(b, a)


@tensor_method("mul", "__mul__", "__rmul__")
def mul(input, other):
    a, b = as_pair(input, other, "mul")
    return Mul.apply(a, b)


class DivRounded(Function):
    """a / b rounded toward zero ('trunc') or down ('floor'); integers stay integers.

    Integer 'trunc' from the floor quotient q = a // b (exact in int64): the true quotient
    lies in (q, q + 1) when the remainder a − q b is non-zero, and trunc rounds it up to
    q + 1 when it is negative, i.e. when a and b have opposite signs. Piecewise constant:
    the gradient is zero (PyTorch's).
    """
    saves_inputs = False

    def forward(self, a, b, mode):
        xp = xp_of(a)
        self.sa, self.sb = _shape(a), _shape(b)
        if dtypes.is_floating(a.dtype):
            return xp.trunc(a / b) if mode == "trunc" else a // b
        q = a // b
        if mode == "trunc":
            q = q + ((a - q * b != 0) & ((a < 0) != (b < 0)))
        return q

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        return (xp.zeros(self.sa, dtype=g.dtype) if n[0] else None,
                xp.zeros(self.sb, dtype=g.dtype) if n[1] else None)


def _div_rounded(input, other, mode):
    if mode not in ("trunc", "floor"):
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {mode!r}")
    a, b = as_pair(input, other, "div")
    if a.data.dtype == np.bool_:
        raise TypeError(f"div: rounding_mode={mode!r} is not defined for bool tensors")
    if a.data.dtype.kind in "iu":  # integer division by zero has no value (PyTorch raises)
        from ..autograd.grad_mode import value_checks
        if isinstance(b, Tensor):
            if b.numel() and value_checks(b.device) and not bool((b.data != 0).all()):
                raise ZeroDivisionError("div: integer division by zero")
        elif b == 0:
            raise ZeroDivisionError("div: integer division by zero")
    return DivRounded.apply(a, b, mode)


@tensor_method("div", "__truediv__")
def div(input, other, *, rounding_mode=None):
    """input / other; ``rounding_mode`` 'trunc' or 'floor' rounds the quotient (integer
    inputs then give an integer result, as PyTorch)."""
    if rounding_mode is not None:
        return _div_rounded(input, other, rounding_mode)
    a, b = as_pair(_wrap_int_div(input), other, "div")
    if isinstance(b, Tensor) and not dtypes.is_floating(b.data.dtype):
        b = b.to(a.data.dtype)
    return Div.apply(a, b)


true_divide = div


@tensor_method("__rtruediv__")
def _rtruediv(input, other):
    a, b = as_pair(_wrap_int_div(input), other, "div")
    return Div.apply(b, a)


@tensor_method("pow", "__pow__")
def pow(input, exponent):
    if isinstance(input, Tensor):
        a, b = as_pair(input, exponent, "pow")
        return Pow.apply(a, b)
    b, a = as_pair(exponent, input, "pow")
    return Pow.apply(a, b)


@tensor_method("__rpow__")
def _rpow(input, other):
    b, a = as_pair(input, other, "pow")
    return Pow.apply(a, b)


@tensor_method()
def square(input):
    return Mul.apply(input, input)


class FloorDivide(Function):
    differentiable = False

    def forward(self, a, b):
        return a // b


@tensor_method("floor_divide", "__floordiv__")
def floor_divide(input, other):
    a, b = as_pair(input, other, "floor_divide")
    return FloorDivide.apply(a, b)


class Remainder(Function):
    """a mod b with the sign of b (Python / PyTorch); d/da = 1, d/db = -floor(a/b)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a % b

    def backward(self, g):
        n = self.needs_input_grad
        xp = xp_of(g)
        return (unbroadcast(g, _shape(self.a)) if n[0] else None,
                unbroadcast(-g * xp.floor(self.a / self.b), _shape(self.b)) if n[1] else None)


@tensor_method("remainder", "__mod__")
def remainder(input, other):
    a, b = as_pair(input, other, "remainder")
    return Remainder.apply(a, b)


@tensor_method("__rfloordiv__")
def _rfloordiv(input, other):
    a, b = as_pair(input, other, "floor_divide")
    return FloorDivide.apply(b, a)


@tensor_method("__rmod__")
def _rmod(input, other):
    a, b = as_pair(input, other, "remainder")
    return Remainder.apply(b, a)


# ---------------------------------------------------------------------- unary math
class Neg(Function):
    saves_inputs = False

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).exp(x)
        return self.out

    def backward(self, g):
        return g * self.out


class Exp2(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).exp2(x)
        return self.out

    def backward(self, g):
        return g * self.out * math.log(2.0)


class Log(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log(x)

    def backward(self, g):
        return g / self.x


class Log2(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log2(x)

    def backward(self, g):
        return g / (self.x * math.log(2.0))


class Log1p(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log1p(x)

    def backward(self, g):
        return g / (1 + self.x)


class Expm1(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).expm1(x)
        return self.out

    def backward(self, g):
        return g * (self.out + 1)


class Sqrt(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).sqrt(x)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Rsqrt(Function):
    """out = x^(-1/2); d/dx = -out³/2."""
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = 1 / xp_of(x).sqrt(x)
        return self.out

    def backward(self, g):
        return g * (-0.5) * self.out ** 3


class Abs(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).abs(x)

    def backward(self, g):
        return g * xp_of(g).sign(self.x)


class Sign(Function):
    saves_inputs = False

    def forward(self, x):
        return xp_of(x).sign(x)

    def backward(self, g):
        return g * 0


class Reciprocal(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = 1 / x
        return self.out

    def backward(self, g):
        return -g * self.out * self.out


class Sin(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).sin(x)

    def backward(self, g):
        return g * xp_of(g).cos(self.x)


class Cos(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).cos(x)

    def backward(self, g):
        return -g * xp_of(g).sin(self.x)


class Tanh(Function):
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = xp_of(x).tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Erf(Function):
    def forward(self, x):
        self.x = x
        return special.erf(x)

    def backward(self, g):
        xp = xp_of(g)
        return g * (2 / math.sqrt(math.pi)) * xp.exp(-self.x * self.x)


class Clamp(Function):
    """Gradient passes where min ≤ x ≤ max (PyTorch's convention at the bounds)."""
    def forward(self, x, lo, hi):
        xp = xp_of(x)
        self.x, self.lo, self.hi = x, lo, hi
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, g):
        mask = True
        if self.lo is not None:
            mask = self.x >= self.lo
        if self.hi is not None:
            mask = mask & (self.x <= self.hi)
        return g * mask


class Where(Function):
    saves_inputs = (0,)

    def forward(self, cond, a, b):
        xp = xp_of(cond)
        self.cond, self.sa, self.sb = cond, _shape(a), _shape(b)
        return xp.where(cond, a, b)

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        return (None,
                unbroadcast(xp.where(self.cond, g, 0), self.sa) if n[1] else None,
                unbroadcast(xp.where(self.cond, 0, g), self.sb) if n[2] else None)


class Maximum(Function):
    """Ties split the gradient half and half (PyTorch)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return xp_of(a).maximum(a, b)

    def backward(self, g):
        n = self.needs_input_grad
        wa = ((self.a > self.b) + 0.5 * (self.a == self.b)).astype(g.dtype, copy=False)
        return (unbroadcast(g * wa, _shape(self.a)) if n[0] else None,
                unbroadcast(g * (1 - wa), _shape(self.b)) if n[1] else None)


class Minimum(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return xp_of(a).minimum(a, b)

    def backward(self, g):
        n = self.needs_input_grad
        wa = ((self.a < self.b) + 0.5 * (self.a == self.b)).astype(g.dtype, copy=False)
        return (unbroadcast(g * wa, _shape(self.a)) if n[0] else None,
                unbroadcast(g * (1 - wa), _shape(self.b)) if n[1] else None)


class ZeroGrad(Function):
    """floor / ceil / round: piecewise constant, gradient zero."""
    saves_inputs = False

    def forward(self, x, fn):
        return getattr(xp_of(x), fn)(x)

    def backward(self, g):
        return g * 0


class Compare(Function):
    differentiable = False

    def forward(self, a, b, fn):
        return getattr(xp_of(a), fn)(a, b)


# ---------------------------------------------------------------------- public functions
neg = tensor_method("neg", "__neg__", "negative")(_unary(Neg, "−x"))
exp = tensor_method("exp")(_float_unary(Exp, "e^x"))
exp2 = tensor_method("exp2")(_float_unary(Exp2, "2^x"))
log = tensor_method("log")(_float_unary(Log, "ln x"))
log2 = tensor_method("log2")(_float_unary(Log2, "log₂ x"))
log1p = tensor_method("log1p")(_float_unary(Log1p, "ln(1 + x), accurate for small x"))
expm1 = tensor_method("expm1")(_float_unary(Expm1, "e^x − 1, accurate for small x"))
sqrt = tensor_method("sqrt")(_float_unary(Sqrt, "√x"))
rsqrt = tensor_method("rsqrt")(_float_unary(Rsqrt, "1/√x"))
abs = tensor_method("abs", "__abs__")(_unary(Abs, "|x|; gradient sign(x) (0 at 0)"))
sign = tensor_method("sign")(_unary(Sign, "sign(x)"))
reciprocal = tensor_method("reciprocal")(_float_unary(Reciprocal, "1/x"))
sin = tensor_method("sin")(_float_unary(Sin, "sin x"))
cos = tensor_method("cos")(_float_unary(Cos, "cos x"))
tanh = tensor_method("tanh")(_float_unary(Tanh, "tanh x"))
erf = tensor_method("erf")(_float_unary(Erf, "error function"))


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = input
        if min is not None:
            out = maximum(out, as_tensor_like(min, input))
        if max is not None:
            out = minimum(out, as_tensor_like(max, input))
        return out
    return Clamp.apply(input, min, max)


clip = clamp


def where(condition, input, other):
    """``input`` where condition holds, else ``other`` (scalars allowed for either)."""
    if not isinstance(condition, Tensor):
        raise TypeError("where: condition must be a bool Tensor")
    if condition.data.dtype != np.bool_:
        condition = condition.to(dtypes.bool_)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("where: at least one of input and other must be a Tensor")
    if isinstance(input, Tensor):
        a, b = as_pair(input, other, "where")
    else:
        b, a = as_pair(other, input, "where")
    from ._util import broadcast_shape
    broadcast_shape("where", condition.shape, np.broadcast_shapes(_shape(a.data if isinstance(
        a, Tensor) else a), _shape(b.data if isinstance(b, Tensor) else b)))
    return Where.apply(condition, a, b)


Tensor.where = lambda self, condition, other: where(condition, self, other)


@tensor_method()
def maximum(input, other):
    a, b = as_pair(input, other, "maximum")
    return Maximum.apply(a, as_tensor_like(b, a))


@tensor_method()
def minimum(input, other):
    a, b = as_pair(input, other, "minimum")
    return Minimum.apply(a, as_tensor_like(b, a))


@tensor_method()
def floor(input):
    return ZeroGrad.apply(input, "floor")


@tensor_method()
def ceil(input):
    return ZeroGrad.apply(input, "ceil")


class RoundDecimals(Function):
    """Round half to even at 10^−decimals: rint(x · 10^d) / 10^d (d > 0) or
    rint(x / 10^−d) · 10^−d (d < 0), as PyTorch (numpy's round does the same). Gradient 0."""
    saves_inputs = False

    def forward(self, x, decimals):
        return xp_of(x).round(x, decimals)

    def backward(self, g):
        return g * 0


@tensor_method()
def round(input, *, decimals=0):
    """Round to the nearest integer (half to even), or to ``decimals`` decimal places."""
    if decimals == 0:
        return ZeroGrad.apply(input, "round")
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be an int, got {decimals!r}")
    if not dtypes.is_floating(input.data.dtype):
        raise TypeError(f"round: decimals is only supported for floating point tensors, got "
                        f"{input.dtype}")
    return RoundDecimals.apply(input, int(decimals))


@tensor_method()
def lerp(input, end, weight):
    """input + weight · (end − input)."""
    return input + (end - input) * weight


def _compare(fn_name, *names):
    def fn(input, other):
        a, b = as_pair(input, other, fn_name)
        return Compare.apply(a, b, fn=fn_name)
    fn.__name__ = names[0]
    tensor_method(*names)(fn)
    return fn


eq = _compare("equal", "eq", "__eq__")
ne = _compare("not_equal", "ne", "__ne__")
lt = _compare("less", "lt", "__lt__")
le = _compare("less_equal", "le", "__le__")
gt = _compare("greater", "gt", "__gt__")
ge = _compare("greater_equal", "ge", "__ge__")
logical_and = _compare("logical_and", "logical_and")
logical_or = _compare("logical_or", "logical_or")
logical_xor = _compare("logical_xor", "logical_xor")


def _bitwise(fn_name, *names, reflected=False):
    """&, |, ^ as PyTorch: bitwise on integer and bool tensors (on bools the same as the
    logical op), refused on floats (PyTorch's bitwise ops take no float)."""
    def fn(input, other):
        a, b = (other, input) if reflected else (input, other)
        t = a if isinstance(a, Tensor) else b
        kinds = {x.data.dtype.kind if isinstance(x, Tensor) else
                 ("b" if isinstance(x, builtins.bool) else "f" if isinstance(x, builtins.float)
                  else "i") for x in (a, b)}
        if kinds - set("biu"):
            raise TypeError(f"{names[0]}: bitwise ops take integer or bool tensors, got "
                            f"{t.dtype}; use logical_and / logical_or / logical_xor for a truth "
                            "value of other dtypes")
        if not isinstance(a, Tensor):  # a Python int on the left of a reflected op
            a, b = as_pair(b, a, fn_name)
            return Compare.apply(a, b, fn=fn_name)
        a, b = as_pair(a, b, fn_name)
        return Compare.apply(a, b, fn=fn_name)
    fn.__name__ = names[0]
    tensor_method(*names)(fn)
    return fn


bitwise_and = _bitwise("bitwise_and", "bitwise_and", "__and__")
bitwise_or = _bitwise("bitwise_or", "bitwise_or", "__or__")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor", "__xor__")
_bitwise("bitwise_and", "__rand__", reflected=True)
_bitwise("bitwise_or", "__ror__", reflected=True)
_bitwise("bitwise_xor", "__rxor__", reflected=True)


class _Predicate(Function):
    differentiable = False

    def forward(self, x, fn):
        return getattr(xp_of(x), fn)(x)


@tensor_method("logical_not")
def logical_not(input):
    return _Predicate.apply(input, "logical_not")


@tensor_method("bitwise_not", "__invert__")
def bitwise_not(input):
    """~x as PyTorch: bitwise NOT of an integer tensor (−x − 1), logical NOT of a bool one."""
    if input.data.dtype.kind not in "biu":
        raise TypeError(f"bitwise_not (~): takes integer or bool tensors, got {input.dtype}; "
                        "use logical_not")
    return _Predicate.apply(input, "invert")


@tensor_method()
def isnan(input):
    return _Predicate.apply(input, "isnan")


@tensor_method()
def isfinite(input):
    return _Predicate.apply(input, "isfinite")
