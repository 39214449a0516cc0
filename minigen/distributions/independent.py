"""Independent and MixtureSameFamily: distributions built from another one.

    Independent(base, n):  the rightmost n batch dims of ``base`` become event dims;
                           log p(x) = Σ over those dims of base.log_prob(x), likewise entropy.
    MixtureSameFamily(Categorical(π), components with batch (…, K)):
        log p(x) = logsumexp_k (log π_k + log p_k(x))
        mean = Σ_k π_k μ_k,   variance = Σ_k π_k σ²_k + Σ_k π_k (μ_k − mean)²
"""
from __future__ import annotations

from . import constraints
from .discrete import Categorical
from .distribution import Distribution

__all__ = ["Independent", "MixtureSameFamily"]


def _sum_rightmost(t, n):
    for _ in range(n):
        t = t.sum(-1)
    return t


class Independent(Distribution):
    """Independent(base_distribution, reinterpreted_batch_ndims) (module doc)."""
    arg_constraints: dict = {}

    def __init__(self, base_distribution, reinterpreted_batch_ndims, validate_args=None):
        if not isinstance(base_distribution, Distribution):
            raise TypeError("Independent: base_distribution must be a Distribution, got "
                            f"{type(base_distribution).__name__}")
        n = reinterpreted_batch_ndims
        if not isinstance(n, int) or isinstance(n, bool) or \
                not 0 <= n <= len(base_distribution.batch_shape):
            raise ValueError(
                f"Independent: reinterpreted_batch_ndims must be an int in [0, "
                f"{len(base_distribution.batch_shape)}] (the base's batch dims "
                f"{base_distribution.batch_shape}), got {n!r}")
        shape = base_distribution.batch_shape + base_distribution.event_shape
        k = len(base_distribution.batch_shape) - n
        self.base_dist = base_distribution
        self.reinterpreted_batch_ndims = n
        super().__init__(shape[:k], shape[k:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(Independent, _instance)
        new.base_dist = self.base_dist.expand(
            batch_shape + self.event_shape[:self.reinterpreted_batch_ndims])
        new.reinterpreted_batch_ndims = self.reinterpreted_batch_ndims
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return False

    @property
    def support(self):
        s = self.base_dist.support
        if s is None or constraints.is_dependent(s):
            return s
        return constraints.independent(s, self.reinterpreted_batch_ndims)

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def mode(self):
        return self.base_dist.mode

    @property
    def variance(self):
        return self.base_dist.variance

    def sample(self, sample_shape=(), generator=None):
        return self.base_dist.sample(sample_shape, generator=generator)

    def rsample(self, sample_shape=(), generator=None):
        return self.base_dist.rsample(sample_shape, generator=generator)

    def log_prob(self, value):
        return _sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self):
        return _sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    def __repr__(self):
        return f"Independent({self.base_dist!r}, {self.reinterpreted_batch_ndims})"


class MixtureSameFamily(Distribution):
    """MixtureSameFamily(mixture_distribution, component_distribution) (module doc):
    ``mixture_distribution`` a Categorical with batch_shape B and K classes,
    ``component_distribution`` any distribution with batch_shape B + (K,)."""
    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, mixture_distribution, component_distribution, validate_args=None):
        if not isinstance(mixture_distribution, Categorical):
            raise ValueError("MixtureSameFamily: mixture_distribution must be a Categorical, "
                             f"got {type(mixture_distribution).__name__}")
        if not isinstance(component_distribution, Distribution):
            raise ValueError("MixtureSameFamily: component_distribution must be a "
                             f"Distribution, got {type(component_distribution).__name__}")
        mb, cb = mixture_distribution.batch_shape, component_distribution.batch_shape
        if len(cb) < 1 or cb[:-1] != mb and not all(
                a == b or a == 1 or b == 1 for a, b in zip(reversed(mb), reversed(cb[:-1]))):
            raise ValueError(f"MixtureSameFamily: the mixture's batch_shape {mb} must match "
                             f"the components' batch_shape {cb} without its last dim")
        k = mixture_distribution._num_events
        if cb[-1] != k:
            raise ValueError(f"MixtureSameFamily: the mixture has {k} classes but the "
                             f"components' batch_shape {cb} ends in {cb[-1]}")
        self._mixture_distribution = mixture_distribution
        self._component_distribution = component_distribution
        self._num_component = k
        self._event_ndims = len(component_distribution.event_shape)
        super().__init__(cb[:-1], component_distribution.event_shape,
                         validate_args=validate_args)

    @property
    def mixture_distribution(self):
        return self._mixture_distribution

    @property
    def component_distribution(self):
        return self._component_distribution

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(MixtureSameFamily, _instance)
        new._component_distribution = self._component_distribution.expand(
            batch_shape + (self._num_component,))
        new._mixture_distribution = self._mixture_distribution.expand(batch_shape)
        new._num_component, new._event_ndims = self._num_component, self._event_ndims
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def support(self):
        return self._component_distribution.support

    def _pad(self, t):
        """(…, K) weights → (…, K, 1, …, 1) to meet event dims."""
        return t.reshape(*t.shape, *((1,) * self._event_ndims))

    @property
    def mean(self):
        probs = self._pad(self._mixture_distribution.probs)
        return (probs * self._component_distribution.mean).sum(-1 - self._event_ndims)

    @property
    def variance(self):
        d = -1 - self._event_ndims
        probs = self._pad(self._mixture_distribution.probs)
        means = self._component_distribution.mean
        within = (probs * self._component_distribution.variance).sum(d)
        between = (probs * (means - self.mean.unsqueeze(d)).square()).sum(d)
        return within + between

    def cdf(self, value):
        value = value.unsqueeze(-1 - self._event_ndims)
        cdf_k = self._component_distribution.cdf(value)
        return (cdf_k * self._mixture_distribution.probs).sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value = value.unsqueeze(-1 - self._event_ndims)          # S + B + (1,) + E
        lp = self._component_distribution.log_prob(value)       # S + B + (K,)
        log_w = self._mixture_distribution.logits.log_softmax(-1)
        return (lp + log_w).logsumexp(-1)

    def sample(self, sample_shape=(), generator=None):
        from ..autograd import no_grad
        with no_grad():
            comp = self._component_distribution.sample(sample_shape, generator=generator)
            idx = self._mixture_distribution.sample(sample_shape, generator=generator)
            d = comp.ndim - 1 - self._event_ndims                 # the K dim
            shape = tuple(idx.shape) + (1,) + self.event_shape
            idx = idx.reshape(*idx.shape, *((1,) * (1 + self._event_ndims))).expand(*shape)
            return comp.gather(d, idx).squeeze(d)
