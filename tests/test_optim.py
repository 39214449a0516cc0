"""minigen.optim: optimizers against hand-written numpy reference updates (and torch.optim when
installed), the native/numpy dispatch, param groups, checkpointing, schedulers, EMA, clipping."""
import math

import numpy as np
import pytest

import minigen as mg
from minigen import nn, optim
from minigen.optim import lr_scheduler
from minigen.optim import optimizer as optimizer_module

try:
    import torch
except ImportError:  # optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
HAS_NATIVE = optimizer_module.native_kernel("adam_step") is not None


@pytest.fixture(params=["numpy", pytest.param("native", marks=pytest.mark.skipif(
    not HAS_NATIVE, reason="native extension not built or disabled"))])
def path(request, monkeypatch):
    """Run a test once on the numpy path (native kernels hidden) and once on the native one."""
    if request.param == "numpy":
        monkeypatch.setattr(optimizer_module, "native_kernel", lambda name: None)
    return request.param


def _grads(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


def _run(opt_cls, theta0, grads, **kw):
    """Apply ``opt_cls`` to one parameter fed the given gradients; its values after each step."""
    p = nn.Parameter(mg.tensor(theta0.copy()))
    opt = opt_cls([p], **kw)
    out = []
    for g in grads:
        p.grad = mg.tensor(g, dtype=p.dtype)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


# ---------------------------------------------------------------------- reference updates
def _ref_sgd(theta, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False):
    theta, buf, out = theta.copy(), None, []
    for g in grads:
        g = -g if maximize else g
        d = g + weight_decay * theta
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        theta = theta - lr * d
        out.append(theta)
    return out


def _ref_adam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
              decoupled=False, maximize=False):
    b1, b2 = betas
    theta = theta.copy()
    m, v, vmax, out = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        theta = theta - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(theta)
    return out


SGD_CASES = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
             dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
             dict(lr=0.05, weight_decay=0.01), dict(lr=0.02, momentum=0.5, maximize=True)]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_reference(kw, path):
    theta0 = np.random.default_rng(1).standard_normal((4, 3))
    grads = _grads((4, 3), 6)
    got = _run(optim.SGD, theta0, grads, **kw)
    want = _ref_sgd(theta0, grads, **kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


ADAM_CASES = [(optim.Adam, dict(lr=0.01)),
              (optim.Adam, dict(lr=0.01, weight_decay=0.1)),
              (optim.Adam, dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99))),
              (optim.Adam, dict(lr=0.01, maximize=True, eps=1e-3)),
              (optim.AdamW, dict(lr=0.01)),
              (optim.AdamW, dict(lr=0.02, weight_decay=0.3, amsgrad=True))]


@pytest.mark.parametrize("cls,kw", ADAM_CASES)
def test_adam_matches_reference(cls, kw, path):
    theta0 = np.random.default_rng(2).standard_normal((5, 2))
    grads = _grads((5, 2), 8, seed=3)
    # the reference scales the gradients differently at several steps (tests v̂ with amsgrad)
    grads = [g * s for g, s in zip(grads, [1, 3, 0.1, 2, 0.5, 1, 4, 0.2])]
    got = _run(cls, theta0, grads, **kw)
    ref_kw = dict(kw)
    if cls is optim.AdamW:
        ref_kw.setdefault("weight_decay", 0.01)
        ref_kw["decoupled"] = True
    want = _ref_adam(theta0, grads, **ref_kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_float32_native_and_numpy_agree(cls, monkeypatch):
    theta0 = np.random.default_rng(4).standard_normal((64, 33)).astype(np.float32)
    grads = _grads((64, 33), 5, seed=5)
    numpy_run = None
    with monkeypatch.context() as mp:
        mp.setattr(optimizer_module, "native_kernel", lambda name: None)
        numpy_run = _run(cls, theta0, grads, lr=1e-2, weight_decay=0.05)
    default_run = _run(cls, theta0, grads, lr=1e-2, weight_decay=0.05)
    want = _ref_adam(theta0.astype(np.float64), grads, lr=1e-2, weight_decay=0.05,
                     decoupled=cls is optim.AdamW)
    for a, b, c in zip(numpy_run, default_run, want):
        assert a.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1),
                                  lambda ps: optim.AdamW(ps, lr=0.1)])
