"""Every op of ``minigen.ops.elementwise`` through ``check_op`` against a numpy reference:
broadcasting, Python scalars on both sides, PyTorch dtype promotion, tie rules."""
import math

import numpy as np
import pytest
from hypothesis import given

import minigen as mg
from core_strategies import (away_from, broadcast_shapes, distinct, normal, positive, seeds,
                             shapes, small_ints)
from op_check import check_op

np_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def np_softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


# ---------------------------------------------------------------------- binary arithmetic
BINARY = {
    "add": (mg.add, np.add),
    "sub": (mg.sub, np.subtract),
    "mul": (mg.mul, np.multiply),
    "div": (mg.div, np.divide),
    "true_divide": (mg.true_divide, np.divide),
    "maximum": (mg.maximum, np.maximum),
    "minimum": (mg.minimum, np.minimum),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shp=broadcast_shapes(2), seed=seeds)
def test_binary_broadcast(name, shp, seed):
    fn, ref = BINARY[name]
    a = distinct(seed, shp[0])  # distinct values: no max/min ties, no division by ~0
    b = distinct(seed + 1, shp[1]) + 0.1
    if name == "div" or name == "true_divide":
        b = np.where(np.abs(b) < 0.3, 0.5, b)
    check_op(fn, ref, [a, b])


