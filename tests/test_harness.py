"""The run harness (minigen/harness): one loop, one run directory, one command line.

* the first losses of ``vae`` and ``ddpm`` equal those recorded before the loops moved into the
  harness (same seed, same settings);
* a run interrupted after 10 steps and resumed to 20 ends with a checkpoint identical, tensor
  for tensor, to an uninterrupted 20-step run, for every family (a GAN-like two-optimizer toy
  family included: the contract allows alternating optimizers without special cases);
* the commands of a newcomer work end to end; progress never floods a log with carriage returns;
* classifier-free guidance's label dropout drops at the requested rate, to the null class.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import pytest

import minigen as mg
from minigen import nn
from minigen.harness import Family, TrainConfig, fit, load_run
from minigen.harness.progress import Progress
from minigen.harness.rundir import read_loss_csv
from run_checks import checkpoint_values

pytest.importorskip("sklearn.datasets", reason="the 8x8 digits ship with scikit-learn")

from minigen.diffusion.family import DDPMConfig, DDPMFamily, drop_labels  # noqa: E402
from minigen.vae import VAEConfig, VAEFamily  # noqa: E402


def quiet(*a, **k):
    pass


# Recorded with the loops of minigen/models/vae_train.py and minigen/diffusion/train.py as they
# were before the harness (commit f5c7234), on the 8x8 digits, seed 0.
BEFORE_THE_MOVE = {
    "vae": [45.38410568237305, 42.88995361328125, 41.282371520996094, 39.746307373046875,
            37.79032516479492, 36.5539665222168],
    "ddpm": [1.1727416515350342, 1.136645793914795, 1.1344642639160156, 1.1690459251403809,
             1.1153180599212646, 1.1860543489456177],
    "ddpm_conditional": [1.1568175554275513, 1.0887198448181152, 1.0895133018493652,
                         1.1374034881591797, 1.1260203123092651, 1.1529840230941772],
}


def _losses(out):
    return [r["loss"] for r in read_loss_csv(os.path.join(out, "loss.csv"))]


def test_vae_losses_equal_those_before_the_move(tmp_path):
    out = str(tmp_path / "vae")
    fit(VAEFamily, VAEConfig(data="digits", steps=6, out=out, images=False, progress=False),
        log=quiet)
    np.testing.assert_allclose(_losses(out), BEFORE_THE_MOVE["vae"], rtol=1e-6)


@pytest.mark.parametrize("conditional", [False, True])
def test_ddpm_losses_equal_those_before_the_move(tmp_path, conditional):
    out = str(tmp_path / "ddpm")
    fit(DDPMFamily, DDPMConfig(data="digits", steps=6, preset="tiny", batch_size=32,
                               conditional=conditional, out=out, images=False, progress=False),
        log=quiet)
    key = "ddpm_conditional" if conditional else "ddpm"
    np.testing.assert_allclose(_losses(out), BEFORE_THE_MOVE[key], rtol=1e-6)


# ---------------------------------------------------------------------- a two-optimizer family
class _Points:
    """200 points of a 2-D Gaussian: the smallest dataset a family can take."""
    def __init__(self):
        self.train = np.random.default_rng(0).normal(2.0, 0.5, (200, 2)).astype(np.float32)


mg.data.register_dataset("test-points", lambda data_dir, limit: _Points(), "points",
                         "200 2-D points (tests)")


@dataclass
class ToyGANConfig(TrainConfig):
    data: str = "test-points"
    preset: str = "default"
    batch_size: int = 32
    out: str = "runs/toygan"


class ToyGAN(Family):
    """A 2-D GAN: D and G alternate, each with its own Adam (the harness's step_order)."""
    name = "toygan"
    Config = ToyGANConfig
    data_kind = "points"
    step_order = ("discriminator", "generator")
    ema_module = "generator"

    def setup(self, data):
        from minigen.random import Generator
        self.data = data
        g = Generator("cpu").manual_seed(self.config.seed)
        self.gen = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 2))
        self.disc = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))
        for p in list(self.gen.parameters()) + list(self.disc.parameters()):
            p.data[...] = mg.randn(*p.shape, generator=g).numpy() * 0.3
        self.model = self.gen

    def modules(self):
        return {"generator": self.gen, "discriminator": self.disc}

    def optimizers(self):
        return {"discriminator": self.disc.parameters(), "generator": self.gen.parameters()}

    def training_step(self, batch, optimizer):
        import minigen.nn.functional as F
        real = mg.tensor(self.data.train[batch.index])
        z = mg.randn(len(batch.index), 2, generator=batch.rng)
        fake = self.gen(z)
        if optimizer == "discriminator":
            ones, zeros = mg.ones(len(real), 1), mg.zeros(len(real), 1)
            return (F.binary_cross_entropy_with_logits(self.disc(real), ones)
                    + F.binary_cross_entropy_with_logits(self.disc(fake.detach()), zeros))
        return F.binary_cross_entropy_with_logits(self.disc(fake), mg.ones(len(real), 1))


