"""K3/K4 (BENCH.md): scaled_dot_product_attention, forward and forward + backward, every
available minigen implementation against PyTorch's ``scaled_dot_product_attention`` in the
same run.

Work counted (the matrix products; the softmax is O(B·H·L·S) on top):
  forward   4·B·H·L·S·E FLOPs (Q Kᵀ and P V, with E = Ev)
  backward  2.5 × forward (Q Kᵀ recomputed, dO Vᵀ, Pᵀ dO, dS K, dSᵀ Q)
  causal    half of each (only the lower triangle is needed)
so forward + backward = 3.5 × forward. ``% ceiling`` is against the sgemm ceiling measured at
the start of the run.

CPU (default): K3 q, k, v 8×4×256×32 non-causal; K4 4×8×512×64 causal; float32. Providers:
``native`` (C++ + BLAS), ``reference`` (numpy), ``torch``; ratio = minigen / torch.

GPU (``--device cuda``, needs CuPy and a GPU; torch with CUDA for the comparison): 16×16×2048
×64 and ×128, float16 / bfloat16 / float32, causal and not; providers ``triton`` and ``torch``
(its SDPA picks flash / memory-efficient / math itself); TFLOP/s in the GFLOP/s column / 1000.
The Triton interpreter is never timed.

    python benchmarks/bench_attention.py [--threads N] [--json FILE] [--device cpu|cuda]
                                         [--profile]   # cProfile of native K3 fwd + bwd
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, cpu_ceilings, finish, measure, pin_threads,
                     start, try_import_torch)  # noqa: E402

CPU_WORK = [  # (name, (B, H, L, E), causal)
    ("K3 8×4×256×32", (8, 4, 256, 32), False),
    ("K4 4×8×512×64 causal", (4, 8, 512, 64), True),
]
GPU_WORK = [
    ("16×16×2048×64", (16, 16, 2048, 64), False),
    ("16×16×2048×64 causal", (16, 16, 2048, 64), True),
    ("16×16×2048×128", (16, 16, 2048, 128), False),
]


def flops(shape, causal, backward):
    B, H, L, E = shape
    f = 4.0 * B * H * L * L * E * (3.5 if backward else 1.0)
    return f / 2 if causal else f


def run_cpu(args, report):
    import numpy as np

    import minigen as mg
    import minigen.nn.functional as F
    from minigen import dispatch

    torch = None if args.no_torch else try_import_torch()
    impls = [r["implementation"] for r in dispatch.status(("cpu",))
             if r["family"] == "attention" and not r["unavailable"]
             and r["implementation"] in ("native", "reference")]
    for name, shape, causal in CPU_WORK:
        rng = np.random.default_rng(0)
        q_np, k_np, v_np, g_np = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
        q, k, v = (mg.tensor(a, requires_grad=True) for a in (q_np, k_np, v_np))
        g = mg.tensor(g_np)
        for impl in impls:
            def fwd():
                with mg.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def fwd_bwd():
                q.grad = k.grad = v.grad = None
                F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(g)

            with dispatch.use(attention=impl):
                for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                    t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.05)
                    report.add(t, name=f"{name} {label}", provider=impl,
                               flops=flops(shape, causal, bwd))
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q_np, k_np, v_np))
            tg = torch.from_numpy(g_np)
            sdpa = torch.nn.functional.scaled_dot_product_attention

            def t_fwd():
                with torch.no_grad():
                    sdpa(tq, tk, tv, is_causal=causal)

            def t_fwd_bwd():
                tq.grad = tk.grad = tv.grad = None
                sdpa(tq, tk, tv, is_causal=causal).backward(tg)

            for label, fn, bwd in (("fwd", t_fwd, False), ("fwd+bwd", t_fwd_bwd, True)):
                t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.05)
                report.add(t, name=f"{name} {label}", provider="torch",
                           flops=flops(shape, causal, bwd))
    for impl in impls:
        report.add_ratios(impl, "torch")

    if args.profile:
        import cProfile
        import pstats
        _, shape, causal = CPU_WORK[0]
        rng = np.random.default_rng(0)
        q, k, v = (mg.tensor(rng.standard_normal(shape, dtype=np.float32), requires_grad=True)
                   for _ in range(3))
        g = mg.tensor(rng.standard_normal(shape, dtype=np.float32))
        prof = cProfile.Profile()
        with dispatch.use(attention="native"):
            prof.enable()
            for _ in range(50):
                F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(g)
            prof.disable()
        print("\ncProfile of 50 native K3 forward + backward (top 15 by internal time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def run_cuda(args, report):
    import numpy as np

    import minigen as mg
    import minigen.nn.functional as F
    from minigen import dispatch
    from minigen.backend import cupy_module

    cp = cupy_module()
    sync = cp.cuda.Device().synchronize
    torch = None if args.no_torch else try_import_torch()
    if torch is not None and not torch.cuda.is_available():
        print("torch has no CUDA here: GPU rows without the PyTorch comparison")
        torch = None
    dtypes = [("float16", np.float16), ("bfloat16", mg.bfloat16), ("float32", np.float32)]
    for name, shape, causal in GPU_WORK:
        for dname, dt in dtypes:
            rng = cp.random.default_rng(0)
            arrs = [rng.standard_normal(shape, dtype=cp.float32).astype(dt) for _ in range(4)]
            q, k, v = (mg.tensor(a, device="cuda", requires_grad=True) for a in arrs[:3])
            g = mg.tensor(arrs[3], device="cuda")

            def fwd():
                with mg.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def fwd_bwd():
                q.grad = k.grad = v.grad = None
                F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(g)

            with dispatch.use(attention="triton"):
                for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                    t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.1, sync=sync)
                    report.add(t, name=f"{name} {dname} {label}", provider="triton",
                               flops=flops(shape, causal, bwd))
            if torch is not None:
                tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                       "float32": torch.float32}[dname]
                tq, tk, tv, tg = (torch.from_dlpack(a.astype(cp.float32)).to(tdt) for a in
                                  (q.data, k.data, v.data, g.data))
                for t_ in (tq, tk, tv):
                    t_.requires_grad_()
                sdpa = torch.nn.functional.scaled_dot_product_attention

                def t_fwd():
                    with torch.no_grad():
                        sdpa(tq, tk, tv, is_causal=causal)

                def t_fwd_bwd():
                    tq.grad = tk.grad = tv.grad = None
                    sdpa(tq, tk, tv, is_causal=causal).backward(tg)

                for label, fn, bwd in (("fwd", t_fwd, False), ("fwd+bwd", t_fwd_bwd, True)):
                    t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.1,
                                sync=torch.cuda.synchronize)
                    report.add(t, name=f"{name} {dname} {label}", provider="torch",
                               flops=flops(shape, causal, bwd))
    report.add_ratios("triton", "torch")


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--profile", action="store_true", help="cProfile native K3 fwd + bwd")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    if args.device == "cuda":
        os.environ.pop("TRITON_INTERPRET", None)  # never time the interpreter
    report = Report(f"attention (K3/K4) on {args.device}", threads=threads)
    start(report, args)
    if args.device == "cpu":
        cpu_ceilings(report, args)
    (run_cuda if args.device == "cuda" else run_cpu)(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
