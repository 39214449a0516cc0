"""Scheduler tests (issue 4): DDPMScheduler / DDIMScheduler against an independent float64
numpy implementation of MATH.md §6–7 written in this file (no minigen inside it: no
NoiseSchedule, no coefficient table, no fused kernel), and against the values it stored once in
``tests/data/scheduler_reference.json`` (dummy model ε(x, t) = 0.1·x·t/T, fixed seed, full loops
of 1000 / 100 DDPM steps and 50 DDIM steps); add_noise marginals; posterior vs a direct Gaussian
product; DDIM η = 1 vs DDPM; η = 0 determinism; prediction-type consistency; config; seeds.

    python tests/test_schedulers.py --regenerate    # rewrite the stored reference (review it!)
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

T = 1000
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                    "scheduler_reference.json")
SHAPE = (2, 1, 8, 8)


def ref_alphas_cumprod(T=T, beta_start=1e-4, beta_end=0.02):
    """ᾱ_t = Π_{s≤t} (1 − β_s), β linear (DDPM)."""
    betas = [beta_start + (beta_end - beta_start) * i / (T - 1) for i in range(T)]
    ab, out = 1.0, []
    for b in betas:
        ab *= 1.0 - b
        out.append(ab)
    return np.array(out)


def ref_timesteps(S, spacing, T=T):
    """Descending inference timesteps, written from diffusers' description."""
    if spacing == "leading":
        ts = [k * (T // S) for k in range(S)]
    elif spacing == "trailing":
        ts = [round(T - k * T / S) - 1 for k in range(S)][::-1]
    elif spacing == "linspace":
        ts = [round(k * (T - 1) / (S - 1)) if S > 1 else 0 for k in range(S)]
    else:
        raise ValueError(spacing)
    return sorted(ts, reverse=True)


def dummy_model(x, t):
    """ε(x, t) = 0.1 · x · t / T (also used as x̂_0 or v for the other prediction types)."""
    return 0.1 * x * (t / T)


def x0_and_eps(x, m, ab, prediction_type):
    """(x̂_0, ε̂) from the model output m at ᾱ_t = ab."""
    if prediction_type == "epsilon":
        x0 = (x - math.sqrt(1 - ab) * m) / math.sqrt(ab)
    elif prediction_type == "sample":
        x0 = m
    else:                                   # v = √ᾱ ε − √(1 − ᾱ) x_0
        x0 = math.sqrt(ab) * x - math.sqrt(1 - ab) * m
    return x0, (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)


def ref_ddpm_step(x, m, t, t_prev, ab_all, z, prediction_type="epsilon",
              variance_type="fixed_small", clip=None):
    """Algorithm 2 on the chain of inference timesteps: x_t → x_{t_prev}."""
    ab = ab_all[t]
    ab_p = ab_all[t_prev] if t_prev >= 0 else 1.0
    alpha = ab / ab_p                       # α of this (possibly strided) step
    beta = 1 - alpha
    x0, _ = x0_and_eps(x, m, ab, prediction_type)
    if clip is not None:
        x0 = np.clip(x0, -clip, clip)
    mean = (math.sqrt(ab_p) * beta / (1 - ab)) * x0 + \
        (math.sqrt(alpha) * (1 - ab_p) / (1 - ab)) * x
    var = (1 - ab_p) / (1 - ab) * beta if variance_type == "fixed_small" else beta
    if t_prev >= 0:                         # no noise into x_0
        mean = mean + math.sqrt(var) * z
    return mean, x0


def ref_ddim_step(x, m, t, t_prev, ab_all, z, eta=0.0, prediction_type="epsilon", clip=None):
    """MATH.md §7: x_t → x_{t'} with σ_t = η √((1 − ᾱ')/(1 − ᾱ)) √(1 − ᾱ/ᾱ')."""
    ab = ab_all[t]
    ab_p = ab_all[t_prev] if t_prev >= 0 else 1.0
    x0, eps = x0_and_eps(x, m, ab, prediction_type)
    if clip is not None:
        x0 = np.clip(x0, -clip, clip)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    sigma = eta * math.sqrt((1 - ab_p) / (1 - ab)) * math.sqrt(1 - ab / ab_p)
    out = math.sqrt(ab_p) * x0 + math.sqrt(max(1 - ab_p - sigma ** 2, 0.0)) * eps
    if eta > 0:
        out = out + sigma * z
    return out, x0


# The stored cases: (name, sampler, keyword arguments)
CASES = [
    ("ddpm_1000_eps_small_clip", "ddpm", dict(S=1000, spacing="leading",
                                              prediction_type="epsilon",
                                              variance_type="fixed_small", clip=1.0)),
    ("ddpm_100_eps_large", "ddpm", dict(S=100, spacing="leading", prediction_type="epsilon",
                                        variance_type="fixed_large", clip=None)),
    ("ddpm_100_v_linspace", "ddpm", dict(S=100, spacing="linspace",
                                         prediction_type="v_prediction",
                                         variance_type="fixed_small", clip=None)),
    ("ddim_50_eta0_clip", "ddim", dict(S=50, spacing="leading", eta=0.0,
                                       prediction_type="epsilon", clip=1.0)),
    ("ddim_50_eta1", "ddim", dict(S=50, spacing="leading", eta=1.0,
                                  prediction_type="epsilon", clip=None)),
    ("ddim_50_trailing_sample", "ddim", dict(S=50, spacing="trailing", eta=0.5,
                                             prediction_type="sample", clip=None)),
]


def case_inputs(seed, S):
    """x_T and one z per step, float32 values (what the float32 scheduler sees), as float64."""
    rng = np.random.default_rng(seed)
    xT = rng.standard_normal(SHAPE).astype(np.float32).astype(np.float64)
    zs = rng.standard_normal((S,) + SHAPE).astype(np.float32).astype(np.float64)
    return xT, zs


def run_case(sampler, S, spacing, prediction_type="epsilon", variance_type="fixed_small",
             clip=None, eta=0.0, seed=0):
    """The full loop in float64; returns (x_0, last x̂_0, timesteps)."""
    ab_all = ref_alphas_cumprod()
    ts = ref_timesteps(S, spacing)
    x, zs = case_inputs(seed, S)
    x0 = None
    for k, t in enumerate(ts):
        t_prev = ts[k + 1] if k + 1 < len(ts) else -1
        m = dummy_model(x, t)
        if sampler == "ddpm":
            x, x0 = ref_ddpm_step(x, m, t, t_prev, ab_all, zs[k], prediction_type, variance_type,
                              clip)
        else:
            x, x0 = ref_ddim_step(x, m, t, t_prev, ab_all, zs[k], eta, prediction_type, clip)
    return x, x0, ts


def summary(x, x0):
    """What is stored: sums, means, a few entries."""
    return {"sum": float(x.sum()), "abs_mean": float(np.abs(x).mean()),
            "sq_mean": float((x ** 2).mean()), "entries": [float(v) for v in x.ravel()[:8]],
            "last_entry": float(x.ravel()[-1]), "x0_sum": float(x0.sum())}


def generate():
    ref = {"about": "float64 numpy reference of MATH.md §6-7 (tests/scheduler_reference.py); "
                    "dummy model eps(x,t) = 0.1*x*t/T, linear betas 1e-4..0.02, T=1000, "
                    f"shape {list(SHAPE)}, x_T and z from numpy default_rng(seed) float32",
           "cases": {}}
    for name, sampler, kw in CASES:
        x, x0, ts = run_case(sampler, **kw)
        ref["cases"][name] = {"sampler": sampler, **kw, "timesteps_head": ts[:5],
                              "timesteps_tail": ts[-3:], **summary(x, x0)}
    return ref



# ====================================================================== the tests
import pytest  # noqa: E402

import minigen as mg  # noqa: E402
from minigen.diffusion import (DDIMScheduler, DDPMScheduler, SchedulerOutput,  # noqa: E402
                               scheduler_from_config)


def _stored():
    with open(DATA) as f:
        return json.load(f)["cases"]


def make_scheduler(sampler, S, spacing, prediction_type="epsilon", variance_type="fixed_small",
                   clip=None, eta=0.0):
    common = dict(prediction_type=prediction_type, clip_sample=clip is not None,
                  clip_sample_range=1.0 if clip is None else clip, timestep_spacing=spacing)
    if sampler == "ddpm":
        sched = DDPMScheduler(variance_type=variance_type, **common)
    else:
        sched = DDIMScheduler(eta=eta, **common)
    if S != T:
        sched.set_timesteps(S)
    return sched


def run_scheduler(sampler, S, spacing, prediction_type="epsilon", variance_type="fixed_small",
                  clip=None, eta=0.0, seed=0, dtype=np.float32):
    """The same loop as ``run_case`` through the minigen scheduler; timesteps as 0-d Tensors."""
    sched = make_scheduler(sampler, S, spacing, prediction_type, variance_type, clip, eta)
    xT, zs = case_inputs(seed, S)
    x = mg.tensor(xT.astype(dtype))
    out = None
    for k, t in enumerate(sched.timesteps):
        m = x * (0.1 * t.to(x.dtype) / T)
        z = mg.tensor(zs[k].astype(dtype))
        out = sched.step(m, t, x, variance_noise=z)
        x = out.prev_sample
    return x.numpy().astype(np.float64), out.pred_original_sample.numpy(), sched


def test_reference_file_matches_the_float64_reference():
    """The stored values are what the float64 reference in this file computes (so they can be
    trusted as its output, and a change to either is caught)."""
    for name, sampler, kw in CASES:
        stored = _stored()[name]
        x, x0, ts = run_case(sampler, **kw)
        got = summary(x, x0)
        for key in ("sum", "abs_mean", "sq_mean", "last_entry", "x0_sum"):
            assert got[key] == pytest.approx(stored[key], rel=1e-9, abs=1e-12), (name, key)
        np.testing.assert_allclose(got["entries"], stored["entries"], rtol=1e-9, atol=1e-12)
        assert ts[:5] == stored["timesteps_head"] and ts[-3:] == stored["timesteps_tail"]


@pytest.mark.parametrize("name,sampler,kw", CASES, ids=[c[0] for c in CASES])
def test_full_loop_matches_stored_reference(name, sampler, kw):
    """Full sampling loops (1000 / 100 DDPM steps, 50 DDIM steps) in float32 against the stored
    float64 values. Tolerance: float32 rounding (6e-8 relative per operation) accumulated over
    up to 1000 steps, relative to the case's magnitude (mean |x|)."""
    stored = _stored()[name]
    x, x0, sched = run_scheduler(sampler, **kw)
    assert sched.timesteps.numpy()[:5].tolist() == stored["timesteps_head"]
    assert sched.timesteps.numpy()[-3:].tolist() == stored["timesteps_tail"]
    assert sched.timesteps.dtype == mg.int64
    scale = stored["abs_mean"]
    tol = 2e-5 * scale
    assert np.abs(x).mean() == pytest.approx(scale, rel=2e-5)
    assert x.sum() == pytest.approx(stored["sum"], abs=tol * x.size)
    np.testing.assert_allclose(x.ravel()[:8], stored["entries"], rtol=0, atol=tol)
    assert x.ravel()[-1] == pytest.approx(stored["last_entry"], abs=tol)


@pytest.mark.parametrize("name,sampler,kw", CASES, ids=[c[0] for c in CASES])
def test_full_loop_float64_matches_reference_tightly(name, sampler, kw):
    """In float64 the scheduler (NoiseSchedule table + fused step) and the straightforward
    reference differ only by rounding of different but equivalent formulas."""
    x, x0, _ = run_scheduler(sampler, dtype=np.float64, **kw)
    xr, x0r, _ = run_case(sampler, **kw)
    scale = np.abs(xr).mean()
    np.testing.assert_allclose(x, xr, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(x0, x0r, rtol=0, atol=1e-9 * max(np.abs(x0r).mean(), 1e-300))


# -------------------------------------------------------------------------------- timesteps
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("S", [1, 7, 50, 1000])
def test_set_timesteps_spacing(spacing, S):
    for cls in (DDPMScheduler, DDIMScheduler):
        sched = cls(timestep_spacing=spacing)
        sched.set_timesteps(S)
        ts = sched.timesteps.numpy()
        assert ts.dtype == np.int64 and ts.tolist() == ref_timesteps(S, spacing)
        assert sched.num_inference_steps == S


def test_default_timesteps_and_diffusers_values():
    s = DDIMScheduler()
    assert s.timesteps.numpy().tolist() == list(range(999, -1, -1))   # before set_timesteps
    s.set_timesteps(50)
    assert s.timesteps.numpy().tolist() == list(range(980, -1, -20))  # diffusers "leading"
    s = DDIMScheduler(timestep_spacing="trailing")
    s.set_timesteps(10)
    assert s.timesteps.numpy().tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    s = DDPMScheduler(steps_offset=1)
    s.set_timesteps(10)
    assert s.timesteps.numpy().tolist() == list(range(901, 0, -100))


def test_set_timesteps_errors():
    s = DDIMScheduler()
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(ValueError, match="num_inference_steps"):
            s.set_timesteps(bad)
    with pytest.raises(ValueError, match="timestep_spacing"):
        DDPMScheduler(timestep_spacing="uniform")
    s.set_timesteps(10)
    x = mg.zeros(2, 3)
    with pytest.raises(ValueError, match="not one of the timesteps"):
        s.step(x, 5, x)                                  # 5 is not in τ = 900, ..., 0
    with pytest.raises(ValueError, match="not among the timesteps"):
        s.step(x, mg.tensor([900, 5]), x)


# -------------------------------------------------------------------------------- add_noise
def test_add_noise_matches_closed_form_before_set_timesteps():
    s = DDPMScheduler()
    rng = np.random.default_rng(1)
    x0, eps = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 3))
    t = np.array([0, 17, 500, 999, 999, 3])
    ab = ref_alphas_cumprod()[t].reshape(-1, 1)
    want = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    for x0_, eps_, want_ in zip(x0, eps, want):
        got = s.add_noise(mg.tensor(x0_), mg.tensor(eps_), mg.tensor(t)).numpy()
        np.testing.assert_allclose(got, want_, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_add_noise_marginals(t):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ε ~ N(0, I) from minigen's RNG: the sample mean and
    variance of x_t given x_0 are √ᾱ_t x_0 and 1 − ᾱ_t (5-σ bounds on both estimates)."""
    s = DDIMScheduler()
    n = 40000
    x0 = mg.full((n, 2), 0.7, dtype=mg.float64)
    x0[:, 1] = -1.3
    gen = mg.Generator().manual_seed(t)
    eps = mg.randn(n, 2, generator=gen, dtype=mg.float64)
    xt = s.add_noise(x0, eps, mg.full((n,), t, dtype=mg.int64)).numpy()
    ab = ref_alphas_cumprod()[t]
    var = 1 - ab
    mean = math.sqrt(ab) * np.array([0.7, -1.3])
    assert np.all(np.abs(xt.mean(0) - mean) < 5 * math.sqrt(var / n))
    assert np.all(np.abs(xt.var(0) - var) < 5 * var * math.sqrt(2 / n))


def test_add_noise_is_differentiable():
    s = DDPMScheduler()
    x0 = mg.randn(3, 4, dtype=mg.float64, requires_grad=True)
    eps = mg.randn(3, 4, dtype=mg.float64)
    t = mg.tensor([5, 600, 999])
    s.add_noise(x0, eps, t).sum().backward()
    ab = ref_alphas_cumprod()[[5, 600, 999]].reshape(-1, 1)
    np.testing.assert_allclose(x0.grad.numpy(), np.broadcast_to(np.sqrt(ab), (3, 4)), rtol=1e-12)


def test_get_velocity_and_interface_helpers():
    s = DDIMScheduler()
    rng = np.random.default_rng(6)
    x0, eps = rng.standard_normal((2, 3, 4))
    t = np.array([0, 300, 999])
    ab = ref_alphas_cumprod()[t].reshape(-1, 1)
    v = s.get_velocity(mg.tensor(x0), mg.tensor(eps), mg.tensor(t)).numpy()
    np.testing.assert_allclose(v, np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0, rtol=1e-12,
                               atol=1e-14)
    x = mg.tensor(x0)
    assert s.scale_model_input(x, 5) is x and s.init_noise_sigma == 1.0
    out = s.step(x, 999, x)
    assert out[0] is out.prev_sample and out[1] is out.pred_original_sample


# --------------------------------------------------------------------------- the posterior
def test_posterior_mean_and_variance_vs_gaussian_product():
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0): a product of two Gaussians in
    x_{t−1}, N(x_t; √α_t x_{t−1}, β_t) · N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}), whose precision
    is α_t/β_t + 1/(1 − ᾱ_{t−1}) and mean (√α_t x_t/β_t + √ᾱ_{t−1} x_0/(1 − ᾱ_{t−1}))/precision.
    The DDPM step with prediction_type="sample" (x̂_0 = the model output) is μ̃_t + σ_t z."""
    s = DDPMScheduler(prediction_type="sample", clip_sample=False)
    ab_all = ref_alphas_cumprod()
    rng = np.random.default_rng(2)
    for t in (1, 2, 10, 400, 999):
        beta = 1 - ab_all[t] / ab_all[t - 1]
        alpha, ab_p = 1 - beta, ab_all[t - 1]
        prec = alpha / beta + 1 / (1 - ab_p)
        x0, xt = rng.standard_normal((2, 4, 5))
        mean = (math.sqrt(alpha) * xt / beta + math.sqrt(ab_p) * x0 / (1 - ab_p)) / prec
        var = 1 / prec
        m, v, logv = mg.posterior_mean_variance(s.schedule, mg.tensor(x0), mg.tensor(xt), t)
        np.testing.assert_allclose(m.numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v.numpy().ravel(), var, rtol=1e-10)
        np.testing.assert_allclose(logv.numpy().ravel(), math.log(var), rtol=1e-10)
        zero, one = mg.zeros(4, 5, dtype=mg.float64), mg.ones(4, 5, dtype=mg.float64)
        step0 = s.step(mg.tensor(x0), t, mg.tensor(xt), variance_noise=zero).prev_sample
        step1 = s.step(mg.tensor(x0), t, mg.tensor(xt), variance_noise=one).prev_sample
        np.testing.assert_allclose(step0.numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose((step1 - step0).numpy(), math.sqrt(var), rtol=1e-8)


def test_eps_step_is_maths_mu_theta():
    """Unclipped ε-prediction: x_{t−1} = (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε) + σ_t z (Algorithm 2),
    σ_t² = β_t for fixed_large."""
    s = DDPMScheduler(variance_type="fixed_large", clip_sample=False)
    ab_all = ref_alphas_cumprod()
    rng = np.random.default_rng(3)
    for t in (1, 50, 999):
        beta = 1 - ab_all[t] / ab_all[t - 1]
        xt, eps, z = rng.standard_normal((3, 2, 7))
        want = (xt - beta / math.sqrt(1 - ab_all[t]) * eps) / math.sqrt(1 - beta) + \
            math.sqrt(beta) * z
        got = s.step(mg.tensor(eps), t, mg.tensor(xt), variance_noise=mg.tensor(z)).prev_sample
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    # the last step (t = 0) adds no noise
    xt, eps, z = rng.standard_normal((3, 2, 7))
    a = s.step(mg.tensor(eps), 0, mg.tensor(xt), variance_noise=mg.tensor(z)).prev_sample
    b = s.step(mg.tensor(eps), 0, mg.tensor(xt), variance_noise=mg.tensor(0 * z)).prev_sample
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------------------------------- DDIM vs DDPM
@pytest.mark.parametrize("S", [1000, 50])
def test_ddim_eta1_is_ddpm_step(S):
    """η = 1: σ_t² equals the (strided) DDPM posterior variance β̃ and the mean equals DDPM's
    posterior mean, step for step (with all T timesteps and with S = 50)."""
    ddim = DDIMScheduler(eta=1.0, clip_sample=False)
    ddpm = DDPMScheduler(clip_sample=False)
    if S != T:
        ddim.set_timesteps(S)
        ddpm.set_timesteps(S)
    ab_all = ref_alphas_cumprod()
    ts = ddim.timesteps.numpy()
    rng = np.random.default_rng(4)
    for k in range(0, len(ts) - 1, max(1, len(ts) // 12)):
        t, t_prev = int(ts[k]), int(ts[k + 1])
        xt, eps = (mg.tensor(a) for a in rng.standard_normal((2, 3, 5)))
        zero, one = mg.zeros(3, 5, dtype=mg.float64), mg.ones(3, 5, dtype=mg.float64)
        i0 = ddim.step(eps, t, xt, variance_noise=zero).prev_sample.numpy()
        i1 = ddim.step(eps, t, xt, variance_noise=one).prev_sample.numpy()
        p0 = ddpm.step(eps, t, xt, variance_noise=zero).prev_sample.numpy()
        p1 = ddpm.step(eps, t, xt, variance_noise=one).prev_sample.numpy()
        ab, ab_p = ab_all[t], ab_all[t_prev]
        beta_tilde = (1 - ab_p) / (1 - ab) * (1 - ab / ab_p)
        np.testing.assert_allclose(i0, p0, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose((i1 - i0) ** 2, beta_tilde, rtol=1e-8)
        np.testing.assert_allclose((p1 - p0) ** 2, beta_tilde, rtol=1e-8)


def test_ddim_eta1_one_step_statistics_match_ddpm():
    """Many one-step draws from the same x_t with each scheduler's own RNG use: the sample mean
    and variance of x_{t−1} agree (5-σ bounds)."""
    n, t = 40000, 300
    x = mg.full((n, 1), 0.5, dtype=mg.float64)
    eps = mg.full((n, 1), -0.2, dtype=mg.float64)
    a = DDIMScheduler(eta=1.0).step(eps, t, x, generator=mg.Generator().manual_seed(1))
    b = DDPMScheduler().step(eps, t, x, generator=mg.Generator().manual_seed(2))
    a, b = a.prev_sample.numpy().ravel(), b.prev_sample.numpy().ravel()
    assert not np.array_equal(a, b)
    var = b.var()
    assert abs(a.mean() - b.mean()) < 5 * math.sqrt(2 * var / n)
    assert abs(a.var() - var) < 5 * var * math.sqrt(4 / n)


def test_ddim_eta0_is_deterministic():
    s = DDIMScheduler(eta=0.0)
    s.set_timesteps(20)
    x, eps = mg.randn(4, 6), mg.randn(4, 6)
    t = s.timesteps[3]
    a = s.step(eps, t, x, generator=mg.Generator().manual_seed(0)).prev_sample
    b = s.step(eps, t, x, generator=mg.Generator().manual_seed(1)).prev_sample
    c = s.step(eps, t, x, variance_noise=mg.randn(4, 6)).prev_sample
    state = mg.get_rng_state()
    d = s.step(eps, t, x).prev_sample
    assert mg.get_rng_state() == state                  # η = 0 draws nothing
    for other in (b, c, d):
        np.testing.assert_array_equal(a.numpy(), other.numpy())
    e = s.step(eps, t, x, eta=0.5, generator=mg.Generator().manual_seed(1)).prev_sample
    assert not np.array_equal(a.numpy(), e.numpy())


# ------------------------------------------------------------------------------ RNG, seeds
@pytest.mark.parametrize("cls", [DDPMScheduler, lambda: DDIMScheduler(eta=1.0)])
def test_seeded_steps_repeat_exactly(cls):
    s = cls()
    x, eps = mg.randn(3, 8), mg.randn(3, 8)
    a = s.step(eps, 500, x, generator=mg.Generator().manual_seed(7)).prev_sample.numpy()
    b = s.step(eps, 500, x, generator=mg.Generator().manual_seed(7)).prev_sample.numpy()
    c = s.step(eps, 500, x, generator=mg.Generator().manual_seed(8)).prev_sample.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    mg.manual_seed(11)                                   # generator=None: the global RNG
    d = s.step(eps, 500, x).prev_sample.numpy()
    mg.manual_seed(11)
    e = s.step(eps, 500, x).prev_sample.numpy()
    np.testing.assert_array_equal(d, e)
    # z is standard normal from that generator: σ_t z recovered from the step
    z = mg.randn(3, 8, generator=mg.Generator().manual_seed(7))
    f = s.step(eps, 500, x, variance_noise=z).prev_sample.numpy()
    np.testing.assert_array_equal(a, f)


# ------------------------------------------------------------------ prediction types agree
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_prediction_types_give_the_same_step(sampler, clip):
    """For a consistent triple (x_0, ε, v = √ᾱ ε − √(1 − ᾱ) x_0) at x_t = √ᾱ x_0 + √(1 − ᾱ) ε,
    the ε-, x_0- and v-prediction schedulers take the same step (and the same x̂_0)."""
    ab_all = ref_alphas_cumprod()
    rng = np.random.default_rng(5)
    for t in (0, 40, 700, 999):
        ab = ab_all[t]
        x0 = 1.5 * rng.standard_normal((2, 9))
        eps, z = rng.standard_normal((2, 2, 9))
        xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        v = math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0
        outs = []
        for ptype, m in (("epsilon", eps), ("sample", x0), ("v_prediction", v)):
            if sampler == "ddpm":
                s = DDPMScheduler(prediction_type=ptype, clip_sample=clip)
            else:
                s = DDIMScheduler(prediction_type=ptype, clip_sample=clip, eta=0.7)
            o = s.step(mg.tensor(m), t, mg.tensor(xt), variance_noise=mg.tensor(z))
            outs.append((o.prev_sample.numpy(), o.pred_original_sample.numpy()))
        for prev, x0_hat in outs[1:]:
            np.testing.assert_allclose(prev, outs[0][0], rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(x0_hat, outs[0][1], rtol=1e-8, atol=1e-9)
        want_x0 = np.clip(x0, -1, 1) if clip else x0
        np.testing.assert_allclose(outs[0][1], want_x0, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------- guidance in step
@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_step_guidance_combines_batched_branches(cls):
    s = cls()
    x = mg.randn(3, 4)
    ec, eu, z = mg.randn(3, 4), mg.randn(3, 4), mg.randn(3, 4)
    both = mg.cat([ec, eu])
    for w in (0.0, 3.0):
        a = s.step(both, 420, x, variance_noise=z, guidance_scale=w).prev_sample.numpy()
        b = s.step((1 + w) * ec - w * eu, 420, x, variance_noise=z).prev_sample.numpy()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="both branches"):
        s.step(ec, 420, x, guidance_scale=1.0)


# ------------------------------------------------------------------------- config, output
def test_config_round_trip(tmp_path):
    s = DDIMScheduler(beta_schedule="cosine", eta=0.3, prediction_type="v_prediction",
                      clip_sample=False, timestep_spacing="trailing")
    cfg = s.config
    assert cfg["_class_name"] == "DDIMScheduler" and cfg["eta"] == 0.3
    assert json.loads(json.dumps(cfg)) == cfg
    r = DDIMScheduler.from_config(cfg)
    assert r.config == cfg
    np.testing.assert_array_equal(r.schedule.betas, s.schedule.betas)
    path = str(tmp_path / "scheduler_config.json")
    s.save_config(path)
    assert scheduler_from_config(path).config == cfg
    # a DDPM config feeds a DDIM scheduler (variance_type is ignored), as in diffusers
    p = DDPMScheduler(variance_type="fixed_large", beta_end=0.03)
    d = DDIMScheduler.from_config(p.config)
    assert isinstance(d, DDIMScheduler) and d.config["beta_end"] == 0.03
    assert isinstance(scheduler_from_config(p.config), DDPMScheduler)
    with pytest.raises(ValueError, match="unknown config keys"):
        DDPMScheduler.from_config({**p.config, "num_steps": 3})
    t = DDPMScheduler(trained_betas=np.linspace(1e-3, 0.05, 20))
    t2 = DDPMScheduler.from_config(t.config)
    np.testing.assert_array_equal(t2.schedule.betas, t.schedule.betas)
    assert t2.num_train_timesteps == 20 == t2.config["num_train_timesteps"]


def test_constructor_errors_and_output():
    with pytest.raises(ValueError, match="prediction_type"):
        DDPMScheduler(prediction_type="x0")
    with pytest.raises(ValueError, match="variance_type"):
        DDPMScheduler(variance_type="learned")
    with pytest.raises(ValueError, match="eta"):
        DDIMScheduler(eta=-1)
    s = DDPMScheduler()
    x = mg.randn(2, 3)
    out = s.step(x, 10, x)
    assert isinstance(out, SchedulerOutput)
    prev, x0 = out
    assert prev.shape == x0.shape == (2, 3)
    tup = s.step(x, 10, x, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    with pytest.raises(TypeError):
        s.step(x, 10.0, x)


def test_step_with_per_sample_timesteps():
    """(N,) timesteps (one per sample) give the same rows as stepping each sample alone."""
    for s in (DDPMScheduler(), DDIMScheduler(eta=0.5)):
        s.set_timesteps(25)
        ts = s.timesteps.numpy()
        t = mg.tensor(ts[[0, 5, 24]])
        x, eps, z = mg.randn(3, 4), mg.randn(3, 4), mg.randn(3, 4)
        full = s.step(eps, t, x, variance_noise=z).prev_sample.numpy()
        for i in range(3):
            row = s.step(eps[i:i + 1], int(ts[[0, 5, 24]][i]), x[i:i + 1],
                         variance_noise=z[i:i + 1]).prev_sample.numpy()
            np.testing.assert_allclose(full[i:i + 1], row, rtol=1e-6, atol=1e-7)


if __name__ == "__main__":
    import sys
    if "--regenerate" in sys.argv:
        os.makedirs(os.path.dirname(DATA), exist_ok=True)
        with open(DATA, "w") as f:
            json.dump(generate(), f, indent=1)
        print(f"wrote {DATA}")
