"""minigen.nn: Module machinery (registration, traversal, modes, to(), state_dict), Parameter,
containers, layers (against PyTorch when it is importable, else against numpy formulas) and
nn.init."""
import copy
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import minigen as mg
from minigen import nn
from minigen.nn import functional as F
from minigen.nn import init

try:
    import torch
except ImportError:  # optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2)
        self.register_buffer("scale", mg.ones(2))
        self.register_buffer("cache", mg.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.bn(self.fc1(x)).relu()) * self.scale


def _np(t):
    return t.detach().numpy()


# ---------------------------------------------------------------------- Parameter
def test_parameter_is_tensor_subclass_and_shares_memory():
    t = mg.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, mg.Tensor)
    assert p.requires_grad and p.is_leaf
    assert p.data is t.data and p._vc is t._vc
    y = p * 2
    assert type(y) is mg.Tensor and type(p.detach()) is mg.Tensor
    assert "Parameter containing" in repr(p)
    q = nn.Parameter(mg.arange(3), requires_grad=False)
    assert not q.requires_grad and q.dtype == mg.int64
    with pytest.raises(RuntimeError):
        nn.Parameter(mg.arange(3))  # integers can't require grad
    assert nn.Parameter().shape == (0,)


def test_parameter_copy_and_pickle_keep_type():
    p = nn.Parameter(mg.randn(3))
    p.grad = mg.ones(3)
    for q in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert type(q) is nn.Parameter and q.requires_grad
        np.testing.assert_array_equal(_np(q), _np(p))
        assert q.data is not p.data
        np.testing.assert_array_equal(q.grad.numpy(), np.ones(3))


# ---------------------------------------------------------------------- registration
def test_registration_params_buffers_children():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    bnames = [n for n, _ in net.named_buffers()]
    assert bnames == ["scale", "cache", "bn.running_mean", "bn.running_var",
                      "bn.num_batches_tracked"]
    # buffers are never parameters
    pids = {id(p) for p in net.parameters()}
    assert not any(id(b) in pids for b in net.buffers())
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "fc2"]
    assert len(list(net.parameters(recurse=False))) == 0
    assert [n for n, _ in net.named_buffers(recurse=False)] == ["scale", "cache"]
    assert net.get_submodule("bn") is net.bn and net.get_parameter("fc1.bias") is net.fc1.bias
    assert net.num_parameters() == 3 * 4 + 4 + 4 + 4 + 4 * 2 + 2


def test_setattr_rules():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weight"):
        m.weight = mg.randn(2, 2)  # a plain tensor can't replace a parameter
    m.bias = None
    assert m.bias is None and [n for n, _ in m.named_parameters()] == ["weight"]
    m.extra = nn.Parameter(mg.zeros(1))
    assert "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())
    with pytest.raises(AttributeError):
        m.nothing_here
    m.register_buffer("buf", mg.zeros(2))
    m.buf = mg.ones(2)  # reassigning a buffer keeps it a buffer
    assert dict(m.named_buffers())["buf"].numpy().tolist() == [1.0, 1.0]
    with pytest.raises(TypeError):
        m.buf = 3.0
    with pytest.raises(KeyError):
        m.register_buffer("weight", mg.zeros(1))  # name taken by a parameter
    with pytest.raises(KeyError):
        m.register_parameter("a.b", None)

    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(mg.zeros(1))

    with pytest.raises(AttributeError, match="__init__"):
        NoInit()


def test_shared_parameters_and_modules_deduplicated():
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # tied weights
    model = nn.Sequential(emb, head, head)
    params = list(model.parameters())
    assert len(params) == 1
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert names == ["0.weight", "1.weight", "2.weight"]
    assert len(list(model.modules())) == 3  # Sequential, emb, head once
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "1.weight", "2.weight"]
    # loading writes the shared tensor (consistently)
    new = {k: mg.ones(5, 3) for k in sd}
    model.load_state_dict(new)
    np.testing.assert_array_equal(_np(emb.weight), np.ones((5, 3)))