def test_zero_dim_and_non_contiguous_grads(make, path):
    """0-d parameters (a learned temperature) and non-contiguous gradients on both paths."""
    s = nn.Parameter(mg.tensor(1.0))
    w = nn.Parameter(mg.ones(3, 2))
    opt = make([s, w])
    for _ in range(2):
        s.grad = mg.tensor(0.5)
        w.grad = mg.ones(2, 3).T  # a transposed (non-contiguous) gradient
        opt.step()
    assert s.shape == () and float(s.detach()) < 1.0
    assert (w.detach().numpy() < 1.0).all()


def test_dispatch_uses_native_kernel_only_when_arrays_qualify(monkeypatch):
    """A fake kernel records its calls: contiguous float32/64 CPU arrays go native, amsgrad,
    non-contiguous parameters and float16 go through numpy."""
    calls = []

    def fake_adam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step,
                  decoupled):
        calls.append((param.shape, step, decoupled, weight_decay))
        assert grad.flags.c_contiguous and grad.dtype == param.dtype
        param -= lr * grad  # not Adam: makes the use of the fake visible

    monkeypatch.setattr(optimizer_module, "native_kernel",
                        lambda name: fake_adam if name == "adam_step" else None)
    p = nn.Parameter(mg.zeros(3))
    opt = optim.AdamW([p], lr=0.5, weight_decay=0.25)
    p.grad = mg.ones(6)[::2]  # a non-contiguous gradient is made contiguous for the kernel
    opt.step()
    opt.step()
    assert calls == [((3,), 1, True, 0.25), ((3,), 2, True, 0.25)]
    np.testing.assert_allclose(p.detach().numpy(), -1.0)
    calls.clear()
    for kw, make in [(dict(amsgrad=True), lambda: mg.zeros(3)),
                     ({}, lambda: mg.zeros(3, 2).T),            # non-contiguous parameter
                     ({}, lambda: mg.zeros(3, dtype=mg.float16))]:
        q = nn.Parameter(make())
        o = optim.Adam([q], lr=0.1, **kw)
        q.grad = mg.ones(*q.shape, dtype=q.dtype)
        o.step()
        np.testing.assert_allclose(q.detach().numpy().astype(np.float64), -0.1, rtol=1e-3)
    assert calls == []


