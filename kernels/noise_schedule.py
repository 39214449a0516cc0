"""noise_schedule family, Triton version: one launch per op (MATH.md §6–8).

Versions: ``minigen/reference/noise_schedule.py`` (numpy, the definition), ``csrc/
noise_schedule.cpp`` (C++ CPU), this file (GPU; CPU under ``TRITON_INTERPRET=1``). Same
functions, same signatures, over CuPy (GPU) or numpy (interpreter) arrays.

Grid: (⌈D/BLOCK⌉, N) for x of shape (N, *), D elements per sample. Program (i, n) loads the
timestep t = t[n] from the device, gathers its sample's coefficients from the float64 table
(row t, columns COL_* of ``minigen.schedules``), computes the per-sample scalars in float64
(a few scalar ops per program, nothing per element), rounds them once to the compute dtype
(float32, or float64 for float64 data; float16/bfloat16 data load and store in their dtype
and compute in float32), and streams its BLOCK elements once. Indices outside the table are
clamped: checking them would need a host round trip.

Kernels and the bytes each must move per element (s = itemsize):
    _lincomb_kernel  out = a_t x + b_t y            (q_sample, predict_x0, posterior mean)
                     read x, y; write out                              3s
    _scale2_kernel   gx = a_t g, gy = b_t g         (q_sample backward)
                     read g; write gx, gy                              3s (2s with one)
    _step_kernel     m = (1 + w) ε_c − w ε_u        (guidance, optional)
                     x̂_0 = a x_t + b m, clipped to ±r (optional)
                     out = A x̂_0 + B x_t + C m + σ z
                     read x_t, ε_c [, ε_u] [, z]; write out [, x̂_0]   3s–6s
    DDPM (kind 0): A, B = posterior c1, c2; C = 0; σ = √β or √β̃ (0 at t = 0).
    DDIM (kind 1): A = √ᾱ_{t'}, (B, C) = d·(p, q) with ε̂ = p x_t + q m and
                   d = √(1 − ᾱ_{t'} − σ²), σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'});
                   after clipping, ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t) is folded into A, B.
FLOPs: ≤ 12 per element; every kernel is memory-bound (GPU target: ≥ 70% of copy bandwidth).

The float scalars of a step (η, w, r) reach the kernel through a 3-element float64 device
array, cached per value: Triton passes Python floats as float32, and uploading a fresh array
every step would synchronise with the host.
"""
from __future__ import annotations

import numpy as np

from minigen import schedules as S
from minigen.kernels._triton import launch_args, launcher, triton_modules

triton, tl = triton_modules()

BLOCK = 1024
MAX_GRID_Y = 65535
_PRED = {"epsilon": 0, "sample": 1, "v_prediction": 2}


@triton.jit
def _gather(table, t, col: tl.constexpr, NCOL: tl.constexpr):
    return tl.load(table + t * NCOL + col)


@triton.jit
def _x0_coefs(table, t, PRED: tl.constexpr, NCOL: tl.constexpr):
    """x̂_0 = a x_t + b m: epsilon (1/√ᾱ, −√(1/ᾱ−1)); v (√ᾱ, −√(1−ᾱ)); sample (0, 1)."""
    if PRED == 0:
        a = _gather(table, t, 4, NCOL)
        b = -_gather(table, t, 5, NCOL)
    elif PRED == 2:
        a = _gather(table, t, 2, NCOL)
        b = -_gather(table, t, 3, NCOL)
    else:
        a = _gather(table, t, 0, NCOL) * 0.0
        b = a + 1.0
    return a, b


