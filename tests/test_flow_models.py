"""minigen.flows: RealNVP, Glow, the 2-D flows, their harness families and the toy densities.

* every layer and every whole model inverts exactly (1e-10, float64), and its log-det equals
  log|det J| of a central-difference Jacobian (a 2-level Glow and RealNVP on 1×4×4 images);
* the lecture densities (z ~ U[0, 2], x = 4z; x = exp(z); x = Az) from flow layers, to 1e-12;
* ActNorm's data-dependent init inside a Glow, the LU form after training, d log|det W|/dW;
* bad input is refused with a message naming the problem;
* the dequantized bits/dim (a uniform model scores exactly log2 K), the KL(p‖q) estimator
  against a closed form, the toy densities normalised and consistent with their samplers;
* a flow run interrupted after 10 steps and resumed to 20 equals the uninterrupted run.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import minigen as mg
from run_checks import checkpoint_values
from minigen import flows
from minigen.flows import layers as L
from minigen.data import toy2d

F64 = mg.float64


def quiet(*a, **k):
    pass


def _perturb(module, seed=0, scale=0.2):
    """Move every parameter off its (often zero) init so no layer is the identity."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] += scale * rng.standard_normal(p.shape)
    for m in module.modules():
        if isinstance(m, mg.nn.ActNorm):
            m.initialized.data[...] = 1
    return module


def _jac_logdet(f, x, h=1e-6):
    """log|det ∂f/∂x| of the flattened map, float64 central differences (x one example)."""
    d = x.size
    cols = []
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        cols.append((f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))).ravel() / (2 * h))
    jac = np.stack(cols, 1)
    assert jac.shape[0] == d, "the map must be square (a bijection of ℝ^D)"
    return np.linalg.slogdet(jac)[1]


def _conv(c_in, c_out):
    gen = mg.Generator().manual_seed(3)
    return flows.models.conv_net(c_in, c_out, 6, gen, dtype=F64)


def _layer_cases():
    gen = mg.Generator().manual_seed(1)
    cases = {
        "checkerboard": (L.MaskedAffineCoupling(L.checkerboard_mask(2, 4, 4, 1), _conv(2, 4),
                                                dtype=F64), (2, 4, 4), "normal"),
        "channelwise": (L.MaskedAffineCoupling(L.channel_mask(4, 1), _conv(4, 8), dtype=F64),
                        (4, 2, 2), "normal"),
        "vector": (L.MaskedAffineCoupling(L.vector_mask(3, 0),
                                          flows.models.mlp(3, 6, 8, gen, dtype=F64), dtype=F64),
                   (3,), "normal"),
        "squeeze": (L.Squeeze(), (2, 4, 4), "normal"),
        "logit": (L.LogitTransform(0.05), (1, 3, 3), "unit"),
        "scalar_affine": (L.ScalarAffine(-2.5, 0.3), (5,), "normal"),
        "exp": (L.ExpTransform(), (4,), "positive"),
        "invertible_linear": (L.InvertibleLinear(np.random.default_rng(2).standard_normal((3, 3))
                                                 + 2 * np.eye(3)), (3, 2, 2), "normal"),
        "actnorm": (mg.nn.ActNorm(3, dtype=F64), (3, 2, 2), "normal"),
        "invconv_lu": (mg.nn.InvConv2dLU(4, generator=gen, dtype=F64), (4, 2, 2), "normal"),
        "glow_coupling": (mg.nn.AffineCoupling(_conv(2, 4)), (4, 2, 2), "normal"),
    }
    return cases


def _inputs(kind, shape, n=3, seed=5):
    rng = np.random.default_rng(seed)
    if kind == "unit":
        return rng.uniform(0.01, 0.99, (n, *shape))
    if kind == "positive":
        return rng.uniform(0.5, 3.0, (n, *shape))
    return rng.standard_normal((n, *shape))