def test_deepcopy_and_pickle_model():
    emb = nn.Embedding(4, 2)
    head = nn.Linear(2, 4, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head, nn.BatchNorm1d(3))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone[0].weight is clone[1].weight  # tying survives
        assert clone[0].weight is not emb.weight
        assert isinstance(clone[0].weight, nn.Parameter)
        assert [n for n, _ in clone.named_buffers()] == [n for n, _ in model.named_buffers()]
        for (k, a), b in zip(model.state_dict().items(), clone.state_dict().values()):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
        with mg.no_grad():
            clone[0].weight.data[...] = 0
        assert emb.weight.detach().numpy().any()


def test_train_eval_apply_requires_grad_zero_grad():
    net = Net()
    assert net.training and net.bn.training
    assert net.eval() is net
    assert not net.training and not net.fc1.training and not net.bn.training
    net.train()
    assert all(m.training for m in net.modules())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_(True)
    net(mg.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_dtype_in_place_keeps_identity():
    net = Net()
    params = list(net.parameters())
    opt = mg.optim.SGD(net.parameters(), lr=0.1)
    net(mg.randn(4, 3)).sum().backward()
    assert net.to(mg.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == mg.float64 for p in net.parameters())
    assert all(p.grad.dtype == mg.float64 for p in net.parameters())
    assert net.bn.running_mean.dtype == mg.float64
    assert net.bn.num_batches_tracked.dtype == mg.int64  # integers are not cast
    before = _np(net.fc1.weight).copy()
    opt.step()  # the optimizer still holds the same, now float64, parameters
    assert not np.array_equal(before, _np(net.fc1.weight))
    out = net(mg.randn(4, 3, dtype=mg.float64))
    assert out.dtype == mg.float64
    net.float()
    assert net.fc1.weight.dtype == mg.float32
    with pytest.raises(TypeError):
        net.to(mg.int64)


@pytest.mark.gpu
def test_to_device_keeps_identity():
    net = Net()
    w = net.fc1.weight
    net.to("cuda")
    assert net.fc1.weight is w and w.device == "cuda"
    assert net.bn.running_var.device == "cuda"
    out = net(mg.randn(4, 3, device="cuda"))
    assert out.device == "cuda"
    net.cpu()
    assert w.device == "cpu"


# ---------------------------------------------------------------------- state dict
def test_state_dict_contents_and_round_trip():
    mg.manual_seed(0)
    a = Net()
    a(mg.randn(8, 3))  # moves the BatchNorm running statistics
    sd = a.state_dict()
    # own parameters and buffers first, then children (PyTorch's order); the non-persistent
    # buffer is not saved
    assert list(sd) == ["scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                        "fc2.weight", "fc2.bias"]
    assert all(type(v) is mg.Tensor and not v.requires_grad for v in sd.values())
    assert sd["fc1.weight"].data is a.fc1.weight.data  # shares memory, like PyTorch
    assert a.state_dict(keep_vars=True)["fc1.weight"] is a.fc1.weight
    b = Net()
    res = b.load_state_dict({k: v.clone() for k, v in sd.items()})
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k in sd:
        np.testing.assert_array_equal(_np(b.state_dict()[k]), _np(sd[k]))
    a.eval(), b.eval()
    x = mg.randn(5, 3)
    np.testing.assert_array_equal(_np(a(x)), _np(b(x)))
    # numpy arrays and other dtypes are accepted and cast to the target
    b.load_state_dict({k: (v.numpy().astype(np.float64) if v.is_floating_point() else v.numpy())
                       for k, v in sd.items()})
    assert b.fc1.weight.dtype == mg.float32


def test_load_state_dict_errors_list_everything_and_change_nothing():
    a = Net()
    before = {k: v.numpy().copy() for k, v in a.state_dict().items()}
    vcs = {k: v._vc[0] for k, v in a.state_dict().items()}
    good = {k: mg.randn(*v.shape) if v.is_floating_point() else v.clone()
            for k, v in a.state_dict().items()}
    bad = dict(good)
    del bad["fc2.bias"]
    bad["extra.weight"] = mg.zeros(1)
    bad["fc1.weight"] = mg.zeros(5, 3)
    with pytest.raises(RuntimeError) as err:
        a.load_state_dict(bad)
    msg = str(err.value)
    assert '"fc2.bias"' in msg and "Missing" in msg
    assert '"extra.weight"' in msg and "Unexpected" in msg
    assert 'size mismatch for "fc1.weight"' in msg and "(5, 3)" in msg and "(4, 3)" in msg
    for k, v in a.state_dict().items():  # nothing was written, not even the valid keys
        np.testing.assert_array_equal(v.numpy(), before[k])
        assert v._vc[0] == vcs[k]
    # strict=False: missing/unexpected are reported, shape mismatches are still errors
    with pytest.raises(RuntimeError, match="size mismatch"):
        a.load_state_dict(bad, strict=False)
    bad["fc1.weight"] = good["fc1.weight"]
    res = a.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["fc2.bias"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(_np(a.fc1.weight), good["fc1.weight"].numpy())
    np.testing.assert_array_equal(_np(a.fc2.bias), before["fc2.bias"])
    with pytest.raises(RuntimeError, match="expected a tensor"):
        a.load_state_dict({**good, "scale": "not a tensor"})


def test_load_state_dict_bumps_version_counter():
    lin = nn.Linear(2, 2)
    x = mg.randn(3, 2, requires_grad=True)
    y = (x @ lin.weight.T).sum()  # saves the weight for backward
    lin.load_state_dict({"weight": mg.zeros(2, 2), "bias": mg.zeros(2)})
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_repr_tree():
    model = nn.Sequential(nn.Linear(2, 3), nn.ModuleList([nn.ReLU(), nn.GELU("tanh")]))
    text = repr(model)
    expected = ("Sequential(\n"
                "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
                "  (1): ModuleList(\n"
                "    (0): ReLU()\n"
                "    (1): GELU(approximate='tanh')\n"
                "  )\n"
                ")")
    assert text == expected
    assert repr(nn.BatchNorm2d(4)) == ("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, "
                                      "track_running_stats=True)")


# ---------------------------------------------------------------------- containers
def test_sequential():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    x = mg.randn(4, 2)
    ref = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(_np(seq(x)), _np(ref))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0]
    with pytest.raises(IndexError):
        seq[3]
    del seq[1]
    assert [n for n, _ in seq.named_children()] == ["0", "1"]
    seq.append(nn.Sigmoid())
    assert isinstance(seq[2], nn.Sigmoid)
    seq.insert(1, nn.ReLU())
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]
    assert named["enc"] is named[0]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.Linear(2, 2))
    layers += [nn.ReLU()]
    assert len(layers) == 5 and isinstance(layers[-1], nn.ReLU)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    del layers[0]
    assert [n for n, _ in layers.named_children()] == ["0", "1", "2", "3"]
    layers[0] = nn.Identity()
    assert isinstance(layers[0], nn.Identity)
    d = nn.ModuleDict({"a": nn.Linear(1, 2), "b": nn.ReLU()})
    assert "a" in d and list(d.keys()) == ["a", "b"] and len(d) == 2
    d["c"] = nn.Linear(2, 1)
    assert list(d.state_dict()) == ["a.weight", "a.bias", "c.weight", "c.bias"]
    assert isinstance(d.pop("b"), nn.ReLU) and list(d) == ["a", "c"]
    with pytest.raises(TypeError):
        d["x"] = 3

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    assert list(Holder().state_dict()) == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
                                           "blocks.1.bias"]


