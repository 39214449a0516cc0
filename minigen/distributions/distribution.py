"""``Distribution``: the base class, PyTorch's ``torch.distributions.Distribution`` contract.

Shapes: a sample has shape ``sample_shape + batch_shape + event_shape``; ``log_prob(value)``
returns ``sample_shape + batch_shape`` (the event dims are summed into one density);
``batch_shape`` indexes independent, differently parameterised distributions, ``event_shape``
is the shape of one draw (() for scalars, (k,) for MultivariateNormal or OneHotCategorical).

``sample`` draws without recording gradients; ``rsample`` (where ``has_rsample``) draws a
reparameterised sample x = g(θ, ε) through which gradients flow to the parameters θ. Both take
``generator=`` (a ``minigen.Generator`` on the parameters' device) for seeded draws.

Validation (``validate_args``, on by default as in PyTorch): parameter shapes and dtypes are
always checked; parameter values against ``arg_constraints`` and ``log_prob`` values against
``support`` are checked on the host, which on CUDA is a device→host transfer, so there it runs
only under ``minigen.debug_checks()`` or anomaly detection (``autograd/grad_mode.py``), as the
engine's other value checks.
"""
from __future__ import annotations


from .. import dtypes
from ..autograd.grad_mode import value_checks
from ..autograd import no_grad
from ..tensor import Tensor
from . import constraints
from .utils import lazy_property

__all__ = ["Distribution"]


def _shape_tuple(shape, what="sample_shape"):
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints, got {type(shape).__name__}") from None
    for s in shape:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"{what} must hold non-negative ints, got {shape}")
    return shape


class Distribution:
    has_rsample = False
    has_enumerate_support = False
    arg_constraints: dict = {}
    support = None
    _validate_default = True

    @staticmethod
    def set_default_validate_args(value: bool):
        if value not in (True, False):
            raise ValueError("set_default_validate_args expects True or False")
        Distribution._validate_default = value

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = _shape_tuple(batch_shape, "batch_shape")
        self._event_shape = _shape_tuple(event_shape, "event_shape")
        if validate_args is not None:
            self._validate_args = bool(validate_args)
        else:
            self._validate_args = Distribution._validate_default
        if self._validate_args:
            for param, constraint in self.arg_constraints.items():
                if constraints.is_dependent(constraint):
                    continue
                if param not in self.__dict__ and isinstance(
                        getattr(type(self), param, None), (property, lazy_property)):
                    continue  # a derived parametrisation (probs from logits): not checked
                value = getattr(self, param)
                self._check_values(constraint, value, f"parameter {param}")

    # ---------------------------------------------------------------- shapes
    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def event_shape(self):
        return self._event_shape

    def _extended_shape(self, sample_shape=()):
        return _shape_tuple(sample_shape) + self._batch_shape + self._event_shape

    def expand(self, batch_shape, _instance=None):  # pragma: no cover - per family
        raise NotImplementedError(f"{type(self).__name__}.expand is not implemented")

    def _get_checked_instance(self, cls, _instance=None):
        if _instance is None and type(self).__init__ != cls.__init__:
            raise NotImplementedError(
                f"subclass {type(self).__name__} of {cls.__name__} that defines a custom "
                "__init__ must also define expand")
        return _instance if _instance is not None else object.__new__(type(self))

    def _check_expand(self, batch_shape):
        batch_shape = _shape_tuple(batch_shape, "batch_shape")
        ok = len(batch_shape) >= len(self._batch_shape) and all(
            s == b or s == 1 for s, b in zip(reversed(self._batch_shape), reversed(batch_shape)))
        if not ok:
            raise ValueError(f"{type(self).__name__}.expand: batch_shape {self._batch_shape} "
                             f"cannot be expanded to {batch_shape}")
        return batch_shape

    # ---------------------------------------------------------------- sampling
    def sample(self, sample_shape=(), generator=None):
        """A draw of shape sample_shape + batch_shape + event_shape, no gradient."""
        with no_grad():
            return self.rsample(sample_shape, generator=generator).detach()

    def rsample(self, sample_shape=(), generator=None):
        raise NotImplementedError(
            f"{type(self).__name__} has no reparameterised sampler (rsample); use sample")

    def sample_n(self, n, generator=None):
        return self.sample((n,), generator=generator)

    # ---------------------------------------------------------------- densities
    def log_prob(self, value):  # pragma: no cover - per family
        raise NotImplementedError

    def cdf(self, value):
        raise NotImplementedError(f"{type(self).__name__} has no cdf")

    def icdf(self, value):
        raise NotImplementedError(f"{type(self).__name__} has no icdf")

    def entropy(self):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form entropy")

    def perplexity(self):
        return self.entropy().exp()

    # ---------------------------------------------------------------- moments
    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__} has no mean")

    @property
    def mode(self):
        raise NotImplementedError(f"{type(self).__name__} has no mode")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__} has no variance")

    @property
    def stddev(self):
        return self.variance.sqrt()

    # ---------------------------------------------------------------- validation
    def _check_values(self, constraint, value, what):
        """Raise if ``value`` breaks ``constraint`` (host check; module doc for CUDA)."""
        if not isinstance(value, Tensor) or not value_checks(value.device):
            return
        ok = constraint.check(value)
        if not bool(ok.all()):
            raise ValueError(
                f"Expected {what} ({type(value).__name__} of shape {tuple(value.shape)}) of "
                f"distribution {self!r} to satisfy the constraint {constraint!r}, but found "
                "invalid values")

    def _validate_sample(self, value):
        """``log_prob``'s argument: a Tensor whose trailing dims are the event shape and whose
        batch dims broadcast with batch_shape, inside the support."""
        if not isinstance(value, Tensor):
            raise TypeError(f"{type(self).__name__}.log_prob: the value must be a Tensor, got "
                            f"{type(value).__name__}")
        n = len(self._event_shape)
        shape = tuple(value.shape)
        if n and shape[len(shape) - n:] != self._event_shape or len(shape) < n:
            raise ValueError(f"{type(self).__name__}.log_prob: the value's rightmost dims "
                             f"{shape} must match the event shape {self._event_shape}")
        actual = shape[:len(shape) - n]
        for a, b in zip(reversed(actual), reversed(self._batch_shape)):
            if a != 1 and b != 1 and a != b:
                raise ValueError(f"{type(self).__name__}.log_prob: the value of shape {shape} "
                                 f"does not broadcast with batch_shape {self._batch_shape}")
        support = self.support
        if support is None or constraints.is_dependent(support):
            return
        self._check_values(support, value, "value")

    def __repr__(self):
        parts = []
        for p in self.arg_constraints:
            v = self.__dict__.get(p)
            if isinstance(v, Tensor):
                parts.append(f"{p}: {'size ' + str(tuple(v.shape)) if v.ndim else v.item()}"
                             if v.device.type == "cpu" else f"{p}: size {tuple(v.shape)}")
        return f"{type(self).__name__}({', '.join(parts)})"


def param_dtype(*values):
    """The floating dtype of the parameters (promoted; the default dtype for Python numbers)."""
    dt = None
    for v in values:
        if isinstance(v, Tensor) and dtypes.is_floating(v.data.dtype):
            dt = v.data.dtype if dt is None else dtypes.promote(dt, v.data.dtype)
    return dt if dt is not None else dtypes.get_default_dtype()


