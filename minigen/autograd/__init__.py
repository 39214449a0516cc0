"""Reverse-mode automatic differentiation: ``Function``, ``backward``, ``grad``, grad modes,
anomaly detection and ``gradcheck``."""
from .function import Function
from .grad_mode import (debug_checks, detect_anomaly, enable_grad, is_anomaly_enabled,
                        is_debug_checks_enabled, is_grad_enabled, no_grad, set_debug_checks,
                        set_detect_anomaly, set_grad_enabled)
from .functional import backward, grad
from .gradcheck import gradcheck

__all__ = ["Function", "backward", "grad", "gradcheck", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled", "debug_checks", "set_debug_checks", "is_debug_checks_enabled"]
