"""minigen/ops/mathfns.py and the array functions of minigen/ops/special.py.

Elementwise ops go through ``check_op`` against numpy (forward float64/float32, non-contiguous
views, gradients by float64 central differences). The special functions are checked against
references built here from Python's ``math`` module and closed forms that share no code with
minigen (Gauss's digamma theorem, the normal CDF's continued fraction, Taylor series at 0,
inverse identities), over wide ranges including the tails; then against torch when installed.
"""
import math

import numpy as np
import pytest

import minigen as mg
from minigen.ops import special as S
from op_check import check_op

import fake_cupy

EULER = 0.57721566490153286061
vec = np.vectorize


def rel_err(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)


# ---------------------------------------------------------------------- elementwise
R = np.random.default_rng(0)
UNIT = R.uniform(-0.9, 0.9, (3, 4))
ANY = R.normal(0, 1.5, (3, 4))

UNARY = {
    "asin": (mg.asin, np.arcsin, UNIT),
    "acos": (mg.acos, np.arccos, UNIT),
    "atan": (mg.atan, np.arctan, ANY),
    "tan": (mg.tan, np.tan, UNIT),
    "sinh": (mg.sinh, np.sinh, ANY),
    "cosh": (mg.cosh, np.cosh, ANY),
    "asinh": (mg.asinh, np.arcsinh, ANY),
    "acosh": (mg.acosh, np.arccosh, 1.5 + np.abs(ANY)),
    "atanh": (mg.atanh, np.arctanh, UNIT),
    "log10": (mg.log10, np.log10, 0.1 + np.abs(ANY)),
    "trunc": (mg.trunc, np.trunc, np.round(ANY * 4) / 2 + 0.25),
    "erfc": (mg.erfc, vec(math.erfc), ANY),
    "lgamma": (mg.lgamma, vec(math.lgamma), np.abs(ANY) * 3 + 0.1),
    "ndtr": (mg.special.ndtr, vec(lambda z: 0.5 * math.erfc(-z / math.sqrt(2))), ANY),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_against_numpy(name):
    fn, ref, x = UNARY[name]
    check_op(fn, ref, [x], eps32=5e-5 if name in ("cosh", "sinh") else 2e-5)


def test_unary_methods_and_aliases():
    x = mg.tensor(np.abs(UNIT) + 0.05)
    for name in ("asin", "arcsin", "acos", "arccos", "atan", "arctan", "tan", "sinh", "cosh",
                 "lgamma", "digamma", "erfc", "erfinv", "log10", "trunc", "fix", "arcsinh",
                 "atanh", "logit", "nan_to_num", "isinf", "isposinf", "isneginf"):
        assert getattr(x, name)().shape == (3, 4), name
    np.testing.assert_allclose(mg.arctan2(x, 2.0).numpy(), np.arctan2(np.abs(UNIT) + 0.05, 2.0),
                               rtol=1e-15)
    # integer inputs compute in the default float dtype
    out = mg.asin(mg.tensor([0, 1]))
    assert out.dtype == mg.get_default_dtype()
    np.testing.assert_allclose(out.numpy(), [0, math.pi / 2], rtol=1e-6)


BINARY = {
    "atan2": (mg.atan2, np.arctan2, ANY, R.normal(0, 1, (4,))),
    "hypot": (mg.hypot, np.hypot, ANY, R.normal(0, 1, (3, 1))),
    "fmod": (mg.fmod, np.fmod, ANY * 3, np.array([1.3, -0.7, 2.1, -1.9])),
    "logaddexp": (mg.logaddexp, np.logaddexp, ANY * 3, R.normal(0, 3, (3, 4))),
    "xlogy": (mg.xlogy, lambda x, y: x * np.log(y), ANY, 0.2 + np.abs(R.normal(0, 1, (4,)))),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_against_numpy(name):
    fn, ref, a, b = BINARY[name]
    check_op(fn, ref, [a, b])


def test_fmod_sign_of_dividend_and_scalars():
    a = mg.tensor([-7.5, 7.5, -7.5, 7.5])
    np.testing.assert_array_equal(mg.fmod(a, mg.tensor([2.0, 2.0, -2.0, -2.0])).numpy(),
                                  [-1.5, 1.5, -1.5, 1.5])
    np.testing.assert_array_equal(mg.fmod(mg.tensor([-7, 7]), 3).numpy(), [-1, 1])
    np.testing.assert_array_equal(a.fmod(2.0).numpy(), [-1.5, 1.5, -1.5, 1.5])


def test_scalar_first_argument():
    y = mg.tensor([0.5, 2.0], dtype=mg.float64, requires_grad=True)
    out = mg.atan2(1.0, y)
    np.testing.assert_allclose(out.detach().numpy(), np.arctan2(1.0, [0.5, 2.0]), rtol=1e-15)
    out.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), -1.0 / (1.0 + np.array([0.5, 2.0]) ** 2),
                               rtol=1e-7)
    np.testing.assert_allclose(mg.xlogy(3, y).detach().numpy(), 3 * np.log([0.5, 2.0]))


