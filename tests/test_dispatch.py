"""The kernel registry (minigen.dispatch): preference order, forcing, visible fallback."""
import warnings

import pytest

from minigen import dispatch


@pytest.fixture
def fake(monkeypatch):
    """A family 'fake' with three implementations over stdlib modules; 'native' is broken."""
    dispatch._ensure_registered()  # the real families first, so the copies below hold them
    monkeypatch.setattr(dispatch, "_FAMILIES", {k: dict(v) for k, v in
                                                dispatch._FAMILIES.items()})
    monkeypatch.setattr(dispatch, "_ORDER", dict(dispatch._ORDER))
    monkeypatch.setattr(dispatch, "_WARNED", set())
    monkeypatch.setattr(dispatch, "_CACHE", {})
    monkeypatch.delenv("MINIGEN_KERNELS", raising=False)
    dispatch._ensure_registered()
    state = {"native_ok": False}
    dispatch.register("fake", "reference", "math", ("cpu", "cuda"))
    dispatch.register("fake", "native", "cmath", ("cpu",),
                      check=lambda d: None if state["native_ok"] else "not built (test)")
    dispatch.register("fake", "triton", "json", ("cuda",))
    dispatch.set_order("fake", "cpu", ("native", "reference"))
    yield state
    dispatch._CACHE.clear()


def test_first_available_wins_and_fallback_warns_once(fake):
    with pytest.warns(dispatch.KernelFallbackWarning, match="native unavailable"):
        mod = dispatch.get("fake", "cpu")
    import math
    assert mod is math
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.get("fake", "cpu") is math  # once per (family, device)
    assert dispatch.active("fake", "cpu") == "reference"


def test_preferred_available_is_silent(fake):
    fake["native_ok"] = True
    dispatch._CACHE.clear()
    import cmath
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.get("fake", "cpu") is cmath


def test_use_forces_every_family_and_one_family(fake):
    fake["native_ok"] = True
    dispatch._CACHE.clear()
    with dispatch.use("reference"):
        assert dispatch.active("fake", "cpu") == "reference"
    with dispatch.use(fake="reference"):
        assert dispatch.active("fake", "cpu") == "reference"
    assert dispatch.active("fake", "cpu") == "native"


def test_forced_unavailable_raises_with_reason(fake):
    with dispatch.use("native"):
        with pytest.raises(RuntimeError, match="not built \\(test\\)"):
            dispatch.get("fake", "cpu")
    with dispatch.use(fake="triton"):
        with pytest.raises(RuntimeError, match="runs on cuda, not cpu"):
            dispatch.get("fake", "cpu")


def test_environment_variable(fake, monkeypatch):
    monkeypatch.setenv("MINIGEN_KERNELS", "fake=reference")
    fake["native_ok"] = True
    assert dispatch.active("fake", "cpu") == "reference"
    monkeypatch.setenv("MINIGEN_KERNELS", "native")
    assert dispatch.active("fake", "cpu") == "native"
    monkeypatch.setenv("MINIGEN_KERNELS", "fast")
    with pytest.raises(ValueError, match="unknown implementation 'fast'"):
        dispatch.active("fake", "cpu")


def test_context_beats_environment(fake, monkeypatch):
    fake["native_ok"] = True
    monkeypatch.setenv("MINIGEN_KERNELS", "native")
    with dispatch.use(fake="reference"):
        assert dispatch.active("fake", "cpu") == "reference"


def test_bad_names_are_rejected(fake):
    with pytest.raises(ValueError, match="unknown implementation"):
        with dispatch.use("fastest"):
            pass
    with pytest.raises(ValueError, match="unknown kernel family 'nope'"):
        with dispatch.use(nope="native"):
            pass
    with pytest.raises(ValueError, match="unknown kernel family"):
        dispatch.get("nope", "cpu")


def test_no_implementation_can_run(fake):
    dispatch.register("fake", "cuda", "json", ("cuda",), check=lambda d: "no GPU (test)")
    dispatch.set_order("fake", "cuda", ("cuda",))
    with pytest.raises(RuntimeError, match=r"no implementation of fake can run on cuda: "
                                           r"cuda: no GPU \(test\)"):
        dispatch.get("fake", "cuda")


def test_status_rows_name_the_reason(fake):
    rows = [r for r in dispatch.status(("cpu",)) if r["family"] == "fake"]
    by = {r["implementation"]: r for r in rows}
    assert set(by) == {"reference", "native"}  # triton does not run on cpu at all
    assert by["native"]["unavailable"] == "not built (test)"
    assert by["reference"]["active"] and not by["native"]["active"]


def test_the_four_families_are_registered():
    assert {"conv2d", "attention", "noise_schedule", "logdet"} <= set(dispatch.families())


def test_info_lists_the_kernel_table():
    from minigen.info import info_text
    text = info_text()
    assert "kernels (* = active" in text
