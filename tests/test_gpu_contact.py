"""First contact with a GPU, checked on the CPU: Triton's driver probe and the fallback it
drives, the launch stream, and the packaging of the GPU extras.

Triton 3.6 (the GPU image's version) has a CUDA driver that counts as active only when
``torch.cuda.is_available()`` and launches on torch's current stream; minigen's arrays are
ordered on CuPy's current stream. The probe and the stream binding are exercised here with
stand-ins (a fake driver, a fake CuPy array), the real thing by the ``gpu`` tests at the end.
"""
from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigen.backend
from minigen import dispatch
from minigen.kernels import _triton

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------- probe and dispatch
@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine that has a CUDA device as far as minigen can tell, Triton outside its
    interpreter, and a driver probe the test decides (``state['probe']``)."""
    state = {"probe": _triton.DriverProbe(None, "fake CUDA driver")}
    # triton's own @jit helpers (tl.zeros, ...) are built for the interpreter only when
    # TRITON_INTERPRET is set at its import: import it before the variable goes.
    _triton.triton_modules()
    monkeypatch.setattr(minigen.backend, "cuda_available", lambda: True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("MINIGEN_KERNELS", raising=False)
    monkeypatch.setattr(_triton, "_probe_driver", lambda: state["probe"])
    monkeypatch.setattr(_triton, "_PROBE", [])
    monkeypatch.setattr(dispatch, "_CACHE", {})
    monkeypatch.setattr(dispatch, "_WARNED", set())
    yield state
    dispatch._CACHE.clear()


def test_usable_driver_chooses_triton_on_cuda(fake_gpu):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.active("attention", "cuda") == "triton"
        assert dispatch.active("conv2d", "cuda") == "triton"


def test_inactive_driver_falls_back_with_one_warning(fake_gpu):
    fake_gpu["probe"] = _triton.DriverProbe("0 active drivers (test)", "none")
    with pytest.warns(dispatch.KernelFallbackWarning,
                      match=r"attention on cuda runs the 'reference'.*triton unavailable "
                            r"\(0 active drivers \(test\)\)"):
        mod = dispatch.get("attention", "cuda")
    assert mod.__name__ == "minigen.reference.attention"
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # once per (family, device)
        dispatch.get("attention", "cuda")
    row = [r for r in dispatch.status(("cuda",)) if r["family"] == "attention"
           and r["implementation"] == "triton"][0]
    assert row["unavailable"] == "0 active drivers (test)" and not row["active"]


def test_forcing_triton_with_an_inactive_driver_says_why(fake_gpu):
    fake_gpu["probe"] = _triton.DriverProbe("needs torch with CUDA (test)", "none")
    with dispatch.use(conv2d="triton"):
        with pytest.raises(RuntimeError, match=r"needs torch with CUDA \(test\)"):
            dispatch.get("conv2d", "cuda")


def test_probe_runs_once(fake_gpu, monkeypatch):
    calls = []
    monkeypatch.setattr(_triton, "_probe_driver",
                        lambda: calls.append(1) or _triton.DriverProbe(None, "x"))
    for _ in range(3):
        assert _triton.unavailable("cuda") is None
    assert calls == [1]


def test_probe_reports_no_active_driver_and_the_torch_requirement(monkeypatch):
    """The real probe against a Triton whose driver config raises, as Triton 3.6's does
    without torch ("0 active drivers"): the reason names torch with CUDA."""
    import triton.runtime

    class NoDriver:
        @property
        def active(self):
            raise RuntimeError("0 active drivers ([]). There should only be one.")

    monkeypatch.setattr(triton.runtime, "driver", NoDriver())
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    probe = _triton._probe_driver()
    assert "0 active drivers" in probe.reason
    assert "torch" in probe.reason and "CUDA" in probe.reason


def test_probe_accepts_a_cuda_target_and_rejects_others(monkeypatch):
    import triton.runtime

    def config(backend):
        drv = SimpleNamespace(get_current_target=lambda: SimpleNamespace(backend=backend,
                                                                         arch=90))
        return SimpleNamespace(active=drv)

    monkeypatch.setattr(triton.runtime, "driver", config("cuda"))
    probe = _triton._probe_driver()
    assert probe.reason is None and "sm_90" in probe.found
    monkeypatch.setattr(triton.runtime, "driver", config("hip"))
    assert "'hip', not CUDA" in _triton._probe_driver().reason


def test_info_says_what_the_probe_found(fake_gpu):
    from minigen.info import _triton_line
    fake_gpu["probe"] = _triton.DriverProbe("0 active drivers (test)", "none")
    line = _triton_line(gpu=True)
    assert "cannot launch on the GPU: 0 active drivers (test)" in line
    assert line.startswith("→")
    _triton._PROBE.clear()
    fake_gpu["probe"] = _triton.DriverProbe(None, "Triton 9 CUDA driver, sm_90 (test)")
    line = _triton_line(gpu=True)
    assert line.startswith("✓") and "sm_90 (test)" in line


# ------------------------------------------------------------------------------- streams
class _FakeDriver:
    """Triton's driver interface as far as launches use it."""

    def __init__(self, stream=0, device=0, as_attribute=True):
        self.device = device
        if as_attribute:   # Triton sets get_current_stream on the instance (3.6 and later)
            self.get_current_stream = lambda device: stream
        self._stream = stream

    def get_current_device(self):
        return self.device


