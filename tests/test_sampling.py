"""Sampling loop tests (issue 4): seeded repeats, classifier-free guidance (w = 0 is the
conditional model; both branches in one call), classifier guidance (gradient sign and shape on
a toy classifier, the ε̄ formula), trajectories, the E2-style UNet end to end, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigen as mg
from minigen.diffusion import DDIMScheduler, DDPMScheduler, sample
from minigen.diffusion.sampling import classifier_log_prob_grad

T = 1000
K = 3                                     # classes of the toy conditional model


class ToyConditional:
    """ε(x, t, y) = 0.1·x·t/T + 0.05·(y + 1) (y = K is the null class ∅); counts its calls and
    the batch sizes it saw."""
    num_classes = K

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y=None):
        self.calls.append(x.shape[0])
        assert t.shape == (x.shape[0],) and t.dtype == mg.int64
        tt = t.to(x.dtype).reshape(-1, 1, 1, 1)
        out = 0.1 * x * tt / T
        if y is not None:
            assert y.shape == (x.shape[0],)
            out = out + 0.05 * (y.to(x.dtype) + 1).reshape(-1, 1, 1, 1)
        return out


def manual_loop(model_fn, sched, x, generator=None):
    """The loop written out: ε̄ from ``model_fn(x, t)``, then the scheduler's step."""
    for t in sched.timesteps:
        x = sched.step(model_fn(x, t), t, x, generator=generator).prev_sample
    return x


SHAPE = (4, 1, 4, 4)
LABELS = [0, 2, 1, 2]


# ---------------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("make", [lambda: DDPMScheduler(), lambda: DDIMScheduler(eta=1.0),
                                  lambda: DDIMScheduler(eta=0.0)])
def test_seeded_sampling_repeats_exactly(make):
    model = ToyConditional()
    a = sample(model, make(), SHAPE, num_inference_steps=20,
               generator=mg.Generator().manual_seed(3))
    b = sample(model, make(), SHAPE, num_inference_steps=20,
               generator=mg.Generator().manual_seed(3))
    c = sample(model, make(), SHAPE, num_inference_steps=20,
               generator=mg.Generator().manual_seed(4))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    mg.manual_seed(5)
    d = sample(model, make(), SHAPE, num_inference_steps=20)
    mg.manual_seed(5)
    e = sample(model, make(), SHAPE, num_inference_steps=20)
    np.testing.assert_array_equal(d.numpy(), e.numpy())


def test_sample_is_the_written_out_loop():
    """sample() = x_T from the generator, then step after step with z from the same generator."""
    model = ToyConditional()
    for sched in (DDPMScheduler(), DDIMScheduler(eta=0.3)):
        sched.set_timesteps(25)
        got = sample(model, sched, SHAPE, generator=mg.Generator().manual_seed(9))
        gen = mg.Generator().manual_seed(9)
        x = mg.randn(*SHAPE, generator=gen)
        want = manual_loop(lambda x, t: model(x, t.reshape(1).expand(SHAPE[0])), sched, x, gen)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


# -------------------------------------------------------------------- classifier-free guidance
def test_cfg_w0_equals_the_conditional_model():
    model = ToyConditional()
    y = mg.tensor(LABELS)
    sched = DDIMScheduler(eta=0.5)
    got = sample(model, sched, SHAPE, num_inference_steps=10, class_labels=y,
                 guidance_scale=0.0, generator=mg.Generator().manual_seed(1))
    gen = mg.Generator().manual_seed(1)
    x = mg.randn(*SHAPE, generator=gen)
    want = manual_loop(lambda x, t: model(x, t.reshape(1).expand(4), y), sched, x, gen)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    # and the fused combine at w = 0 is the conditional branch exactly
    x = mg.randn(*SHAPE)
    out = model(mg.cat([x, x]), mg.full((8,), 500, dtype=mg.int64),
                mg.tensor(LABELS + [K] * 4))
    a = sched.step(out, 500, x, guidance_scale=0.0, variance_noise=x).prev_sample
    b = sched.step(out[:4], 500, x, variance_noise=x).prev_sample
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("make", [lambda: DDPMScheduler(), lambda: DDIMScheduler()])
def test_cfg_batches_both_branches_in_one_call(make):
    """w = 2.5: one model call per step on [x; x] with labels [y; ∅], and the result equals the
    loop with two separate calls combined as (1 + w) ε(x, t, y) − w ε(x, t, ∅)."""
    w = 2.5
    model = ToyConditional()
    y = mg.tensor(LABELS)
    sched = make()
    got = sample(model, sched, SHAPE, num_inference_steps=10, class_labels=y,
                 guidance_scale=w, generator=mg.Generator().manual_seed(2))
    assert model.calls == [8] * 10
    gen = mg.Generator().manual_seed(2)
    x = mg.randn(*SHAPE, generator=gen)

    def guided(x, t):
        tb = t.reshape(1).expand(4)
        return (1 + w) * model(x, tb, y) - w * model(x, tb, mg.full((4,), K, dtype=mg.int64))
    want = manual_loop(guided, sched, x, gen)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    cond = sample(model, make(), SHAPE, num_inference_steps=10, class_labels=y,
                  generator=mg.Generator().manual_seed(2))
    assert np.abs(got.numpy() - cond.numpy()).max() > 1e-3      # guidance changes the result


