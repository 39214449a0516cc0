"""E4 (BENCH.md): DDIM sampling, 50 steps, batch 64, classifier-free guidance, minigen vs PyTorch.

The workload: the E2 UNet with class conditioning (``UNet.e2(num_classes=10)``, null class 10),
x_T ~ N(0, I) of shape 64×1×28×28, DDIM η = 0 over τ = 980, 960, ..., 0 (diffusers' "leading"
spacing), guidance w = 3: per step ONE model call on the batch [x_t; x_t] (128 images) with
labels [y; ∅], then ε̄ = (1 + w) ε_c − w ε_u and the DDIM update (MATH.md §7–8).

    minigen   ``minigen.diffusion.sample(model, DDIMScheduler(), ...)``: the step is one fused
              kernel (``mg.ddim_step`` with the CFG combine inside it)
    torch     the same loop written in PyTorch eager (``torch_ddim_cfg`` below) on the twin UNet
              (``benchmarks/torch_unet.py``) with minigen's weights copied in, from the same x_T

Work: the model dominates, 50 forwards at batch 128: 50 · forward_flops(128) (bench_e2_unet:
257.6 MFLOP per image) = 1.65 TFLOP per sampling run; the DDIM step moves 5 arrays of 64·784
float32 per step (1 MB), noise beside it. Reported: seconds per run, images/s, ms per step, and
the scheduler step alone (``DDIMScheduler.step`` on a batch of 64 with CFG, without the model).

    python benchmarks/bench_e4_sampling.py [--repeats 2] [--steps 50] [--batch 64] [--json F]
        [--device cuda]   # on a GPU: minigen (CuPy) vs PyTorch eager, and the loop run under
                          # cupyx.allow_synchronize(False): any host synchronisation inside
                          # the 50 steps raises; plus host-enqueue time vs GPU time per run
"""
from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, finish, measure, pin_threads, start,
                     try_import_torch)  # noqa: E402

NUM_CLASSES = 10


def torch_ddim_cfg(torch, model, x, y, timesteps, alphas_cumprod, w, clip=1.0):
    """DDIM η = 0 with CFG in PyTorch eager: the twin of minigen.diffusion.sample."""
    n = x.shape[0]
    y2 = torch.cat([y, torch.full_like(y, NUM_CLASSES)])
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            ab = float(alphas_cumprod[t])
            ab_p = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
            tb = torch.full((2 * n,), t, dtype=torch.long, device=x.device)
            out = model(torch.cat([x, x]), tb, y2)
            eps = (1 + w) * out[:n] - w * out[n:]
            x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-clip, clip)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            x = math.sqrt(ab_p) * x0 + math.sqrt(1 - ab_p) * eps
    return x