@pytest.mark.parametrize("name", list(_layer_cases()))
def test_every_layer_inverts_and_its_logdet_is_the_jacobian(name):
    layer, shape, kind = _layer_cases()[name]
    _perturb(layer)
    x = _inputs(kind, shape)
    y, ld = layer(mg.tensor(x))
    x2, ld2 = layer.inverse(y)
    assert ld.shape == (3,) and ld2.shape == (3,)
    np.testing.assert_allclose(x2.data, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ld2.data, -ld.data, rtol=0, atol=1e-10)
    for i in range(3):
        want = _jac_logdet(lambda v: layer(mg.tensor(v))[0].data, x[i:i + 1])
        assert abs(float(ld.data[i]) - want) < 1e-6, (name, i, float(ld.data[i]), want)


def test_split_is_a_bijection_with_the_prior_standardisation_as_logdet():
    prior = _conv(2, 4)
    split = _perturb(L.Split(4, prior))
    x = _inputs("normal", (4, 2, 2))
    h1, eps, ld = split(mg.tensor(x))
    back = split.inverse(h1, eps)
    np.testing.assert_allclose(back.data, x, rtol=0, atol=1e-10)

    def f(v):
        a, b, _ = split(mg.tensor(v))
        return np.concatenate([a.data.ravel(), b.data.ravel()])
    for i in range(3):
        assert abs(float(ld.data[i]) - _jac_logdet(f, x[i:i + 1])) < 1e-6


def _models():
    gen = mg.Generator().manual_seed(0)
    return {
        "glow": flows.glow((1, 4, 4), levels=2, steps=2, hidden=6, generator=gen, dtype=F64),
        "realnvp": flows.realnvp((1, 4, 4), levels=2, hidden=6, generator=gen, dtype=F64),
        "realnvp_2d": flows.realnvp_2d(2, couplings=4, hidden=8, generator=gen, dtype=F64),
        "glow_2d": flows.glow_2d(2, steps=3, hidden=8, generator=gen, dtype=F64),
    }


@pytest.mark.parametrize("name", ["glow", "realnvp", "realnvp_2d", "glow_2d"])
def test_whole_models_invert_and_log_prob_is_the_change_of_variables(name):
    model = _perturb(_models()[name], seed=4, scale=0.1)
    image = name in ("glow", "realnvp")
    x = _inputs("unit" if image else "normal", (1, 4, 4) if image else (2,), n=2)
    z, ld = model(mg.tensor(x))
    back = model.inverse(z)
    np.testing.assert_allclose(back.data, x, rtol=0, atol=1e-10)

    def f(v):
        out = model(mg.tensor(v))[0]
        return np.concatenate([t.data.ravel() for t in (out if isinstance(out, list) else [out])])
    lp = model.log_prob(mg.tensor(x)).data
    for i in range(2):
        want_ld = _jac_logdet(f, x[i:i + 1])
        assert abs(float(ld.data[i]) - want_ld) < 1e-6, (name, float(ld.data[i]), want_ld)
        zi = f(x[i:i + 1])               # every latent is N(0, I) under the model
        want = -0.5 * (zi @ zi) - 0.5 * zi.size * math.log(2 * math.pi) + want_ld
        assert abs(float(lp[i]) - want) < 1e-6


