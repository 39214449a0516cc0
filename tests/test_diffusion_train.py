"""DDPM training (Algorithm 1), its run directory and the ``minigen train ddpm`` / ``sample`` /
``eval`` commands: the loss against numpy for every prediction type, a smoke run whose loss
falls, exact resume (N steps straight = N/2 + resume + N/2, bit for bit), the anomaly guard
(NaN loss, NaN gradient: stops before the update, keeps the last checkpoint), the commands end
to end on the 8×8 digits, latent diffusion through a stand-in autoencoder, and the data specs.
"""
import json
import os
import sys
import types

import numpy as np
import pytest

import minigen as mg
from minigen import nn
from minigen.diffusion import family as family_mod
from minigen.diffusion.datasets import load_image_dataset
from minigen.diffusion.run import load_run, read_loss_csv, sample_run
from minigen.diffusion.train import TrainConfig, TrainingAnomaly, diffusion_loss, train
from minigen.schedules import NoiseSchedule

from idx_files import make_synthetic_mnist_dir
from run_checks import checkpoint_values

pytest.importorskip("sklearn.datasets", reason="the 8x8 digits ship with scikit-learn")


def tiny(tmp_path, name="run", **kw):
    """A few-step run on the 8×8 digits with the tiny UNet (~0.15M parameters)."""
    base = dict(data="digits", preset="tiny", batch_size=16, lr=2e-3, warmup=2, steps=8,
                sample_every=0, checkpoint_every=4, out=str(tmp_path / name), progress=False,
                images=False)
    return TrainConfig(**{**base, **kw})


def quiet(*a, **k):
    pass


