"""The diffusion family for the harness: ``minigen train ddpm`` (Algorithm 1 of Ho et al. 2020;
MATH.md §6, §8). What is particular to it: the UNet, the noise schedule, the loss of one step,
the label drop of classifier-free guidance, latent diffusion, sampling and evaluation. The loop,
checkpoints, EMA, warm-up, clipping and the run directory are the harness's
(``minigen/harness/loop.py``).

One step, for a batch x_0 (N, C, H, W) in [−1, 1] (labels y when --conditional):

    t ~ U{0..T−1}  (index t is the paper's step t+1),  ε ~ N(0, I)
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε                                   (one fused pass, q_sample)
    target = ε                  (prediction_type "epsilon")
           = x_0                ("sample")
           = √ᾱ_t ε − √(1 − ᾱ_t) x_0   ("v_prediction", v of Salimans & Ho)
    loss = ‖target − model(x_t, t, y)‖² / (N·C·H·W)                    (the "simple" loss)
    y ← ∅ (the null class) with probability p_uncond (classifier-free guidance, §8)

| symbol | name in code |
|---|---|
| x_0, x_t, ε, t, y | ``x0``, ``xt``, ``noise``, ``t``, ``y`` |
| ᾱ_t | ``schedule.alphas_cumprod[t]`` (gathered inside ``q_sample``) |
| p_uncond | ``config.p_uncond`` |

Defaults: the E2 UNet of BENCH.md, batch 64, T = 1000 linear, EMA 0.999, warm-up 200, clip 1.
The learning rate is 1e-3 (the E2 benchmark's 2e-4 is the DDPM paper's, for ~800k steps; a
60-minute CPU run makes a few thousand steps, where 1e-3 with warm-up learns faster; clipping
guards against spikes).

The draws of one step, from the run's checkpointed generator, in this order: (the latent
posterior sample ε_z for --latent), t, ε, (the label-drop uniforms for --conditional).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .. import creation
from ..harness.family import Family, TrainConfig, register
from ..nn import functional as F
from ..ops.noise_schedule import q_sample
from ..tensor import tensor

__all__ = ["DDPMConfig", "DDPMFamily", "diffusion_loss", "drop_labels", "PRESETS"]

# Architectures (UNet constructor arguments; in/out channels and classes come from the data).
PRESETS = {
    "e2": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(),
               mid_attention=True, num_heads=1, dropout=0.0, num_groups=8),
    "tiny": dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(),
                 mid_attention=True, num_heads=1, dropout=0.0, num_groups=4),
}


@dataclass
class DDPMConfig(TrainConfig):
    """``minigen train ddpm`` (the shared options are TrainConfig's)."""
    preset: str = field(default="e2", metadata={
        "help": "UNet architecture: e2 (BENCH.md E2, ~0.58M parameters) or tiny"})
    out: str = field(default="runs/ddpm", metadata={"help": "run directory"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA of the weights (0: none)"})
    warmup: int = field(default=200, metadata={"help": "linear LR warm-up steps"})
    grad_clip: float = field(default=1.0, metadata={"help": "max total gradient norm (0: off)"})
    sample_every: int = field(default=1000, metadata={
        "help": "steps between sample grids in RUN/samples (0: only at the end)"})
    conditional: bool = field(default=False, metadata={
        "help": "class-conditional UNet; labels dropped to the null class with probability "
                "--p-uncond (for classifier-free guidance)"})
    p_uncond: float = field(default=0.1, metadata={"help": "label-drop probability"})
    latent: bool = field(default=False, metadata={
        "help": "diffusion in the latent space of a KL autoencoder trained first"})
    ae_epochs: int | None = field(default=None, metadata={
        "help": "epochs of the --latent autoencoder's training (default: its own)"})
    prediction_type: str = field(default="epsilon", metadata={
        "choices": ("epsilon", "sample", "v_prediction")})
    num_train_timesteps: int = field(default=1000, metadata={
        "flag": "--timesteps", "help": "T, the number of diffusion steps"})
    beta_schedule: str = field(default="linear", metadata={
        "choices": ("linear", "scaled_linear", "cosine", "sigmoid")})
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sample_steps: int = field(default=50, metadata={"help": "DDIM steps of the sample grids"})
    num_samples: int = field(default=64, metadata={"help": "samples in the final grid"})

    RESUME_KEYS = TrainConfig.RESUME_KEYS + (
        "conditional", "p_uncond", "latent", "ae_epochs", "prediction_type",
        "num_train_timesteps", "beta_schedule", "beta_start", "beta_end")
    DEFAULT_STEPS = 2000


def diffusion_loss(model, schedule, x0, t, noise, y=None, prediction_type="epsilon"):
    """The simple loss of Algorithm 1 (module doc): mean squared error of the model's
    prediction at x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε against ε, x_0 or v."""
    from ..autograd.grad_mode import no_grad
    xt = q_sample(schedule, x0, t, noise)
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "sample":
        target = x0
    elif prediction_type == "v_prediction":
        with no_grad():   # v = √ᾱ_t ε − √(1 − ᾱ_t) x_0: q_sample with (ε, −x_0) in one pass
            target = q_sample(schedule, noise, t, -x0)
    else:
        raise ValueError(f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got "
                         f"{prediction_type!r}")
    out = model(xt, t) if y is None else model(xt, t, y)
    return F.mse_loss(out, target)


def drop_labels(labels: np.ndarray, p_uncond: float, null_class: int, generator) -> np.ndarray:
    """Classifier-free guidance's label dropout (MATH.md §8): each label becomes the null class
    ∅ = ``null_class`` with probability p_uncond, from n uniforms u_i of ``generator``:
    y_i ← ∅ if u_i < p_uncond else y_i."""
    u = creation.rand(len(labels), generator=generator).numpy()
    return np.where(u < p_uncond, null_class, labels).astype(np.int64)


@register
class DDPMFamily(Family):
    name = "ddpm"
    help = "denoising diffusion (UNet, DDPM/DDIM sampling, guidance, --latent)"
    Config = DDPMConfig
    presets = PRESETS
    datasets = ("mnist", "digits", "cifar10", "PATH")
    data_kind = "images"

    # --- building
    def validate(self):
        c = self.config
        if not 0.0 <= c.p_uncond < 1.0:
            raise ValueError("ddpm: --p-uncond must be in [0, 1)")

    def _scheduler(self):
        from .ddpm import DDPMScheduler
        c = self.config
        return DDPMScheduler(num_train_timesteps=c.num_train_timesteps, beta_start=c.beta_start,
                             beta_end=c.beta_end, beta_schedule=c.beta_schedule,
                             prediction_type=c.prediction_type,
                             clip_sample=not c.latent)   # latents are not confined to [−1, 1]

    def setup(self, data):
        from ..models import UNet
        from ..random import Generator
        c = self.config
        self.data = data
        self.latents, self.autoencoder, self.latent_info = None, None, None
        shape = data.shape
        if c.latent:
            from .latent import prepare_latents
            multiple = 2 ** len(PRESETS[c.preset]["channel_mult"])   # the UNet's downsampling
            self.latent_info, self.latents, self.autoencoder = prepare_latents(c, data, self.log,
                                                                               multiple)
            shape = tuple(self.latent_info["shape"])
        self.sample_shape = tuple(shape)
        self.model = UNet(in_channels=shape[0], out_channels=shape[0], **PRESETS[c.preset],
                          num_classes=data.num_classes if c.conditional else None)
        self.model.reset_parameters(Generator("cpu").manual_seed(c.seed))
        if c.device != "cpu":
            self.model.to(c.device)
        self.noise_scheduler = self._scheduler()
        self.scheduler_config = self.noise_scheduler.config

    def setup_for_inference(self, run_json):
        from ..models import UNet
        self.model = UNet(**run_json["model"])
        self.scheduler_config = dict(run_json["scheduler"])
        self.sample_shape = tuple(run_json["diffusion_shape"])
        self.latent_info = run_json.get("latent")
        self.autoencoder = None
        if self.latent_info:
            from .latent import load_autoencoder
            self.autoencoder = load_autoencoder(os.path.join(self.path, "autoencoder.safetensors"),
                                                self.latent_info, self.config.device)

    def run_config(self) -> dict:
        return {"model": self.model.config, "scheduler": self.noise_scheduler.config,
                "diffusion_shape": list(self.sample_shape), "latent": self.latent_info}

    def describe(self) -> str:
        c = self.config
        n = sum(int(np.prod(p.shape)) for p in self.model.parameters())
        ch, h, w = self.sample_shape
        return (f"DDPM ({c.preset} UNet, {n:,} parameters"
                f"{', class-conditional' if c.conditional else ''}) on {self.data.describe()}"
                f"{f', latent {ch}x{h}x{w}' if c.latent else ''}; T={c.num_train_timesteps} "
                f"{c.beta_schedule}, {c.prediction_type} prediction")

    # --- training
    def training_step(self, batch, optimizer):
        c, data, rng = self.config, self.data, batch.rng
        idx, n = batch.index, len(batch.index)
        if self.latents is not None:   # z ~ q(z | x_0) = N(μ, σ²), scaled (latent.py)
            mean, std = self.latents
            eps_z = creation.randn(n, *self.sample_shape, generator=rng)
            x0 = tensor(mean[idx]) + tensor(std[idx]) * eps_z
        else:
            x0 = tensor(data.to_float(data.train[idx]))
        t = creation.randint(0, c.num_train_timesteps, (n,), generator=rng)
        noise = creation.randn(n, *self.sample_shape, generator=rng)
        y = None
        if c.conditional:
            y = tensor(drop_labels(data.train_labels[idx], c.p_uncond, data.num_classes, rng))
        if c.device != "cpu":
            x0, t, noise = x0.to(c.device), t.to(c.device), noise.to(c.device)
            y = None if y is None else y.to(c.device)
        from . import family as this   # looked up per call: tests substitute the loss
        return this.diffusion_loss(self.model, self.noise_scheduler.schedule, x0, t, noise, y,
                                   c.prediction_type)

    def small_grid_size(self) -> int:
        """The grid while training: 2 per class when conditional, else 16."""
        return 2 * self.data.num_classes if self.config.conditional else 16

    # --- sampling
    @property
    def num_classes(self):
        return self.model.num_classes

    def scheduler(self, kind: str = "ddpm", **overrides):
        """A DDPMScheduler or DDIMScheduler with the run's training schedule."""
        from .ddim import DDIMScheduler
        from .ddpm import DDPMScheduler
        cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}.get(kind)
        if cls is None:
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {kind!r}")
        return cls.from_config(self.scheduler_config, **overrides)

    def decode(self, z):
        """Diffusion space → images in [−1, 1]: identity, or D(z / s) for latent runs."""
        if self.autoencoder is None:
            return z
        from .latent import decode_latents
        return decode_latents(self.autoencoder, z, self.latent_info)

    @property
    def latent_scale(self) -> float:
        return float(self.latent_info["scale"]) if self.latent_info else 1.0

    def sample(self, num, generator, steps=None, sampler="ddim", eta=0.0, guidance=0.0,
               class_label=None, progress=False):
        """(num, C, H, W) images in [−1, 1] (decoded for latent runs)."""
        from .run import sample_run
        images, _ = sample_run(self, sampler, steps, eta, guidance, class_label, num,
                               generator=generator, device=self.config.device,
                               progress=progress)
        return images

    def save_sample_grid(self, path, num=None, seed=0):
        from ..random import Generator
        from ..harness.rundir import save_grid
        from .ddim import DDIMScheduler
        from .sampling import sample
        c = self.config
        num = num or c.num_samples
        gen = Generator(c.device).manual_seed(seed)
        sched = DDIMScheduler.from_config(self.noise_scheduler.config)
        k = self.model.num_classes
        labels = None if k is None else tensor(np.arange(num) % k, device=c.device)
        x = sample(self.model, sched, (num, *self.sample_shape), num_inference_steps=min(
            c.sample_steps, c.num_train_timesteps), generator=gen, class_labels=labels,
            device=c.device)
        x = self.decode(x)
        save_grid(x.numpy() if c.device == "cpu" else x.to("cpu").numpy(), path, ncol=k or 8)

    def final_metrics(self) -> dict:
        return {"n_train": len(self.data.train), "n_heldout": len(self.data.heldout),
                "data": self.data.name, "image_shape": list(self.data.shape),
                "diffusion_shape": list(self.sample_shape),
                "model_parameters": sum(int(np.prod(p.shape)) for p in self.model.parameters()),
                "scheduler_config": self.noise_scheduler.config}

    # --- commands
    @classmethod
    def add_sample_args(cls, p):
        p.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
        p.add_argument("--steps", type=int, default=None,
                       help="inference steps (default: T for ddpm, 50 for ddim)")
        p.add_argument("--eta", type=float, default=0.0,
                       help="DDIM η (0 deterministic, 1 ≈ DDPM)")
        p.add_argument("--guidance", type=float, default=0.0,
                       help="classifier-free guidance w: (1 + w) ε(x,t,y) − w ε(x,t,∅)")
        p.add_argument("--class", dest="class_label", type=int, default=None,
                       help="class of every sample (conditional runs; default: one column per "
                            "class)")

    def sample_command(self, args):
        from .run import sample_run
        images, frames = sample_run(self, args.sampler, args.steps, args.eta, args.guidance,
                                    args.class_label, args.num, args.seed, args.device,
                                    progress=args.progress)
        name = (f"{args.sampler}{args.steps or ''}_eta{args.eta:g}_w{args.guidance:g}"
                f"{'' if args.class_label is None else f'_class{args.class_label}'}"
                f"_seed{args.seed}")
        k = self.num_classes
        return images, name, {"ncol": k if k and args.class_label is None else 8,
                              "trajectory": frames}

    @classmethod
    def add_eval_args(cls, p):
        p.add_argument("--num-samples", type=int, default=None, help="samples for FCD")
        p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None)
        p.add_argument("--steps", type=int, default=None)
        p.add_argument("--eta", type=float, default=None)
        p.add_argument("--guidance", type=float, default=None)
        p.add_argument("--heldout", type=int, default=None, help="held-out images for bits/dim")
        p.add_argument("--bpd-timesteps", type=int, default=None,
                       help="KL terms drawn for the bits/dim estimate (default: evaluate's)")
        p.add_argument("--ddim-table", dest="ddim", action="store_true",
                       help="also the DDIM table: FCD for S = 10, 20, 50, 100, 1000 at η = 0, 1")
        p.add_argument("--unconditional", action="store_true",
                       help="sample a class-conditional run through its null class (FCD only)")
        p.add_argument("--classifier-scale", type=float, default=None,
                       help="classifier guidance γ of the unconditional branch toward labels "
                            "0..9, with a noisy classifier trained once on the run's schedule")

    def evaluate(self, seed=0, progress=True, log=print, **opts):
        from .evaluate import evaluate_run
        opts = {k: v for k, v in opts.items() if v is not None and v is not False}
        return evaluate_run(self, device=self.config.device, seed=seed, progress=progress,
                            log=log, **opts)
