"""Global switches of the engine: gradient recording, anomaly detection and value checks.

Value checks: an op whose arguments are valid or not depending on the *values* in a tensor
(index bounds of embedding/gather/scatter/index_select/one_hot, class targets of the losses,
BCE probabilities in [0, 1], non-negative Gaussian variances) checks those values on the host.
For a CPU tensor that is free. For a CUDA tensor it is a device→host transfer, which waits for
every queued kernel: one per call, every sampling step of a class-conditional model. So on CUDA
these checks run only when asked for, with ``minigen.set_debug_checks(True)`` /
``with minigen.debug_checks():`` or under anomaly detection (``detect_anomaly``); otherwise a
bad value is not detected there (CuPy's integer indexing wraps an out-of-range index around, as
PyTorch's CUDA kernels would hit a device-side assert). ``value_checks(device)`` is what ops ask.
"""
from __future__ import annotations

import functools


class _State:
    grad_enabled = True   # record operations for backward
    anomaly = False       # check every forward output and backward gradient for NaN/inf
    debug_checks = False  # check data-dependent arguments of CUDA tensors too (module doc)


STATE = _State


def is_grad_enabled() -> bool:
    return _State.grad_enabled


class _GradSwitch:
    """Context manager and decorator that sets gradient recording to ``self.mode``."""

    mode = True

    def __enter__(self):
        self._prev = _State.grad_enabled
        _State.grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        _State.grad_enabled = self._prev
        return False

    def _clone(self):
        return self.__class__()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self._clone():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradSwitch):
    """Operations inside do not record a graph: ``with minigen.no_grad(): ...``."""
    mode = False


class enable_grad(_GradSwitch):
    """Turns recording back on inside a ``no_grad`` region."""
    mode = True


class set_grad_enabled(_GradSwitch):
    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _State.grad_enabled
        _State.grad_enabled = self.mode  # also works as a plain function call, as in PyTorch

    def __enter__(self):
        _State.grad_enabled = self.mode
        return self

    def __call__(self, fn):
        # used as a decorator: the call that made self must not leave the mode switched
        _State.grad_enabled = self._prev
        return super().__call__(fn)

    def _clone(self):
        return set_grad_enabled(self.mode)


class detect_anomaly:
    """Raise at the first op whose forward output or backward gradient holds NaN or inf,
    naming that op. ``with minigen.autograd.detect_anomaly(): loss.backward()``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self._prev = _State.anomaly
        _State.anomaly = self.enabled
        return self

    def __exit__(self, *exc):
        _State.anomaly = self._prev
        return False


def set_detect_anomaly(enabled: bool):
    _State.anomaly = bool(enabled)


def is_anomaly_enabled() -> bool:
    return _State.anomaly


class debug_checks:
    """Check the values that decide whether an op's arguments are valid (index bounds, class
    targets, ...) for CUDA tensors too, at the cost of a device→host synchronisation per check
    (module doc). ``with minigen.debug_checks(): ...``; CPU tensors are always checked."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self._prev = _State.debug_checks
        _State.debug_checks = self.enabled
        return self

    def __exit__(self, *exc):
        _State.debug_checks = self._prev
        return False


def set_debug_checks(enabled: bool):
    _State.debug_checks = bool(enabled)


def is_debug_checks_enabled() -> bool:
    return _State.debug_checks


def value_checks(device) -> bool:
    """Whether an op on ``device`` checks data-dependent argument values on the host: always on
    the CPU; on CUDA only with debug checks or anomaly detection on (module doc)."""
    return device.type == "cpu" or _State.debug_checks or _State.anomaly
