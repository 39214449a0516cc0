"""Kernel family noise_schedule: schedules, q_sample, x̂_0, posterior, DDPM/DDIM steps, CFG.

Every implementation (reference, native, triton under the interpreter) runs the same ops on
hypothesis-drawn shapes (odd sizes), per-sample timesteps that always include t = 0 and
t = T − 1, float32 and float64, against the numpy reference; pinned DDIM steps at interior
timesteps with η ∈ {0, 0.3, 1}, guidance on and off, against the formula written in the test;
plus the math itself: schedules
against their closed forms, q_sample's marginals, the posterior against a product of
Gaussians, DDPM against MATH.md's ε form, DDIM η = 0 determinism, CFG at w = 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minigen as mg
from minigen import dispatch
from minigen import schedules as S
from minigen.reference import noise_schedule as R
from minigen.schedules import NoiseSchedule
from kernel_impls import implementations
from op_check import check_op

IMPLS = implementations("noise_schedule")
IMPLS_NOREF = implementations("noise_schedule", exclude=("reference",))
T = 50                      # a short schedule keeps every index reachable by small batches
SCHEDS = {k: NoiseSchedule(T, k) for k in ("linear", "cosine", "sigmoid")}
seeds = st.integers(0, 2 ** 32 - 1)
shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 7), st.integers(1, 5))


def _few(impl):
    """The interpreter is slow: fewer examples for triton."""
    return 4 if impl == "triton" else 10


def _timesteps(rng, n):
    """n indices in [0, T) including 0 and T − 1 (when n ≥ 2)."""
    t = rng.integers(0, T, n)
    t[0] = 0
    if n > 1:
        t[-1] = T - 1
    return t


def _tol(dt):
    return dict(rtol=1e-12, atol=1e-12) if dt == np.float64 else dict(rtol=2e-5, atol=2e-5)


def _close(got, want, dt, what=""):
    got = got.detach().numpy() if isinstance(got, mg.Tensor) else got
    assert got.dtype == want.dtype, what
    scale = 1.0 + np.abs(want).max()     # x̂_0 at t = T − 1 is ~1/√ᾱ ≈ large: relative to it
    tol = _tol(dt)
    np.testing.assert_allclose(got / scale, want / scale, **tol, err_msg=what)


# ------------------------------------------------------------------------------ schedules
def test_linear_schedule_values():
    s = NoiseSchedule(1000, "linear")
    assert s.betas.dtype == np.float64 and s.alphas_cumprod.dtype == np.float64
    np.testing.assert_array_equal(s.betas, np.linspace(1e-4, 0.02, 1000))
    assert s.betas[0] == 1e-4 and s.betas[-1] == 0.02
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - s.betas), rtol=1e-15)
    np.testing.assert_allclose(s.alphas_cumprod[-1], 4.035e-5, rtol=1e-3)   # DDPM's ᾱ_T


def test_cosine_schedule_closed_form():
    Tc, s_ = 1000, 0.008
    s = NoiseSchedule(Tc, "cosine")
    f = lambda t: math.cos((t / Tc + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    want = np.array([f(t + 1) / f(0) for t in range(Tc)])
    unclipped = s.betas < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]        # only the last β hits the clip
    np.testing.assert_allclose(s.alphas_cumprod[unclipped], want[unclipped], rtol=1e-10)
    assert s.betas.max() == 0.999


def test_sigmoid_schedule_formula():
    s = NoiseSchedule(100, "sigmoid", beta_start=1e-4, beta_end=0.02)
    u = np.linspace(-6, 6, 100)
    np.testing.assert_allclose(s.betas, 1e-4 + (0.02 - 1e-4) / (1 + np.exp(-u)), rtol=1e-14)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_schedules_monotone_and_table(kind):
    s = NoiseSchedule(300, kind)
    ab = s.alphas_cumprod
    assert (np.diff(ab) < 0).all() and 0 < ab[-1] < ab[0] < 1
    tab = s.table
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    b = s.betas
    np.testing.assert_allclose(tab[:, S.COL_POST_VAR], b * (1 - ab_prev) / (1 - ab), rtol=1e-13)
    np.testing.assert_allclose(tab[:, S.COL_POST_C1], np.sqrt(ab_prev) * b / (1 - ab),
                               rtol=1e-13)
    np.testing.assert_allclose(tab[:, S.COL_POST_C2],
                               np.sqrt(1 - b) * (1 - ab_prev) / (1 - ab), rtol=1e-13)
    assert tab[0, S.COL_SIGMA_LARGE] == 0 and tab[0, S.COL_SIGMA_SMALL] == 0
    np.testing.assert_allclose(tab[1:, S.COL_SIGMA_LARGE], np.sqrt(b[1:]), rtol=1e-15)
    assert tab[0, S.COL_POST_LOGVAR] == tab[1, S.COL_POST_LOGVAR] == math.log(tab[1, 8])


def test_schedule_errors_and_cache():
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseSchedule(10, "quadratic")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        NoiseSchedule(betas=[0.1, 1.0])
    s = NoiseSchedule(10)
    a, b = s.on("cpu", mg.float32), s.on("cpu", mg.float32)
    assert a is b and a.table is s.table
    c = s.on("cpu", mg.float64)
    assert c is not a and c.alphas_cumprod.dtype == mg.float64
    np.testing.assert_array_equal(c.alphas_cumprod.numpy(), s.alphas_cumprod)
    assert a.betas.dtype == mg.float32
    assert NoiseSchedule(**s.config()).table.tobytes() == s.table.tobytes()


# ----------------------------------------------------- every implementation vs the reference
@pytest.mark.parametrize("impl", IMPLS_NOREF)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_q_sample_and_backward_vs_reference(impl, dt):
    @settings(max_examples=_few(impl))
    @given(seed=seeds, shape=shapes, kind=st.sampled_from(sorted(SCHEDS)),
           scalar_t=st.booleans())
    def run(seed, shape, kind, scalar_t):
        rng = np.random.default_rng(seed)
        s = SCHEDS[kind]
        x0 = rng.standard_normal(shape).astype(dt)
        e = rng.standard_normal(shape).astype(dt)
        g = rng.standard_normal(shape).astype(dt)
        t = np.full(shape[0], T - 1) if scalar_t else _timesteps(rng, shape[0])
        tt = mg.tensor(np.int64(T - 1)) if scalar_t else mg.tensor(t)
        X0 = mg.tensor(x0, requires_grad=True)
        E = mg.tensor(e, requires_grad=True)
        with dispatch.use(noise_schedule=impl):
            xt = mg.q_sample(s, X0, tt, E)
            xt.backward(mg.tensor(g))
        _close(xt, R.q_sample(s.table, x0, t, e), dt, "x_t")
        gx, ge = R.q_sample_backward(s.table, t, g)
        _close(X0.grad, gx, dt, "dx0")
        _close(E.grad, ge, dt, "dnoise")
    run()


@pytest.mark.parametrize("impl", IMPLS_NOREF)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_predict_and_posterior_vs_reference(impl, dt):
    @settings(max_examples=_few(impl))
    @given(seed=seeds, shape=shapes, kind=st.sampled_from(sorted(SCHEDS)),
           pred=st.sampled_from(R.PREDICTION_TYPES))
    def run(seed, shape, kind, pred):
        rng = np.random.default_rng(seed)
        s = SCHEDS[kind]
        x, m = (rng.standard_normal(shape).astype(dt) for _ in range(2))
        t = _timesteps(rng, shape[0])
        with dispatch.use(noise_schedule=impl):
            x0 = mg.predict_x0(s, mg.tensor(m), mg.tensor(t), mg.tensor(x), pred)
            mean, var, logvar = mg.posterior_mean_variance(s, mg.tensor(m), mg.tensor(x),
                                                           mg.tensor(t))
        _close(x0, R.predict_x0(s.table, x, t, m, pred), dt, "x0")
        _close(mean, R.posterior_mean(s.table, m, x, t), dt, "mean")
        want_var = s.posterior_variance[t].astype(dt).reshape(-1, 1, 1, 1)
        np.testing.assert_array_equal(var.numpy(), want_var)
        np.testing.assert_array_equal(logvar.numpy(), s.posterior_log_variance_clipped[t]
                                      .astype(dt).reshape(-1, 1, 1, 1))
    run()


step_opts = st.fixed_dictionaries({
    "pred": st.sampled_from(R.PREDICTION_TYPES), "clip": st.sampled_from([None, 1.0, 0.5]),
    "cfg": st.sampled_from([None, "batched", "separate"]), "w": st.sampled_from([0.5, 3.0]),
    "noise": st.booleans(), "x0": st.booleans()})


def _step_args(rng, shape, dt, o):
    x, ec, eu, z = (rng.standard_normal(shape).astype(dt) for _ in range(4))
    kw = dict(prediction_type=o["pred"], clip_sample=o["clip"] is not None,
              clip_sample_range=o["clip"] or 1.0, return_pred_original=o["x0"])
    if o["cfg"] == "batched":
        mo = mg.tensor(np.concatenate([ec, eu]))
        kw["guidance_scale"] = o["w"]
    elif o["cfg"] == "separate":
        mo = mg.tensor(ec)
        kw.update(guidance_scale=o["w"], uncond_output=mg.tensor(eu))
    else:
        mo, eu = mg.tensor(ec), None
    ref_kw = dict(w=o["w"] if eu is not None else 0.0, prediction_type=o["pred"],
                  clip=o["clip"], return_x0=True)
    return x, ec, eu, (z if o["noise"] else None), mo, kw, ref_kw


def _check_step(out, want, dt, o):
    prev, x0 = out if o["x0"] else (out, None)
    _close(prev, want[0], dt, "prev_sample")
    if o["x0"]:
        _close(x0, want[1], dt, "pred_original_sample")


@pytest.mark.parametrize("impl", IMPLS_NOREF)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_ddpm_step_vs_reference(impl, dt):
    @settings(max_examples=_few(impl))
    @given(seed=seeds, shape=shapes, kind=st.sampled_from(sorted(SCHEDS)), o=step_opts,
           var=st.sampled_from(R.VARIANCE_TYPES))
    def run(seed, shape, kind, o, var):
        rng = np.random.default_rng(seed)
        s = SCHEDS[kind]
        x, ec, eu, z, mo, kw, ref_kw = _step_args(rng, shape, dt, o)
        t = _timesteps(rng, shape[0])
        with dispatch.use(noise_schedule=impl):
            out = mg.ddpm_step(s, mo, mg.tensor(t), mg.tensor(x),
                               None if z is None else mg.tensor(z), variance_type=var, **kw)
        want = R.ddpm_step(s.table, x, t, ec, eu, z, variance_type=var, **ref_kw)
        _check_step(out, want, dt, o)
    run()


@pytest.mark.parametrize("impl", IMPLS_NOREF)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_ddim_step_vs_reference(impl, dt):
    @settings(max_examples=_few(impl))
    @given(seed=seeds, shape=shapes, kind=st.sampled_from(sorted(SCHEDS)), o=step_opts,
           eta=st.sampled_from([0.0, 0.3, 1.0]))
    def run(seed, shape, kind, o, eta):
        rng = np.random.default_rng(seed)
        s = SCHEDS[kind]
        x, ec, eu, z, mo, kw, ref_kw = _step_args(rng, shape, dt, o)
        if eta > 0 and z is None:
            z = rng.standard_normal(shape).astype(dt)
        t = _timesteps(rng, shape[0])
        tp = np.array([rng.integers(-1, ti) for ti in t])      # −1 ≤ t' < t
        tp[-1] = -1
        with dispatch.use(noise_schedule=impl):
            out = mg.ddim_step(s, mo, mg.tensor(t), mg.tensor(tp), mg.tensor(x),
                               None if z is None else mg.tensor(z), eta=eta, **kw)
        want = R.ddim_step(s.table, x, t, tp, ec, eu, z, eta=eta, **ref_kw)
        _check_step(out, want, dt, o)
    run()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("w", [None, 2.0], ids=["no-guidance", "guidance"])
def test_ddim_step_interior_eta_against_formula(impl, dt, eta, w):
    """Pinned (not drawn): interior t → t' with σ_t ≠ 0 at 0 < η < 1, guidance on and off, an
    odd size (4·3·17·9 = 1836: past one 1024-element block), against MATH.md §7 written out here
    from the schedule's ᾱ (not the kernel table, not the reference module):
        ε̄ = (1 + w) ε_c − w ε_u,   x̂_0 = (x_t − √(1 − ᾱ_t) ε̄)/√ᾱ_t
        σ_t = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})
        x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̄ + σ_t z
    A σ(η) slip (η for η², a missing square root) shows at η = 0.3 where η = 1 hides it."""
    s = SCHEDS["cosine"]
    rng = np.random.default_rng(11)
    shape = (4, 3, 17, 9)          # 1836 elements: past one 1024-element block, no multiple
    x, ec, eu, z = (rng.standard_normal(shape).astype(dt) for _ in range(4))
    t, tp = np.array([37, 20, 5, 9]), np.array([30, 3, 4, -1])
    ab = s.alphas_cumprod[t]
    ab_p = np.where(tp < 0, 1.0, s.alphas_cumprod[np.maximum(tp, 0)])
    col = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
    x64, ec64, eu64, z64 = (a.astype(np.float64) for a in (x, ec, eu, z))
    e = ec64 if w is None else (1 + w) * ec64 - w * eu64
    x0 = (x64 - col(np.sqrt(1 - ab)) * e) / col(np.sqrt(ab))
    sigma = eta * np.sqrt((1 - ab_p) / (1 - ab)) * np.sqrt(1 - ab / ab_p)
    if eta > 0:
        assert (sigma[:3] > 0.01).all() and sigma[3] == 0  # interior steps do carry noise
    want = (col(np.sqrt(ab_p)) * x0 + col(np.sqrt(1 - ab_p - sigma ** 2)) * e
            + col(sigma) * z64)
    kw = {} if w is None else dict(guidance_scale=w)
    mo = mg.tensor(ec if w is None else np.concatenate([ec, eu]))
    with dispatch.use(noise_schedule=impl):
        prev, got_x0 = mg.ddim_step(s, mo, mg.tensor(t), mg.tensor(tp), mg.tensor(x),
                                    mg.tensor(z), eta=eta, return_pred_original=True, **kw)
    _close(prev, want.astype(dt), dt, "prev_sample")
    _close(got_x0, x0.astype(dt), dt, "pred_original_sample")


def _formula_x0_eps(s, x, t, m, pred, clip):
    """x̂_0 and ε̂ (MATH.md §6) in float64 from the schedule's ᾱ, written out here:
    epsilon x̂_0 = (x − √(1−ᾱ) ε)/√ᾱ; v x̂_0 = √ᾱ x − √(1−ᾱ) v; sample x̂_0 = m; clipped to
    [−clip, clip]; ε̂ = (x − √ᾱ x̂_0)/√(1−ᾱ) (for unclipped epsilon that is m itself)."""
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x0 = {"epsilon": (x - np.sqrt(1 - ab) * m) / np.sqrt(ab),
          "v_prediction": np.sqrt(ab) * x - np.sqrt(1 - ab) * m, "sample": m}[pred]
    if clip is not None:
        x0 = np.clip(x0, -clip, clip)
    eps = m if (pred == "epsilon" and clip is None) else (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    return x0, eps


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("pred", R.PREDICTION_TYPES)
@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("view", [False, True], ids=["contiguous", "strided-views"])
def test_predict_and_steps_against_formula(impl, dt, pred, clip, view):
    """Every implementation, the reference included, against the formulas written in the test
    (the drawn *_vs_reference tests above leave the reference itself unchecked):
    predict_x0; DDPM x_{t−1} = c₁ x̂_0 + c₂ x_t + σ_t z with c₁ = √ᾱ_{t−1} β_t/(1−ᾱ_t),
    c₂ = √α_t (1−ᾱ_{t−1})/(1−ᾱ_t), σ_t² = β̃_t or β_t, σ_0 = 0; DDIM at η = 0.3 through x̂_0
    and ε̂; guidance w = 1.5 (ε̄ = 2.5 ε_c − 1.5 ε_u)."""
    s = SCHEDS["sigmoid"]
    rng = np.random.default_rng(12)
    shape = (4, 3, 17, 9)          # 1836 elements: past one 1024-element block, no multiple
    x, ec, eu, z = (rng.standard_normal(shape).astype(dt) for _ in range(4))
    x64, ec64, eu64, z64 = (a.astype(np.float64) for a in (x, ec, eu, z))
    if view:   # every operand a non-contiguous view (every other column of a wider array)
        def T(a):
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            big[..., ::2] = a
            return mg.tensor(big)[..., ::2]
    else:
        T = mg.tensor
    m = 2.5 * ec64 - 1.5 * eu64
    t = np.array([37, 20, 5, 0])
    col = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
    ab = s.alphas_cumprod[t]
    ab_prev = np.where(t > 0, s.alphas_cumprod[np.maximum(t - 1, 0)], 1.0)
    beta = s.betas[t]
    kw = dict(prediction_type=pred, clip_sample=clip is not None, clip_sample_range=clip or 1.0,
              guidance_scale=1.5, uncond_output=T(eu))
    x0, eps = _formula_x0_eps(s, x64, t, m, pred, clip)
    with dispatch.use(noise_schedule=impl):
        got = mg.predict_x0(s, T(ec), mg.tensor(t), T(x), pred)
        _close(got, _formula_x0_eps(s, x64, t, ec64, pred, None)[0].astype(dt), dt, "x0")
        for var, sig2 in (("fixed_small", beta * (1 - ab_prev) / (1 - ab)), ("fixed_large", beta)):
            sigma = np.where(t == 0, 0.0, np.sqrt(sig2))
            want = (col(np.sqrt(ab_prev) * beta / (1 - ab)) * x0
                    + col(np.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x64 + col(sigma) * z64)
            prev = mg.ddpm_step(s, T(ec), mg.tensor(t), T(x), T(z),
                                variance_type=var, **kw)
            _close(prev, want.astype(dt), dt, f"ddpm {var}")
        tp = np.array([30, 3, -1, -1])
        tt = np.array([37, 20, 5, 1])
        x0, eps = _formula_x0_eps(s, x64, tt, m, pred, clip)
        ab, ab_p = s.alphas_cumprod[tt], np.where(tp < 0, 1.0, s.alphas_cumprod[tp])
        sigma = 0.3 * np.sqrt((1 - ab_p) / (1 - ab) * (1 - ab / ab_p))
        want = col(np.sqrt(ab_p)) * x0 + col(np.sqrt(1 - ab_p - sigma ** 2)) * eps + col(sigma) * z64
        prev = mg.ddim_step(s, T(ec), mg.tensor(tt), mg.tensor(tp), T(x),
                            T(z), eta=0.3, **kw)
        _close(prev, want.astype(dt), dt, "ddim")


# ----------------------------------------------------------------- the math, on the ops
def test_q_sample_op_check_gradients():
    s = SCHEDS["cosine"]
    t = np.array([0, 7, T - 1])
    sab, somab = np.sqrt(s.alphas_cumprod[t]), np.sqrt(1 - s.alphas_cumprod[t])

    def ref(x0, e):   # from the schedule's arrays, not the kernel table
        return sab.reshape(-1, 1, 1) * x0 + somab.reshape(-1, 1, 1) * e

    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))]
    for impl in ("reference", "native"):
        with dispatch.use(noise_schedule=impl):
            check_op(lambda a, b: mg.q_sample(s, a, mg.tensor(t), b), ref, arrays)


@pytest.mark.parametrize("impl", [p for p in IMPLS if p.values[0] != "triton"])
def test_q_sample_marginals(impl):
    """x_t | x_0 ~ N(√ᾱ_t x_0, 1 − ᾱ_t): per-sample mean and variance over many draws."""
    s = NoiseSchedule(1000, "linear")
    t = np.array([0, 100, 500, 999])
    D = 100_000
    x0 = np.tile(np.array([0.7, -1.0, 0.3, 1.0])[:, None], (1, D))
    noise = mg.randn(4, D, generator=mg.Generator().manual_seed(3), dtype=mg.float64)
    with dispatch.use(noise_schedule=impl):
        xt = mg.q_sample(s, mg.tensor(x0), mg.tensor(t), noise).numpy()
    ab = s.alphas_cumprod[t]
    mean, var = xt.mean(axis=1), xt.var(axis=1)
    se_mean = np.sqrt((1 - ab) / D)
    assert (np.abs(mean - np.sqrt(ab) * x0[:, 0]) < 5 * se_mean).all()
    se_var = (1 - ab) * np.sqrt(2 / D)
    assert (np.abs(var - (1 - ab)) < 5 * se_var).all()


def test_posterior_is_product_of_gaussians():
    """q(x_{t−1}|x_t, x_0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x_0): precision-weighted combination."""
    s = SCHEDS["linear"]
    rng = np.random.default_rng(2)
    t = np.arange(1, T)
    x0, xt = rng.standard_normal((T - 1, 3)), rng.standard_normal((T - 1, 3))
    ab, ab_prev, b = s.alphas_cumprod[t], s.alphas_cumprod[t - 1], s.betas[t]
    prec = 1 / (1 - ab_prev) + (1 - b) / b          # N(√ᾱ_{t−1}x0, 1−ᾱ_{t−1}) · N(x_t; √α x, β)
    var = 1 / prec
    mean = var[:, None] * (np.sqrt(ab_prev)[:, None] * x0 / (1 - ab_prev)[:, None]
                           + np.sqrt(1 - b)[:, None] * xt / b[:, None])
    for impl in ("reference", "native"):
        with dispatch.use(noise_schedule=impl):
            m, v, lv = mg.posterior_mean_variance(s, mg.tensor(x0), mg.tensor(xt),
                                                  mg.tensor(t))
        np.testing.assert_allclose(m.numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v.numpy()[:, 0], var, rtol=1e-10)
        np.testing.assert_allclose(lv.numpy()[:, 0], np.log(var), rtol=1e-10)
    # t = 0: ᾱ_{−1} = 1, the posterior is the point mass at x_0
    m0, v0, _ = mg.posterior_mean_variance(s, mg.tensor(x0[:1]), mg.tensor(xt[:1]), 0)
    np.testing.assert_allclose(m0.numpy(), x0[:1], rtol=1e-12)
    assert v0.numpy().item() == 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_ddpm_step_is_mathmd_epsilon_form(impl):
    """x_{t−1} = (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε) + σ_t z (Algorithm 2), σ_0 = 0."""
    s = SCHEDS["linear"]
    rng = np.random.default_rng(4)
    t = np.array([0, 1, 25, T - 1])
    x, e, z = (rng.standard_normal((4, 3, 5)) for _ in range(3))
    a, b, ab = 1 - s.betas[t], s.betas[t], s.alphas_cumprod[t]
    col = lambda v: v.reshape(-1, 1, 1)  # noqa: E731
    for var, sig2 in (("fixed_large", b), ("fixed_small", s.posterior_variance[t])):
        sigma = np.where(t == 0, 0.0, np.sqrt(sig2))
        want = col(1 / np.sqrt(a)) * (x - col(b / np.sqrt(1 - ab)) * e) + col(sigma) * z
        with dispatch.use(noise_schedule=impl):
            got = mg.ddpm_step(s, mg.tensor(e), mg.tensor(t), mg.tensor(x), mg.tensor(z),
                               variance_type=var).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_ddim_eta0_deterministic_and_eta1_variance(impl):
    s = SCHEDS["cosine"]
    rng = np.random.default_rng(5)
    x, e = mg.tensor(rng.standard_normal((3, 2, 3))), mg.tensor(rng.standard_normal((3, 2, 3)))
    t, tp = mg.tensor(np.array([T - 1, 20, 3])), mg.tensor(np.array([T - 2, 10, -1]))
    with dispatch.use(noise_schedule=impl):
        a = mg.ddim_step(s, e, t, tp, x).numpy()
        b = mg.ddim_step(s, e, t, tp, x, mg.randn(3, 2, 3, dtype=mg.float64)).numpy()
        np.testing.assert_array_equal(a, b)          # η = 0: the noise is not used
        # η = 1, t' = t − 1: the noise scale is DDPM's σ_t² = β̃_t
        z = mg.tensor(np.ones((3, 2, 3)))
        tt, tq = mg.tensor(np.array([5, 9, 30])), mg.tensor(np.array([4, 8, 29]))
        with_z = mg.ddim_step(s, e, tt, tq, x, z, eta=1.0).numpy()
        without = mg.ddim_step(s, e, tt, tq, x, z * 0, eta=1.0).numpy()
    sigma = (with_z - without)[:, 0, 0]
    np.testing.assert_allclose(sigma ** 2, s.posterior_variance[[5, 9, 30]], rtol=1e-10)
    # the last step (t' = −1) returns x̂_0
    ab3 = s.alphas_cumprod[3]
    x0 = (x.numpy()[2] - np.sqrt(1 - ab3) * e.numpy()[2]) / np.sqrt(ab3)
    np.testing.assert_allclose(a[2], x0, rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_cfg_w0_is_conditional_step(impl):
    s = SCHEDS["linear"]
    rng = np.random.default_rng(6)
    x, ec, eu, z = (mg.tensor(rng.standard_normal((2, 3, 3)).astype(np.float32))
                    for _ in range(4))
    both = mg.tensor(np.concatenate([ec.numpy(), eu.numpy()]))
    t, tp = mg.tensor(np.array([10, 0])), mg.tensor(np.array([5, -1]))
    with dispatch.use(noise_schedule=impl):
        for step, args, kw in ((mg.ddpm_step, (t,), {}), (mg.ddim_step, (t, tp), {"eta": 0.5})):
            cond = step(s, ec, *args, x, z, **kw).numpy()
            guided = step(s, both, *args, x, z, guidance_scale=0.0, **kw).numpy()
            np.testing.assert_array_equal(guided, cond)
            g3 = step(s, both, *args, x, z, guidance_scale=3.0, **kw).numpy()
            g3s = step(s, ec, *args, x, z, guidance_scale=3.0, uncond_output=eu, **kw).numpy()
            np.testing.assert_array_equal(g3, g3s)
            manual = step(s, ec * 4.0 - eu * 3.0, *args, x, z, **kw).numpy()
            np.testing.assert_allclose(g3, manual, rtol=1e-5, atol=1e-5)


def test_seeded_ddim_sampling_repeats():
    s = SCHEDS["linear"]

    def sample(seed):
        g = mg.Generator().manual_seed(seed)
        x = mg.randn(2, 1, 4, 4, generator=g)
        for t in range(T - 1, -1, -10):
            eps = x * 0.1                                       # a dummy model
            noise = mg.randn(2, 1, 4, 4, generator=g)
            x = mg.ddim_step(s, eps, t, t - 10 if t >= 10 else -1, x, noise, eta=1.0)
        return x.numpy()
    np.testing.assert_array_equal(sample(0), sample(0))
    assert not np.array_equal(sample(0), sample(1))


# ---------------------------------------------------------- timesteps stay on the device
class _NoHostRead(np.ndarray):
    """An index array that fails if anything reads it as a Python scalar (.item(), int())."""

    def _fail(self, *a, **k):
        raise AssertionError("timestep array read on the host (item/int/tolist)")
    item = tolist = __int__ = __index__ = __float__ = __bool__ = _fail


@pytest.mark.parametrize("impl", IMPLS)
def test_timesteps_are_arrays_never_items(impl):
    s = SCHEDS["linear"]
    x = mg.tensor(np.ones((3, 4), np.float32))
    t = np.array([0, 10, T - 1]).view(_NoHostRead)
    tp = np.array([-1, 5, 30]).view(_NoHostRead)
    with dispatch.use(noise_schedule=impl):
        mg.q_sample(s, x, t, x)
        mg.ddpm_step(s, x, t, x, x)
        mg.ddim_step(s, x, t, tp, x, x, eta=0.5, guidance_scale=1.0, uncond_output=x)
        mg.predict_x0(s, x, t, x)


@pytest.mark.gpu
def test_cuda_step_has_no_host_sync():
    """A sampling loop on the GPU: timesteps on the device, no synchronisation (CuPy raises
    DeviceSynchronized inside allow_synchronize(False) if anything waits for the device)."""
    import cupyx

    s = NoiseSchedule(1000)
    x = mg.randn(4, 3, 8, 8, device="cuda")
    both = mg.randn(8, 3, 8, 8, device="cuda")
    t_np = np.array([999, 500, 10, 1])
    t = mg.tensor(t_np, device="cuda")
    tp = t - 1

    def loop(xt):
        xt = mg.ddim_step(s, both, t, tp, xt, x, eta=0.5, guidance_scale=2.0)
        return mg.ddpm_step(s, both, t, xt, x, guidance_scale=2.0)

    xt = loop(mg.q_sample(s, x, t, x))    # first calls: table upload, kernel compilation
    with cupyx.allow_synchronize(False):
        for _ in range(3):
            xt = loop(xt)
    ones = np.ones((4, 3, 8, 8), np.float32)
    want = R.ddpm_step(s.table, ones, t_np, ones, None, None)[0]
    got = mg.ddpm_step(s, mg.tensor(ones, device="cuda"), t, mg.tensor(ones, device="cuda"))
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", implementations("noise_schedule", device="cuda"))
def test_cuda_impls_vs_reference(impl):
    s = NoiseSchedule(1000, "cosine")
    rng = np.random.default_rng(7)
    shape = (5, 3, 17, 9)
    for dt in (np.float32, np.float64):
        x, ec, eu, z = (rng.standard_normal(shape).astype(dt) for _ in range(4))
        t = np.array([0, 1, 500, 998, 999])
        tp = np.array([-1, 0, 100, -1, 990])
        cu = lambda a: mg.tensor(a, device="cuda")  # noqa: E731
        with dispatch.use(noise_schedule=impl):
            q = mg.q_sample(s, cu(x), cu(t), cu(z))
            d = mg.ddim_step(s, cu(np.concatenate([ec, eu])), cu(t), cu(tp), cu(x), cu(z),
                             eta=0.5, guidance_scale=2.0, clip_sample=True)
            p = mg.ddpm_step(s, cu(ec), cu(t), cu(x), cu(z), prediction_type="v_prediction")
        _close(q.cpu().numpy(), R.q_sample(s.table, x, t, z), dt, "q_sample")
        _close(d.cpu().numpy(), R.ddim_step(s.table, x, t, tp, ec, eu, z, eta=0.5, w=2.0,
                                            clip=1.0)[0], dt, "ddim")
        _close(p.cpu().numpy(), R.ddpm_step(s.table, x, t, ec, None, z,
                                            prediction_type="v_prediction")[0], dt, "ddpm")


# ----------------------------------------------------------------------------------- errors
def test_errors():
    s = SCHEDS["linear"]
    x = mg.tensor(np.zeros((3, 4), np.float32))
    t = mg.tensor(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        mg.q_sample(s, x, mg.tensor(np.array([0, T, 1])), x)
    with pytest.raises(ValueError, match="out of range"):
        mg.q_sample(s, x, -1, x)
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        mg.q_sample(s, x, mg.tensor(np.array([0, 1])), x)
    with pytest.raises(TypeError, match="integer"):
        mg.q_sample(s, x, mg.tensor(np.array([0.0, 1.0, 2.0])), x)
    with pytest.raises(ValueError, match="noise has shape"):
        mg.q_sample(s, x, t, mg.tensor(np.zeros((3, 5), np.float32)))
    with pytest.raises(TypeError, match="dtype"):
        mg.q_sample(s, x, t, mg.tensor(np.zeros((3, 4))))
    with pytest.raises(TypeError, match="NoiseSchedule"):
        mg.q_sample(s.betas, x, t, x)
    with pytest.raises(ValueError, match="t_prev must be smaller"):
        mg.ddim_step(s, x, t, t, x)
    with pytest.raises(ValueError, match="out of range \\[-1"):
        mg.ddim_step(s, x, t, mg.tensor(np.array([-2, 0, 1])), x)
    with pytest.raises(ValueError, match="both branches"):
        mg.ddim_step(s, x, t, t - 1, x, guidance_scale=2.0)
    with pytest.raises(ValueError, match="needs noise"):
        mg.ddim_step(s, x, t, t - 1, x, eta=1.0)
    with pytest.raises(ValueError, match="prediction_type"):
        mg.ddpm_step(s, x, t, x, prediction_type="eps")
    with pytest.raises(ValueError, match="variance_type"):
        mg.ddpm_step(s, x, t, x, variance_type="learned")


def test_native_kernel_checks_before_writing():
    pytest.importorskip("minigen._C")
    from minigen import _native
    if not _native.available():
        pytest.skip("native extension not built")
    C = _native.module()
    s = SCHEDS["linear"]
    x = np.ones((2, 3), np.float32)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="out of range"):
        C.ns_lincomb(s.table, np.array([0, T]), x, x, out, 2, 1.0, 3, 1.0)
    assert (out == 7.0).all()
    with pytest.raises(ValueError, match="int64"):
        C.ns_lincomb(s.table, np.array([0, 1], np.int32), x, x, out, 2, 1.0, 3, 1.0)
    with pytest.raises(ValueError, match="float64 \\(T, 13\\) table"):
        C.ns_lincomb(s.table.astype(np.float32), np.array([0, 1]), x, x, out, 2, 1.0, 3, 1.0)
    with pytest.raises(ValueError, match="t_prev"):
        C.ns_step(s.table, np.array([1, 2]), np.array([0, -3]), x, x, None, None, out, None,
                  1, 0, 11, 0.0, 0.0, -1.0)