# ---------------------------------------------------------------------- classifier guidance
class LinearClassifier:
    """logits = flatten(x) W + b·t/T: log p(y | x) has the closed-form input gradient
    ∇_x log p(y | x) = W[:, y] − Σ_k p_k W[:, k]."""

    def __init__(self, d, k, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.standard_normal((d, k))
        self.b = rng.standard_normal(k)
        self.Wt = mg.tensor(self.W.astype(np.float32))
        self.bt = mg.tensor(self.b.astype(np.float32))

    def __call__(self, x, t):
        n = x.shape[0]
        return x.reshape(n, -1) @ self.Wt + self.bt * (t.to(x.dtype).reshape(n, 1) / T)

    def grad(self, x, t, y):
        xf = x.reshape(len(x), -1).astype(np.float64)
        logits = xf @ self.W + self.b * (t.reshape(-1, 1) / T)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (self.W[:, y].T - p @ self.W.T).reshape(x.shape)


def test_classifier_gradient_shape_value_and_sign():
    clf = LinearClassifier(16, K)
    x = mg.randn(*SHAPE)
    t = mg.tensor([10, 500, 999, 3])
    y = mg.tensor(LABELS)
    g = classifier_log_prob_grad(clf, x, t, y)
    assert g.shape == x.shape and not g.requires_grad
    want = clf.grad(x.numpy(), t.numpy(), np.array(LABELS))
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-4, atol=1e-5)
    # a small step along the gradient raises log p(y | x) for every sample (the sign)

    def log_p(xx):
        lg = clf(xx, t).numpy().astype(np.float64)
        lg = lg - lg.max(1, keepdims=True)
        return (lg - np.log(np.exp(lg).sum(1, keepdims=True)))[np.arange(4), LABELS]
    before, after = log_p(x), log_p(x + 1e-2 * g)
    assert np.all(after > before)
    # x is untouched: no grad flag leaks out of the guidance
    assert not x.requires_grad


def test_classifier_guidance_formula_in_the_loop():
    """ε̄ = ε − γ √(1 − ᾱ_t) ∇ log p(y | x_t), written out against sample(...)."""
    gamma = 2.0
    model, clf = ToyConditional(), LinearClassifier(16, K, seed=1)
    y = mg.tensor(LABELS)
    sched = DDIMScheduler()
    got = sample(model, sched, SHAPE, num_inference_steps=8, class_labels=y, classifier=clf,
                 classifier_scale=gamma, generator=mg.Generator().manual_seed(6))
    gen = mg.Generator().manual_seed(6)
    x = mg.randn(*SHAPE, generator=gen)
    ab = sched.schedule.alphas_cumprod

    def guided(x, t):
        tb = t.reshape(1).expand(4)
        g = clf.grad(x.numpy(), tb.numpy(), np.array(LABELS))
        s = math.sqrt(1 - ab[int(t.item())])
        return model(x, tb, y) - mg.tensor((gamma * s * g).astype(np.float32))
    want = manual_loop(guided, sched, x, gen)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    plain = sample(model, sched, SHAPE, class_labels=y, generator=mg.Generator().manual_seed(6))
    assert np.abs(got.numpy() - plain.numpy()).max() > 1e-3