OPERATORS = {
    "+": (lambda x, y: x + y),
    "-": (lambda x, y: x - y),
    "*": (lambda x, y: x * y),
    "/": (lambda x, y: x / y),
    "**": (lambda x, y: x ** y),
    "//": (lambda x, y: x // y),
    "%": (lambda x, y: x % y),
}


@pytest.mark.parametrize("op", sorted(OPERATORS))
@given(shp=broadcast_shapes(2), seed=seeds)
def test_operators_tensor_tensor(op, shp, seed):
    f = OPERATORS[op]
    a, b = positive(seed, shp[0], 0.5, 3.0), positive(seed + 1, shp[1], 0.5, 2.0)
    check_op(f, f, [a, b], grad=op not in ("//",))


@pytest.mark.parametrize("op", sorted(OPERATORS))
@pytest.mark.parametrize("scalar", [2, 2.5, -1.5])
@given(shape=shapes(), seed=seeds)
def test_operators_python_scalar_both_sides(op, scalar, shape, seed):
    f = OPERATORS[op]
    if op in ("**", "%", "//") and scalar < 0:
        scalar = -scalar
    x = positive(seed, shape, 0.5, 3.0)
    grad = op != "//"
    check_op(lambda t: f(t, scalar), lambda a: f(a, scalar), [x], grad=grad)
    check_op(lambda t: f(scalar, t), lambda a: f(scalar, a), [x], grad=grad)


@given(shape=shapes(), seed=seeds)
def test_numpy_scalar_operands(shape, seed):
    x = normal(seed, shape)
    check_op(lambda t: t * np.float64(1.5) + np.int64(2), lambda a: a * 1.5 + 2, [x])
    check_op(lambda t: np.float64(1.5) - t, lambda a: 1.5 - a, [x])


def test_unary_plus_and_minus():
    x = np.array([1.0, -2.0, 3.5])
    check_op(lambda t: -t, np.negative, [x])
    check_op(lambda t: +t, lambda a: +a, [x])
    check_op(mg.neg, np.negative, [x])
    check_op(lambda t: t.negative(), np.negative, [x])


@given(shp=broadcast_shapes(2), seed=seeds)
def test_pow_tensor_exponent(shp, seed):
    a, b = positive(seed, shp[0]), normal(seed + 1, shp[1])
    check_op(mg.pow, np.power, [a, b])


@pytest.mark.parametrize("exponent", [2, 3, -1, 0.5, -1.5, 1.0 / 3])
@given(shape=shapes(), seed=seeds)
def test_pow_scalar_exponent(exponent, shape, seed):
    x = positive(seed, shape) if exponent != int(exponent) else away_from(seed, shape)
    check_op(lambda t: t ** exponent, lambda a: a ** exponent, [x])
    check_op(lambda t: t.pow(exponent), lambda a: np.power(a, exponent), [x])


def test_pow_zero_exponent_grad_at_zero():
    x = mg.tensor([0.0, 1.5, -2.0], dtype=mg.float64, requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


@given(shape=shapes(), seed=seeds)
def test_rpow(shape, seed):
    x = normal(seed, shape)
    check_op(lambda t: 2.0 ** t, lambda a: 2.0 ** a, [x])
    check_op(lambda t: mg.pow(3.0, t), lambda a: 3.0 ** a, [x])


@given(shp=broadcast_shapes(2), seed=seeds)
def test_floor_divide_and_remainder(shp, seed):
    a = normal(seed, shp[0], 3.0)
    b = positive(seed + 1, shp[1], 0.5, 2.0) * np.where(normal(seed + 2, shp[1]) > 0, 1, -1)
    check_op(mg.floor_divide, np.floor_divide, [a, b], grad=False)
    check_op(mg.remainder, np.remainder, [a, b])  # sign of the divisor, as in Python


def test_integer_floor_divide_and_remainder():
    a, b = np.array([7, -7, 5, 0]), np.array([2, 2, -3, 4])
    check_op(mg.floor_divide, np.floor_divide, [a, b])
    check_op(mg.remainder, np.remainder, [a, b])
    check_op(lambda t: 17 // t, lambda x: 17 // x, [b])
    check_op(lambda t: 17 % t, lambda x: 17 % x, [b])


@given(shape=shapes(), seed=seeds)
def test_square_and_lerp(shape, seed):
    x = normal(seed, shape)
    check_op(mg.square, np.square, [x])
    check_op(lambda t: t.square(), np.square, [x])


@given(shp=broadcast_shapes(3), seed=seeds)
def test_lerp(shp, seed):
    a, b, w = normal(seed, shp[0]), normal(seed + 1, shp[1]), normal(seed + 2, shp[2])
    check_op(mg.lerp, lambda x, y, z: x + z * (y - x), [a, b, w])
    check_op(lambda x, y: x.lerp(y, 0.25), lambda x, y: x + 0.25 * (y - x), [a, b])


# ---------------------------------------------------------------------- unary math
# name -> (minigen fn, numpy reference, value generator)
UNARY = {
    "exp": (mg.exp, np.exp, normal),
    "exp2": (mg.exp2, np.exp2, normal),
    "log": (mg.log, np.log, positive),
    "log2": (mg.log2, np.log2, positive),
    "log1p": (mg.log1p, np.log1p, positive),
    "expm1": (mg.expm1, np.expm1, normal),
    "sqrt": (mg.sqrt, np.sqrt, positive),
    "rsqrt": (mg.rsqrt, lambda x: 1 / np.sqrt(x), positive),
    "abs": (mg.abs, np.abs, away_from),
    "sign": (mg.sign, np.sign, away_from),
    "reciprocal": (mg.reciprocal, np.reciprocal, away_from),
    "sin": (mg.sin, np.sin, normal),
    "cos": (mg.cos, np.cos, normal),
    "tanh": (mg.tanh, np.tanh, normal),
    "sigmoid": (mg.sigmoid, np_sigmoid, normal),
    "relu": (mg.relu, lambda x: np.maximum(x, 0), away_from),
    "silu": (mg.silu, lambda x: x * np_sigmoid(x), normal),
    "gelu": (mg.gelu, lambda x: 0.5 * x * (1 + np_erf(x / np.sqrt(2))), normal),
    "softplus": (mg.softplus, np_softplus, normal),
    "elu": (mg.elu, lambda x: np.where(x > 0, x, np.expm1(x)), away_from),
    "logsigmoid": (mg.logsigmoid, lambda x: -np.logaddexp(0, -x), normal),
    "erf": (mg.erf, np_erf, normal),
    "floor": (mg.floor, np.floor, normal),
    "ceil": (mg.ceil, np.ceil, normal),
    "round": (mg.round, np.round, normal),
    "mish": (mg.mish, lambda x: x * np.tanh(np.log1p(np.exp(x))), normal),
    "hardtanh": (mg.hardtanh, lambda x: np.clip(x, -1, 1),
                 lambda s, sh: away_from(s, sh, points=(-1.0, 1.0))),
    "neg": (mg.neg, np.negative, normal),
    "leaky_relu": (mg.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), away_from),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(), seed=seeds)
def test_unary(name, shape, seed):
    fn, ref, gen = UNARY[name]
    check_op(fn, ref, [gen(seed, shape)])


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sin"])
@given(shape=shapes(min_dims=1), seed=seeds)
def test_unary_as_methods(name, shape, seed):
    fn, ref, gen = UNARY[name]
    check_op(lambda t: getattr(t, name)(), ref, [gen(seed, shape)])


@pytest.mark.parametrize("name", ["exp", "exp2", "log", "log2", "log1p", "expm1", "sqrt",
                                  "rsqrt", "reciprocal", "sin", "cos", "tanh", "sigmoid", "silu",
                                  "logsigmoid", "erf", "gelu", "softplus", "elu", "mish"])
def test_math_on_integer_tensors_gives_float32(name):
    fn, ref, _ = UNARY[name]
    ints = np.array([1, 2, 3])
    out = fn(mg.tensor(ints))
    assert out.dtype == mg.float32
    np.testing.assert_allclose(out.numpy(), ref(ints.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("name", ["neg", "abs", "sign", "relu", "floor", "round"])
def test_integer_preserving_unary_ops(name):
    fn, ref, _ = UNARY[name]
    ints = np.array([-2, 0, 3])
    out = fn(mg.tensor(ints))
    assert out.dtype == mg.int64 and out.tolist() == ref(ints).tolist()


def test_abs_operator_and_grad_at_zero():
    check_op(lambda t: abs(t), np.abs, [np.array([-1.5, 2.0, 0.25])])
    x = mg.tensor([0.0, -1.0, 2.0], dtype=mg.float64, requires_grad=True)
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, -1.0, 1.0])  # sign(0) = 0


def test_relu_grad_at_zero_is_zero():
    x = mg.tensor([0.0, -1.0, 2.0], dtype=mg.float64, requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("slope", [0.2, -0.5])
@given(shape=shapes(), seed=seeds)
def test_leaky_relu_slope(slope, shape, seed):
    check_op(lambda t: mg.leaky_relu(t, slope), lambda x: np.where(x > 0, x, slope * x),
             [away_from(seed, shape)])


@given(shape=shapes(), seed=seeds)
def test_gelu_tanh(shape, seed):
    k = np.sqrt(2 / np.pi)
    check_op(lambda t: mg.gelu(t, approximate="tanh"),
             lambda x: 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x ** 3))), [normal(seed, shape)])


