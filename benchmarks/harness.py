"""The one benchmark harness: warm-up, median of repeats with spread, work → rate, table + JSON.

Every benchmark in this folder measures through ``measure`` and reports through ``Report``:

    args = common_args("...").parse_args(); threads = pin_threads(args.threads)
    rep = Report("op overhead", threads=threads); start(rep, args)
    r = rep.add(measure(fn), name="add", provider="minigen", flops=..., bytes=...)
    rep.print_table(); rep.write_json("benchmarks/results/op_overhead.json")

Timing: ``fn`` is called ``number`` times per repeat (calibrated so one repeat lasts at least
``min_repeat_s``, which keeps timer resolution out of µs-scale ops), after ``warmup`` untimed
calls; the statistic is the median per-call time over ``repeats`` repeats, with the inter-
quartile range and min–max as spread. Rates: GFLOP/s = flops / median, GB/s = bytes / median
(bytes read + written), and ``% ceiling`` divides by the machine's measured ceilings
(``ceilings.py``) when they are given.

Threads: ``pin_threads(n)`` must run before numpy is imported for the environment variables
to take effect; it also applies threadpoolctl (numpy's OpenBLAS, torch's OpenMP) at run time
and ``torch.set_num_threads`` when PyTorch is importable. Scripts call it first thing.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# benchmark the working tree's minigen, installed or not
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_REPO, "minigen")) and _REPO not in sys.path:
    sys.path.insert(0, _REPO)


def pin_threads(n: int | None = None) -> dict:
    """Use ``n`` threads (default: every core) in numpy's BLAS and in PyTorch; say how."""
    n = n or os.cpu_count() or 1
    how = []
    if "numpy" not in sys.modules:
        for var in _THREAD_VARS:
            os.environ[var] = str(n)
        how.append(f"{'/'.join(_THREAD_VARS)}={n} set before importing numpy")
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
        how.append(f"threadpoolctl.threadpool_limits({n})")
    except ImportError:
        how.append("threadpoolctl not installed")
    # Which OpenMP runtime the process gets. PyTorch's wheel bundles its own libgomp.so.1 and
    # minigen._C links the system's; both have the same soname, so whichever loads first is the
    # one runtime of the process, started with the OMP_WAIT_POLICY of that moment (neither
    # library sets it any more: libgomp's default, idle threads spin a little, then sleep).
    # "torch-first" (default) or "minigen-first" chooses whose libgomp it is; earlier, when
    # minigen set PASSIVE, the order changed PyTorch's small elementwise ops by up to 3.6×.
    # MINIGEN_BENCH_LOAD_ORDER chooses.
    order = os.environ.get("MINIGEN_BENCH_LOAD_ORDER", "torch-first")
    if order not in ("torch-first", "minigen-first"):
        raise ValueError(f"MINIGEN_BENCH_LOAD_ORDER={order!r}: torch-first or minigen-first")
    if order == "minigen-first":
        try:
            import minigen._native as _mn
            _mn.available()
        except ImportError:
            pass
    how.append(f"load order {order} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
               " when the first OpenMP runtime loaded)")
    try:
        import torch
        torch.set_num_threads(n)
        how.append(f"torch.set_num_threads({n})")
    except ImportError:
        pass
    return {"threads": n, "how": "; ".join(how)}


def cpu_busy(interval: float = 0.5) -> float | None:
    """Fraction of all cores busy over ``interval`` seconds (from /proc/stat), or None.

    Benchmarks on a shared machine record this before they start: other processes on a
    2-core machine slow multithreaded BLAS (and PyTorch's spinning OpenMP threads) a lot.
    """
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    try:
        t0, i0 = read()
        time.sleep(interval)
        t1, i1 = read()
    except (OSError, ValueError):
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_for_quiet(max_wait_s: float, threshold: float = 0.15) -> float | None:
    """Wait (up to ``max_wait_s``) until the machine is less than ``threshold`` busy; return
    the last busy fraction seen (recorded in the JSON as ``background_busy``)."""
    deadline = time.time() + max_wait_s
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.time() < deadline:
        time.sleep(2.0)
        busy = cpu_busy()
    return busy


