"""The ``realnvp`` and ``glow`` families of the run harness (MATH.md §4, §11).

    minigen train glow --data mnist --minutes 60 --out runs/glow
    minigen train realnvp --data moons --batch-size 256 --steps 4000 --out runs/moons
    minigen sample RUN --temperature 0.7
    minigen eval RUN

Images (mnist, digits, or a PATH). Stored values v ∈ {0, …, K−1} (K = 256, or 17 for the
digits) are dequantized per batch, x = (v + u)/K with u ~ U(0, 1)^D from the run's generator,
and the model's density p(x) on [0, 1]^D gives the discrete model P(v) = ∫ p((v + u)/K) du / K^D,
so by Jensen

    log P(v) ≥ E_u[log p(x)] − D log K,   loss = −(log p(x) − D log K) / (D ln 2)   bits/dim

(one u per image and step). ``minigen eval`` reports the held-out bits/dim (one fixed-seed u
per image) with its standard error over the images.

2-D toys (moons, 8gaussians, checkerboard, ring: minigen/data/toy2d.py, known densities p).
The loss is −log q(x) in nats; ``minigen eval`` estimates KL(p‖q) = E_p[log p − log q] over
fresh samples of p (with its standard error), the test NLL E_p[−log q] and the entropy
H(p) = E_p[−log p] of the same samples (KL = NLL − H). Grids are scatter plots and density
heat-maps beside the data (samples/*.png, density.png).

MNIST Glow (preset "image", the default for images): 2 levels × 8 steps, coupling width 64,
152,268 parameters; batch 64, Adam 1e-3 with 100 warm-up steps. On the shared 2-core CPU a step
took 3.6 s (0.28 steps/s, the machine busy): a 60-minute run makes about 1000 steps (14 epochs
of the 4500-image subset). ``benchmarks/bench_glow.py`` times the step beside a PyTorch twin.

Why the toys are presets of these families and not a family of their own: a 2-D RealNVP is
the same model (masked affine couplings with tanh-bounded log-scales, the same loss and
sampler) with MLPs instead of convolutions, so ``minigen train realnvp --data moons`` is
what a user types; the family picks the 2-D architecture from the data (preset ``auto``).
Glow's 2-D form (ActNorm → LU linear → coupling with MLPs) comes the same way.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..harness.family import Family, TrainConfig, register
from ..random import Generator
from ..tensor import tensor

__all__ = ["FlowConfig", "RealNVPFamily", "GlowFamily", "EVAL_SEED", "TOY_DATA",
           "dequantize", "kl_estimate"]

EVAL_SEED = 12345                 # the held-out dequantization noise / the p-samples of eval
TOY_DATA = ("moons", "8gaussians", "checkerboard", "ring")


def dequantize(values: np.ndarray, levels: int, u) -> object:
    """x = (v + u)/K as a float32 Tensor; u a Tensor of uniforms of the same shape."""
    return (tensor(values.astype(np.float32)) + u) * (1.0 / levels)


def kl_estimate(model, density, num: int, seed: int, device="cpu", batch=20000) -> dict:
    """KL(p‖q) = E_p[log p − log q] by Monte Carlo over ``num`` samples of p (seeded), with
    its standard error; also the NLL E_p[−log q] and the entropy H(p) = E_p[−log p]."""
    from ..autograd.grad_mode import no_grad
    x = density.sample(num, np.random.default_rng(seed))
    log_p = density.log_prob(x)
    log_q = np.empty(num)
    with no_grad():
        for i in range(0, num, batch):
            xb = tensor(x[i:i + batch].astype(np.float32), device=device)
            lq = model.log_prob(xb, check=False)
            log_q[i:i + batch] = np.asarray(lq.to("cpu").numpy() if device != "cpu"
                                            else lq.numpy(), dtype=np.float64)
    diff = log_p - log_q
    return {"kl": float(diff.mean()), "kl_stderr": float(diff.std(ddof=1) / math.sqrt(num)),
            "nll": float(-log_q.mean()), "entropy": float(-log_p.mean()), "kl_samples": num,
            "units": "nats"}


@dataclass
class FlowConfig(TrainConfig):
    """The shared options are TrainConfig's."""
    preset: str = field(default="auto", metadata={
        "help": "auto (from the data: 2d for the toys, else image), image, small, 2d, tiny, "
                "tiny2d"})
    out: str = field(default="runs/flow", metadata={"help": "run directory"})
    warmup: int = field(default=100, metadata={
        "help": "linear LR warm-up steps (Glow's couplings start at the identity; a full LR "
                "on the first steps can push the log-scales far)"})
    temperature: float = field(default=0.7, metadata={
        "help": "temperature of the sample grids (the final grid also at 1.0)"})
    eval_samples: int = field(default=20000, metadata={
        "help": "held-out images / p-samples for the end-of-training metric (0: all / "
                "20000)"})
    DEFAULT_STEPS = 2000