# ---------------------------------------------------------------------- layers
def test_linear_default_init_as_pytorch():
    mg.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = _np(lin.weight), _np(lin.bias)
    assert w.shape == (300, 400) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound  # U(±bound) has std bound/√3
    assert abs(w.mean()) < 0.01 * bound
    x = mg.randn(7, 400)
    np.testing.assert_allclose(_np(lin(x)), x.numpy() @ w.T + b, rtol=1e-5, atol=1e-5)
    assert nn.Linear(3, 2, bias=False).bias is None
    g = mg.Generator().manual_seed(3)
    l1, l2 = nn.Linear(3, 2), nn.Linear(3, 2)
    l1.reset_parameters(generator=g)
    l2.reset_parameters(generator=mg.Generator().manual_seed(3))
    np.testing.assert_array_equal(_np(l1.weight), _np(l2.weight))


def test_embedding_padding_idx():
    emb = nn.Embedding(6, 3, padding_idx=-1)
    assert emb.padding_idx == 5
    assert not _np(emb.weight)[5].any()
    idx = mg.tensor([[0, 5, 2], [5, 2, 2]])
    out = emb(idx)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(_np(out), _np(emb.weight)[idx.numpy()])
    out.sum().backward()
    g = emb.weight.grad.numpy()
    np.testing.assert_array_equal(g[5], 0)
    np.testing.assert_array_equal(g[2], 3)
    np.testing.assert_array_equal(g[0], 1)
    pre = nn.Embedding.from_pretrained(mg.eye(4))
    assert not pre.weight.requires_grad
    with pytest.raises(ValueError):
        nn.Embedding(3, 2, padding_idx=3)


