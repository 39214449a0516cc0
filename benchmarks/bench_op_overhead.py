"""Per-op overhead on tiny tensors (4×4 float32): minigen vs PyTorch eager, same process.

At this size the arithmetic is nothing; the time is the framework's Python/dispatch path:
argument checks, the Function node, wrapping the result, and (with requires_grad) recording
the graph. Each op runs with inputs that do and do not require grad; the last workload is one
forward + backward of a tiny expression, ``((x * w).relu() + b).sum()`` → grads of x, w, b
(requires_grad only). Ratio = minigen median / torch median (target: ≤ 2×).

    python benchmarks/bench_op_overhead.py [--threads N] [--json FILE] [--wait-quiet SECONDS]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, measure, pin_threads, start,  # noqa: E402
                     try_import_torch)


def op_table(lib):
    """name → callable(x, y) for a library with a torch-like API (minigen or torch)."""
    return {
        "add": lambda x, y: x + y,
        "mul": lambda x, y: x * y,
        "exp": lambda x, y: x.exp(),
        "sum": lambda x, y: x.sum(),
        "matmul": lambda x, y: x @ y,
        "relu": lambda x, y: lib.relu(x),
        "reshape": lambda x, y: x.reshape(16),
        "index x[1:3]": lambda x, y: x[1:3],
        "index x[i] (int tensor)": None,  # filled per library below
    }


def tiny_step(lib, x, w, b):
    """One forward + backward of ((x * w).relu() + b).sum(); clears grads first."""
    x.grad = w.grad = b.grad = None
    loss = (lib.relu(x * w) + b).sum()
    loss.backward()


def run(args, report: Report):
    import numpy as np
    import minigen as mg

    torch = None if args.no_torch else try_import_torch()
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((4, 4), dtype=np.float32)
    ya = rng.standard_normal((4, 4), dtype=np.float32)
    ba = rng.standard_normal((4,), dtype=np.float32)
    idx = np.array([0, 2], dtype=np.int64)
    libs = [("minigen", mg)] + ([("torch", torch)] if torch is not None else [])
    # the floor: the same op on the raw numpy arrays (what minigen's forward itself calls)
    np_ops = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y,
              "exp": lambda x, y: np.exp(x), "sum": lambda x, y: x.sum(),
              "matmul": lambda x, y: x @ y, "relu": lambda x, y: np.maximum(x, 0),
              "reshape": lambda x, y: x.reshape(16), "index x[1:3]": lambda x, y: x[1:3],
              "index x[i] (int tensor)": lambda x, y: x[idx]}
    for name, fn in np_ops.items():
        t = measure(lambda fn=fn: fn(xa, ya), warmup=50, repeats=args.repeats)
        report.add(t, name=name, provider="numpy (floor)")
    for grad in (False, True):
        suffix = " (requires_grad)" if grad else ""
        for prov, lib in libs:
            x = lib.tensor(xa.copy(), requires_grad=grad)
            y = lib.tensor(ya.copy(), requires_grad=grad)
            ii = lib.tensor(idx)
            ops = op_table(lib)
            ops["index x[i] (int tensor)"] = lambda x, y, ii=ii: x[ii]
            for name, fn in ops.items():
                t = measure(lambda fn=fn: fn(x, y), warmup=50, repeats=args.repeats)
                report.add(t, name=name + suffix, provider=prov)
    for prov, lib in libs:
        x = lib.tensor(xa.copy(), requires_grad=True)
        w = lib.tensor(ya.copy(), requires_grad=True)
        b = lib.tensor(ba.copy(), requires_grad=True)
        t = measure(lambda: tiny_step(lib, x, w, b), warmup=50, repeats=args.repeats)
        report.add(t, name="fwd+bwd ((x*w).relu()+b).sum()", provider=prov)
    report.add_ratios("minigen", "torch")


def main():
    args = common_args(__doc__.splitlines()[0]).parse_args()
    threads = pin_threads(args.threads)
    report = Report("per-op overhead, 4×4 float32", threads=threads)
    start(report, args)
    run(args, report)
    # rows of one workload together, minigen first
    first = {}
    for i, r in enumerate(report.rows):
        first.setdefault(r["name"], i)
    rank = {"minigen": 0, "torch": 1}
    report.rows.sort(key=lambda r: (first[r["name"]], rank.get(r["provider"], 2)))
    report.print_table()
    print(f"threads: {threads['how']}")
    if args.json:
        report.write_json(args.json)
    return report


if __name__ == "__main__":
    main()
