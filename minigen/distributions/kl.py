"""KL(p ‖ q) = E_p[log p(x) − log q(x)] in closed form, looked up by the pair of types.

``register_kl(P, Q)`` decorates a function ``kl(p, q)``; ``kl_divergence(p, q)`` uses the most
specific registered pair for ``(type(p), type(q))`` by method resolution order (a subclass
inherits its parent's rules) and raises NotImplementedError when none applies. Formulas:

    Normal:      log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − ½
    Laplace:     log(b_q/b_p) + |μ_p − μ_q|/b_q + (b_p/b_q) e^{−|μ_p − μ_q|/b_p} − 1
    Uniform:     log((b_q − a_q)/(b_p − a_p)) if [a_p, b_p] ⊆ [a_q, b_q], else +∞
    Bernoulli:   p log(p/q) + (1 − p) log((1 − p)/(1 − q)), with log p = −softplus(−l)
    Categorical: Σ_k p_k (log p_k − log q_k); +∞ where q_k = 0 < p_k, 0·log 0 = 0
    Gamma(α, β): (α_p − α_q) ψ(α_p) − lnΓ(α_p) + lnΓ(α_q) + α_q log(β_p/β_q)
                 + α_p (β_q − β_p)/β_p
    Beta(α, β):  ln B(α_q, β_q) − ln B(α_p, β_p) + (α_p − α_q) ψ(α_p) + (β_p − β_q) ψ(β_p)
                 + (α_q − α_p + β_q − β_p) ψ(α_p + β_p)
    MVN:         ½ [tr(Σ_q⁻¹ Σ_p) + (μ_q − μ_p)ᵀ Σ_q⁻¹ (μ_q − μ_p) − k] + Σ log diag L_q
                 − Σ log diag L_p                (Σ = L Lᵀ; L_q⁻¹ applied by triangular solves)
    Independent: the base pair's KL summed over the reinterpreted dims (equal counts required)
"""
from __future__ import annotations


from ..ops.elementwise import where
from .continuous import Laplace, Normal, Uniform
from .discrete import Bernoulli, Categorical, OneHotCategorical
from .distribution import Distribution
from .independent import Independent, _sum_rightmost
from ._special import digamma, lgamma

__all__ = ["register_kl", "kl_divergence"]

_KL_REGISTRY: dict = {}
_KL_MEMO: dict = {}


def register_kl(type_p, type_q):
    """Decorator: ``@register_kl(Normal, Normal) def kl(p, q): ...``."""
    for t in (type_p, type_q):
        if not isinstance(t, type) or not issubclass(t, Distribution):
            raise TypeError(f"register_kl expects Distribution subclasses, got {t!r}")

    def deco(fn):
        _KL_REGISTRY[type_p, type_q] = fn
        _KL_MEMO.clear()
        return fn
    return deco


def _dispatch(type_p, type_q):
    """The registered pair nearest to (type_p, type_q): smallest MRO distance, p first."""
    matches = [(super_p, super_q) for super_p, super_q in _KL_REGISTRY
               if issubclass(type_p, super_p) and issubclass(type_q, super_q)]
    if not matches:
        return None
    mro_p, mro_q = type_p.__mro__, type_q.__mro__
    best = min(matches, key=lambda m: (mro_p.index(m[0]) + mro_q.index(m[1]),
                                       mro_p.index(m[0])))
    return _KL_REGISTRY[best]


def kl_divergence(p, q):
    """KL(p ‖ q), batch-shaped (module doc for the closed forms)."""
    key = (type(p), type(q))
    fn = _KL_MEMO.get(key)
    if fn is None:
        fn = _dispatch(*key)
        if fn is None:
            raise NotImplementedError(f"no KL(p ‖ q) is registered for p: {type(p).__name__}, "
                                      f"q: {type(q).__name__}")
        _KL_MEMO[key] = fn
    return fn(p, q)


