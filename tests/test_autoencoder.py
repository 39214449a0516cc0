"""minigen.models.autoencoder: shapes, the KL term against its closed form, the loss falls, β
trades KL for reconstruction, seeded training."""
import numpy as np
import pytest

import minigen
from minigen.models.autoencoder import AutoencoderKL, train_autoencoder


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