def try_import_torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def machine() -> dict:
    """CPU model (from /proc/cpuinfo), core count, library versions."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numpy as np
    info = {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    # Environment that changes numpy's BLAS speed: OPENBLAS_CORETYPE=Haswell (set on the 2-core
    # development machine) halves its float32 GEMM rate on an AVX-512 CPU; the thread timeout
    # decides how long its idle workers spin after a call. Recorded so runs compare fairly.
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY"):
        info[var.lower()] = os.environ.get(var, "unset")
    torch = try_import_torch()
    if torch is not None:
        info["torch"] = torch.__version__
    try:
        import minigen
        info["minigen"] = minigen.__version__
    except ImportError:
        pass
    return info


class Timing:
    """Per-call times (seconds) of one measurement and their summary statistics."""

    def __init__(self, per_call: list[float], number: int):
        self.per_call = sorted(per_call)
        self.number = number
        q = statistics.quantiles(self.per_call, n=4) if len(self.per_call) > 1 else \
            [self.per_call[0]] * 3
        self.median = statistics.median(self.per_call)
        self.q25, self.q75 = q[0], q[2]
        self.min, self.max = self.per_call[0], self.per_call[-1]

    @property
    def iqr_pct(self) -> float:
        return 100.0 * (self.q75 - self.q25) / self.median if self.median else 0.0


def measure(fn, *, warmup: int = 3, repeats: int = 15, number: int | None = None,
            min_repeat_s: float = 0.02, sync=None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` repeats of ``number`` calls.

    sync: called after each repeat (e.g. a device synchronize) so asynchronous work is counted.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    if number is None:  # calibrate: enough calls that one repeat lasts min_repeat_s
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if sync:
                sync()
            dt = time.perf_counter() - t0
            if dt >= min_repeat_s or number >= 1 << 20:
                break
            number = max(number * 2, int(number * min_repeat_s / max(dt, 1e-9) * 1.2))
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if sync:
            sync()
        per_call.append((time.perf_counter() - t0) / number)
    return Timing(per_call, number)


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _repo_relative(arg: str) -> str:
    """A command-line word with this checkout's absolute path made relative to it (the saved
    command then reads the same on every machine)."""
    return arg.replace(_REPO + os.sep, "") if _REPO + os.sep in arg else arg


class Report:
    """Rows of results: printed as a table, saved as JSON with the machine and thread setup."""

    def __init__(self, title: str, threads: dict | None = None, ceilings: dict | None = None,
                 command: str | None = None):
        self.title = title
        self.threads = threads
        self.ceilings = ceilings or {}
        self.command = command or " ".join([os.path.basename(sys.executable)] +
                                           [_repo_relative(a) for a in sys.argv])
        self.rows: list[dict] = []
        self.background_busy: float | None = None

    def add(self, timing: Timing, *, name: str, provider: str, flops: float | None = None,
            bytes: float | None = None, **extra) -> dict:
        row = {"name": name, "provider": provider, "median_s": timing.median,
               "q25_s": timing.q25, "q75_s": timing.q75, "min_s": timing.min,
               "max_s": timing.max, "repeats": len(timing.per_call), "number": timing.number}
        if flops:
            row["flops"] = flops
            row["gflops"] = flops / timing.median / 1e9
            if self.ceilings.get("sgemm_gflops"):
                row["pct_ceiling"] = 100.0 * row["gflops"] / self.ceilings["sgemm_gflops"]
        if bytes:
            row["bytes"] = bytes
            row["gbps"] = bytes / timing.median / 1e9
            if self.ceilings.get("copy_gbps") and "pct_ceiling" not in row:
                row["pct_ceiling"] = 100.0 * row["gbps"] / self.ceilings["copy_gbps"]
        row.update(extra)
        self.rows.append(row)
        return row

    def add_ratios(self, numerator: str = "minigen", denominator: str = "torch"):
        """Set ``ratio`` = numerator median / denominator median on rows of the same name."""
        base = {r["name"]: r["median_s"] for r in self.rows if r["provider"] == denominator}
        for r in self.rows:
            if r["provider"] == numerator and r["name"] in base:
                r["ratio"] = r["median_s"] / base[r["name"]]

    def table(self, markdown: bool = False) -> str:
        cols = [("name", "workload"), ("provider", "provider"), ("median", "median"),
                ("spread", "IQR (min–max)")]
        if any("gflops" in r for r in self.rows):
            cols.append(("gflops", "GFLOP/s"))
        if any("gbps" in r for r in self.rows):
            cols.append(("gbps", "GB/s"))
        if any("pct_ceiling" in r for r in self.rows):
            cols.append(("pct_ceiling", "% ceiling"))
        if any("ratio" in r for r in self.rows):
            cols.append(("ratio", "minigen/torch"))
        lines = []
        for r in self.rows:
            cells = []
            for key, _ in cols:
                if key == "median":
                    cells.append(_fmt_time(r["median_s"]))
                elif key == "spread":
                    cells.append(f"{_fmt_time(r['q25_s'])}–{_fmt_time(r['q75_s'])} "
                                 f"({_fmt_time(r['min_s'])}–{_fmt_time(r['max_s'])})")
                elif key in ("gflops", "gbps", "pct_ceiling"):
                    cells.append(f"{r[key]:.1f}" if key in r else "")
                elif key == "ratio":
                    cells.append(f"{r[key]:.2f}×" if key in r else "")
                else:
                    cells.append(str(r[key]))
            lines.append(cells)
        heads = [h for _, h in cols]
        if markdown:
            out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
            out += ["| " + " | ".join(c) + " |" for c in lines]
            return "\n".join(out)
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
                  for i, h in enumerate(heads)]
        fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
        out = [f"== {self.title} ==", fmt(heads), fmt(["-" * w for w in widths])]
        out += [fmt(c) for c in lines]
        return "\n".join(out)

    def print_table(self):
        print(self.table(), flush=True)

    def to_dict(self) -> dict:
        return {"title": self.title, "date": datetime.date.today().isoformat(),
                "command": self.command, "machine": machine(), "threads": self.threads,
                "ceilings": self.ceilings, "background_busy": self.background_busy,
                "rows": self.rows}

    def write_json(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        print(f"wrote {path}")


def common_args(description: str):
    """argparse parser with the options every benchmark script takes."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for numpy's BLAS and PyTorch (default: all cores)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default=None, help="where to write the JSON results")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    p.add_argument("--no-ceilings", action="store_true", help="skip measuring ceilings")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the CPU idle")
    return p