def test_lecture_densities_from_flow_layers():
    # z ~ U[0, 2], x = 4z: data → latent z = x/4, so p_X(x) = ½ · ¼ = 1/8 on [0, 8]
    m = flows.NormalizingFlow(L.ScalarAffine(0.25), flows.Uniform(0.0, 2.0, (1,)))
    lp = m.log_prob(mg.tensor([[4.0], [1.0], [9.0]], dtype=F64)).data
    assert abs(lp[0] - math.log(1 / 8)) < 1e-12 and abs(lp[1] - math.log(1 / 8)) < 1e-12
    assert lp[2] == -math.inf
    # x = exp(z), z ~ U[0, 2]: p_X(x) = 1/(2x) on [1, e²]
    m = flows.NormalizingFlow(L.ExpTransform(), flows.Uniform(0.0, 2.0, (1,)))
    xs = np.array([1.0, 1.7, math.e, 5.0, math.e ** 2 - 1e-9])
    lp = m.log_prob(mg.tensor(xs[:, None], dtype=F64)).data
    np.testing.assert_allclose(lp, -np.log(2 * xs), rtol=0, atol=1e-12)
    assert m.log_prob(mg.tensor([[0.5], [8.0]], dtype=F64)).data.tolist() == [-math.inf] * 2
    # x = Az, z ~ N(0, I): p_X = N(0, A Aᵀ), written out with a Cholesky factor (no flow)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    m = flows.NormalizingFlow(L.InvertibleLinear(np.linalg.inv(a)), flows.StandardNormal((3,)))
    x = rng.standard_normal((4, 3))
    chol = np.linalg.cholesky(a @ a.T)
    w = np.linalg.solve(chol, x.T)
    want = (-0.5 * (w * w).sum(0) - np.log(np.diag(chol)).sum() - 1.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(m.log_prob(mg.tensor(x)).data, want, rtol=0, atol=1e-12)


def test_actnorm_initialises_from_the_first_batch_inside_a_glow():
    model = flows.glow((1, 4, 4), levels=2, steps=2, hidden=6, dtype=F64)
    x = mg.tensor(np.random.default_rng(0).uniform(0, 1, (64, 1, 4, 4)) ** 3)
    model(x)                              # training mode: every ActNorm initialises
    model.eval()
    seen = 0
    h, _ = model.preprocess(x)
    for level, split, has in zip(model.levels, model.splits, model._has_split):
        for layer in level:
            h, _ = layer(h)
            if isinstance(layer, mg.nn.ActNorm):
                d = h.data
                np.testing.assert_allclose(d.mean(axis=(0, 2, 3)), 0, atol=1e-10)
                np.testing.assert_allclose(d.var(axis=(0, 2, 3)), 1, atol=1e-5)
                seen += 1
        if has:
            h, _, _ = split(h)
    assert seen == 4


def test_logdet_gradient_is_w_inverse_transpose():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4)) + 2 * np.eye(4)
    layer = L.InvertibleLinear(w)
    x = mg.tensor(rng.standard_normal((1, 4, 3, 2)))     # M = 6 positions
    _, ld = layer(x)
    ld.sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, 6 * np.linalg.inv(w).T, rtol=1e-12,
                               atol=1e-12)
    # the LU form: log|det W| depends on log_s only (d/dlog_s = 1; L, U strictly triangular)
    conv = _perturb(mg.nn.InvConv2dLU(4, generator=mg.Generator().manual_seed(0), dtype=F64))
    _, logabs = mg.linalg.slogdet(conv.weight())
    logabs.backward()
    np.testing.assert_allclose(logabs.item(), conv.log_s.data.sum(), atol=1e-12)
    np.testing.assert_allclose(conv.log_s.grad.data, 1.0, atol=1e-12)
    np.testing.assert_allclose(conv.lower.grad.data, 0.0, atol=1e-12)
    np.testing.assert_allclose(conv.upper.grad.data, 0.0, atol=1e-12)


def test_lu_stays_invertible_through_training():
    model = flows.glow((1, 4, 4), levels=1, steps=2, hidden=6, dtype=F64)
    opt = mg.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x = mg.tensor(rng.uniform(0, 1, (16, 1, 4, 4)) ** 2)
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    convs = [m for m in model.modules() if isinstance(m, mg.nn.InvConv2dLU)]
    moved = 0.0
    for conv in convs:
        w = conv.weight().data
        sign, logabs = np.linalg.slogdet(w)
        assert sign != 0 and abs(logabs - conv.log_s.data.sum()) < 1e-10
        np.testing.assert_allclose(conv.weight(inverse=True).data @ w, np.eye(4), atol=1e-10)
        moved += abs(conv.log_s.data).sum()
    assert moved > 0.01                   # training did change the 1×1 convolutions
    x = rng.uniform(0, 1, (3, 1, 4, 4))
    np.testing.assert_allclose(model.inverse(model(mg.tensor(x))[0]).data, x, atol=1e-10)