def test_clamp_min_max():
    x = ANY
    check_op(lambda t: mg.clamp_min(t, -0.5), lambda a: np.maximum(a, -0.5), [x])
    check_op(lambda t: t.clamp_max(0.25), lambda a: np.minimum(a, 0.25), [x])
    lo = R.normal(0, 1, (4,))
    check_op(lambda t, m: mg.clamp_min(t, m), lambda a, m: np.maximum(a, m), [x, lo])


def test_nan_to_num_values_and_gradient():
    x = mg.tensor([np.nan, np.inf, -np.inf, 1.5], requires_grad=True)
    out = mg.nan_to_num(x)
    f = np.finfo(np.float32 if x.dtype == mg.float32 else np.float64)
    np.testing.assert_array_equal(out.detach().numpy(), [0.0, f.max, f.min, 1.5])
    np.testing.assert_array_equal(x.nan_to_num(1.0, 2.0, -3.0).detach().numpy(),
                                  [1.0, 2.0, -3.0, 1.5])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0, 1])   # PyTorch: grad · isfinite(x)
    np.testing.assert_array_equal(mg.nan_to_num(mg.tensor([1, 2])).numpy(), [1, 2])
    check_op(mg.nan_to_num, np.nan_to_num, [ANY])


def test_predicates():
    v = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -1e308])
    t = mg.tensor(v)
    np.testing.assert_array_equal(mg.isinf(t).numpy(), np.isinf(v))
    np.testing.assert_array_equal(t.isposinf().numpy(), np.isposinf(v))
    np.testing.assert_array_equal(mg.isneginf(t).numpy(), np.isneginf(v))
    assert mg.isinf(mg.tensor([1, 2])).numpy().tolist() == [False, False]
    assert mg.isinf(t).dtype == mg.bool


def test_isclose_allclose():
    a = np.array([1.0, 1.0, np.inf, np.nan, 0.0, -np.inf, 1e-9])
    b = np.array([1.0 + 1e-6, 1.0 + 1e-4, np.inf, np.nan, 1e-9, np.inf, 0.0])
    ta, tb = mg.tensor(a), mg.tensor(b)
    np.testing.assert_array_equal(mg.isclose(ta, tb).numpy(), np.isclose(a, b))
    np.testing.assert_array_equal(ta.isclose(tb, equal_nan=True).numpy(),
                                  np.isclose(a, b, equal_nan=True))
    np.testing.assert_array_equal(mg.isclose(ta, tb, rtol=0, atol=0).numpy(), a == b)
    assert mg.allclose(mg.tensor([1.0, 2.0]), mg.tensor([1.0, 2.0 + 1e-7])) is True
    assert mg.tensor([1.0, 2.0]).allclose(mg.tensor([1.0, 2.1])) is False
    assert mg.allclose(mg.tensor([1.0]), mg.tensor([1.0 + 1e-3]), rtol=1e-2)
    with pytest.raises(RuntimeError, match="non-negative"):
        mg.isclose(ta, tb, rtol=-1)
    with pytest.raises(RuntimeError, match="same dtype"):
        mg.isclose(ta, mg.tensor([1], dtype=mg.int64))