class _FakeDriverMethod(_FakeDriver):
    def get_current_stream(self, device):   # a plain method: shadowed, then un-shadowed
        return self._stream


class _FakeCupyArray:
    __cuda_array_interface__ = {}

    def __init__(self, device=0):
        self.device = SimpleNamespace(id=device)


@pytest.mark.parametrize("cls", [_FakeDriver, _FakeDriverMethod])
def test_launch_binds_cupys_stream_then_restores(monkeypatch, cls):
    drv = cls(stream=0, as_attribute=cls is _FakeDriver)
    monkeypatch.setattr(_triton, "_active_driver", lambda: drv)
    monkeypatch.setattr(_triton, "_cupy_stream_ptr", lambda: 0x5EED)
    seen = []

    @_triton.launcher
    def launch(x, y):
        seen.append(drv.get_current_stream(0))
        return "done"

    assert launch(_FakeCupyArray(), 3) == "done"
    assert seen == [0x5EED]                         # the launch used CuPy's stream
    assert drv.get_current_stream(0) == 0           # and the driver is as it was
    assert ("get_current_stream" in drv.__dict__) == (cls is _FakeDriver)


def test_launch_leaves_an_agreeing_stream_alone(monkeypatch):
    drv = _FakeDriver(stream=0)
    original = drv.get_current_stream
    monkeypatch.setattr(_triton, "_active_driver", lambda: drv)
    monkeypatch.setattr(_triton, "_cupy_stream_ptr", lambda: 0)
    with _triton.launch_context((_FakeCupyArray(),)):
        assert drv.get_current_stream is original


def test_launch_refuses_an_array_on_another_device(monkeypatch):
    drv = _FakeDriver(stream=0, device=0)
    monkeypatch.setattr(_triton, "_active_driver", lambda: drv)
    monkeypatch.setattr(_triton, "_cupy_stream_ptr", lambda: 0)

    @_triton.launcher
    def launch(x):
        raise AssertionError("must not launch")

    with pytest.raises(RuntimeError, match=r"cuda:1 while the current CUDA device is 0"):
        launch(_FakeCupyArray(device=1))


def test_numpy_launches_need_no_driver(monkeypatch):
    monkeypatch.setattr(_triton, "_active_driver",
                        lambda: (_ for _ in ()).throw(AssertionError("no driver on numpy")))
    with _triton.launch_context((np.zeros(3),)):
        pass


def test_triton_reads_the_stream_at_every_launch():
    """The binding works because Triton's JIT asks the active driver for the stream on every
    launch (true of 3.6 and of the Triton installed here)."""
    import triton.runtime.jit as jit
    src = inspect.getsource(jit.JITFunction.run)
    assert "driver.active.get_current_stream(" in src


def _launchers():
    from minigen.kernels import attention, conv2d, logdet, noise_schedule
    return {"attention": [attention.attention_forward, attention.attention_backward],
            "conv2d": [conv2d._forward, conv2d._dgrad, conv2d._wgrad],
            "noise_schedule": [noise_schedule._lincomb, noise_schedule.q_sample_backward,
                               noise_schedule._step],
            "logdet": [logdet.lu_factor, logdet.lu_solve, logdet.coupling_forward,
                       logdet.coupling_backward, logdet.actnorm_forward,
                       logdet.actnorm_backward]}