def start(report: Report, args) -> None:
    """Common start of a benchmark run: wait for a quiet machine if asked, record the load."""
    busy = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else cpu_busy()
    report.background_busy = busy
    if busy is not None:
        note = "  (other processes are running: timings will be noisy)" if busy > 0.15 else ""
        print(f"background CPU busy before the run: {100 * busy:.0f}%{note}", flush=True)


def cpu_ceilings(report: Report, args) -> None:
    """Measure the CPU ceilings into ``report.ceilings`` (unless --no-ceilings) and say them."""
    if args.no_ceilings:
        return
    from ceilings import measure_ceilings
    report.ceilings = measure_ceilings(None, use_torch=not args.no_torch)
    c = report.ceilings
    print(f"ceilings: sgemm {c['sgemm_gflops']:.1f} GFLOP/s (fastest of numpy "
          f"{c.get('sgemm_gflops_numpy', float('nan')):.1f}, minigen "
          f"{c.get('sgemm_gflops_minigen', float('nan')):.1f}, torch "
          f"{c.get('sgemm_gflops_torch', float('nan')):.1f}), copy {c['copy_gbps']:.1f} GB/s")


def finish(report: Report, args, threads: dict) -> Report:
    """The common end of a benchmark script: the table, how threads were set, the JSON."""
    report.print_table()
    print(f"threads: {threads['how']}")
    if args.json:
        report.write_json(args.json)
    return report


def report_from_json(path: str) -> Report:
    with open(path) as f:
        d = json.load(f)
    rep = Report(d["title"], threads=d.get("threads"), ceilings=d.get("ceilings"),
                 command=d.get("command"))
    rep.rows = d["rows"]
    rep.background_busy = d.get("background_busy")
    return rep


if __name__ == "__main__":
    # python benchmarks/harness.py results/*.json: the saved results as markdown tables
    for p in sys.argv[1:]:
        r = report_from_json(p)
        print(f"### {r.title}\n\n`{r.command}`\n\n{r.table(markdown=True)}\n")
