"""K6/K7 (BENCH.md): log-det family, minigen implementations vs PyTorch in the same run.

K6  slogdet 256×256 float64, forward + backward (d logabsdet/dA = A⁻ᵀ from the saved LU)
    batched slogdet of 64 matrices 16×16 float64, forward + backward
    invertible 1×1 conv (LU form) with log-det, 64×48×16×16 float32, forward and fwd + bwd
K7  affine coupling forward with log-det, 64×48×16×16 float32 (torch: the same computation
    as separate eager ops: sigmoid, log, mul, add, sum, cat)

FLOPs: LU 2n³/3, backward (A⁻¹ from the LU: two triangular solves against n right-hand sides)
2n³; 1×1 conv 2·N·HW·C² (fwd), ×3 with bwd. Coupling bytes: read x, h, write y (3·N·C·HW·4).

    python benchmarks/bench_logdet.py [--threads 2] [--json benchmarks/results/logdet.json]
    python benchmarks/bench_logdet.py --device cuda   # GPU sizes (CuPy + a CUDA GPU)
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, finish, measure, pin_threads, start,
                     try_import_torch)  # noqa: E402


def _impls(device):
    from minigen import dispatch
    names = []
    for row in dispatch.status((device,)):
        if row["family"] == "logdet" and row["unavailable"] is None:
            names.append(row["implementation"])
    if device == "cpu":
        names = [n for n in names if n != "triton"]  # never time the interpreter
    return names


def _provider(impl, device):
    first = "native" if device == "cpu" else "cuda"
    return "minigen" if impl == first else f"minigen-{impl}"


def run_cpu(args, report):
    import numpy as np
    import minigen as mg
    from minigen import dispatch
    torch = None if args.no_torch else try_import_torch()
    rng = np.random.default_rng(0)

    a256 = rng.standard_normal((256, 256))
    a16 = rng.standard_normal((64, 16, 16))
    x = rng.standard_normal((64, 48, 16, 16)).astype(np.float32)
    h = rng.standard_normal((64, 48, 16, 16)).astype(np.float32)
    c = 48
    conv = mg.nn.InvConv2dLU(c, generator=mg.Generator().manual_seed(0))
    n_hw, flops_conv = 64 * 256, 2 * 64 * 256 * c * c

    def slogdet_fb(arr):
        def f():
            A = mg.tensor(arr, requires_grad=True)
            _, l = mg.linalg.slogdet(A)
            l.sum().backward()
        return f

    def invconv(bwd):
        X = mg.tensor(x, requires_grad=bwd)

        def f():
            y, ld = conv(X)
            if bwd:
                ((y * y).sum() + ld.sum()).backward()
        return f

    def coupling():
        X, H = mg.tensor(x), mg.tensor(h)

        def f():
            with mg.no_grad():
                mg.affine_coupling(X, H)
        return f

    work = [("K6 slogdet 256 f64 fwd+bwd", slogdet_fb(a256), 2 * 256**3 / 3 + 2 * 256**3, None),
            ("K6 slogdet 64×16×16 f64 fwd+bwd", slogdet_fb(a16),
             64 * (2 * 16**3 / 3 + 2 * 16**3), None),
            ("K6 invconv LU 64×48×16×16 fwd", invconv(False), flops_conv, None),
            ("K6 invconv LU 64×48×16×16 fwd+bwd", invconv(True), 3 * flops_conv, None),
            ("K7 coupling 64×48×16×16 fwd", coupling(), None, 3 * x.nbytes)]
    for name, fn, flops, nbytes in work:
        for impl in _impls("cpu"):
            if impl == "reference" and "256" in name and args.skip_slow_reference:
                continue
            with dispatch.use(logdet=impl):
                t = measure(fn, warmup=3, repeats=args.repeats, min_repeat_s=0.05)
            report.add(t, name=name, provider=_provider(impl, "cpu"), flops=flops,
                       bytes=nbytes)
    if torch is not None:
        t256 = torch.tensor(a256, requires_grad=True)
        t16 = torch.tensor(a16, requires_grad=True)

        def t_slogdet(ta):
            def f():
                ta.grad = None
                _, l = torch.linalg.slogdet(ta)
                l.sum().backward()
            return f
        W = torch.tensor(conv.weight().data, requires_grad=False)
        lower = torch.tensor(conv.lower.data, requires_grad=True)
        upper = torch.tensor(conv.upper.data, requires_grad=True)
        log_s = torch.tensor(conv.log_s.data, requires_grad=True)
        P = torch.tensor(conv.perm.data)
        sign_s = torch.tensor(conv.sign_s.data)
        tx, th = torch.tensor(x), torch.tensor(h)
        del W

        def t_invconv(bwd):
            X = tx.clone().requires_grad_(bwd)

            def f():
                with torch.set_grad_enabled(bwd):
                    L = torch.tril(lower, -1) + torch.eye(c)
                    U = torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s))
                    w = P @ L @ U
                    y = torch.nn.functional.conv2d(X, w[:, :, None, None])
                    ld = (log_s.sum() * 256).expand(64)
                    if bwd:
                        ((y * y).sum() + ld.sum()).backward()
            return f

        def t_coupling():
            with torch.no_grad():
                xa, xb = tx[:, :24], tx[:, 24:]
                raw, t = th[:, :24], th[:, 24:]
                s = torch.sigmoid(raw + 2)
                ya = s * xa + t
                ld = torch.log(s).flatten(1).sum(1)
                return torch.cat([ya, xb], 1), ld
        twins = {work[0][0]: t_slogdet(t256), work[1][0]: t_slogdet(t16),
                 work[2][0]: t_invconv(False), work[3][0]: t_invconv(True),
                 work[4][0]: t_coupling}
        for name, fn, flops, nbytes in work:
            t = measure(twins[name], warmup=3, repeats=args.repeats, min_repeat_s=0.05)
            report.add(t, name=name, provider="torch", flops=flops, bytes=nbytes)
    report.add_ratios("minigen", "torch")


def run_cuda(args, report):
    """GPU sizes: batched small slogdet (fp32/fp64) fwd+bwd, coupling on a large batch."""
    import cupy as cp
    import numpy as np
    import minigen as mg
    from minigen import dispatch
    torch = None if args.no_torch else try_import_torch()
    sync = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    work = []
    for batch, n, dt in ((4096, 16, np.float32), (4096, 32, np.float32), (4096, 16, np.float64),
                         (1024, 64, np.float32)):
        a = rng.standard_normal((batch, n, n)).astype(dt)
        work.append((f"slogdet {batch}×{n}×{n} {np.dtype(dt).name} fwd+bwd", a,
                     batch * (2 * n**3 / 3 + 2 * n**3)))
    for name, a, flops in work:
        A = mg.tensor(a, device="cuda", requires_grad=True)

        def f(A=A):
            A.grad = None
            _, l = mg.linalg.slogdet(A)
            l.sum().backward()
        for impl in _impls("cuda"):
            with dispatch.use(logdet=impl):
                t = measure(f, warmup=3, repeats=args.repeats, sync=sync)
            report.add(t, name=name, provider=_provider(impl, "cuda"), flops=flops)
        if torch is not None:
            ta = torch.tensor(a, device="cuda", requires_grad=True)

            def tf(ta=ta):
                ta.grad = None
                _, l = torch.linalg.slogdet(ta)
                l.sum().backward()
            t = measure(tf, warmup=3, repeats=args.repeats, sync=torch.cuda.synchronize)
            report.add(t, name=name, provider="torch", flops=flops)
    shape = (256, 48, 64, 64)
    x = rng.standard_normal(shape).astype(np.float32)
    h = rng.standard_normal(shape).astype(np.float32)
    X, H = mg.tensor(x, device="cuda"), mg.tensor(h, device="cuda")
    name = "coupling 256×48×64×64 fwd"
    for impl in _impls("cuda"):
        with dispatch.use(logdet=impl), mg.no_grad():
            t = measure(lambda: mg.affine_coupling(X, H), repeats=args.repeats, sync=sync)
        report.add(t, name=name, provider=_provider(impl, "cuda"), bytes=3 * x.nbytes)
    if torch is not None:
        tx, th = torch.tensor(x, device="cuda"), torch.tensor(h, device="cuda")

        def tc():
            s = torch.sigmoid(th[:, :24] + 2)
            return torch.cat([s * tx[:, :24] + th[:, 24:], tx[:, 24:]], 1), \
                torch.log(s).flatten(1).sum(1)
        t = measure(tc, repeats=args.repeats, sync=torch.cuda.synchronize)
        report.add(t, name=name, provider="torch", bytes=3 * x.nbytes)
    report.add_ratios("minigen", "torch")


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--skip-slow-reference", action="store_true",
                   help="leave the numpy reference out of the 256×256 rows")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report(f"logdet family (K6, K7) on {args.device}", threads=threads)
    start(report, args)
    if not args.no_ceilings and args.device == "cpu":
        from ceilings import measure_ceilings
        report.ceilings = measure_ceilings(None, use_torch=not args.no_torch)
    (run_cpu if args.device == "cpu" else run_cuda)(args, report)
    for r in report.rows:
        ceil = report.ceilings or {}
        if "gflops" in r and ceil.get("dgemm_gflops") and "f64" in r["name"]:
            r["pct_ceiling"] = 100 * r["gflops"] / ceil["dgemm_gflops"]
        elif "gbps" in r and ceil.get("copy_gbps"):
            r["pct_ceiling"] = 100 * r["gbps"] / ceil["copy_gbps"]
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