def test_every_launch_runs_in_the_launch_context(monkeypatch):
    """Each family's kernels, run in the interpreter through the public functions, pass
    through ``launch_context`` (which binds CuPy's stream on a GPU)."""
    entered = []

    class Recorder:
        def __init__(self, args):
            self.args = args

        def __enter__(self):
            entered.append(self.args)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(_triton, "launch_context", Recorder)
    from minigen.kernels import attention, conv2d, logdet, noise_schedule
    from minigen import schedules as S
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 4, 8))
    attention.attention_forward(q, q, q, None, False, 0.5)
    assert len(entered) == 1
    conv2d.conv2d_forward(rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)),
                          None, (1, 1), (1, 1), (1, 1), 1)
    assert len(entered) == 2
    table = S.NoiseSchedule(10, "linear").table
    x = rng.standard_normal((2, 3))
    noise_schedule.q_sample(table, x, np.array([0, 9]), x)
    assert len(entered) == 3
    logdet.actnorm_forward(rng.standard_normal((2, 3, 2)), np.zeros(3), np.zeros(3))
    assert len(entered) == 4
    for fns in _launchers().values():
        for fn in fns:
            assert getattr(fn, "__wrapped__", None) is not None, fn.__name__


# ------------------------------------------------------------------------------- packaging
def _extras():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                try:   # entries such as [..., *TRAIN] are not literals: not needed here
                    out[ast.literal_eval(key)] = ast.literal_eval(value)
                except ValueError:
                    pass
            return out
    raise AssertionError("setup.py declares no extras_require")


def test_gpu_extras_match_cuda_13_and_offer_cuda_12():
    extras = _extras()
    assert extras["gpu"] == ["cupy-cuda13x"]
    assert extras["gpu-cuda12"] == ["cupy-cuda12x"]


def test_triton_gpu_extra_brings_torch():
    """Triton 3.6 launches on a GPU only next to a CUDA build of PyTorch."""
    names = [r.split(";")[0].split(">")[0].split("=")[0].strip()
             for r in _extras()["gpu-triton"]]
    assert {"cupy-cuda13x", "triton", "torch"} <= set(names)


def test_readme_names_the_gpu_requirements():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The kernel layer", 1)[1].split("\n## ", 1)[0]
    for needle in ("minigen[gpu]", "minigen[gpu-cuda12]", "minigen[gpu-triton]",
                   "torch.cuda.is_available()", "allow_tf32"):
        assert needle in section, needle


# ----------------------------------------------------------------------------- on a GPU
def _cuda_why():
    try:
        return _triton.unavailable("cuda")
    except Exception as exc:  # pragma: no cover - triton missing
        return str(exc)


@pytest.mark.gpu
def test_on_a_gpu_the_probe_and_info_agree():
    from minigen.info import _triton_line
    why = _cuda_why()
    line = _triton_line(gpu=True)
    if why is None:
        assert line.startswith("✓") and "compiles for the GPU" in line, line
    else:
        assert line.startswith("→") and why.split(" (")[0] in line, (why, line)


@pytest.mark.gpu
def test_on_a_gpu_triton_launches_on_cupys_current_stream():
    cupy = pytest.importorskip("cupy")
    why = _cuda_why()
    if why is not None:
        pytest.skip(f"triton on cuda: {why}")
    from minigen.kernels import attention as A
    from minigen.reference import attention as R
    seen = []

    @_triton.launcher
    def where(x):
        seen.append(_triton._active_driver().get_current_stream(x.device.id))

    stream = cupy.cuda.Stream(non_blocking=True)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 33, 32))
    with stream:
        where(cupy.zeros(1))
        qd = cupy.asarray(q)
        o, lse = A.attention_forward(qd, qd, qd, None, True, 0.2)
        o2 = o * 2.0                     # a CuPy op queued on the same stream after it
    stream.synchronize()
    assert seen == [stream.ptr] and stream.ptr != 0
    want, _ = R.attention_forward(q, q, q, None, True, 0.2)
    np.testing.assert_allclose(o2.get(), 2 * want, rtol=1e-12, atol=1e-12)
