"""K1/K2 (BENCH.md): conv2d forward, and forward + backward, minigen vs PyTorch in one process.

CPU workloads (float32, through the op layer ``minigen.nn.functional.conv2d`` with the
implementation forced by ``minigen.dispatch.use``; bias included, gradients for x, w and b):
    K1        x 32×64×32×32,  w 64×64×3×3, padding 1
    K2        x 64×32×28×28,  w 32×32×3×3, padding 1
    K2 down   x 64×32×28×28,  w 32×32×3×3, padding 1, stride 2 (→ 14×14)
Providers: ``native`` (C++: the direct convolution for stride 1, im2col + minigen's GEMM
otherwise), ``reference`` (numpy; K1 forward only unless --all-reference, it is slow),
``torch`` (oneDNN). Work: forward 2·N·C_out·H_out·W_out·C_in·k_h·k_w
FLOPs; backward twice that (dgrad + wgrad); "% ceiling" divides by numpy's measured sgemm rate
(the BLAS minigen calls), ratio = minigen / torch.

GPU (``--device cuda``, needs CuPy + a GPU; torch with CUDA for the cuDNN comparison):
x 128×128×64×64, w 128×128×3×3, padding 1, float16 / bfloat16 / float32, provider ``triton``
vs ``torch`` (cuDNN; PyTorch's default allow_tf32=True for convolutions, while minigen's fp32 path
is IEEE unless ``minigen.backends.cuda.matmul.allow_tf32 = True``: compare like with like).

    python benchmarks/bench_conv2d.py [--threads N] [--json FILE] [--device cpu|cuda]
                                      [--chunk MB,MB,...]  # sweep the native chunk size
                                      [--profile]          # cProfile native K1 fwd + bwd
                                      [--e2-shapes]        # direct vs GEMM paths, E2's convs
                                      [--openblas-coretype auto|none|NAME]

numpy's BLAS and AVX-512 (``--openblas-coretype``): OpenBLAS 0.3.31 (numpy 2.4's wheel) does not
recognise AMD Zen 5 (cpu family 26) and falls back to its Haswell (AVX2) kernels: about half of
the chip's float32 peak (measured on the 2-core EPYC: sgemm 2048³ 234 GFLOP/s as detected,
~460 GFLOP/s with OPENBLAS_CORETYPE=SkylakeX), while PyTorch's oneDNN/MKL use AVX-512. "auto"
(default) sets OPENBLAS_CORETYPE=SkylakeX before numpy loads, only on such a CPU and only when
the variable is unset; "none" leaves OpenBLAS alone. The choice is printed and saved in the JSON
(threads.openblas_coretype), and the sgemm ceiling is measured under the same setting. (The
2-core machine of this project sets OPENBLAS_CORETYPE=Haswell in its environment; "auto" keeps
it.)

OpenBLAS's idle worker threads spin for up to 2^OPENBLAS_THREAD_TIMEOUT cycles (default 28,
~0.1 s) after each GEMM. The native conv interleaves GEMMs with im2col on the calling thread, so
on a busy 2-core machine the spinning worker, the calling thread and any other process fight
for the cores (measured under load: K1 dgrad 41–770 ms with the default, 15 ms with
``--openblas-thread-timeout 4``). The option sets the variable before numpy loads; it does not
affect PyTorch (oneDNN/MKL). Saved as threads.openblas_thread_timeout.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, cpu_ceilings, finish, measure,  # noqa: E402
                     pin_threads, start, try_import_torch)

CPU_WORK = [  # name, x shape, w shape, stride, padding
    ("K1", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("K2", (64, 32, 28, 28), (32, 32, 3, 3), 1, 1),
    ("K2 down", (64, 32, 28, 28), (32, 32, 3, 3), 2, 1),
]
GPU_WORK = [("conv 128×128×64×64 3×3", (128, 128, 64, 64), (128, 128, 3, 3), 1, 1)]


def conv_flops(x_shape, w_shape, stride, padding, backward=False):
    n, _, h, w = x_shape
    c_out, cg, kh, kw = w_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    f = 2.0 * n * c_out * ho * wo * cg * kh * kw
    return 3 * f if backward else f


def run_cpu(args, report):
    import numpy as np

    import minigen as mg
    import minigen.nn.functional as F
    from minigen import dispatch
    from minigen.native import conv2d as native

    torch = None if args.no_torch else try_import_torch()
    for name, xs, ws, s, p in CPU_WORK:
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal(xs, dtype=np.float32)
        w_np = (rng.standard_normal(ws, dtype=np.float32) / np.sqrt(ws[1] * 9)).astype(np.float32)
        b_np = rng.standard_normal(ws[0], dtype=np.float32)
        x = mg.tensor(x_np, requires_grad=True)
        w = mg.tensor(w_np, requires_grad=True)
        b = mg.tensor(b_np, requires_grad=True)
        with mg.no_grad():
            g = mg.randn(*F.conv2d(x, w, b, s, p).shape)

        def fwd():
            with mg.no_grad():
                F.conv2d(x, w, b, s, p)

        def fwd_bwd():
            x.grad = w.grad = b.grad = None
            F.conv2d(x, w, b, s, p).backward(g)

        for impl in ("native", "reference"):
            for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                if impl == "reference" and not args.all_reference and (name != "K1" or bwd):
                    continue
                with dispatch.use(conv2d=impl):
                    t = measure(fn, warmup=2, repeats=args.repeats if impl == "native" else 3,
                                min_repeat_s=0.05)
                report.add(t, name=f"{name} {label}", provider=f"minigen {impl}",
                           flops=conv_flops(xs, ws, s, p, bwd))
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x_np, w_np, b_np))
            tg = torch.from_numpy(g.numpy())

            def t_fwd():
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, s, p)

            def t_fwd_bwd():
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, s, p).backward(tg)

            for label, fn, bwd in (("fwd", t_fwd, False), ("fwd+bwd", t_fwd_bwd, True)):
                t = measure(fn, warmup=2, repeats=args.repeats, min_repeat_s=0.05)
                report.add(t, name=f"{name} {label}", provider="torch",
                           flops=conv_flops(xs, ws, s, p, bwd))
    report.add_ratios("minigen native", "torch")

    if args.chunk:
        default = native.CHUNK_BYTES
        name, xs, ws, s, p = CPU_WORK[0]
        rng = np.random.default_rng(0)
        xa = rng.standard_normal(xs, dtype=np.float32)
        wa = rng.standard_normal(ws, dtype=np.float32)
        ga = rng.standard_normal((xs[0], ws[0]) + xs[2:], dtype=np.float32)
        print("\nnative K1 chunk-size sweep (fwd, bwd medians):")
        for mb in [float(v) for v in args.chunk.split(",")]:
            native.CHUNK_BYTES = int(mb * 2 ** 20)
            tf = measure(lambda: native.conv2d_forward(xa, wa, None, (s, s), (p, p), (1, 1), 1),
                         warmup=2, repeats=args.repeats)
            tb = measure(lambda: native.conv2d_backward(ga, xa, wa, (s, s), (p, p), (1, 1), 1),
                         warmup=2, repeats=args.repeats)
            print(f"  {mb:6.2f} MB: images/chunk {native.chunk_images(xs[0], 576, 1024, 4):3d}"
                  f"  fwd {tf.median * 1e3:7.2f} ms  bwd {tb.median * 1e3:7.2f} ms")
        native.CHUNK_BYTES = default

    if args.profile:
        import cProfile
        import pstats
        name, xs, ws, s, p = CPU_WORK[0]
        x = mg.randn(*xs, requires_grad=True)
        w = mg.randn(*ws, requires_grad=True)
        b = mg.randn(ws[0], requires_grad=True)
        prof = cProfile.Profile()
        with dispatch.use(conv2d="native"):
            prof.enable()
            for _ in range(20):
                F.conv2d(x, w, b, s, p).sum().backward()
            prof.disable()
        print("\ncProfile of 20 native K1 forward + backward (top 15 by internal time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def e2_shapes(args):
    """Every distinct convolution of the E2 UNet at batch 64 (benchmarks/bench_e2_unet.py's
    E2_CONVS, stride-1 ones), its three native products, float32, with the direct kernel
    (``USE_DIRECT``) and on the im2col/GEMM paths: median ms and GFLOP/s."""
    import numpy as np

    from bench_e2_unet import E2_CONVS
    from minigen.native import conv2d as native
    rng = np.random.default_rng(0)
    n, seen = 64, set()
    print("\nE2 convolutions (stride 1), batch 64, native products: ms (GFLOP/s), direct | GEMM")
    print(f"{'conv':<22}{'forward':>26}{'weight gradient':>28}{'input gradient':>28}")
    for ci, co, k, h in E2_CONVS:
        if (ci, co, k, h) in seen:
            continue
        seen.add((ci, co, k, h))
        pad = (k // 2, k // 2)
        x = rng.standard_normal((n, ci, h, h), dtype=np.float32)
        w = rng.standard_normal((co, ci, k, k), dtype=np.float32)
        g = rng.standard_normal((n, co, h, h), dtype=np.float32)
        gflop = 2e-9 * n * ci * co * k * k * h * h
        products = [lambda: native._forward(x, w, (1, 1), pad, (1, 1), 1),
                    lambda: native._backward(g, x, w, (1, 1), pad, (1, 1), 1, False, True),
                    lambda: native._backward(g, x, w, (1, 1), pad, (1, 1), 1, True, False)]
        cells = []
        for fn in products:
            times = []
            for direct in (True, False):
                native.USE_DIRECT = direct
                times.append(measure(fn, warmup=2, repeats=args.repeats, min_repeat_s=0.05).median)
            native.USE_DIRECT = True
            cells.append(" | ".join(f"{1e3 * t:5.2f} ({gflop / t:3.0f})" for t in times))
        print(f"{f'{ci}→{co} {k}×{k} @{h}×{h}':<22}" + "".join(f"{c:>28}" for c in cells))


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
        print("torch has no CUDA here: GPU rows without the cuDNN comparison")
        torch = None
    dtypes = [("float16", np.float16), ("bfloat16", mg.bfloat16), ("float32", np.float32)]
    for name, xs, ws, s, p in GPU_WORK:
        for dname, dt in dtypes:
            rng = cp.random.default_rng(0)
            try:
                xa = rng.standard_normal(xs, dtype=cp.float32).astype(dt)
                wa = (rng.standard_normal(ws, dtype=cp.float32) / 34.0).astype(dt)
                ba = rng.standard_normal(ws[0], dtype=cp.float32).astype(dt)
                ga = rng.standard_normal((xs[0], ws[0]) + xs[2:], dtype=cp.float32).astype(dt)
            except Exception as exc:  # e.g. no bfloat16 in this CuPy
                print(f"{name} {dname}: skipped ({type(exc).__name__}: {exc})")
                continue
            x, w, b = (mg.tensor(a, device="cuda", requires_grad=True) for a in (xa, wa, ba))
            g = mg.tensor(ga, device="cuda")

            def fwd():
                with mg.no_grad():
                    F.conv2d(x, w, b, s, p)

            def fwd_bwd():
                x.grad = w.grad = b.grad = None
                F.conv2d(x, w, b, s, p).backward(g)

            with dispatch.use(conv2d="triton"):
                for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                    t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.1, sync=sync)
                    report.add(t, name=f"{name} {dname} {label}", provider="triton",
                               flops=conv_flops(xs, ws, s, p, bwd))
            if torch is not None:
                tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                       "float32": torch.float32}[dname]
                tx, tw, tb, tg = (torch.from_dlpack(a.astype(cp.float32)).to(tdt)
                                  for a in (xa, wa, ba, ga))
                for t_ in (tx, tw, tb):
                    t_.requires_grad_()

                def t_fwd():
                    with torch.no_grad():
                        torch.nn.functional.conv2d(tx, tw, tb, s, p)

                def t_fwd_bwd():
                    tx.grad = tw.grad = tb.grad = None
                    torch.nn.functional.conv2d(tx, tw, tb, s, p).backward(tg)

                for label, fn, bwd in (("fwd", t_fwd, False), ("fwd+bwd", t_fwd_bwd, True)):
                    t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.1,
                                sync=torch.cuda.synchronize)
                    report.add(t, name=f"{name} {dname} {label}", provider="torch",
                               flops=conv_flops(xs, ws, s, p, bwd))
    report.add_ratios("triton", "torch")


def openblas_coretype(choice: str) -> str:
    """Apply --openblas-coretype before numpy is imported; return what is in effect."""
    if "OPENBLAS_CORETYPE" in os.environ or choice == "none":
        return os.environ.get("OPENBLAS_CORETYPE", "detected by OpenBLAS")
    if "numpy" in sys.modules:
        return "detected by OpenBLAS (numpy already imported)"
    if choice == "auto":
        try:
            with open("/proc/cpuinfo") as f:
                info = f.read(20000)
        except OSError:
            return "detected by OpenBLAS"
        zen5 = "AuthenticAMD" in info and "\ncpu family\t: 26\n" in info
        if not (zen5 and " avx512f " in info):
            return "detected by OpenBLAS"
        choice = "SkylakeX"
    os.environ["OPENBLAS_CORETYPE"] = choice
    return f"{choice} (set by bench_conv2d.py)"


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--openblas-thread-timeout", default=None, metavar="N",
                   help="set OPENBLAS_THREAD_TIMEOUT=N (4..30) before numpy loads")
    p.add_argument("--openblas-coretype", default="auto",
                   help="auto | none | an OpenBLAS core name (see the module docstring)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--chunk", default=None, metavar="MB,MB,...",
                   help="also sweep the native column-buffer budget on K1")
    p.add_argument("--all-reference", action="store_true",
                   help="time the numpy reference on every row (slow)")
    p.add_argument("--profile", action="store_true", help="cProfile native K1 fwd + bwd")
    p.add_argument("--e2-shapes", action="store_true",
                   help="only: the direct kernel vs the GEMM paths on E2's convolutions")
    args = p.parse_args()
    coretype = openblas_coretype(args.openblas_coretype)
    if args.openblas_thread_timeout is not None and "numpy" not in sys.modules:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(int(args.openblas_thread_timeout))
    threads = pin_threads(args.threads)
    threads["openblas_coretype"] = coretype
    threads["openblas_thread_timeout"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "default")
    print(f"OpenBLAS core type: {coretype}")
    if args.e2_shapes:
        e2_shapes(args)
        return 0
    if args.device == "cuda":
        os.environ.pop("TRITON_INTERPRET", None)  # never time the interpreter
    report = Report(f"conv2d (K1/K2) on {args.device}", threads=threads)
    start(report, args)
    if args.device == "cpu":
        cpu_ceilings(report, args)
    (run_cuda if args.device == "cuda" else run_cpu)(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
