"""minigen.models.autoencoder: shapes, the KL term against its closed form, the loss falls, β
trades KL for reconstruction, seeded training."""
import numpy as np
import pytest

import minigen
from minigen.diffusion.autoencoder_train import train_autoencoder
from minigen.models.autoencoder import AutoencoderKL


def digits_like(n, seed=0, side=28):
    """Blurry blobs in [−1, 1], 1×side×side: something with structure to reconstruct."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    out = np.empty((n, 1, side, side), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.3 * side, 0.7 * side, 2)
        r = rng.uniform(0.1 * side, 0.25 * side)
        out[i, 0] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * 2 - 1
    return out


def test_shapes():
    ae = AutoencoderKL(generator=minigen.Generator().manual_seed(0))
    x = minigen.tensor(digits_like(3))
    mean, logvar = ae.encode(x)
    assert tuple(mean.shape) == tuple(logvar.shape) == (3, 4, 7, 7)
    assert tuple(ae.decode(mean).shape) == (3, 1, 28, 28)
    recon, m2, lv2 = ae(x)
    assert tuple(recon.shape) == (3, 1, 28, 28)
    assert AutoencoderKL(latent_channels=2).encode(x)[0].shape == (3, 2, 7, 7)
    assert ae.config == dict(in_channels=1, latent_channels=4, channels=[16, 32], beta=1e-3)


def test_bad_input_errors():
    ae = AutoencoderKL()
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(minigen.randn(1, 1, 30, 30))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ae.encode(minigen.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="z must be"):
        ae.decode(minigen.randn(1, 3, 7, 7))


def test_kl_closed_form_and_gradient():
    rng = np.random.default_rng(0)
    mu, lv = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((2, 4, 3, 3))
    got = AutoencoderKL.kl(minigen.tensor(mu), minigen.tensor(lv)).numpy()
    ref = 0.5 * (mu ** 2 + np.exp(lv) - 1 - lv).reshape(2, -1).sum(1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    zero = AutoencoderKL.kl(minigen.zeros(1, 4, 7, 7), minigen.zeros(1, 4, 7, 7)).numpy()
    assert zero[0] == 0.0
    # ∂KL/∂μ = μ, ∂KL/∂logσ² = ½(σ² − 1)
    m, v = minigen.tensor(mu, requires_grad=True), minigen.tensor(lv, requires_grad=True)
    AutoencoderKL.kl(m, v).sum().backward()
    np.testing.assert_allclose(m.grad.numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(v.grad.numpy(), 0.5 * (np.exp(lv) - 1), rtol=1e-12)


def _np_conv3x3(x, w, b, stride):
    """out[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x_pad[n, c, s·i + p, s·j + q], padding 1."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h = (x.shape[2] + 2 - 3) // stride + 1
    v = (x.shape[3] + 2 - 3) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], h, v)) + b[None, :, None, None]
    for p in range(3):
        for q in range(3):
            win = xp[:, :, p:p + stride * (h - 1) + 1:stride, q:q + stride * (v - 1) + 1:stride]
            out += np.einsum("oc,ncij->noij", w[:, :, p, q], win)
    return out


