"""Kernel dispatch: which implementation of a kernel family runs, and why.

Every kernel family (``conv2d``, ``attention``, ``noise_schedule``, ``logdet``) exists in up to
four implementations with the same function names and signatures over backend arrays:

    ========== ======================================== ======================
    name       where                                    devices
    ========== ======================================== ======================
    reference  ``minigen/reference/<family>.py`` (numpy) cpu (and cuda via CuPy)
    native     ``csrc/<family>.cpp`` via ``minigen/native/<family>.py`` cpu
    triton     ``kernels/<family>.py``                  cuda; cpu only under TRITON_INTERPRET=1
    cuda       ``kernels/<family>.cu`` through CuPy     cuda
    ========== ======================================== ======================

A family registers each implementation with a loader (imported lazily, the first time it is
chosen) and an availability check that returns ``None`` or the reason it cannot run. For each
device type a family lists its preference order; ``get(family, device)`` returns the first
available one. Choosing something other than the first choice is **visible**: a
``KernelFallbackWarning`` once per (family, device), and ``minigen info`` lists the reason.

Forcing one implementation, for study and benchmarking:

    with minigen.dispatch.use("reference"):           # every family
        ...
    with minigen.dispatch.use(conv2d="triton"):       # one family
        ...
    MINIGEN_KERNELS=reference python train.py         # environment, every family
    MINIGEN_KERNELS=conv2d=native,attention=reference # environment, per family

A forced implementation that cannot run raises a ``RuntimeError`` that says why; it never falls
back silently.

Triton on ``cuda`` counts as available only when Triton's active driver can launch there
(``minigen.kernels._triton.driver_probe``, run once: Triton 3.6's CUDA driver needs a CUDA build
of PyTorch); otherwise the family falls back like any other unavailable implementation.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable

IMPLEMENTATIONS = ("reference", "native", "triton", "cuda")


class KernelFallbackWarning(UserWarning):
    """The preferred implementation of a kernel family is unavailable; another one runs."""


@dataclass
class Implementation:
    family: str
    name: str
    devices: tuple[str, ...]           # device types it can run on at all
    module: str                        # import path of the module with the family's functions
    check: Callable[[str], str | None] | None = None  # device type -> None or why not
    _loaded: object = field(default=None, repr=False)

    def unavailable(self, device_type: str) -> str | None:
        """None when this implementation can run on ``device_type``, else the reason."""
        if device_type not in self.devices:
            return f"{self.name} runs on {'/'.join(self.devices)}, not {device_type}"
        if self.check is not None:
            try:
                why = self.check(device_type)
            except Exception as exc:  # a broken optional dependency is a reason, not a crash
                why = f"{type(exc).__name__}: {exc}"
            if why:
                return why
        return None

    def load(self):
        if self._loaded is None:
            self._loaded = importlib.import_module(self.module)
        return self._loaded


_FAMILIES: dict[str, dict[str, Implementation]] = {}
_ORDER: dict[tuple[str, str], tuple[str, ...]] = {}
_CACHE: dict[tuple, tuple[Implementation, str | None]] = {}
_WARNED: set = set()
_LOCAL = threading.local()


def register(family: str, name: str, module: str, devices=("cpu",), check=None) -> None:
    """Add implementation ``name`` of ``family``, found in ``module`` (imported on first use)."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}")
    _FAMILIES.setdefault(family, {})[name] = Implementation(family, name, tuple(devices),
                                                             module, check)
    _CACHE.clear()


def set_order(family: str, device_type: str, order) -> None:
    """The preference order of ``family`` on ``device_type`` (first available wins)."""
    _ORDER[(family, device_type)] = tuple(order)
    _CACHE.clear()


def families() -> list[str]:
    _ensure_registered()
    return sorted(_FAMILIES)


def _parse_env(value: str) -> tuple[str | None, dict[str, str]]:
    """'native' -> ('native', {}); 'conv2d=triton,attention=reference' -> (None, {...})."""
    every, per = None, {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        if "=" in part:
            fam, _, impl = part.partition("=")
            per[fam.strip()] = impl.strip()
        else:
            every = part
    for impl in [every, *per.values()]:
        if impl is not None and impl not in IMPLEMENTATIONS:
            raise ValueError(f"MINIGEN_KERNELS={value!r}: unknown implementation {impl!r}; "
                             f"expected one of {IMPLEMENTATIONS}")
    return every, per


def _forced(family: str) -> tuple[str | None, str]:
    """(implementation forced for ``family`` or None, who forced it)."""
    for every, per in reversed(getattr(_LOCAL, "stack", [])):
        if family in per:
            return per[family], "minigen.dispatch.use"
        if every is not None:
            return every, "minigen.dispatch.use"
    env = os.environ.get("MINIGEN_KERNELS", "")
    if env:
        every, per = _parse_env(env)
        if family in per:
            return per[family], "MINIGEN_KERNELS"
        if every is not None:
            return every, "MINIGEN_KERNELS"
    return None, ""


@contextlib.contextmanager
def use(implementation: str | None = None, **per_family: str):
    """Force one implementation for every family, or per family (``use(conv2d="native")``)."""
    for impl in [implementation, *per_family.values()]:
        if impl is not None and impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {impl!r}; expected one of "
                             f"{IMPLEMENTATIONS}")
    _ensure_registered()
    for fam in per_family:
        if fam not in _FAMILIES:
            raise ValueError(f"unknown kernel family {fam!r}; known: {sorted(_FAMILIES)}")
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    stack.append((implementation, dict(per_family)))
    try:
        yield
    finally:
        stack.pop()