@pytest.mark.parametrize("beta,threshold", [(2.0, 20.0), (1.0, 1.0)])
@given(shape=shapes(), seed=seeds)
def test_softplus_beta_threshold(beta, threshold, shape, seed):
    x = away_from(seed, shape, points=(threshold / beta,), scale=2.0)
    check_op(lambda t: mg.softplus(t, beta, threshold), lambda a: np_softplus(a, beta, threshold),
             [x])


@given(shape=shapes(), seed=seeds)
def test_elu_alpha(shape, seed):
    check_op(lambda t: mg.elu(t, alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)),
             [away_from(seed, shape)])


def test_sigmoid_and_logsigmoid_extreme_values():
    x = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    check_op(mg.sigmoid, np_sigmoid, [x], grad=False)
    check_op(mg.logsigmoid, lambda a: -np.logaddexp(0, -a), [x], grad=False)


# ---------------------------------------------------------------------- clamp / where
@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (None, 0.3), (-0.2, None)])
@given(shape=shapes(), seed=seeds)
def test_clamp(lo, hi, shape, seed):
    x = away_from(seed, shape, points=[p for p in (lo, hi) if p is not None])
    ref = lambda a: np.clip(a, lo, hi)  # noqa: E731
    check_op(lambda t: mg.clamp(t, lo, hi), ref, [x])
    check_op(lambda t: t.clip(min=lo, max=hi), ref, [x])
    check_op(lambda t: mg.clip(t, lo, hi), ref, [x])


def test_clamp_grad_passes_at_bounds():
    x = mg.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=mg.float64, requires_grad=True)
    x.clamp(-0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1, 1, 0])


@given(shp=broadcast_shapes(3), seed=seeds)
def test_clamp_tensor_bounds(shp, seed):
    x, lo = distinct(seed, shp[0]), distinct(seed + 1, shp[1]) - 0.11
    hi = lo + 1.03
    check_op(mg.clamp, lambda a, b, c: np.minimum(np.maximum(a, b), c), [x, lo, hi])


@given(shp=broadcast_shapes(3), seed=seeds)
def test_where(shp, seed):
    cond = normal(seed, shp[0]) > 0
    a, b = normal(seed + 1, shp[1]), normal(seed + 2, shp[2])
    check_op(lambda c, x, y: mg.where(c, x, y), np.where, [cond, a, b])
    check_op(lambda c, x, y: x.where(c, y), np.where, [cond, a, b])


@given(shp=broadcast_shapes(2), seed=seeds)
def test_where_with_scalars(shp, seed):
    cond, a = normal(seed, shp[0]) > 0, normal(seed + 1, shp[1])
    check_op(lambda c, x: mg.where(c, x, 0.5), lambda c, x: np.where(c, x, 0.5), [cond, a])
    check_op(lambda c, x: mg.where(c, -1.0, x), lambda c, x: np.where(c, -1.0, x), [cond, a])


