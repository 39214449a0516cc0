"""Every implementation of a kernel family, as pytest parameters (tests of the kernel layer).

    @pytest.mark.parametrize("impl", implementations("conv2d"))
    def test_conv2d_forward(impl):
        with dispatch.use(conv2d=impl):
            ...

An implementation that cannot run here is still listed, skipped with the reason (so the test
report shows what was not checked and why); one whose module does not exist yet is left out.
"""
from __future__ import annotations

import pytest

from minigen import dispatch


def implementations(family: str, device: str = "cpu", exclude=()):
    params = []
    for row in dispatch.status((device,)):
        if row["family"] != family or row["implementation"] in exclude:
            continue
        name, why = row["implementation"], row["unavailable"]
        marks = [pytest.mark.skip(reason=f"{family}/{name} on {device}: {why}")] if why else []
        if device == "cuda":
            marks.append(pytest.mark.gpu)
        params.append(pytest.param(name, id=f"{name}-{device}", marks=marks))
    return params
