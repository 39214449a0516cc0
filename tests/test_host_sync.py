"""Host synchronisation in the hot loops (issue 17): how often a CUDA run waits for the GPU.

A device→host transfer (``bool``/``int``/``float`` of a device value, ``.item()``, ``.get()``)
blocks the host until every queued kernel has finished, so one per op call serialises the GPU
with Python. The documented numbers, asserted here:

    sampling step (DDPM or DDIM, class-conditional UNet, with or without classifier-free
    guidance, with or without classifier guidance)                            0 transfers
    training step (forward + diffusion loss, backward, clip_grad_norm_, Adam, EMA)  0 transfers
    reading the loss / gradient norm a loop kept on the device                1 per read

Data-dependent argument checks (index bounds, class targets) run on CUDA only under
``minigen.debug_checks()`` or anomaly detection; there they cost one transfer each.

The CPU tests run minigen's "cuda" device on ``tests/fake_cupy.py``, a numpy-backed stand-in
for CuPy that counts every transfer (and refuses implicit numpy conversion, as CuPy does), with
the numpy reference kernels. The gpu-marked test repeats the loops on a real GPU under
``cupyx.allow_synchronize(False)``, with whatever kernels dispatch picks there.
"""
import warnings

import numpy as np
import pytest

import minigen as mg
from minigen.diffusion import DDIMScheduler, DDPMScheduler, sample
from minigen.diffusion.train import diffusion_loss
from minigen.models.unet import UNet
from minigen.nn import functional as F
from minigen.optim import EMA, Adam, clip_grad_norm_

import fake_cupy

K = 3                 # classes of the tiny conditional UNet
SHAPE = (2, 1, 8, 8)
STEPS = 5


@pytest.fixture
def fake_cuda(monkeypatch):
    counter = fake_cupy.install(monkeypatch)
    with mg.dispatch.use("reference"):
        yield counter


def _tiny_unet(device):
    return UNet(in_channels=1, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                attention_levels=(1,), mid_attention=True, num_groups=4, dropout=0.1,
                num_classes=K, device=device, generator=mg.Generator(device).manual_seed(0))


def _show(records):
    return "\n".join(f"  {kind}: {where}" for kind, where in records)


def _host(t):
    """A device tensor's values, read after the counting is over."""
    return t.detach().data.get()


# ------------------------------------------------------------------------- the stand-in
def test_stand_in_counts_every_transfer(fake_cuda):
    x = mg.tensor([1.0, -2.0, 3.0], device="cuda")
    s = x.sum()
    assert fake_cuda.syncs == []
    float(s)
    s.item()
    bool(s > 0)
    int(x.to(mg.int64)[0])
    x.tolist()
    repr(x)
    x.cpu()
    assert [k for k, _ in fake_cuda.syncs] == ["item", "item", "bool", "item", "get", "get",
                                               "get"]
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x.data)


# ------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("make", [DDPMScheduler, lambda: DDIMScheduler(eta=0.5)],
                         ids=["ddpm", "ddim"])
@pytest.mark.parametrize("guidance_scale", [0.0, 2.0], ids=["cond", "cfg"])
def test_sampling_loop_does_not_synchronise(fake_cuda, make, guidance_scale):
    model = _tiny_unet("cuda").eval()
    sched = make()
    sched.set_timesteps(STEPS, device="cuda")
    y = mg.tensor([0, 2], device="cuda")
    gen = mg.Generator("cuda").manual_seed(1)

    def run():
        return sample(model, sched, SHAPE, class_labels=y, guidance_scale=guidance_scale,
                      generator=gen, device="cuda")

    run()                                   # first loop: the schedule's device tables upload
    fake_cuda.reset()
    x = run()
    assert fake_cuda.syncs == [], "host syncs in the sampling loop:\n" + _show(fake_cuda.syncs)
    assert fake_cuda.uploads == [], "uploads in a warm loop:\n" + _show(fake_cuda.uploads)
    out = _host(x)
    assert out.shape == SHAPE and np.isfinite(out).all()


@pytest.mark.parametrize("guidance_scale", [0.0, 2.0], ids=["cond", "cfg"])
def test_classifier_guided_sampling_does_not_synchronise(fake_cuda, guidance_scale):
    from minigen.models.classifier import NoisyClassifier

    model = _tiny_unet("cuda").eval()
    clf = NoisyClassifier(feature_dim=16, num_classes=K, temb_channels=8, image_size=8,
                          device="cuda", generator=mg.Generator("cuda").manual_seed(4))
    sched = DDIMScheduler()
    sched.set_timesteps(3, device="cuda")
    y = mg.tensor([0, 2], device="cuda")

    def run():
        return sample(model, sched, SHAPE, class_labels=y, guidance_scale=guidance_scale,
                      classifier=clf, classifier_scale=1.0, device="cuda")

    run()
    fake_cuda.reset()
    x = run()
    assert fake_cuda.syncs == [], _show(fake_cuda.syncs)
    assert fake_cuda.uploads == [], _show(fake_cuda.uploads)
    assert np.isfinite(_host(x)).all()


