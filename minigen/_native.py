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
    # libgomp's threads spin for a while after each parallel region by default; on a small
    # machine they then steal the cores the BLAS threads of the next matmul need (measured:
    # the E1 training step went from ~13 ms to ~5 ms with passive waiting). The variable is read
    # when the OpenMP runtime loads, i.e. on the import below; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
