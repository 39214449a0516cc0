"""E2 / E3 (BENCH.md): the DDPM UNet's training step and forward, minigen vs its PyTorch twin.

E2 step = zero_grad, x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (linear schedule, T = 1000), ε-prediction
MSE, backward, Adam (lr 2e-4); batch 64 of 1×28×28. E3 = the same UNet's forward without
gradients (one sampling step's model call), batch 64. Both models start from the same weights
(minigen's ``UNet.e2`` seeded, copied into ``benchmarks/torch_unet.py``'s twin) and see the same
fixed (x0, t, ε), so they do the same arithmetic; the first steps' losses are compared.

Work per forward at batch N (convolutions + attention; GroupNorm, SiLU, adds are O(N·C·H·W)):
``forward_flops`` below, 2·N·Σ C_in·C_out·k²·H_out·W_out over the 23 convs plus the two
attention matmuls 2·(2·N·49²·64): 257.6 MFLOP per image, 16.49 GFLOP at N = 64. A training
step counts 3× the forward (dx and dW each cost one forward), which slightly over-counts
(conv_in needs no dx).

    python benchmarks/bench_e2_unet.py [--threads N] [--json FILE] [--wait-quiet S]
        [--profile]           # per-op forward/backward time of minigen's E2 step + cProfile
        [--profile-forward]   # per-op time of minigen's E3 forward
        [--device cuda]       # on a GPU: minigen (CuPy) vs PyTorch eager, fp32
        [--native-threads 1]  # minigen's OpenMP kernels single-threaded (see below)

Threads: on the 2-core machine an OpenMP parallel region of minigen's kernels (im2col,
col2im, ...) started right after a numpy BLAS call competes with OpenBLAS's worker threads,
which spin for a while after each call. Measured on the E2 step (2026-11-21, 2 threads):
4.2 s/step with an early conv2d version vs 0.70 s with ``--native-threads 1``; with the
later one 0.84 s vs 0.53 s. Report both settings.
"""
from __future__ import annotations

import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, cpu_ceilings, finish, measure, pin_threads,
                     start, try_import_torch)  # noqa: E402

BATCH = 64
T = 1000
# (C_in, C_out, k, H_out) of every conv of E2, in forward order (BENCH.md's description)
E2_CONVS = [(1, 32, 3, 28),                                      # conv_in
            (32, 32, 3, 28), (32, 32, 3, 28),                    # ResBlock(32→32)
            (32, 32, 3, 14),                                     # downsample
            (32, 64, 3, 14), (64, 64, 3, 14), (32, 64, 1, 14),   # ResBlock(32→64)
            (64, 64, 3, 7),                                      # downsample
            (64, 64, 3, 7), (64, 64, 3, 7),                      # mid ResBlock
            (64, 192, 1, 7), (64, 64, 1, 7),                     # attention qkv, proj_out
            (64, 64, 3, 7), (64, 64, 3, 7),                      # mid ResBlock
            (64, 64, 3, 14),                                     # upsample conv
            (128, 64, 3, 14), (64, 64, 3, 14), (128, 64, 1, 14),  # ResBlock(128→64)
            (64, 64, 3, 28),                                     # upsample conv
            (96, 32, 3, 28), (32, 32, 3, 28), (96, 32, 1, 28),   # ResBlock(96→32)
            (32, 1, 3, 28)]                                      # conv_out


def forward_flops(n: int = BATCH) -> float:
    conv = sum(2 * n * ci * co * k * k * h * h for ci, co, k, h in E2_CONVS)
    attn = 2 * (2 * n * 49 * 49 * 64)          # q kᵀ and P v, one head of d = 64
    return float(conv + attn)


def make_inputs(n: int = BATCH, seed: int = 0):
    """x0 in [−1, 1] (MNIST subset when installed), t ~ U{0..T−1}, ε ~ N(0, I); numpy."""
    import numpy as np
    rng = np.random.default_rng(seed)
    try:
        from minigen.data import load_mnist_subset
        images, _ = load_mnist_subset()
        x0 = images[rng.permutation(len(images))[:n]].reshape(n, 1, 28, 28) / 127.5 - 1.0
        source = "MNIST subset, scaled to [-1, 1]"
    except (FileNotFoundError, ImportError):
        x0 = rng.random((n, 1, 28, 28)) * 2 - 1
        source = "random images in [-1, 1] (MNIST subset not installed)"
    t = rng.integers(0, T, size=n)
    noise = rng.standard_normal((n, 1, 28, 28))
    ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    x_t = np.sqrt(ab[t]).reshape(n, 1, 1, 1) * x0 + np.sqrt(1 - ab[t]).reshape(n, 1, 1, 1) * noise
    f32 = np.float32
    return x0.astype(f32), t, noise.astype(f32), x_t.astype(f32), source