# ------------------------------------------------------------------------- training
def test_training_step_does_not_synchronise(fake_cuda):
    model = _tiny_unet("cuda")
    params = list(model.parameters())
    opt = Adam(params, lr=1e-3)
    ema = EMA(model, decay=0.9)
    schedule = DDPMScheduler().schedule
    gen = mg.Generator("cuda").manual_seed(2)
    max_norm = 1e-3                         # far below the norm: clipping always acts
    loss_sum, finite = None, None

    def step():
        nonlocal loss_sum, finite
        x0 = mg.randn(*SHAPE, device="cuda", generator=gen)
        t = mg.randint(0, 1000, (SHAPE[0],), device="cuda", generator=gen)
        noise = mg.randn(*SHAPE, device="cuda", generator=gen)
        y = mg.randint(0, K + 1, (SHAPE[0],), device="cuda", generator=gen)
        loss = diffusion_loss(model, schedule, x0, t, noise, y)
        opt.zero_grad()
        loss.backward()
        gnorm = clip_grad_norm_(params, max_norm)
        opt.step()
        ema.update()
        # what a training loop keeps between its reads: sums and a finiteness flag, on device
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        ok = loss.isfinite() & gnorm.isfinite()
        finite = ok if finite is None else finite & ok
        return gnorm

    step()                                  # warm-up: one-time device tables
    fake_cuda.reset()
    for _ in range(3):
        gnorm = step()
    assert fake_cuda.syncs == [], "host syncs in a training step:\n" + _show(fake_cuda.syncs)
    assert fake_cuda.uploads == [], "uploads in a warm step:\n" + _show(fake_cuda.uploads)
    assert gnorm.device == "cuda" and gnorm.shape == ()
    # the loop's deliberate reads: one transfer each
    mean_loss = loss_sum.item() / 4
    assert bool(finite)
    assert len(fake_cuda.syncs) == 2 and np.isfinite(mean_loss) and mean_loss > 0
    # clipping acted on the device: the gradients' norm is now max_norm
    g2 = sum(float((p.grad.data.get().astype(np.float64) ** 2).sum()) for p in params)
    assert np.sqrt(g2) == pytest.approx(max_norm, rel=1e-3)
    assert float(gnorm) > max_norm


def test_clip_grad_norm_returns_device_norm_without_sync(fake_cuda):
    p = mg.nn.Parameter(mg.zeros(3, device="cuda"))
    q = mg.nn.Parameter(mg.zeros(2, device="cuda"))
    p.grad = mg.tensor([3.0, 0.0, 0.0], device="cuda")
    q.grad = mg.tensor([0.0, 4.0], device="cuda")
    fake_cuda.reset()
    total = clip_grad_norm_([p, q], max_norm=1.0)
    assert fake_cuda.syncs == []
    assert total.device == "cuda" and total.dtype == mg.float32
    assert float(total) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.data.get(), [3 / (5 + 1e-6), 0, 0], rtol=1e-6)
    fake_cuda.reset()   # error_if_nonfinite must look at the value: exactly one transfer
    clip_grad_norm_([p, q], max_norm=1.0, error_if_nonfinite=True)
    assert len(fake_cuda.syncs) == 1
    p.grad = mg.tensor([float("inf"), 0.0, 0.0], device="cuda")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p, q], max_norm=1.0, error_if_nonfinite=True)


# ------------------------------------------------------------------------- debug checks
def _bad_index_calls(dev):
    w = mg.randn(4, 3, device=dev)
    x = mg.randn(2, 3, device=dev)
    bad = mg.tensor([[0, 5, 1]], device=dev)
    logits = mg.randn(2, 3, device=dev)
    return [
        ("embedding", lambda: F.embedding(mg.tensor([1, 4], device=dev), w)),
        ("gather", lambda: x.gather(0, bad)),
        ("scatter_add", lambda: x.scatter_add(0, bad, mg.ones(1, 3, device=dev))),
        ("index_select", lambda: x.index_select(1, mg.tensor([3], device=dev))),
        ("one_hot", lambda: F.one_hot(mg.tensor([0, 3], device=dev), 3)),
        ("cross_entropy", lambda: F.cross_entropy(logits, mg.tensor([0, 3], device=dev))),
        ("binary_cross_entropy", lambda: F.binary_cross_entropy(
            mg.tensor([0.5, 1.5], device=dev), mg.tensor([0.0, 1.0], device=dev))),
        ("gaussian_nll_loss", lambda: F.gaussian_nll_loss(
            x, x, mg.tensor([[1.0, -1.0, 1.0]] * 2, device=dev))),
    ]