# ---------------------------------------------------------------------- logit, xlogy, logaddexp
def test_logit_with_and_without_eps():
    p = R.uniform(0.05, 0.95, (3, 4))
    check_op(mg.logit, lambda a: np.log(a / (1 - a)), [p])
    q = np.array([0.01, 0.2, 0.5, 0.93, 0.99])
    check_op(lambda t: mg.logit(t, eps=0.05),
             lambda a: np.log(np.clip(a, 0.05, 0.95) / (1 - np.clip(a, 0.05, 0.95))), [q])
    x = mg.tensor([0.0, 1.0, 0.5])
    assert mg.logit(x).numpy().tolist() == [-math.inf, math.inf, 0.0]
    with pytest.raises(ValueError, match="eps"):
        mg.logit(x, eps=0.7)


def test_xlogy_zero_conventions_and_gradients():
    x = mg.tensor([0.0, 0.0, 0.0, 2.0, 0.0], dtype=mg.float64, requires_grad=True)
    y = mg.tensor([0.0, np.inf, 3.0, 3.0, np.nan], dtype=mg.float64, requires_grad=True)
    out = mg.xlogy(x, y)
    np.testing.assert_array_equal(out.detach().numpy()[:4], [0.0, 0.0, 0.0, 2 * math.log(3)])
    assert np.isnan(out.detach().numpy()[4])                       # NaN y propagates
    out[:4].sum().backward()
    # PyTorch: ∂/∂x = xlogy(x ≠ 0, y) (0 where x = 0), ∂/∂y = x / y
    np.testing.assert_allclose(x.grad.numpy()[:4], [0, 0, 0, math.log(3)])
    np.testing.assert_allclose(y.grad.numpy()[1:4], [0, 0, 2 / 3])


def test_logaddexp_extremes():
    a = mg.tensor([1000.0, -1000.0, -np.inf, 0.0], dtype=mg.float64, requires_grad=True)
    b = mg.tensor([1000.0, -1001.0, -np.inf, -np.inf], dtype=mg.float64, requires_grad=True)
    out = mg.logaddexp(a, b)
    np.testing.assert_allclose(out.detach().numpy(),
                               [1000 + math.log(2), -1000 + math.log1p(math.exp(-1)),
                                -np.inf, 0.0], rtol=1e-15)
    out.sum().backward()
    s = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(a.grad.numpy(), [0.5, s, 0.5, 1.0], rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), [0.5, 1 - s, 0.5, 0.0], rtol=1e-12)


# ---------------------------------------------------------------------- lgamma
def test_lgamma_wide_range_against_math():
    x = np.concatenate([
        np.linspace(-30.3, 40.7, 1501), np.geomspace(1e-300, 1e-1, 40), np.geomspace(10, 1e300, 60),
        [0.5, 1.0, 2.0, 1 + 1e-9, 2 - 1e-9, 9.999999, 10.0, 10.000001],
        # near the poles at the negative integers and 0
        [-1 + 1e-12, -1 - 1e-12, -2 + 1e-8, -3 - 1e-10, -20 + 1e-6, -1e-300, 1e-320,
         -1e-320, -0.3, -0.5, -0.7]])
    x = x[(x > 0) | (x != np.round(x))]                      # the poles: below
    ref = np.array([math.lgamma(v) for v in x])
    got = S.lgamma(x)
    # relative error where |log Γ| ≥ 1, absolute below (the zeros at 1 and 2)
    err = np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)
    assert err.max() < 2e-14, (err.max(), x[err.argmax()])


def test_lgamma_poles_and_infinities():
    x = np.array([0.0, -0.0, -1.0, -7.0, np.inf, -np.inf, np.nan])
    got = S.lgamma(x)
    assert np.isposinf(got[:6]).all() and np.isnan(got[6])
    assert S.lgamma(np.array([3.5], np.float32)).dtype == np.float32