@triton.jit
def _lincomb_kernel(table, t_ptr, x_ptr, y_ptr, out_ptr, D, T,
                    CA: tl.constexpr, SA: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr,
                    NCOL: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    # bytes per element: read x, y; write out (3 × itemsize)
    n = tl.program_id(1)
    t = tl.load(t_ptr + n)
    t = tl.minimum(tl.maximum(t, 0), T - 1)
    CT: tl.constexpr = tl.float64 if F64 else tl.float32
    a = (_gather(table, t, CA, NCOL) * SA).to(CT)
    b = (_gather(table, t, CB, NCOL) * SB).to(CT)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    base = n.to(tl.int64) * D
    x = tl.load(x_ptr + base + offs, mask=mask).to(CT)
    y = tl.load(y_ptr + base + offs, mask=mask).to(CT)
    tl.store(out_ptr + base + offs, (a * x + b * y).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _scale2_kernel(table, t_ptr, g_ptr, gx_ptr, gy_ptr, D, T, CA: tl.constexpr,
                   CB: tl.constexpr, NEED_X: tl.constexpr, NEED_Y: tl.constexpr,
                   NCOL: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    # bytes per element: read g; write gx and/or gy (2–3 × itemsize)
    n = tl.program_id(1)
    t = tl.load(t_ptr + n)
    t = tl.minimum(tl.maximum(t, 0), T - 1)
    CT: tl.constexpr = tl.float64 if F64 else tl.float32
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    base = n.to(tl.int64) * D
    g = tl.load(g_ptr + base + offs, mask=mask).to(CT)
    if NEED_X:
        a = _gather(table, t, CA, NCOL).to(CT)
        tl.store(gx_ptr + base + offs, (a * g).to(gx_ptr.dtype.element_ty), mask=mask)
    if NEED_Y:
        b = _gather(table, t, CB, NCOL).to(CT)
        tl.store(gy_ptr + base + offs, (b * g).to(gy_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _step_kernel(table, t_ptr, tp_ptr, scal_ptr, xt_ptr, ec_ptr, eu_ptr, z_ptr, out_ptr,
                 x0_ptr, D, T, KIND: tl.constexpr, PRED: tl.constexpr,
                 SIGMA_COL: tl.constexpr, CFG: tl.constexpr, CLIP: tl.constexpr,
                 NOISE: tl.constexpr, X0: tl.constexpr, NCOL: tl.constexpr,
                 F64: tl.constexpr, BLOCK: tl.constexpr):
    # bytes per element: read x_t, ε_c [, ε_u] [, z]; write out [, x̂_0]
    n = tl.program_id(1)
    t = tl.load(t_ptr + n)
    t = tl.minimum(tl.maximum(t, 0), T - 1)
    CT: tl.constexpr = tl.float64 if F64 else tl.float32
    eta = tl.load(scal_ptr)
    w = tl.load(scal_ptr + 1)
    r = tl.load(scal_ptr + 2)
    # ---- per-sample scalars, float64 ----
    a, b = _x0_coefs(table, t, PRED, NCOL)
    if KIND == 0:   # DDPM: μ̃ = c1 x̂_0 + c2 x_t, σ from the table (0 at t = 0)
        A = _gather(table, t, 6, NCOL)
        B = _gather(table, t, 7, NCOL)
        C = A * 0.0
        s = _gather(table, t, SIGMA_COL, NCOL)
    else:           # DDIM, t → t' (t' = −1: ᾱ = 1)
        tp = tl.load(tp_ptr + n)
        tp = tl.minimum(tl.maximum(tp, -1), T - 1)
        last = tp < 0
        tq = tl.maximum(tp, 0)
        ab = _gather(table, t, 0, NCOL)
        omab = _gather(table, t, 1, NCOL)
        ab_p = tl.where(last, 1.0, _gather(table, tq, 0, NCOL))
        omab_p = tl.where(last, 0.0, _gather(table, tq, 1, NCOL))
        var = eta * eta * (omab_p / omab) * ((omab - omab_p) / ab_p)
        d = tl.sqrt(tl.maximum(omab_p - var, 0.0))
        sab = tl.sqrt(ab)
        somab = tl.sqrt(omab)
        A = tl.sqrt(ab_p)
        if CLIP:
            A = A - d * sab / somab
            B = d / somab
            C = B * 0.0
        else:
            if PRED == 0:
                p = sab * 0.0
                q = p + 1.0
            elif PRED == 2:
                p = somab
                q = sab
            else:
                p = 1.0 / somab
                q = -sab / somab
            B = d * p
            C = d * q
        s = tl.sqrt(var)
    a = a.to(CT)
    b = b.to(CT)
    A = A.to(CT)
    B = B.to(CT)
    C = C.to(CT)
    s = s.to(CT)
    # ---- one pass over the sample's elements ----
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    base = n.to(tl.int64) * D
    x = tl.load(xt_ptr + base + offs, mask=mask).to(CT)
    m = tl.load(ec_ptr + base + offs, mask=mask).to(CT)
    if CFG:   # ε̄ = (1 + w) ε_c − w ε_u
        u = tl.load(eu_ptr + base + offs, mask=mask).to(CT)
        m = (1.0 + w).to(CT) * m - w.to(CT) * u
    x0 = a * x + b * m
    if CLIP:
        rr = r.to(CT)
        x0 = tl.minimum(tl.maximum(x0, -rr), rr)
    o = A * x0 + B * x + C * m
    if NOISE:
        o += s * tl.load(z_ptr + base + offs, mask=mask).to(CT)
    tl.store(out_ptr + base + offs, o.to(out_ptr.dtype.element_ty), mask=mask)
    if X0:
        tl.store(x0_ptr + base + offs, x0.to(x0_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------ launchers
def _xp(a):
    return np if isinstance(a, np.ndarray) else __import__("cupy")


def _grid_chunks(N, D):
    """(n0, n1, grid) per launch: axis 1 of the grid holds at most 65535 samples."""
    for n0 in range(0, N, MAX_GRID_Y):
        n1 = min(N, n0 + MAX_GRID_Y)
        yield n0, n1, (triton.cdiv(max(D, 1), BLOCK), n1 - n0)


def _dims(x):
    N = x.shape[0]
    return N, (x.size // N if N else 0)


_SCALARS: dict = {}


def _scalars(like, eta, w, r):
    """float64 [η, w, r] on like's device, cached per value (no upload inside a loop)."""
    xp = _xp(like)
    dev = None if xp is np else like.device.id
    key = (dev, float(eta), float(w), float(r))
    arr = _SCALARS.get(key)
    if arr is None:
        if len(_SCALARS) > 256:
            _SCALARS.clear()
        arr = _SCALARS[key] = xp.asarray(np.array([eta, w, r], dtype=np.float64))
    return arr


def _c(a):
    """The kernels address every array as flat C order (sample n at n·D, t[n] at n): views of
    another layout are copied once here (a no-op for C-contiguous arrays and None)."""
    if a is None or a.flags.c_contiguous:
        return a
    return _xp(a).ascontiguousarray(a)


def _f64(x):
    return x.dtype == np.float64


@launcher
def _lincomb(table, t, x, y, ca, sa, cb, sb):
    table, t, x, y = _c(table), _c(t), _c(x), _c(y)
    xp = _xp(x)
    out = xp.empty_like(x)
    N, D = _dims(x)
    T = table.shape[0]
    for n0, n1, grid in _grid_chunks(N, D):
        sl = slice(n0, n1)
        _lincomb_kernel[grid](*launch_args(table, t[sl], x[sl], y[sl], out[sl]), D, T,
                              CA=ca, SA=sa, CB=cb, SB=sb, NCOL=S.NUM_COLS, F64=_f64(x),
                              BLOCK=BLOCK)
    return out


def q_sample(table, x0, t, noise):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
    return _lincomb(table, t, x0, noise, S.COL_SQRT_AB, 1.0, S.COL_SQRT_OMAB, 1.0)


@launcher
def q_sample_backward(table, t, grad, need_x0=True, need_noise=True):
    """(√ᾱ_t g, √(1 − ᾱ_t) g), one pass over g."""
    table, t, grad = _c(table), _c(t), _c(grad)
    xp = _xp(grad)
    gx = xp.empty_like(grad) if need_x0 else None
    gy = xp.empty_like(grad) if need_noise else None
    if not (need_x0 or need_noise):
        return gx, gy
    N, D = _dims(grad)
    for n0, n1, grid in _grid_chunks(N, D):
        sl = slice(n0, n1)
        dummy = grad[sl]
        _scale2_kernel[grid](*launch_args(table, t[sl], grad[sl],
                                          dummy if gx is None else gx[sl],
                                          dummy if gy is None else gy[sl]),
                             D, table.shape[0], CA=S.COL_SQRT_AB, CB=S.COL_SQRT_OMAB,
                             NEED_X=need_x0, NEED_Y=need_noise, NCOL=S.NUM_COLS,
                             F64=_f64(grad), BLOCK=BLOCK)
    return gx, gy


def predict_x0(table, xt, t, model_output, prediction_type="epsilon"):
    if prediction_type == "epsilon":
        return _lincomb(table, t, xt, model_output, S.COL_SQRT_RECIP_AB, 1.0,
                        S.COL_SQRT_RECIPM1_AB, -1.0)
    if prediction_type == "v_prediction":
        return _lincomb(table, t, xt, model_output, S.COL_SQRT_AB, 1.0, S.COL_SQRT_OMAB, -1.0)
    return model_output.astype(xt.dtype, copy=True)


def posterior_mean(table, x0, xt, t):
    """μ̃_t = c1_t x_0 + c2_t x_t."""
    return _lincomb(table, t, x0, xt, S.COL_POST_C1, 1.0, S.COL_POST_C2, 1.0)


@launcher
def _step(kind, table, xt, t, t_prev, eps_c, eps_u, noise, *, eta, w, prediction_type,
          sigma_col, clip, return_x0):
    table, xt, t, t_prev = _c(table), _c(xt), _c(t), _c(t_prev)
    eps_c, eps_u, noise = _c(eps_c), _c(eps_u), _c(noise)
    xp = _xp(xt)
    out = xp.empty_like(xt)
    x0 = xp.empty_like(xt) if return_x0 else None
    scal = _scalars(xt, eta, w, 0.0 if clip is None else clip)
    N, D = _dims(xt)
    tp = t if t_prev is None else t_prev
    for n0, n1, grid in _grid_chunks(N, D):
        sl = slice(n0, n1)
        d = xt[sl]
        arrays = (table, t[sl], tp[sl], scal, d, eps_c[sl],
                  d if eps_u is None else eps_u[sl], d if noise is None else noise[sl],
                  out[sl], d if x0 is None else x0[sl])
        _step_kernel[grid](*launch_args(*arrays), D, table.shape[0], KIND=kind,
                           PRED=_PRED[prediction_type], SIGMA_COL=sigma_col,
                           CFG=eps_u is not None, CLIP=clip is not None,
                           NOISE=noise is not None, X0=x0 is not None, NCOL=S.NUM_COLS,
                           F64=_f64(xt), BLOCK=BLOCK)
    return out, x0


def ddpm_step(table, xt, t, eps_c, eps_u, noise, *, w=0.0, prediction_type="epsilon",
              variance_type="fixed_small", clip=None, return_x0=False):
    col = S.COL_SIGMA_SMALL if variance_type == "fixed_small" else S.COL_SIGMA_LARGE
    return _step(0, table, xt, t, None, eps_c, eps_u, noise, eta=0.0, w=w,
                 prediction_type=prediction_type, sigma_col=col, clip=clip,
                 return_x0=return_x0)


def ddim_step(table, xt, t, t_prev, eps_c, eps_u, noise, *, eta=0.0, w=0.0,
              prediction_type="epsilon", clip=None, return_x0=False):
    return _step(1, table, xt, t, t_prev, eps_c, eps_u, None if eta == 0 else noise,
                 eta=eta, w=w, prediction_type=prediction_type,
                 sigma_col=S.COL_SIGMA_SMALL, clip=clip, return_x0=return_x0)
