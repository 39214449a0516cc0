"""K5: fused noise-schedule ops (BENCH.md) against the same math as separate numpy / PyTorch ops.

Workloads (per-sample t drawn over the whole schedule, T = 1000 linear; float32):
    q_sample         x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε         read x0, ε; write x_t         12 B/elt
    ddpm step        x_{t−1} = μ̃(x̂_0(ε), x_t) + σ_t z   read x_t, ε, z; write out      16 B/elt
    ddim step (η=0)  x_{t'} = √ᾱ' x̂_0 + √(1−ᾱ') ε     read x_t, ε; write out         12 B/elt
    cfg + ddim step  ε̄ = (1+w) ε_c − w ε_u, then DDIM  read x_t, ε_c, ε_u; write out  16 B/elt
(bytes for float32; halve them for float16/bfloat16). The minigen rows call the public ops
(``minigen.q_sample``, ``minigen.ddpm_step``, ...) on Tensors, per-call overhead included;
"numpy" and "torch" rows write the same equations as separate array ops, gathering the
per-sample coefficients from the schedule each call, as a hand-written sampler would.

GB/s counts the bytes the op must move (above); "% ceiling" divides by the copy bandwidth
measured at the start (256 MB copy: DRAM). At 128×3×32×32 one array is 1.5 MB, so the
working set sits in the L2/L3 caches; the run also measures an in-cache copy of that size
("copy <size>" rows) so the percentage can be read against both.

    python benchmarks/bench_noise_schedule.py [--threads N] [--json FILE] [--wait-quiet S]
    python benchmarks/bench_noise_schedule.py --device cuda   # 256×3×256×256, fp32/fp16
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, measure, pin_threads, start,  # noqa: E402
                     try_import_torch)

CPU_SIZES = [(128, 3, 32, 32), (256, 3, 64, 64)]
GPU_SIZES = [(256, 3, 256, 256)]
W = 3.0          # guidance scale (MATH.md's w)
OPS = [("q_sample", 3), ("ddpm step", 4), ("ddim step", 3), ("cfg+ddim step", 4)]  # streams


def _name(op, shape, dtype):
    return f"{op} {'×'.join(map(str, shape))} {dtype}"


def run_minigen(report, mg, shape, dtype_name, device, sync, args, impl=None):
    """The public ops on Tensors; returns {op: median seconds}."""
    import numpy as np
    from minigen import dispatch
    from minigen.schedules import NoiseSchedule

    sched = NoiseSchedule(1000, "linear")
    dt = getattr(mg, dtype_name)
    g = mg.Generator(device).manual_seed(0)
    N = shape[0]
    x, eps, z = (mg.randn(*shape, generator=g, device=device).to(dt) for _ in range(3))
    both = mg.randn(2 * N, *shape[1:], generator=g, device=device).to(dt)
    rng = np.random.default_rng(0)
    t_np = rng.integers(1, 1000, N)
    t = mg.tensor(t_np, device=device)
    tp = mg.tensor(np.maximum(t_np - 20, -1), device=device)
    fns = {"q_sample": lambda: mg.q_sample(sched, x, t, eps),
           "ddpm step": lambda: mg.ddpm_step(sched, eps, t, x, z),
           "ddim step": lambda: mg.ddim_step(sched, eps, t, tp, x),
           "cfg+ddim step": lambda: mg.ddim_step(sched, both, t, tp, x, guidance_scale=W)}
    with dispatch.use(noise_schedule=impl) if impl else _null():
        provider = f"minigen ({impl or dispatch.active('noise_schedule', device)})"
        out = {}
        for op, streams in OPS:
            tm = measure(fns[op], warmup=3, repeats=args.repeats, sync=sync)
            out[op] = report.add(tm, name=_name(op, shape, dtype_name), provider=provider,
                                 bytes=streams * x.data.nbytes)
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def run_numpy(report, shape, args):
    import numpy as np
    from minigen.schedules import NoiseSchedule

    s = NoiseSchedule(1000, "linear")
    rng = np.random.default_rng(0)
    N = shape[0]
    x, eps, z, ec, eu = (rng.standard_normal(shape, dtype=np.float32) for _ in range(5))
    t = rng.integers(1, 1000, N)
    tp = np.maximum(t - 20, -1)
    ab = s.alphas_cumprod
    col = lambda v: v.astype(np.float32).reshape(-1, 1, 1, 1)  # noqa: E731

    def q_sample():
        return col(np.sqrt(ab[t])) * x + col(np.sqrt(1 - ab[t])) * eps

    def ddpm():
        x0 = (x - col(np.sqrt(1 - ab[t])) * eps) / col(np.sqrt(ab[t]))
        mean = col(s.posterior_mean_coef1[t]) * x0 + col(s.posterior_mean_coef2[t]) * x
        return mean + col(np.sqrt(s.posterior_variance[t])) * z

    def ddim(e):
        ab_p = np.where(tp >= 0, ab[np.maximum(tp, 0)], 1.0)
        x0 = (x - col(np.sqrt(1 - ab[t])) * e) / col(np.sqrt(ab[t]))
        return col(np.sqrt(ab_p)) * x0 + col(np.sqrt(1 - ab_p)) * e

    fns = {"q_sample": q_sample, "ddpm step": ddpm, "ddim step": lambda: ddim(eps),
           "cfg+ddim step": lambda: ddim((1 + W) * ec - W * eu)}
    for op, streams in OPS:
        tm = measure(fns[op], warmup=3, repeats=args.repeats)
        report.add(tm, name=_name(op, shape, "float32"), provider="numpy",
                   bytes=streams * x.nbytes)


def run_torch(report, torch, shape, dtype_name, device, args):
    from minigen.schedules import NoiseSchedule

    s = NoiseSchedule(1000, "linear")
    dt = getattr(torch, dtype_name)
    g = torch.Generator(device=device).manual_seed(0)
    N = shape[0]
    x, eps, z = (torch.randn(shape, generator=g, device=device).to(dt) for _ in range(3))
    both = torch.randn((2 * N,) + tuple(shape[1:]), generator=g, device=device).to(dt)
    t = torch.randint(1, 1000, (N,), generator=g, device=device)
    tp = (t - 20).clamp(min=-1)
    ab = torch.tensor(s.alphas_cumprod, device=device, dtype=torch.float32)
    c1 = torch.tensor(s.posterior_mean_coef1, device=device, dtype=torch.float32)
    c2 = torch.tensor(s.posterior_mean_coef2, device=device, dtype=torch.float32)
    pv = torch.tensor(s.posterior_variance, device=device, dtype=torch.float32)
    one = torch.ones((), device=device)
    col = lambda v: v.to(dt).view(-1, 1, 1, 1)  # noqa: E731

    def q_sample():
        a = ab[t]
        return col(a.sqrt()) * x + col((1 - a).sqrt()) * eps

    def ddpm():
        a = ab[t]
        x0 = (x - col((1 - a).sqrt()) * eps) / col(a.sqrt())
        return col(c1[t]) * x0 + col(c2[t]) * x + col(pv[t].sqrt()) * z

    def ddim(e):
        a = ab[t]
        a_p = torch.where(tp >= 0, ab[tp.clamp(min=0)], one)
        x0 = (x - col((1 - a).sqrt()) * e) / col(a.sqrt())
        return col(a_p.sqrt()) * x0 + col((1 - a_p).sqrt()) * e

    def cfg():
        ec, eu = both.chunk(2)
        return ddim((1 + W) * ec - W * eu)

    sync = torch.cuda.synchronize if device == "cuda" else None
    fns = {"q_sample": q_sample, "ddpm step": ddpm, "ddim step": lambda: ddim(eps),
           "cfg+ddim step": cfg}
    for op, streams in OPS:
        with torch.no_grad():
            tm = measure(fns[op], warmup=3, repeats=args.repeats, sync=sync)
        report.add(tm, name=_name(op, shape, dtype_name), provider="torch",
                   bytes=streams * x.numel() * x.element_size())


def copy_rows(report, shape, args, device="cpu"):
    """In-cache (CPU) / device (GPU) copy of one array of this size: the bandwidth a one-pass
    kernel on this working set can hope for."""
    import numpy as np
    n = int(np.prod(shape))
    if device == "cpu":
        src = np.ones(n, np.float32)
        dst = np.empty_like(src)
        tm = measure(lambda: np.copyto(dst, src), warmup=3, repeats=args.repeats)
    else:
        import cupy as cp
        src = cp.ones(n, cp.float32)
        dst = cp.empty_like(src)
        tm = measure(lambda: dst.__setitem__(Ellipsis, src), warmup=3, repeats=args.repeats,
                     sync=cp.cuda.Device().synchronize)
    return report.add(tm, name=f"copy {'×'.join(map(str, shape))} float32", provider="numpy"
                      if device == "cpu" else "cupy", bytes=2 * src.nbytes)


def summarize(report):
    """Per workload: speedup of minigen's default implementation over numpy and torch."""
    by = {}
    for r in report.rows:
        by.setdefault(r["name"], {})[r["provider"]] = r
    lines = ["", "speedups (time of the separate-ops version / minigen's fused op):"]
    for name, rows in by.items():
        mg_row = next((r for p, r in rows.items() if p.startswith("minigen (native")
                       or p.startswith("minigen (triton")), None)
        if mg_row is None:
            continue
        parts = []
        for base, key in (("numpy", "numpy"), ("torch", "torch"),
                          ("minigen (reference)", "reference")):
            if base in rows:
                sp = rows[base]["median_s"] / mg_row["median_s"]
                mg_row[f"speedup_vs_{key}"] = sp
                parts.append(f"{sp:.2f}× vs {base}")
        pct = f", {mg_row['pct_ceiling']:.0f}% of copy ceiling" if "pct_ceiling" in mg_row else ""
        lines.append(f"  {name}: " + ", ".join(parts) + pct)
    print("\n".join(lines))


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sizes", default=None,
                   help="comma-separated N×C×H×W list, e.g. 128x3x32x32,256x3x64x64")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    import minigen as mg                         # before torch (OpenMP wait policy)
    torch = None if args.no_torch else try_import_torch()
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    else:
        sizes = CPU_SIZES if args.device == "cpu" else GPU_SIZES
    report = Report(f"K5 noise-schedule ops ({args.device})", threads=threads)
    start(report, args)
    if args.device == "cpu":
        if not args.no_ceilings:
            from ceilings import measure_ceilings
            report.ceilings = measure_ceilings(None, use_torch=torch is not None)
            print(f"ceilings: copy {report.ceilings['copy_gbps']:.1f} GB/s (256 MB)")
        for shape in sizes:
            copy_rows(report, shape, args)
            run_minigen(report, mg, shape, "float32", "cpu", None, args)
            run_minigen(report, mg, shape, "float32", "cpu", None, args, impl="reference")
            run_numpy(report, shape, args)
            if torch is not None:
                run_torch(report, torch, shape, "float32", "cpu", args)
    else:
        import cupy as cp
        sync = cp.cuda.Device().synchronize
        big = cp.ones(2 ** 28, cp.float32)           # 1 GiB: the device copy ceiling
        dst = cp.empty_like(big)
        tm = measure(lambda: dst.__setitem__(Ellipsis, big), warmup=3, repeats=args.repeats,
                     sync=sync)
        report.ceilings = {"copy_gbps": 2 * big.nbytes / tm.median / 1e9}
        report.add(tm, name="copy 1 GiB float32", provider="cupy", bytes=2 * big.nbytes)
        del big, dst
        print(f"ceilings: device copy {report.ceilings['copy_gbps']:.0f} GB/s")
        for shape in sizes:
            copy_rows(report, shape, args, device="cuda")
            for dtn in ("float32", "float16"):        # CuPy has no bfloat16
                run_minigen(report, mg, shape, dtn, "cuda", sync, args)
                if torch is not None and torch.cuda.is_available():
                    run_torch(report, torch, shape, dtn, "cuda", args)
    report.add_ratios("minigen (native)" if args.device == "cpu" else "minigen (triton)",
                      "torch")
    report.print_table()
    summarize(report)
    print(f"threads: {threads['how']}")
    if args.json:
        report.write_json(args.json)


if __name__ == "__main__":
    main()
