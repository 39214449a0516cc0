"""What a model family is to the harness: a config dataclass with named presets, and a class
that builds its networks, computes one training step's loss per optimizer, samples and
evaluates. Everything else (the loop, checkpoints, resume, EMA, LR warm-up, gradient clipping,
progress, grids, loss.csv/png, metrics.json, the command line) is the harness's.

The contract, with what the loop calls and when (``minigen/harness/loop.py``):

    fam = Family(config)                 config: the family's Config (a TrainConfig subclass)
    fam.setup(data)                      build networks from config + data (weights seeded by
                                         config.seed); data from minigen.data.load_dataset
    fam.optimizers()                     {name: parameters}; Adam(lr) each unless
                                         make_optimizer is overridden
    for each batch, for name in fam.step_order:         (one name: "model"; a GAN: "d", "g")
        loss = fam.training_step(batch, name)           a scalar Tensor; zero_grad, backward,
                                                         clip, step and LR schedule: the loop's
    fam.on_epoch_end(epoch) -> dict | None              optional per-epoch metrics (history)
    fam.sample(num, generator) -> array                 (N, C, H, W) in [−1, 1], or (N, D)
    fam.evaluate(**opts) -> dict                        ``minigen eval``
    fam.run_config() -> dict                            goes into config.json beside "train"

``batch`` carries the indices of the examples (the loop's seeded order), epoch and batch
numbers, and ``rng``: the CPU generator whose state is checkpointed; a family draws all its
per-step randomness from it in a fixed order, so a resumed run is bit-identical.

A family may keep extra state across a resume (``state_dict``/``load_state_dict``, e.g. the VAE's
per-epoch history) and declares its command-line options as Config fields:
``field(default=..., metadata={"help": ...})``; the harness turns them into flags.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

__all__ = ["TrainConfig", "Family", "Batch", "register", "get_family", "FAMILIES"]


@dataclass
class TrainConfig:
    """The options every family shares: the same flag means the same thing everywhere.
    Families subclass it with their own fields and defaults."""
    data: str = field(default="mnist", metadata={"help": "dataset name or path (minigen list)"})
    data_dir: str | None = field(default=None, metadata={"help": "where the data files are"})
    limit: int | None = field(default=None, metadata={"help": "first N training examples only"})
    preset: str = field(default="default", metadata={"help": "named architecture (minigen list)"})
    steps: int | None = field(default=None, metadata={"help": "total optimizer steps to reach"})
    minutes: float | None = field(default=None, metadata={
        "help": "stop after this many minutes of training (counted across --resume)"})
    epochs: int | None = field(default=None, metadata={"help": "total epochs to reach"})
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = field(default=0.0, metadata={
        "help": "EMA of the weights, sampled from (0: no EMA)"})
    warmup: int = field(default=0, metadata={"help": "linear LR warm-up steps"})
    lr_schedule: str = field(default="constant", metadata={
        "choices": ("constant", "cosine"),
        "help": "after the warm-up: constant, or cosine decay to 0 at the last step (needs "
                "--steps or --epochs)"})
    grad_clip: float = field(default=0.0, metadata={"help": "max total gradient norm (0: off)"})
    seed: int = 0
    out: str = field(default="runs/run", metadata={"help": "run directory"})
    sample_every: int = field(default=0, metadata={
        "help": "steps between sample grids in RUN/samples (0: only at the end)"})
    checkpoint_every: int = field(default=250, metadata={
        "help": "steps between checkpoints (also every 120 s)"})
    log_every: int = field(default=0, metadata={
        "help": "steps between host reads of the loss on cuda (0: 25 on cuda, 1 on cpu)"})
    device: str = "cpu"
    progress: bool = True
    images: bool = True
    detect_anomaly: bool = False

    # settings that a resumed run must share with its checkpoint (families add theirs)
    RESUME_KEYS = ("data", "data_dir", "limit", "preset", "batch_size", "lr", "ema_decay",
                   "warmup", "lr_schedule", "grad_clip", "seed")
    # defaults of the run length when none of steps / minutes / epochs is given
    DEFAULT_STEPS = 2000
    DEFAULT_EPOCHS = None

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in self.RESUME_KEYS}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class Batch:
    index: object          # numpy int64 indices into the training set
    epoch: int
    number: int            # batch number within the epoch
    step: int              # optimizer steps done before this batch
    rng: object            # minigen.random.Generator (CPU), checkpointed


class Family:
    """Base class of a model family (module doc). Subclasses set the class attributes."""
    name = "family"
    help = ""
    Config = TrainConfig
    presets: dict = {}              # name -> {Config field: value}, the architecture knobs
    datasets: tuple = ()            # --data names it accepts (paths too, when images)
    data_kind = "images"            # what minigen.data.load_dataset returns for it
    step_order: tuple = ("model",)  # optimizer names, in the order of one step
    drop_last = True                # drop the last, partial batch of an epoch
    ema_module = "model"            # which module the EMA follows (when ema_decay > 0)

    def __init__(self, config: TrainConfig, log=print):
        self.config = config
        self.log = log
        self.data = None
        self.model = None
        self.metrics: dict = {}
        self.path: str | None = None

    # --- building
    def setup(self, data):
        raise NotImplementedError

    def modules(self) -> dict:
        """The networks the checkpoint holds, by name."""
        return {"model": self.model}

    def optimizers(self) -> dict:
        return {"model": list(self.model.parameters())}

    def make_optimizer(self, name: str, params, lr: float):
        from .. import optim
        return optim.Adam(params, lr=lr)

    def run_config(self) -> dict:
        return {}

    def describe(self) -> str:
        return self.name

    # --- training
    def num_examples(self) -> int:
        return len(self.data.train)

    def training_step(self, batch: Batch, optimizer: str):
        raise NotImplementedError

    def on_epoch_end(self, epoch: int):
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass

    # --- after training
    def sample(self, num: int, generator, **opts):
        raise NotImplementedError

    def save_sample_grid(self, path: str, num: int | None = None, seed: int = 0):
        """A PNG grid of samples (the harness calls it with EMA weights in place)."""
        from ..random import Generator
        from .rundir import save_grid
        gen = Generator(self.config.device).manual_seed(seed)
        x = self.sample(num or 64, gen)
        save_grid(x, path, ncol=8)

    def final_metrics(self) -> dict:
        """What the end of training adds to metrics.json (e.g. a held-out likelihood)."""
        return {}

    def evaluate(self, **opts) -> dict:
        raise NotImplementedError(f"{self.name}: no evaluation defined")

    # --- command line (sample / eval options particular to the family)
    @classmethod
    def add_sample_args(cls, parser):
        pass

    @classmethod
    def add_eval_args(cls, parser):
        pass

    def sample_command(self, args) -> tuple:
        """``minigen sample RUN``: (samples, name stem); the harness writes the PNG and npz."""
        from ..random import Generator
        gen = Generator(args.device).manual_seed(args.seed)
        return self.sample(args.num, gen), f"samples_seed{args.seed}"

    # --- a trained run, back from its directory
    @classmethod
    def load(cls, path: str, device: str = "cpu", ema: bool = True):
        """The family object of the run in ``path`` with its trained networks (EMA weights
        where kept) in eval mode; ``.config``, ``.metrics``, ``.step`` set."""
        import os
        import minigen
        from . import rundir
        cfg_all = rundir.read_json(os.path.join(path, rundir.CONFIG))
        config = cls.Config.from_dict({**cfg_all["train"], "device": device})
        fam = cls(config)
        fam.path = path
        fam.setup_for_inference(cfg_all)
        ck = minigen.load(os.path.join(path, rundir.CHECKPOINT))
        for name, module in fam.modules().items():
            module.load_state_dict(ck["modules"][name])
            if device != "cpu":
                module.to(device)
        if ema and "ema" in ck:
            from ..optim import EMA
            averager = EMA(fam.modules()[cls.ema_module])
            averager.load_state_dict(ck["ema"])
            averager.copy_to()
        for module in fam.modules().values():
            module.eval()
        fam.step = int(ck["step"])
        fam.load_state_dict(ck.get("family", {}))
        mpath = os.path.join(path, rundir.METRICS)
        fam.metrics = rundir.read_json(mpath) if os.path.exists(mpath) else {}
        fam.run_json = cfg_all
        return fam

    def setup_for_inference(self, run_json: dict):
        """Rebuild the networks from config.json (no training data needed)."""
        raise NotImplementedError


FAMILIES: dict[str, type] = {}


def register(cls):
    """Class decorator: make a family available to the harness and the command line."""
    FAMILIES[cls.name] = cls
    return cls


def get_family(name: str) -> type:
    from . import _families  # noqa: F401  (imports the built-in families)
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
