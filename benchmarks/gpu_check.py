"""The GPU check: everything this project's GPU code should show on first contact with a GPU, in
one call that stays under 8 minutes, written to one JSON and one markdown table.

    python benchmarks/gpu_check.py --out DIR              # on a machine with an NVIDIA GPU
    python benchmarks/gpu_check.py --out DIR --dry-run    # anywhere: tiny sizes, CPU, interpreter
        [--parts install,env,...] [--no-install] [--install] [--budget SECONDS]
        [--part-budget attention=60,...] [--repeats N] [--torch-compile]

Notes: what it measures on a GPU, in this order (each part a name for ``--parts``):

  install         ``pip install -e . --no-deps --no-build-isolation`` (the C++ extension and the
                  ``minigen.kernels`` mapping); its exit status and output tail. Not in --dry-run
                  unless --install; never with --no-install.
  env             versions (python, numpy, cupy, torch, triton, minigen), the GPU (name, memory,
                  compute capability, driver / runtime), ``minigen info`` and which implementation
                  of each kernel family dispatch picks on cuda, and why the others cannot run.
  gpu_tests       ``python -m pytest -m gpu``: passed / failed / skipped counts and the names of
                  the failures.
  ceilings        the measured peaks every later row is divided by: matrix products of 8192²
                  (float32 with TF32 off — the sgemm peak —, TF32, float16, bfloat16, float64;
                  torch when it has CUDA, else CuPy's cuBLAS) and a 1 GiB device-to-device copy
                  (GB/s counts bytes read + written).
  attention       K3/K4 at GPU sizes (benchmarks/bench_attention.py GPU_WORK: 16×16×2048×64,
                  causal, ×128) in float16 / bfloat16 / float32, forward and forward + backward,
                  every minigen implementation available on cuda (``dispatch.use(attention=…)``)
                  against ``torch.nn.functional.scaled_dot_product_attention``.
  conv2d          K1/K2 (bench_conv2d.py GPU_WORK 128×128×64×64 3×3 in three dtypes; K1 and the
                  stride-2 K2 in float32) forward and forward + backward against torch conv2d
                  (cuDNN, TF32 as PyTorch defaults; float32 also with TF32 off: "torch-ieee").
  noise_schedule  K5 on 256×3×256×256 (q_sample, DDPM step, DDIM step, CFG + DDIM step),
                  float32 / float16, the fused minigen ops against the same math as eager torch
                  ops (bench_noise_schedule.run_torch); GB/s and share of the copy bandwidth.
  logdet          K6/K7: batched slogdet forward + backward (4096×16×16, 4096×32×32 float32,
                  4096×16×16 float64, 1024×64×64 float32; 256×256 float64) against
                  torch.linalg.slogdet, and the affine coupling 256×48×64×64 against eager torch.
  e2_e3           the E2 training step and E3 forward (batch 64, float32) of minigen's UNet on
                  the GPU against the PyTorch twin (benchmarks/torch_unet.py) with the same
                  weights and inputs; the first 3 losses of both are compared (twin check).
                  With --torch-compile, E3 also through torch.compile.
  ddim_sync       whether DDIM sampling (the class-conditional E2 UNet, batch 8, classifier-free
                  guidance, 5 steps of ``minigen.diffusion.sample``) makes the host wait for the
                  GPU. Before each step a spin kernel keeps the GPU busy for longer than the host
                  needs to enqueue a step; after the step the stream is queried (no wait): still
                  busy = the host did not synchronise in that step, done = it did. Also under
                  ``cupyx.allow_synchronize(False)`` when this CuPy still has it (first sync's
                  place), and the same probe around one E2 training step.

Every kernel row: median time over repeats (synchronized perf_counter, harness.measure, after a
timed first call that includes Triton's compilation), TFLOP/s or GB/s, "% peak" = the row's rate
over the matching measured peak (FLOP rows: the matrix-product peak of the row's dtype; float32
against TF32-off, so fp32 kernels that use TF32 can read above 100 % — the JSON also has
pct_peak_tf32 —; byte rows: the copy bandwidth), "× torch" = minigen's time / PyTorch's on the same workload (below 1: minigen is
faster), and "max rel diff" = max |minigen − torch| / max |torch| on the forward output (in a
dry run without torch: against minigen's numpy reference). The median is of ``--repeats``
repeats (5), each at least 20 ms of back-to-back calls.

How to read the output (DIR/gpu_check.md, DIR/gpu_check.json): the "Parts" table gives each
part's status — ok; failed (a case raised, the part crashed or ran out of time: its traceback is
under "Failures" and in the JSON, with the log in DIR/logs/PART.log); skipped (with the reason:
no GPU, no torch, budget spent, not asked for). Rows measured before a failure are kept.

Robustness: each part runs in its own process (a crashed CUDA context or a hung compile cannot
take the others down) with a timeout: its budget, cut so that the parts after it keep their
reserves (PARTS below) out of --budget; parts whose turn comes after the budget is spent are
skipped with that reason. ``pytest -m gpu`` spreads over 4 workers when pytest-xdist is there.
The report is rewritten after every part, so whatever finished is on disk even if the whole call
is killed.

--dry-run (CPU only, under a minute): the same parts at tiny sizes, numpy instead of CuPy, the
Triton kernels in Triton's interpreter (TRITON_INTERPRET=1 set in the parts' environment before
triton loads), E2/E3 on minigen's CPU kernels; the PyTorch rows only when torch is importable;
ddim_sync runs its loop on the CPU and is reported skipped (the check needs a GPU). It is a test:
tests/test_gpu_check.py.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (name, kind, budget, reserve), seconds on a GPU. "cmd": a command run by the parent; "py": a
# part function below, run in a child process. A part's timeout is its budget, cut so that
# every later part keeps its reserve out of --budget: a slow part (the first Triton compiles,
# the GPU tests) cannot starve the last ones. A part that ends early leaves its time to the rest.
PARTS = [
    ("install", "cmd", 120, 60),
    ("env", "py", 25, 10),
    ("gpu_tests", "cmd", 120, 60),
    ("ceilings", "py", 25, 10),
    ("attention", "py", 80, 30),
    ("conv2d", "py", 45, 20),
    ("noise_schedule", "py", 25, 10),
    ("logdet", "py", 30, 15),
    ("e2_e3", "py", 45, 25),
    ("ddim_sync", "py", 30, 20),
]
PART_NAMES = [p[0] for p in PARTS]
RESERVES = {p[0]: float(p[3]) for p in PARTS}
DEFAULT_BUDGET = 460.0      # seconds: under 8 minutes with the parent's own overhead
MIN_START = 3.0             # a part is not started with less time than this left
STATUSES = ("ok", "failed", "skipped")


# =============================================================================== the parent
def _write_json(path: str, obj) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "…" + text[-n:]


def run_command(cmd: list[str], timeout: float, log_path: str, env=None, cwd=REPO) -> dict:
    """Run ``cmd`` in its own process group with output to ``log_path``; on timeout kill that
    group (pip's compilers, pytest's workers). Returns rc (None on timeout), seconds, output."""
    t0 = time.time()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    with open(log_path, errors="replace") as f:
        out = f.read()
    return {"rc": rc, "seconds": time.time() - t0, "output": out}


def child_env(dry_run: bool) -> dict:
    env = dict(os.environ)
    if dry_run:
        env["TRITON_INTERPRET"] = "1"      # before triton is imported in the child
    else:
        env.pop("TRITON_INTERPRET", None)  # never time the interpreter on a GPU
    env.setdefault("PIP_NO_INPUT", "1")
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def part_install(args, timeout, log_path) -> dict:
    if args.no_install:
        return {"status": "skipped", "reason": "--no-install"}
    if args.dry_run and not args.install:
        return {"status": "skipped", "reason": "dry run (add --install to build here too)"}
    cmd = [sys.executable, "-m", "pip", "install", "-e", ".", "--no-deps",
           "--no-build-isolation"]
    r = run_command(cmd, timeout, log_path, env=child_env(args.dry_run))
    info = {"command": "pip install -e . --no-deps --no-build-isolation", "rc": r["rc"]}
    if r["rc"] == 0:
        return {"status": "ok", "info": info}
    why = f"timed out after {timeout:.0f} s" if r["rc"] is None else f"exit status {r['rc']}"
    return {"status": "failed", "reason": f"pip install {why}", "info": info,
            "log_tail": _tail(r["output"])}


# -v lines: "tests/x.py::t PASSED [ 10%]", or with pytest-xdist "[gw0] [ 10%] PASSED tests/x.py::t"
_PYTEST_LINE = re.compile(r"^(?:tests/\S+ (?P<a>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b|"
                          r"\[gw\d+\] \[\s*\d+%\] (?P<b>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) "
                          r"tests/)")
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed|"
                           r"warnings?)\b")


def parse_pytest(output: str) -> dict:
    """Counts from pytest's final summary line; without one (killed), from the -v lines."""
    counts: dict[str, int] = {}
    summary = [ln for ln in output.splitlines() if re.match(r"^=+ .*\bin [\d.]+s", ln)]
    if summary:
        for n, what in _PYTEST_COUNT.findall(summary[-1]):
            key = {"error": "errors", "warning": "warnings"}.get(what, what)
            counts[key] = counts.get(key, 0) + int(n)
    else:
        names = {"PASSED": "passed", "FAILED": "failed", "ERROR": "errors",
                 "SKIPPED": "skipped", "XFAIL": "xfailed", "XPASS": "xpassed"}
        for ln in output.splitlines():
            m = _PYTEST_LINE.match(ln)
            if m:
                key = names[m.group("a") or m.group("b")]
                counts[key] = counts.get(key, 0) + 1
    failures = [ln for ln in output.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    return {"counts": counts, "failures": failures[:60]}


def part_gpu_tests(args, timeout, log_path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfE", "--tb=line",
           "-p", "no:cacheprovider"]
    import importlib.util
    workers = 0
    if not args.dry_run and importlib.util.find_spec("xdist") is not None:
        # Triton's compiles (CPU-bound) dominate a first GPU test run: spread them
        workers = min(4, max(1, (os.cpu_count() or 1) // 2))
        cmd += ["-n", str(workers)]
    r = run_command(cmd, timeout, log_path, env=child_env(args.dry_run))
    res = parse_pytest(r["output"])
    info = {"command": "python -m pytest -m gpu" + (f" -n {workers}" if workers else ""),
            "rc": r["rc"], **res}
    c = res["counts"]
    said = ", ".join(f"{v} {k}" for k, v in c.items()) or "no summary"
    if r["rc"] is None:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f} s ({said} so far)",
                "info": info, "log_tail": _tail(r["output"])}
    if r["rc"] == 0 or (r["rc"] == 5 and not c.get("failed")):   # 5: nothing selected
        return {"status": "ok", "reason": said, "info": info}
    return {"status": "failed", "reason": f"pytest exit status {r['rc']}: {said}", "info": info,
            "log_tail": _tail(r["output"])}


def part_in_child(name: str, args, timeout: float, log_path: str, result_path: str) -> dict:
    """Run one part function in a child process; its rows survive a timeout or a crash."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(result_path)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--result", result_path,
           "--out", args.out, "--repeats", str(args.repeats or 0)]
    if args.dry_run:
        cmd.append("--dry-run")
    if args.torch_compile:
        cmd.append("--torch-compile")
    r = run_command(cmd, timeout, log_path, env=child_env(args.dry_run))
    res = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            res = json.load(f)
    if r["rc"] is None:
        res["status"] = "failed"
        res["reason"] = f"timed out after {timeout:.0f} s (rows measured before are kept)"
        res["log_tail"] = _tail(r["output"])
    elif r["rc"] != 0 or res.get("status") not in STATUSES:
        res["status"] = "failed"
        res["reason"] = (res.get("reason") or
                         f"the part's process ended with exit status {r['rc']} before its result")
        res["log_tail"] = _tail(r["output"])
    elif res["status"] == "failed":
        res["log_tail"] = _tail(r["output"])
    return res


def run_parts(names, run_one, budget: float, budgets: dict, reserves: dict | None = None,
              clock=time.time, on_result=None) -> list[dict]:
    """Run the parts in order. Timeout of a part: its budget, at most the time left less the
    reserves of the parts after it, at least its own reserve (as far as time is left). Once
    less than MIN_START seconds are left, the rest are skipped with that reason. A part that
    raises is recorded as failed with its traceback; the next one runs."""
    reserves = reserves or {}
    results = []
    start = clock()
    for i, name in enumerate(names):
        left = budget - (clock() - start)
        t0 = clock()
        if left < MIN_START:
            res = {"status": "skipped",
                   "reason": f"time budget spent ({budget:.0f} s for the whole check)"}
            timeout = 0.0
        else:
            later = sum(reserves.get(n, 0.0) for n in names[i + 1:])
            timeout = max(min(budgets[name], left - later), min(reserves.get(name, 0.0), left))
            try:
                res = run_one(name, timeout)
            except Exception as exc:
                res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                       "error": traceback.format_exc()}
        res = {"name": name, "status": res.get("status", "failed"), "reason": res.get("reason"),
               "seconds": round(clock() - t0, 2), "timeout_s": round(timeout, 1),
               **{k: v for k, v in res.items() if k not in ("name", "status", "reason")}}
        results.append(res)
        if on_result:
            on_result(results)
    return results


def parse_part_budgets(text: str | None) -> dict:
    budgets = {name: float(b) for name, _, b, _ in PARTS}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        if name not in budgets or not value:
            raise SystemExit(f"--part-budget: expected NAME=SECONDS with NAME in "
                             f"{', '.join(PART_NAMES)}; got {item!r}")
        budgets[name] = float(value)
    return budgets


def select_parts(text: str | None) -> list[str]:
    if not text:
        return list(PART_NAMES)
    asked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in asked if p not in PART_NAMES]
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(unknown)}; known: "
                         f"{', '.join(PART_NAMES)}")
    return [p for p in PART_NAMES if p in asked]       # always in the check's order


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_check.json / .md and logs")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU only: tiny sizes, Triton interpreter, numpy for CuPy")
    p.add_argument("--parts", default=None, help=f"comma-separated subset of: "
                   f"{','.join(PART_NAMES)}")
    p.add_argument("--no-install", action="store_true", help="skip the pip install part")
    p.add_argument("--install", action="store_true", help="run the install part in --dry-run")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help="seconds for the whole check (default %(default)s)")
    p.add_argument("--part-budget", default=None, metavar="NAME=S,...",
                   help="override per-part budgets (seconds)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per row (default 5 on a GPU, 2 in --dry-run)")
    p.add_argument("--torch-compile", action="store_true",
                   help="also time E3 through torch.compile (adds its compile time)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args)

    names = select_parts(args.parts)
    budgets = parse_part_budgets(args.part_budget)
    args.out = os.path.abspath(args.out)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "parts"), exist_ok=True)
    report = {"title": "minigen GPU check", "date": datetime.datetime.now().isoformat(
        timespec="seconds"), "command": " ".join(["python", os.path.relpath(__file__, REPO)] +
                                                 [a for a in (argv or sys.argv[1:])]),
              "dry_run": args.dry_run, "budget_s": args.budget, "parts": []}
    t_start = time.time()

    def run_one(name, timeout):
        log = os.path.join(args.out, "logs", f"{name}.log")
        print(f"[gpu_check] {name}: up to {timeout:.0f} s …", flush=True)
        if name == "install":
            return part_install(args, timeout, log)
        if name == "gpu_tests":
            return part_gpu_tests(args, timeout, log)
        return part_in_child(name, args, timeout, log,
                             os.path.join(args.out, "parts", f"{name}.json"))

    def save(results):
        report["parts"] = results + [{"name": n, "status": "skipped", "reason": "not asked for "
                                      "(--parts)"} for n in PART_NAMES if n not in names]
        report["parts"].sort(key=lambda r: PART_NAMES.index(r["name"]))
        report["elapsed_s"] = round(time.time() - t_start, 1)
        env = next((r for r in results if r["name"] == "env"), None)
        if env and env.get("info"):
            report["machine"] = env["info"].get("machine")
        _write_json(os.path.join(args.out, "gpu_check.json"), report)
        with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
            f.write(markdown(report))
        last = results[-1]
        print(f"[gpu_check] {last['name']}: {last['status']}"
              f"{' — ' + last['reason'] if last.get('reason') else ''} ({last['seconds']} s)",
              flush=True)

    results = run_parts(names, run_one, args.budget, budgets, RESERVES, on_result=save)
    print(f"[gpu_check] wrote {os.path.join(args.out, 'gpu_check.md')} and gpu_check.json "
          f"({time.time() - t_start:.0f} s)")
    return 1 if any(r["status"] == "failed" for r in results) else 0


# ============================================================================== the report
def _fmt_s(s) -> str:
    if s is None:
        return ""
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.2f} s"


def _fmt(v, spec) -> str:
    return "" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    out = [f"# {report['title']}{' (dry run: CPU, tiny sizes)' if report['dry_run'] else ''}",
           "", f"{report['date']} · `{report['command']}` · {report.get('elapsed_s', 0):.0f} s "
           f"of a {report['budget_s']:.0f} s budget", ""]
    m = report.get("machine") or {}
    if m:
        out += ["Machine: " + "; ".join(f"{k} {v}" for k, v in m.items() if v is not None), ""]
    out += ["## Parts", "", "| part | status | seconds | timeout | note |", "|---|---|---|---|---|"]
    for r in report["parts"]:
        note = (r.get("reason") or "").replace("|", "/").replace("\n", " ")
        out.append(f"| {r['name']} | {r['status']} | {_fmt(r.get('seconds'), '.1f')} | "
                   f"{_fmt(r.get('timeout_s'), '.0f')} | {note} |")
    ceil = next((r for r in report["parts"] if r["name"] == "ceilings"), {}).get("info", {})
    peaks = ceil.get("peaks") if ceil else None
    if peaks:
        out += ["", "## Measured peaks", "", "| what | value |", "|---|---|"]
        for k, v in peaks.items():
            unit = "GB/s" if k.startswith("copy") else "TFLOP/s"
            out.append(f"| {k} | {v:.1f} {unit} |")
    rows = [(r["name"], row) for r in report["parts"] for row in r.get("rows", [])]
    if rows:
        out += ["", "## Results", "",
                "| part | workload | provider | median | first call | TFLOP/s | GB/s | % peak | "
                "× torch | max rel diff |", "|---|---|---|---|---|---|---|---|---|---|"]
        for part, row in rows:
            out.append(
                f"| {part} | {row['workload']} | {row['provider']} | {_fmt_s(row['median_s'])} "
                f"| {_fmt_s(row.get('first_call_s'))} | {_fmt(row.get('tflops'), '.2f')} | "
                f"{_fmt(row.get('gbps'), '.1f')} | {_fmt(row.get('pct_peak'), '.1f')} | "
                f"{_fmt(row.get('ratio_vs_torch'), '.2f')} | "
                f"{_fmt(row.get('max_rel_diff'), '.1e')} |")
    extra = []
    for r in report["parts"]:
        info = r.get("info") or {}
        if r["name"] == "gpu_tests" and info.get("counts") is not None:
            extra += [f"- gpu tests: {info['counts']}"] + [f"  - {f}" for f in
                                                          info.get("failures", [])[:25]]
        if r["name"] == "ddim_sync" and info.get("summary"):
            extra.append(f"- host synchronisation: {info['summary']}")
        if r["name"] == "e2_e3" and info.get("twin_check"):
            extra.append(f"- E2 twin check: {info['twin_check']}")
        for c in r.get("cases", []):
            if c["status"] == "skipped":
                extra.append(f"- {r['name']}: {c['name']} skipped — {c['reason']}")
    if extra:
        out += ["", "## Checks and skipped cases", ""] + extra
    fails = [r for r in report["parts"] if r["status"] == "failed"]
    if fails:
        out += ["", "## Failures", ""]
        for r in fails:
            out += [f"### {r['name']}: {r.get('reason') or ''}", ""]
            for c in r.get("cases", []):
                if c["status"] == "failed":
                    out += [f"- case {c['name']}:", "", "```", _tail(c.get("error", ""), 1500),
                            "```", ""]
            if r.get("error"):
                out += ["```", _tail(r["error"], 2000), "```", ""]
            elif r.get("log_tail") and not r.get("cases"):
                out += ["```", _tail(r["log_tail"], 1500), "```", ""]
    return "\n".join(out) + "\n"


# ============================================================================ the child side
class SkipPart(Exception):
    """The whole part cannot run here (the reason is the message)."""


class SkipCase(Exception):
    """One case cannot run here (e.g. this CuPy has no bfloat16)."""


class CheckFailed(Exception):
    """The part ran and its check did not hold (the message says what was found)."""


class Ctx:
    """What a part function gets: the device, its array module and sync, timing, and the
    result (rows, cases, info) saved to ``--result`` after every case."""

    def __init__(self, part: str, args):
        self.part, self.dry, self.args = part, args.dry_run, args
        self.result_path = args.result
        self.rows: list[dict] = []
        self.cases: list[dict] = []
        self.info: dict = {}
        self.repeats = args.repeats or (2 if self.dry else 5)
        self.peaks = self._load_peaks(args.out)
        self._torch = None
        self.device = self.xp = self.sync = None

    @staticmethod
    def _load_peaks(out) -> dict:
        path = os.path.join(out or "", "parts", "ceilings.json")
        try:
            with open(path) as f:
                return json.load(f).get("info", {}).get("peaks", {}) or {}
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------- device and torch
    def setup_device(self):
        """cuda with CuPy on a GPU run (SkipPart when there is none); cpu + numpy when dry."""
        import numpy as np
        if self.dry:
            self.device, self.xp, self.sync = "cpu", np, None
            return
        from minigen.backend import cupy_module
        try:
            cp = cupy_module()
        except RuntimeError as exc:
            raise SkipPart(f"no CUDA device: {exc}") from None
        self.device, self.xp, self.sync = "cuda", cp, cp.cuda.Device().synchronize
        self.info.setdefault("gpu", cp.cuda.runtime.getDeviceProperties(0)["name"].decode())

    def torch(self):
        """(torch, None) when PyTorch can run the comparison here, else (None, reason)."""
        if self._torch is None:
            try:
                import torch
            except Exception as exc:
                self._torch = (None, f"torch not importable ({type(exc).__name__}: {exc})")
            else:
                if not self.dry and not torch.cuda.is_available():
                    self._torch = (None, "torch has no CUDA here")
                else:
                    self._torch = (torch, None)
        return self._torch

    def tsync(self):
        torch, _ = self.torch()
        return torch.cuda.synchronize if (torch is not None and not self.dry) else None

    def tdevice(self):
        return "cpu" if self.dry else "cuda"

    def impls(self, family: str) -> list[str]:
        """minigen implementations of ``family`` to time: triton (and cuda where the family has
        one) on a GPU, triton in its interpreter in a dry run. Those that cannot run here become
        skipped cases; none at all fails the part (CheckFailed), since then nothing of
        minigen's would be measured."""
        from minigen import dispatch
        listed = {r["implementation"]: r for r in dispatch.status((self.device,))
                  if r["family"] == family}
        out, why = [], []
        for name in ("triton", "cuda"):
            row = listed.get(name)
            if row is None:
                if name == "triton":      # every family has one: its module did not load
                    why.append("triton: minigen.kernels not importable (is minigen installed? "
                               "pip install -e .)")
                    self.skip_case(f"{family}/triton", why[-1])
                continue
            if row["unavailable"]:
                why.append(f"{name}: {row['unavailable']}")
                self.skip_case(f"{family}/{name}", row["unavailable"])
            else:
                out.append(name)
        if self.dry:     # the raw-CUDA implementation is listed for cuda only
            for row in dispatch.status(("cuda",)):
                if row["family"] == family and row["implementation"] == "cuda":
                    self.skip_case(f"{family}/cuda", "dry run: raw CUDA kernels need CuPy and "
                                   "a GPU")
        if not out:
            raise CheckFailed(f"no minigen implementation of {family} can run on "
                              f"{self.device}: {'; '.join(why)}")
        return out

    # ------------------------------------------------------------------- cases and rows
    @contextlib.contextmanager
    def case(self, name: str):
        t0 = time.time()
        entry = {"name": name}
        try:
            yield
            entry["status"] = "ok"
        except SkipCase as exc:
            entry.update(status="skipped", reason=str(exc))
        except Exception as exc:
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                         error=traceback.format_exc())
            print(f"case {name} failed:\n{entry['error']}", flush=True)
        entry["seconds"] = round(time.time() - t0, 3)
        self.cases.append(entry)
        self.save()

    def skip_case(self, name: str, reason: str):
        self.cases.append({"name": name, "status": "skipped", "reason": reason})

    def time(self, fn, sync):
        """(harness Timing, first-call seconds): the first call (Triton's compile included)
        is timed apart, then harness.measure."""
        from harness import measure
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        first = time.perf_counter() - t0
        if self.dry:     # plumbing, not speed: one call per repeat, no warm-up
            tm = measure(fn, warmup=0, repeats=self.repeats, number=1)
        else:
            tm = measure(fn, warmup=1, repeats=self.repeats, min_repeat_s=0.02, sync=sync)
        return tm, first

    def add(self, tm, *, workload: str, provider: str, dtype: str | None = None,
            flops: float | None = None, nbytes: float | None = None, first: float | None = None,
            **extra) -> dict:
        row = {"workload": workload, "provider": provider, "dtype": dtype,
               "median_s": tm.median, "q25_s": tm.q25, "q75_s": tm.q75, "min_s": tm.min,
               "repeats": len(tm.per_call), "number": tm.number, "first_call_s": first}
        if flops:
            row["flops"] = flops
            row["tflops"] = flops / tm.median / 1e12
            peak = self.peaks.get(f"matmul_{dtype}") if dtype else None
            if peak:
                row["pct_peak"] = 100.0 * row["tflops"] / peak
                row["peak"] = f"matmul_{dtype}"
            if dtype == "float32" and self.peaks.get("matmul_tf32"):
                # float32 kernels that multiply on TF32 tensor cores: their own ceiling
                row["pct_peak_tf32"] = 100.0 * row["tflops"] / self.peaks["matmul_tf32"]
        if nbytes:
            row["bytes"] = nbytes
            row["gbps"] = nbytes / tm.median / 1e9
            if "pct_peak" not in row and self.peaks.get("copy_gbps"):
                row["pct_peak"] = 100.0 * row["gbps"] / self.peaks["copy_gbps"]
                row["peak"] = "copy_gbps"
        row.update({k: v for k, v in extra.items() if v is not None})
        self.rows.append(row)
        return row

    def ratios(self):
        base = {r["workload"]: r["median_s"] for r in self.rows if r["provider"] == "torch"}
        for r in self.rows:
            if r["provider"].startswith("minigen") and r["workload"] in base:
                r["ratio_vs_torch"] = r["median_s"] / base[r["workload"]]

    def result(self, status="ok", reason=None, error=None) -> dict:
        failed = [c["name"] for c in self.cases if c["status"] == "failed"]
        if status == "ok" and failed:
            status = "failed"
            reason = f"{len(failed)} case(s) failed: {', '.join(failed[:6])}" + (
                "…" if len(failed) > 6 else "")
        return {"name": self.part, "status": status, "reason": reason, "error": error,
                "rows": self.rows, "cases": self.cases, "info": self.info}

    def save(self, status="running", reason=None, error=None):
        if self.result_path:
            res = self.result(status, reason, error) if status != "running" else {
                "name": self.part, "status": "running", "rows": self.rows,
                "cases": self.cases, "info": self.info}
            _write_json(self.result_path, res)


