"""Supports and parameter domains (PyTorch's ``torch.distributions.constraints`` names).

A constraint's ``check(value)`` is a bool Tensor of the value's batch shape (an event-shaped
constraint such as ``simplex`` reduces over its ``event_dim`` rightmost dims). It is computed on
the value's device; reading it on the host is the caller's decision (``Distribution`` does so
only where ``value_checks`` allows, see ``distribution.py``).
"""
from __future__ import annotations


__all__ = ["Constraint", "real", "real_vector", "positive", "nonnegative", "unit_interval",
           "boolean", "simplex", "one_hot", "lower_cholesky", "positive_definite",
           "greater_than", "interval", "half_open_interval", "integer_interval",
           "dependent", "independent", "is_dependent"]


class Constraint:
    event_dim = 0
    is_discrete = False

    def check(self, value):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__.lstrip("_") + "()"


class _Dependent(Constraint):
    """The support depends on other arguments (e.g. Uniform's [low, high)): not checked."""

    def __init__(self, is_discrete=False, event_dim=0):
        self.is_discrete, self.event_dim = is_discrete, event_dim

    def check(self, value):
        raise ValueError("cannot check a dependent constraint")


def is_dependent(constraint) -> bool:
    return isinstance(constraint, _Dependent)


class _Real(Constraint):
    def check(self, value):
        return value == value  # False exactly at NaN


class _GreaterThan(Constraint):
    def __init__(self, lower_bound, strict=True):
        self.lower_bound, self.strict = lower_bound, strict

    def check(self, value):
        return value > self.lower_bound if self.strict else value >= self.lower_bound

    def __repr__(self):
        name = "GreaterThan" if self.strict else "GreaterThanEq"
        return f"{name}(lower_bound={self.lower_bound})"


class _Interval(Constraint):
    """[lower, upper] (closed) or [lower, upper) (half-open)."""

    def __init__(self, lower_bound, upper_bound, half_open=False):
        self.lower_bound, self.upper_bound, self.half_open = lower_bound, upper_bound, half_open

    def check(self, value):
        upper = value < self.upper_bound if self.half_open else value <= self.upper_bound
        return (value >= self.lower_bound).logical_and(upper)

    def __repr__(self):
        close = ")" if self.half_open else "]"
        lo, hi = (b if isinstance(b, (int, float)) else n for b, n in
                  ((self.lower_bound, "low"), (self.upper_bound, "high")))
        return f"Interval[{lo}, {hi}{close}"


class _Boolean(Constraint):
    is_discrete = True

    def check(self, value):
        return (value == 0).logical_or(value == 1)


class _IntegerInterval(Constraint):
    is_discrete = True

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    def check(self, value):
        # (integer-valued: value mod 1 == 0)
        return ((value % 1) == 0).logical_and(value >= self.lower_bound).logical_and(
            value <= self.upper_bound)

    def __repr__(self):
        return f"IntegerInterval(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


class _Simplex(Constraint):
    """x_i ≥ 0 and |Σ x_i − 1| < 1e-6 over the last dim."""
    event_dim = 1

    def check(self, value):
        return (value >= 0).all(dim=-1).logical_and((value.sum(-1) - 1).abs() < 1e-6)


class _OneHot(Constraint):
    is_discrete = True
    event_dim = 1

    def check(self, value):
        return ((value == 0).logical_or(value == 1)).all(dim=-1).logical_and(value.sum(-1) == 1)


class _LowerCholesky(Constraint):
    """Lower triangular with a positive diagonal."""
    event_dim = 2

    def check(self, value):
        lower = (value.tril() == value).all(dim=-1).all(dim=-1)
        return lower.logical_and((value.diagonal(dim1=-2, dim2=-1) > 0).all(dim=-1))


class _PositiveDefinite(Constraint):
    """Symmetric with a Cholesky factor. The factorisation runs on the host (validation only)."""
    event_dim = 2

    def check(self, value):
        import numpy as np
        a = value.detach().cpu().numpy().astype(np.float64)
        out = np.zeros(a.shape[:-2], dtype=bool)
        for idx in np.ndindex(*a.shape[:-2]):
            m = a[idx]
            sym = np.allclose(m, m.T, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(m).max(initial=0)))
            try:
                np.linalg.cholesky(m)
                out[idx] = sym and bool(np.isfinite(m).all())
            except np.linalg.LinAlgError:
                out[idx] = False
        from ..tensor import tensor
        return tensor(out, device=value.device)


class _Independent(Constraint):
    """``base`` with ``reinterpreted_batch_ndims`` more dims reduced (by all) into the event."""

    def __init__(self, base, reinterpreted_batch_ndims):
        self.base, self.reinterpreted_batch_ndims = base, reinterpreted_batch_ndims
        self.event_dim = base.event_dim + reinterpreted_batch_ndims
        self.is_discrete = base.is_discrete

    def check(self, value):
        out = self.base.check(value)
        for _ in range(self.reinterpreted_batch_ndims):
            out = out.all(dim=-1)
        return out

    def __repr__(self):
        return f"IndependentConstraint({self.base!r}, {self.reinterpreted_batch_ndims})"


dependent = _Dependent()
real = _Real()
real_vector = _Independent(real, 1)
positive = _GreaterThan(0.0)
nonnegative = _GreaterThan(0.0, strict=False)
unit_interval = _Interval(0.0, 1.0)
boolean = _Boolean()
simplex = _Simplex()
one_hot = _OneHot()
lower_cholesky = _LowerCholesky()
positive_definite = _PositiveDefinite()
greater_than = _GreaterThan
interval = _Interval
integer_interval = _IntegerInterval
independent = _Independent


def half_open_interval(lower_bound, upper_bound):
    return _Interval(lower_bound, upper_bound, half_open=True)