FAMILY_RUNS = {
    # digits, batch 64 without drop_last: 26 batches an epoch, so 20 steps stay in epoch 0;
    # batch 128 (13 an epoch) crosses the boundary and the per-epoch evaluation
    "vae": (VAEFamily, dict(data="digits", preset="tiny", batch_size=128)),
    "ddpm": (DDPMFamily, dict(data="digits", preset="tiny", batch_size=16, limit=100,
                              conditional=True, p_uncond=0.2, warmup=3)),
    "toygan": (ToyGAN, dict(ema_decay=0.9, grad_clip=1.0, warmup=2)),
}


@pytest.mark.parametrize("name", list(FAMILY_RUNS))
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, name):
    cls, kw = FAMILY_RUNS[name]
    base = dict(kw, images=False, progress=False, checkpoint_every=1000)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    fit(cls, cls.Config(**base, steps=20, out=straight), log=quiet)
    fit(cls, cls.Config(**base, steps=10, out=split), log=quiet)
    fit(cls, cls.Config(**base, steps=20, out=split), resume=True, log=quiet)
    a, b = checkpoint_values(straight), checkpoint_values(split)
    assert a.keys() == b.keys() and a[".step"] == 20
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)   # bit-identical
        else:
            assert a[k] == b[k], k
    rows = [read_loss_csv(os.path.join(d, "loss.csv")) for d in (straight, split)]
    assert rows[0] == rows[1] and len(rows[0]) == 20
    if name == "toygan":   # both optimizers logged, each with its own columns
        row = read_loss_csv(os.path.join(straight, "loss.csv"))[0]
        assert {"loss_discriminator", "loss_generator", "grad_norm_generator"} <= row.keys()


def test_resume_refuses_a_changed_config_naming_the_keys(tmp_path):
    out = str(tmp_path / "run")
    kw = dict(data="digits", preset="tiny", images=False, progress=False, out=out)
    fit(VAEFamily, VAEConfig(**kw, steps=2), log=quiet)
    with pytest.raises(ValueError, match=r"different settings.*'lr'.*'seed'"):
        fit(VAEFamily, VAEConfig(**kw, steps=4, lr=5e-4, seed=3), resume=True, log=quiet)
    with pytest.raises(ValueError, match="already holds a run"):
        fit(VAEFamily, VAEConfig(**kw, steps=4), log=quiet)


def test_bad_settings_fail_before_any_file_is_written(tmp_path):
    out = tmp_path / "run"
    for bad in (dict(lr=-1.0), dict(batch_size=0), dict(preset="huge"), dict(ema_decay=2.0)):
        with pytest.raises(ValueError):
            fit(VAEFamily, VAEConfig(data="digits", out=str(out), steps=1, images=False,
                                     progress=False, **bad), log=quiet)
    assert not out.exists()


# ---------------------------------------------------------------------- label dropout (CFG)
def test_label_dropout_rate_and_null_class():
    from minigen.random import Generator
    labels = np.random.default_rng(0).integers(0, 10, 20000)
    for p in (0.1, 0.5):
        out = drop_labels(labels, p, 10, Generator("cpu").manual_seed(1))
        dropped = out == 10
        n = len(labels)
        # binomial: |rate − p| ≤ 5 standard deviations
        assert abs(dropped.mean() - p) <= 5 * np.sqrt(p * (1 - p) / n), dropped.mean()
        np.testing.assert_array_equal(out[~dropped], labels[~dropped])   # kept as they were
    assert (drop_labels(labels, 0.0, 10, Generator("cpu").manual_seed(1)) == labels).all()