def run(args, report: Report):
    import numpy as np
    import minigen as mg
    from minigen.diffusion import DDIMScheduler, sample
    from minigen.models import UNet
    from bench_e2_unet import forward_flops

    dev, n, steps, w = args.device, args.batch, args.steps, args.guidance
    model = UNet.e2(num_classes=NUM_CLASSES, generator=mg.Generator().manual_seed(0))
    print(f"E2 UNet + {NUM_CLASSES} classes: {model.num_parameters():,} parameters; batch {n}, "
          f"DDIM {steps} steps, η = 0, CFG w = {w} (model batch {2 * n})")
    cpu_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    if dev == "cuda":
        model.to("cuda")
    sched = DDIMScheduler()
    labels = np.arange(n) % NUM_CLASSES
    y = mg.tensor(labels, device=dev)
    sync = None
    if dev == "cuda":
        import cupy
        sync = cupy.cuda.Device().synchronize

    last = {}

    def mg_run(seed=0, num_inference_steps=steps):
        last["minigen"] = sample(model, sched, (n, 1, 28, 28),
                                 num_inference_steps=num_inference_steps,
                                 class_labels=y, guidance_scale=w,
                                 generator=mg.Generator(dev).manual_seed(seed), device=dev)

    flops = steps * forward_flops(2 * n)
    name = f"E4 DDIM {steps} steps, CFG, batch {n}"
    # CPU: no untimed warm-up (a run is 50 steps of the same work; the first includes one-time
    # loading, see the min–max). GPU: one warm-up run (Triton compiles on first use).
    warm = 1 if dev == "cuda" else 0
    tm = measure(mg_run, warmup=warm, repeats=args.repeats, number=1, sync=sync)
    report.add(tm, name=name, provider="minigen", flops=flops, images_per_s=n / tm.median,
               ms_per_step=1e3 * tm.median / steps)
    x_mg = last["minigen"]

    # the scheduler step alone (no model): fused CFG combine + DDIM update, batch n
    sched.set_timesteps(steps, device=dev)
    xt = mg.randn(n, 1, 28, 28, device=dev)
    both = mg.randn(2 * n, 1, 28, 28, device=dev)
    t0 = sched.timesteps[1]
    ts = measure(lambda: sched.step(both, t0, xt, guidance_scale=w), warmup=3,
                 repeats=15, sync=sync)
    report.add(ts, name=f"DDIMScheduler.step + CFG combine, batch {n}", provider="minigen",
               bytes=5.0 * n * 784 * 4)   # read ε_c, ε_u, x_t; write x_{t'}, x̂_0 (float32)

    if dev == "cuda":
        no_sync_check(mg, mg_run, sync, steps)

    torch = None if args.no_torch else try_import_torch()
    if torch is None:
        print("PyTorch not importable: minigen throughput only")
        return
    from torch_unet import TorchUNet, copy_from_minigen
    tmodel = TorchUNet(**model.config)
    cpu_model = UNet.e2(num_classes=NUM_CLASSES)
    cpu_model.load_state_dict(cpu_state)
    copy_from_minigen(tmodel, cpu_model)
    tdev = torch.device(dev)
    tmodel.to(tdev).eval()
    # = sample's x_T: the first draw of the same seeded generator on the same device
    xT = mg.randn(n, 1, 28, 28, generator=mg.Generator(dev).manual_seed(0), device=dev)
    tx = torch.from_numpy(xT.to("cpu").numpy()).to(tdev)
    ty = torch.from_numpy(labels).to(tdev)
    tsteps = sched.timesteps.to("cpu").numpy().tolist()          # host ints for PyTorch
    ab = sched.schedule.alphas_cumprod

    def t_run():
        last["torch"] = torch_ddim_cfg(torch, tmodel, tx, ty, tsteps, ab, w)
    tsync = torch.cuda.synchronize if dev == "cuda" else None
    tm = measure(t_run, warmup=warm, repeats=args.repeats, number=1, sync=tsync)
    report.add(tm, name=name, provider="torch", flops=flops, images_per_s=n / tm.median,
               ms_per_step=1e3 * tm.median / steps)
    report.add_ratios("minigen", "torch")
    x_t = last["torch"]
    got = x_mg.to("cpu").numpy()
    diff = np.abs(got - x_t.cpu().numpy()).max()
    print(f"twin check: same weights, same x_T, {steps} steps: max |minigen − torch| = "
          f"{diff:.2e} (sample range ±{np.abs(got).max():.2f})")


def no_sync_check(mg, mg_run, sync, steps):
    """On a GPU: (1) the whole sampling run under cupyx.allow_synchronize(False), which raises
    at any implicit device→host synchronisation CuPy performs; (2) the time the host needs to
    enqueue a run vs the time until the GPU has finished it: a loop that waited on the device
    each step would take as long to enqueue as to run."""
    import cupyx
    sync()
    try:
        with cupyx.allow_synchronize(False):
            t0 = time.perf_counter()
            mg_run(1, None)     # timesteps already on the GPU: set_timesteps stays outside
            enqueue = time.perf_counter() - t0
        sync()
        total = time.perf_counter() - t0
        print(f"✓ {steps} sampling steps ran under cupyx.allow_synchronize(False): no host "
              f"synchronisation; host enqueue {1e3 * enqueue:.1f} ms vs GPU done after "
              f"{1e3 * total:.1f} ms")
    except Exception as exc:         # DeviceSynchronized: say where
        print(f"✗ host synchronisation inside the sampling loop: {type(exc).__name__}: {exc}")
        raise


def main():
    p = common_args(__doc__.splitlines()[0])
    p.set_defaults(repeats=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report(f"E4 DDIM sampling with CFG, {args.device}, float32", threads=threads)
    start(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
