"""minigen.distributions: densities, entropies and moments against numpy formulas written here,
reparameterised gradients against float64 central differences (fixed noise) and known
expectations, sample moments, validation errors, KL closed forms against quadrature / sums, and
(with torch installed) a differential test against torch.distributions."""
import math

import numpy as np
import pytest

import minigen as mg
from minigen.distributions import (Bernoulli, Beta, Categorical, Gamma, Independent, Laplace,
                                   MixtureSameFamily, MultivariateNormal, Normal,
                                   OneHotCategorical, RelaxedBernoulli,
                                   RelaxedOneHotCategorical, Uniform, kl_divergence,
                                   register_kl)
from minigen.distributions.distribution import Distribution
from op_check import check_op

LOG_2PI = math.log(2 * math.pi)
lgamma_np = np.vectorize(math.lgamma)


def digamma_np(x):
    """ψ = (lnΓ)′ by Richardson-extrapolated central differences of math.lgamma (error ~h⁴)."""
    x = np.asarray(x, dtype=np.float64)

    def d(h):
        return (lgamma_np(x + h) - lgamma_np(x - h)) / (2 * h)
    h = 1e-3 * np.minimum(x, 1)
    return (4 * d(h / 2) - d(h)) / 3


def gen(seed=0):
    return mg.Generator().manual_seed(seed)


def t64(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


R = np.random.default_rng(1)
LOC = R.normal(size=(2, 3))
SCALE = R.uniform(0.3, 2.0, size=(2, 3))
X = R.normal(size=(2, 3)) * 2


# ------------------------------------------------------------------ densities and entropies
def test_normal_log_prob_entropy_moments():
    check_op(lambda m, s, x: Normal(m, s).log_prob(x),
             lambda m, s, x: -0.5 * ((x - m) / s) ** 2 - np.log(s) - 0.5 * LOG_2PI,
             [LOC, SCALE, X])
    check_op(lambda m, s: Normal(m, s).entropy(),
             lambda m, s: 0.5 + 0.5 * LOG_2PI + np.log(s) + 0 * m, [LOC, SCALE])
    d = Normal(t64(LOC), t64(SCALE))
    np.testing.assert_allclose(d.mean.numpy(), LOC)
    np.testing.assert_allclose(d.variance.numpy(), SCALE ** 2)
    np.testing.assert_allclose(d.stddev.numpy(), SCALE)
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(d.cdf(t64(X)).numpy(),
                               0.5 * (1 + erf((X - LOC) / (SCALE * math.sqrt(2)))), rtol=1e-12)


def test_laplace_log_prob_entropy_moments():
    check_op(lambda m, s, x: Laplace(m, s).log_prob(x),
             lambda m, s, x: -np.abs(x - m) / s - np.log(2 * s), [LOC, SCALE, X])
    check_op(lambda m, s: Laplace(m, s).entropy(), lambda m, s: 1 + np.log(2 * s) + 0 * m,
             [LOC, SCALE])
    d = Laplace(t64(LOC), t64(SCALE))
    np.testing.assert_allclose(d.variance.numpy(), 2 * SCALE ** 2)
    cdf = np.where(X < LOC, 0.5 * np.exp((X - LOC) / SCALE), 1 - 0.5 * np.exp(-(X - LOC) / SCALE))
    np.testing.assert_allclose(d.cdf(t64(X)).numpy(), cdf, rtol=1e-12)
    np.testing.assert_allclose(d.icdf(d.cdf(t64(X))).numpy(), X, rtol=1e-9, atol=1e-12)


def test_uniform_log_prob_entropy_moments():
    lo, hi = LOC, LOC + SCALE
    x = lo + 0.3 * SCALE
    check_op(lambda a, b, v: Uniform(a, b).log_prob(v), lambda a, b, v: -np.log(b - a) + 0 * v,
             [lo, hi, x])
    check_op(lambda a, b: Uniform(a, b).entropy(), lambda a, b: np.log(b - a), [lo, hi])
    d = Uniform(t64(lo), t64(hi))
    np.testing.assert_allclose(d.mean.numpy(), (lo + hi) / 2)
    np.testing.assert_allclose(d.variance.numpy(), SCALE ** 2 / 12)
    np.testing.assert_allclose(d.cdf(t64(x)).numpy(), 0.3 + 0 * x, rtol=1e-12)
    outside = Uniform(t64(lo), t64(hi), validate_args=False).log_prob(t64(hi + 1))
    assert np.isneginf(outside.numpy()).all()


P = R.uniform(0.05, 0.95, size=(2, 3))
L = np.log(P) - np.log1p(-P)
V01 = (R.uniform(size=(2, 3)) < 0.5).astype(np.float64)


def test_bernoulli_log_prob_entropy_moments():
    ref = lambda v, p: v * np.log(p) + (1 - v) * np.log1p(-p)  # noqa: E731
    check_op(lambda p: Bernoulli(probs=p).log_prob(mg.tensor(V01).to(p.dtype)), lambda p: ref(V01, p), [P])
    check_op(lambda lg: Bernoulli(logits=lg).log_prob(mg.tensor(V01).to(lg.dtype)),
             lambda lg: ref(V01, 1 / (1 + np.exp(-lg))), [L])
    check_op(lambda p: Bernoulli(probs=p).entropy(),
             lambda p: -p * np.log(p) - (1 - p) * np.log1p(-p), [P])
    d = Bernoulli(logits=t64(L))
    np.testing.assert_allclose(d.probs.numpy(), P, rtol=1e-12)
    np.testing.assert_allclose(d.mean.numpy(), P, rtol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), P * (1 - P), rtol=1e-12)


