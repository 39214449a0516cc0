"""Flow primitives and layers (family logdet): inverse round trips, log-dets against a
brute-force Jacobian, gradients in float64, ActNorm's data-dependent init, errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minigen as mg
from minigen import dispatch
from minigen.autograd import gradcheck
from op_check import check_op
from kernel_impls import implementations

IMPLS = implementations("logdet")


def _coupling_net(c, seed=0):
    net = mg.nn.Sequential(mg.nn.Conv2d(c // 2, 8, 3, padding=1, dtype=mg.float64),
                           mg.nn.Tanh(), mg.nn.Conv2d(8, c, 1, dtype=mg.float64))
    rng = np.random.default_rng(seed)
    for p in net.parameters():
        p.data[...] = 0.5 * rng.standard_normal(p.shape)
    return net


def _layers(c=4, seed=0):
    act = mg.nn.ActNorm(c, dtype=mg.float64)
    rng = np.random.default_rng(seed)
    act.log_scale.data[...] = 0.3 * rng.standard_normal(c)
    act.bias.data[...] = rng.standard_normal(c)
    act.initialized.data[...] = 1
    conv = mg.nn.InvConv2dLU(c, generator=mg.Generator().manual_seed(seed), dtype=mg.float64)
    conv.lower.data[...] += 0.3 * rng.standard_normal((c, c))
    conv.upper.data[...] += 0.3 * rng.standard_normal((c, c))
    conv.log_s.data[...] += 0.3 * rng.standard_normal(c)
    coup = mg.nn.AffineCoupling(_coupling_net(c, seed))
    return {"actnorm": act, "invconv": conv, "coupling": coup}


def _jacobian_logdet(f, x):
    """log|det J| of the flattened map x → f(x), by float64 central differences."""
    x = x.astype(np.float64)
    d = x.size
    jac = np.empty((d, d))
    h = 1e-6
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        jac[:, i] = (f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))).ravel() / (2 * h)
    return np.linalg.slogdet(jac)[1]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["actnorm", "invconv", "coupling"])
def test_round_trip_and_brute_force_logdet(impl, name):
    layer = _layers()[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2, 2))
    with dispatch.use(logdet=impl):
        y, ld = layer(mg.tensor(x))
        x2, ld2 = layer.inverse(y)
        assert ld.shape == (3,) and ld2.shape == (3,)
        np.testing.assert_allclose(x2.data, x, atol=1e-10)
        np.testing.assert_allclose(ld2.data, -ld.data, atol=1e-10)
        for n in range(3):  # the log-det of the per-sample map (1, C, 2, 2) → (1, C, 2, 2)
            def f(v):
                return layer(mg.tensor(v))[0].data
            want = _jacobian_logdet(f, x[n:n + 1])
            np.testing.assert_allclose(ld.data[n], want, atol=1e-6)

            def finv(v):
                return layer.inverse(mg.tensor(v))[0].data
            np.testing.assert_allclose(ld2.data[n], _jacobian_logdet(finv, y.data[n:n + 1]),
                                       atol=1e-6)


def _np_coupling(x, h, reverse):
    """Affine coupling written out: s = sigmoid(h_a + 2), t = h_b on the first C/2 channels;
    y_a = s x_a + t (reverse: x_a = (y_a − t)/s), y_b = x_b; log-det ±Σ log s per sample."""
    ca = x.shape[1] // 2
    s = 1 / (1 + np.exp(-(h[:, :ca] + 2.0)))
    t = h[:, ca:]
    out = x.copy()
    out[:, :ca] = (x[:, :ca] - t) / s if reverse else s * x[:, :ca] + t
    ld = np.log(s).reshape(len(x), -1).sum(1)
    return out, -ld if reverse else ld


def _np_actnorm(x, ls, b, reverse):
    """y = e^{log s} x + b per channel (reverse: (y − b) e^{−log s}); log-det ±H·W·Σ log s."""
    c = (1, -1, 1, 1)
    out = (x - b.reshape(c)) * np.exp(-ls).reshape(c) if reverse else \
        np.exp(ls).reshape(c) * x + b.reshape(c)
    hw = x.shape[2] * x.shape[3]
    return out, np.full(len(x), (-hw if reverse else hw) * ls.sum())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_functional_ops_check(impl, reverse):
    """Forward vs formulas written out in numpy here (not the reference module: the reference
    implementation is one of the impls checked) and gradients vs float64 central differences."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 2))
    h = 2 * rng.standard_normal((2, 4, 3, 2))
    ls, b = 0.4 * rng.standard_normal(4), rng.standard_normal(4)
    with dispatch.use(logdet=impl):
        check_op(lambda x, h: mg.affine_coupling(x, h, reverse=reverse),
                 lambda x, h: _np_coupling(x, h, reverse), [x, h], atol=1e-10, rtol=1e-10)
        check_op(lambda x, l, b: mg.actnorm(x, l, b, reverse=reverse),
                 lambda x, l, b: _np_actnorm(x, l, b, reverse), [x, ls, b], atol=1e-10,
                 rtol=1e-10)
        c = 4
        perm = np.eye(c)[[2, 0, 3, 1]]
        sign_s = np.array([1.0, -1, -1, 1])

        def ref(x, lo, up, s):
            # W = P L (U + diag(sign·e^s)), L unit lower, U strictly upper; reverse: W⁻¹
            w = perm @ (np.tril(lo, -1) + np.eye(c)) @ (np.triu(up, 1) + np.diag(sign_s *
                                                                                np.exp(s)))
            if reverse:
                w = np.linalg.inv(w)
            m = x.shape[2] * x.shape[3]
            return (np.einsum("oc,nchw->nohw", w, x),
                    np.full(x.shape[0], (-m if reverse else m) * s.sum()))
        check_op(lambda x, lo, up, s: mg.invconv2d_lu(
                     x, mg.tensor(perm, dtype=x.dtype), lo, up, s,
                     mg.tensor(sign_s, dtype=x.dtype), reverse=reverse),
                 ref, [x, rng.standard_normal((c, c)), rng.standard_normal((c, c)),
                       0.3 * rng.standard_normal(c)], atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("impl", IMPLS)
def test_module_gradients(impl):
    layers = _layers(seed=3)
    x = np.random.default_rng(4).standard_normal((2, 4, 2, 2))
    with dispatch.use(logdet=impl):
        for name, layer in layers.items():
            params = list(layer.parameters())
            leaves = [mg.tensor(x, requires_grad=True)] + params

            def f(xx, *ps, layer=layer):
                return layer(xx)
            assert gradcheck(f, leaves, atol=1e-6, rtol=1e-5), name

            def g(xx, *ps, layer=layer):
                return layer.inverse(xx)
            assert gradcheck(g, leaves, atol=1e-6, rtol=1e-5), name


@settings(max_examples=5)
@given(seed=st.integers(0, 1000), n=st.integers(2, 5))
def test_actnorm_data_init(seed, n):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((n, 3, 4, 4)) + rng.standard_normal((1, 3, 1, 1)) * 5
    act = mg.nn.ActNorm(3, dtype=mg.float64)
    y, ld = act(mg.tensor(x))
    np.testing.assert_allclose(y.data.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(y.data.std(axis=(0, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(ld.data, 16 * act.log_scale.data.sum())
    before = act.log_scale.data.copy()
    act(mg.tensor(2 * x))                                       # initialised once only
    np.testing.assert_array_equal(act.log_scale.data, before)
    assert "initialized" in act.state_dict()


def test_invconv_init_is_orthogonal():
    conv = mg.nn.InvConv2dLU(6, generator=mg.Generator().manual_seed(0), dtype=mg.float64)
    w = conv.weight().data
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(conv.weight(inverse=True).data, w.T, atol=1e-12)
    np.testing.assert_allclose(conv.log_s.data.sum(), 0, atol=1e-12)
    assert {n for n, _ in conv.named_parameters()} == {"lower", "upper", "log_s"}


def test_float32_flows():
    layers = _layers()
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    for name, layer in layers.items():
        y64, ld64 = layer(mg.tensor(x))
        layer.float()
        y32, ld32 = layer(mg.tensor(x.astype(np.float32)))
        assert y32.dtype == mg.float32 and ld32.dtype == mg.float32, name
        np.testing.assert_allclose(y32.data, y64.data, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(ld32.data, ld64.data, atol=1e-4, rtol=1e-4)


def test_errors():
    x = mg.zeros(2, 3, 4, 4, dtype=mg.float64)
    with pytest.raises(RuntimeError, match="C even"):
        mg.affine_coupling(x, x)
    x4 = mg.zeros(2, 4, 4, 4, dtype=mg.float64)
    with pytest.raises(RuntimeError, match="h must have the input's shape"):
        mg.affine_coupling(x4, mg.zeros(2, 2, 4, 4, dtype=mg.float64))
    with pytest.raises(RuntimeError, match=r"log_scale must have shape \(4,\)"):
        mg.actnorm(x4, mg.zeros(3, dtype=mg.float64), mg.zeros(4, dtype=mg.float64))
    conv = mg.nn.InvConv2dLU(3, dtype=mg.float64)
    with pytest.raises(RuntimeError, match=r"input must be \(N, 3, \*\)"):
        conv(x4)
    coup = mg.nn.AffineCoupling(mg.nn.Conv2d(2, 2, 1, dtype=mg.float64))
    with pytest.raises(RuntimeError, match="nn\\(x_b\\) must have shape"):
        coup(x4)
    with pytest.raises(TypeError, match="float32 or float64"):
        mg.actnorm(mg.zeros(2, 4, dtype=mg.int64), mg.zeros(4), mg.zeros(4))