def test_training_steps_feed_the_model_dropped_labels(tmp_path, monkeypatch):
    from minigen.diffusion import family as family_mod
    seen = []
    real = family_mod.diffusion_loss

    def spy(model, schedule, x0, t, noise, y=None, prediction_type="epsilon"):
        seen.append(y.numpy().copy())
        return real(model, schedule, x0, t, noise, y, prediction_type)
    monkeypatch.setattr(family_mod, "diffusion_loss", spy)
    fit(DDPMFamily, DDPMConfig(data="digits", preset="tiny", batch_size=64, steps=8,
                               conditional=True, p_uncond=0.1, out=str(tmp_path / "r"),
                               images=False, progress=False), log=quiet)
    y = np.concatenate(seen)
    assert y.min() >= 0 and y.max() == 10           # the null class is num_classes
    rate = (y == 10).mean()                          # 512 labels at p = 0.1: σ ≈ 0.013
    assert 0.03 < rate < 0.2, rate


# ---------------------------------------------------------------------- progress
def test_progress_writes_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    p = Progress(True, quiet, total=100, stream=stream, every=0.0)
    for s in range(1, 4):
        p.update(s, 0.1 * s, 0.5)
    p.close()
    text = stream.getvalue()
    assert "\r" not in text and text.count("\n") == 3 and "step 3/100" in text


# ---------------------------------------------------------------------- the commands
def test_newcomer_commands_end_to_end(tmp_path, capsys):
    pytest.importorskip("PIL")
    pytest.importorskip("matplotlib")
    from minigen.cli import main
    r1, r2 = str(tmp_path / "R1"), str(tmp_path / "R2")
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "vae" in listing and "ddpm" in listing and "digits" in listing
    assert main(["train", "vae", "--data", "digits", "--steps", "50", "--out", r1,
                 "--no-progress"]) == 0
    assert main(["train", "ddpm", "--data", "digits", "--preset", "tiny", "--steps", "20",
                 "--out", r2, "--no-progress", "--sample-steps", "5", "--num-samples",
                 "8"]) == 0
    for run in (r1, r2):
        for f in ("config.json", "checkpoint.safetensors", "loss.csv", "loss.png",
                  "metrics.json", "samples/final.png"):
            assert os.path.isfile(os.path.join(run, f)), (run, f)
        with open(os.path.join(run, "loss.png"), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["sample", r2, "--steps", "10", "--num", "16", "--no-progress"]) == 0
    npz = [f for f in os.listdir(os.path.join(r2, "samples")) if f.endswith(".npz")]
    assert len(npz) == 1
    arr = np.load(os.path.join(r2, "samples", npz[0]))["arr_0"]
    assert arr.shape == (16, 8, 8, 1) and arr.dtype == np.uint8
    assert main(["sample", r1, "--num", "9"]) == 0
    assert main(["eval", r1]) == 0
    assert "heldout_elbo" in mg.harness.rundir.read_json(os.path.join(r1, "metrics.json"))["eval"]
    run = mg.load_run(r2)
    assert isinstance(run, DDPMFamily) and run.step == 20 and run.config.preset == "tiny"
    assert run.metrics["steps"] == 20 and not run.model.training
    assert load_run(r1).model is not None
    # a bad RUN is a clear error, not a traceback
    assert main(["sample", str(tmp_path / "nothing")]) == 2
    assert "not a training run directory" in capsys.readouterr().err