class MinigenE2Step:
    """zero_grad, q_sample, forward, MSE, backward, Adam (the twin of torch_unet.E2Step)."""

    def __init__(self, model, device, lr: float = 2e-4):
        import numpy as np
        import minigen as mg
        self.mg, self.model = mg, model
        self.opt = mg.optim.Adam(model.parameters(), lr=lr)
        ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
        self.sqrt_ab = mg.tensor(np.sqrt(ab).astype(np.float32), device=device)
        self.sqrt_1mab = mg.tensor(np.sqrt(1.0 - ab).astype(np.float32), device=device)

    def loss(self, x0, t, noise):
        n = x0.shape[0]
        x_t = self.sqrt_ab[t].reshape(n, 1, 1, 1) * x0 + \
            self.sqrt_1mab[t].reshape(n, 1, 1, 1) * noise
        return self.mg.nn.functional.mse_loss(self.model(x_t, t), noise)

    def __call__(self, x0, t, noise):
        self.opt.zero_grad()
        loss = self.loss(x0, t, noise)
        loss.backward()
        self.opt.step()
        return loss


def run(args, report: Report):
    import minigen as mg
    from minigen.models import UNet

    dev = args.device
    if args.native_threads:
        from minigen import _native
        _native.module().set_num_threads(args.native_threads)
        print(f"minigen's OpenMP kernels: {args.native_threads} thread(s) "
              f"(numpy's BLAS: {args.threads or 'all cores'})")
    x0_np, t_np, noise_np, xt_np, source = make_inputs(args.batch)
    print(f"inputs: {source}; batch {args.batch}; fixed t and ε shared by both")
    model = UNet.e2(generator=mg.Generator().manual_seed(0))
    print(f"E2 UNet: {model.num_parameters():,} parameters")
    if dev == "cuda":
        model.to("cuda")
    x0, noise, xt = (mg.tensor(a, device=dev) for a in (x0_np, noise_np, xt_np))
    t = mg.tensor(t_np, device=dev)
    mg_step = MinigenE2Step(model, dev)
    mg_sync = None
    if dev == "cuda":
        import cupy
        mg_sync = cupy.cuda.Device().synchronize

    def mg_fwd():
        with mg.no_grad():
            model(xt, t)

    torch = None if args.no_torch else try_import_torch()
    twins = {}
    t_sync = None
    if torch is not None:
        from torch_unet import E2Step, TorchUNet, copy_from_minigen, e3_forward
        tmodel = TorchUNet(**model.config)
        model_cpu = UNet.e2()
        model_cpu.load_state_dict({k: v.detach().cpu().numpy() for k, v in
                                   model.state_dict().items()})
        copy_from_minigen(tmodel, model_cpu)
        tdev = torch.device(dev)
        tmodel.to(tdev)
        tx0, tnoise, txt = (torch.from_numpy(a).to(tdev) for a in (x0_np, noise_np, xt_np))
        tt = torch.from_numpy(t_np).to(tdev)
        t_step = E2Step(tmodel)
        t_step.sqrt_ab, t_step.sqrt_1mab = t_step.sqrt_ab.to(tdev), t_step.sqrt_1mab.to(tdev)
        if dev == "cuda":
            t_sync = torch.cuda.synchronize
        # the twins agree: same weights, same inputs → same losses over a few Adam steps
        diffs = []
        for _ in range(3):
            a = float(mg_step(x0, t, noise).item())
            b = float(t_step(tx0, tt, tnoise).item())
            diffs.append(abs(a - b) / abs(b))
        print(f"twin check, first 3 steps: minigen {a!r} vs torch {b!r} "
              f"(max relative difference {max(diffs):.2e})")
        twins = {"step": lambda: t_step(tx0, tt, tnoise), "fwd": lambda: e3_forward(tmodel, txt,
                                                                                    tt)}

    f = forward_flops(args.batch)
    work = [(f"E2 train step (fwd+bwd+Adam), batch {args.batch}", 3 * f,
             lambda: mg_step(x0, t, noise), "step"),
            (f"E3 forward (no grad), batch {args.batch}", f, mg_fwd, "fwd")]
    # Every minigen row first, then every PyTorch row (each library's rows together). Note:
    # with PyTorch loaded and run in the same process (the twin check), minigen's rows come
    # out 1.5× slower than with --no-torch on the 2-core machine (E2 step 745 vs 495 ms, E3
    # 260 vs 162 ms in one pair of runs; cause not pinned down: the shared OpenMP runtime is
    # PyTorch's spinning one, see harness.pin_threads). RESULTS.md reports both.
    timed = []
    for name, flops, fn, key in ([] if args.profile_only else work):
        timed.append((name, flops, "minigen", measure(fn, warmup=3, repeats=args.repeats,
                                                      sync=mg_sync)))
    for name, flops, fn, key in ([] if args.profile_only else work):
        if key in twins:
            timed.append((name, flops, "torch",
                          measure(twins[key], warmup=3, repeats=args.repeats,
                                  number=1 if dev == "cpu" else None, sync=t_sync)))
    for name, flops, provider, tm in sorted(timed, key=lambda r: [w[0] for w in work].index(
            r[0])):
        report.add(tm, name=name, provider=provider, flops=flops)
    report.add_ratios("minigen", "torch")
    if args.profile_forward:
        profile(mg_fwd, (), args.profile_steps, mg_sync, by_shape=True, label="E3 forward")
    if args.profile or (args.profile_only and not args.profile_forward):
        profile(mg_step, (x0, t, noise), args.profile_steps, mg_sync)
        profile(mg_step, (x0, t, noise), args.profile_steps, mg_sync, by_shape=True)
        if torch is not None:
            torch_profile(torch, t_step, (tx0, tt, tnoise), args.profile_steps)