def test_bad_input_gets_a_clear_error():
    glow = flows.glow((1, 4, 4), levels=2, steps=1, hidden=4)
    with pytest.raises(ValueError, match=r"expected input \(N, 1, 4, 4\).*\(2, 3, 4, 4\)"):
        glow.log_prob(mg.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="spatial size 3x4 must be even"):
        L.Squeeze()(mg.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="divisible by 2\\^levels"):
        flows.glow((1, 6, 6), levels=2)
    x = np.full((2, 1, 4, 4), 0.5, dtype=np.float32)
    x[1, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        glow.log_prob(mg.tensor(x))
    toy = flows.realnvp_2d(2, couplings=2, hidden=4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        toy.log_prob(mg.tensor([[0.0, math.inf]]))
    with pytest.raises(ValueError, match=r"expected input \(N, 2\)"):
        toy.log_prob(mg.zeros(3, 3))
    coupling = L.MaskedAffineCoupling(L.channel_mask(4), _conv(4, 8), dtype=F64)
    with pytest.raises(ValueError, match=r"expected input \(N, 4, \.\.\.\)"):
        coupling(mg.zeros(1, 2, 2, 2, dtype=F64))


# ---------------------------------------------------------------------- data and metrics
@pytest.mark.parametrize("name", list(toy2d.DENSITIES))
def test_toy_densities_are_normalised_and_match_their_samplers(name):
    d = toy2d.DENSITIES[name]
    g = np.linspace(-4, 4, 801)[:-1] + 0.005          # cell midpoints (avoid r = 0 for ring)
    X, Y = np.meshgrid(g, g)
    pts = np.stack([X.ravel(), Y.ravel()], 1)
    p = np.exp(d.log_prob(pts))
    assert abs(p.sum() * 0.01 ** 2 - 1.0) < 2e-3
    # P(box) from 200k samples vs ∫_box p on the grid, for four boxes
    s = d.sample(200_000, np.random.default_rng(3))
    for x0, x1, y0, y1 in ((-4, 0, -4, 0), (0, 4, -4, 0), (-1, 1, -0.5, 1.5), (0.5, 4, 0.5, 4)):
        emp = ((s[:, 0] >= x0) & (s[:, 0] < x1) & (s[:, 1] >= y0) & (s[:, 1] < y1)).mean()
        sel = (pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1)
        assert abs(emp - p[sel].sum() * 1e-4) < 5e-3, (name, (x0, x1, y0, y1))


def test_moons_quadrature_matches_a_dense_rule():
    d = toy2d.DENSITIES["moons"]
    x = d.sample(50, np.random.default_rng(0))
    theta = np.linspace(0, math.pi, 200_001)
    dens = np.zeros(len(x))
    for c in d.centres(theta):
        d2 = ((x[:, None] - c[None]) ** 2).sum(-1)
        dens += np.trapezoid(np.exp(-d2 / (2 * d.sigma ** 2)), theta, axis=1) / math.pi
    dens /= 2 * (2 * math.pi * d.sigma ** 2)
    np.testing.assert_allclose(d.log_prob(x), np.log(dens), rtol=0, atol=1e-8)


def test_kl_estimate_against_two_gaussians():
    from minigen.flows.family import kl_estimate

    class Normal2:                        # p = N(0, I₂)
        def sample(self, n, rng):
            return rng.standard_normal((n, 2))

        def log_prob(self, x):
            return -0.5 * (x * x).sum(1) - math.log(2 * math.pi)
    sigma = 1.5                           # q = N(0, σ² I₂): z = x/σ
    q = flows.NormalizingFlow(L.ScalarAffine(1 / sigma), flows.StandardNormal((2,)))
    res = kl_estimate(q, Normal2(), 100_000, seed=0)
    want = 2 * (math.log(sigma) + 1 / (2 * sigma ** 2) - 0.5)
    assert abs(res["kl"] - want) < 4 * res["kl_stderr"] and res["kl_stderr"] < 0.01
    assert abs(res["nll"] - res["entropy"] - res["kl"]) < 1e-9


pytest.importorskip("sklearn.datasets", reason="the 8x8 digits ship with scikit-learn")


def test_uniform_model_scores_exactly_log2_levels_bits_per_dim(tmp_path):
    """A model with p = 1 on [0, 1]^D gives P(v) = K^−D: log2 K bits/dim (8 for 8-bit data),
    in the training loss and in the held-out metric."""
    from minigen.data import load_dataset
    from minigen.flows.family import FlowConfig, GlowFamily
    from minigen.harness.family import Batch
    fam = GlowFamily(FlowConfig(data="digits", preset="tiny", out=str(tmp_path)), log=quiet)
    fam.setup(load_dataset("digits"))
    fam.model = flows.NormalizingFlow(L.ScalarAffine(1.0), flows.Uniform(0.0, 1.0, (1, 8, 8)),
                                      event_shape=(1, 8, 8))
    loss = fam.training_step(Batch(np.arange(32), 0, 0, 0, mg.Generator().manual_seed(0)),
                             "model")
    assert abs(loss.item() - math.log2(17)) < 1e-6      # the digits have K = 17 levels
    res = fam._heldout_bpd(fam.data.heldout)
    assert abs(res["heldout_bits_per_dim"] - math.log2(17)) < 1e-6
    assert res["heldout_bits_per_dim_stderr"] < 1e-6


# ---------------------------------------------------------------------- harness
@pytest.mark.parametrize("family,kw", [
    ("glow", dict(data="digits", preset="tiny", batch_size=16, limit=200)),
    ("realnvp", dict(data="moons", preset="tiny2d", batch_size=32, limit=1000)),
])
def test_interrupted_and_resumed_flow_run_equals_the_uninterrupted_one(tmp_path, family, kw):
    from minigen.harness import fit, get_family
    from minigen.harness.rundir import read_loss_csv
    cls = get_family(family)
    base = dict(kw, images=False, progress=False, checkpoint_every=1000, eval_samples=200)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    fit(cls, cls.Config(**base, steps=20, out=straight), log=quiet)
    fit(cls, cls.Config(**base, steps=10, out=split), log=quiet)
    fit(cls, cls.Config(**base, steps=20, out=split), resume=True, log=quiet)
    a, b = checkpoint_values(straight), checkpoint_values(split)
    assert a.keys() == b.keys() and a[".step"] == 20
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k
    rows = [read_loss_csv(os.path.join(d, "loss.csv")) for d in (straight, split)]
    assert rows[0] == rows[1] and len(rows[0]) == 20


def test_commands_train_sample_eval_on_a_toy(tmp_path, capsys):
    from minigen.harness.cli import main
    run = str(tmp_path / "moons")
    assert main(["train", "realnvp", "--data", "moons", "--preset", "tiny2d", "--steps", "30",
                 "--batch-size", "64", "--eval-samples", "500", "--no-progress",
                 "--out", run]) == 0
    assert os.path.isfile(os.path.join(run, "density.png"))
    assert main(["sample", run, "--temperature", "0.7", "--num", "200"]) == 0
    for f in ("samples_T0.7_seed0.png", "samples_T0.7_seed0_density.png"):
        assert os.path.isfile(os.path.join(run, "samples", f))
    z = np.load(os.path.join(run, "samples", "samples_samples_T0.7_seed0.npz"))["arr_0"]
    assert z.shape == (200, 2)
    assert main(["eval", run, "--num-samples", "2000"]) == 0
    import json
    res = json.load(open(os.path.join(run, "eval.json")))
    assert res["kl"] > 0 and res["kl_samples"] == 2000 and abs(res["entropy"] - 1.0) < 0.1
    assert main(["train", "glow", "--data", "moons", "--preset", "tiny", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "preset 'tiny' is for images" in capsys.readouterr().err
