"""Loss functions of minigen.nn.functional against plain numpy references (loops where that
reads clearest), all reductions, hypothesis-drawn shapes, gradients by central differences."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigen as mg
import minigen.nn.functional as F
from op_check import check_op

seeds = st.integers(0, 2 ** 32 - 1)
reductions = st.sampled_from(["mean", "sum", "none"])
small_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


def rng_of(seed):
    return np.random.default_rng(seed)


def reduce_ref(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ====================================================================== regression
@given(seed=seeds, shape=small_shapes, reduction=reductions)
def test_mse_and_l1(seed, shape, reduction):
    rng = rng_of(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    check_op(lambda x, y: F.mse_loss(x, y, reduction=reduction),
             lambda x, y: reduce_ref((x - y) ** 2, reduction), [x, y])
    check_op(lambda x, y: F.l1_loss(x, y, reduction=reduction),
             lambda x, y: reduce_ref(np.abs(x - y), reduction), [x, y])


def test_mse_broadcast_warns_and_l1_tie_gradient():
    x, y = np.arange(6.0).reshape(2, 3), np.array([1.0, 0.0, 2.0])
    with pytest.warns(UserWarning, match="differs from input size"):
        out = F.mse_loss(mg.tensor(x), mg.tensor(y))
    np.testing.assert_allclose(out.item(), ((x - y) ** 2).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_op(lambda x, y: F.mse_loss(x, y, reduction="sum"),
                 lambda x, y: ((x - y) ** 2).sum(), [x, y])
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    F.l1_loss(a, mg.tensor([1.0, 0.0]), reduction="sum").backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 1.0])  # |d|' = 0 at a tie (PyTorch)


def ref_gaussian_nll(x, y, v, full, eps):
    v = np.maximum(v, eps)
    loss = 0.5 * (np.log(v) + (x - y) ** 2 / v)
    return loss + 0.5 * math.log(2 * math.pi) if full else loss


@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       var_kind=st.sampled_from(["same", "one_fewer", "size_one"]), full=st.booleans(),
       reduction=reductions)
def test_gaussian_nll_loss(seed, shape, var_kind, full, reduction):
    rng = rng_of(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    if var_kind == "same":
        vshape = shape
    elif var_kind == "one_fewer":
        vshape = shape[:-1]
    else:
        vshape = shape[:-1] + (1,)
    v = rng.uniform(0.1, 2.0, vshape)
    vb = v[..., None] if var_kind == "one_fewer" else v
    check_op(lambda x, y, v: F.gaussian_nll_loss(x, y, v, full, 1e-6, reduction),
             lambda x, y, v: reduce_ref(ref_gaussian_nll(x, y, vb, full, 1e-6), reduction),
             [x, y, v])


def test_gaussian_nll_clamp_and_float_var():
    x, y = np.array([0.5, -1.0, 2.0]), np.array([0.0, 0.0, 1.0])
    v = np.array([1e-9, 0.5, 2.0])  # the first variance is clamped to eps
    check_op(lambda x, y, v: F.gaussian_nll_loss(x, y, v, eps=1e-3, reduction="none"),
             lambda x, y, v: ref_gaussian_nll(x, y, v, False, 1e-3), [x, y, v],
             grad_inputs=[0, 1])
    vt = mg.tensor(v, requires_grad=True)
    F.gaussian_nll_loss(mg.tensor(x), mg.tensor(y), vt, eps=1e-3, reduction="sum").backward()
    vc = np.maximum(v, 1e-3)  # the clamp passes the gradient straight through (PyTorch)
    np.testing.assert_allclose(vt.grad.numpy(), 0.5 * (1 / vc - (x - y) ** 2 / vc ** 2))
    check_op(lambda x, y: F.gaussian_nll_loss(x, y, 0.7, full=True),
             lambda x, y: ref_gaussian_nll(x, y, 0.7, True, 1e-6).mean(), [x, y])


# ====================================================================== binary
def ref_bce(p, y, w):
    loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log(1 - p), -100))
    return loss if w is None else loss * w


@given(seed=seeds, shape=small_shapes, reduction=reductions, weighted=st.booleans())
def test_binary_cross_entropy(seed, shape, reduction, weighted):
    rng = rng_of(seed)
    p, y = rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    if weighted:
        w = rng.uniform(0.2, 2.0, shape[-1:] if shape else ())
        check_op(lambda p, y, w: F.binary_cross_entropy(p, y, w, reduction),
                 lambda p, y, w: reduce_ref(ref_bce(p, y, w), reduction), [p, y, w])
    else:
        check_op(lambda p, y: F.binary_cross_entropy(p, y, reduction=reduction),
                 lambda p, y: reduce_ref(ref_bce(p, y, None), reduction), [p, y])


def test_binary_cross_entropy_clamps_log_at_minus_100():
    p = mg.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    y = mg.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(loss.detach().numpy(), [100.0, 100.0, 0.0, 0.0])
    loss.sum().backward()
    assert np.isfinite(p.grad.numpy()).all()  # (x − y)/max(x(1 − x), 1e-12)
    np.testing.assert_allclose(p.grad.numpy(), [-1e12, 1e12, 0, 0], rtol=1e-6)


def ref_bce_logits(x, y, w, pw):
    """Straight from the definition: −w (pw y log σ(x) + (1 − y) log(1 − σ(x)))."""
    s = 1 / (1 + np.exp(-x))
    pw = 1.0 if pw is None else pw
    loss = -(pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    return loss if w is None else loss * w


@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       reduction=reductions, weighted=st.booleans(), pos=st.booleans())
def test_binary_cross_entropy_with_logits(seed, shape, reduction, weighted, pos):
    rng = rng_of(seed)
    x, y = rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)
    w = rng.uniform(0.2, 2.0, shape) if weighted else None
    pw = rng.uniform(0.2, 3.0, shape[-1:]) if pos else None
    arrays = [a for a in (x, y, w, pw) if a is not None]

    def split(args):
        args = list(args)
        x, y = args[0], args[1]
        rest = args[2:]
        w_ = rest.pop(0) if weighted else None
        pw_ = rest.pop(0) if pos else None
        return x, y, w_, pw_

    def fn(*args):
        x, y, w_, pw_ = split(args)
        return F.binary_cross_entropy_with_logits(x, y, w_, reduction, pw_)

    def ref(*args):
        return reduce_ref(ref_bce_logits(*split(args)), reduction)

    check_op(fn, ref, arrays)


def test_bce_with_logits_is_stable_for_large_logits():
    x = mg.tensor([-1000.0, 1000.0, 800.0, -800.0], requires_grad=True)
    y = mg.tensor([1.0, 0.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1000.0, 1000.0, 0.0, 0.0])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 1.0, 0.0, 0.0])  # σ(x) − y
    f32 = F.binary_cross_entropy_with_logits(mg.tensor([90.0], dtype=mg.float32),
                                             mg.tensor([0.0], dtype=mg.float32))
    assert f32.dtype == mg.float32 and abs(f32.item() - 90.0) < 1e-4


# ====================================================================== multi-class
def log_softmax_ref(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def ref_nll(logp, target, weight, ignore_index, reduction):
    """logp (N, C, *) and target (N, *), one sample position at a time."""
    c = logp.shape[1]
    w = np.ones(c) if weight is None else weight
    losses = np.zeros(target.shape)
    wsum = 0.0
    for pos in np.ndindex(*target.shape):
        t = target[pos]
        if t == ignore_index:
            continue
        losses[pos] = -w[t] * logp[(pos[0], t) + pos[1:]]
        wsum += w[t]
    if reduction == "none":
        return losses
    return losses.sum() / wsum if reduction == "mean" else losses.sum()


def ref_cross_entropy(x, target, weight, ignore_index, reduction, smoothing):
    logp = log_softmax_ref(x, 1)
    c = x.shape[1]
    nll = ref_nll(logp, target, weight, ignore_index, reduction)
    if smoothing == 0:
        return nll
    w = np.ones(c) if weight is None else weight
    smooth = np.zeros(target.shape)
    wsum, count = 0.0, 0
    for pos in np.ndindex(*target.shape):
        if target[pos] == ignore_index:
            continue
        smooth[pos] = -sum(w[k] * logp[(pos[0], k) + pos[1:]] for k in range(c))
        wsum += w[target[pos]]
        count += 1
    if reduction == "mean":
        smooth = smooth.sum() / wsum  # normalised by the target weights, like the nll part
    elif reduction == "sum":
        smooth = smooth.sum()
    return (1 - smoothing) * nll + smoothing / c * smooth


@st.composite
def class_problem(draw):
    seed = draw(seeds)
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    rng = rng_of(seed)
    x = rng.standard_normal((n, c) + spatial) * 2
    target = rng.integers(0, c, (n,) + spatial)
    ignore = draw(st.sampled_from([-100, 0, 1]))
    if ignore >= 0:  # mark some targets ignored, keep at least one
        mask = rng.random(target.shape) < 0.3
        mask.flat[0] = False
        target = np.where(mask, ignore, target)
        if target.flat[0] == ignore:
            target.flat[0] = (ignore + 1) % c if c > 1 else 0
            if target.flat[0] == ignore:
                ignore = -100
    weight = rng.uniform(0.2, 2.0, c) if draw(st.booleans()) else None
    return x, target, weight, ignore


@given(prob=class_problem(), reduction=reductions,
       smoothing=st.sampled_from([0.0, 0.1, 0.5]))
def test_cross_entropy_class_indices(prob, reduction, smoothing):
    x, target, weight, ignore = prob
    if weight is None:
        check_op(lambda x, t: F.cross_entropy(x, t, None, ignore, reduction, smoothing),
                 lambda x, t: ref_cross_entropy(x, t, None, ignore, reduction, smoothing),
                 [x, target])
    else:
        check_op(lambda x, t, w: F.cross_entropy(x, t, w, ignore, reduction, smoothing),
                 lambda x, t, w: ref_cross_entropy(x, t, w, ignore, reduction, smoothing),
                 [x, target, weight], grad_inputs=[0])


@given(prob=class_problem(), reduction=reductions)
def test_nll_loss(prob, reduction):
    x, target, weight, ignore = prob
    logp = log_softmax_ref(x, 1)
    if weight is None:
        check_op(lambda lp, t: F.nll_loss(lp, t, None, ignore, reduction),
                 lambda lp, t: ref_nll(lp, t, None, ignore, reduction), [logp, target])
    else:
        check_op(lambda lp, t, w: F.nll_loss(lp, t, w, ignore, reduction),
                 lambda lp, t, w: ref_nll(lp, t, w, ignore, reduction), [logp, target, weight],
                 grad_inputs=[0])


@given(seed=seeds, n=st.integers(1, 4), c=st.integers(1, 5),
       spatial=st.lists(st.integers(1, 3), min_size=0, max_size=1).map(tuple),
       reduction=reductions, smoothing=st.sampled_from([0.0, 0.2]), weighted=st.booleans())
def test_cross_entropy_probabilities(seed, n, c, spatial, reduction, smoothing, weighted):
    rng = rng_of(seed)
    x = rng.standard_normal((n, c) + spatial)
    p = rng.uniform(0.01, 1, (n, c) + spatial)
    p = p / p.sum(1, keepdims=True)
    w = rng.uniform(0.2, 2.0, c) if weighted else np.ones(c)

    def ref(x, p, w):
        y = p * (1 - smoothing) + smoothing / c
        logp = log_softmax_ref(x, 1)
        loss = np.zeros((n,) + spatial)
        for pos in np.ndindex(*loss.shape):
            loss[pos] = -sum(w[k] * y[(pos[0], k) + pos[1:]] * logp[(pos[0], k) + pos[1:]]
                             for k in range(c))
        return reduce_ref(loss, reduction)

    check_op(lambda x, p, w: F.cross_entropy(x, p, w, reduction=reduction,
                                             label_smoothing=smoothing), ref, [x, p, w])


def test_cross_entropy_unbatched_and_all_ignored():
    x = np.array([0.3, -1.2, 2.0, 0.1])
    check_op(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
             lambda x, t: ref_cross_entropy(x[None], t[None], None, -100, "mean", 0.1),
             [x, np.array(2)])
    check_op(lambda x, t: F.cross_entropy(x, t, reduction="none"),
             lambda x, t: ref_cross_entropy(x[None], t[None], None, -100, "none", 0.0)[0],
             [x, np.array(1)])
    out = F.cross_entropy(mg.tensor(np.zeros((3, 4))), mg.tensor([-100, -100, -100]))
    assert np.isnan(out.item())  # 0/0, as PyTorch
    out = F.cross_entropy(mg.tensor(np.zeros((3, 4))), mg.tensor([-100, -100, -100]),
                          reduction="sum")
    assert out.item() == 0


def test_cross_entropy_large_logits_are_stable():
    x = mg.tensor([[1000.0, -1000.0, 0.0]], requires_grad=True)
    loss = F.cross_entropy(x, mg.tensor([1]))
    np.testing.assert_allclose(loss.item(), 2000.0)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0, 0.0]], atol=1e-12)


# ====================================================================== argument errors
def test_loss_errors():
    x = mg.tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"target of shape \(3,\) does not match the input of "
                                         r"shape \(3, 4, 5\)"):
        F.cross_entropy(mg.tensor(np.zeros((3, 4, 5))), mg.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer dtype"):
        F.cross_entropy(x, mg.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="class probabilities and must be floating point"):
        F.cross_entropy(x, mg.tensor(np.zeros((3, 4), dtype=np.int64)))
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        F.cross_entropy(x, mg.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match="target -1 is out of bounds"):
        F.nll_loss(x, mg.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) should have one entry per "
                                         r"class \(4,\)"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), weight=mg.ones(3, dtype=mg.float64))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        F.cross_entropy(x, mg.tensor(np.zeros((3, 4))), ignore_index=0)
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum'"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(TypeError, match="floating point"):
        F.mse_loss(x, mg.tensor(np.zeros((3, 4), dtype=np.int64)))
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        F.l1_loss(x, mg.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"target of shape \(3,\) must have the same shape"):
        F.binary_cross_entropy_with_logits(mg.tensor(np.zeros(4)), mg.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(mg.tensor([0.5, 1.5]), mg.tensor([0.0, 1.0]))
    with pytest.raises(RuntimeError, match=r"pos_weight\): shapes \(3,\) and \(3, 4\) cannot"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=mg.ones(3, dtype=mg.float64))
    with pytest.raises(RuntimeError, match="pos_weight of shape .* does not broadcast to"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=mg.ones(2, 3, 4, dtype=mg.float64))
    with pytest.raises(ValueError, match="var of shape .* incorrect size"):
        F.gaussian_nll_loss(x, x, mg.ones(2, 2, dtype=mg.float64))
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(x, x, mg.tensor(np.full((3, 4), -1.0)))
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(x, x, -1.0)


# ====================================================================== every loss on every device
def _device_cases():
    rng = rng_of(12)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    p, t = rng.uniform(0.1, 0.9, (3, 4)), rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.5, 2, 4)
    cls = rng.integers(0, 4, 3)
    return {
        "mse": (lambda a, b: F.mse_loss(a, b), lambda a, b: ((a - b) ** 2).mean(), [x, y]),
        "l1": (lambda a, b: F.l1_loss(a, b, reduction="sum"), lambda a, b: np.abs(a - b).sum(),
               [x, y]),
        "bce": (lambda a, b, w: F.binary_cross_entropy(a, b, w),
                lambda a, b, w: ref_bce(a, b, w).mean(), [p, t, w]),
        "bce_logits": (lambda a, b, w: F.binary_cross_entropy_with_logits(a, b, pos_weight=w),
                       lambda a, b, w: ref_bce_logits(a, b, None, w).mean(), [x, t, w]),
        "cross_entropy": (lambda a, c, w: F.cross_entropy(a, c, w, label_smoothing=0.1),
                          lambda a, c, w: ref_cross_entropy(a, c, w, -100, "mean", 0.1),
                          [x, cls, w]),
        "nll": (lambda a, c: F.nll_loss(a, c, reduction="sum"),
                lambda a, c: ref_nll(a, c, None, -100, "sum"), [x, cls]),
        "gaussian_nll": (lambda a, b, v: F.gaussian_nll_loss(a, b, v),
                         lambda a, b, v: ref_gaussian_nll(a, b, v, False, 1e-6).mean(),
                         [x, y, p]),
    }


@pytest.mark.parametrize("name", sorted(_device_cases()))
def test_loss_on_device(device, name):
    fn, ref, arrays = _device_cases()[name]
    grad_inputs = [0] if name == "cross_entropy" else None
    check_op(fn, ref, arrays, device=device, grad_inputs=grad_inputs)


def test_inputs_without_a_gradient_path_refuse_requires_grad():
    """A class weight of nll_loss / cross_entropy (class-index targets) and batch_norm's running
    statistics get no gradient: asking for one is an error, not a silent zero."""
    import minigen.nn.functional as F
    x = mg.randn(4, 3, requires_grad=True)
    y = mg.tensor([0, 2, 1, 0])
    w = mg.tensor([1.0, 2.0, 0.5], requires_grad=True)
    for fn in (F.cross_entropy, lambda a, b, weight: F.nll_loss(a.log_softmax(-1), b,
                                                                 weight=weight)):
        with pytest.raises(RuntimeError, match="class weight that requires grad"):
            fn(x, y, weight=w)
        fn(x, y, weight=w.detach()).backward()      # detached: fine
    xb = mg.randn(4, 3, 2, 2, requires_grad=True)
    rm, rv = mg.zeros(3, requires_grad=True), mg.ones(3)
    for training in (False, True):
        with pytest.raises(RuntimeError, match="running_mean requires grad"):
            F.batch_norm(xb, rm, rv, training=training)