# ---------------------------------------------------------------------- ties
def test_maximum_minimum_ties_split_gradient():
    a = mg.tensor([1.0, 2.0, 3.0], dtype=mg.float64, requires_grad=True)
    b = mg.tensor([1.0, 5.0, 3.0], dtype=mg.float64, requires_grad=True)
    mg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0, 0.5])
    a.grad = b.grad = None
    mg.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.0, 0.5])


def test_maximum_grad_keeps_float32():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    a.register_hook(lambda g: seen.append(g.dtype))
    mg.maximum(a, 1.5).sum().backward()
    assert seen == [mg.float32] and a.grad.dtype == mg.float32


# ---------------------------------------------------------------------- comparisons, logic
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}
COMPARE_OPS = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__",
               "ge": "__ge__"}


@pytest.mark.parametrize("name", sorted(COMPARE))
@given(shp=broadcast_shapes(2), seed=seeds)
def test_compare(name, shp, seed):
    a, b = small_ints(seed, shp[0]), small_ints(seed + 1, shp[1])  # many equal pairs
    ref = COMPARE[name]
    check_op(getattr(mg, name), ref, [a, b], grad=False)
    check_op(lambda x, y: getattr(x, COMPARE_OPS[name])(y), ref, [a, b], grad=False)
    check_op(lambda x: getattr(x, COMPARE_OPS[name])(1.0), lambda x: ref(x, 1.0), [a],
             grad=False)
    out = getattr(mg, name)(mg.tensor(a, requires_grad=True), mg.tensor(b))
    assert out.dtype == mg.bool and not out.requires_grad


def test_compare_reflected_with_scalar_on_left():
    t = mg.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal((2.0 < t).numpy(), [False, False, True])
    np.testing.assert_array_equal((2 >= t).numpy(), [True, True, False])
    np.testing.assert_array_equal((2 == t).numpy(), [False, True, False])


@given(shp=broadcast_shapes(2), seed=seeds)
def test_logical(shp, seed):
    a, b = normal(seed, shp[0]) > 0, normal(seed + 1, shp[1]) > 0
    check_op(mg.logical_and, np.logical_and, [a, b])
    check_op(mg.logical_or, np.logical_or, [a, b])
    check_op(lambda x, y: x & y, np.logical_and, [a, b])
    check_op(lambda x, y: x | y, np.logical_or, [a, b])
    check_op(lambda x, y: x ^ y, np.logical_xor, [a, b])
    check_op(mg.logical_not, np.logical_not, [a])
    check_op(lambda x: ~x, np.logical_not, [a])


@given(shape=shapes(), seed=seeds)
def test_isnan_isfinite(shape, seed):
    x = normal(seed, shape)
    flat = x.reshape(-1)
    flat[::3] = np.nan
    flat[1::4] = np.inf
    flat[2::5] = -np.inf
    check_op(mg.isnan, np.isnan, [x], grad=False)
    check_op(mg.isfinite, np.isfinite, [x], grad=False)


# ---------------------------------------------------------------------- dtype promotion
@pytest.mark.parametrize("a_dtype,b_dtype,expected", [
    ("int64", "float32", "float32"),
    ("float32", "int64", "float32"),
    ("int32", "float64", "float64"),
    ("int32", "int64", "int64"),
    ("bool", "int64", "int64"),
    ("bool", "float16", "float16"),
    ("float16", "float32", "float32"),
    ("float32", "float64", "float64"),
    ("uint8", "int8", "int16"),
    ("int8", "int16", "int16"),
])
@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_tensor_tensor_promotion(a_dtype, b_dtype, expected, op):
    a = mg.ones(2, 3, dtype=a_dtype)
    b = mg.ones(3, dtype=b_dtype)
    out = OPERATORS[op](a, b)
    assert out.dtype == np.dtype(expected)
    np.testing.assert_allclose(out.numpy().astype(np.float64),
                               OPERATORS[op](np.ones((2, 3)), np.ones(3)))


