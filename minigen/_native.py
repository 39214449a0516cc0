"""The C++ extension ``minigen._C`` (built from ``csrc/`` by setup.py through CMake).

It is optional at import time so that a reader can run the numpy reference from a source tree,
but the package build always compiles it; ``minigen info`` says whether it was found and why not.
Set ``MINIGEN_DISABLE_NATIVE=1`` to ignore it (the numpy paths then run everywhere).
"""
from __future__ import annotations

import os

_mod = None
_error: str | None = None


def _load():
    global _mod, _error
    if _mod is not None or _error is not None:
        return
    if os.environ.get("MINIGEN_DISABLE_NATIVE", "") not in ("", "0"):
        _error = "disabled by MINIGEN_DISABLE_NATIVE"
        return
    # OMP_WAIT_POLICY is left to the user (libgomp's default: idle threads spin a little, then
    # sleep). Until minigen had its own GEMM it set PASSIVE here, because libgomp's spinning
    # threads took the cores numpy's OpenBLAS needed for the next matmul; now every product of
    # a step runs on the OpenMP pool, and keeping it warm between the many short parallel
    # regions pays (measured, minigen alone, 2 threads: E2 step 456 ms PASSIVE vs 358 ms
    # ACTIVE; E1 step 3.9–4.9 ms vs 3.5 ms).
    try:
        from . import _C
        _mod = _C
    except ImportError as exc:
        _error = f"not built or not importable ({exc})"


def available() -> bool:
    _load()
    return _mod is not None


def module():
    _load()
    if _mod is None:
        raise RuntimeError(f"minigen native extension unavailable: {_error}")
    return _mod


def reason() -> str | None:
    _load()
    return _error