PK = R.uniform(0.1, 1.0, size=(2, 4))
LK = R.normal(size=(2, 4))
K_IDX = np.array([3, 1])


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_categorical_log_prob_entropy():
    check_op(lambda p: Categorical(probs=p).log_prob(mg.tensor(K_IDX)),
             lambda p: np.log(p[[0, 1], K_IDX] / p.sum(-1)), [PK])
    check_op(lambda lg: Categorical(logits=lg).log_prob(mg.tensor(K_IDX)),
             lambda lg: np.log(_softmax(lg))[[0, 1], K_IDX], [LK])
    check_op(lambda lg: Categorical(logits=lg).entropy(),
             lambda lg: -(_softmax(lg) * np.log(_softmax(lg))).sum(-1), [LK])
    # a value batch broadcast against the distribution's batch
    d = Categorical(logits=t64(LK))
    lp = d.log_prob(mg.tensor(np.array([[0], [2], [3]]))).numpy()
    assert lp.shape == (3, 2)
    np.testing.assert_allclose(lp, np.log(_softmax(LK))[:, [0, 2, 3]].T, rtol=1e-12)
    assert d.batch_shape == (2,) and d.event_shape == ()
    # a class of probability 0: log p = log eps (probs are clamped to [eps, 1 − eps] before
    # the log, PyTorch's convention), entropy finite
    z = Categorical(probs=t64([0.5, 0.5, 0.0]))
    np.testing.assert_allclose(z.log_prob(mg.tensor(2)).numpy(), np.log(np.finfo(float).eps))
    np.testing.assert_allclose(z.entropy().numpy(), math.log(2), rtol=1e-12)


def test_one_hot_categorical():
    onehot = np.eye(4)[K_IDX]
    check_op(lambda lg: OneHotCategorical(logits=lg).log_prob(mg.tensor(onehot).to(lg.dtype)),
             lambda lg: np.log(_softmax(lg))[[0, 1], K_IDX], [LK])
    d = OneHotCategorical(probs=t64(PK))
    p = PK / PK.sum(-1, keepdims=True)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    np.testing.assert_allclose(d.mean.numpy(), p, rtol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), p * (1 - p), rtol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), -(p * np.log(p)).sum(-1), rtol=1e-12)
    s = d.sample((5,), generator=gen()).numpy()
    assert s.shape == (5, 2, 4) and (s.sum(-1) == 1).all() and set(np.unique(s)) <= {0.0, 1.0}


A_ = R.uniform(0.5, 4.0, size=(2, 3))
A_[0, 1] = 1.0  # (α − 1) log x at α = 1: its α-derivative log x must survive
B_ = R.uniform(0.5, 4.0, size=(2, 3))
B_[1, 2] = 1.0
XG = R.uniform(0.1, 3.0, size=(2, 3))
XB = R.uniform(0.05, 0.95, size=(2, 3))


def test_gamma_log_prob_entropy_moments():
    check_op(lambda a, b, x: Gamma(a, b).log_prob(x),
             lambda a, b, x: a * np.log(b) + (a - 1) * np.log(x) - b * x - lgamma_np(a),
             [A_, B_, XG], grad_atol=1e-5, grad_rtol=1e-4)
    check_op(lambda a, b: Gamma(a, b).entropy(),
             lambda a, b: a - np.log(b) + lgamma_np(a) + (1 - a) * digamma_np(a),
             [A_, B_], atol=1e-8, rtol=1e-8, grad_atol=1e-5, grad_rtol=1e-4)
    d = Gamma(t64(A_), t64(B_))
    np.testing.assert_allclose(d.mean.numpy(), A_ / B_, rtol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), A_ / B_ ** 2, rtol=1e-12)


def test_beta_log_prob_entropy_moments():
    lbeta = lambda a, b: lgamma_np(a) + lgamma_np(b) - lgamma_np(a + b)  # noqa: E731
    check_op(lambda a, b, x: Beta(a, b).log_prob(x),
             lambda a, b, x: (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - lbeta(a, b),
             [A_, B_, XB], grad_atol=1e-5, grad_rtol=1e-4)
    check_op(lambda a, b: Beta(a, b).entropy(),
             lambda a, b: lbeta(a, b) - (a - 1) * digamma_np(a) - (b - 1) * digamma_np(b)
             + (a + b - 2) * digamma_np(a + b),
             [A_, B_], atol=1e-8, rtol=1e-8, grad_atol=1e-5, grad_rtol=1e-4)
    d = Beta(t64(A_), t64(B_))
    s = A_ + B_
    np.testing.assert_allclose(d.mean.numpy(), A_ / s, rtol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), A_ * B_ / (s ** 2 * (s + 1)), rtol=1e-12)


def _tril(k, batch=(), seed=3):
    r = np.random.default_rng(seed)
    m = r.normal(size=batch + (k, k)) * 0.4
    m = np.tril(m, -1) + np.eye(k) * r.uniform(0.6, 1.5, size=batch + (k,))[..., None]
    return m


LT = _tril(3, (2,))
MU = R.normal(size=(2, 3))
XM = R.normal(size=(2, 3))


def _mvn_ref(mu, Lt, x):
    cov = Lt @ np.swapaxes(Lt, -1, -2)
    d = x - mu
    maha = np.einsum("...i,...ij,...j->...", d, np.linalg.inv(cov), d)
    return -0.5 * (3 * LOG_2PI + maha + np.linalg.slogdet(cov)[1])


def test_mvn_log_prob_entropy_moments():
    # (the lower triangle is the parameter: tril on both sides, so the differences taken in
    # the upper triangle see no change on either)
    check_op(lambda m, Lt, x: MultivariateNormal(m, scale_tril=Lt.tril()).log_prob(x),
             lambda m, Lt, x: _mvn_ref(m, np.tril(Lt), x), [MU, LT, XM])
    check_op(lambda Lt: MultivariateNormal(mg.zeros(3, dtype=Lt.dtype),
                                           scale_tril=Lt.tril()).entropy(),
             lambda Lt: 1.5 * (1 + LOG_2PI) + np.log(np.diagonal(Lt, 0, -2, -1)).sum(-1),
             [LT])
    cov = LT @ np.swapaxes(LT, -1, -2)
    for kw in ({"covariance_matrix": t64(cov)}, {"precision_matrix": t64(np.linalg.inv(cov))}):
        d = MultivariateNormal(t64(MU), **kw)
        np.testing.assert_allclose(d.scale_tril.numpy(), LT, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.log_prob(t64(XM)).numpy(), _mvn_ref(MU, LT, XM),
                                   rtol=1e-10)
        np.testing.assert_allclose(d.variance.numpy(), np.diagonal(cov, 0, -2, -1), rtol=1e-10)
        np.testing.assert_allclose(d.covariance_matrix.numpy(), cov, rtol=1e-10)
    # batch broadcasting between loc and the matrix
    d = MultivariateNormal(t64(MU[:, None]), scale_tril=t64(LT[0]))
    assert d.batch_shape == (2, 1) and d.event_shape == (3,)
    assert d.log_prob(t64(XM)).shape == (2, 2)


