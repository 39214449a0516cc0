"""The harness's per-step overhead: ``fit`` (minigen/harness/loop.py) against a bare loop doing
the same arithmetic, in one process, for E1 (the VAE, batch 128) and E2 (the DDPM UNet, batch
64) on MNIST (the 8×8 digits when the MNIST subset is not installed).

The bare loop is what the harness does per step without its bookkeeping: the family's
training_step, zero_grad, backward, clip_grad_norm_, Adam, the LR schedule, EMA. The harness adds
the batch order, the Batch record, the per-step loss/norm read and check, the loss rows and
the progress update. Runs alternate (bare, harness, bare, harness, …) and the medians of the
per-step times are compared: ratio = harness / bare (1.00 = no measurable overhead).

    python benchmarks/bench_harness.py [--steps N] [--repeats R] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np


def _bare(family_cls, cfg, steps):
    """ms per step of the bare loop on the family's own networks and data."""
    import minigen
    from minigen.data import load_dataset
    from minigen.harness.family import Batch
    from minigen.optim import EMA, clip_grad_norm_
    from minigen.random import Generator
    fam = family_cls(cfg, log=lambda *a: None)
    fam.setup(load_dataset(cfg.data, cfg.data_dir, cfg.limit))
    params = list(fam.optimizers()["model"])
    opt = minigen.optim.Adam(params, lr=cfg.lr)
    sched = minigen.optim.lr_scheduler.LinearLR(opt, 1.0 / (cfg.warmup + 1), 1.0,
                                                max(cfg.warmup, 1))
    ema = EMA(fam.model, cfg.ema_decay, warmup=True) if cfg.ema_decay else None
    rng = Generator("cpu").manual_seed(cfg.seed + 1)
    n = fam.num_examples()
    order = np.random.default_rng(0).permutation(n)
    clip = cfg.grad_clip or math.inf
    times = []
    for s in range(steps):
        idx = order[(s * cfg.batch_size) % (n - cfg.batch_size):][:cfg.batch_size]
        t0 = time.perf_counter()
        loss = fam.training_step(Batch(idx, 0, s, s, rng), "model")
        float(loss.item())
        opt.zero_grad()
        loss.backward()
        float(clip_grad_norm_(params, clip).item())
        opt.step()
        sched.step()
        if ema is not None:
            ema.update()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.mean(times))   # the mean, like fit's train_seconds / steps


def _harness(family_cls, cfg, steps):
    """ms per step of fit(): its training seconds (steps only, no grids) over its steps."""
    from minigen.harness import fit
    with tempfile.TemporaryDirectory() as d:
        m = fit(family_cls, cfg.replace(steps=steps, out=os.path.join(d, "run")),
                log=lambda *a: None)
    return 1e3 * m["train_seconds"] / m["steps"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from minigen.diffusion.family import DDPMConfig, DDPMFamily
    from minigen.vae import VAEConfig, VAEFamily
    try:
        from minigen.data import load_mnist_subset
        load_mnist_subset()
        data = "mnist"
    except Exception:
        data = "digits"
    common = dict(data=data, images=False, progress=False, checkpoint_every=10 ** 9,
                  sample_every=0)
    workloads = {"E1 vae": (VAEFamily, VAEConfig(**common)),
                 "E2 ddpm": (DDPMFamily, DDPMConfig(**common, preset="e2"))}
    results = {}
    for name, (cls, cfg) in workloads.items():
        bare, harn = [], []
        for _ in range(args.repeats):
            bare.append(_bare(cls, cfg, args.steps))
            harn.append(_harness(cls, cfg, args.steps))
        b, h = float(np.median(bare)), float(np.median(harn))
        results[name] = {"bare_ms": b, "harness_ms": h, "ratio": h / b, "bare_all": bare,
                         "harness_all": harn}
        print(f"{name} ({data}): bare {b:7.2f} ms/step, harness {h:7.2f} ms/step, "
              f"ratio {h / b:.3f}  (medians of {args.repeats} runs of {args.steps} steps)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": args.steps, "repeats": args.repeats, "data": data,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
