"""cdist (F.cdist / torch.cdist, p = 2), minigen vs PyTorch in the same run, on the sizes the
families use, float32, forward and forward + backward:

    VQ-VAE codebook lookup   4096×64 encoder outputs against a 512×64 codebook
    point-cloud / 2-D flows  8192×2 against 8192×2

minigen's p = 2 forward is the matmul form d² = ‖a‖² + ‖b‖² − 2 a·bᵀ (as PyTorch's
'use_mm_for_euclid_dist_if_necessary' for more than 25 rows), its backward two matrix
products (x̄₁ = rowsum(W) x₁ − W x₂, W = ḡ/d). FLOPs: 2·P·R·M for the product (forward), twice
that for the backward.

    python benchmarks/bench_cdist.py [--threads 2] [--json benchmarks/results/cdist.json]
    python benchmarks/bench_cdist.py --device cuda   # CuPy + a CUDA GPU
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, finish, measure, pin_threads, start,
                     try_import_torch)  # noqa: E402

SIZES = [("VQ codebook 4096×64 vs 512×64", (4096, 64), (512, 64)),
         ("2-D points 8192×2 vs 8192×2", (8192, 2), (8192, 2))]


def run(args, report):
    import numpy as np
    import minigen as mg
    torch = None if args.no_torch else try_import_torch()
    dev = args.device
    sync = None
    if dev == "cuda":
        import cupy as cp
        sync = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    for label, s1, s2 in SIZES:
        a = rng.standard_normal(s1).astype(np.float32)
        b = rng.standard_normal(s2).astype(np.float32)
        flops = 2 * s1[0] * s2[0] * s1[1]
        A, B = mg.tensor(a, device=dev), mg.tensor(b, device=dev)
        Ag = mg.tensor(a, device=dev, requires_grad=True)
        Bg = mg.tensor(b, device=dev, requires_grad=True)

        def fwd():
            with mg.no_grad():
                mg.cdist(A, B)

        def fwd_bwd():
            Ag.grad = Bg.grad = None
            mg.cdist(Ag, Bg).sum().backward()
        for what, fn, fl in (("fwd", fwd, flops), ("fwd+bwd", fwd_bwd, 3 * flops)):
            t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.05, sync=sync)
            report.add(t, name=f"cdist {label} {what}", provider="minigen", flops=fl)
        if torch is None:
            continue
        tdev = "cuda" if dev == "cuda" else "cpu"
        ta, tb = torch.tensor(a, device=tdev), torch.tensor(b, device=tdev)
        tag = ta.clone().requires_grad_(True)
        tbg = tb.clone().requires_grad_(True)
        tsync = torch.cuda.synchronize if dev == "cuda" else None

        def tfwd():
            with torch.no_grad():
                torch.cdist(ta, tb)

        def tfwd_bwd():
            tag.grad = tbg.grad = None
            torch.cdist(tag, tbg).sum().backward()
        for what, fn, fl in (("fwd", tfwd, flops), ("fwd+bwd", tfwd_bwd, 3 * flops)):
            t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.05, sync=tsync)
            report.add(t, name=f"cdist {label} {what}", provider="torch", flops=fl)
    report.add_ratios("minigen", "torch")


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report(f"cdist p=2 on {args.device}", threads=threads)
    start(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