def test_adam_sgd_disabled_native_env(tmp_path):
    """With MINIGEN_DISABLE_NATIVE=1 the optimizers still run (numpy path)."""
    import subprocess
    import sys
    code = ("import minigen as mg; from minigen import nn, optim\n"
            "from minigen.optim import optimizer as o\n"
            "assert o.native_kernel('adam_step') is None\n"
            "p = nn.Parameter(mg.ones(4)); opt = optim.Adam([p], lr=0.1)\n"
            "p.grad = mg.ones(4); opt.step()\n"
            "assert abs(float(p.detach()[0]) - 0.9) < 1e-6\n")
    import os
    env = dict(os.environ, MINIGEN_DISABLE_NATIVE="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)


# ---------------------------------------------------------------------- optimizer mechanics
def test_param_groups_and_validation():
    a, b = nn.Parameter(mg.zeros(2)), nn.Parameter(mg.zeros(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0, "momentum": 0.5}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 1.0
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[1]["momentum"] == 0.5
    a.grad, b.grad = mg.ones(2), mg.ones(2)
    opt.step()
    np.testing.assert_allclose(a.detach().numpy(), -0.1)
    np.testing.assert_allclose(b.detach().numpy(), -1.0)
    c = nn.Parameter(mg.zeros(1))
    opt.add_param_group({"params": c, "lr": 2.0})
    assert opt.param_groups[2]["params"] == [c] and opt.param_groups[2]["dampening"] == 0.0
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([a], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([a], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)
    assert "Parameter Group 1" in repr(opt)


def test_zero_grad_and_skipped_params():
    a, b = nn.Parameter(mg.ones(2)), nn.Parameter(mg.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = mg.ones(2)
    opt.step()
    assert b not in opt.state and opt.state[a]["step"] == 1  # no gradient: untouched, no state
    np.testing.assert_array_equal(b.detach().numpy(), 1.0)
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and not a.grad.numpy().any()
    opt.zero_grad()
    assert a.grad is None


def test_step_bumps_version_and_closure():
    w = nn.Parameter(mg.ones(3))
    opt = optim.SGD([w], lr=0.1)
    y = (w * w).sum()   # saves w
    w.grad = mg.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with mg.no_grad():  # the closure re-enables gradients
        loss = opt.step(closure)
    assert float(loss) > 0


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
                                  lambda ps: optim.AdamW(ps, lr=0.01)])
def test_optimizer_state_dict_resume(make):
    def model():
        mg.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

    x, y = mg.randn(16, 3), mg.randn(16, 1)

    def train(net, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()

    ref_net = model()
    ref_opt = make(ref_net.parameters())
    train(ref_net, ref_opt, 6)
    net = model()
    opt = make(net.parameters())
    train(net, opt, 3)
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2, 3] and sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert all(isinstance(v, (mg.Tensor, int)) for s in sd["state"].values() for v in s.values())
    msd = {k: v.clone() for k, v in net.state_dict().items()}
    sd = {"state": {i: {k: (v.clone() if isinstance(v, mg.Tensor) else v) for k, v in s.items()}
                    for i, s in sd["state"].items()},
          "param_groups": [dict(g) for g in sd["param_groups"]]}
    net2 = model()
    net2.load_state_dict(msd)
    opt2 = make(net2.parameters())
    opt2.load_state_dict(sd)
    train(net2, opt2, 3)
    for p, q in zip(ref_net.parameters(), net2.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_optimizer_load_state_dict_validates_and_casts():
    a, b = nn.Parameter(mg.zeros(2)), nn.Parameter(mg.zeros(3))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = mg.ones(2), mg.ones(3)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam([a]).load_state_dict(sd)
    a64 = nn.Parameter(mg.zeros(2, dtype=mg.float64))
    b64 = nn.Parameter(mg.zeros(3, dtype=mg.float64))
    opt64 = optim.Adam([a64, b64], lr=0.5)
    opt64.load_state_dict(sd)
    st = opt64.state[a64]
    assert st["step"] == 1 and st["exp_avg"].dtype == np.float64
    assert opt64.param_groups[0]["lr"] == 0.1  # hyper-parameters come from the state dict
    assert st["exp_avg"] is not sd["state"][0]["exp_avg"].data  # copied, not aliased
    with pytest.raises(ValueError, match="shape"):
        optim.Adam([b, a]).load_state_dict(sd)


# ---------------------------------------------------------------------- schedulers
def _opt(lr=1.0, groups=1):
    return optim.SGD([{"params": [nn.Parameter(mg.zeros(1))], "lr": lr * (i + 1)}
                      for i in range(groups)], lr=lr)


def _lrs(opt, sched, n):
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_scheduler_values():
    o = _opt(0.1)
    got = _lrs(o, lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 10)
    want = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    o = _opt(0.1)
    got = _lrs(o, lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4), 6)
    np.testing.assert_allclose(got, [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1], rtol=1e-12)
    o = _opt(1.0, groups=2)
    sched = lr_scheduler.LambdaLR(o, [lambda t: 0.5 ** t, lambda t: t + 1])
    _lrs(o, sched, 3)
    assert sched.get_last_lr() == [0.125, 8.0]
    o = _opt(1.0)
    np.testing.assert_allclose(_lrs(o, lr_scheduler.StepLR(o, 2, gamma=0.5), 5),
                               [1, 1, 0.5, 0.5, 0.25, 0.25])
    o = _opt(1.0)
    np.testing.assert_allclose(_lrs(o, lr_scheduler.ExponentialLR(o, 0.9), 3),
                               [1, 0.9, 0.81, 0.729])


def test_warmup_cosine_and_sequential():
    o = _opt(1.0)
    sched = lr_scheduler.warmup_cosine(o, warmup_steps=3, total_steps=8, eta_min=0.1)
    got = _lrs(o, sched, 9)
    want = [1 / 4, 2 / 4, 3 / 4] + [0.1 + 0.9 * (1 + math.cos(math.pi * k / 5)) / 2
                                    for k in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[8] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_scheduler.SequentialLR(o, [lr_scheduler.StepLR(o, 1)], milestones=[2])
    with pytest.raises(ValueError):
        lr_scheduler.warmup_cosine(o, 5, 5)


def test_scheduler_state_dict_resume():
    def make():
        o = _opt(0.5)
        return o, lr_scheduler.warmup_cosine(o, warmup_steps=2, total_steps=10)

    o1, s1 = make()
    ref = _lrs(o1, s1, 7)
    o2, s2 = make()
    _lrs(o2, s2, 4)
    state, opt_state = s2.state_dict(), o2.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 4
    o3, s3 = make()
    o3.load_state_dict(opt_state)
    s3.load_state_dict(state)
    rest = _lrs(o3, s3, 3)
    np.testing.assert_allclose(rest, ref[4:], rtol=1e-15)
    o4 = _opt(0.5)
    lam = lr_scheduler.LambdaLR(o4, lambda t: 0.5 ** t)
    assert "lr_lambdas" not in lam.state_dict()


@needs_torch
def test_schedulers_match_torch():
    def both(make_ours, make_theirs, steps=12):
        ours = _opt(0.3)
        tp = torch.nn.Parameter(torch.zeros(1))
        topt = torch.optim.SGD([tp], lr=0.3)
        s1, s2 = make_ours(ours), make_theirs(topt)
        a, b = [], []
        for _ in range(steps):
            a.append(ours.param_groups[0]["lr"])
            b.append(topt.param_groups[0]["lr"])
            ours.step(), topt.step()
            s1.step(), s2.step()
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)

    T = torch.optim.lr_scheduler
    both(lambda o: lr_scheduler.CosineAnnealingLR(o, 7, 0.01),
         lambda o: T.CosineAnnealingLR(o, 7, 0.01), 8)
    both(lambda o: lr_scheduler.LinearLR(o, 0.1, 1.0, 5), lambda o: T.LinearLR(o, 0.1, 1.0, 5))
    both(lambda o: lr_scheduler.StepLR(o, 3, 0.5), lambda o: T.StepLR(o, 3, 0.5))
    both(lambda o: lr_scheduler.ExponentialLR(o, 0.8), lambda o: T.ExponentialLR(o, 0.8))
    both(lambda o: lr_scheduler.LambdaLR(o, lambda t: 1 / (t + 1)),
         lambda o: T.LambdaLR(o, lambda t: 1 / (t + 1)))
    both(lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.LinearLR(o, 0.2, 1.0, 3),
                                                 lr_scheduler.CosineAnnealingLR(o, 6)], [3]),
         lambda o: T.SequentialLR(o, [T.LinearLR(o, 0.2, 1.0, 3), T.CosineAnnealingLR(o, 6)],
                                  [3]), 9)


