"""The training loop, once for every family: ``fit(FamilyClass, config)``.

One optimizer step for optimizer ``k`` of the family (``family.step_order``; one name for most
families, two alternating ones for a GAN), on a batch B drawn in the run's seeded order:

    L   = family.training_step(B, k)                     a scalar tensor
    g   = ∇θ_k L;  g ← g · min(1, c / (‖g‖₂ + 1e-6))      (clipping at c = --grad-clip; 0: off)
    θ_k ← Adam(θ_k, g, η_k(n)),  η(n) = η₀ (n + 1)/(W + 1) for n < W, then η₀   (warm-up W)
    θ̄   ← d_n θ̄ + (1 − d_n) θ,  d_n = min(d, (1 + n)/(10 + n))     (EMA, when --ema-decay d > 0)

Randomness: the networks are initialised from a generator seeded with ``seed`` (the family's
``setup``); the order of epoch e is the permutation seeded by (seed, e) (minigen.data.batches);
everything a step draws comes from one CPU generator seeded with ``seed + 1`` whose state is in
the checkpoint. So ``--resume`` continues bit-exactly (tests/test_harness.py).

Host reads. The loss and gradient norm are read on the host every ``log_every`` steps (1 on the
CPU, where a read costs nothing; 25 on cuda, where each read waits for the GPU): the values of
those steps are stacked on the device and copied in one transfer. Then they are checked:

* on the CPU the check runs before the optimizer step: a NaN/inf loss or gradient stops the run
  (``TrainingAnomaly``) before the bad update;
* on cuda it runs every ``log_every`` steps, so a bad update may have happened; checkpoints are
  only written right after a check has passed, so the checkpoint on disk is a good one.

Interrupts: the first Ctrl-C stops after the current step and writes a checkpoint; a second one
stops at once. Time (``--minutes``, ``train_seconds``) counts training steps only, not grids.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import rundir
from .family import Batch, Family, TrainConfig
from .progress import Progress, StopOnInterrupt

__all__ = ["fit", "TrainingAnomaly", "validate"]

SAMPLE_SEED_OFFSET = 1000      # grids during training use their own generator (seed + this)
CHECKPOINT_SECONDS = 120.0     # a checkpoint at least this often, whatever checkpoint_every is
CUDA_LOG_EVERY = 25


class TrainingAnomaly(FloatingPointError):
    """The loss or the gradient became NaN/inf; the message says where and what was kept."""


def validate(cfg: TrainConfig, family_cls):
    checks = [(cfg.batch_size >= 1, "--batch-size must be ≥ 1"),
              (cfg.lr > 0, "--lr must be > 0"),
              (0.0 <= cfg.ema_decay <= 1.0, "--ema-decay must be in [0, 1] (0: no EMA)"),
              (cfg.warmup >= 0, "--warmup must be ≥ 0"),
              (cfg.grad_clip >= 0, "--grad-clip must be ≥ 0 (0: off)"),
              (cfg.steps is None or cfg.steps >= 0, "--steps must be ≥ 0"),
              (cfg.epochs is None or cfg.epochs >= 0, "--epochs must be ≥ 0"),
              (cfg.minutes is None or cfg.minutes >= 0, "--minutes must be ≥ 0"),
              (cfg.limit is None or cfg.limit >= 1, "--limit must be ≥ 1"),
              (cfg.log_every >= 0, "--log-every must be ≥ 0"),
              (cfg.lr_schedule in ("constant", "cosine"),
               "--lr-schedule must be constant or cosine"),
              (cfg.sample_every >= 0 and cfg.checkpoint_every >= 1,
               "--sample-every must be ≥ 0 and --checkpoint-every ≥ 1"),
              (not family_cls.presets or cfg.preset in family_cls.presets,
               f"--preset must be one of {', '.join(family_cls.presets)}")]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"{family_cls.name}: {msg}")


def _targets(cfg: TrainConfig):
    steps, epochs, minutes = cfg.steps, cfg.epochs, cfg.minutes
    if steps is None and epochs is None and minutes is None:
        steps, epochs = cfg.DEFAULT_STEPS, cfg.DEFAULT_EPOCHS
        if epochs is not None:
            steps = None
    return steps, epochs, (None if minutes is None else 60.0 * minutes)


def _lr_schedule(opt, cfg, total_steps):
    """η(n) = η₀ (n + 1)/(W + 1) for n < W (warm-up), then η₀ ("constant": LinearLR from
    1/(W + 1) to 1 over W steps) or η₀ · ½ (1 + cos(π (n − W)/(N − W))) ("cosine", N the run's
    total steps: 0 after the last one)."""
    from .. import optim
    W = cfg.warmup
    if cfg.lr_schedule == "constant":
        return optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / (W + 1), end_factor=1.0,
                                           total_iters=max(W, 1))
    span = max(total_steps - W, 1)

    def factor(n):
        if n < W:
            return (n + 1) / (W + 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(n - W, span) / span))
    return optim.lr_scheduler.LambdaLR(opt, factor)


def fit(family_cls, cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Train (or resume) ``family_cls`` with ``cfg`` into the run directory ``cfg.out``;
    returns the metrics dict (also in RUN/metrics.json). Raises TrainingAnomaly on a NaN/inf
    loss or gradient (the last checkpoint is kept), ValueError on bad settings."""
    import minigen
    from ..autograd.grad_mode import detect_anomaly, no_grad
    from ..data import load_dataset
    from ..optim import EMA, clip_grad_norm_
    from ..random import Generator

    if not isinstance(cfg, family_cls.Config):
        raise TypeError(f"{family_cls.name} takes a {family_cls.Config.__name__}, got "
                        f"{type(cfg).__name__}")
    validate(cfg, family_cls)
    fam: Family = family_cls(cfg, log=log)
    if hasattr(fam, "validate"):
        fam.validate()
    if cfg.images:
        rundir.require_pillow()          # fail before training, not after
    os.makedirs(cfg.out, exist_ok=True)
    ck_path = os.path.join(cfg.out, rundir.CHECKPOINT)
    csv_path = os.path.join(cfg.out, rundir.LOSS_CSV)
    if not resume and os.path.exists(ck_path):
        raise ValueError(f"{cfg.out} already holds a run ({rundir.CHECKPOINT}): pass --resume "
                         "to continue it, or choose another --out")
    ck = None
    if resume and os.path.exists(ck_path):   # refuse a changed config before any work
        ck = minigen.load(ck_path)
        saved = ck["config"]
        if saved != cfg.identity():
            diff = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
            raise ValueError(f"--resume: the checkpoint in {cfg.out} was made with different "
                             f"settings (checkpoint, now): {diff}")

    data = load_dataset(cfg.data, cfg.data_dir, cfg.limit, kind=fam.data_kind)
    fam.setup(data)
    n_examples = fam.num_examples()
    if family_cls.drop_last and n_examples < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {n_examples} "
                         "training examples")
    target_steps, target_epochs, budget = _targets(cfg)
    n_batches = (n_examples // cfg.batch_size if family_cls.drop_last
                 else -(-n_examples // cfg.batch_size))
    total = target_steps if target_steps is not None else (
        target_epochs * n_batches if target_epochs is not None else None)
    if cfg.lr_schedule == "cosine" and total is None:
        raise ValueError(f"{family_cls.name}: --lr-schedule cosine needs the run's length: "
                         "--steps or --epochs (not --minutes alone)")
    opts, scheds, params = {}, {}, {}
    for name, ps in fam.optimizers().items():
        params[name] = list(ps)
        opts[name] = fam.make_optimizer(name, params[name], cfg.lr)
        scheds[name] = _lr_schedule(opts[name], cfg, total)
    ema = (EMA(fam.modules()[family_cls.ema_module], decay=cfg.ema_decay, warmup=True)
           if cfg.ema_decay > 0 else None)
    rng = Generator("cpu").manual_seed(cfg.seed + 1)
    step = epoch = batch_no = 0
    seconds = 0.0
    if ck is not None:
        for name, module in fam.modules().items():
            module.load_state_dict(ck["modules"][name])
        for name in opts:
            opts[name].load_state_dict(ck["optimizers"][name])
            scheds[name].load_state_dict(ck["lr_schedulers"][name])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        rng.set_state(ck["rng"])
        fam.load_state_dict(ck.get("family") or {})
        step, epoch, batch_no = int(ck["step"]), int(ck["epoch"]), int(ck["batch"])
        seconds = float(ck["seconds"])
        log(f"resumed from {ck_path} at step {step} (epoch {epoch}, batch {batch_no})")
    elif resume:
        log(f"--resume: no checkpoint in {cfg.out}; starting fresh")
    config_json = {"family": family_cls.name, "train": cfg.to_dict(), **fam.run_config(),
                   "data": data.describe_dict() if hasattr(data, "describe_dict") else
                   {"name": cfg.data}}
    rundir.write_json(os.path.join(cfg.out, rundir.CONFIG), config_json)
    rows = rundir.read_loss_csv(csv_path, upto_step=step)   # drop rows past the checkpoint
    state = {"last_saved": step if os.path.exists(ck_path) else None}

    def checkpoint():
        minigen.save({"modules": {k: m.state_dict() for k, m in fam.modules().items()},
                      "optimizers": {k: o.state_dict() for k, o in opts.items()},
                      "lr_schedulers": {k: s.state_dict() for k, s in scheds.items()},
                      **({"ema": ema.state_dict()} if ema is not None else {}),
                      "step": step, "epoch": epoch, "batch": batch_no, "seconds": seconds,
                      "rng": rng.get_state(), "family": fam.state_dict(),
                      "config": cfg.identity(), "family_name": family_cls.name}, ck_path)
        rundir.write_loss_csv(csv_path, rows)
        state["last_saved"] = step

    def grid(name, num=None):
        if cfg.images:
            path = os.path.join(cfg.out, "samples", name)
            for m in fam.modules().values():
                m.eval()
            with no_grad():
                if ema is not None:
                    with ema.average_parameters():
                        fam.save_sample_grid(path, num, cfg.seed + SAMPLE_SEED_OFFSET)
                else:
                    fam.save_sample_grid(path, num, cfg.seed + SAMPLE_SEED_OFFSET)
            for m in fam.modules().values():
                m.train()

    log(f"{fam.describe()}; batch {cfg.batch_size}, Adam lr {cfg.lr}"
        f"{f' (warm-up {cfg.warmup})' if cfg.warmup else ''}"
        f"{f', EMA {cfg.ema_decay}' if cfg.ema_decay else ''}"
        f"{f', clip {cfg.grad_clip}' if cfg.grad_clip else ''}; "
        + " or ".join(s for s in (target_steps is not None and f"{target_steps} steps",
                                  target_epochs is not None and f"{target_epochs} epochs",
                                  budget is not None and f"{cfg.minutes} minutes") if s)
        + f", seed {cfg.seed}")

    def done():
        return ((target_steps is not None and step >= target_steps)
                or (target_epochs is not None and epoch >= target_epochs)
                or (budget is not None and seconds >= budget))

    on_cuda = cfg.device != "cpu"
    log_every = cfg.log_every or (CUDA_LOG_EVERY if on_cuda else 1)
    names = list(family_cls.step_order)
    single = names == ["model"]
    pending = []           # (step, {name: (loss, gnorm, lr)}) not yet read on the host
    last_loss = [None]

    def flush():
        """One device→host transfer of the pending losses and norms; check them."""
        if not pending:
            return
        xp_vals = [v for _, per in pending for n in names for v in per[n][:2]]
        host = _to_host(xp_vals)
        i = 0
        for s, per in pending:
            row = {"step": s}
            for n in names:
                loss_v, gn_v = float(host[i]), float(host[i + 1])
                i += 2
                sfx = "" if single else f"_{n}"
                row.update({f"loss{sfx}": loss_v, f"grad_norm{sfx}": gn_v,
                            f"lr{sfx}": per[n][2]})
                for what, v in (("loss", loss_v), ("gradient norm", gn_v)):
                    if not math.isfinite(v):
                        pending.clear()
                        raise TrainingAnomaly(_anomaly(cfg, f"{what}{'' if single else f' of {n}'}",
                                                       v, s, state, on_cuda))
            rows.append(row)
            last_loss[0] = row["loss" if single else f"loss_{names[0]}"]
        pending.clear()

    progress = Progress(cfg.progress, log, total if budget is None or total else budget,
                        step if total is not None or budget is None else 0,
                        unit="step" if total is not None or budget is None else "s")
    stop = StopOnInterrupt()
    max_norm = {n: cfg.grad_clip if cfg.grad_clip > 0 else math.inf for n in names}
    it = None
    last_time_save = time.perf_counter()
    try:
        with detect_anomaly(cfg.detect_anomaly):
            while not done():
                t0 = time.perf_counter()
                if it is None:   # epoch e's order: the permutation seeded by (seed, e)
                    it = minigen.data.batches(np.arange(n_examples), batch_size=cfg.batch_size,
                                              seed=cfg.seed, epoch=epoch, start=batch_no,
                                              drop_last=family_cls.drop_last)
                (idx,) = next(it)
                b = Batch(idx, epoch, batch_no, step, rng)
                per = {}
                for n in names:
                    loss = fam.training_step(b, n)
                    if log_every == 1:   # CPU: check before anything is updated
                        value = float(loss.item())
                        if not math.isfinite(value):
                            raise TrainingAnomaly(_anomaly(cfg, "loss", value, step + 1, state,
                                                           False))
                    opts[n].zero_grad()
                    loss.backward()
                    gnorm = clip_grad_norm_(params[n], max_norm[n])
                    if log_every == 1:
                        gv = float(gnorm.item())
                        if not math.isfinite(gv):
                            raise TrainingAnomaly(_anomaly(cfg, "gradient norm", gv, step + 1,
                                                           state, False))
                    lr = opts[n].param_groups[0]["lr"]
                    opts[n].step()
                    scheds[n].step()
                    if ema is not None and n == names[-1]:
                        ema.update()
                    per[n] = (loss.detach(), gnorm, lr)
                step, batch_no = step + 1, batch_no + 1
                pending.append((step, per))
                if step % log_every == 0:
                    flush()
                seconds += time.perf_counter() - t0
                if batch_no == n_batches:
                    epoch, batch_no, it = epoch + 1, 0, None
                    flush()
                    extra = fam.on_epoch_end(epoch)
                    if extra:
                        progress_log(progress, log, f"epoch {epoch}: " + "  ".join(
                            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in extra.items()))
                progress.update(step, seconds, last_loss[0])
                if stop.requested:
                    raise KeyboardInterrupt
                if cfg.sample_every and step % cfg.sample_every == 0 and not done():
                    grid(f"step_{step:07d}.png", fam.small_grid_size()
                         if hasattr(fam, "small_grid_size") else 16)
                if (step % cfg.checkpoint_every == 0
                        or time.perf_counter() - last_time_save >= CHECKPOINT_SECONDS):
                    flush()        # a checkpoint only after its steps were checked
                    checkpoint()
                    last_time_save = time.perf_counter()
    except KeyboardInterrupt:
        progress.close()
        if stop.requested:           # between steps: the state is consistent
            flush()
            checkpoint()
            log(f"interrupted: checkpoint saved at step {step}; continue with --resume")
        raise
    except TrainingAnomaly:
        progress.close()
        rundir.write_loss_csv(csv_path, rows)   # the losses up to the anomaly, for diagnosis
        raise
    finally:
        stop.restore()
    progress.close()
    flush()
    if state["last_saved"] != step or not os.path.exists(ck_path):
        checkpoint()
    return _finish(fam, cfg, rows, step, epoch, seconds, log, grid)


def progress_log(progress, log, line):
    (progress.log if progress.bar is not None else log)(line)


def _to_host(values) -> np.ndarray:
    """Scalars (0-d tensors, possibly on a GPU) → one float64 numpy array, one transfer."""
    if not values:
        return np.zeros(0)
    from ..backend import xp_of
    arrays = [v.data for v in values]
    xp = xp_of(arrays[0])
    stacked = xp.stack([a.astype(xp.float64).reshape(()) for a in arrays])
    return stacked.get() if hasattr(stacked, "get") else np.asarray(stacked)


def _anomaly(cfg, what, value, step, state, deferred):
    kept = (f"the last good checkpoint (step {state['last_saved']}) is kept in "
            f"{os.path.join(cfg.out, rundir.CHECKPOINT)}; continue from it with --resume "
            "(perhaps with a lower --lr or --grad-clip)" if state["last_saved"] is not None
            else "no checkpoint had been written yet")
    when = ("(found at the periodic host check, after updates; the checkpoint predates them)"
            if deferred else "(before the optimizer step, so no parameter was touched)")
    hint = "" if cfg.detect_anomaly else "; rerun with --detect-anomaly to name the op"
    return f"training stopped: the {what} became {value} at step {step} {when}; {kept}{hint}"


def _finish(fam, cfg, rows, step, epoch, seconds, log, grid):
    rundir.write_loss_csv(os.path.join(cfg.out, rundir.LOSS_CSV), rows)
    outputs = [rundir.CHECKPOINT, rundir.CONFIG, rundir.LOSS_CSV, rundir.METRICS]
    if cfg.images:
        try:
            rundir.plot_loss(rows, os.path.join(cfg.out, rundir.LOSS_PNG))
            outputs.append(rundir.LOSS_PNG)
        except ImportError:
            log('(matplotlib is not installed: no loss.png; pip install "minigen[train]")')
        grid("final.png")
        outputs.append("samples/final.png")
    key = "loss" if rows and "loss" in rows[0] else next(
        (k for k in (rows[0] if rows else {}) if k.startswith("loss")), "loss")
    tail = [r[key] for r in rows[-100:]]
    from ..autograd.grad_mode import no_grad
    with no_grad():
        extra = fam.final_metrics()
    metrics = {"family": fam.name, "steps": step, "epochs": epoch, "train_seconds": seconds,
               "steps_per_second": step / seconds if seconds > 0 else None,
               "final_loss_mean_last_100": float(np.mean(tail)) if tail else None,
               "first_loss": rows[0][key] if rows else None,
               "parameters": {k: int(sum(int(np.prod(p.shape)) for p in m.parameters()))
                              for k, m in fam.modules().items()},
               **extra, "config": cfg.to_dict()}
    path = os.path.join(cfg.out, rundir.METRICS)
    old = rundir.read_json(path) if os.path.exists(path) else {}
    for section in ("eval",):            # keep an earlier ``minigen eval`` section
        if section in old:
            metrics[section] = old[section]
    rundir.write_json(path, metrics)
    mean = metrics["final_loss_mean_last_100"]
    log(f"{step} steps in {seconds:.1f} s, mean loss of the last {len(tail)} steps "
        f"{float('nan') if mean is None else mean:.4f}; wrote {cfg.out}/{{"
        f"{', '.join(outputs)}}}")
    return metrics
