"""topk / sort on the sizes the families sample with, minigen vs PyTorch in the same run.

    logits 64×10 (classifier), 64×256 (pixel / code-book logits), 1024×50257 (a GPT-2
    vocabulary): topk k=50 (top-k sampling), a full descending sort of the row (nucleus
    sampling sorts, then cumsums the softmax), and top-k then multinomial (one draw per row).

Bytes: the logits read once (the lower bound of any selection). minigen's topk is an O(n)
argpartition plus a sort of the k chosen; its sort is a stable argsort (numpy's radix/timsort
per row) and a gather.

    python benchmarks/bench_sort.py [--threads 2] [--json benchmarks/results/sort.json]
    python benchmarks/bench_sort.py --device cuda      # CuPy + a CUDA GPU
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, finish, measure, pin_threads, start,
                     try_import_torch)  # noqa: E402

SIZES = ((64, 10, 5), (64, 256, 50), (1024, 50257, 50))   # rows, vocabulary, k


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
    gen = mg.Generator(dev).manual_seed(0)
    for rows, vocab, k in SIZES:
        logits = rng.standard_normal((rows, vocab)).astype(np.float32)
        nbytes = logits.nbytes
        x = mg.tensor(logits, device=dev)

        def mg_sample(x=x, k=k):
            v, i = mg.topk(x, k)
            return i.gather(1, mg.multinomial(mg.softmax(v, -1), 1, generator=gen))
        work = [(f"topk k={k} {rows}×{vocab}", lambda x=x, k=k: mg.topk(x, k)),
                (f"sort desc {rows}×{vocab}", lambda x=x: mg.sort(x, descending=True)),
                (f"topk+multinomial {rows}×{vocab}", mg_sample)]
        big = vocab > 10000
        def reps(name):   # the full sort of 1024×50257 takes seconds per call on a CPU
            return (1, 3) if big and name.startswith("sort") else (2, 5) if big else \
                (3, args.repeats)
        for name, fn in work:
            w, r = reps(name)
            t = measure(fn, warmup=w, repeats=r, sync=sync, min_repeat_s=0.02)
            report.add(t, name=name, provider="minigen", bytes=nbytes)
        if torch is not None:
            tdev = "cuda" if dev == "cuda" else "cpu"
            tx = torch.tensor(logits, device=tdev)
            tg = torch.Generator(device=tdev).manual_seed(0)
            tsync = torch.cuda.synchronize if dev == "cuda" else None

            def t_sample(tx=tx, k=k):
                v, i = torch.topk(tx, k)
                return i.gather(1, torch.multinomial(torch.softmax(v, -1), 1, generator=tg))
            twins = [lambda tx=tx, k=k: torch.topk(tx, k),
                     lambda tx=tx: torch.sort(tx, descending=True), t_sample]
            for (name, _), fn in zip(work, twins):
                w, r = reps(name)
                t = measure(fn, warmup=w, repeats=r, sync=tsync, min_repeat_s=0.02)
                report.add(t, name=name, provider="torch", bytes=nbytes)
    report.add_ratios("minigen", "torch")


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report(f"topk / sort on {args.device}", threads=threads)
    start(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