def test_independent_and_mixture():
    base = Normal(t64(LOC), t64(SCALE))
    ind = Independent(base, 1)
    assert ind.batch_shape == (2,) and ind.event_shape == (3,)
    np.testing.assert_allclose(ind.log_prob(t64(X)).numpy(),
                               base.log_prob(t64(X)).numpy().sum(-1), rtol=1e-12)
    np.testing.assert_allclose(ind.entropy().numpy(), base.entropy().numpy().sum(-1),
                               rtol=1e-12)
    assert ind.sample((4,), generator=gen()).shape == (4, 2, 3)
    # mixture of three normals per batch element
    w = R.uniform(0.2, 1.0, size=(2, 3))
    mix = MixtureSameFamily(Categorical(probs=t64(w)), Normal(t64(LOC), t64(SCALE)))
    wn = w / w.sum(-1, keepdims=True)
    x = R.normal(size=(5, 2))
    comp = np.exp(-0.5 * ((x[..., None] - LOC) / SCALE) ** 2) / (SCALE * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(mix.log_prob(t64(x)).numpy(), np.log((wn * comp).sum(-1)),
                               rtol=1e-12)
    mean = (wn * LOC).sum(-1)
    np.testing.assert_allclose(mix.mean.numpy(), mean, rtol=1e-12)
    var = (wn * (SCALE ** 2 + LOC ** 2)).sum(-1) - mean ** 2
    np.testing.assert_allclose(mix.variance.numpy(), var, rtol=1e-10)
    # mixture of MVNs: event dims carried through
    mv = MixtureSameFamily(Categorical(logits=t64([0.0, 1.0])),
                           MultivariateNormal(t64(MU), scale_tril=t64(LT)))
    assert mv.batch_shape == () and mv.event_shape == (3,)
    xm = XM[0]
    ref = np.log((_softmax(np.array([0.0, 1.0])) * np.exp(_mvn_ref(MU, LT, xm))).sum())
    np.testing.assert_allclose(mv.log_prob(t64(xm)).numpy(), ref, rtol=1e-12)
    assert mv.sample((7,), generator=gen()).shape == (7, 3)


TEMP = 0.7


def test_relaxed_log_prob():
    y = R.uniform(0.05, 0.95, size=(2, 3))

    def rb_ref(lg, v):  # density of σ((l + logistic) / τ): change of variables from logit space
        x = np.log(v) - np.log1p(-v)
        d = lg - x * TEMP
        return np.log(TEMP) + d - 2 * np.log1p(np.exp(d)) - np.log(v) - np.log1p(-v)
    check_op(lambda lg, v: RelaxedBernoulli(TEMP, logits=lg).log_prob(v), rb_ref, [L, y])
    # RelaxedBernoulli integrates to 1 over (0, 1)
    grid = np.linspace(1e-6, 1 - 1e-6, 200001)
    dens = np.exp(RelaxedBernoulli(TEMP, logits=t64([0.4])).log_prob(t64(grid[:, None])).numpy())
    assert abs(np.trapezoid(dens[:, 0], grid) - 1) < 2e-3
    yk = _softmax(R.normal(size=(2, 4)))

    def rc_ref(lg, v):  # Concrete density (Maddison et al. 2017, eq. 10) on the simplex
        k = v.shape[-1]
        lw = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        t = lw - TEMP * np.log(v)
        return (math.lgamma(k) + (k - 1) * np.log(TEMP) + t.sum(-1)
                - k * np.log(np.exp(t).sum(-1)) - np.log(v).sum(-1))
    check_op(lambda lg, v: RelaxedOneHotCategorical(TEMP, logits=lg).log_prob(v), rc_ref,
             [LK, yk], grad_inputs=[0])


# ------------------------------------------------------------------ rsample gradients
def _noise(kind, shape, seed=0):
    g = np.random.Generator(np.random.PCG64(seed))
    return g.standard_normal(shape) if kind == "normal" else g.random(shape)


def test_rsample_gradients_fixed_noise():
    eps = _noise("normal", (4, 2, 3))
    check_op(lambda m, s: Normal(m, s).rsample((4,), generator=gen()),
             lambda m, s: m + eps * s, [LOC, SCALE], float32=False)
    u = _noise("uniform", (4, 2, 3))
    check_op(lambda a, b: Uniform(a, b).rsample((4,), generator=gen()),
             lambda a, b: a + u * (b - a), [LOC, LOC + SCALE], float32=False)
    e = np.finfo(np.float64).eps
    v = u * (2 - e) + (e - 1)
    check_op(lambda m, s: Laplace(m, s).rsample((4,), generator=gen()),
             lambda m, s: m - s * np.sign(v) * np.log1p(-np.abs(v)), [LOC, SCALE],
             float32=False)
    z = _noise("normal", (4, 2, 3))
    check_op(lambda m, Lt: MultivariateNormal(m, scale_tril=Lt.tril()).rsample(
                 (4,), generator=gen()),
             lambda m, Lt: m + np.einsum("bij,sbj->sbi", np.tril(Lt), z), [MU, LT],
             float32=False)
    uc = np.clip(u, e, 1 - e)
    check_op(lambda lg: RelaxedBernoulli(TEMP, logits=lg).rsample((4,), generator=gen()),
             lambda lg: 1 / (1 + np.exp(-(np.log(uc) - np.log1p(-uc) + lg) / TEMP)), [L],
             float32=False)
    uk = np.clip(_noise("uniform", (4, 2, 4)), e, 1 - e)
    check_op(lambda lg: RelaxedOneHotCategorical(TEMP, logits=lg).rsample((4,), generator=gen()),
             lambda lg: _softmax((lg - np.log(-np.log(uk))) / TEMP), [LK], float32=False)


def test_rsample_gradients_reach_parameters():
    for make in (lambda p: Normal(p, p.exp()), lambda p: Laplace(p, p.exp()),
                 lambda p: Gamma(p.exp(), 2.0), lambda p: Beta(p.exp(), 2.0),
                 lambda p: RelaxedBernoulli(0.5, logits=p)):
        p = t64(np.array([0.3, -0.2]), requires_grad=True)
        make(p).rsample((3,), generator=gen()).sum().backward()
        assert p.grad is not None and np.all(p.grad.numpy() != 0)
        with pytest.raises(NotImplementedError):
            Bernoulli(logits=p).rsample()


def test_gamma_implicit_gradient_against_inverse_cdf_differences():
    """dz/dα at a drawn z equals d/dα F⁻¹(u; α) with u = F(z; α) fixed (scipy's regularised
    incomplete gamma and its inverse, float64 central differences)."""
    sp = pytest.importorskip("scipy.special")
    for a in (0.05, 0.4, 1.0, 3.5, 40.0, 400.0):
        alpha = t64(np.full(6, a), requires_grad=True)
        z = Gamma(alpha, 1.0).rsample(generator=gen(int(a * 100)))
        z.sum().backward()
        zn, u, h = z.detach().numpy(), None, 1e-5 * a
        u = sp.gammainc(a, zn)
        fd = (sp.gammaincinv(a + h, u) - sp.gammaincinv(a - h, u)) / (2 * h)
        np.testing.assert_allclose(alpha.grad.numpy(), fd, rtol=1e-5, err_msg=f"alpha={a}")


def _mean_within(samples, expected, k=5.0):
    samples = np.asarray(samples)
    n = samples.shape[0]
    se = samples.std(0) / math.sqrt(n)
    assert np.all(np.abs(samples.mean(0) - expected) <= k * se + 1e-12), \
        (samples.mean(0), expected, se)


def test_gamma_and_beta_gradients_match_known_expectations():
    """E[∂x/∂θ] = ∂E[x]/∂θ for a reparameterised x: Gamma(α, β): ∂E/∂α = 1/β, ∂E/∂β = −α/β²;
    Beta(a, b): ∂E/∂a = b/(a+b)², ∂E/∂b = −a/(a+b)². Per-sample gradients, 5 standard errors."""
    n = 4000
    for a0, b0 in ((0.3, 2.0), (2.5, 0.7)):
        a = t64(np.full(n, a0), requires_grad=True)
        b = t64(np.full(n, b0), requires_grad=True)
        Gamma(a, b).rsample(generator=gen(1)).sum().backward()
        _mean_within(a.grad.numpy(), 1 / b0)
        _mean_within(b.grad.numpy(), -a0 / b0 ** 2)
        a = t64(np.full(n, a0), requires_grad=True)
        b = t64(np.full(n, b0), requires_grad=True)
        Beta(a, b).rsample(generator=gen(2)).sum().backward()
        _mean_within(a.grad.numpy(), b0 / (a0 + b0) ** 2)
        _mean_within(b.grad.numpy(), -a0 / (a0 + b0) ** 2)


# ------------------------------------------------------------------ sample moments
MOMENT_CASES = [
    ("Normal", lambda: Normal(t64([0.5, -1.0]), t64([0.7, 2.0]))),
    ("Laplace", lambda: Laplace(t64([0.5, -1.0]), t64([0.7, 2.0]))),
    ("Uniform", lambda: Uniform(t64([0.0, -1.0]), t64([1.0, 3.0]))),
    ("Bernoulli", lambda: Bernoulli(probs=t64([0.1, 0.65]))),
    ("OneHotCategorical", lambda: OneHotCategorical(logits=t64([0.0, 1.0, -0.5]))),
    ("Gamma", lambda: Gamma(t64([0.3, 4.0]), t64([1.0, 2.5]))),
    ("Beta", lambda: Beta(t64([0.3, 4.0]), t64([1.0, 2.5]))),
    ("MultivariateNormal", lambda: MultivariateNormal(t64(MU[0]), scale_tril=t64(LT[0]))),
    ("Mixture", lambda: MixtureSameFamily(Categorical(probs=t64([0.3, 0.7])),
                                          Normal(t64([-2.0, 1.0]), t64([0.5, 1.0])))),
]


@pytest.mark.parametrize("name,make", MOMENT_CASES, ids=[c[0] for c in MOMENT_CASES])
def test_sample_moments(name, make):
    """Seeded draws: the sample mean within 5 standard errors of ``mean``, the sample variance
    within 5 standard errors (of the squared deviations) of ``variance``."""
    d = make()
    s = d.sample((20000,), generator=gen(7))
    assert tuple(s.shape) == (20000,) + d.batch_shape + d.event_shape
    assert not s.requires_grad
    x = s.numpy()
    _mean_within(x, d.mean.numpy())
    _mean_within((x - d.mean.numpy()) ** 2, d.variance.numpy())
    # same seed, same draws
    np.testing.assert_array_equal(d.sample((3,), generator=gen(3)).numpy(),
                                  d.sample((3,), generator=gen(3)).numpy())


def test_categorical_sample_frequencies():
    p = np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]])
    s = Categorical(probs=t64(p)).sample((20000,), generator=gen(5)).numpy()
    assert s.dtype == np.int64 and s.shape == (20000, 2)
    freq = np.stack([(s[:, i, None] == np.arange(4)).mean(0) for i in range(2)])
    se = np.sqrt(p * (1 - p) / 20000)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-12), freq
    assert (s[:, 0] != 1).all()  # probability 0 is never drawn


