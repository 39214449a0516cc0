"""RelaxedBernoulli and RelaxedOneHotCategorical: the Concrete / Gumbel-softmax relaxations
(Maddison et al. 2017, Jang et al. 2017), continuous and reparameterised, with temperature τ.

    RelaxedBernoulli(τ, l):   x = (l + log u − log(1 − u)) / τ,  y = σ(x),  u ~ U(0, 1)
        log p(y) = log τ + d − 2 softplus(d) − log y − log(1 − y),   d = l − τ logit(y)
    RelaxedOneHotCategorical(τ, l), K classes:
        y = softmax((l + g) / τ),  g_k = −log(−log u_k)  (Gumbel noise)
        log p(y) = log (K−1)! + (K−1) log τ + Σ_k (l_k − τ log y_k)
                   − K logsumexp_k (l_k − τ log y_k) − Σ_k log y_k
As PyTorch does, uniforms are clamped to [eps, 1 − eps] and a relaxed Bernoulli draw to the
same range, so logs stay finite. Entropy, mean and variance have no closed form (PyTorch
raises as well).
"""
from __future__ import annotations

import math
import numbers

from ..creation import rand
from ..tensor import Tensor
from . import constraints
from .discrete import Bernoulli, Categorical
from .distribution import Distribution
from .utils import clamp_probs

__all__ = ["RelaxedBernoulli", "RelaxedOneHotCategorical"]


def _temperature(temperature, like, name):
    if isinstance(temperature, numbers.Number) and not isinstance(temperature, bool):
        from ..backend import array_module
        xp = array_module(like.device)
        return Tensor._wrap(xp.asarray(temperature, dtype=like.data.dtype), like.device)
    if not isinstance(temperature, Tensor):
        raise TypeError(f"{name}: temperature must be a Tensor or a number, got "
                        f"{type(temperature).__name__}")
    return temperature if temperature.dtype == like.dtype else temperature.to(like.dtype)


class RelaxedBernoulli(Distribution):
    """RelaxedBernoulli(temperature, probs=None, logits=None) on (0, 1) (module doc)."""
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real,
                       "temperature": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self._bernoulli = Bernoulli(probs, logits, validate_args=validate_args)
        self.temperature = _temperature(temperature, self._bernoulli._param,
                                        "RelaxedBernoulli")
        super().__init__(self._bernoulli.batch_shape, validate_args=validate_args)

    @property
    def probs(self):
        return self._bernoulli.probs

    @property
    def logits(self):
        return self._bernoulli.logits

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(RelaxedBernoulli, _instance)
        new._bernoulli = self._bernoulli.expand(batch_shape)
        new.temperature = self.temperature
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=(), generator=None):
        p = self._bernoulli._param
        u = clamp_probs(rand(*self._extended_shape(sample_shape), generator=generator,
                             dtype=p.dtype, device=p.device))
        probs = clamp_probs(self.probs)
        x = (u.log() - (-u).log1p() + probs.log() - (-probs).log1p()) / self.temperature
        return clamp_probs(x.sigmoid())

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        y = clamp_probs(value)
        log_y, log_1my = y.log(), (-y).log1p()
        d = self.logits - (log_y - log_1my) * self.temperature
        return self.temperature.log() + d - 2 * d.softplus() - log_y - log_1my


class RelaxedOneHotCategorical(Distribution):
    """RelaxedOneHotCategorical(temperature, probs=None, logits=None) on the simplex (module
    doc), event shape (K,)."""
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector,
                       "temperature": constraints.positive}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self._categorical = Categorical(probs, logits, validate_args=validate_args)
        self.temperature = _temperature(temperature, self._categorical._param,
                                        "RelaxedOneHotCategorical")
        super().__init__(self._categorical.batch_shape, self._categorical.param_shape[-1:],
                         validate_args=validate_args)

    @property
    def probs(self):
        return self._categorical.probs

    @property
    def logits(self):
        return self._categorical.logits

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(RelaxedOneHotCategorical, _instance)
        new._categorical = self._categorical.expand(batch_shape)
        new.temperature = self.temperature
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=(), generator=None):
        p = self._categorical._param
        u = clamp_probs(rand(*self._extended_shape(sample_shape), generator=generator,
                             dtype=p.dtype, device=p.device))
        gumbels = -(-u.log()).log()
        scores = (self.logits + gumbels) / self.temperature
        return (scores - scores.logsumexp(-1, keepdim=True)).exp()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = self._categorical._num_events
        x = value.log()
        t = self.temperature
        log_scale = math.lgamma(k) + (k - 1) * t.log()
        score = self.logits - x * t
        score = (score - score.logsumexp(-1, keepdim=True)).sum(-1)
        return score + log_scale - x.sum(-1)