# ---------------------------------------------------------------------- digamma and trigamma
def gauss_digamma(r, m):
    """ψ(r/m), 0 < r < m, by Gauss's digamma theorem:
    ψ(r/m) = −γ − log 2m − (π/2) cot(πr/m) + 2 Σ_{n=1}^{⌈m/2⌉−1} cos(2πnr/m) log sin(πn/m)."""
    s = sum(math.cos(2 * math.pi * n * r / m) * math.log(math.sin(math.pi * n / m))
            for n in range(1, (m + 1) // 2))
    return -EULER - math.log(2 * m) - math.pi / 2 / math.tan(math.pi * r / m) + 2 * s


def digamma_ref(r, m, k):
    """ψ(r/m + k) for integer k (either sign) by ψ(x + 1) = ψ(x) + 1/x."""
    x = r / m
    v = gauss_digamma(r, m)
    for j in range(k):
        v += 1 / (x + j)
    for j in range(1, -k + 1):
        v -= 1 / (x - j)
    return v


def test_digamma_against_gauss_theorem():
    pts = [(r, m, k) for m in (2, 3, 4, 5, 7, 8, 10, 13) for r in range(1, m)
           for k in (-12, -3, -1, 0, 1, 2, 5, 9, 30)]
    x = np.array([r / m + k for r, m, k in pts])
    ref = np.array([digamma_ref(*p) for p in pts])
    err = np.abs(S.digamma(x) - ref) / np.maximum(np.abs(ref), 1.0)
    assert err.max() < 1e-13, (err.max(), x[err.argmax()])
    # integers: ψ(n + 1) = −γ + H_n; large x: ψ(x) = log x − 1/2x − 1/12x² + O(x⁻⁴)
    n = np.arange(1, 60)
    h = np.cumsum(1.0 / n)
    np.testing.assert_allclose(S.digamma(n + 1.0), -EULER + h, rtol=1e-14)
    big = np.geomspace(1e4, 1e300, 30)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(S.digamma(big), np.log(big) - 0.5 / big - 1 / (12 * big * big),
                                   rtol=1e-15)
    with np.errstate(all="ignore"):
        assert S.digamma(np.array([0.0]))[0] == -np.inf
        assert np.isnan(S.digamma(np.array([-1.0, -4.0, np.nan]))).all()


def test_trigamma_closed_forms():
    # ψ'(n + 1) = π²/6 − Σ_{k ≤ n} 1/k², ψ'(n + ½) = π²/2 − Σ_{k ≤ n} 4/(2k − 1)²,
    # reflection ψ'(1 − x) + ψ'(x) = π²/sin²(πx) checked at x = −n − ½
    n = np.arange(0, 40)
    inv_sq = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 40) ** 2)])
    # (the references lose digits to cancellation: an absolute floor of a few ulp of π²/6)
    np.testing.assert_allclose(S.trigamma(n + 1.0), math.pi ** 2 / 6 - inv_sq, rtol=1e-14,
                               atol=2e-15)
    odd = np.concatenate([[0.0], np.cumsum(4.0 / (2 * np.arange(1, 40) - 1.0) ** 2)])
    half = math.pi ** 2 / 2 - odd
    np.testing.assert_allclose(S.trigamma(n + 0.5), half, rtol=1e-14, atol=5e-15)
    # ψ'(−n − ½) = π² − ψ'(n + 3/2)
    np.testing.assert_allclose(S.trigamma(-n[:-1] - 0.5), math.pi ** 2 - half[1:], rtol=1e-13)


def test_lgamma_digamma_gradients():
    x = np.array([0.3, 1.4616321449683623, 2.5, 7.25, 15.0, -0.4, -2.7, 150.0])
    check_op(mg.lgamma, vec(math.lgamma), [x], eps32=1e-4)      # gradient: digamma
    ref = np.array([digamma_ref(3, 10, 0), digamma_ref(1, 2, 3), digamma_ref(1, 4, 20),
                    digamma_ref(3, 5, -1), digamma_ref(1, 3, -3)])
    pts = np.array([0.3, 3.5, 20.25, -0.4, 1 / 3 - 3])
    check_op(mg.digamma, lambda a: ref, [pts], atol=1e-12, rtol=1e-12, eps32=1e-4)