def test_relaxed_samples_live_on_their_support():
    y = RelaxedOneHotCategorical(0.3, logits=t64(LK)).sample((50,), generator=gen()).numpy()
    np.testing.assert_allclose(y.sum(-1), 1, rtol=1e-12)
    yb = RelaxedBernoulli(0.3, probs=t64(P)).sample((50,), generator=gen()).numpy()
    assert ((yb > 0) & (yb < 1)).all()
    # as τ → 0 a relaxed Bernoulli draw approaches a Bernoulli(p) draw: mean ≈ p
    yb = RelaxedBernoulli(0.05, probs=t64([0.2, 0.7])).sample((20000,), generator=gen()).numpy()
    assert np.all(np.abs(yb.mean(0) - [0.2, 0.7]) < 0.02)


# ------------------------------------------------------------------ KL divergence
def _quad_kl(logp, logq, lo, hi, n=400001):
    x = np.linspace(lo, hi, n)
    lp, lq = logp(x), logq(x)
    return np.trapezoid(np.exp(lp) * (lp - lq), x)


def _lp(d):
    return lambda x: d.log_prob(t64(x)).numpy()


@pytest.mark.parametrize("cls,pa,qa,lo,hi", [
    (Normal, (0.3, 0.8), (-0.5, 1.7), -12, 12),
    (Laplace, (0.3, 0.8), (-0.5, 1.7), -40, 40),
    (Gamma, (2.5, 1.5), (1.7, 0.6), 1e-9, 60),
    (Beta, (2.5, 1.5), (1.7, 3.0), 1e-9, 1 - 1e-9),
    (Uniform, (0.2, 0.9), (-1.0, 1.5), 0.2, 0.9 - 1e-12),
], ids=["Normal", "Laplace", "Gamma", "Beta", "Uniform"])
def test_kl_closed_forms_against_quadrature(cls, pa, qa, lo, hi):
    p, q = cls(*map(t64, pa)), cls(*map(t64, qa))
    got = kl_divergence(p, q).numpy()
    np.testing.assert_allclose(got, _quad_kl(_lp(p), _lp(q), lo, hi), rtol=1e-6)


