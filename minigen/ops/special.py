"""Special functions numpy lacks, on arrays (numpy or CuPy); the autograd ops are in
``mathfns.py``.

erf comes from the native extension (C++ ``std::erf``, OpenMP) when it is built, from
``cupyx.scipy.special`` on the GPU, and from Python's ``math.erf`` element by element otherwise
(exact, but slow); erfc likewise from ``math.erfc`` (no native kernel yet).

On CuPy every function here uses ``cupyx.scipy.special`` when it imports. lgamma, digamma and
trigamma are also written out against the array module ``xp`` (the fallback on CuPy without
cupyx.scipy, and the only version on numpy); erfinv, ndtri and log_ndtr build on erf/erfc.
On numpy the float32 inputs compute in float64 and round once at the end.
"""
from __future__ import annotations

import math

import numpy as np

_erf_py = np.frompyfunc(math.erf, 1, 1)
_erfc_py = np.frompyfunc(math.erfc, 1, 1)

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _is_numpy(x):
    return isinstance(x, (np.ndarray, np.generic))


def _xp(x):
    if _is_numpy(x):
        return np
    from ..backend import xp_of
    return xp_of(x)


def _cupy_special():
    """cupyx.scipy.special, or None where it does not import (a stripped CuPy, the test
    stand-in)."""
    try:
        import cupyx.scipy.special as cs
    except ImportError:
        return None
    return cs


def _f64(x):
    """(x as float64, its own float dtype): numpy computes in float64, rounds once at the end."""
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return x.astype(np.float64, copy=False), dt


def erf(x):
    if _is_numpy(x):
        from .. import _native
        if _native.available() and x.dtype in (np.float32, np.float64):
            # (ascontiguousarray makes 0-d input 1-d: reshape back)
            return _native.module().erf(np.ascontiguousarray(x)).reshape(x.shape)
        # frompyfunc gives an object array (a bare Python float for 0-d input)
        return np.asarray(_erf_py(x), dtype=x.dtype)
    import cupyx.scipy.special as cs  # cupy arrays
    return cs.erf(x)


def erfc(x):
    """1 − erf(x) without the cancellation for large x: Python's math.erfc (relative error a
    few ulp down to the underflow at x ≈ 26.5)."""
    if _is_numpy(x):
        return np.asarray(_erfc_py(x), dtype=x.dtype)
    import cupyx.scipy.special as cs
    return cs.erfc(x)


# ---------------------------------------------------------------------- log Γ, ψ, ψ'
# Lanczos' approximation with g = 7, n = 9 (the coefficients published with Numerical Recipes'
# gammln and Godfrey's table):
#   Γ(x + 1) = √(2π) (x + g + ½)^(x + ½) e^(−(x + g + ½)) A_g(x),
#   A_g(x) = c₀ + Σ_{k=1}^{8} c_k / (x + k),
# relative error below 2e-15 for Re x > 0. It serves 0.5 ≤ x < 10; Stirling's series serves
# x ≥ 10; the reflection formula x < 0.5. Near the zeros of log Γ at 1 and 2 the error is
# absolute (≈ 1e-15), not relative.
_LANCZOS_G = 7.0
_LANCZOS = (0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012,
            9.9843695780195716e-6, 1.5056327351493116e-7)

# Stirling: log Γ(x) = (x − ½) log x − x + ½ log 2π + Σ_k B_2k / (2k (2k − 1) x^(2k − 1)),
# B_2k the Bernoulli numbers: 1/12, −1/360, 1/1260, −1/1680, 1/1188, −691/360360.
# For x ≥ 10 the first omitted term (1/156 x⁻¹¹) is below 1e-13 absolute, 1e-14 relative.
_STIRLING = (1.0 / 12, -1.0 / 360, 1.0 / 1260, -1.0 / 1680, 1.0 / 1188, -691.0 / 360360)


def _lgamma_pos(xp, x):
    """log Γ(x) for x ≥ 0.5 (x float64)."""
    small = x < 10.0
    xs = xp.where(small, x, 1.0) - 1.0          # Lanczos in the form Γ(x) = Γ((x − 1) + 1)
    a = _LANCZOS[0] + sum(_LANCZOS[k] / (xs + k) for k in range(1, 9))
    t = xs + _LANCZOS_G + 0.5
    lanczos = _HALF_LOG_2PI + (xs + 0.5) * xp.log(t) - t + xp.log(a)
    xl = xp.where(small, 10.0, x)
    r = 1.0 / (xl * xl)
    series = 0.0
    for c in reversed(_STIRLING):
        series = series * r + c
    stirling = (xl - 0.5) * xp.log(xl) - xl + _HALF_LOG_2PI + series / xl
    return xp.where(small, lanczos, stirling)