# ---------------------------------------------------------------------- erfinv
def test_erfinv_inverse_identity_and_tails():
    y = np.concatenate([np.linspace(-0.999, 0.999, 801), 1 - np.geomspace(1e-16, 1e-1, 60),
                        -1 + np.geomspace(1e-16, 1e-1, 60), [0.5, -0.5, 0.5 - 1e-16]])
    x = S.erfinv(y)
    # residual through math.erf / math.erfc: in the tails against 1 − |y| (exact for |y| ≥ ½)
    central = np.abs(y) <= 0.5
    res_c = np.array([math.erf(v) for v in x[central]]) - y[central]
    assert np.abs(res_c).max() <= 2e-16 * np.abs(y[central]).max() + 1e-300
    a = np.abs(y[~central])
    res_t = rel_err([math.erfc(abs(v)) for v in x[~central]], 1 - a)
    assert res_t.max() < 1e-14, res_t.max()
    # residual small ⇒ x accurate: |δx| = |δy| / erf'(x); the conditioning bound
    np.testing.assert_array_equal(np.sign(x), np.sign(y))


def test_erfinv_small_and_special_values():
    # Taylor at 0: erfinv(y) = (√π/2)(y + (π/12) y³ + …)
    y = np.array([1e-300, 1e-100, 1e-10, -3e-8])
    np.testing.assert_allclose(S.erfinv(y), math.sqrt(math.pi) / 2 * (y + math.pi / 12 * y ** 3),
                               rtol=1e-15)
    with np.errstate(all="ignore"):
        out = S.erfinv(np.array([1.0, -1.0, 1.5, -2.0, np.nan, 0.0]))
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2:5]).all() and out[5] == 0
    check_op(mg.erfinv, lambda a: S.erfinv(a), [np.array([-0.9, -0.3, 0.0, 0.45, 0.8, 0.99])],
             float32=False)   # forward from S (checked above); the point is the gradient


def test_erfinv_gradient_in_the_tail():
    y = mg.tensor([1 - 1e-10, -0.999999], dtype=mg.float64, requires_grad=True)
    x = mg.erfinv(y)
    x.sum().backward()
    xv = x.detach().numpy()
    np.testing.assert_allclose(y.grad.numpy(), 1 / (2 / math.sqrt(math.pi) * np.exp(-xv ** 2)),
                               rtol=1e-12)


# ---------------------------------------------------------------------- ndtr, log_ndtr, ndtri
def mills_cf(z):
    """φ(z)/Φ(z) for z < 0 from the continued fraction of the Mills ratio,
    Φ(z) = φ(z) / (|z| + 1/(|z| + 2/(|z| + 3/(|z| + …)))), evaluated bottom-up with 400 terms
    (converges for |z| ≳ 3)."""
    t = -z
    d = t
    for k in range(400, 0, -1):
        d = t + k / d
    return d


def log_ndtr_cf(z):
    """log Φ(z) = log φ(z) − log(φ/Φ), all in log space: no underflow at any z < −3."""
    return -0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(mills_cf(z))


def test_log_ndtr_against_math_and_continued_fraction():
    z = np.concatenate([np.linspace(-36.9, 38.0, 1501), [0.0, 1e-10, -1e-10, 8.3, 30.0]])
    ref = []
    for v in z:   # independent references: math.erfc in log form, log1p for the upper tail
        ref.append(math.log1p(-0.5 * math.erfc(v / math.sqrt(2))) if v > 0
                   else math.log(0.5 * math.erfc(-v / math.sqrt(2))))
    err = rel_err(S.log_ndtr(z), ref)
    assert err.max() < 1e-14, (err.max(), z[err.argmax()])
    # the continued fraction reference agrees with math.erfc where both work
    for v in (-5.0, -20.0, -36.0):
        assert abs(log_ndtr_cf(v) - math.log(0.5 * math.erfc(-v / math.sqrt(2)))) \
            < 1e-14 * abs(log_ndtr_cf(v))
    # (erfc(−z/√2) is subnormal from z ≈ −37.5: the series must take over before)
    far = np.array([-36.99, -37.01, -37.6, -38.0, -38.4, -40.0, -60.0, -200.0, -1e4, -1e150])
    err = rel_err(S.log_ndtr(far), [log_ndtr_cf(v) for v in far])
    assert err.max() < 1e-15, err.max()
    with np.errstate(all="ignore"):
        out = S.log_ndtr(np.array([-np.inf, np.inf, np.nan]))
    assert out[0] == -np.inf and out[1] == 0 and np.isnan(out[2])