def child_main(args) -> int:
    sys.path.insert(0, HERE)
    import harness  # noqa: F401  (puts the checkout first on sys.path)
    fn = PART_FUNCTIONS.get(args.child)
    if fn is None:
        raise SystemExit(f"--child: unknown part {args.child!r}")
    ctx = Ctx(args.child, args)
    ctx.save()
    try:
        fn(ctx)
        ctx.ratios()
        res = ctx.result()
    except SkipPart as exc:
        ctx.ratios()
        res = ctx.result("skipped", str(exc))
    except CheckFailed as exc:
        ctx.ratios()
        res = ctx.result("failed", str(exc))
    except Exception as exc:
        ctx.ratios()
        res = ctx.result("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        print(res["error"], flush=True)
    _write_json(args.result, res)
    return 0


# ------------------------------------------------------------------------- shared helpers
def host_f32(x):
    """A minigen Tensor, torch tensor or array as a float32 numpy array."""
    import numpy as np
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        return x.detach().float().cpu().numpy()
    if module == "minigen":
        import minigen as mg
        return np.asarray(x.detach().to(mg.float32).to("cpu").numpy())
    if module == "cupy":
        x = x.get()
    return np.asarray(x, dtype=np.float32)


def rel_diff(a, b) -> float | None:
    if a is None or b is None:
        return None
    import numpy as np
    a, b = host_f32(a), host_f32(b)
    scale = float(np.max(np.abs(b))) or 1.0
    return float(np.max(np.abs(a - b))) / scale


def mg_inputs(ctx, host_arrays, dtype: str, grads):
    """minigen Tensors on the device from float32 host arrays, cast to ``dtype``; SkipCase
    when this array module cannot hold that dtype (CuPy without bfloat16, numpy without
    ml_dtypes)."""
    import minigen as mg
    try:
        dt = getattr(mg, dtype)
        out = []
        for a, g in zip(host_arrays, grads):
            t = mg.tensor(a, device=ctx.device).to(dt).detach()
            if g:
                t.requires_grad_(True)
            out.append(t)
        return out
    except Exception as exc:
        raise SkipCase(f"cannot make {dtype} arrays on {ctx.device}: "
                       f"{type(exc).__name__}: {exc}") from None


def torch_inputs(ctx, host_arrays, dtype: str, grads):
    torch, _ = ctx.torch()
    tdt = getattr(torch, dtype)
    out = []
    for a, g in zip(host_arrays, grads):
        t = torch.from_numpy(a).to(device=ctx.tdevice(), dtype=tdt)
        out.append(t.requires_grad_() if g else t)
    return out


def _tf32_api(torch, kind: str):
    """(object, attribute, value for on, value for off) of PyTorch's TF32 switch for ``kind``
    ("matmul": cuBLAS, "conv": cuDNN convolutions): the fp32_precision API where this torch
    has it (mixing it with the legacy allow_tf32 flags raises), else allow_tf32."""
    if kind == "matmul":
        new, legacy = torch.backends.cuda.matmul, torch.backends.cuda.matmul
    else:
        new, legacy = getattr(torch.backends.cudnn, "conv", None), torch.backends.cudnn
    if new is not None and hasattr(new, "fp32_precision"):
        return new, "fp32_precision", "tf32", "ieee"
    return legacy, "allow_tf32", True, False


def tf32_state(torch, kind: str) -> str:
    obj, attr, _, _ = _tf32_api(torch, kind)
    try:
        return f"{attr}={getattr(obj, attr)!r}"
    except Exception as exc:
        return f"{attr} unreadable ({type(exc).__name__}: {exc})"


@contextlib.contextmanager
def tf32(torch, kind: str, enabled: bool):
    """TF32 on or off for ``kind`` inside the block, the previous setting restored after."""
    obj, attr, on, off = _tf32_api(torch, kind)
    old = getattr(obj, attr)
    setattr(obj, attr, on if enabled else off)
    try:
        yield
    finally:
        setattr(obj, attr, old)


# ================================================================================== parts
def part_env(ctx):
    import platform
    import numpy as np
    machine = {"python": platform.python_version(), "numpy": np.__version__,
               "platform": platform.platform()}
    for mod in ("cupy", "torch", "triton"):
        try:
            m = __import__(mod)
            machine[mod] = m.__version__
        except Exception as exc:
            machine[mod] = f"not importable ({type(exc).__name__}: {exc})"
    import minigen as mg
    machine["minigen"] = mg.__version__
    gpu = {}
    if mg.cuda_available():
        from minigen.backend import cupy_module
        cp = cupy_module()
        props = cp.cuda.runtime.getDeviceProperties(0)
        gpu = {"name": props["name"].decode(), "memory_gib": round(props["totalGlobalMem"] /
                                                                   2 ** 30, 1),
               "compute_capability": f"{props['major']}.{props['minor']}",
               "sm_count": props["multiProcessorCount"],
               "driver": cp.cuda.runtime.driverGetVersion(),
               "runtime": cp.cuda.runtime.runtimeGetVersion()}
        machine["gpu"] = gpu["name"]
    else:
        machine["gpu"] = "none"
    torch, why = ctx.torch()
    if torch is not None and not ctx.dry:
        gpu["torch_cuda"] = torch.version.cuda
        gpu["cudnn"] = torch.backends.cudnn.version()
    ctx.info["machine"] = machine
    ctx.info["gpu"] = gpu
    try:
        from minigen import _native
        ctx.info["native_extension"] = _native.available() or _native.reason()
    except Exception as exc:
        ctx.info["native_extension"] = f"{type(exc).__name__}: {exc}"
    from minigen import dispatch
    ctx.info["dispatch"] = [
        {k: r[k] for k in ("family", "device", "implementation", "active", "unavailable")}
        for r in dispatch.status(("cpu", "cuda"))]
    from minigen.info import info_text
    ctx.info["minigen_info"] = info_text()
    print(ctx.info["minigen_info"])
    if not ctx.dry and not mg.cuda_available():
        raise SkipPart("no CUDA device visible to CuPy: the GPU parts will be skipped")


def part_ceilings(ctx):
    """Matrix-product peaks per dtype and the copy bandwidth (module docstring)."""
    import numpy as np
    ctx.setup_device()
    peaks = {}
    srcs = {}
    n = 256 if ctx.dry else 8192
    torch, why = ctx.torch()
    if ctx.dry:
        for dt in ("float32", "float64"):
            with ctx.case(f"numpy matmul {n}³ {dt}"):
                a = np.random.default_rng(0).standard_normal((n, n)).astype(dt)
                tm, first = ctx.time(lambda: a @ a, None)
                r = ctx.add(tm, workload=f"matmul {n}³ {dt}", provider="numpy", dtype=dt,
                            flops=2.0 * n ** 3, first=first)
                peaks[f"matmul_{dt}"] = r["tflops"]
                srcs[f"matmul_{dt}"] = "numpy"
        nbytes = 8 * 2 ** 20
        with ctx.case("numpy copy 8 MiB"):
            src = np.ones(nbytes // 4, np.float32)
            dst = np.empty_like(src)
            tm, first = ctx.time(lambda: np.copyto(dst, src), None)
            r = ctx.add(tm, workload="copy 8 MiB", provider="numpy", nbytes=2 * nbytes)
            peaks["copy_gbps"] = r["gbps"]
    else:
        cp = ctx.xp
        if torch is not None:
            for label, dt, use_tf32 in (("float32", torch.float32, False),
                                        ("tf32", torch.float32, True),
                                        ("float16", torch.float16, False),
                                        ("bfloat16", torch.bfloat16, False),
                                        ("float64", torch.float64, False)):
                with ctx.case(f"torch matmul {n}³ {label}"):
                    with tf32(torch, "matmul", use_tf32):
                        a = torch.randn(n, n, device="cuda", dtype=dt)
                        b = torch.randn(n, n, device="cuda", dtype=dt)
                        c = torch.empty(n, n, device="cuda", dtype=dt)
                        tm, first = ctx.time(lambda: torch.mm(a, b, out=c),
                                             torch.cuda.synchronize)
                    r = ctx.add(tm, workload=f"matmul {n}³ {label}", provider="torch",
                                dtype=label, flops=2.0 * n ** 3, first=first)
                    peaks[f"matmul_{label}"] = r["tflops"]
                    srcs[f"matmul_{label}"] = "torch"
                    del a, b, c
        else:
            ctx.skip_case("torch matmul peaks", f"{why}: CuPy's cuBLAS instead")
        for label in ("float32", "float16", "float64"):
            if f"matmul_{label}" in peaks:
                continue
            with ctx.case(f"cupy matmul {n}³ {label}"):
                a = cp.random.standard_normal((n, n), dtype=cp.float32).astype(label)
                c = cp.empty_like(a)
                tm, first = ctx.time(lambda: cp.matmul(a, a, out=c), ctx.sync)
                r = ctx.add(tm, workload=f"matmul {n}³ {label}", provider="cupy", dtype=label,
                            flops=2.0 * n ** 3, first=first)
                peaks[f"matmul_{label}"] = r["tflops"]
                srcs[f"matmul_{label}"] = "cupy"
                del a, c
        nbytes = 2 ** 30
        with ctx.case("cupy copy 1 GiB"):
            src = cp.ones(nbytes // 4, cp.float32)
            dst = cp.empty_like(src)
            tm, first = ctx.time(lambda: dst.__setitem__(Ellipsis, src), ctx.sync)
            r = ctx.add(tm, workload="copy 1 GiB", provider="cupy", nbytes=2 * nbytes,
                        first=first)
            peaks["copy_gbps"] = r["gbps"]
            del src, dst
        if torch is not None:
            with ctx.case("torch copy 1 GiB"):
                src = torch.ones(nbytes // 4, device="cuda")
                dst = torch.empty_like(src)
                tm, first = ctx.time(lambda: dst.copy_(src), torch.cuda.synchronize)
                r = ctx.add(tm, workload="copy 1 GiB", provider="torch", nbytes=2 * nbytes,
                            first=first)
                peaks["copy_gbps"] = max(peaks.get("copy_gbps", 0.0), r["gbps"])
                del src, dst
    ctx.info["peaks"] = peaks
    ctx.info["peak_sources"] = srcs
    ctx.info["note"] = ("matmul peaks in TFLOP/s (float32 with TF32 off is the sgemm peak), "
                        "copy in GB/s (bytes read + written)")


def part_attention(ctx):
    import numpy as np
    import minigen as mg
    import minigen.nn.functional as F
    from minigen import dispatch
    from bench_attention import GPU_WORK, flops
    ctx.setup_device()
    work = GPU_WORK if not ctx.dry else [("1×2×16×16", (1, 2, 16, 16), False),
                                         ("1×2×16×16 causal", (1, 2, 16, 16), True)]
    dtypes = ["float32"] if ctx.dry else ["float16", "bfloat16", "float32"]
    torch, why = ctx.torch()
    if torch is None:
        ctx.skip_case("torch SDPA rows", why)
    impls = ctx.impls("attention")
    for name, shape, causal in work:
        rng = np.random.default_rng(0)
        host = [rng.standard_normal(shape, dtype=np.float32) for _ in range(4)]
        for dname in dtypes:
            wl = f"{name} {dname}"
            baseline = None
            if torch is not None:
                with ctx.case(f"{wl} torch"):
                    tq, tk, tv, tg = torch_inputs(ctx, host, dname, (1, 1, 1, 0))
                    sdpa = torch.nn.functional.scaled_dot_product_attention

                    def t_fwd():
                        with torch.no_grad():
                            return sdpa(tq, tk, tv, is_causal=causal)

                    def t_fwd_bwd():
                        tq.grad = tk.grad = tv.grad = None
                        sdpa(tq, tk, tv, is_causal=causal).backward(tg)

                    baseline = host_f32(t_fwd())
                    for label, fn, bwd in (("fwd", t_fwd, False), ("fwd+bwd", t_fwd_bwd, True)):
                        tm, first = ctx.time(fn, ctx.tsync())
                        ctx.add(tm, workload=f"{wl} {label}", provider="torch", dtype=dname,
                                flops=flops(shape, causal, bwd), first=first)
                    del tq, tk, tv, tg
            for impl in impls:
                with ctx.case(f"{wl} {impl}"):
                    q, k, v, g = mg_inputs(ctx, host, dname, (1, 1, 1, 0))

                    def fwd():
                        with mg.no_grad():
                            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

                    def fwd_bwd():
                        q.grad = k.grad = v.grad = None
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(g)

                    with dispatch.use(attention=impl):
                        if baseline is None and ctx.dry:   # no torch: the numpy reference
                            with dispatch.use(attention="reference"):
                                baseline = host_f32(fwd())
                        diff = rel_diff(fwd(), baseline)
                        for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                            tm, first = ctx.time(fn, ctx.sync)
                            ctx.add(tm, workload=f"{wl} {label}", provider=f"minigen {impl}",
                                    dtype=dname, flops=flops(shape, causal, bwd), first=first,
                                    max_rel_diff=diff if label == "fwd" else None)


def part_conv2d(ctx):
    import numpy as np
    import minigen as mg
    import minigen.nn.functional as F
    from minigen import dispatch
    from bench_conv2d import CPU_WORK, GPU_WORK, conv_flops
    ctx.setup_device()
    if ctx.dry:
        work = [("2×3×6×6 3×3", (2, 3, 6, 6), (4, 3, 3, 3), 1, 1, ["float32"]),
                ("2×3×6×6 3×3 s2", (2, 3, 6, 6), (4, 3, 3, 3), 2, 1, ["float32"])]
    else:
        work = [(n, xs, ws, s, p, ["float16", "bfloat16", "float32"])
                for n, xs, ws, s, p in GPU_WORK]
        work += [(f"{n} {'×'.join(map(str, xs))}", xs, ws, s, p, ["float32"])
                 for n, xs, ws, s, p in CPU_WORK if n in ("K1", "K2 down")]
    torch, why = ctx.torch()
    if torch is None:
        ctx.skip_case("torch conv2d rows", why)
    else:
        ctx.info["torch_conv_tf32"] = tf32_state(torch, "conv")
    impls = ctx.impls("conv2d")
    for name, xs, ws, s, p, dtypes in work:
        rng = np.random.default_rng(0)
        x_h = rng.standard_normal(xs, dtype=np.float32)
        w_h = (rng.standard_normal(ws) / math.sqrt(ws[1] * ws[2] * ws[3])).astype(np.float32)
        b_h = rng.standard_normal(ws[0]).astype(np.float32)
        ho = (xs[2] + 2 * p - ws[2]) // s + 1
        wo = (xs[3] + 2 * p - ws[3]) // s + 1
        g_h = rng.standard_normal((xs[0], ws[0], ho, wo), dtype=np.float32)
        host = [x_h, w_h, b_h, g_h]
        for dname in dtypes:
            wl = f"{name} {dname}"
            baseline = None
            if torch is not None:
                tf32_modes = [("torch", None)] + ([("torch-ieee", False)]
                                                  if dname == "float32" and not ctx.dry else [])
                for provider, use_tf32 in tf32_modes:
                    with ctx.case(f"{wl} {provider}"):
                        tx, tw, tb, tg = torch_inputs(ctx, host, dname, (1, 1, 1, 0))
                        conv = torch.nn.functional.conv2d

                        def t_fwd():
                            with torch.no_grad():
                                return conv(tx, tw, tb, s, p)

                        def t_fwd_bwd():
                            tx.grad = tw.grad = tb.grad = None
                            conv(tx, tw, tb, s, p).backward(tg)

                        with (tf32(torch, "conv", use_tf32) if use_tf32 is not None
                              else contextlib.nullcontext()):
                            out = host_f32(t_fwd())
                            if provider == "torch":
                                baseline = out
                            for label, fn, bwd in (("fwd", t_fwd, False),
                                                   ("fwd+bwd", t_fwd_bwd, True)):
                                tm, first = ctx.time(fn, ctx.tsync())
                                ctx.add(tm, workload=f"{wl} {label}", provider=provider,
                                        dtype=dname, flops=conv_flops(xs, ws, s, p, bwd),
                                        first=first, max_rel_diff=rel_diff(out, baseline)
                                        if provider != "torch" and label == "fwd" else None)
            for impl in impls:
                with ctx.case(f"{wl} {impl}"):
                    x, w, b, g = mg_inputs(ctx, host, dname, (1, 1, 1, 0))

                    def fwd():
                        with mg.no_grad():
                            return F.conv2d(x, w, b, s, p)

                    def fwd_bwd():
                        x.grad = w.grad = b.grad = None
                        F.conv2d(x, w, b, s, p).backward(g)

                    with dispatch.use(conv2d=impl):
                        if baseline is None and ctx.dry:
                            with dispatch.use(conv2d="reference"):
                                baseline = host_f32(fwd())
                        diff = rel_diff(fwd(), baseline)
                        for label, fn, bwd in (("fwd", fwd, False), ("fwd+bwd", fwd_bwd, True)):
                            tm, first = ctx.time(fn, ctx.sync)
                            ctx.add(tm, workload=f"{wl} {label}", provider=f"minigen {impl}",
                                    dtype=dname, flops=conv_flops(xs, ws, s, p, bwd),
                                    first=first, max_rel_diff=diff if label == "fwd" else None)


def _rows_from_report(ctx, report, provider=None):
    """Rows a bench_* function added to a harness.Report, as rows of this check."""
    import types
    for r in report.rows:
        tm = types.SimpleNamespace(median=r["median_s"], q25=r["q25_s"], q75=r["q75_s"],
                                   min=r["min_s"], per_call=[r["median_s"]] * r["repeats"],
                                   number=r["number"])
        dtype = r["name"].rsplit(" ", 1)[-1]
        ctx.add(tm, workload=r["name"], provider=provider or r["provider"], dtype=dtype,
                nbytes=r.get("bytes"))
    report.rows.clear()


def part_noise_schedule(ctx):
    import types
    import minigen as mg
    from harness import Report
    from bench_noise_schedule import GPU_SIZES, run_minigen, run_torch
    ctx.setup_device()
    sizes = [(2, 3, 8, 8)] if ctx.dry else GPU_SIZES
    dtypes = ["float32"] if ctx.dry else ["float32", "float16"]   # CuPy has no bfloat16
    bargs = types.SimpleNamespace(repeats=ctx.repeats)
    torch, why = ctx.torch()
    if torch is None:
        ctx.skip_case("torch eager rows", why)
    impls = ctx.impls("noise_schedule")
    rep = Report("noise schedule")
    for shape in sizes:
        for dname in dtypes:
            wl = f"{'×'.join(map(str, shape))} {dname}"
            for impl in impls:
                with ctx.case(f"{wl} {impl}"):
                    try:
                        run_minigen(rep, mg, shape, dname, ctx.device, ctx.sync, bargs, impl=impl)
                    finally:
                        _rows_from_report(ctx, rep, provider=f"minigen {impl}")
            if torch is not None:
                with ctx.case(f"{wl} torch"):
                    try:
                        run_torch(rep, torch, shape, dname, ctx.tdevice(), bargs)
                    finally:
                        _rows_from_report(ctx, rep, provider="torch")


def part_logdet(ctx):
    import numpy as np
    import minigen as mg
    from minigen import dispatch
    ctx.setup_device()
    torch, why = ctx.torch()
    if torch is None:
        ctx.skip_case("torch.linalg.slogdet rows", why)
    impls = ctx.impls("logdet")
    if ctx.dry:
        mats = [(4, 4, "float32")]
        cshape = (2, 8, 4, 4)
    else:
        mats = [(4096, 16, "float32"), (4096, 32, "float32"), (4096, 16, "float64"),
                (1024, 64, "float32"), (1, 256, "float64")]
        cshape = (256, 48, 64, 64)
    rng = np.random.default_rng(0)
    for batch, n, dname in mats:
        a = (rng.standard_normal((batch, n, n)) + 2 * np.eye(n)).astype(dname)
        if batch == 1:
            a = a[0]
        wl = f"slogdet {'×'.join(map(str, a.shape))} {dname} fwd+bwd"
        f = batch * (2 * n ** 3 / 3 + 2 * n ** 3)
        baseline = None
        if torch is not None:
            with ctx.case(f"{wl} torch"):
                ta = torch.from_numpy(a).to(ctx.tdevice()).requires_grad_()

                def tf():
                    ta.grad = None
                    _, la = torch.linalg.slogdet(ta)
                    la.sum().backward()
                    return la
                baseline = host_f32(torch.linalg.slogdet(ta.detach())[1])
                tm, first = ctx.time(tf, ctx.tsync())
                ctx.add(tm, workload=wl, provider="torch", dtype=dname, flops=f, first=first)
        for impl in impls:
            with ctx.case(f"{wl} {impl}"):
                A = mg.tensor(a, device=ctx.device, requires_grad=True)

                def mf(A=A):
                    A.grad = None
                    _, la = mg.linalg.slogdet(A)
                    la.sum().backward()

                with dispatch.use(logdet=impl):
                    if baseline is None and ctx.dry:
                        with dispatch.use(logdet="reference"), mg.no_grad():
                            baseline = host_f32(mg.linalg.slogdet(A)[1])
                    with mg.no_grad():
                        diff = rel_diff(mg.linalg.slogdet(A)[1], baseline)
                    tm, first = ctx.time(mf, ctx.sync)
                ctx.add(tm, workload=wl, provider=f"minigen {impl}", dtype=dname, flops=f,
                        first=first, max_rel_diff=diff)
    x = rng.standard_normal(cshape, dtype=np.float32)
    h = rng.standard_normal(cshape, dtype=np.float32)
    wl = f"coupling {'×'.join(map(str, cshape))} float32 fwd"
    half = cshape[1] // 2
    baseline = None
    if torch is not None:
        with ctx.case(f"{wl} torch"):
            tx, th = (torch.from_numpy(v).to(ctx.tdevice()) for v in (x, h))

            def tc():
                # the coupling of bench_logdet: s = σ(h_a + 2), y_a = s x_a + h_b
                s = torch.sigmoid(th[:, :half] + 2)
                return torch.cat([s * tx[:, :half] + th[:, half:], tx[:, half:]], 1), \
                    torch.log(s).flatten(1).sum(1)
            with torch.no_grad():
                baseline = host_f32(tc()[0])
                tm, first = ctx.time(tc, ctx.tsync())
            ctx.add(tm, workload=wl, provider="torch", dtype="float32", nbytes=3 * x.nbytes,
                    first=first)
    for impl in impls:
        with ctx.case(f"{wl} {impl}"):
            X, H = mg.tensor(x, device=ctx.device), mg.tensor(h, device=ctx.device)
            with dispatch.use(logdet=impl), mg.no_grad():
                if baseline is None and ctx.dry:
                    with dispatch.use(logdet="reference"):
                        baseline = host_f32(mg.affine_coupling(X, H)[0])
                diff = rel_diff(mg.affine_coupling(X, H)[0], baseline)
                tm, first = ctx.time(lambda: mg.affine_coupling(X, H), ctx.sync)
            ctx.add(tm, workload=wl, provider=f"minigen {impl}", dtype="float32",
                    nbytes=3 * x.nbytes, first=first, max_rel_diff=diff)


def part_e2_e3(ctx):
    import minigen as mg
    from minigen.models import UNet
    from bench_e2_unet import MinigenE2Step, forward_flops, make_inputs
    ctx.setup_device()
    dev = ctx.device
    batch = 2 if ctx.dry else 64
    x0_h, t_h, noise_h, xt_h, source = make_inputs(batch)
    ctx.info["inputs"] = f"{source}; batch {batch}; float32"
    model = UNet.e2(generator=mg.Generator().manual_seed(0))
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    model.to(dev)
    x0, noise, xt = (mg.tensor(a, device=dev) for a in (x0_h, noise_h, xt_h))
    t = mg.tensor(t_h, device=dev)
    step = MinigenE2Step(model, dev)
    from minigen import dispatch
    ctx.info["dispatch"] = {fam: dispatch.active(fam, dev)
                            for fam in ("conv2d", "attention", "noise_schedule")}
    torch, why = ctx.torch()
    f = forward_flops(batch)
    step_wl = f"E2 train step (fwd+bwd+Adam), batch {batch}"
    fwd_wl = f"E3 forward (no grad), batch {batch}"
    losses = {}
    with ctx.case("minigen E2 step"):
        losses["minigen"] = [float(step(x0, t, noise).item()) for _ in range(3)]
        tm, first = ctx.time(lambda: step(x0, t, noise), ctx.sync)
        ctx.add(tm, workload=step_wl, provider="minigen", dtype="float32", flops=3 * f,
                first=first)

    def mg_fwd():
        with mg.no_grad():
            return model(xt, t)
    with ctx.case("minigen E3 forward"):
        tm, first = ctx.time(mg_fwd, ctx.sync)
        ctx.add(tm, workload=fwd_wl, provider="minigen", dtype="float32", flops=f, first=first)
    if torch is None:
        ctx.skip_case("PyTorch twin rows", why)
        return
    from torch_unet import E2Step, TorchUNet, e3_forward
    tdev = ctx.tdevice()
    tmodel = TorchUNet(**model.config)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    tmodel.to(tdev)
    tx0, tnoise, txt = (torch.from_numpy(a).to(tdev) for a in (x0_h, noise_h, xt_h))
    tt = torch.from_numpy(t_h).to(tdev)
    tstep = E2Step(tmodel)
    tstep.sqrt_ab, tstep.sqrt_1mab = tstep.sqrt_ab.to(tdev), tstep.sqrt_1mab.to(tdev)
    ctx.info["torch_conv_tf32"] = tf32_state(torch, "conv")
    with ctx.case("torch E2 step"):
        losses["torch"] = [float(tstep(tx0, tt, tnoise).item()) for _ in range(3)]
        tm, first = ctx.time(lambda: tstep(tx0, tt, tnoise), ctx.tsync())
        ctx.add(tm, workload=step_wl, provider="torch", dtype="float32", flops=3 * f,
                first=first)
    with ctx.case("torch E3 forward"):
        tm, first = ctx.time(lambda: e3_forward(tmodel, txt, tt), ctx.tsync())
        ctx.add(tm, workload=fwd_wl, provider="torch", dtype="float32", flops=f, first=first)
    if "minigen" in losses and "torch" in losses:
        rel = max(abs(a - b) / abs(b) for a, b in zip(losses["minigen"], losses["torch"]))
        ctx.info["twin_check"] = (f"first 3 losses minigen {losses['minigen']} vs torch "
                                  f"{losses['torch']}: max relative difference {rel:.2e}")
        ctx.info["twin_max_rel_diff"] = rel
    if ctx.args.torch_compile:
        with ctx.case("torch.compile E3 forward"):
            cmodel = torch.compile(tmodel)
            tm, first = ctx.time(lambda: e3_forward(cmodel, txt, tt), ctx.tsync())
            ctx.add(tm, workload=fwd_wl, provider="torch.compile", dtype="float32", flops=f,
                    first=first)


class _SpinProbe:
    """Keeps the GPU busy for a set time (a one-thread clock64 loop) and asks, without waiting,
    whether the stream has drained: how ddim_sync tells a step that made the host wait."""

    SOURCE = r'''
    extern "C" __global__ void spin(long long cycles) {
        long long t0 = clock64();
        while (clock64() - t0 < cycles) { }
    }'''

    def __init__(self, cp):
        self.cp = cp
        self.kernel = cp.RawKernel(self.SOURCE, "spin")
        cycles = 10 ** 7
        for _ in range(2):               # the first launch compiles
            t0 = time.perf_counter()
            self.kernel((1,), (1,), (cp.int64(cycles),))
            cp.cuda.Device().synchronize()
            dt = time.perf_counter() - t0
        self.rate = cycles / dt          # clock64 ticks per second

    def spin(self, seconds: float):
        self.kernel((1,), (1,), (self.cp.int64(int(seconds * self.rate)),))

    def busy(self) -> bool:
        return not self.cp.cuda.get_current_stream().done


class _Watched:
    """The model as ``sample`` sees it: before each call, the time the host spent since the
    previous call (one sampling step: model + scheduler step) and whether the GPU had drained
    (the host waited) are recorded, then a spin of ``spin_s`` is enqueued."""

    def __init__(self, model, probe, spin_s):
        self.model, self.probe, self.spin_s = model, probe, spin_s
        self.num_classes = model.num_classes
        self.steps, self.last = [], None

    def _mark(self):
        now = time.perf_counter()
        if self.last is not None:
            waited = (not self.probe.busy()) if self.probe is not None else None
            self.steps.append({"host_s": now - self.last, "waited": waited})

    def __call__(self, x, t, y=None):
        self._mark()
        if self.probe is not None and self.spin_s:
            self.probe.spin(self.spin_s)
        self.last = time.perf_counter()
        return self.model(x, t, y)

    def finish(self):
        self._mark()
        self.last = None


def part_ddim_sync(ctx):
    import warnings
    import minigen as mg
    from minigen.diffusion import DDIMScheduler, sample
    from minigen.models import UNet
    ctx.setup_device()
    dev = ctx.device
    n, steps, w, classes = (2, 2, 3.0, 10) if ctx.dry else (8, 5, 3.0, 10)
    model = UNet.e2(num_classes=classes, generator=mg.Generator().manual_seed(0))
    model.to(dev)
    labels = mg.tensor([i % classes for i in range(n)], dtype=mg.int64, device=dev)
    sched = DDIMScheduler()
    sched.set_timesteps(steps, device=dev)     # outside the checked loop

    def run(m, seed=0, gen=None):
        gen = gen if gen is not None else mg.Generator(dev).manual_seed(seed)
        return sample(m, sched, (n, 1, 28, 28), class_labels=labels, guidance_scale=w,
                      null_class=classes, generator=gen, device=dev)

    # warm-up (Triton compiles), then the host time of one step with nothing in the way
    for _ in range(1 if ctx.dry else 2):
        plain = _Watched(model, None, 0.0)
        run(plain)
        plain.finish()
        if ctx.sync:
            ctx.sync()
    host_step = max(s["host_s"] for s in plain.steps) if plain.steps else 0.0
    ctx.info["config"] = (f"UNet.e2(num_classes={classes}), batch {n} (model batch {2 * n}), "
                          f"DDIM {steps} steps, CFG w = {w}")
    ctx.info["host_step_s_without_spin"] = host_step
    if ctx.dry:
        ctx.info["summary"] = (f"not checked (CPU): the loop ran {steps} steps, "
                               f"{1e3 * host_step:.1f} ms/step on the host")
        raise SkipPart("the host-sync check needs CuPy and a CUDA GPU (a spin kernel and a "
                       f"stream query); the sampling loop itself ran {steps} steps on the CPU")
    cp = ctx.xp
    probe = _SpinProbe(cp)
    spin_s = min(max(0.2, 5 * host_step), 2.0)
    watched = _Watched(model, probe, spin_s)
    ctx.sync()
    t0 = time.perf_counter()
    run(watched)
    watched.finish()
    enqueue = time.perf_counter() - t0
    ctx.sync()
    total = time.perf_counter() - t0
    waited = [s["waited"] for s in watched.steps]
    ctx.info.update(spin_s=spin_s, steps=watched.steps, host_enqueue_s=enqueue,
                    gpu_done_s=total)
    n_wait = sum(bool(x) for x in waited)
    summary = (f"DDIM loop: the host waited on the GPU in {n_wait} of {len(waited)} steps "
               f"(spin {1e3 * spin_s:.0f} ms per step; host enqueue {1e3 * enqueue:.0f} ms, "
               f"GPU done after {1e3 * total:.0f} ms)")
    # cupyx.allow_synchronize(False): deprecated since CuPy 10, maybe gone; where it exists it
    # raises at the first synchronisation CuPy itself performs, which says where it is
    import cupyx
    allow = getattr(cupyx, "allow_synchronize", None)
    if allow is None:
        ctx.info["allow_synchronize"] = "not in this CuPy"
    else:
        try:
            gen = mg.Generator(dev).manual_seed(1)      # seeding stays outside the check
            ctx.sync()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with allow(False):
                    run(model, gen=gen)
            ctx.info["allow_synchronize"] = "no synchronisation raised"
        except Exception as exc:
            frames = [f"{os.path.relpath(fr.filename, REPO)}:{fr.lineno} {fr.name}"
                      for fr in traceback.extract_tb(exc.__traceback__)
                      if "minigen" in fr.filename or "kernels" in fr.filename]
            ctx.info["allow_synchronize"] = {"error": f"{type(exc).__name__}: {exc}",
                                             "minigen_frames": frames[-8:]}
            summary += f"; first sync under allow_synchronize: {frames[-1] if frames else exc}"
        ctx.sync()
    # one E2 training step under the same probe
    with ctx.case("E2 training step sync probe"):
        from bench_e2_unet import MinigenE2Step, make_inputs
        unet = UNet.e2(generator=mg.Generator().manual_seed(0))
        unet.to(dev)
        x0_h, t_h, noise_h, _, _ = make_inputs(n)
        x0, noise = mg.tensor(x0_h, device=dev), mg.tensor(noise_h, device=dev)
        t = mg.tensor(t_h, device=dev)
        step = MinigenE2Step(unet, dev)
        step(x0, t, noise)
        ctx.sync()
        t0 = time.perf_counter()
        step(x0, t, noise)
        host = time.perf_counter() - t0
        ctx.sync()
        probe.spin(min(max(0.2, 5 * host), 2.0))
        t0 = time.perf_counter()
        step(x0, t, noise)
        train_waited = not probe.busy()
        ctx.info["train_step"] = {"host_s": time.perf_counter() - t0, "waited": train_waited}
        summary += f"; E2 training step: host {'waited' if train_waited else 'did not wait'}"
        ctx.sync()
    ctx.info["summary"] = summary
    if n_wait:
        raise CheckFailed(summary)


PART_FUNCTIONS = {"env": part_env, "ceilings": part_ceilings, "attention": part_attention,
                  "conv2d": part_conv2d, "noise_schedule": part_noise_schedule,
                  "logdet": part_logdet, "e2_e3": part_e2_e3, "ddim_sync": part_ddim_sync}

if __name__ == "__main__":
    sys.exit(main())