# ---------------------------------------------------------------------- EMA
def test_ema_averages_parameters_not_buffers():
    mg.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = optim.EMA(net, decay=0.9)
    assert list(ema.shadow) == ["0.weight", "0.bias", "1.weight", "1.bias"]  # no buffers
    start = {n: p.detach().numpy().copy() for n, p in net.named_parameters()}
    with mg.no_grad():
        for p in net.parameters():
            p.data += 1.0
    net(mg.randn(8, 2))  # changes the running statistics
    rm = net[1].running_mean.numpy().copy()
    ema.update()
    for n, p in net.named_parameters():
        np.testing.assert_allclose(ema.shadow[n], 0.9 * start[n] + 0.1 * (start[n] + 1.0),
                                   rtol=1e-6)
    current = {n: p.detach().numpy().copy() for n, p in net.named_parameters()}
    with ema.average_parameters():
        for n, p in net.named_parameters():
            np.testing.assert_array_equal(p.detach().numpy(), ema.shadow[n])
        np.testing.assert_array_equal(net[1].running_mean.numpy(), rm)  # buffers untouched
    for n, p in net.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), current[n])
    ema.copy_to()
    np.testing.assert_array_equal(net[0].weight.detach().numpy(), ema.shadow["0.weight"])
    np.testing.assert_array_equal(net[1].running_mean.numpy(), rm)
    with pytest.raises(RuntimeError):
        ema.restore()