def test_value_checks_always_on_cpu():
    for name, call in _bad_index_calls("cpu"):
        with pytest.raises((IndexError, ValueError, RuntimeError), match=name):
            call()


def test_value_checks_on_cuda_only_in_debug_mode(fake_cuda):
    for name, call in _bad_index_calls("cuda"):
        fake_cuda.reset()
        try:          # unchecked: the result of a bad value is unspecified (CuPy wraps an index
            with np.errstate(all="ignore"):   # around; numpy under the stand-in may raise),
                call()                        # but nothing is transferred
        except (IndexError, ValueError):
            pass
        assert fake_cuda.syncs == [], f"{name} checked on cuda:\n" + _show(fake_cuda.syncs)
        for mode in (mg.debug_checks, mg.autograd.detect_anomaly):
            fake_cuda.reset()
            with mode(), pytest.raises((IndexError, ValueError, RuntimeError), match=name):
                call()
            assert fake_cuda.syncs, f"{name} raised without checking on the host"
    assert not mg.is_debug_checks_enabled()
    mg.set_debug_checks(True)
    try:
        with pytest.raises(IndexError, match="out of range for 4 embeddings"):
            _bad_index_calls("cuda")[0][1]()
    finally:
        mg.set_debug_checks(False)


def test_masked_fill_with_device_value_does_not_synchronise(fake_cuda):
    x = mg.zeros(3, device="cuda")
    v = mg.tensor(2.5, device="cuda")
    fake_cuda.reset()
    out = x.masked_fill(mg.tensor([True, False, True], device="cuda"), v)
    assert fake_cuda.syncs == []
    np.testing.assert_array_equal(out.data.get(), [2.5, 0.0, 2.5])


def test_label_smoothing_mean_does_not_synchronise(fake_cuda):
    logits = mg.randn(4, 3, device="cuda", requires_grad=True)
    target = mg.tensor([0, 2, -100, 1], device="cuda")
    fake_cuda.reset()
    loss = F.cross_entropy(logits, target, label_smoothing=0.1)
    loss.backward()
    assert fake_cuda.syncs == [], _show(fake_cuda.syncs)
    # the same numbers as on the CPU
    lc = mg.tensor(logits.detach().data.get(), requires_grad=True)
    ref = F.cross_entropy(lc, mg.tensor([0, 2, -100, 1]), label_smoothing=0.1)
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    np.testing.assert_allclose(logits.grad.data.get(), lc.grad.numpy(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- real GPU
@pytest.mark.gpu
def test_loops_do_not_synchronise_on_gpu():
    import cupyx

    allow_synchronize = getattr(cupyx, "allow_synchronize", None)
    if allow_synchronize is None:   # deprecated since CuPy 10; may be gone in a newer CuPy
        pytest.skip("this CuPy has no cupyx.allow_synchronize")
    model = _tiny_unet("cuda")
    params = list(model.parameters())
    opt, ema = Adam(params, lr=1e-3), EMA(model, decay=0.9)
    schedule = DDPMScheduler().schedule
    gen = mg.Generator("cuda").manual_seed(3)
    y = mg.tensor([0, 2], device="cuda")

    def train_step():
        x0 = mg.randn(*SHAPE, device="cuda", generator=gen)
        t = mg.randint(0, 1000, (SHAPE[0],), device="cuda", generator=gen)
        noise = mg.randn(*SHAPE, device="cuda", generator=gen)
        loss = diffusion_loss(model, schedule, x0, t, noise, y)
        opt.zero_grad()
        loss.backward()
        gnorm = clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        return loss.detach(), gnorm

    scheds = [DDPMScheduler(), DDIMScheduler(eta=0.5)]
    for s in scheds:
        s.set_timesteps(STEPS, device="cuda")

    def sample_all():
        return [sample(model.eval(), s, SHAPE, class_labels=y, guidance_scale=w, generator=gen,
                       device="cuda") for s in scheds for w in (0.0, 2.0)]

    train_step()                      # warm-up: kernel compilation, one-time tables
    sample_all()
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        guard = allow_synchronize(False)
    with guard:
        loss, gnorm = train_step()
        xs = sample_all()
    assert np.isfinite(loss.item()) and np.isfinite(gnorm.item())
    assert all(np.isfinite(x.cpu().numpy()).all() for x in xs)