# ---------------------------------------------------------------------- where the time goes
def _all_functions():
    from minigen.autograd.function import Function
    seen, stack = set(), [Function]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return seen


def _detail(name, args):
    """A primitive's name, with the geometry for convolutions (C_in→C_out kernel stride H×W)."""
    if name == "Conv2dFn":
        x, w, stride = args[0], args[1], args[3]
        return (f"conv {w.shape[1]}→{w.shape[0]} {w.shape[2]}×{w.shape[3]}"
                f"{' s' + str(stride[0]) if stride[0] > 1 else ''} @{x.shape[2]}×{x.shape[3]}")
    return name


def profile(step, step_args, steps: int, sync=None, by_shape=False, label="E2 step"):
    """Per-primitive forward/backward wall time over ``steps`` minigen E2 steps (every
    Function's forward/backward wrapped with a timer), the optimizer's share, then cProfile.
    by_shape: convolutions broken down by geometry."""
    import cProfile
    import pstats
    totals = defaultdict(float)
    counts = defaultdict(int)
    originals = []

    def timed(cls, kind, fn):
        def wrapper(self, *a, **kw):
            if kind == "forward":
                self._bench_key = _detail(cls.__name__, a) if by_shape else cls.__name__
            key = (getattr(self, "_bench_key", cls.__name__), kind)
            t0 = time.perf_counter()
            out = fn(self, *a, **kw)
            totals[key] += time.perf_counter() - t0
            counts[key] += 1
            return out
        return wrapper

    for cls in _all_functions():
        for kind in ("forward", "backward"):
            if kind in cls.__dict__:
                originals.append((cls, kind, cls.__dict__[kind]))
                setattr(cls, kind, timed(cls, kind, cls.__dict__[kind]))
    opt = getattr(step, "opt", None)    # None: a forward without an optimizer (E3)
    opt_step = opt.step if opt is not None else None
    opt_time = [0.0]

    def timed_opt_step(*a, **kw):
        t0 = time.perf_counter()
        out = opt_step(*a, **kw)
        opt_time[0] += time.perf_counter() - t0
        return out
    if opt is not None:
        opt.step = timed_opt_step
    try:
        step(*step_args)
        totals.clear(), counts.clear()
        opt_time[0] = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            step(*step_args)
        if sync:
            sync()
        wall = time.perf_counter() - t0
    finally:
        for cls, kind, fn in originals:
            setattr(cls, kind, fn)
        if opt is not None:
            opt.step = opt_step
    kernel_total = sum(totals.values())
    print(f"\nper-primitive time of {steps} minigen {label}s: {1e3 * wall / steps:.1f} ms/step "
          f"wall; primitives {100 * kernel_total / wall:.1f}%, Adam step "
          f"{100 * opt_time[0] / wall:.2f}%, the rest (graph, Python, allocation) "
          f"{100 * (wall - kernel_total - opt_time[0]) / wall:.1f}%")
    print(f"{'primitive':<30}{'pass':<10}{'calls/step':>11}{'ms/step':>10}{'% of step':>11}")
    for (name, kind), s in sorted(totals.items(), key=lambda kv: -kv[1]):
        if 100 * s / wall < 0.05:
            continue
        print(f"{name:<30}{kind:<10}{counts[(name, kind)] / steps:>11.0f}"
              f"{1e3 * s / steps:>10.2f}{100 * s / wall:>10.1f}%")
    if by_shape:
        return
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step(*step_args)
    prof.disable()
    print(f"\ncProfile of {steps} minigen E2 steps (top 30 by internal time):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def torch_profile(torch, step, step_args, steps: int):
    """The twin's step under torch.profiler: self CPU time per aten op (for comparison)."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    step(*step_args)
    with tprofile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(steps):
            step(*step_args)
    print(f"\ntorch.profiler of {steps} PyTorch E2 steps (self CPU time, top 20):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--profile", action="store_true",
                   help="per-primitive timing and cProfile of minigen's E2 step")
    p.add_argument("--profile-only", action="store_true", help="--profile without the timings")
    p.add_argument("--profile-forward", action="store_true",
                   help="per-primitive time of the E3 forward (with --profile-only: alone)")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--native-threads", type=int, default=None,
                   help="threads of minigen's own OpenMP kernels (default: as --threads); 1 "
                        "keeps them from competing with OpenBLAS's spinning threads")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report(f"E2/E3 DDPM UNet, {args.device}, float32", threads=threads)
    start(report, args)
    if args.device == "cpu":
        cpu_ceilings(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