@pytest.mark.parametrize("dtype,scalar,expected", [
    ("int64", 2.5, "float32"),    # int tensor * python float -> default float
    ("int32", 2.5, "float32"),
    ("int64", 2, "int64"),
    ("int32", 2, "int32"),        # python int keeps the tensor's integer dtype
    ("float16", 2.5, "float16"),  # python float keeps the tensor's float dtype
    ("float64", 2, "float64"),
    ("bool", 2, "int64"),
    ("bool", 2.5, "float32"),
    ("uint8", 3, "uint8"),
])
def test_tensor_scalar_promotion(dtype, scalar, expected):
    t = mg.ones(3, dtype=dtype)
    for out in (t * scalar, scalar * t, t + scalar, scalar + t):
        assert out.dtype == np.dtype(expected), (dtype, scalar, out.dtype)


def test_true_division_of_integers_gives_float32():
    a, b = mg.tensor([7, 8, 9]), mg.tensor([2, 4, 3])
    for out in (a / b, a / 2, 7 / b, mg.div(a, b), mg.true_divide(a, 2), a.div(b)):
        assert out.dtype == mg.float32
    np.testing.assert_allclose((a / b).numpy(), [3.5, 2.0, 3.0])
    assert (mg.tensor([1, 2], dtype=mg.int32) / mg.tensor([1.0, 2.0], dtype=mg.float64)).dtype \
        == mg.float64


def test_promotion_follows_the_default_dtype():
    old = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    try:
        assert (mg.tensor([1, 2]) * 2.5).dtype == mg.float64
        assert (mg.tensor([1, 2]) / mg.tensor([1, 2])).dtype == mg.float64
    finally:
        mg.set_default_dtype(old)


def test_mixed_dtype_gradients_reach_each_leaf_in_its_dtype():
    a = mg.tensor([1.0, 2.0], dtype=mg.float32, requires_grad=True)
    b = mg.tensor([3.0, 4.0], dtype=mg.float64, requires_grad=True)
    out = a * b
    assert out.dtype == mg.float64
    out.sum().backward()
    assert a.grad.dtype == mg.float32 and b.grad.dtype == mg.float64
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 2.0])


@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_integer_arithmetic_is_exact(op):
    a, b = np.array([[5, -3], [7, 0]]), np.array([2, 9])
    check_op(OPERATORS[op], OPERATORS[op], [a, b])
    assert OPERATORS[op](mg.tensor(a), mg.tensor(b)).dtype == mg.int64
    assert (mg.tensor(a) ** 2).dtype == mg.int64


# ---------------------------------------------------------------------- GPU variant
@pytest.mark.parametrize("name", ["add", "mul", "div", "maximum"])
def test_binary_on_device(device, name):
    rng = np.random.default_rng(0)
    fn, ref = BINARY[name]
    check_op(fn, ref, [rng.uniform(0.5, 2, (3, 4)), rng.uniform(0.5, 2, (4,))], device=device)


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "gelu", "erf", "relu"])
def test_unary_on_device(device, name):
    fn, ref, gen = UNARY[name]
    check_op(fn, ref, [gen(0, (3, 5))], device=device)


def test_bitwise_operators_on_integers_as_pytorch():
    # &, |, ^, ~ are bitwise on integer tensors (they were logical: 1 | 2 gave True, ~1 gave
    # False, where PyTorch gives 3 and −2; found by the OpInfo run), logical on bools, and
    # refused on floats, as PyTorch
    a_np = np.array([1, 2, 12, -7, 0], dtype=np.int64)
    b_np = np.array([4, 3, 10, 5, 0], dtype=np.int64)
    a, b = mg.tensor(a_np), mg.tensor(b_np)
    np.testing.assert_array_equal((a | b).data, a_np | b_np)
    np.testing.assert_array_equal((a & b).data, a_np & b_np)
    np.testing.assert_array_equal((a ^ b).data, a_np ^ b_np)
    np.testing.assert_array_equal((~a).data, -a_np - 1)
    np.testing.assert_array_equal((6 | a).data, 6 | a_np)   # __ror__
    np.testing.assert_array_equal((6 & a).data, 6 & a_np)   # __rand__
    np.testing.assert_array_equal((6 ^ a).data, 6 ^ a_np)   # __rxor__
    assert (a | b).dtype == mg.int64
    p, q = a > 1, b > 3
    np.testing.assert_array_equal((p | q).data, (a_np > 1) | (b_np > 3))
    np.testing.assert_array_equal((~p).data, ~(a_np > 1))
    assert (p & q).dtype == mg.bool
    np.testing.assert_array_equal(mg.logical_xor(a, b).data, np.logical_xor(a_np, b_np))
    x = mg.tensor([1.0, 0.0])
    for f in (lambda: x | x, lambda: x & 1, lambda: 1 ^ x, lambda: ~x):
        with pytest.raises(TypeError, match="integer or bool"):
            f()