def test_flatten_unflatten_identity():
    x = mg.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Unflatten(1, (3, 20))(nn.Flatten()(x)).shape == (2, 3, 20)
    assert nn.Identity(5, foo=1)(x) is x


def _bn_reference(x, mean, var, w, b, momentum, eps, training):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1, -1] + [1] * (x.ndim - 2)
    if training:
        mu, v = x.mean(axes), x.var(axes)
        n = x.size // x.shape[1]
        mean = (1 - momentum) * mean + momentum * mu
        var = (1 - momentum) * var + momentum * v * n / (n - 1)
    else:
        mu, v = mean, var
    y = (x - mu.reshape(shape)) / np.sqrt(v.reshape(shape) + eps) * w.reshape(shape) + \
        b.reshape(shape)
    return y, mean, var


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (8, 3)), (nn.BatchNorm1d, (8, 3, 5)),
                                       (nn.BatchNorm2d, (4, 3, 5, 2))])
def test_batchnorm_running_stats(cls, shape):
    rng = np.random.default_rng(0)
    bn = cls(3, momentum=0.2).double()
    with mg.no_grad():
        bn.weight.data[:] = rng.standard_normal(3)
        bn.bias.data[:] = rng.standard_normal(3)
    mean, var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        y = bn(mg.tensor(x))
        ref, mean, var = _bn_reference(x, mean, var, _np(bn.weight), _np(bn.bias), 0.2, 1e-5,
                                       True)
        np.testing.assert_allclose(_np(y), ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-12)
        assert int(bn.num_batches_tracked) == step + 1
    bn.eval()
    x = rng.standard_normal(shape)
    ref, _, _ = _bn_reference(x, mean, var, _np(bn.weight), _np(bn.bias), 0.2, 1e-5, False)
    np.testing.assert_allclose(_np(bn(mg.tensor(x))), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-12)  # unchanged in eval
    assert int(bn.num_batches_tracked) == 3
    with pytest.raises(ValueError, match="expected"):
        bn(mg.randn(2, 3, 4, 5, 6, dtype=mg.float64))


