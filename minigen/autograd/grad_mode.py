"""Global switches of the autograd engine: gradient recording and anomaly detection."""
from __future__ import annotations

import functools


class _State:
    grad_enabled = True   # record operations for backward
    anomaly = False       # check every forward output and backward gradient for NaN/inf


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
