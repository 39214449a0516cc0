"""Every implementation of a kernel family, as pytest parameters (tests of the kernel layer).

    @pytest.mark.parametrize("impl", implementations("conv2d"))
    def test_conv2d_forward(impl):
        with dispatch.use(conv2d=impl):
            ...

An implementation that cannot run here is still listed, skipped with the reason (so the test
report shows what was not checked and why). Every family has a reference, a native and a triton
implementation: one of those whose module is missing (``minigen.kernels`` is only importable
once the package is installed, for example) is listed as skipped too, never silently dropped.
The raw-CUDA implementation exists only where a family has one.
"""
from __future__ import annotations

import pytest

from minigen import dispatch


def implementations(family: str, device: str = "cpu", exclude=()):
    params = []
    seen = set()
    for row in dispatch.status((device,)):
        if row["family"] != family or row["implementation"] in exclude:
            continue
        name, why = row["implementation"], row["unavailable"]
        seen.add(name)
        marks = [pytest.mark.skip(reason=f"{family}/{name} on {device}: {why}")] if why else []
        if device == "cuda":
            marks.append(pytest.mark.gpu)
        params.append(pytest.param(name, id=f"{name}-{device}", marks=marks))
    registered = dispatch._FAMILIES.get(family, {})
    for name in ("reference", "native", "triton"):
        if name not in seen and name not in registered and name not in exclude:
            reason = f"{family}/{name}: module not importable (is minigen installed? pip install -e .)"
            params.append(pytest.param(name, id=f"{name}-{device}",
                                       marks=[pytest.mark.skip(reason=reason)]))
    return params