def test_ema_store_restore_warmup_and_state_dict():
    lin = nn.Linear(2, 2)
    ema = optim.EMA(lin, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0)/(10 + 0)
    w0 = lin.weight.detach().numpy().copy()
    with mg.no_grad():
        lin.weight.data[...] = 0
    ema.update()  # n = 1: d = min(0.999, 2/11)
    np.testing.assert_allclose(ema.shadow["weight"], w0 * 2 / 11, rtol=1e-6)
    ema.store()
    ema.copy_to()
    ema.restore()
    assert not lin.weight.detach().numpy().any()
    sd = ema.state_dict()
    assert sd["num_updates"] == 1 and isinstance(sd["shadow"]["weight"], mg.Tensor)
    other = optim.EMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(sd)
    assert other.decay == 0.999 and other.warmup and other.num_updates == 1
    np.testing.assert_array_equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(RuntimeError, match="missing"):
        optim.EMA(nn.Linear(2, 3)).load_state_dict(sd)
    with pytest.raises(RuntimeError, match="differ"):
        ema.update(nn.Linear(2, 2, bias=False))


# ---------------------------------------------------------------------- clipping
def test_clip_grad_norm_value_and_effect():
    ps = [nn.Parameter(mg.zeros(3)), nn.Parameter(mg.zeros(2, 2)), nn.Parameter(mg.zeros(1))]
    g = [np.array([3.0, 0, 0]), np.array([[0, 4.0], [0, 0]]), None]
    for p, gi in zip(ps, g):
        p.grad = None if gi is None else mg.tensor(gi)
    total = optim.clip_grad_norm_(ps, max_norm=1.0)
    assert float(total) == pytest.approx(5.0)
    norm_after = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in ps[:2]))
    assert norm_after == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(ps[0].grad.numpy(), [3 / (5 + 1e-6), 0, 0], rtol=1e-6)
    before = [p.grad.numpy().copy() for p in ps[:2]]
    total = nn.utils.clip_grad_norm_(ps, max_norm=10.0)  # under the limit: unchanged
    assert float(total) == pytest.approx(1.0, rel=1e-5)
    for p, b in zip(ps[:2], before):
        np.testing.assert_array_equal(p.grad.numpy(), b)
    assert float(optim.clip_grad_norm_(ps, 0.1, norm_type=math.inf)) == pytest.approx(0.8, 1e-5)
    assert np.abs(ps[1].grad.numpy()).max() == pytest.approx(0.1, rel=1e-4)
    single = nn.Parameter(mg.zeros(2))
    single.grad = mg.tensor([1.0, -1.0])
    assert float(optim.clip_grad_norm_(single, 1.0, norm_type=1)) == pytest.approx(2.0)
    assert float(optim.clip_grad_norm_([nn.Parameter(mg.zeros(1))], 1.0)) == 0.0
    single.grad = mg.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_(single, 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    p = nn.Parameter(mg.zeros(4))
    p.grad = mg.tensor([-3.0, -0.5, 0.5, 3.0])
    nn.utils.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1, -0.5, 0.5, 1])
    assert nn.utils.clip_grad_value_ is optim.clip_grad_value_


@needs_torch
def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    for norm_type in (2.0, 1.0, 3.0, math.inf):
        ours = [nn.Parameter(mg.zeros(*g.shape)) for g in grads]
        theirs = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = mg.tensor(g), torch.tensor(g)
        a = optim.clip_grad_norm_(ours, 0.7, norm_type)
        b = torch.nn.utils.clip_grad_norm_(theirs, 0.7, norm_type)
        assert float(a) == pytest.approx(float(b), rel=1e-5)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------- against torch.optim
@needs_torch
@pytest.mark.parametrize("name,kw", [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, amsgrad=True)),
])
def test_trajectories_match_torch(name, kw, path):
    """A small MLP regression trained by both libraries in float32 from the same weights."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.standard_normal((32, 2)).astype(np.float32)
    ours = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    opt = getattr(optim, name)(ours.parameters(), **kw)
    topt = getattr(torch.optim, name)(theirs.parameters(), **kw)
    xm, ym, xt, yt = mg.tensor(x), mg.tensor(y), torch.tensor(x), torch.tensor(y)
    for step in range(25):
        opt.zero_grad(), topt.zero_grad()
        ((ours(xm) - ym) ** 2).mean().backward()
        ((theirs(xt) - yt) ** 2).mean().backward()
        opt.step(), topt.step()
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=2e-5, atol=2e-6,
                                   err_msg=n)
    # and the optimizer state agrees too
    for p, q in zip(ours.parameters(), theirs.parameters()):
        for key, val in opt.state[p].items():
            tval = topt.state[q][key]
            if key == "step":
                assert val == int(tval)
            else:
                np.testing.assert_allclose(val, tval.numpy(), rtol=1e-4, atol=1e-7)
