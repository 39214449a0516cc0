"""Bernoulli, Categorical, OneHotCategorical: given by ``probs`` or by ``logits`` (one of them).

    Bernoulli(p), l = logit p:   log p(x) = x l − softplus(l),   H = softplus(l) − p l
    Categorical(p), K classes:   log p(k) = log p_k (logits normalised by logsumexp),
                                 H = −Σ_k p_k log p_k
Sampling reads no value on the host: a Bernoulli draw is [u < p]; a Categorical draw is the
inverse CDF, k = #{j : C_j ≤ u} with C = cumsum(p) / Σp (C_{K−1} = 1 exactly, u < 1, so
k ≤ K − 1 and a class of probability 0 is never drawn).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..creation import rand
from ..ops.indexing import one_hot
from . import constraints
from .distribution import Distribution
from .utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

__all__ = ["Bernoulli", "Categorical", "OneHotCategorical"]


def _one_of(name, probs, logits):
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}: either `probs` or `logits` must be specified, but not both")


class Bernoulli(Distribution):
    """Bernoulli(probs=None, logits=None): 1 with probability p, 0 otherwise (floats)."""
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.boolean
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args=None):
        _one_of("Bernoulli", probs, logits)
        if probs is not None:
            (self.probs,) = broadcast_all(probs, names=["probs"])
            shape = self.probs.shape
        else:
            (self.logits,) = broadcast_all(logits, names=["logits"])
            shape = self.logits.shape
        super().__init__(tuple(shape), validate_args=validate_args)

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits, is_binary=True)

    @property
    def _param(self):
        return self.__dict__["probs"] if "probs" in self.__dict__ else self.__dict__["logits"]

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Bernoulli, _instance)
        for name in ("probs", "logits"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(*batch_shape))
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=(), generator=None):
        p = self.probs.detach()
        u = rand(*self._extended_shape(sample_shape), generator=generator, dtype=p.dtype,
                 device=p.device)
        return (u < p).to(p.dtype)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        return value * logits - logits.softplus()

    def entropy(self):
        return self.logits.softplus() - self.probs * self.logits

    def enumerate_support(self, expand=True):
        from ..creation import arange
        vals = arange(2, dtype=self._param.dtype, device=self._param.device)
        vals = vals.reshape(2, *((1,) * len(self.batch_shape)))
        return vals.expand(2, *self.batch_shape) if expand else vals


class Categorical(Distribution):
    """Categorical(probs=None, logits=None) over {0, …, K−1}, K = the last dim's size (the
    other dims are the batch). ``probs`` are normalised to sum to 1, ``logits`` by logsumexp."""
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args=None):
        _one_of(type(self).__name__, probs, logits)
        param = probs if probs is not None else logits
        if param.ndim < 1:
            raise ValueError(f"{type(self).__name__}: `{'probs' if probs is not None else 'logits'}`"
                             " must have at least one dimension (the classes)")
        if not dtypes.is_floating(param.data.dtype):
            param = param.to(dtypes.get_default_dtype())
        if probs is not None:
            self.probs = param / param.sum(-1, keepdim=True)
        else:
            self.logits = param - param.logsumexp(-1, keepdim=True)
        self._num_events = param.shape[-1]
        super().__init__(tuple(param.shape[:-1]), validate_args=validate_args)

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits)

    @property
    def _param(self):
        return self.__dict__["probs"] if "probs" in self.__dict__ else self.__dict__["logits"]

    @property
    def param_shape(self):
        return tuple(self._param.shape)

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Categorical, _instance)
        for name in ("probs", "logits"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(*batch_shape, self._num_events))
        new._num_events = self._num_events
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self):
        return constraints.integer_interval(0, self._num_events - 1)

    @property
    def mean(self):
        return self._nan()

    @property
    def variance(self):
        return self._nan()

    def _nan(self):
        from ..creation import full
        p = self._param
        return full(self.batch_shape, float("nan"), dtype=p.dtype, device=p.device)

    def sample(self, sample_shape=(), generator=None):
        p = self.probs.detach()
        cdf = p.cumsum(-1)
        cdf = cdf / cdf[..., -1:]
        u = rand(*self._extended_shape(sample_shape), 1, generator=generator, dtype=p.dtype,
                 device=p.device)
        return (cdf <= u).to(dtypes.int64).sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        if value.data.dtype != np.int64:
            value = value.to(dtypes.int64)
        logits = self.logits
        shape = np.broadcast_shapes(tuple(value.shape) + (1,), tuple(logits.shape))
        index = value.unsqueeze(-1).expand(*shape[:-1], 1)
        return logits.expand(*shape).gather(-1, index).squeeze(-1)

    def entropy(self):
        lo = float(np.finfo(self.logits.data.dtype).min)
        return -(self.logits.clamp(min=lo) * self.probs).sum(-1)

    def enumerate_support(self, expand=True):
        from ..creation import arange
        vals = arange(self._num_events, device=self._param.device)
        vals = vals.reshape(self._num_events, *((1,) * len(self.batch_shape)))
        return vals.expand(self._num_events, *self.batch_shape) if expand else vals


class OneHotCategorical(Distribution):
    """OneHotCategorical(probs=None, logits=None): a Categorical draw as a one-hot vector
    (event shape (K,), floats)."""
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    support = constraints.one_hot
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._categorical = Categorical(probs, logits, validate_args=validate_args)
        super().__init__(self._categorical.batch_shape, self._categorical.param_shape[-1:],
                         validate_args=False)
        self._validate_args = self._categorical._validate_args

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(OneHotCategorical, _instance)
        new._categorical = self._categorical.expand(batch_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def probs(self):
        return self._categorical.probs

    @property
    def logits(self):
        return self._categorical.logits

    @property
    def _param(self):
        return self._categorical._param

    @property
    def param_shape(self):
        return self._categorical.param_shape

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=(), generator=None):
        k = self._categorical.sample(sample_shape, generator=generator)
        return one_hot(k, self._categorical._num_events).to(self._param.dtype)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self._categorical.log_prob(value.argmax(-1))

    def entropy(self):
        return self._categorical.entropy()

    def enumerate_support(self, expand=True):
        from ..creation import eye
        n = self.event_shape[0]
        vals = eye(n, dtype=self._param.dtype, device=self._param.device)
        vals = vals.reshape(n, *((1,) * len(self.batch_shape)), n)
        return vals.expand(n, *self.batch_shape, n) if expand else vals