def test_classifier_guidance_with_cfg():
    """Both guidances at once: the CFG combine, then the classifier term."""
    w, gamma = 1.5, 0.5
    model, clf = ToyConditional(), LinearClassifier(16, K, seed=2)
    y = mg.tensor(LABELS)
    sched = DDPMScheduler()
    got = sample(model, sched, SHAPE, num_inference_steps=5, class_labels=y, classifier=clf,
                 classifier_scale=gamma, guidance_scale=w,
                 generator=mg.Generator().manual_seed(8))
    gen = mg.Generator().manual_seed(8)
    x = mg.randn(*SHAPE, generator=gen)
    ab = sched.schedule.alphas_cumprod

    def guided(x, t):
        tb = t.reshape(1).expand(4)
        e = (1 + w) * model(x, tb, y) - w * model(x, tb, mg.full((4,), K, dtype=mg.int64))
        g = clf.grad(x.numpy(), tb.numpy(), np.array(LABELS))
        return e - mg.tensor((gamma * math.sqrt(1 - ab[int(t.item())]) * g).astype(np.float32))
    want = manual_loop(guided, sched, x, gen)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- trajectory, errors
def test_trajectory_and_timesteps_device():
    sched = DDIMScheduler()
    x, traj = sample(ToyConditional(), sched, SHAPE, num_inference_steps=6,
                     generator=mg.Generator().manual_seed(0), return_trajectory=True)
    assert len(traj) == 7 and traj[-1] is x and traj[0].shape == SHAPE
    assert sched.num_inference_steps == 6 and sched.timesteps.device == x.device


def test_sample_errors():
    model = ToyConditional()
    with pytest.raises(ValueError, match="needs class_labels"):
        sample(model, DDIMScheduler(), SHAPE, guidance_scale=1.0)
    with pytest.raises(ValueError, match="class_labels has shape"):
        sample(model, DDIMScheduler(), SHAPE, class_labels=mg.tensor([0, 1]))
    with pytest.raises(ValueError, match="classifier"):
        sample(model, DDIMScheduler(), SHAPE, class_labels=mg.tensor(LABELS),
               classifier_scale=1.0)
    with pytest.raises(ValueError, match="ε form"):
        sample(model, DDIMScheduler(prediction_type="v_prediction"), SHAPE,
               class_labels=mg.tensor(LABELS), classifier=LinearClassifier(16, K),
               classifier_scale=1.0)

    def uncond(x, t, y=None):
        return x
    with pytest.raises(ValueError, match="class-conditional"):
        sample(uncond, DDIMScheduler(), SHAPE, class_labels=mg.tensor(LABELS),
               guidance_scale=1.0)


def test_unet_conditional_cfg_sampling_smoke():
    """The real model: a small class-conditional UNet, DDIM with CFG, 3 steps; repeats with a
    seed, output finite and of the right shape."""
    from minigen.models import UNet
    model = UNet(model_channels=16, channel_mult=(1, 2), num_classes=K,
                 generator=mg.Generator().manual_seed(0))
    y = mg.tensor([0, 1])
    runs = [sample(model, DDIMScheduler(), (2, 1, 8, 8), num_inference_steps=3, class_labels=y,
                   guidance_scale=3.0, generator=mg.Generator().manual_seed(1))
            for _ in range(2)]
    assert runs[0].shape == (2, 1, 8, 8) and np.isfinite(runs[0].numpy()).all()
    np.testing.assert_array_equal(runs[0].numpy(), runs[1].numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("make", [lambda: DDPMScheduler(), lambda: DDIMScheduler(eta=1.0)])
def test_cuda_sampling_loop_never_synchronises(make):
    """On a GPU the loop (timesteps, lookups, noise, fused steps, CFG batching) runs under
    cupyx.allow_synchronize(False): any device→host synchronisation CuPy does would raise."""
    import cupyx
    model = ToyConditional()
    sched = make()
    sched.set_timesteps(20, device="cuda")
    y = mg.tensor(LABELS, device="cuda")
    with cupyx.allow_synchronize(False):
        x = sample(model, sched, SHAPE, class_labels=y, guidance_scale=2.0, device="cuda",
                   generator=mg.Generator("cuda").manual_seed(0))
    x = x.to("cpu").numpy()
    assert x.shape == SHAPE and np.isfinite(x).all()
    assert sched.timesteps.device.type == "cuda"