def test_batchnorm_cumulative_and_untracked():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm1d(2, momentum=None, affine=False).double()
    assert list(bn.parameters()) == []
    xs = [rng.standard_normal((6, 2)) for _ in range(3)]
    for x in xs:
        bn(mg.tensor(x))
    # momentum=None: running mean is the plain average of the batch means
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in xs], 0),
                               rtol=1e-12)
    free = nn.BatchNorm1d(2, track_running_stats=False).double()
    assert list(free.buffers()) == [] and "running_mean" not in free.state_dict()
    free.eval()  # no running statistics: batch statistics even in eval
    y = _np(free(mg.tensor(xs[0])))
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)


def test_batchnorm_reset_running_stats():
    bn = nn.BatchNorm1d(2)
    bn(mg.randn(4, 2))
    bn.reset_running_stats()
    assert not bn.running_mean.numpy().any() and (bn.running_var.numpy() == 1).all()
    assert int(bn.num_batches_tracked) == 0


def test_layer_and_group_norm_reference():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 3))
    ln = nn.LayerNorm((3, 3)).double()
    m, v = x.mean((2, 3), keepdims=True), x.var((2, 3), keepdims=True)
    np.testing.assert_allclose(_np(ln(mg.tensor(x))), (x - m) / np.sqrt(v + 1e-5), atol=1e-12)
    assert [n for n, _ in nn.LayerNorm(3, bias=False).named_parameters()] == ["weight"]
    assert list(nn.LayerNorm(3, elementwise_affine=False).parameters()) == []
    gn = nn.GroupNorm(2, 4).double()
    xg = x.reshape(2, 2, -1)
    m, v = xg.mean(-1, keepdims=True), xg.var(-1, keepdims=True)
    ref = ((xg - m) / np.sqrt(v + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(_np(gn(mg.tensor(x))), ref, atol=1e-12)
    with pytest.raises(ValueError):
        nn.GroupNorm(3, 4)


def test_activation_modules_match_functional():
    x = mg.randn(3, 5)
    cases = [(nn.ReLU(), F.relu(x)), (nn.LeakyReLU(0.2), F.leaky_relu(x, 0.2)),
             (nn.SiLU(), F.silu(x)), (nn.GELU(), F.gelu(x)), (nn.Tanh(), x.tanh()),
             (nn.Sigmoid(), x.sigmoid()), (nn.Softplus(2.0, 10.0), F.softplus(x, 2.0, 10.0)),
             (nn.ELU(0.5), F.elu(x, 0.5)), (nn.Softmax(dim=1), F.softmax(x, 1)),
             (nn.LogSoftmax(dim=-1), F.log_softmax(x, -1))]
    for mod, ref in cases:
        np.testing.assert_array_equal(_np(mod(x)), _np(ref))
    with pytest.raises(ValueError, match="dim"):
        nn.Softmax()(x)
    with pytest.raises(ValueError):
        nn.GELU("fast")


def test_dropout_generator_and_modes():
    x = mg.ones(1000)
    d1 = nn.Dropout(0.3, generator=mg.Generator().manual_seed(5))
    d2 = nn.Dropout(0.3, generator=mg.Generator().manual_seed(5))
    y1, y2 = _np(d1(x)), _np(d2(x))
    np.testing.assert_array_equal(y1, y2)
    assert np.all((y1 == 0) | np.isclose(y1, 1 / 0.7))
    assert 0.2 < (y1 == 0).mean() < 0.4
    d1.eval()
    assert d1(x) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


@needs_torch
def test_layers_match_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    pairs = [
        (nn.Linear(5, 3), torch.nn.Linear(5, 3)),
        (nn.LayerNorm(5), torch.nn.LayerNorm(5)),
        (nn.GroupNorm(3, 6), torch.nn.GroupNorm(3, 6)),
        (nn.BatchNorm1d(6), torch.nn.BatchNorm1d(6)),
    ]
    for ours, theirs in pairs:
        sd = {k: torch.from_numpy(np.asarray(rng.standard_normal(v.shape), dtype=v.numpy().dtype))
              if v.is_floating_point() else torch.tensor(v.numpy())
              for k, v in ours.state_dict().items()}
        if "running_var" in sd:
            sd["running_var"] = sd["running_var"].abs() + 0.5
        ours.load_state_dict({k: v.numpy() for k, v in sd.items()})
        theirs.load_state_dict(sd)
        for mode in ("train", "eval"):
            getattr(ours, mode)(), getattr(theirs, mode)()
            xt = torch.tensor(x, requires_grad=True)
            xm = mg.tensor(x, requires_grad=True)
            yt, ym = theirs(xt), ours(xm)
            np.testing.assert_allclose(_np(ym), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
            w = rng.standard_normal(yt.shape).astype(np.float32)
            (yt * torch.from_numpy(w)).sum().backward()
            (ym * mg.tensor(w)).sum().backward()
            np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-4)
            for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-3,
                                           atol=1e-4, err_msg=n)
            ours.zero_grad(), theirs.zero_grad()
        for k, v in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-5,
                                       err_msg=k)


