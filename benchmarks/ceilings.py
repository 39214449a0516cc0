"""Machine ceilings, measured at the start of every benchmark run (BENCH.md).

- sgemm: C = A B with A, B float32 2048×2048; work 2·n³ FLOPs; through numpy's BLAS, minigen's
  GEMM (csrc/gemm.cpp) and, when importable, PyTorch. The ceiling the other benchmarks divide
  by (``sgemm_gflops``) is the fastest of them: the machine's measured matrix-product peak.
- copy: dst[:] = src over a 256 MB float32 array; bytes = 2 × 256 MB (read + written).

    python benchmarks/ceilings.py [--threads N] [--json FILE] [--wait-quiet SECONDS]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, measure, pin_threads, start,  # noqa: E402
                     try_import_torch)

GEMM_N = 2048
COPY_BYTES = 256 * 2 ** 20


def measure_ceilings(report: Report | None = None, use_torch: bool = True,
                     repeats: int = 7) -> dict:
    """Measure sgemm GFLOP/s and copy GB/s; add rows to ``report``; return the ceilings used
    by other benchmarks (``sgemm_gflops``: the fastest sgemm measured; ``sgemm_gflops_numpy``,
    ``_minigen``, ``_torch``: each library's)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = GEMM_N
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    flops = 2.0 * n ** 3
    t_np = measure(lambda: np.matmul(a, b, out=c), warmup=2, repeats=repeats, number=1)
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    t_copy = measure(lambda: np.copyto(dst, src), warmup=2, repeats=repeats, number=1)
    out = {"sgemm_gflops_numpy": flops / t_np.median / 1e9,
           "copy_gbps": 2 * COPY_BYTES / t_copy.median / 1e9}
    rows = [(t_np, "sgemm 2048³", "numpy", flops, None),
            (t_copy, "copy 256 MB", "numpy", None, 2 * COPY_BYTES)]
    try:
        from minigen import _native
        if _native.available():
            from minigen.native.gemm import matmul
            t_mg = measure(lambda: matmul(a, b, c), warmup=2, repeats=repeats, number=1)
            out["sgemm_gflops_minigen"] = flops / t_mg.median / 1e9
            rows.append((t_mg, "sgemm 2048³", "minigen", flops, None))
    except ImportError:
        pass
    torch = try_import_torch() if use_torch else None
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty(n, n)
        t_t = measure(lambda: torch.mm(ta, tb, out=tc), warmup=2, repeats=repeats, number=1)
        tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
        t_tcopy = measure(lambda: tdst.copy_(tsrc), warmup=2, repeats=repeats, number=1)
        out["sgemm_gflops_torch"] = flops / t_t.median / 1e9
        out["copy_gbps_torch"] = 2 * COPY_BYTES / t_tcopy.median / 1e9
        rows += [(t_t, "sgemm 2048³", "torch", flops, None),
                 (t_tcopy, "copy 256 MB", "torch", None, 2 * COPY_BYTES)]
    out["sgemm_gflops"] = max(v for k, v in out.items() if k.startswith("sgemm_gflops_"))
    if report is not None:
        for t, name, prov, f, by in rows:
            report.add(t, name=name, provider=prov, flops=f, bytes=by)
    return out


def main():
    args = common_args(__doc__.splitlines()[0]).parse_args()
    threads = pin_threads(args.threads)
    rep = Report("machine ceilings", threads=threads)
    start(rep, args)
    ceil = measure_ceilings(rep, use_torch=not args.no_torch, repeats=min(args.repeats, 9))
    rep.ceilings = ceil
    rep.print_table()
    print(f"threads: {threads['how']}")
    if args.json:
        rep.write_json(args.json)
    return ceil


if __name__ == "__main__":
    main()
