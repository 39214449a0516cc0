"""benchmarks/gpu_check.py: its dry run end to end (a subprocess, CPU only), and the parts of the
orchestration that a GPU run depends on: continuing past a failing part, the time budget, the
per-part timeout that kills the whole process group, rows kept from a part that ran out of
time, the pytest summary parser, the implementation choice and the host-sync accounting."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_check  # noqa: E402

KERNEL_PARTS = ("attention", "conv2d", "noise_schedule", "logdet")


def _run(args, timeout=120):
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)      # the script must set it for its parts itself
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    t0 = time.time()
    proc = _run(["--out", str(out), "--dry-run"])
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "gpu_check.json") as f:
        report = json.load(f)
    md = (out / "gpu_check.md").read_text()
    return report, md, out, seconds


def _part(report, name):
    return next(p for p in report["parts"] if p["name"] == name)


def test_dry_run_reports_every_part_with_a_status(dry_run):
    report, md, out, seconds = dry_run   # (its time is in the report; no timing asserts)
    assert report["dry_run"] is True
    assert [p["name"] for p in report["parts"]] == gpu_check.PART_NAMES
    for p in report["parts"]:
        assert p["status"] in ("ok", "failed", "skipped"), p
        if p["status"] != "ok":
            assert p["reason"], p
        assert f"| {p['name']} | {p['status']} |" in md
    # what can run on a CPU ran
    for name in ("env", "gpu_tests", "ceilings", *KERNEL_PARTS, "e2_e3"):
        assert _part(report, name)["status"] == "ok", _part(report, name)
    assert "dry run" in _part(report, "install")["reason"]
    sync = _part(report, "ddim_sync")
    assert sync["status"] == "skipped" and "CuPy" in sync["reason"]
    # its loop still ran on the CPU: the host time of a step was measured
    assert sync["info"]["host_step_s_without_spin"] > 0
    for n in _numbers(report):
        assert math.isfinite(n)


def test_dry_run_measures_minigen_kernels_in_the_interpreter(dry_run):
    report = dry_run[0]
    for name in KERNEL_PARTS:
        rows = _part(report, name)["rows"]
        mine = [r for r in rows if r["provider"] == "minigen triton"]
        assert mine, f"{name}: no Triton (interpreter) rows"
        for r in mine:
            assert r["median_s"] > 0 and r["repeats"] >= 2
            assert (r.get("tflops") or 0) > 0 or (r.get("gbps") or 0) > 0, r
    # forward outputs checked against the reference (no torch here) or torch
    for name in ("attention", "conv2d", "logdet"):
        diffs = [r["max_rel_diff"] for r in _part(report, name)["rows"]
                 if "max_rel_diff" in r and r["provider"] == "minigen triton"]
        assert diffs and max(diffs) < 1e-4, (name, diffs)
    peaks = _part(report, "ceilings")["info"]["peaks"]
    assert peaks["matmul_float32"] > 0 and peaks["copy_gbps"] > 0
    # rows after the ceilings part carry a share of the measured peak
    assert any("pct_peak" in r for r in _part(report, "attention")["rows"])
    e2 = _part(report, "e2_e3")["rows"]
    assert {r["provider"] for r in e2} >= {"minigen"} and len(e2) >= 2


def test_dry_run_gpu_tests_counted(dry_run):
    info = _part(dry_run[0], "gpu_tests")["info"]
    assert info["counts"].get("skipped", 0) > 0          # gpu tests exist, skipped on a CPU
    assert not info["counts"].get("failed")
    assert os.path.exists(os.path.join(dry_run[2], "logs", "gpu_tests.log"))


def test_dry_run_markdown_has_the_tables(dry_run):
    md = dry_run[1]
    assert "## Parts" in md and "## Results" in md and "## Measured peaks" in md
    assert "| attention | 1×2×16×16 float32 fwd | minigen triton |" in md


def test_parts_subset_runs_only_those(tmp_path):
    proc = _run(["--out", str(tmp_path), "--dry-run", "--parts", "noise_schedule,ceilings"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    st = {p["name"]: p for p in report["parts"]}
    assert st["ceilings"]["status"] == "ok" and st["noise_schedule"]["status"] == "ok"
    for name in set(gpu_check.PART_NAMES) - {"ceilings", "noise_schedule"}:
        assert st[name]["status"] == "skipped" and "--parts" in st[name]["reason"]
    # the noise rows were divided by the copy bandwidth measured before them
    assert all("pct_peak" in r for r in st["noise_schedule"]["rows"])


def test_unknown_part_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    proc = _run(["--out", str(out), "--dry-run", "--parts", "attention,nope"])
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "attention" in proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------------- orchestration
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_run_parts_continues_past_a_failure_and_skips_when_the_budget_is_spent():
    clock = FakeClock()
    seen = []

    def run_one(name, timeout):
        seen.append((name, timeout))
        clock.t += {"a": 10, "b": 5, "c": 34, "d": 1}[name]
        if name == "b":
            raise RuntimeError("boom in b")
        return {"status": "ok", "rows": [1]}

    budgets = {"a": 20, "b": 20, "c": 40, "d": 20}
    res = gpu_check.run_parts(["a", "b", "c", "d"], run_one, budget=50, budgets=budgets,
                              clock=clock)
    by = {r["name"]: r for r in res}
    assert [r["name"] for r in res] == ["a", "b", "c", "d"]
    assert by["a"]["status"] == "ok" and by["a"]["rows"] == [1]
    assert by["b"]["status"] == "failed" and "boom in b" in by["b"]["reason"]
    assert "RuntimeError" in by["b"]["error"]                  # its traceback
    assert by["c"]["status"] == "ok"                            # ran after the failure
    # timeouts: min(the part's budget, what is left of the whole)
    assert seen == [("a", 20), ("b", 20), ("c", 35)]
    assert by["d"]["status"] == "skipped" and "budget" in by["d"]["reason"]
    assert by["c"]["seconds"] == 34


def test_run_command_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('started', flush=True); "
            "time.sleep(60)")
    t0 = time.time()
    r = gpu_check.run_command([sys.executable, "-c", code], 2.0, str(tmp_path / "log"))
    assert r["rc"] is None and time.time() - t0 < 20
    assert "started" in r["output"]
    pid = int(pidfile.read_text())
    for _ in range(50):                      # the grandchild is gone (reaped by init)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] == "Z":
                break
        time.sleep(0.1)
    else:
        pytest.fail("the part's own child survived the timeout")


def test_part_in_child_keeps_the_rows_of_a_part_that_timed_out(tmp_path, monkeypatch):
    result = tmp_path / "parts" / "attention.json"
    result.parent.mkdir()

    def fake_run(cmd, timeout, log_path, env=None, cwd=None):
        assert env["TRITON_INTERPRET"] == "1"       # dry run: the interpreter for the part
        assert cmd[cmd.index("--child") + 1] == "attention"
        gpu_check._write_json(str(result), {"name": "attention", "status": "running",
                                            "rows": [{"workload": "w", "median_s": 1.0}],
                                            "cases": [], "info": {}})
        return {"rc": None, "seconds": timeout, "output": "compiling…"}

    monkeypatch.setattr(gpu_check, "run_command", fake_run)
    args = types.SimpleNamespace(out=str(tmp_path), repeats=None, dry_run=True,
                                 torch_compile=False)
    res = gpu_check.part_in_child("attention", args, 7.0, str(tmp_path / "log"), str(result))
    assert res["status"] == "failed" and "timed out after 7 s" in res["reason"]
    assert res["rows"] == [{"workload": "w", "median_s": 1.0}]
    assert res["log_tail"] == "compiling…"

    def crashed(cmd, timeout, log_path, env=None, cwd=None):
        return {"rc": -11, "seconds": 1.0, "output": "Segmentation fault"}
    monkeypatch.setattr(gpu_check, "run_command", crashed)
    res = gpu_check.part_in_child("attention", args, 7.0, str(tmp_path / "log"), str(result))
    assert res["status"] == "failed" and "-11" in res["reason"]


def test_child_env_sets_the_interpreter_only_for_a_dry_run(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET" not in gpu_check.child_env(False)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert gpu_check.child_env(True)["TRITON_INTERPRET"] == "1"


def test_parse_pytest_summary_and_killed_output():
    done = ("tests/a.py::t[cuda] PASSED\nFAILED tests/b.py::u[cuda] - AssertionError: x\n"
            "=========== 3 passed, 1 failed, 2 skipped, 9 deselected, 1 error in 4.20s "
            "===========\n")
    r = gpu_check.parse_pytest(done)
    assert r["counts"] == {"passed": 3, "failed": 1, "skipped": 2, "deselected": 9,
                           "errors": 1}
    assert r["failures"] == ["FAILED tests/b.py::u[cuda] - AssertionError: x"]
    killed = ("tests/a.py::t[cuda] PASSED [ 10%]\ntests/a.py::v[cuda] PASSED [ 20%]\n"
              "tests/b.py::u[cuda] FAILED [ 30%]\n")
    assert gpu_check.parse_pytest(killed)["counts"] == {"passed": 2, "failed": 1}


def test_part_budgets_and_parts_options():
    b = gpu_check.parse_part_budgets("attention=90,install=5")
    assert b["attention"] == 90 and b["install"] == 5 and b["conv2d"] == 45
    with pytest.raises(SystemExit, match="NAME=SECONDS"):
        gpu_check.parse_part_budgets("attention")
    assert gpu_check.select_parts("e2_e3,env") == ["env", "e2_e3"]   # the check's order
    assert gpu_check.select_parts(None) == gpu_check.PART_NAMES


def _ctx(tmp_path):
    args = types.SimpleNamespace(dry_run=True, result=None, repeats=None, out=str(tmp_path),
                                 torch_compile=False)
    ctx = gpu_check.Ctx("attention", args)
    ctx.setup_device()
    return ctx


def test_impls_fails_the_part_when_no_minigen_implementation_can_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _ctx(tmp_path).impls("attention") == ["triton"]
    monkeypatch.delenv("TRITON_INTERPRET")         # Triton on a CPU without its interpreter
    ctx = _ctx(tmp_path)
    with pytest.raises(gpu_check.CheckFailed, match="no minigen implementation of attention"):
        ctx.impls("attention")
    assert any(c["name"] == "attention/triton" and "interpreter" in c["reason"]
               for c in ctx.cases)


def test_case_records_failures_and_skips_and_the_part_fails(tmp_path):
    ctx = _ctx(tmp_path)
    with ctx.case("good"):
        pass
    with ctx.case("no bf16"):
        raise gpu_check.SkipCase("no bfloat16 here")
    with ctx.case("bad"):
        raise ValueError("wrong")
    st = {c["name"]: c for c in ctx.cases}
    assert st["good"]["status"] == "ok" and st["no bf16"]["status"] == "skipped"
    assert st["bad"]["status"] == "failed" and "ValueError: wrong" in st["bad"]["error"]
    res = ctx.result()
    assert res["status"] == "failed" and "bad" in res["reason"]


def test_rows_rates_peaks_and_ratios(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.peaks = {"matmul_float16": 500.0, "copy_gbps": 2000.0}
    tm = types.SimpleNamespace(median=2e-3, q25=1.9e-3, q75=2.1e-3, min=1.8e-3,
                               per_call=[2e-3] * 5, number=3)
    torch_tm = types.SimpleNamespace(**{**vars(tm), "median": 1e-3})
    mine = ctx.add(tm, workload="w", provider="minigen triton", dtype="float16", flops=2e11)
    ctx.add(torch_tm, workload="w", provider="torch", dtype="float16", flops=2e11)
    io = ctx.add(tm, workload="io", provider="minigen triton", dtype="float32", nbytes=2e9)
    ctx.ratios()
    assert mine["tflops"] == pytest.approx(100.0) and mine["pct_peak"] == pytest.approx(20.0)
    assert mine["ratio_vs_torch"] == pytest.approx(2.0)
    assert io["gbps"] == pytest.approx(1000.0) and io["pct_peak"] == pytest.approx(50.0)
    assert "ratio_vs_torch" not in io


class _Probe:
    """Stands in for the GPU spin probe: ``busy`` answers from a script."""

    def __init__(self, busy_answers):
        self.answers = list(busy_answers)
        self.spins = 0

    def spin(self, seconds):
        self.spins += 1

    def busy(self):
        return self.answers.pop(0)


def test_watched_model_records_which_steps_made_the_host_wait():
    calls = []

    def model(x, t, y=None):
        calls.append((x, t, y))
        return x

    model.num_classes = 10
    probe = _Probe([True, False, True])          # step 2's host code drained the GPU
    w = gpu_check._Watched(model, probe, 0.5)
    for i in range(3):
        assert w(i, i, "y") == i
    w.finish()
    assert [s["waited"] for s in w.steps] == [False, True, False]
    assert probe.spins == 3 and len(calls) == 3 and w.num_classes == 10
    assert all(s["host_s"] >= 0 for s in w.steps)


def test_run_parts_keeps_the_reserve_of_later_parts():
    clock = FakeClock()
    seen = []

    def greedy(name, timeout):           # every part uses all the time it is given
        seen.append((name, timeout))
        clock.t += timeout
        return {"status": "failed", "reason": "timed out"}

    res = gpu_check.run_parts(["a", "b", "c"], greedy, budget=100,
                              budgets={"a": 100, "b": 100, "c": 100},
                              reserves={"a": 10, "b": 20, "c": 15}, clock=clock)
    # a: 100 − (20 + 15); b: what is left less c's reserve; c: the rest
    assert seen == [("a", 65), ("b", 20), ("c", 15)]
    assert [r["status"] for r in res] == ["failed"] * 3
    # a part's own reserve holds even when the later reserves eat the rest
    clock.t, seen[:] = 0.0, []
    gpu_check.run_parts(["a", "b"], greedy, budget=30, budgets={"a": 100, "b": 100},
                        reserves={"a": 10, "b": 25}, clock=clock)
    assert seen == [("a", 10), ("b", 20)]


def test_parse_pytest_xdist_lines_of_a_killed_run():
    killed = ("[gw0] [ 10%] PASSED tests/a.py::t[cuda] \n[gw1] [ 20%] SKIPPED tests/a.py::v \n"
              "[gw0] [ 30%] FAILED tests/b.py::u[cuda] \n")
    assert gpu_check.parse_pytest(killed)["counts"] == {"passed": 1, "skipped": 1, "failed": 1}


def test_install_part_runs_pip_editable_and_reports_its_exit(monkeypatch, tmp_path):
    calls = []
    rcs = iter([0, 1])

    def fake_run(cmd, timeout, log_path, env=None, cwd=None):
        calls.append(cmd)
        return {"rc": next(rcs), "seconds": 1.0, "output": "error: no compiler"}

    monkeypatch.setattr(gpu_check, "run_command", fake_run)
    args = types.SimpleNamespace(no_install=False, install=False, dry_run=False)
    log = str(tmp_path / "log")
    assert gpu_check.part_install(args, 60, log)["status"] == "ok"
    assert calls[0][1:] == ["-m", "pip", "install", "-e", ".", "--no-deps",
                            "--no-build-isolation"]
    bad = gpu_check.part_install(args, 60, log)
    assert bad["status"] == "failed" and "exit status 1" in bad["reason"]
    assert "no compiler" in bad["log_tail"]
    args.no_install = True
    assert gpu_check.part_install(args, 60, log)["status"] == "skipped"
    args.no_install, args.dry_run = False, True          # dry run: only with --install
    assert gpu_check.part_install(args, 60, log)["status"] == "skipped"
    assert len(calls) == 2


def test_markdown_names_failed_parts_with_their_traceback():
    report = {"title": "t", "dry_run": False, "date": "d", "command": "c", "budget_s": 460,
              "elapsed_s": 12.0, "parts": [
                  {"name": "env", "status": "ok", "seconds": 1.0, "timeout_s": 25,
                   "info": {}},
                  {"name": "attention", "status": "failed", "seconds": 3.0, "timeout_s": 80,
                   "reason": "1 case(s) failed: 16×16 float16 triton",
                   "rows": [{"workload": "w fwd", "provider": "torch", "median_s": 1e-3,
                             "tflops": 12.5}],
                   "cases": [{"name": "16×16 float16 triton", "status": "failed",
                              "error": "Traceback …\nCompilationError: out of resources"}]},
                  {"name": "ddim_sync", "status": "skipped", "reason": "time budget spent"}]}
    md = gpu_check.markdown(report)
    assert "| attention | failed | 3.0 | 80 | 1 case(s) failed" in md
    assert "| ddim_sync | skipped |" in md and "time budget spent" in md
    assert "## Failures" in md and "CompilationError: out of resources" in md
    assert "| attention | w fwd | torch | 1.000 ms |" in md