# ---------------------------------------------------------------------- host reads on cuda
def test_fit_on_cuda_reads_the_host_once_per_log_interval(tmp_path, monkeypatch):
    """On the CuPy stand-in of tests/fake_cupy.py (counts every device→host transfer): 50
    steps with the cuda default log_every = 25 make 2 reads of the pending losses and norms;
    the rest of the transfers are the checkpoint's tensors, written once at the end."""
    import fake_cupy
    from minigen.harness.loop import CUDA_LOG_EVERY
    counter = fake_cupy.install(monkeypatch)
    with mg.dispatch.use("reference"):
        m = fit(DDPMFamily, DDPMConfig(data="digits", preset="tiny", batch_size=8, steps=50,
                                       conditional=True, device="cuda", images=False,
                                       progress=False, checkpoint_every=1000,
                                       out=str(tmp_path / "r")), log=quiet)
    assert m["steps"] == 50 and np.isfinite(m["final_loss_mean_last_100"])
    outside_checkpoint = [w for _, w in counter.syncs if "serialization.py" not in w]
    assert len(outside_checkpoint) == 50 // CUDA_LOG_EVERY, "\n".join(outside_checkpoint)
    assert len(read_loss_csv(os.path.join(str(tmp_path / "r"), "loss.csv"))) == 50


def test_ctrl_c_writes_a_checkpoint_and_the_resume_is_exact(tmp_path, monkeypatch):
    from minigen.harness import loop

    class CtrlCAfter7:
        """The first Ctrl-C's effect (a stop request) once 7 steps have been checked."""
        def __init__(self):
            self.calls = 0

        @property
        def requested(self):
            self.calls += 1
            return self.calls > 7

        def restore(self):
            pass

    kw = dict(data="digits", preset="tiny", batch_size=16, limit=100, images=False,
              progress=False, checkpoint_every=1000)
    straight, split = str(tmp_path / "a"), str(tmp_path / "b")
    fit(DDPMFamily, DDPMConfig(**kw, steps=12, out=straight), log=quiet)
    monkeypatch.setattr(loop, "StopOnInterrupt", CtrlCAfter7)
    said = []
    with pytest.raises(KeyboardInterrupt):
        fit(DDPMFamily, DDPMConfig(**kw, steps=12, out=split), log=said.append)
    assert any("checkpoint saved at step 8" in s for s in said), said
    monkeypatch.undo()
    fit(DDPMFamily, DDPMConfig(**kw, steps=12, out=split), resume=True, log=quiet)
    a, b = checkpoint_values(straight), checkpoint_values(split)
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def test_progress_bar_in_a_terminal_for_steps_and_minutes():
    pytest.importorskip("tqdm")

    class Tty(io.StringIO):
        def isatty(self):
            return True
    for total, unit in ((10, "step"), (60.0, "s")):
        stream = Tty()
        p = Progress(True, quiet, total=total, stream=stream, unit=unit)
        for s in range(1, 6):
            p.update(s, 6.0 * s, 0.25)
        p.close()
        out = stream.getvalue()
        assert "loss=0.25" in out and ("5/10" in out if unit == "step" else "30/60" in out), out


def test_cosine_learning_rate_after_the_warm_up(tmp_path):
    out = str(tmp_path / "r")
    fit(VAEFamily, VAEConfig(data="digits", preset="tiny", steps=12, warmup=3, lr=1e-3,
                             lr_schedule="cosine", out=out, images=False, progress=False),
        log=quiet)
    lrs = np.array([r["lr"] for r in read_loss_csv(os.path.join(out, "loss.csv"))])
    n = np.arange(12)
    expect = np.where(n < 3, (n + 1) / 4, 0.5 * (1 + np.cos(np.pi * (n - 3) / 9))) * 1e-3
    np.testing.assert_allclose(lrs, expect, rtol=1e-12)
    with pytest.raises(ValueError, match="cosine needs"):
        fit(VAEFamily, VAEConfig(data="digits", minutes=1.0, lr_schedule="cosine",
                                 out=str(tmp_path / "m"), images=False, progress=False),
            log=quiet)


def test_two_dimensional_samples_make_a_scatter_png_and_a_float_npz(tmp_path):
    pytest.importorskip("matplotlib")
    from minigen.harness import rundir
    pts = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    png, npz = str(tmp_path / "s.png"), str(tmp_path / "samples_s.npz")
    rundir.save_scatter(pts, png, reference=pts[::-1])
    assert rundir.save_samples_npz(pts, npz) == (300, 2)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    back = np.load(npz)["arr_0"]
    assert back.dtype == np.float32 and (back == pts).all()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        rundir.save_scatter(pts[:, :1], png)
