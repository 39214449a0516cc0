"""Run every CPU benchmark of benchmarks/, one process per script, JSON under benchmarks/results/.

The record behind each table of RESULTS.md: every kernel script (K1–K7) and E2/E3, ``--runs``
times over (run 1, run 2, ...: minigen's times on the 2-core VM vary between processes, so one
run is not enough), then once the ceilings, E4 sampling and E1. Each script waits for a quiet
machine first (``--wait-quiet``) and reports the background load it started under.

    python benchmarks/run_all.py [--runs 2] [--tag TAG] [--threads 2] [--only conv2d,e2_unet]

Writes benchmarks/results/<script>_<tag>run<r>.json (and <script>_<tag>.json for the once-only
scripts); prints each script's output as it goes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# script → repeats (medians of that many timed calls); the slow ones get fewer
REPEATED = [("conv2d", 11), ("attention", 11), ("noise_schedule", 11), ("logdet", 9),
            ("e2_unet", 7)]
ONCE = [("ceilings", None), ("e4_sampling", 2), ("e1_vae", None)]


def script(name: str) -> str:
    return os.path.join(HERE, name + ".py" if name == "ceilings" else f"bench_{name}.py")


def run(name: str, repeats, json_path: str, args) -> int:
    cmd = [sys.executable, os.path.relpath(script(name)), "--wait-quiet", str(args.wait_quiet),
           "--threads", str(args.threads), "--json", os.path.relpath(json_path)]
    if repeats is not None:
        cmd += ["--repeats", str(repeats)]
    print(f"\n$ python {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd)
    print(f"[{name}: exit {rc}, {time.time() - t0:.0f} s]", flush=True)
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--tag", default="", help="prefix of the run number in the JSON names")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wait-quiet", type=float, default=90.0)
    p.add_argument("--only", default=None, help="comma-separated script names (e.g. conv2d)")
    args = p.parse_args()
    only = set(args.only.split(",")) if args.only else None
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    failed = []
    for r in range(1, args.runs + 1):
        for name, repeats in REPEATED:
            if only is None or name in only:
                path = os.path.join(out, f"{name}_{args.tag}run{r}.json")
                if run(name, repeats, path, args):
                    failed.append(f"{name} (run {r})")
    for name, repeats in ONCE:
        if only is None or name in only:
            suffix = f"_{args.tag.rstrip('_')}" if args.tag else ""
            if run(name, repeats, os.path.join(out, f"{name}{suffix}.json"), args):
                failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