def test_kl_discrete_and_multivariate():
    p, q = P, np.clip(P[::-1] * 0.9 + 0.05, 0, 1)
    got = kl_divergence(Bernoulli(probs=t64(p)), Bernoulli(logits=t64(np.log(q / (1 - q)))))
    ref = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    pk, qk = _softmax(LK), _softmax(LK[::-1])
    ref = (pk * np.log(pk / qk)).sum(-1)
    np.testing.assert_allclose(kl_divergence(Categorical(probs=t64(pk)),
                                             Categorical(logits=t64(LK[::-1]))).numpy(),
                               ref, rtol=1e-10)
    np.testing.assert_allclose(kl_divergence(OneHotCategorical(probs=t64(pk)),
                                             OneHotCategorical(probs=t64(qk))).numpy(),
                               ref, rtol=1e-10)
    # support mismatch: +∞; zero mass in p: no contribution
    inf = kl_divergence(Categorical(probs=t64([0.5, 0.5])), Categorical(probs=t64([1.0, 0.0])))
    assert np.isinf(inf.numpy())
    zero = kl_divergence(Categorical(probs=t64([1.0, 0.0])), Categorical(probs=t64([0.5, 0.5])))
    np.testing.assert_allclose(zero.numpy(), math.log(2), rtol=1e-12)
    assert np.isinf(kl_divergence(Bernoulli(probs=t64(0.5)), Bernoulli(probs=t64(0.0))).numpy())
    assert np.isinf(kl_divergence(Uniform(0.0, 2.0), Uniform(0.5, 3.0)).numpy())
    # MVN: ½[tr(Σq⁻¹Σp) + Δᵀ Σq⁻¹ Δ − k + log|Σq|/|Σp|] with numpy inverses and determinants
    Lq = _tril(3, (2,), seed=9)
    Sp, Sq = LT @ np.swapaxes(LT, -1, -2), Lq @ np.swapaxes(Lq, -1, -2)
    mq = MU[::-1]
    iq = np.linalg.inv(Sq)
    dlt = mq - MU
    ref = 0.5 * (np.trace(iq @ Sp, axis1=-2, axis2=-1) + np.einsum("bi,bij,bj->b", dlt, iq, dlt)
                 - 3 + np.linalg.slogdet(Sq)[1] - np.linalg.slogdet(Sp)[1])
    got = kl_divergence(MultivariateNormal(t64(MU), scale_tril=t64(LT)),
                        MultivariateNormal(t64(mq), covariance_matrix=t64(Sq)))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    # Independent: the base KL summed over the reinterpreted dims
    p1, q1 = Normal(t64(LOC), t64(SCALE)), Normal(t64(X), t64(SCALE[::-1]))
    np.testing.assert_allclose(kl_divergence(Independent(p1, 1), Independent(q1, 1)).numpy(),
                               kl_divergence(p1, q1).numpy().sum(-1), rtol=1e-12)


def test_kl_gradients():
    check_op(lambda m, s, m2, s2: kl_divergence(Normal(m, s), Normal(m2, s2)),
             lambda m, s, m2, s2: np.log(s2 / s) + (s ** 2 + (m - m2) ** 2) / (2 * s2 ** 2) - 0.5,
             [LOC, SCALE, X, SCALE[::-1]])
    check_op(lambda a, b, a2, b2: kl_divergence(Gamma(a, b), Gamma(a2, b2)),
             lambda a, b, a2, b2: ((a - a2) * digamma_np(a) - lgamma_np(a) + lgamma_np(a2)
                                   + a2 * (np.log(b) - np.log(b2)) + a * (b2 - b) / b),
             [A_, B_, B_, A_], atol=1e-8, rtol=1e-8, grad_atol=1e-5, grad_rtol=1e-4)


def test_kl_registry_dispatch():
    class MyNormal(Normal):
        pass

    p, q = MyNormal(0.0, 1.0), Normal(1.0, 1.0)
    np.testing.assert_allclose(kl_divergence(p, q).numpy(), 0.5, rtol=1e-6)  # inherited

    @register_kl(MyNormal, Normal)
    def _mine(p, q):
        return p.loc * 0 + 42.0

    try:
        assert float(kl_divergence(p, q)) == 42.0          # the more specific rule wins
        assert float(kl_divergence(q, Normal(1.0, 1.0))) == 0.0
    finally:
        from minigen.distributions import kl as kl_mod
        del kl_mod._KL_REGISTRY[MyNormal, Normal]
        kl_mod._KL_MEMO.clear()
    with pytest.raises(NotImplementedError, match="Normal.*Gamma"):
        kl_divergence(Normal(0.0, 1.0), Gamma(1.0, 1.0))