def numpy_autoencoder_loss(model, x, eps, beta):
    """(total, rec, kl, recon, mean, logvar) of MATH.md §8's KL autoencoder in float64 numpy,
    from the model's weights: z = μ + exp(½ log σ²) ε, loss = rec + β·KL per image."""
    W = {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
    silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
    conv = lambda a, name, s=1: _np_conv3x3(a, W[name + ".weight"], W[name + ".bias"], s)  # noqa
    up = lambda a: a.repeat(2, axis=2).repeat(2, axis=3)  # noqa: E731  nearest, ×2
    h = silu(conv(x, "enc.0"))
    h = silu(conv(h, "enc.1", 2))
    h = silu(conv(h, "enc.2", 2))
    h = conv(h, "enc.3")
    c = model.latent_channels
    mean, logvar = h[:, :c], np.clip(h[:, c:], -30.0, 20.0)
    z = mean + np.exp(0.5 * logvar) * eps
    h = silu(conv(z, "dec.0"))
    h = silu(conv(up(h), "dec.1"))
    h = silu(conv(up(h), "dec.2"))
    recon = conv(h, "dec.3")
    n = len(x)
    rec = ((recon - x) ** 2).sum() / n
    kl = 0.5 * (mean ** 2 + np.exp(logvar) - 1.0 - logvar).sum() / n
    return rec + beta * kl, rec, kl, recon, mean, logvar


def test_forward_and_loss_match_numpy():
    # value level, float64: catches a wrong posterior σ (exp(log σ²) for exp(½ log σ²)), a
    # swapped μ / log σ² split, a missing SiLU or upsampling slip that the shape tests let by
    gen = minigen.Generator().manual_seed(3)
    ae = AutoencoderKL(1, 2, (4, 6), beta=0.25, dtype=minigen.float64, generator=gen)
    # shift log σ² of the two latent channels to about +1.5 and −1.5, so σ and σ² differ
    # by far more than rounding
    with minigen.no_grad():
        ae.enc[3].bias.add_(minigen.tensor([0.0, 0.0, 1.5, -1.5], dtype=minigen.float64))
    rng = np.random.default_rng(0)
    x = digits_like(3, seed=1, side=8).astype(np.float64)
    eps = rng.standard_normal((3, 2, 2, 2))
    total, rec, kl, recon, mean, logvar = numpy_autoencoder_loss(ae, x, eps, 0.25)
    assert np.abs(logvar).min() > 1.0  # the check below does see σ
    got_recon, got_mean, got_logvar = ae(minigen.tensor(x), eps=minigen.tensor(eps))
    np.testing.assert_allclose(got_mean.detach().numpy(), mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_logvar.detach().numpy(), logvar, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_recon.detach().numpy(), recon, rtol=1e-10, atol=1e-12)
    got = ae.loss(minigen.tensor(x), eps=minigen.tensor(eps))
    for g, r in zip(got, (total, rec, kl)):
        np.testing.assert_allclose(float(g.item()), r, rtol=1e-10)
    # reconstruct decodes the mean, no noise
    _, _, _, recon_mu, _, _ = numpy_autoencoder_loss(ae, x, np.zeros_like(eps), 0.25)
    np.testing.assert_allclose(ae.reconstruct(minigen.tensor(x)).numpy(), recon_mu, rtol=1e-10,
                               atol=1e-12)


# training tests run on 8×8 images with narrow layers (the 2-core CI budget); the shapes test
# above covers 28×28
SMALL = dict(channels=(8, 16))


def test_loss_terms_and_reconstruction_improves():
    x = digits_like(64, side=8)
    ae = train_autoencoder(x, epochs=1, batch_size=16, max_steps=1, log=None, seed=0, **SMALL)
    xt = minigen.tensor(x)
    gen = minigen.Generator().manual_seed(1)
    eps = minigen.randn(64, 4, 2, 2, generator=gen)
    total, rec, kl = ae.loss(xt, eps=eps)
    assert float(total.item()) == pytest.approx(float(rec.item()) + 1e-3 * float(kl.item()),
                                                rel=1e-6)
    logs = []
    trained = train_autoencoder(x, epochs=12, batch_size=16, log=logs.append, seed=0, **SMALL)
    h = trained.history
    assert len(h) == 12 and len(logs) == 12
    assert h[-1]["reconstruction"] < 0.5 * h[0]["reconstruction"]
    _, rec_after, _ = trained.loss(xt, eps=eps)
    assert float(rec_after.item()) < 0.5 * float(rec.item())
    assert tuple(trained.reconstruct(xt).shape) == (64, 1, 8, 8)


def test_beta_trades_kl_for_reconstruction():
    x = digits_like(64, side=8)
    kw = dict(epochs=6, batch_size=16, log=None, seed=0, **SMALL)
    low, high = train_autoencoder(x, beta=1e-4, **kw), train_autoencoder(x, beta=1.0, **kw)
    assert high.history[-1]["kl"] < 0.5 * low.history[-1]["kl"]
    assert high.history[-1]["reconstruction"] > low.history[-1]["reconstruction"]
    assert np.isfinite(high.history[-1]["kl"]) and high.history[-1]["kl"] >= 0


def test_training_is_seeded():
    x = digits_like(32, side=8)
    kw = dict(epochs=1, batch_size=16, max_steps=2, log=None, seed=5, **SMALL)
    a, b = train_autoencoder(x, **kw), train_autoencoder(x, **kw)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