# ---------------------------------------------------------------------- the loss
class Affine(nn.Module):
    """model(x, t) = a·x + b·t/T: simple enough to write the loss in numpy."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(mg.tensor([0.7]))
        self.b = nn.Parameter(mg.tensor([0.3]))

    def forward(self, x, t, y=None):
        return x * self.a + (t.to(mg.float32) / 1000.0).reshape(-1, 1, 1, 1) * self.b


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_loss_matches_numpy(prediction_type):
    s = NoiseSchedule(1000, "linear")
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (5, 1, 4, 4)).astype(np.float32)
    eps = rng.standard_normal((5, 1, 4, 4)).astype(np.float32)
    t = np.array([0, 10, 500, 998, 999])
    model = Affine()
    loss = diffusion_loss(model, s, mg.tensor(x0), mg.tensor(t), mg.tensor(eps),
                          prediction_type=prediction_type)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    target = {"epsilon": eps, "sample": x0,
              "v_prediction": np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0}[prediction_type]
    out = 0.7 * xt + 0.3 * (t / 1000.0).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(loss.item(), np.mean((out - target) ** 2), rtol=1e-5)
    loss.backward()   # the loss reaches the parameters
    assert model.a.grad is not None and np.isfinite(model.a.grad.numpy()).all()


def test_unknown_prediction_type_is_rejected():
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion_loss(Affine(), NoiseSchedule(10), mg.zeros(1, 1, 2, 2), mg.tensor([0]),
                       mg.zeros(1, 1, 2, 2), prediction_type="score")


# ---------------------------------------------------------------------- training
def test_smoke_training_loss_falls(tmp_path):
    m = train(tiny(tmp_path, steps=40, batch_size=16, warmup=5, checkpoint_every=100),
              log=quiet)
    rows = read_loss_csv(str(tmp_path / "run" / "loss.csv"))
    losses = np.array([r["loss"] for r in rows])
    assert len(losses) == 40 and m["steps"] == 40
    # ε-MSE starts near E‖ε‖²/D = 1 and an untrained-but-learning UNet halves it fast
    assert losses[:5].mean() > 0.7
    assert losses[-10:].mean() < 0.6 * losses[:5].mean(), losses
    assert all(r["lr"] > 0 and np.isfinite(r["grad_norm"]) for r in rows)
    assert rows[0]["lr"] < rows[-1]["lr"] == pytest.approx(2e-3)   # warm-up, then constant


def _state(run_dir):
    return checkpoint_values(run_dir, keys=("modules", "ema", "optimizers", "lr_schedulers",
                                            "rng", "step", "epoch", "batch", "family"))


def test_resume_is_exact(tmp_path):
    # 100 images / batch 16 = 6 full batches per epoch: 10 steps cross an epoch boundary;
    # conditional, so the label drop's draws are part of the state too
    kw = dict(limit=100, steps=10, checkpoint_every=5, conditional=True, p_uncond=0.2)
    train(tiny(tmp_path, "straight", **kw), log=quiet)
    train(tiny(tmp_path, "split", **{**kw, "steps": 5}), log=quiet)
    train(tiny(tmp_path, "split", **kw), resume=True, log=quiet)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "split")
    assert a.keys() == b.keys() and a[".step"] == 10 and a[".epoch"] == 1
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)   # bit-identical
        else:
            assert a[k] == b[k], k
    rows = [read_loss_csv(str(tmp_path / d / "loss.csv")) for d in ("straight", "split")]
    assert rows[0] == rows[1] and len(rows[0]) == 10


def test_resume_refuses_other_settings_and_overwrite(tmp_path):
    train(tiny(tmp_path, steps=2), log=quiet)
    with pytest.raises(ValueError, match="different settings.*lr"):
        train(tiny(tmp_path, steps=4, lr=1e-4), resume=True, log=quiet)
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny(tmp_path, steps=4), log=quiet)


def _inject(monkeypatch, at_call, kind):
    """Make the loss (kind "loss") or only the gradient ("grad") NaN at the at_call-th step."""
    real, calls = family_mod.diffusion_loss, {"n": 0}

    def loss_fn(model, *args, **kw):
        calls["n"] += 1
        loss = real(model, *args, **kw)
        if calls["n"] == at_call:
            p = next(iter(model.parameters()))
            if kind == "loss":
                return loss * float("nan")
            # √(0·p) is 0 forward but its gradient 0.5/√0 · 0 is NaN: a finite loss whose
            # gradient is not
            return loss + (p * 0.0).sum().sqrt()
        return loss
    monkeypatch.setattr(family_mod, "diffusion_loss", loss_fn)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_anomaly_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, kind):
    cfg = tiny(tmp_path, steps=8, checkpoint_every=2)
    _inject(monkeypatch, 6, kind)
    what = "loss" if kind == "loss" else "gradient norm"
    with pytest.raises(TrainingAnomaly, match=rf"the {what} became nan at step 6 .*last good "
                                              r"checkpoint \(step 4\)"):
        train(cfg, log=quiet)
    st = _state(cfg.out)
    assert st[".step"] == 4
    assert all(np.isfinite(v).all() for k, v in st.items() if isinstance(v, np.ndarray)
               and v.dtype.kind == "f")
    # the losses up to the anomaly are kept for diagnosis; resuming continues from step 4
    assert [r["step"] for r in read_loss_csv(os.path.join(cfg.out, "loss.csv"))] == \
        [1, 2, 3, 4, 5]
    monkeypatch.undo()
    m = train(cfg, resume=True, log=quiet)
    assert m["steps"] == 8


# ---------------------------------------------------------------------- the commands
def test_cli_train_sample_eval(tmp_path, monkeypatch, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    from minigen.cli import main
    out = str(tmp_path / "run")
    rc = main(["train", "ddpm", "--data", "digits", "--preset", "tiny", "--conditional",
               "--steps", "6", "--batch-size", "16", "--warmup", "2", "--sample-every", "3",
               "--out", out, "--no-progress"])
    assert rc == 0
    for f in ("config.json", "checkpoint.safetensors", "loss.csv", "loss.png", "metrics.json",
              "samples/step_0000003.png", "samples/final.png"):
        assert os.path.isfile(os.path.join(out, f)), f
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["steps"] == 6 and metrics["model_parameters"] > 0
    assert Image.open(os.path.join(out, "samples/final.png")).size[0] > 10 * 8

    rc = main(["sample", out, "--sampler", "ddim", "--steps", "4", "--num", "10",
               "--guidance", "2", "--class", "3", "--seed", "1", "--no-progress"])
    assert rc == 0
    grid = os.path.join(out, "samples", "ddim4_eta0_w2_class3_seed1.png")
    assert os.path.isfile(grid) and os.path.isfile(grid[:-4] + "_trajectory.png")
    a = np.asarray(Image.open(grid))
    main(["sample", out, "--sampler", "ddim", "--steps", "4", "--num", "10", "--guidance",
          "2", "--class", "3", "--seed", "1", "--no-progress"])
    np.testing.assert_array_equal(a, np.asarray(Image.open(grid)))   # seeded: same grid
    assert main(["sample", out, "--sampler", "ddpm", "--steps", "5", "--num", "4",
                 "--no-progress"]) == 0
    assert main(["sample", out, "--class", "12", "--num", "2", "--steps", "2"]) == 2
    assert "--class must be in 0..9" in capsys.readouterr().err

    # eval: the glue around minigen.diffusion.evaluate.evaluate_run (a stand-in here; the
    # evaluation itself is tested in its own file)
    seen = {}

    def evaluate_run(run, **kw):
        seen.update(kw, run=run)
        return {"fcd": 1.5}
    fake = types.ModuleType("minigen.diffusion.evaluate")
    fake.evaluate_run = evaluate_run
    monkeypatch.setitem(sys.modules, "minigen.diffusion.evaluate", fake)
    import minigen.diffusion
    monkeypatch.setattr(minigen.diffusion, "evaluate", fake, raising=False)
    assert main(["eval", out, "--num-samples", "20", "--ddim-table", "--no-progress"]) == 0
    assert seen["num_samples"] == 20 and seen["ddim"] is True and seen["run"].step == 6
    assert seen["run"].model.num_classes == 10
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["eval"] == {"fcd": 1.5, "step": 6}
    # --out: another results file, its own section of metrics.json, the first one kept
    assert main(["eval", out, "--sampler", "ddpm", "--out", "eval-ddpm.json",
                 "--no-progress"]) == 0
    assert seen["sampler"] == "ddpm"
    with open(os.path.join(out, "eval-ddpm.json")) as f:
        assert json.load(f) == {"fcd": 1.5, "step": 6}
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    assert m["eval-ddpm"] == {"fcd": 1.5, "step": 6} and m["eval"] == {"fcd": 1.5, "step": 6}
    seen.clear()
    assert main(["eval", out, "--out", "../elsewhere.json", "--no-progress"]) == 2
    assert "give a file name ending in .json" in capsys.readouterr().err and not seen


def test_cli_errors(tmp_path, capsys):
    from minigen.cli import main
    assert main(["train", "ddpm", "--data", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "r"), "--no-images"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["train", "ddpm", "--data", "cifar10", "--out", str(tmp_path / "r"),
                 "--no-images"]) == 2
    assert "cs.toronto.edu" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "ddpm", "--prediction-type", "score"])


# ---------------------------------------------------------------------- latent diffusion
def test_latent_run_with_the_kl_autoencoder(tmp_path):
    pytest.importorskip("minigen.models.autoencoder")
    # 8×8 digits → 4×2×2 latents, zero-padded to 4×4 for the tiny UNet (two levels)
    kw = dict(latent=True, ae_epochs=1, limit=64, checkpoint_every=2)
    cfg = tiny(tmp_path, steps=4, **kw)
    train(cfg, log=quiet)
    run = load_run(cfg.out)
    info = run.run_json["latent"]
    assert info["latent_shape"] == [4, 2, 2] and run.sample_shape == (4, 4, 4)
    assert info["scale"] > 0 and os.path.isfile(os.path.join(cfg.out, "autoencoder.safetensors"))
    x, frames = sample_run(run, "ddim", steps=3, num=3)
    assert x.shape == (3, 1, 8, 8) and frames[0].shape == (1, 1, 8, 8) and len(frames) == 4
    assert np.abs(x).max() <= 1.0
    # resume: the stored autoencoder is reloaded, the latents and the run continue exactly
    train(tiny(tmp_path, "b", steps=2, **kw), log=quiet)
    train(tiny(tmp_path, "b", steps=4, **kw), resume=True, log=quiet)
    a, b = _state(cfg.out), _state(tmp_path / "b")
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the padded rows/columns of every training latent are exactly zero
    from minigen.diffusion.latent import prepare_latents
    _, (mean, std), _ = prepare_latents(cfg, load_image_dataset("digits", limit=64), quiet, 4)
    assert mean.shape[1:] == (4, 4, 4) and not mean[:, :, 2:].any() and not std[:, :, :, 2:].any()


# ---------------------------------------------------------------------- data
def test_datasets_scaled_to_unit_interval(tmp_path):
    d = load_image_dataset("digits")
    assert d.shape == (1, 8, 8) and len(d.train) + len(d.heldout) == 1797
    x = d.to_float(d.train)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    written = make_synthetic_mnist_dir(str(tmp_path / "mnist"), n_train=30, n_test=10)
    m = load_image_dataset(str(tmp_path / "mnist"))         # a PATH: recognised as MNIST IDX
    assert m.name == "mnist" and m.shape == (1, 28, 28) and len(m.heldout) == 10
    np.testing.assert_array_equal(m.train[:, 0], written["train"][0])
    np.testing.assert_allclose(m.to_float(m.train[:1]), written["train"][0][:1, None] / 127.5
                               - 1.0, atol=1e-6)
    assert len(load_image_dataset("mnist", str(tmp_path / "mnist"), limit=7).train) == 7
    os.makedirs(tmp_path / "empty")
    with pytest.raises(mg.data.DataNotFoundError, match="neither MNIST IDX"):
        load_image_dataset(str(tmp_path / "empty"))


def test_eval_of_a_digits_run_skips_bits_per_dim_with_a_message(tmp_path):
    # the bits/dim bound is over 256 levels; the 8×8 digits have 17: say so, don't fail
    from minigen.diffusion.evaluate import evaluate_run
    train(tiny(tmp_path, steps=2, limit=32), log=quiet)
    said = []
    res = evaluate_run(load_run(str(tmp_path / "run")), progress=False, log=said.append)
    assert "heldout_bits_per_dim" not in res
    assert any("bits/dim needs 8-bit images" in s and "17 levels" in s for s in said), said
