"""minigen.ops.layers and their nn modules: conv1d/conv_transpose1d, adaptive_avg_pool2d,
unfold, instance_norm, rms_norm, glu/selu/relu6/hardswish/prelu, kl_div, smooth_l1/huber,
cosine_similarity, pairwise_distance, cdist. Forward against numpy loops and formulas written
here, gradients against float64 central differences (op_check.check_op), and PyTorch (values
and input gradients under one upstream gradient) when installed."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
import minigen.nn.functional as F
from minigen import nn
from op_check import check_op

SELU_A, SELU_L = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


# ------------------------------------------------------------------------ numpy references
def ref_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    n, c, L = x.shape
    co, cg, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    lo = (L + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, co, lo))
    per = co // groups
    for o in range(co):
        g = o // per
        for t in range(lo):
            for j in range(k):
                y[:, o, t] += xp[:, g * cg:(g + 1) * cg, t * stride + j * dilation] @ w[o, :, j]
    return y + (b[None, :, None] if b is not None else 0)


def ref_conv_transpose1d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                         dilation=1):
    n, ci, L = x.shape
    _, cg, k = w.shape
    full = (L - 1) * stride + dilation * (k - 1) + 1 + output_padding
    y = np.zeros((n, cg * groups, full))
    per = ci // groups
    for i in range(ci):
        g = i // per
        for t in range(L):
            for j in range(k):
                pos = t * stride + j * dilation
                y[:, g * cg:(g + 1) * cg, pos] += x[:, i, t, None] * w[i, :, j]
    y = y[:, :, padding: full - padding]
    return y + (b[None, :, None] if b is not None else 0)


def ref_adaptive(x, oh, ow):
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, r1 = int(np.floor(i * h / oh)), int(np.ceil((i + 1) * h / oh))
            c0, c1 = int(np.floor(j * w / ow)), int(np.ceil((j + 1) * w / ow))
            out[..., i, j] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return out


def ref_unfold(x, k, d=1, p=0, s=1):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (h + 2 * p - d * (k - 1) - 1) // s + 1
    ow = (w + 2 * p - d * (k - 1) - 1) // s + 1
    cols = []
    for ch in range(c):
        for i in range(k):
            for j in range(k):
                cols.append(np.stack([xp[:, ch, a * s + i * d, bb * s + j * d]
                                      for a in range(oh) for bb in range(ow)], axis=-1))
    return np.stack(cols, axis=1)


def ref_cdist(a, b, p):
    d = np.abs(a[..., :, None, :] - b[..., None, :, :])
    if p == np.inf:
        return d.max(-1)
    if p == 0:
        return (d != 0).sum(-1).astype(a.dtype)
    return (d ** p).sum(-1) ** (1 / p)


# --------------------------------------------------------------------------------- conv1d
@pytest.mark.parametrize("stride,padding,dilation,groups,bias", [
    (1, 0, 1, 1, True), (2, 1, 1, 1, False), (1, 2, 2, 2, True), (3, 0, 1, 2, True)])
def test_conv1d(stride, padding, dilation, groups, bias):
    rng = np.random.default_rng(stride + padding)
    x = rng.standard_normal((2, 4, 11))
    w = rng.standard_normal((6, 4 // groups, 3))
    b = rng.standard_normal(6)
    arrays = [x, w, b] if bias else [x, w]
    check_op(lambda *t: F.conv1d(*t[:2], t[2] if bias else None, stride, padding, dilation,
                                 groups),
             lambda *a: ref_conv1d(*a[:2], a[2] if bias else None, stride, padding, dilation,
                                   groups), arrays)


def test_conv1d_same_unbatched_and_errors():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 9)), rng.standard_normal((2, 3, 4))
    y = F.conv1d(mg.tensor(x), mg.tensor(w), padding="same")
    # 'same' with k = 4: total padding 3, the extra one at the end (as PyTorch)
    want = ref_conv1d(np.pad(x, ((0, 0), (1, 2)))[None], w)[0]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12)
    with pytest.raises(RuntimeError, match="3-D weight"):
        F.conv1d(mg.tensor(x), mg.tensor(w[..., None]))
    with pytest.raises(RuntimeError, match="2-D .* or 3-D"):
        F.conv1d(mg.tensor(x[None, None]), mg.tensor(w))


@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation", [
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, 1, 2, 2, 1), (1, 1, 0, 1, 2)])
def test_conv_transpose1d(stride, padding, output_padding, groups, dilation):
    rng = np.random.default_rng(stride * 7 + padding)
    x = rng.standard_normal((2, 4, 5))
    w = rng.standard_normal((4, 3, 3))
    b = rng.standard_normal(3 * groups)
    check_op(lambda *t: F.conv_transpose1d(*t, stride, padding, output_padding, groups,
                                           dilation),
             lambda *a: ref_conv_transpose1d(*a, stride, padding, output_padding, groups,
                                             dilation), [x, w, b])


# -------------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("shape,out", [((2, 3, 7, 9), (3, 4)), ((3, 8, 6), 2),
                                       ((1, 2, 5, 5), (None, 3)), ((1, 1, 4, 6), (4, 6))])
def test_adaptive_avg_pool2d(shape, out):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    o = (out, out) if isinstance(out, int) else out
    oh, ow = (shape[-2] if o[0] is None else o[0]), o[1]
    check_op(lambda t: F.adaptive_avg_pool2d(t, out), lambda a: ref_adaptive(a, oh, ow), [x])


@pytest.mark.parametrize("k,d,p,s", [(2, 1, 0, 1), (3, 1, 1, 2), (2, 2, 1, 1), (3, 1, 0, 3)])
def test_unfold(k, d, p, s):
    rng = np.random.default_rng(k + d + p + s)
    x = rng.standard_normal((2, 3, 7, 6))
    check_op(lambda t: F.unfold(t, k, d, p, s), lambda a: ref_unfold(a, k, d, p, s), [x])
    y = F.unfold(mg.tensor(x[0]), k, d, p, s)                           # unbatched
    np.testing.assert_allclose(y.numpy(), ref_unfold(x[:1], k, d, p, s)[0])


# ---------------------------------------------------------------------------------- norms
def test_instance_norm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)) * 2 + 1
    w, b = rng.standard_normal(3), rng.standard_normal(3)

    def ref(a, w, b):
        mu = a.mean(axis=(2, 3), keepdims=True)
        var = a.var(axis=(2, 3), keepdims=True)
        return (a - mu) / np.sqrt(var + 1e-5) * w[:, None, None] + b[:, None, None]
    check_op(lambda *t: F.instance_norm(t[0], weight=t[1], bias=t[2]), ref, [x, w, b])
    rm, rv = mg.zeros(3, dtype=mg.float64), mg.ones(3, dtype=mg.float64)
    F.instance_norm(mg.tensor(x), rm, rv, momentum=0.3)
    np.testing.assert_allclose(rm.numpy(), 0.3 * x.mean(axis=(2, 3)).mean(0), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.7 + 0.3 * x.var(axis=(2, 3), ddof=1).mean(0),
                               rtol=1e-12)
    y = F.instance_norm(mg.tensor(x), rm, rv, use_input_stats=False).numpy()
    want = (x - rm.numpy()[:, None, None]) / np.sqrt(rv.numpy()[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-12)


@pytest.mark.parametrize("shape,norm", [((3, 5), (5,)), ((2, 3, 4), (3, 4))])
def test_rms_norm(shape, norm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(norm)
    axes = tuple(range(len(shape) - len(norm), len(shape)))

    def ref(a, w=None, eps=1e-6):
        y = a / np.sqrt((a * a).mean(axis=axes, keepdims=True) + eps)
        return y * w if w is not None else y
    check_op(lambda t, u: F.rms_norm(t, norm, u, eps=1e-6), ref, [x, w])
    check_op(lambda t: F.rms_norm(t, norm, eps=1e-6), ref, [x])
    # eps=None: the dtype's epsilon
    got = F.rms_norm(mg.tensor(x), norm).numpy()
    np.testing.assert_allclose(got, ref(x, eps=np.finfo(np.float64).eps), rtol=1e-13)
    with pytest.raises(RuntimeError, match="normalized_shape"):
        F.rms_norm(mg.tensor(x), (7,))


# ---------------------------------------------------------------------------- activations
def _away_from(rng, shape, kinks, scale=5.0, gap=0.05):
    x = rng.uniform(-scale, scale, shape)
    for k in kinks:
        x = np.where(np.abs(x - k) < gap, k + gap * 2, x)
    return x


def test_activations():
    rng = np.random.default_rng(3)
    x = _away_from(rng, (4, 6), [0.0, 6.0, -3.0, 3.0], scale=8)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    check_op(lambda t: F.glu(t, 1), lambda a: a[:, :3] * sig(a[:, 3:]), [x])
    check_op(lambda t: F.glu(t, 0), lambda a: a[:2] * sig(a[2:]), [x])
    check_op(F.selu, lambda a: SELU_L * np.where(a > 0, a, SELU_A * (np.exp(a) - 1)), [x])
    check_op(F.relu6, lambda a: np.minimum(np.maximum(a, 0), 6), [x])
    check_op(F.hardswish, lambda a: a * np.minimum(np.maximum(a + 3, 0), 6) / 6, [x])
    with pytest.raises(RuntimeError, match="even"):
        F.glu(mg.tensor(np.ones((3, 5))))


def test_hardswish_gradient_at_the_kinks_as_pytorch():
    x = mg.tensor(np.array([-3.0, 3.0, -4.0, 4.0, 0.0]), requires_grad=True)
    F.hardswish(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-0.5, 1.5, 0.0, 1.0, 0.5])


def test_prelu():
    rng = np.random.default_rng(4)
    x = _away_from(rng, (2, 3, 4), [0.0])
    w = rng.uniform(0.1, 0.5, 3)
    check_op(F.prelu, lambda a, w: np.where(a > 0, a, w[:, None] * a), [x, w])
    check_op(F.prelu, lambda a, w: np.where(a > 0, a, w * a), [x, w[:1]])
    with pytest.raises(RuntimeError, match="channel"):
        F.prelu(mg.tensor(x), mg.tensor(np.ones(4)))


# --------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("reduction", ["none", "mean", "sum", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    rng = np.random.default_rng(5)
    inp = np.log(rng.dirichlet(np.ones(5), size=3))
    tgt = rng.dirichlet(np.ones(5), size=3)
    if log_target:
        tgt = np.log(tgt)

    def ref(i, t):
        p = np.exp(t) if log_target else t
        lp = t if log_target else np.log(t)
        loss = p * (lp - i)
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum(),
                "batchmean": loss.sum() / i.shape[0]}[reduction]
    check_op(lambda i, t: F.kl_div(i, t, reduction=reduction, log_target=log_target), ref,
             [inp, tgt])


def test_kl_div_zero_target_counts_zero():
    out = F.kl_div(mg.tensor(np.array([-1.0, -2.0])), mg.tensor(np.array([0.0, 1.0])),
                   reduction="sum")
    assert out.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="reduction"):
        F.kl_div(mg.tensor(np.zeros(2)), mg.tensor(np.zeros(2)), reduction="avg")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("param", [0.5, 1.0, 2.0, 0.0])
def test_smooth_l1_and_huber(reduction, param):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4)) * 2
    y = rng.standard_normal((3, 4))
    d = x - y
    if param:
        d = np.where(np.abs(np.abs(d) - param) < 0.05, d + 0.2, d)   # away from the kink
        x = y + d
    red = {"none": lambda v: v, "mean": np.mean, "sum": np.sum}[reduction]

    def ref_smooth(a, b):
        dd = np.abs(a - b)
        if param == 0:
            return red(dd)
        return red(np.where(dd < param, 0.5 * dd ** 2 / param, dd - 0.5 * param))
    check_op(lambda a, b: F.smooth_l1_loss(a, b, reduction=reduction, beta=param), ref_smooth,
             [x, y])
    if param:
        def ref_huber(a, b):
            dd = np.abs(a - b)
            return red(np.where(dd < param, 0.5 * dd ** 2, param * (dd - 0.5 * param)))
        check_op(lambda a, b: F.huber_loss(a, b, reduction=reduction, delta=param), ref_huber,
                 [x, y])
    with pytest.raises(ValueError, match="delta"):
        F.huber_loss(mg.tensor(x), mg.tensor(y), delta=0.0)


# ------------------------------------------------------------------------------ distances
def test_cosine_similarity_and_pairwise_distance():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((1, 5))

    def ref_cos(x, y, dim):
        return (x * y).sum(dim) / (np.sqrt((x * x).sum(dim)) * np.sqrt((y * y).sum(dim)))
    check_op(lambda x, y: F.cosine_similarity(x, y, dim=1), lambda x, y: ref_cos(x, y, 1),
             [a, b])
    check_op(lambda x, y: F.cosine_similarity(x, y, dim=0), lambda x, y: ref_cos(x, y, 0),
             [a, a[::-1].copy()])
    for p in [2.0, 1.0, 3.0]:
        check_op(lambda x, y: F.pairwise_distance(x, y, p),
                 lambda x, y: (np.abs(x - y + 1e-6) ** p).sum(-1) ** (1 / p), [a, b])
    out = F.pairwise_distance(mg.tensor(a), mg.tensor(b), keepdim=True)
    assert out.shape == (4, 1)


@pytest.mark.parametrize("mode", ["use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist",
                                  "donot_use_mm_for_euclid_dist"])
@pytest.mark.parametrize("P,R", [(5, 4), (30, 6)])
def test_cdist_euclidean(mode, P, R):
    rng = np.random.default_rng(P + R)
    a, b = rng.standard_normal((2, P, 3)), rng.standard_normal((1, R, 3))
    check_op(lambda x, y: F.cdist(x, y, compute_mode=mode), lambda x, y: ref_cdist(x, y, 2),
             [a, b])


@pytest.mark.parametrize("p", [1.0, 3.0, 0.5, np.inf, 0.0])
def test_cdist_other_p(p):
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    check_op(lambda x, y: F.cdist(x, y, p), lambda x, y: ref_cdist(x, y, p), [a, b])


def test_cdist_zero_distance_gradient_and_errors():
    a = mg.tensor(np.array([[1.0, 2.0], [0.0, 0.0]]), requires_grad=True)
    d = F.cdist(a, a.detach(), compute_mode="use_mm_for_euclid_dist")
    d.sum().backward()
    assert np.isfinite(a.grad.numpy()).all()
    # row 0: distance to itself 0 (no gradient), to row 1 gives (a0 − a1)/‖a0 − a1‖
    np.testing.assert_allclose(a.grad.numpy()[0], np.array([1.0, 2.0]) / np.sqrt(5))
    with pytest.raises(RuntimeError, match="columns"):
        F.cdist(mg.randn(3, 2), mg.randn(3, 4))
    with pytest.raises(ValueError, match="compute_mode"):
        F.cdist(mg.randn(3, 2), mg.randn(3, 2), compute_mode="fast")
    with pytest.raises(ValueError, match="non-negative"):
        F.cdist(mg.randn(3, 2), mg.randn(3, 2), p=-1)


# -------------------------------------------------------------------------------- modules
def test_modules():
    mg.manual_seed(0)
    c = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    assert c.weight.shape == (6, 2, 3) and c.bias.shape == (6,)
    bound = 1 / np.sqrt(2 * 3)
    assert np.abs(c.weight.detach().numpy()).max() <= bound
    assert np.abs(c.bias.detach().numpy()).max() <= bound
    x = mg.randn(2, 4, 9)
    np.testing.assert_allclose(c(x).detach().numpy(), ref_conv1d(
        x.numpy(), c.weight.detach().numpy(), c.bias.detach().numpy(), 2, 1, 1, 2), rtol=1e-5,
        atol=1e-6)
    ct = nn.ConvTranspose1d(4, 6, 3, stride=2, output_padding=1)
    assert ct.weight.shape == (4, 6, 3) and ct(x).shape == (2, 6, 20)
    assert nn.AdaptiveAvgPool2d((2, 3))(mg.randn(1, 2, 5, 7)).shape == (1, 2, 2, 3)
    assert nn.Unfold(2, stride=2)(mg.randn(1, 2, 4, 4)).shape == (1, 8, 4)
    p = nn.PReLU(3)
    assert np.allclose(p.weight.detach().numpy(), 0.25)
    assert p(mg.randn(2, 3, 4)).shape == (2, 3, 4)
    r = nn.RMSNorm([4])
    assert np.array_equal(r.weight.detach().numpy(), np.ones(4))
    assert nn.GLU()(mg.randn(2, 4)).shape == (2, 2)
    for m in (nn.SELU(), nn.ReLU6(), nn.Hardswish()):
        assert m(mg.randn(3)).shape == (3,)
    inorm = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    xi = mg.randn(2, 3, 4, 4)
    inorm(xi)
    assert not np.allclose(inorm.running_mean.numpy(), 0)
    inorm.eval()
    assert inorm(xi[0]).shape == (3, 4, 4)
    assert nn.CosineSimilarity(dim=0)(mg.randn(3, 2), mg.randn(3, 2)).shape == (2,)
    assert nn.PairwiseDistance()(mg.randn(3, 2), mg.randn(3, 2)).shape == (3,)
    t = mg.randn(2, 3)
    assert nn.SmoothL1Loss(beta=0.5)(t, t * 2).item() == F.smooth_l1_loss(t, t * 2,
                                                                           beta=0.5).item()
    assert nn.HuberLoss(delta=2.0)(t, t).item() == 0
    assert nn.KLDivLoss(reduction="batchmean", log_target=True)(t, t).item() == 0


# ------------------------------------------------------------------------------- PyTorch
@pytest.mark.filterwarnings("ignore:reduction")   # PyTorch's note on kl_div's 'mean'
def test_against_torch():
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    rng = np.random.default_rng(9)

    def both(fn_mg, fn_t, *arrays):
        ts = [mg.tensor(a, requires_grad=True) for a in arrays]
        tt = [torch.tensor(a, requires_grad=True) for a in arrays]
        a, b = fn_mg(*ts), fn_t(*tt)
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-9,
                                   atol=1e-11)
        w = rng.standard_normal(tuple(b.shape))
        (a * mg.tensor(w)).sum().backward()
        (b * torch.tensor(w)).sum().backward()
        for x, y in zip(ts, tt):
            np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-8, atol=1e-10)

    x3 = rng.standard_normal((2, 4, 10))
    w3 = rng.standard_normal((6, 2, 3))
    both(lambda x, w: F.conv1d(x, w, stride=2, padding=1, dilation=2, groups=2),
         lambda x, w: TF.conv1d(x, w, stride=2, padding=1, dilation=2, groups=2), x3, w3)
    both(lambda x, w: F.conv1d(x, w, padding="same", groups=2),
         lambda x, w: TF.conv1d(x, w, padding="same", groups=2), x3, w3)
    wt = rng.standard_normal((4, 3, 4))
    both(lambda x, w: F.conv_transpose1d(x, w, stride=3, padding=1, output_padding=2),
         lambda x, w: TF.conv_transpose1d(x, w, stride=3, padding=1, output_padding=2), x3, wt)
    x4 = rng.standard_normal((2, 3, 7, 9))
    both(lambda x: F.adaptive_avg_pool2d(x, (3, 4)), lambda x: TF.adaptive_avg_pool2d(x, (3, 4)),
         x4)
    both(lambda x: F.unfold(x, (2, 3), 1, 1, 2), lambda x: TF.unfold(x, (2, 3), 1, 1, 2), x4)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    both(lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
         lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), x4, w, b)
    both(lambda x, w: F.rms_norm(x, (7, 9), w), lambda x, w: TF.rms_norm(x, (7, 9), w), x4,
         rng.standard_normal((7, 9)))
    xa = _away_from(rng, (3, 8), [0.0, 6.0, -3.0, 3.0], scale=8)
    for f in ("selu", "relu6", "hardswish"):
        both(getattr(F, f), getattr(TF, f), xa)
    both(lambda x: F.glu(x, -1), lambda x: TF.glu(x, -1), xa)
    both(F.prelu, TF.prelu, x4, rng.uniform(0.1, 0.3, 3))
    inp = np.log(rng.dirichlet(np.ones(5), size=3))
    tgt = rng.dirichlet(np.ones(5), size=3)
    for red in ("mean", "sum", "batchmean", "none"):
        both(lambda i, t: F.kl_div(i, t, reduction=red), lambda i, t: TF.kl_div(
            i, t, reduction=red), inp, tgt)
        both(lambda i, t: F.kl_div(i, t, reduction=red, log_target=True),
             lambda i, t: TF.kl_div(i, t, reduction=red, log_target=True), inp, np.log(tgt))
    xl, yl = rng.standard_normal((4, 5)) * 2, rng.standard_normal((4, 5))
    both(lambda a, b: F.smooth_l1_loss(a, b, beta=0.7),
         lambda a, b: TF.smooth_l1_loss(a, b, beta=0.7), xl, yl)
    both(lambda a, b: F.huber_loss(a, b, delta=0.7), lambda a, b: TF.huber_loss(a, b, delta=0.7),
         xl, yl)
    both(lambda a, b: F.cosine_similarity(a, b, dim=-1),
         lambda a, b: TF.cosine_similarity(a, b, dim=-1), xl, yl[:1])
    both(lambda a, b: F.pairwise_distance(a, b, 3.0), lambda a, b: TF.pairwise_distance(
        a, b, 3.0), xl, yl)
    c1, c2 = rng.standard_normal((2, 40, 5)), rng.standard_normal((2, 30, 5))
    for p in (2.0, 1.0, 3.0, float("inf")):
        both(lambda a, b: F.cdist(a, b, p), lambda a, b: torch.cdist(a, b, p), c1, c2)
    both(lambda a, b: F.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist"),
         lambda a, b: torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist"), c1, c2)
    # instance-norm running statistics and the module in eval mode
    m = nn.InstanceNorm2d(3, track_running_stats=True, dtype=mg.float64)
    tm = torch.nn.InstanceNorm2d(3, track_running_stats=True).double()
    m(mg.tensor(x4))
    tm(torch.tensor(x4))
    np.testing.assert_allclose(m.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.running_var.numpy(), tm.running_var.numpy(), rtol=1e-12)
    m.eval(), tm.eval()
    np.testing.assert_allclose(m(mg.tensor(x4)).detach().numpy(),
                               tm(torch.tensor(x4)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------- the CuPy path (stand-in)
def test_cuda_path_matches_cpu_without_transfers(monkeypatch):
    """Every op on the CuPy stand-in of fake_cupy: values and gradients as on the CPU and no
    device→host transfer in forward + backward."""
    import fake_cupy
    counter = fake_cupy.install(monkeypatch)
    rng = np.random.default_rng(13)
    x3, x4 = rng.standard_normal((2, 4, 9)), rng.standard_normal((2, 3, 7, 9))
    xa = _away_from(rng, (3, 8), [0.0, 6.0, -3.0, 3.0], scale=8)
    lp, pr = np.log(rng.dirichlet(np.ones(5), size=3)), rng.dirichlet(np.ones(5), size=3)
    c1, c2 = rng.standard_normal((30, 3)), rng.standard_normal((28, 3))
    calls = [
        ("conv1d", lambda x, w: F.conv1d(x, w, stride=2, padding=1), [x3, x3[:3, :, :3]]),
        ("conv_transpose1d", lambda x, w: F.conv_transpose1d(x, w, stride=2),
         [x3, rng.standard_normal((4, 3, 3))]),
        ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 4)), [x4]),
        ("unfold", lambda x: F.unfold(x, 3, padding=1, stride=2), [x4]),
        ("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
         [x4, x4[0, :, 0, 0], x4[1, :, 0, 0]]),
        ("rms_norm", lambda x, w: F.rms_norm(x, (9,), w), [x4, x4[0, 0, 0]]),
        ("glu", F.glu, [xa]), ("selu", F.selu, [xa]), ("relu6", F.relu6, [xa]),
        ("hardswish", F.hardswish, [xa]), ("prelu", F.prelu, [x4, np.array([0.1, 0.2, 0.3])]),
        ("kl_div", lambda i, t: F.kl_div(i, t, reduction="batchmean"), [lp, pr]),
        ("smooth_l1", lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), [xa, xa[::-1].copy()]),
        ("huber", lambda a, b: F.huber_loss(a, b, delta=0.5), [xa, xa[::-1].copy()]),
        ("cosine_similarity", lambda a, b: F.cosine_similarity(a, b), [xa, xa[::-1].copy()]),
        ("pairwise_distance", F.pairwise_distance, [xa, xa[::-1].copy()]),
        ("cdist mm", F.cdist, [c1, c2]), ("cdist p=1", lambda a, b: F.cdist(a, b, 1.0), [c1, c2]),
    ]
    for name, fn, arrays in calls:
        cpu_leaves = [mg.tensor(a, requires_grad=True) for a in arrays]
        cpu = fn(*cpu_leaves)
        g = rng.standard_normal(cpu.shape)
        cpu.backward(mg.tensor(g))
        with mg.dispatch.use("reference"):
            leaves = [mg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
            gdev = mg.tensor(g, device="cuda")
            counter.reset()
            dev = fn(*leaves)
            dev.backward(gdev)
        assert counter.syncs == [], f"{name}: host transfers {counter.syncs}"
        assert isinstance(dev.data, fake_cupy.FakeArray)
        np.testing.assert_allclose(dev.detach().data.get(), cpu.detach().numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
        for lv, r in zip(leaves, cpu_leaves):
            np.testing.assert_allclose(lv.grad.data.get(), r.grad.numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=name)
