"""MultivariateNormal(μ, Σ) with Σ = L Lᵀ given by ``scale_tril`` L, ``covariance_matrix`` Σ
(L = cholesky(Σ)) or ``precision_matrix`` Λ (Σ = Λ⁻¹), exactly one of them.

    x = μ + L ε,  ε ~ N(0, I_k)
    log p(x) = −½ (k log 2π + ‖L⁻¹(x − μ)‖²) − Σ_i log L_ii
    H = ½ k (1 + log 2π) + Σ_i log L_ii,   Var x_i = Σ_j L_ij²
L⁻¹ is applied by triangular solves (``minigen.linalg.solve_triangular``); no inverse is
formed except for a given precision matrix.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes, linalg
from ..creation import randn
from . import constraints
from .distribution import Distribution
from .utils import lazy_property

__all__ = ["MultivariateNormal"]


def _tri_solve(L, B):
    """X with L X = B, L lower triangular (…, k, k), B (…, k, m), batch dims broadcast."""
    return linalg.solve_triangular(L, B, upper=False)


def _batch_mahalanobis(L, x):
    """‖L⁻¹ x‖² over the last dim; L (…, k, k) and x (…, k) broadcast in their batch dims."""
    y = _tri_solve(L, x.unsqueeze(-1)).squeeze(-1)
    return y.square().sum(-1)


class MultivariateNormal(Distribution):
    """MultivariateNormal(loc, covariance_matrix=None, precision_matrix=None, scale_tril=None)
    (module doc): loc (…, k), the matrix (…, k, k); batch dims broadcast."""
    arg_constraints = {"loc": constraints.real_vector,
                       "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite,
                       "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None,
                 validate_args=None):
        given = [(n, m) for n, m in (("covariance_matrix", covariance_matrix),
                                     ("precision_matrix", precision_matrix),
                                     ("scale_tril", scale_tril)) if m is not None]
        if len(given) != 1:
            raise ValueError("MultivariateNormal: exactly one of covariance_matrix, "
                             "precision_matrix and scale_tril must be specified")
        name, matrix = given[0]
        if loc.ndim < 1:
            raise ValueError("MultivariateNormal: loc must be at least one-dimensional (the "
                             "event dim)")
        if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
            raise ValueError(f"MultivariateNormal: {name} must be a batch of square matrices "
                             f"(…, k, k), got shape {tuple(matrix.shape)}")
        k = loc.shape[-1]
        if matrix.shape[-1] != k:
            raise ValueError(f"MultivariateNormal: {name} of shape {tuple(matrix.shape)} does "
                             f"not match loc's event size {k}")
        if not dtypes.is_floating(loc.data.dtype):
            loc = loc.to(dtypes.get_default_dtype())
        if matrix.data.dtype != loc.data.dtype:
            dt = dtypes.promote(loc.data.dtype, matrix.data.dtype) if dtypes.is_floating(
                matrix.data.dtype) else loc.data.dtype
            loc, matrix = loc.to(dt), matrix.to(dt)
        try:
            batch = tuple(np.broadcast_shapes(tuple(matrix.shape[:-2]), tuple(loc.shape[:-1])))
        except ValueError:
            raise ValueError(f"MultivariateNormal: the batch dims of loc {tuple(loc.shape)} and "
                             f"{name} {tuple(matrix.shape)} cannot be broadcast") from None
        self.loc = loc.expand(*batch, k)
        setattr(self, name, matrix.expand(*batch, k, k))
        # validate the given matrix before factoring it (a clear error, not a Cholesky one)
        super().__init__(batch, (k,), validate_args=validate_args)
        if name == "scale_tril":
            self._unbroadcasted_scale_tril = matrix
        elif name == "covariance_matrix":
            self._unbroadcasted_scale_tril = linalg.cholesky(matrix)
        else:
            self._unbroadcasted_scale_tril = linalg.cholesky(linalg.inv(matrix))

    def expand(self, batch_shape, _instance=None):
        batch_shape = self._check_expand(batch_shape)
        new = self._get_checked_instance(MultivariateNormal, _instance)
        k = self.event_shape[0]
        new.loc = self.loc.expand(*batch_shape, k)
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril
        for name in ("covariance_matrix", "precision_matrix", "scale_tril"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(*batch_shape, k, k))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _full(self, m):
        k = self.event_shape[0]
        return m.expand(*self.batch_shape, k, k)

    @lazy_property
    def scale_tril(self):
        return self._full(self._unbroadcasted_scale_tril)

    @lazy_property
    def covariance_matrix(self):
        L = self._unbroadcasted_scale_tril
        return self._full(L @ L.transpose(-1, -2))

    @lazy_property
    def precision_matrix(self):
        return linalg.inv(self.covariance_matrix)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        v = self._unbroadcasted_scale_tril.square().sum(-1)
        return v.expand(*self.batch_shape, self.event_shape[0])

    def _half_log_det(self):
        return self._unbroadcasted_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def rsample(self, sample_shape=(), generator=None):
        eps = randn(*self._extended_shape(sample_shape), generator=generator,
                    dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self._unbroadcasted_scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = self.event_shape[0]
        m = _batch_mahalanobis(self._unbroadcasted_scale_tril, value - self.loc)
        return -0.5 * (k * math.log(2 * math.pi) + m) - self._half_log_det()

    def entropy(self):
        k = self.event_shape[0]
        h = 0.5 * k * (1.0 + math.log(2 * math.pi)) + self._half_log_det()
        return h.expand(*self.batch_shape) if tuple(h.shape) != self.batch_shape else h