def test_log_ndtr_gradient_at_minus_40():
    z = np.array([-40.0, -12.5, -1.0, 0.5, 6.0])
    check_op(mg.special.log_ndtr,
             lambda a: np.array([log_ndtr_cf(v) if v < -5 else
                                 math.log1p(-0.5 * math.erfc(v / math.sqrt(2))) if v > 0 else
                                 math.log(0.5 * math.erfc(-v / math.sqrt(2))) for v in a]), [z], atol=0, rtol=2e-14, eps32=1e-5)
    zs = [-36.0, -37.6, -38.4, -40.0, -1e3]
    t = mg.tensor(zs, dtype=mg.float64, requires_grad=True)
    mg.special.log_ndtr(t).sum().backward()
    # d/dz log Φ(z) = φ(z)/Φ(z) (≈ |z| in the tail), where φ and Φ underflow (from −37.5);
    # above −37 Φ comes from erfc(−z/√2), whose rounded argument costs ≈ z²·ε relative
    np.testing.assert_allclose(t.grad.numpy(), [mills_cf(v) for v in zs], rtol=2e-13)


def test_ndtri_inverts_ndtr_everywhere():
    p = np.concatenate([np.geomspace(1e-300, 0.2, 300), np.linspace(0.2, 0.8, 301),
                        1 - np.geomspace(1e-16, 0.2, 100), [0.5, 0.5 + 2 ** -40, 0.5 - 1e-13]])
    x = S.ndtri(p)
    # the residual Φ(x) − p through math.erfc (the tail on either side without cancellation),
    # turned into the error in x it implies, δx = residual / φ(x): within a few ulp of x
    for xv, pv in zip(x, p):
        res = (0.5 * math.erfc(-xv / math.sqrt(2)) - pv if pv < 0.5 else
               (1 - pv) - 0.5 * math.erfc(xv / math.sqrt(2)))
        dx = res / (math.exp(-0.5 * xv * xv) / math.sqrt(2 * math.pi))
        assert abs(dx) <= 1e-15 * max(abs(xv), 1.0), (pv, xv, dx)
    # near ½: Φ(x) − ½ = ½ erf(x/√2) ≈ x/√(2π): relative accuracy of x itself
    q = np.array([2 ** -40, -1e-13, 1e-5])
    np.testing.assert_allclose(S.ndtri(0.5 + q), (0.5 + q - 0.5) * math.sqrt(2 * math.pi),
                               rtol=1e-9)
    np.testing.assert_allclose(S.ndtri(np.array([0.975, 0.5, 0.025])),
                               [1.959963984540054, 0.0, -1.959963984540054], rtol=1e-15)
    with np.errstate(all="ignore"):
        out = S.ndtri(np.array([0.0, 1.0, -0.1, 1.1, np.nan]))
    assert out[0] == -np.inf and out[1] == np.inf and np.isnan(out[2:]).all()


def test_ndtri_ndtr_gradients():
    p = np.array([1e-6, 0.03, 0.4, 0.5, 0.77, 0.999])
    check_op(mg.special.ndtri, lambda a: S.ndtri(a), [p], float32=False, grad_rtol=1e-4)
    z = mg.tensor([-3.0, 0.0, 2.0], dtype=mg.float64, requires_grad=True)
    mg.special.ndtr(z).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), np.exp(-0.5 * np.array([9.0, 0, 4])) /
                               math.sqrt(2 * math.pi), rtol=1e-12)


def test_erfc_tail_is_relative():
    x = np.array([5.0, 10.0, 26.0])
    np.testing.assert_allclose(mg.erfc(mg.tensor(x, dtype=mg.float64)).numpy(), [math.erfc(v) for v in x],
                               rtol=1e-15)


def test_special_namespace():
    sp = mg.special
    for name in ("ndtr", "log_ndtr", "ndtri", "erf", "erfc", "erfinv", "gammaln", "digamma",
                 "psi", "xlogy", "logit", "expit", "log1p", "expm1", "logsumexp"):
        assert callable(getattr(sp, name)), name
    x = mg.tensor([0.3, 2.0], dtype=mg.float64)
    np.testing.assert_allclose(sp.gammaln(x).numpy(), [math.lgamma(0.3), 0.0], atol=1e-15)
    assert sp.psi is sp.digamma
    import minigen.ops.special as arrays
    assert sp is not arrays