def _device_type(device) -> str:
    return device if isinstance(device, str) else device.type


def choose(family: str, device="cpu") -> tuple[Implementation, str | None]:
    """(implementation, fallback note or None) for ``family`` on ``device``."""
    _ensure_registered()
    dtype = _device_type(device)
    forced, who = _forced(family)
    key = (family, dtype, forced, os.environ.get("TRITON_INTERPRET", ""))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    impls = _FAMILIES.get(family)
    if not impls:
        raise ValueError(f"unknown kernel family {family!r}; known: {sorted(_FAMILIES)}")
    if forced is not None:
        impl = impls.get(forced)
        if impl is None:
            raise RuntimeError(f"{who} asks for the {forced!r} implementation of {family}, "
                               f"which does not exist (it has: {', '.join(impls)})")
        why = impl.unavailable(dtype)
        if why:
            raise RuntimeError(f"{who} asks for the {forced!r} implementation of {family} on "
                               f"{dtype}, which cannot run: {why}")
        result = (impl, None)
    else:
        order = _ORDER.get((family, dtype), tuple(impls))
        skipped = []
        result = None
        for name in order:
            impl = impls.get(name)
            if impl is None:
                continue
            why = impl.unavailable(dtype)
            if why is None:
                note = ("; ".join(f"{n} unavailable ({w})" for n, w in skipped)
                        if skipped else None)
                result = (impl, note)
                break
            skipped.append((name, why))
        if result is None:
            raise RuntimeError(f"no implementation of {family} can run on {dtype}: " +
                               "; ".join(f"{n}: {w}" for n, w in skipped))
    _CACHE[key] = result
    return result


def get(family: str, device="cpu"):
    """The module implementing ``family`` on ``device`` (warns once when it is a fallback)."""
    impl, note = choose(family, device)
    if note is not None:
        wkey = (family, _device_type(device))
        if wkey not in _WARNED:
            _WARNED.add(wkey)
            warnings.warn(f"minigen: {family} on {_device_type(device)} runs the {impl.name!r} "
                          f"implementation: {note}", KernelFallbackWarning, stacklevel=3)
    return impl.load()


def get_for(family: str, array):
    """``get`` for the device an array lives on (numpy: cpu, otherwise cuda); what the op
    layer calls inside a ``Function``, which sees arrays, not Tensors."""
    import numpy as np

    return get(family, "cpu" if isinstance(array, np.ndarray) else "cuda")


def active(family: str, device="cpu") -> str:
    """The name of the implementation ``get`` would use now."""
    return choose(family, device)[0].name


def status(device_types=("cpu", "cuda")) -> list[dict]:
    """One row per (family, device type, implementation), for ``minigen info`` and tests."""
    _ensure_registered()
    rows = []
    for family in sorted(_FAMILIES):
        for dtype in device_types:
            try:
                chosen = choose(family, dtype)[0].name
            except RuntimeError as exc:
                chosen, err = None, str(exc)
            else:
                err = None
            for name, impl in _FAMILIES[family].items():
                if dtype not in impl.devices:
                    continue
                rows.append({"family": family, "device": dtype, "implementation": name,
                             "unavailable": impl.unavailable(dtype),
                             "active": name == chosen, "error": err})
    return rows


# ----------------------------------------------------------------------- availability checks
def native_check(device_type: str) -> str | None:
    from . import _native

    return None if _native.available() else f"minigen._C {_native.reason()}"


def triton_check(device_type: str) -> str | None:
    from .kernels import _triton

    return _triton.unavailable(device_type)


def cuda_check(device_type: str) -> str | None:
    from .backend import cuda_available, cupy_module

    if not cuda_available():
        try:
            cupy_module()
        except RuntimeError as exc:
            return str(exc)
    return None


def reference_check(device_type: str) -> str | None:
    """The numpy references run on CuPy arrays too, which needs CuPy and a GPU."""
    return cuda_check(device_type) if device_type == "cuda" else None


_REGISTERED = [False]


def _ensure_registered():
    """Register the four families under the standard paths (see the table above)."""
    if _REGISTERED[0]:
        return
    _REGISTERED[0] = True
    register_family("conv2d")
    register_family("attention")
    register_family("noise_schedule")
    # A batched LU is a poor fit for Triton's block model: raw CUDA comes first there.
    register_family("logdet", cuda_order=("cuda", "triton", "reference"))


def register_family(family: str, cpu_order=("native", "reference"),
                    cuda_order=("triton", "cuda", "reference")) -> None:
    """Register the standard four implementations of ``family`` under the standard paths.

    An implementation whose module file does not exist is not registered.
    """
    import importlib.util

    candidates = {
        "reference": (f"minigen.reference.{family}", ("cpu", "cuda"), reference_check),
        "native": (f"minigen.native.{family}", ("cpu",), native_check),
        "triton": (f"minigen.kernels.{family}", ("cpu", "cuda"), triton_check),
        "cuda": (f"minigen.kernels.{family}_cuda", ("cuda",), cuda_check),
    }
    for name, (module, devices, check) in candidates.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            register(family, name, module, devices, check)
    set_order(family, "cpu", cpu_order)
    set_order(family, "cuda", cuda_order)