# ------------------------------------------------------------------ shapes and validation
def test_shapes_and_expand():
    d = Normal(t64(np.zeros((3, 1))), t64(np.ones(4)))
    assert d.batch_shape == (3, 4) and d.event_shape == ()
    assert d.sample((2, 5)).shape == (2, 5, 3, 4)
    assert d.sample(2).shape == (2, 3, 4)
    e = d.expand((6, 3, 4))
    assert e.batch_shape == (6, 3, 4) and e.log_prob(t64(np.zeros(4))).shape == (6, 3, 4)
    with pytest.raises(ValueError, match="cannot be expanded"):
        d.expand((3, 5))
    c = Categorical(logits=t64(LK)).expand((5, 2))
    assert c.batch_shape == (5, 2) and c.sample((3,)).shape == (3, 5, 2)
    m = MultivariateNormal(t64(MU), scale_tril=t64(LT)).expand((4, 2))
    assert m.batch_shape == (4, 2) and m.rsample().shape == (4, 2, 3)
    assert Gamma(t64(A_), 1.0).expand((5, 2, 3)).rsample().shape == (5, 2, 3)


def test_validation_errors():
    with pytest.raises(ValueError, match="scale.*GreaterThan"):
        Normal(0.0, t64([1.0, -1.0]))
    with pytest.raises(ValueError, match="scale"):
        Laplace(0.0, t64([0.0]))
    with pytest.raises(ValueError, match="either `probs` or `logits`"):
        Bernoulli(probs=t64([0.5]), logits=t64([0.0]))
    with pytest.raises(ValueError, match="either `probs` or `logits`"):
        Categorical()
    with pytest.raises(ValueError, match="probs"):
        Bernoulli(probs=t64([1.5]))
    with pytest.raises(ValueError, match="simplex|probs"):
        Categorical(probs=t64([-0.5, 1.5]))
    with pytest.raises(ValueError, match="at least one dimension"):
        Categorical(probs=t64(0.5))
    with pytest.raises(ValueError, match="concentration"):
        Gamma(t64([-1.0]), 1.0)
    with pytest.raises(ValueError, match="concentration0"):
        Beta(1.0, t64([0.0]))
    with pytest.raises(ValueError, match="high"):
        Uniform(1.0, 1.0)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        Normal(t64([0.0, 1.0]), t64([1.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="loc must be a Tensor or a number"):
        Normal("0", 1.0)
    with pytest.raises(ValueError, match="exactly one of"):
        MultivariateNormal(t64(MU[0]))
    with pytest.raises(ValueError, match="square"):
        MultivariateNormal(t64(MU[0]), scale_tril=t64(np.ones((3, 2))))
    with pytest.raises(ValueError, match="event size"):
        MultivariateNormal(t64(MU[0]), scale_tril=t64(np.eye(2)))
    with pytest.raises(ValueError, match="scale_tril.*LowerCholesky"):
        MultivariateNormal(t64(MU[0]), scale_tril=t64(np.ones((3, 3))))
    with pytest.raises(ValueError, match="covariance_matrix.*PositiveDefinite"):
        MultivariateNormal(t64(MU[0]), covariance_matrix=t64(-np.eye(3)))
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims"):
        Independent(Normal(t64(LOC), 1.0), 3)
    with pytest.raises(ValueError, match="3 classes"):
        MixtureSameFamily(Categorical(probs=t64([0.5, 0.5, 0.0])), Normal(t64([0.0, 1.0]), 1.0))
    with pytest.raises(ValueError, match="temperature"):
        RelaxedBernoulli(t64(-1.0), probs=t64([0.5]))
    # log_prob: support and shapes
    with pytest.raises(ValueError, match="value.*GreaterThanEq"):
        Gamma(1.0, 1.0).log_prob(t64([-1.0]))
    with pytest.raises(ValueError, match="value.*Boolean"):
        Bernoulli(probs=t64([0.5])).log_prob(t64([0.5]))
    with pytest.raises(ValueError, match="value.*IntegerInterval"):
        Categorical(logits=t64(LK)).log_prob(mg.tensor([4, 0]))
    with pytest.raises(ValueError, match="value.*Interval"):
        Uniform(0.0, 1.0).log_prob(t64([1.5]))
    with pytest.raises(ValueError, match="does not broadcast"):
        Normal(t64(LOC), 1.0).log_prob(t64(np.zeros(4)))
    with pytest.raises(ValueError, match="event shape"):
        MultivariateNormal(t64(MU), scale_tril=t64(LT)).log_prob(t64(np.zeros(4)))
    with pytest.raises(TypeError, match="must be a Tensor"):
        Normal(0.0, 1.0).log_prob(0.5)
    # validate_args=False skips the value checks
    Normal(0.0, t64([-1.0]), validate_args=False)
    Gamma(1.0, 1.0, validate_args=False).log_prob(t64([1.0]))
    try:
        Distribution.set_default_validate_args(False)
        Bernoulli(probs=t64([1.5]))
    finally:
        Distribution.set_default_validate_args(True)


def test_no_host_transfers_in_sample_and_log_prob(monkeypatch):
    """On the CuPy stand-in (tests/fake_cupy.py counts every device→host read): building,
    sampling, rsample, log_prob, entropy and KL read nothing."""
    import fake_cupy
    counter = fake_cupy.install(monkeypatch)
    dev = "cuda"
    with mg.dispatch.use("reference"):
        _sample_log_prob_on_cuda(counter, dev)


def _sample_log_prob_on_cuda(counter, dev):
    def c(a):
        return mg.tensor(np.asarray(a, dtype=np.float32), device=dev)
    g = mg.Generator(dev).manual_seed(0)
    dists = [Normal(c(LOC), c(SCALE)), Laplace(c(LOC), c(SCALE)),
             Uniform(c(LOC), c(LOC + SCALE)), Bernoulli(logits=c(L)), Categorical(logits=c(LK)),
             OneHotCategorical(probs=c(PK)), Gamma(c(A_), c(B_)), Beta(c(A_), c(B_)),
             MultivariateNormal(c(MU), scale_tril=c(LT)), Independent(Normal(c(LOC), 1.0), 1),
             MixtureSameFamily(Categorical(logits=c(LK[:, :3])), Normal(c(LOC), c(SCALE))),
             RelaxedBernoulli(0.5, logits=c(L)), RelaxedOneHotCategorical(0.5, logits=c(LK))]
    counter.reset()
    for d in dists:
        x = d.sample((2,), generator=g)
        d.log_prob(x)
        if d.has_rsample:
            d.rsample(generator=g)
        if not isinstance(d, (RelaxedBernoulli, RelaxedOneHotCategorical, MixtureSameFamily)):
            d.entropy()
            kl_divergence(d, d)
        assert counter.syncs == [], (type(d).__name__, counter.syncs)
    # the value checks run there under debug_checks (one read each), and catch a bad value
    with mg.debug_checks():
        with pytest.raises(ValueError, match="scale"):
            Normal(c(LOC), c(-SCALE))


# ------------------------------------------------------------------ against torch.distributions
hyp = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

_pos = st.floats(0.2, 5.0)
_real = st.floats(-3.0, 3.0)
_unit = st.floats(0.03, 0.97)


def _arr(elem, n=3):
    return st.lists(elem, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float64))


def _pair(make_mg, make_torch, params):
    """The same distribution in minigen and torch, parameters as leaves requiring grad."""
    torch = pytest.importorskip("torch")
    mp = [t64(p, requires_grad=True) for p in params]
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    return make_mg(*mp), make_torch(*tp), mp, tp


def _grads_agree(m_out, t_out, mp, tp, rtol=1e-9, atol=1e-10):
    np.testing.assert_allclose(m_out.detach().numpy(), t_out.detach().numpy(), rtol=rtol,
                               atol=atol)
    m_out.sum().backward()
    t_out.sum().backward()
    for a, b in zip(mp, tp):
        ga = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        gb = np.zeros(tuple(b.shape)) if b.grad is None else b.grad.numpy()
        np.testing.assert_allclose(ga, gb, rtol=rtol, atol=atol)
    for p in list(mp) + list(tp):
        p.grad = None


def _families(torch):
    D = torch.distributions
    return {
        "Normal": (Normal, D.Normal, (_real, _pos)),
        "Laplace": (Laplace, D.Laplace, (_real, _pos)),
        "Gamma": (Gamma, D.Gamma, (_pos, _pos)),
        "Beta": (Beta, D.Beta, (_pos, _pos)),
        "BernoulliProbs": (lambda p: Bernoulli(probs=p), lambda p: D.Bernoulli(probs=p),
                           (_unit,)),
        "BernoulliLogits": (lambda lg: Bernoulli(logits=lg), lambda lg: D.Bernoulli(logits=lg),
                            (_real,)),
    }


@pytest.mark.parametrize("name", ["Normal", "Laplace", "Gamma", "Beta", "BernoulliProbs",
                                  "BernoulliLogits"])
@given(data=st.data())
def test_against_torch_log_prob_entropy_kl(name, data):
    torch = pytest.importorskip("torch")
    make_mg, make_t, elems = _families(torch)[name]
    params = [data.draw(_arr(e)) for e in elems]
    other = [data.draw(_arr(e)) for e in elems]
    torch.manual_seed(0)
    x = make_t(*[torch.tensor(p) for p in params]).sample((4,))
    if name in ("Gamma", "Beta"):
        x = x.clamp(1e-6, 1 - 1e-6 if name == "Beta" else None)
    # a fresh pair per quantity: a cached derived parameter (logits from probs) belongs to the
    # graph of one backward
    md, td, mp, tp = _pair(make_mg, make_t, params)
    _grads_agree(md.log_prob(t64(x.numpy())), td.log_prob(x), mp, tp, rtol=1e-8)
    md, td, mp, tp = _pair(make_mg, make_t, params)
    # entropies and KLs of Gamma/Beta are differences of O(1) lgamma/digamma terms: absolute
    # agreement to 1e-8 (each side's special functions are good to ~1e-10 there)
    _grads_agree(md.entropy(), td.entropy(), mp, tp, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(md.mean.detach().numpy(), td.mean.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(md.variance.detach().numpy(), td.variance.detach().numpy(),
                               rtol=1e-12)
    md, td, mp, tp = _pair(make_mg, make_t, params)
    mq, tq, mqp, tqp = _pair(make_mg, make_t, other)
    _grads_agree(kl_divergence(md, mq), torch.distributions.kl_divergence(td, tq),
                 mp + mqp, tp + tqp, rtol=1e-8, atol=1e-8)


@given(data=st.data())
def test_against_torch_categorical_mvn_mixture_relaxed(data):
    torch = pytest.importorskip("torch")
    D = torch.distributions
    lg, lg2 = data.draw(_arr(_real, 4)), data.draw(_arr(_real, 4))
    def cat():
        return _pair(lambda a: Categorical(logits=a), lambda a: D.Categorical(logits=a), [lg])
    idx = np.array([0, 3, 1])
    md, td, mp, tp = cat()
    _grads_agree(md.log_prob(mg.tensor(idx)), td.log_prob(torch.tensor(idx)), mp, tp)
    md, td, mp, tp = cat()
    _grads_agree(md.entropy(), td.entropy(), mp, tp)
    md, td, mp, tp = cat()
    mq, tq, mqp, tqp = _pair(lambda a: Categorical(logits=a), lambda a: D.Categorical(logits=a),
                             [lg2])
    _grads_agree(kl_divergence(md, mq), D.kl_divergence(td, tq), mp + mqp, tp + tqp)
    oh = np.eye(4)[idx]
    md, td, mp, tp = _pair(lambda a: OneHotCategorical(probs=a),
                           lambda a: D.OneHotCategorical(probs=a), [_softmax(lg)])
    _grads_agree(md.log_prob(t64(oh)), td.log_prob(torch.tensor(oh)), mp, tp)
    # MultivariateNormal: a scale_tril built from drawn numbers
    raw = data.draw(_arr(st.floats(-1.0, 1.0), 9)).reshape(3, 3)
    Lt = np.tril(raw, -1) + np.diag(np.abs(np.diag(raw)) + 0.5)
    mu = data.draw(_arr(_real))
    md, td, mp, tp = _pair(lambda m, s: MultivariateNormal(m, scale_tril=s),
                           lambda m, s: D.MultivariateNormal(m, scale_tril=s), [mu, Lt])
    xm = R.normal(size=(2, 3))
    _grads_agree(md.log_prob(t64(xm)), td.log_prob(torch.tensor(xm)), mp, tp, rtol=1e-8)
    md, td, mp, tp = _pair(lambda m, s: MultivariateNormal(m, scale_tril=s),
                           lambda m, s: D.MultivariateNormal(m, scale_tril=s), [mu, Lt])
    _grads_agree(md.entropy(), td.entropy(), mp, tp, rtol=1e-8)
    md, td, mp, tp = _pair(lambda m, s: MultivariateNormal(m, scale_tril=s),
                           lambda m, s: D.MultivariateNormal(m, scale_tril=s), [mu, Lt])
    cov = Lt @ Lt.T + np.eye(3)
    mq, tq, mqp, tqp = _pair(lambda m, c: MultivariateNormal(m, covariance_matrix=c),
                             lambda m, c: D.MultivariateNormal(m, covariance_matrix=c),
                             [mu[::-1].copy(), cov])
    _grads_agree(kl_divergence(md, mq), D.kl_divergence(td, tq), mp + mqp, tp + tqp, rtol=1e-8)
    # mixture of normals
    sc = data.draw(_arr(_pos, 4))
    md, td, mp, tp = _pair(
        lambda w, m, s: MixtureSameFamily(Categorical(logits=w), Normal(m, s)),
        lambda w, m, s: D.MixtureSameFamily(D.Categorical(logits=w), D.Normal(m, s)),
        [lg, lg2, sc])
    xs = R.normal(size=(5, 1)) * 2
    _grads_agree(md.log_prob(t64(xs)), td.log_prob(torch.tensor(xs)), mp, tp, rtol=1e-8)
    np.testing.assert_allclose(md.variance.detach().numpy(), td.variance.detach().numpy(),
                               rtol=1e-10)
    # relaxed families: log_prob at a point of the support
    y = _softmax(R.normal(size=(2, 4)))
    md, td, mp, tp = _pair(lambda a: RelaxedOneHotCategorical(TEMP, logits=a),
                           lambda a: D.RelaxedOneHotCategorical(torch.tensor(TEMP, dtype=torch.float64), logits=a),
                           [lg])
    _grads_agree(md.log_prob(t64(y)), td.log_prob(torch.tensor(y)), mp, tp, rtol=1e-8)
    yb = R.uniform(0.05, 0.95, size=4)
    md, td, mp, tp = _pair(lambda a: RelaxedBernoulli(TEMP, logits=a),
                           lambda a: D.RelaxedBernoulli(torch.tensor(TEMP, dtype=torch.float64), logits=a), [lg])
    _grads_agree(md.log_prob(t64(yb)), td.log_prob(torch.tensor(yb)), mp, tp, rtol=1e-8)


@given(data=st.data())
def test_against_torch_rsample_gradients_same_noise(data):
    """torch's samplers are handed minigen's noise (the seeded generator's draws, reproduced
    with numpy's PCG64): the samples and their gradients must agree."""
    torch = pytest.importorskip("torch")
    D = torch.distributions
    seed = data.draw(st.integers(0, 2 ** 16))
    shape = (2, 3)

    def noise(kind):
        return torch.tensor(_noise(kind, shape, seed))
    normal_mod = __import__("torch.distributions.normal", fromlist=["_"])
    mvn_mod = __import__("torch.distributions.multivariate_normal", fromlist=["_"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(normal_mod, "_standard_normal", lambda s, dtype, device: noise("normal"))
        mp.setattr(mvn_mod, "_standard_normal", lambda s, dtype, device: noise("normal"))
        mp.setattr(torch, "rand", lambda *a, **k: noise("uniform"))
        _same_noise_cases(torch, data, seed, shape)
    _gamma_against_torch(torch, data, seed)


def _same_noise_cases(torch, data, seed, shape):
    D = torch.distributions
    loc, scale = data.draw(_arr(_real)), data.draw(_arr(_pos))
    lg = data.draw(_arr(_real))
    cases = [
        (lambda m, s: Normal(m, s), lambda m, s: D.Normal(m, s), [loc, scale]),
        (lambda a, b: Uniform(a, b), lambda a, b: D.Uniform(a, b), [loc, loc + scale]),
        (lambda a: RelaxedBernoulli(TEMP, logits=a),
         lambda a: D.RelaxedBernoulli(torch.tensor(TEMP, dtype=torch.float64), logits=a), [lg]),
        (lambda a: RelaxedOneHotCategorical(TEMP, logits=a),
         lambda a: D.RelaxedOneHotCategorical(torch.tensor(TEMP, dtype=torch.float64), logits=a), [lg]),
        (lambda m, s: MultivariateNormal(m, scale_tril=s),
         lambda m, s: D.MultivariateNormal(m, scale_tril=s), [loc, np.diag(scale)]),
    ]
    for make_mg, make_t, params in cases:
        md, td, mp, tp = _pair(make_mg, make_t, params)
        ev = len(md.event_shape)
        sample_shape = shape[:len(shape) - len(md.batch_shape) - ev]
        _grads_agree(md.rsample(sample_shape, generator=gen(seed)), td.rsample(sample_shape),
                     mp, tp, rtol=1e-10)


def _gamma_against_torch(torch, data, seed):
    """dz/dα at minigen's draw against torch's own implicit gradient at the same z."""
    alpha = data.draw(_arr(st.floats(0.1, 20.0)))
    a = t64(alpha, requires_grad=True)
    z = Gamma(a, 1.0).rsample(generator=gen(seed))
    z.sum().backward()
    ref = torch._standard_gamma_grad(torch.tensor(alpha), torch.tensor(z.detach().numpy()))
    # torch's gradient is an approximation (series, asymptotic and rational fits); ours sums the
    # exact series (checked against scipy above): agreement to torch's accuracy
    np.testing.assert_allclose(a.grad.numpy(), ref.numpy(), rtol=2e-3, atol=1e-6)
