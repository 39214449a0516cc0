"""Probability distributions with PyTorch's ``torch.distributions`` names and semantics, on
minigen tensors: ``sample``/``rsample``/``log_prob``/``entropy``/``mean``/``variance``,
``batch_shape``/``event_shape``, argument validation, and ``kl_divergence`` with a registry
(``distribution.py`` has the shape conventions, ``kl.py`` the closed forms).

    from minigen.distributions import Normal, kl_divergence
    q = Normal(mu, log_var.mul(0.5).exp())
    z = q.rsample(generator=g)                      # gradients reach mu and log_var
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
"""
from . import constraints
from .continuous import Laplace, Normal, Uniform
from .discrete import Bernoulli, Categorical, OneHotCategorical
from .distribution import Distribution
from .gamma import Beta, Gamma
from .independent import Independent, MixtureSameFamily
from .multivariate_normal import MultivariateNormal
from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from .kl import kl_divergence, register_kl, _register_gamma_beta, _register_mvn

_register_gamma_beta()
_register_mvn()
del _register_gamma_beta, _register_mvn

__all__ = ["constraints", "Distribution", "Normal", "Laplace", "Uniform", "Bernoulli",
           "Categorical", "OneHotCategorical", "Gamma", "Beta", "MultivariateNormal",
           "Independent", "MixtureSameFamily", "RelaxedBernoulli", "RelaxedOneHotCategorical",
           "kl_divergence", "register_kl"]