def _inf_like(t):
    return t * 0 + float("inf")


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    var_ratio = (p.scale / q.scale).square()
    t1 = ((p.loc - q.loc) / q.scale).square()
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p, q):
    ratio = p.scale / q.scale
    d = (p.loc - q.loc).abs()
    return -ratio.log() + d / q.scale + ratio * (-d / p.scale).exp() - 1


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    out = ((q.high - q.low) / (p.high - p.low)).log()
    outside = (q.low > p.low).logical_or(q.high < p.high)
    return where(outside, float("inf"), out)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    # log p = −softplus(−l), log(1 − p) = −softplus(l); terms with p = 0 or 1 − p = 0 vanish,
    # and one with q = 0 (or 1 − q = 0) is +∞ where p puts mass there.
    pp, qp = p.probs, q.probs
    t1 = pp * ((-q.logits).softplus() - (-p.logits).softplus())
    t1 = where(pp == 0, 0.0, where(qp == 0, float("inf"), t1))
    t2 = (1 - pp) * (q.logits.softplus() - p.logits.softplus())
    t2 = where(pp == 1, 0.0, where(qp == 1, float("inf"), t2))
    return t1 + t2


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    t = p.probs * (p.logits - q.logits)
    t = where(q.probs == 0, float("inf"), t)
    t = where(p.probs == 0, 0.0, t)
    return t.sum(-1)


@register_kl(OneHotCategorical, OneHotCategorical)
def _kl_onehot_onehot(p, q):
    return _kl_categorical_categorical(p._categorical, q._categorical)


@register_kl(Independent, Independent)
def _kl_independent_independent(p, q):
    if p.reinterpreted_batch_ndims != q.reinterpreted_batch_ndims:
        raise NotImplementedError("KL between Independent distributions with different "
                                  "reinterpreted_batch_ndims")
    return _sum_rightmost(kl_divergence(p.base_dist, q.base_dist), p.reinterpreted_batch_ndims)


def _register_gamma_beta():
    from .gamma import Beta, Gamma

    @register_kl(Gamma, Gamma)
    def _kl_gamma_gamma(p, q):
        t1 = q.concentration * (p.rate / q.rate).log()
        t2 = lgamma(q.concentration) - lgamma(p.concentration)
        t3 = (p.concentration - q.concentration) * digamma(p.concentration)
        t4 = (q.rate - p.rate) * (p.concentration / p.rate)
        return t1 + t2 + t3 + t4

    @register_kl(Beta, Beta)
    def _kl_beta_beta(p, q):
        sum_p = p.concentration1 + p.concentration0
        sum_q = q.concentration1 + q.concentration0
        t1 = lgamma(q.concentration1) + lgamma(q.concentration0) + lgamma(sum_p)
        t2 = lgamma(p.concentration1) + lgamma(p.concentration0) + lgamma(sum_q)
        t3 = (p.concentration1 - q.concentration1) * digamma(p.concentration1)
        t4 = (p.concentration0 - q.concentration0) * digamma(p.concentration0)
        t5 = (sum_q - sum_p) * digamma(sum_p)
        return t1 - t2 + t3 + t4 + t5


def _register_mvn():
    from .multivariate_normal import MultivariateNormal, _batch_mahalanobis, _tri_solve

    @register_kl(MultivariateNormal, MultivariateNormal)
    def _kl_mvn_mvn(p, q):
        if p.event_shape != q.event_shape:
            raise ValueError("KL(MultivariateNormal ‖ MultivariateNormal): event shapes "
                             f"{p.event_shape} and {q.event_shape} differ")
        k = p.event_shape[0]
        half_logdet_p = p._unbroadcasted_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        half_logdet_q = q._unbroadcasted_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        lq, lp = q._unbroadcasted_scale_tril, p._unbroadcasted_scale_tril
        shape = tuple(__import__("numpy").broadcast_shapes(tuple(lq.shape), tuple(lp.shape)))
        # tr(Σ_q⁻¹ Σ_p) = ‖L_q⁻¹ L_p‖²_F
        m = _tri_solve(lq.expand(*shape), lp.expand(*shape))
        trace = m.square().sum(-1).sum(-1)
        maha = _batch_mahalanobis(lq, q.loc - p.loc)
        return half_logdet_q - half_logdet_p + 0.5 * (trace + maha - k)