def _sinpi(xp, x):
    """sin(πx) with the argument reduced first (x − round(x), exact), so that it is 0 at the
    integers and keeps its relative accuracy near them."""
    n = xp.round(x)
    s = xp.sin(math.pi * (x - n))
    return xp.where(xp.remainder(n, 2.0) == 0, s, -s)


def lgamma(x):
    """log |Γ(x)|; +∞ at 0 and the negative integers (poles), +∞ at ±∞ (as PyTorch)."""
    xp = _xp(x)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.gammaln(x)
    x64, dt = (_f64(x) if xp is np else (x, x.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # x ≤ −½: reflection Γ(x) Γ(1 − x) = π / sin(πx), so
        #   log|Γ(x)| = log π − log|sin πx| − log Γ(1 − x);
        # −½ < x < ½: Γ(x) = Γ(1 + x)/x, log|Γ(x)| = log Γ(1 + x) − log|x| (no sin(πx), which
        # loses its relative accuracy for subnormal x)
        refl = x64 <= -0.5
        near0 = ~refl & (x64 < 0.5)
        y = xp.where(refl, 1.0 - x64, xp.where(near0, 1.0 + x64, x64))
        pos = _lgamma_pos(xp, y)
        out = xp.where(refl, math.log(math.pi) - xp.log(xp.abs(_sinpi(xp, x64))) - pos,
                       xp.where(near0, pos - xp.log(xp.abs(x64)), pos))
        out = xp.where(xp.isinf(x64), math.inf, out)
    return out.astype(dt, copy=False)


# digamma ψ = (log Γ)': the recurrence ψ(x) = ψ(x + 1) − 1/x lifts x to ≥ 10, then
#   ψ(x) = log x − 1/(2x) − Σ_k B_2k / (2k x^(2k)) = log x − 1/2x − 1/12x² + 1/120x⁴ − 1/252x⁶
#          + 1/240x⁸ − 1/132x¹⁰ + 691/32760x¹² − 1/12x¹⁴,
# first omitted term 3617/8160 x⁻¹⁶ < 5e-17 at x = 10. x < 0 by reflection:
#   ψ(1 − x) − ψ(x) = π cot πx.
# The sum of the recurrence's 1/x terms is the error's main source: a few ulp of the result,
# absolute near the zero at x₀ ≈ 1.4616.
_DIGAMMA = (1.0 / 12, -1.0 / 120, 1.0 / 252, -1.0 / 240, 1.0 / 132, -691.0 / 32760, 1.0 / 12)
# trigamma ψ' by ψ'(x) = ψ'(x + 1) + 1/x² and, for x ≥ 10,
#   ψ'(x) = 1/x + 1/2x² + Σ_k B_2k / x^(2k + 1) = 1/x + 1/2x² + 1/6x³ − 1/30x⁵ + 1/42x⁷
#           − 1/30x⁹ + 5/66x¹¹ − 691/2730x¹³ + 7/6x¹⁵,
# reflection ψ'(1 − x) + ψ'(x) = π² / sin² πx.
_TRIGAMMA = (1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66, -691.0 / 2730, 7.0 / 6)


def _lift(xp, x, term):
    """(x lifted to ≥ 10 by unit steps, Σ term(x + k) over the steps taken), vectorised."""
    acc = xp.zeros_like(x)
    for _ in range(10):
        low = x < 10.0
        acc = acc + xp.where(low, term(xp.where(low, x, 1.0)), 0.0)
        x = xp.where(low, x + 1.0, x)
    return x, acc


def _digamma_pos(xp, x):
    x, acc = _lift(xp, x, lambda v: 1.0 / v)
    r = 1.0 / (x * x)
    series = 0.0
    for c in reversed(_DIGAMMA):
        series = series * r + c
    return xp.log(x) - 0.5 / x - r * series - acc


def digamma(x):
    """ψ(x) = d/dx log Γ(x); −∞ at 0, NaN at the negative integers (as PyTorch)."""
    xp = _xp(x)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.digamma(x)
    x64, dt = (_f64(x) if xp is np else (x, x.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        neg = x64 < 0.5
        pos = _digamma_pos(xp, xp.where(neg, 1.0 - x64, x64))
        # π cot πx = π cos πx / sin πx with the reduced sine (exact zeros at the integers)
        n = xp.round(x64)
        cot = math.pi * xp.cos(math.pi * (x64 - n)) / xp.sin(math.pi * (x64 - n))
        out = xp.where(neg, pos - cot, pos)
        # ψ → −∞ as x → 0⁺ and +∞ as x → 0⁻: the sign of the zero picks (as PyTorch)
        out = xp.where(x64 == 0, xp.where(xp.signbit(x64), math.inf, -math.inf), out)
        out = xp.where(neg & (x64 == n) & (x64 != 0), math.nan, out)
        out = xp.where(x64 == math.inf, math.inf, out)
    return out.astype(dt, copy=False)


def trigamma(x):
    """ψ'(x) (the gradient of digamma); +∞ at 0 and the negative integers."""
    xp = _xp(x)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.polygamma(1, x)
    x64, dt = (_f64(x) if xp is np else (x, x.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        neg = x64 < 0.5
        y = xp.where(neg, 1.0 - x64, x64)
        y, acc = _lift(xp, y, lambda v: 1.0 / (v * v))
        r = 1.0 / (y * y)
        series = 0.0
        for c in reversed(_TRIGAMMA):
            series = series * r + c
        pos = 1.0 / y + 0.5 * r + series * r / y + acc
        s = _sinpi(xp, x64)
        out = xp.where(neg, (math.pi * math.pi) / (s * s) - pos, pos)
        out = xp.where(neg & (s == 0), math.inf, out)
        out = xp.where(x64 == math.inf, 0.0, out)
    return out.astype(dt, copy=False)


# ---------------------------------------------------------------------- the normal quantile
# Acklam's rational approximation of Φ⁻¹ (P. J. Acklam, "An algorithm for computing the
# inverse normal cumulative distribution function", 2003): relative error below 1.15e-9 over
# (0, 1); central region |p − ½| ≤ ½ − 0.02425 in q = p − ½, tails in t = √(−2 log p).
# One Halley step on Φ (or erf) then gives full double precision (cubic convergence).
_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
      1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
      6.680131188771972e+01, -1.328068155288572e+01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
      -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
      3.754408661907416e+00)
_P_LOW = 0.02425


def _poly(coeffs, x):
    out = 0.0
    for c in coeffs:
        out = out * x + c
    return out


def _acklam(xp, q, tail):
    """Φ⁻¹(½ + q) for q = p − ½ ∈ (−½, ½) and tail = min(p, 1 − p) (both exact inputs)."""
    r = q * q
    central = q * _poly(_A, r) / (_poly(_B, r) * r + 1.0)
    t = xp.sqrt(-2.0 * xp.log(xp.where(tail > 0, tail, 1.0)))
    lower = _poly(_C, t) / (_poly(_D, t) * t + 1.0)          # Φ⁻¹(tail) < 0
    lower = xp.where(q > 0, -lower, lower)
    return xp.where(tail < _P_LOW, lower, central)


def ndtri(p):
    """Φ⁻¹(p), the standard normal quantile; ∓∞ at 0 and 1, NaN outside [0, 1]."""
    xp = _xp(p)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.ndtri(p)
    p64, dt = (_f64(p) if xp is np else (p, p.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = p64 - 0.5                                   # exact for p ≥ ¼
        upper = p64 > 0.5
        tail = xp.where(upper, 1.0 - p64, p64)          # 1 − p exact for p ≥ ½
        x = _acklam(xp, q, tail)
        # Halley on f(x) = Φ(x) − p, f' = φ(x), f'' = −x φ(x): x ← x − u / (1 + x u / 2),
        # u = f / φ(x). f is formed without cancellation: through erf in the centre
        # (Φ(x) − p = ½ erf(x/√2) − q), through erfc in the tails.
        central = xp.abs(q) <= 0.25
        f_c = 0.5 * erf(xp.where(central, x, 0.0) / _SQRT2) - q
        z = xp.where(central, 0.0, x)
        f_lo = 0.5 * erfc(-z / _SQRT2) - p64                # Φ(x) − p, x < 0
        f_hi = tail - 0.5 * erfc(z / _SQRT2)                # (1 − p) − (1 − Φ(x)), x > 0
        f = xp.where(central, f_c, xp.where(upper, f_hi, f_lo))
        u = f * _SQRT2PI * xp.exp(0.5 * x * x)
        x = x - u / (1.0 + 0.5 * x * u)
        x = xp.where(p64 == 0, -math.inf, xp.where(p64 == 1, math.inf, x))
        x = xp.where((p64 < 0) | (p64 > 1) | xp.isnan(p64), math.nan, x)
    return x.astype(dt, copy=False)


def erfinv(y):
    """erf⁻¹(y) = Φ⁻¹((1 + y)/2) / √2, computed in y itself (no 1 + y rounding near 0):
    Acklam's start in q = y/2, one Halley step on erf (|y| ≤ ½) or erfc (|y| > ½, where
    1 − |y| is exact). ±∞ at ±1, NaN outside [−1, 1]."""
    xp = _xp(y)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.erfinv(y)
    y64, dt = (_f64(y) if xp is np else (y, y.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = xp.abs(y64)
        c = 1.0 - a                                        # exact for |y| ≥ ½
        x = -_acklam(xp, -0.5 * a, 0.5 * c) / _SQRT2       # erfinv(|y|) ≥ 0
        # Halley on f(x) = erf(x) − |y|, f' = 2/√π e^(−x²), f'' = −2x f': x ← x − u/(1 + x u)
        central = a <= 0.5
        f_c = erf(xp.where(central, x, 0.0)) - a
        f_t = c - erfc(xp.where(central, 0.0, x))
        f = xp.where(central, f_c, f_t)
        u = f * (0.5 * math.sqrt(math.pi)) * xp.exp(x * x)
        x = x - u / (1.0 + x * u)
        x = xp.where(a == 1, math.inf, x)
        x = xp.where(y64 < 0, -x, x)
        x = xp.where((a > 1) | xp.isnan(y64), math.nan, x)
    return x.astype(dt, copy=False)


def ndtr(z):
    """Φ(z) = ½ erfc(−z/√2) (relative accuracy in the lower tail)."""
    xp = _xp(z)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.ndtr(z)
    z64, dt = (_f64(z) if xp is np else (z, z.dtype))
    return (0.5 * erfc(-z64 / _SQRT2)).astype(dt, copy=False)


def log_ndtr(z):
    """log Φ(z), accurate for every z: log(½ erfc(−z/√2)) for −37 ≤ z ≤ 0 (erfc keeps its
    relative accuracy there), log1p(−½ erfc(z/√2)) for z > 0 (the small upper tail), and for
    z < −37 (where erfc nears underflow) the asymptotic series
        log Φ(z) = −z²/2 − log(−z √(2π)) + log(1 − 1/z² + 3/z⁴ − 15/z⁶ + 105/z⁸ − 945/z¹⁰),
    whose first omitted term, 10395/z¹², is below 1e-15 there."""
    xp = _xp(z)
    if xp is not np:
        cs = _cupy_special()
        if cs is not None:
            return cs.log_ndtr(z)
    z64, dt = (_f64(z) if xp is np else (z, z.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        far = z64 < -37.0
        pos = z64 > 0.0
        zm = xp.where(far | pos, 0.0, z64)
        mid = xp.log(0.5 * erfc(-zm / _SQRT2))
        zp = xp.where(pos, z64, 0.0)
        up = xp.log1p(-0.5 * erfc(zp / _SQRT2))
        zf = xp.where(far, z64, -40.0)
        tail = -0.5 * zf * zf - xp.log(-zf * _SQRT2PI) + xp.log(_tail_series(1.0 / (zf * zf)))
        out = xp.where(far, tail, xp.where(pos, up, mid))
        out = xp.where(z64 == -math.inf, -math.inf, out)
        out = xp.where(xp.isnan(z64), math.nan, out)
    return out.astype(dt, copy=False)


def _tail_series(r):
    """1 − r + 3r² − 15r³ + 105r⁴ − 945r⁵ (r = 1/z²): Φ(z) = φ(z)/|z| · this, z → −∞."""
    return 1.0 - r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r * (1.0 - 9.0 * r))))


def ndtr_ratio(z):
    """φ(z)/Φ(z), the derivative of log Φ(z), without under- or overflow: the two densities
    directly for z ≥ −37 (neither underflows there; relative error ≈ z²·ε from the rounded
    argument of erfc(−z/√2), 2e-13 at most), |z| / (the tail series of log_ndtr) below
    (≈ |z| + 1/|z|; relative error below 1e-15 as for log_ndtr)."""
    xp = _xp(z)
    if xp is np:
        z, dt = _f64(z)
    else:
        dt = z.dtype
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        far = z < -37.0
        zm = xp.where(far, 0.0, z)
        mid = xp.exp(-0.5 * zm * zm) / (_SQRT2PI * ndtr(zm))
        zf = xp.where(far, z, -40.0)
        tail = -zf / _tail_series(1.0 / (zf * zf))
        out = xp.where(far, tail, mid)
    return out.astype(dt, copy=False)