# ---------------------------------------------------------------------- init
def test_calculate_gain_and_fans():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError):
        init.calculate_gain("swishy")
    assert init._calculate_fan_in_and_fan_out(mg.empty(8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ValueError):
        init._calculate_fan_in_and_fan_out(mg.empty(4))


@pytest.mark.parametrize("fn,expected_std", [
    (lambda t, g: init.kaiming_uniform_(t, a=0, nonlinearity="relu", generator=g),
     math.sqrt(2 / 200)),
    (lambda t, g: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
     math.sqrt(2 / 300)),
    (lambda t, g: init.xavier_uniform_(t, gain=2.0, generator=g), 2 * math.sqrt(2 / 500)),
    (lambda t, g: init.xavier_normal_(t, generator=g), math.sqrt(2 / 500)),
    (lambda t, g: init.normal_(t, 1.0, 0.5, generator=g), 0.5),
    (lambda t, g: init.uniform_(t, -2.0, 4.0, generator=g), 6 / math.sqrt(12)),
    (lambda t, g: init.trunc_normal_(t, std=0.02, a=-0.04, b=0.04, generator=g), None),
])
def test_init_statistics_and_generator(fn, expected_std):
    p = nn.Parameter(mg.empty(300, 200))
    vc = p._vc[0]
    out = fn(p, mg.Generator().manual_seed(1))
    assert out is p and p.is_leaf and p.requires_grad and p._vc[0] == vc + 1
    q = fn(nn.Parameter(mg.empty(300, 200)), mg.Generator().manual_seed(1))
    np.testing.assert_array_equal(_np(p), _np(q))  # same generator seed, same values
    if expected_std is not None:
        assert abs(_np(p).std() - expected_std) < 0.02 * expected_std
    else:
        assert np.abs(_np(p)).max() <= 0.04


def test_kaiming_uniform_bound_and_constants():
    t = mg.empty(50, 30, dtype=mg.float64)
    init.kaiming_uniform_(t, a=math.sqrt(5))
    assert np.abs(t.numpy()).max() <= 1 / math.sqrt(30)
    init.constant_(t, 0.25)
    assert (t.numpy() == 0.25).all()
    init.ones_(t)
    assert (t.numpy() == 1).all()
    init.zeros_(t)
    assert not t.numpy().any()
    h = mg.empty(10, 10, dtype=mg.float16)
    init.normal_(h)
    assert h.dtype == mg.float16 and np.isfinite(h.numpy()).all()


def test_parameters_to_vector_round_trip():
    lin = nn.Linear(3, 2)
    vec = nn.utils.parameters_to_vector(lin.parameters())
    assert vec.shape == (8,)
    nn.utils.vector_to_parameters(vec * 2, lin.parameters())
    np.testing.assert_allclose(np.concatenate([_np(p).ravel() for p in lin.parameters()]),
                               _np(vec) * 2)
