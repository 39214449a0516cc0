"""Reverse-mode automatic differentiation: ``Function``, ``backward``, ``grad``, grad modes,
anomaly detection and ``gradcheck``."""
from .function import Function
from .grad_mode import (detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad,
                        set_detect_anomaly, set_grad_enabled)
from .functional import backward, grad
from .gradcheck import gradcheck

__all__ = ["Function", "backward", "grad", "gradcheck", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled"]