class _FlowFamily(Family):
    Config = FlowConfig
    datasets = ("mnist", "digits", "PATH") + TOY_DATA
    kind = ""                    # "glow" or "realnvp"
    presets: dict = {}

    def __init__(self, config, log=print):
        super().__init__(config, log)
        # the loop loads the data with the kind this instance asks for: points for the toys
        self.data_kind = "points" if config.data in TOY_DATA else "images"

    # --- architecture
    def _arch(self) -> dict:
        p = self.config.preset
        if p == "auto":
            p = "2d" if self.data_kind == "points" else "image"
        arch = dict(self.presets[p])
        if (arch.get("points", False)) != (self.data_kind == "points"):
            raise ValueError(f"{self.name}: preset {p!r} is for "
                             f"{'2-D points' if arch.get('points') else 'images'}, --data "
                             f"{self.config.data} holds {self.data_kind}")
        arch.pop("points", None)
        return arch

    def validate(self):
        c = self.config
        if c.temperature <= 0:
            raise ValueError(f"{self.name}: --temperature must be > 0")
        if c.eval_samples < 0:
            raise ValueError(f"{self.name}: --eval-samples must be ≥ 0")
        self._arch()          # a preset of the wrong kind fails before any file is written

    def _build(self, spec):
        from .models import build_flow
        self.spec = spec
        self.model = build_flow(spec, generator=Generator("cpu").manual_seed(self.config.seed))
        if self.config.device != "cpu":
            self.model.to(self.config.device)

    def setup(self, data):
        self.data = data
        arch = self._arch()
        if self.data_kind == "points":
            self.levels = None
            self._build({"kind": f"{self.kind}_2d", "dim": int(data.train.shape[1]), **arch})
        else:
            self.levels = int(round(data.max_value)) + 1
            self._build({"kind": self.kind, "input_shape": list(data.shape), **arch})

    def setup_for_inference(self, run_json):
        self.data_kind = run_json.get("data_kind", "images")
        self.levels = run_json.get("levels")
        self._build(run_json["model"])
        self.data = None

    def run_config(self) -> dict:
        return {"model": self.spec, "data_kind": self.data_kind, "levels": self.levels}

    def describe(self) -> str:
        n = sum(int(np.prod(p.shape)) for p in self.model.parameters())
        arch = ", ".join(f"{k} {v}" for k, v in self.spec.items() if k not in ("kind",))
        return f"{self.spec['kind']} ({arch}; {n:,} parameters) on {self.data.describe()}"

    # --- training
    def _dims(self) -> int:
        return int(np.prod(self.model.event_shape))

    def training_step(self, batch, optimizer):
        from .. import creation
        c = self.config
        if self.data_kind == "points":
            x = tensor(self.data.train[batch.index], device=c.device)
            return -self.model.log_prob(x, check=False).mean()
        v = self.data.train[batch.index]
        u = creation.rand(*v.shape, generator=batch.rng)
        x = dequantize(v, self.levels, u)
        if c.device != "cpu":
            x = x.to(c.device)
        d = self._dims()
        lp = self.model.log_prob(x, check=False)
        return (lp.mean() - d * math.log(self.levels)) * (-1.0 / (d * math.log(2.0)))

    # --- sampling
    def sample(self, num, generator, temperature=1.0, **opts):
        """(num, C, H, W) in [−1, 1] (2x − 1 of the sample in [0, 1], clipped), or (num, 2)."""
        from ..autograd.grad_mode import no_grad
        with no_grad():
            x = self.model.sample(num, temperature, generator=generator)
        a = x.to("cpu").numpy() if self.config.device != "cpu" else x.numpy()
        if self.data_kind == "points":
            return a
        return np.clip(2.0 * a - 1.0, -1.0, 1.0).astype(np.float32)

    def save_sample_grid(self, path, num=None, seed=0):
        gen = Generator(self.config.device).manual_seed(seed)
        if self.data_kind == "points":
            self._save_toy_figure(path, self.sample(num if num and num > 64 else 5000, gen),
                                  self.data.train[:5000])
            return
        from ..harness.rundir import save_grid
        save_grid(self.sample(num or 64, gen, self.config.temperature), path, ncol=8)

    def _model_log_density_grid(self, bounds, n=160):
        from ..autograd.grad_mode import no_grad
        x0, x1, y0, y1 = bounds
        gx, gy = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        X, Y = np.meshgrid(gx, gy)
        pts = np.stack([X.ravel(), Y.ravel()], 1).astype(np.float32)
        with no_grad():
            lq = self.model.log_prob(tensor(pts, device=self.config.device), check=False)
        lq = lq.to("cpu").numpy() if self.config.device != "cpu" else lq.numpy()
        return pts, lq.reshape(n, n)

    def _save_toy_figure(self, path, samples, data_points, density=None):
        """Data | samples (scatter) | model density q | true density p (heat-maps)."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        density = density or self.data.density
        b = density.bounds
        pts, lq = self._model_log_density_grid(b)
        lp = density.log_prob(pts.astype(np.float64)).reshape(lq.shape)
        fig, axes = plt.subplots(1, 4, figsize=(16, 4), dpi=90)
        for ax, (title, p) in zip(axes[:2], (("data", data_points), ("samples", samples))):
            ax.scatter(p[:, 0], p[:, 1], s=1, alpha=0.3)
            ax.set_title(title)
        vmax = float(np.exp(lp[np.isfinite(lp)]).max())     # one colour scale for q and p
        for ax, (title, l) in zip(axes[2:], (("model density q", lq), ("true density p", lp))):
            ax.imshow(np.exp(l), origin="lower", extent=b, cmap="viridis", aspect="auto",
                      vmin=0.0, vmax=vmax)
            ax.set_title(title)
        for ax in axes:
            ax.set_xlim(b[0], b[1])
            ax.set_ylim(b[2], b[3])
            ax.set_aspect("equal")
        fig.suptitle(f"{self.name} on {density.name}")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, path)

    # --- metrics
    def _heldout_bpd(self, images, batch=250) -> dict:
        """Held-out bits/dim (mean over images, standard error), one fixed-seed u each."""
        from .. import creation
        from ..autograd.grad_mode import no_grad
        gen = Generator("cpu").manual_seed(EVAL_SEED)
        d = self._dims()
        per = []
        with no_grad():
            for i in range(0, len(images), batch):
                v = images[i:i + batch]
                x = dequantize(v, self.levels, creation.rand(*v.shape, generator=gen))
                if self.config.device != "cpu":
                    x = x.to(self.config.device)
                lp = self.model.log_prob(x, check=False)
                lp = lp.to("cpu").numpy() if self.config.device != "cpu" else lp.numpy()
                per.append(-(np.asarray(lp, np.float64) - d * math.log(self.levels))
                           / (d * math.log(2.0)))
        per = np.concatenate(per)
        return {"heldout_bits_per_dim": float(per.mean()),
                "heldout_bits_per_dim_stderr": float(per.std(ddof=1) / math.sqrt(len(per))),
                "n_heldout": int(len(per)),
                "dequantization": f"uniform, one draw per image (seed {EVAL_SEED}), "
                                  f"K = {self.levels} levels"}

    def final_metrics(self) -> dict:
        c = self.config
        if self.data_kind == "points":
            res = kl_estimate(self.model, self.data.density, c.eval_samples or 20000, EVAL_SEED,
                              c.device)
            if c.images:
                self._save_toy_figure(os.path.join(c.out, "density.png"),
                                      self.sample(5000, Generator(c.device).manual_seed(c.seed)),
                                      self.data.train[:5000])
            self.log(f"KL(p‖q) ≈ {res['kl']:.4f} ± {res['kl_stderr']:.4f} nats (NLL "
                     f"{res['nll']:.4f}, H(p) {res['entropy']:.4f})")
            return res
        held = self.data.heldout[:c.eval_samples or None]
        res = self._heldout_bpd(held)
        if c.images:
            from ..harness.rundir import save_grid
            gen = Generator(c.device).manual_seed(c.seed)
            save_grid(self.sample(64, gen, 1.0), os.path.join(c.out, "samples", "final_T1.png"))
        self.log(f"held-out {res['heldout_bits_per_dim']:.4f} ± "
                 f"{res['heldout_bits_per_dim_stderr']:.4f} bits/dim ({res['n_heldout']} images)")
        return res

    # --- commands
    @classmethod
    def add_sample_args(cls, p):
        p.add_argument("--temperature", type=float, default=1.0,
                       help="sample from N(0, T² I) latents (Glow's reduced temperature)")

    def sample_command(self, args):
        if args.temperature <= 0:
            raise ValueError(f"--temperature must be > 0, got {args.temperature}")
        gen = Generator(args.device).manual_seed(args.seed)
        x = self.sample(args.num, gen, args.temperature)
        name = f"samples_T{args.temperature:g}_seed{args.seed}"
        if self.data_kind == "points":      # the harness writes the scatter; the heat-maps
            from ..data import load_dataset
            data = load_dataset(self.config.data, None, None, kind="points")
            png = args.out or os.path.join(self.path, "samples", name + ".png")
            stem = png[:-4] if png.endswith(".png") else png
            self._save_toy_figure(stem + "_density.png", x, data.train[:5000], data.density)
            print(f"wrote {stem}_density.png")
            return x, name, {"reference": data.train[:5000]}
        return x, name

    @classmethod
    def add_eval_args(cls, p):
        p.add_argument("--num-samples", type=int, default=None,
                       help="2-D: samples of p for the KL estimate (default 200000); images: "
                            "held-out images (default all)")

    def evaluate(self, seed=0, progress=True, log=print, num_samples=None, **opts):
        from ..data import load_dataset
        c = self.config
        data = load_dataset(c.data, c.data_dir, None, kind=self.data_kind)
        if self.data_kind == "points":
            res = kl_estimate(self.model, data.density, num_samples or 200_000, EVAL_SEED + seed,
                              c.device)
            log(f"KL(p‖q) ≈ {res['kl']:.4f} ± {res['kl_stderr']:.4f} nats (NLL {res['nll']:.4f}"
                f", H(p) {res['entropy']:.4f}, {res['kl_samples']} samples of p)")
            return res
        res = self._heldout_bpd(data.heldout[:num_samples])
        log(f"held-out {res['heldout_bits_per_dim']:.4f} ± "
            f"{res['heldout_bits_per_dim_stderr']:.4f} bits/dim ({res['n_heldout']} images)")
        return res


@register
class RealNVPFamily(_FlowFamily):
    """RealNVP (Dinh et al. 2017): masked affine couplings (checkerboard, channel-wise) with
    tanh-bounded log-scales, squeeze, multi-scale factor-out, logit pre-processing; on the
    2-D toys alternating couplings with MLPs."""
    name = "realnvp"
    kind = "realnvp"
    help = "RealNVP flow: exact likelihood, bits/dim on images, KL(p‖q) on 2-D toys"
    presets = {"auto": {}, "image": {"levels": 2, "hidden": 64},
               "small": {"levels": 2, "hidden": 32}, "tiny": {"levels": 2, "hidden": 8},
               "2d": {"points": True, "couplings": 8, "hidden": 64},
               "tiny2d": {"points": True, "couplings": 4, "hidden": 16}}


@register
class GlowFamily(_FlowFamily):
    """Glow (Kingma & Dhariwal 2018): L levels of squeeze → K × [ActNorm (data-dependent init)
    → invertible 1×1 conv (LU) → affine coupling (zero-initialised)] → split with a learned
    conditional prior; temperature sampling."""
    name = "glow"
    kind = "glow"
    help = "Glow flow: ActNorm, LU 1x1 conv, affine couplings, multi-scale; temperature sampling"
    presets = {"auto": {}, "image": {"levels": 2, "steps": 8, "hidden": 64},
               "small": {"levels": 2, "steps": 4, "hidden": 32},
               "tiny": {"levels": 2, "steps": 2, "hidden": 8},
               "2d": {"points": True, "steps": 8, "hidden": 64},
               "tiny2d": {"points": True, "steps": 3, "hidden": 16}}