# ---------------------------------------------------------------------- torch as an oracle
def test_against_torch():
    torch = pytest.importorskip("torch")
    xs = np.concatenate([np.linspace(-25.5, 40, 301), np.geomspace(1e-8, 1e8, 50)])
    t = torch.from_numpy(xs)
    np.testing.assert_allclose(S.lgamma(xs), torch.lgamma(t).numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(S.digamma(xs), torch.digamma(t).numpy(), rtol=1e-12,
                               atol=1e-12)
    y = np.linspace(-0.9999, 0.9999, 301)
    np.testing.assert_allclose(S.erfinv(y), torch.erfinv(torch.from_numpy(y)).numpy(),
                               rtol=1e-14)
    p = np.concatenate([np.geomspace(1e-300, 0.4, 100), np.linspace(0.4, 0.999999, 50)])
    np.testing.assert_allclose(S.ndtri(p), torch.special.ndtri(torch.from_numpy(p)).numpy(),
                               rtol=1e-14)
    z = np.linspace(-60, 8, 301)
    np.testing.assert_allclose(S.log_ndtr(z),
                               torch.special.log_ndtr(torch.from_numpy(z)).numpy(), rtol=1e-13)
    a, b = R.normal(0, 3, (2, 50))
    for mine, theirs in ((mg.atan2, torch.atan2), (mg.hypot, torch.hypot),
                         (mg.fmod, torch.fmod), (mg.logaddexp, torch.logaddexp),
                         (mg.xlogy, torch.xlogy)):
        np.testing.assert_allclose(mine(mg.tensor(a), mg.tensor(b)).numpy(),
                                   theirs(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                                   rtol=1e-14, atol=1e-300)
    # gradients under one upstream gradient
    g = R.normal(size=50)
    for mine, theirs, x in ((mg.lgamma, torch.lgamma, np.abs(a) + 0.1),
                            (mg.digamma, torch.digamma, np.abs(a) + 0.1),
                            (mg.erfinv, torch.erfinv, np.tanh(a)),
                            (mg.special.log_ndtr, torch.special.log_ndtr, a * 8),
                            (mg.special.ndtri, torch.special.ndtri, 1 / (1 + np.exp(-a)))):
        tm = mg.tensor(x, requires_grad=True)
        mine(tm).backward(mg.tensor(g))
        tt = torch.from_numpy(x).requires_grad_()
        theirs(tt).backward(torch.from_numpy(g))
        # torch's trigamma (digamma's gradient) is good to ~1e-9 only
        np.testing.assert_allclose(tm.grad.numpy(), tt.grad.numpy(), rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------- the CuPy code path
def test_xp_formulas_on_the_device_stand_in(monkeypatch):
    """lgamma/digamma/trigamma written against ``xp`` run on a non-numpy array module (the
    fallback where cupyx.scipy.special does not import) and agree with the numpy results."""
    fake_cupy.install(monkeypatch)
    x = np.array([-2.5, -0.3, 0.2, 1.0, 3.7, 12.0, 1e5])
    t = mg.tensor(x, device="cuda", requires_grad=True)
    out = mg.lgamma(t)
    out.sum().backward()
    np.testing.assert_allclose(out.detach().data.get(), S.lgamma(x), rtol=1e-15)
    np.testing.assert_allclose(t.grad.data.get(), S.digamma(x), rtol=1e-15)
    np.testing.assert_allclose(mg.digamma(t).detach().data.get(), S.digamma(x), rtol=1e-15)
    for fn, ref in ((mg.atan2, np.arctan2), (mg.hypot, np.hypot), (mg.fmod, np.fmod),
                    (mg.logaddexp, np.logaddexp)):
        np.testing.assert_allclose(fn(t, t * 0.5 + 1).detach().data.get(),
                                   ref(x, x * 0.5 + 1), rtol=1e-15)
    assert mg.isclose(t, t).data.get().all()
