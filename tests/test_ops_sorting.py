"""minigen/ops/sorting.py: sort, argsort, topk, searchsorted, unique, cumprod, logcumsumexp
against numpy (and torch when installed), gradients by float64 central differences through
``check_op``; multinomial and bernoulli by their frequencies (seeded, within binomial bounds);
the same code on the CuPy stand-in (tests/fake_cupy.py)."""
import math

import numpy as np
import pytest

import minigen as mg
from op_check import check_op

import fake_cupy

R = np.random.default_rng(0)
DISTINCT = R.permutation(40).reshape(4, 10) / 7.0 - 2.5        # distinct: gradients well defined


# ---------------------------------------------------------------------- sort / argsort
@pytest.mark.parametrize("dim", [-1, 0])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_values_indices_and_gradient(dim, descending):
    def ref(a):
        idx = np.argsort(-a if descending else a, axis=dim, kind="stable")
        return np.take_along_axis(a, idx, axis=dim), idx
    check_op(lambda t: mg.sort(t, dim=dim, descending=descending), ref, [DISTINCT])


def test_sort_is_stable_with_ties_and_nan_is_largest():
    x = np.array([2.0, 1.0, np.nan, 2.0, 1.0, -np.inf, 2.0])
    v, i = mg.sort(mg.tensor(x, dtype=mg.float64))
    assert i.numpy().tolist() == [5, 1, 4, 0, 3, 6, 2]            # ties in order, NaN last
    v, i = mg.tensor(x, dtype=mg.float64).sort(descending=True)
    assert i.numpy().tolist() == [2, 0, 3, 6, 1, 4, 5]            # NaN first, ties in order
    assert np.isnan(v.numpy()[0]) and v.numpy()[1:].tolist() == [2, 2, 2, 1, 1, -np.inf]
    assert mg.argsort(mg.tensor([3, 1, 2, 1]), descending=True).numpy().tolist() == [0, 2, 1, 3]
    out = mg.sort(mg.tensor([[3, 1], [0, 5]]), dim=0)
    assert out.values.numpy().tolist() == [[0, 1], [3, 5]]
    assert out.indices.numpy().tolist() == [[1, 0], [0, 1]]
    assert mg.tensor(5.0).sort().values.item() == 5.0
    assert mg.msort(mg.tensor([[2.0], [1.0]])).numpy().tolist() == [[1.0], [2.0]]


# ---------------------------------------------------------------------- topk
WIDE = R.permutation(150).reshape(3, 50) / 11.0      # past the short-line path (n > 32)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_topk_against_numpy(k, largest):
    def ref(a):
        idx = np.argsort(-a if largest else a, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(a, idx, axis=-1), idx
    check_op(lambda t: mg.topk(t, k, largest=largest), ref, [DISTINCT])
    check_op(lambda t: mg.topk(t, k, largest=largest), ref, [WIDE], grad=k == 3)
    # along dim 0, as a method

    def ref0(a):
        idx = np.argsort(-a if largest else a, axis=0, kind="stable")[:2]
        return np.take_along_axis(a, idx, axis=0), idx
    check_op(lambda t: t.topk(2, dim=0, largest=largest), ref0, [DISTINCT])


@pytest.mark.parametrize("arr", [DISTINCT, WIDE])
def test_topk_unsorted_selects_the_same_set(arr):
    x = mg.tensor(arr)
    v, i = mg.topk(x, 4, sorted=False)
    top = np.sort(np.argsort(-arr, axis=1)[:, :4], axis=1)
    np.testing.assert_array_equal(np.sort(i.numpy(), axis=1), top)
    np.testing.assert_array_equal(v.numpy(), np.take_along_axis(arr, i.numpy(), 1))


def test_topk_edges_and_errors():
    x = mg.tensor([1.0, np.nan, 3.0, 2.0], dtype=mg.float64)
    v, i = mg.topk(x, 2)
    assert np.isnan(v.numpy()[0]) and i.numpy().tolist() == [1, 2]   # NaN is the largest
    wide = np.arange(40.0)
    wide[7] = np.nan
    assert mg.topk(mg.tensor(wide), 2).indices.numpy().tolist() == [7, 39]
    assert mg.topk(mg.tensor(wide), 2, largest=False).indices.numpy().tolist() == [0, 1]
    assert mg.topk(x, 1, largest=False).indices.numpy().tolist() == [0]
    assert mg.topk(x, 0).values.shape == (0,)
    assert mg.topk(mg.tensor([2.0, 1.0, 3.0]), 3).indices.numpy().tolist() == [2, 0, 1]
    with pytest.raises(RuntimeError, match="out of range"):
        mg.topk(x, 5)
    with pytest.raises(TypeError, match="k must be an int"):
        mg.topk(x, 1.5)
    with pytest.raises(IndexError):
        mg.topk(x, 1, dim=1)


def test_topk_gradient_lands_on_the_selected_positions():
    x = mg.tensor(DISTINCT, requires_grad=True)
    v, i = mg.topk(x, 3)
    (v * mg.tensor(np.arange(1.0, 4.0))).sum().backward()
    want = np.zeros_like(DISTINCT)
    np.put_along_axis(want, np.argsort(-DISTINCT, axis=1)[:, :3], np.arange(1.0, 4.0), axis=1)
    np.testing.assert_array_equal(x.grad.numpy(), want)


# ---------------------------------------------------------------------- searchsorted
def test_searchsorted_1d_against_numpy():
    seq = np.array([0.0, 1.0, 1.0, 2.0, 3.5, 3.5, 3.5, 9.0])
    vals = np.array([[-1.0, 0.0, 1.0, 1.5], [3.5, 9.0, 10.0, 2.0]])
    for side in ("left", "right"):
        got = mg.searchsorted(mg.tensor(seq), mg.tensor(vals), side=side)
        np.testing.assert_array_equal(got.numpy(), np.searchsorted(seq, vals, side=side))
        assert got.dtype == mg.int64
    np.testing.assert_array_equal(mg.searchsorted(mg.tensor(seq), mg.tensor(vals),
                                                  right=True).numpy(),
                                  np.searchsorted(seq, vals, side="right"))
    assert mg.searchsorted(mg.tensor(seq), mg.tensor(vals), out_int32=True).dtype == mg.int32
    assert int(mg.searchsorted(mg.tensor(seq), 3.5).item()) == 4
    perm = R.permutation(len(seq))
    got = mg.searchsorted(mg.tensor(seq[perm]), mg.tensor(vals),
                          sorter=mg.tensor(np.argsort(seq[perm], kind="stable")))
    np.testing.assert_array_equal(got.numpy(), np.searchsorted(seq, vals))
    np.testing.assert_array_equal(mg.bucketize(mg.tensor(vals), mg.tensor(seq)).numpy(),
                                  np.searchsorted(seq, vals))
    with pytest.raises(RuntimeError, match="contradict"):
        mg.searchsorted(mg.tensor(seq), mg.tensor(vals), right=True, side="left")


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_batched_with_ties(side):
    seq = np.sort(R.integers(0, 6, (2, 3, 9)).astype(np.float64), axis=-1)
    vals = R.integers(-1, 8, (2, 3, 5)).astype(np.float64)       # many ties with seq entries
    got = mg.searchsorted(mg.tensor(seq), mg.tensor(vals), side=side).numpy()
    want = np.stack([np.searchsorted(s, v, side=side) for s, v in
                     zip(seq.reshape(-1, 9), vals.reshape(-1, 5))]).reshape(2, 3, 5)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(RuntimeError, match="leading dims"):
        mg.searchsorted(mg.tensor(seq), mg.tensor(vals[:1]))


# ---------------------------------------------------------------------- unique
def test_unique_flat_against_numpy():
    x = R.integers(0, 5, (3, 7))
    vals, inv, cnt = mg.unique(mg.tensor(x), return_inverse=True, return_counts=True)
    u, i, c = np.unique(x, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(vals.numpy(), u)
    np.testing.assert_array_equal(inv.numpy(), i.reshape(x.shape))
    np.testing.assert_array_equal(cnt.numpy(), c)
    np.testing.assert_array_equal(mg.tensor(x).unique().numpy(), u)
    assert mg.unique(mg.tensor(np.zeros(0))).shape == (0,)
    # NaNs are distinct values (PyTorch), not merged
    out = mg.unique(mg.tensor([np.nan, 1.0, np.nan], dtype=mg.float64)).numpy()
    assert out[0] == 1.0 and np.isnan(out[1:]).all() and len(out) == 3


@pytest.mark.parametrize("dim", [0, 1])
def test_unique_dim_against_numpy(dim):
    x = R.integers(0, 2, (6, 3))
    x = np.concatenate([x, x[:2]], axis=0) if dim == 0 else np.concatenate([x.T, x.T[:, :2]], 1)
    vals, inv, cnt = mg.unique(mg.tensor(x), dim=dim, return_inverse=True, return_counts=True)
    u, i, c = np.unique(x, axis=dim, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(vals.numpy(), u)
    np.testing.assert_array_equal(inv.numpy(), i.reshape(-1))
    np.testing.assert_array_equal(cnt.numpy(), c)


# ---------------------------------------------------------------------- cumprod
CP = np.array([[0.5, -1.5, 2.0, 0.7, 1.2],       # no zero
               [1.3, 0.0, 2.0, -0.4, 1.1],       # one zero
               [0.0, 1.4, 0.0, 0.8, 2.0],        # two zeros, one at the start
               [0.9, 1.1, -1.2, 1.3, 0.0]])      # zero at the end


@pytest.mark.parametrize("dim", [1, 0])
def test_cumprod_with_zeros(dim):
    check_op(lambda t: mg.cumprod(t, dim), lambda a: np.cumprod(a, axis=dim), [CP])


def test_cumprod_dtypes():
    assert mg.cumprod(mg.tensor([1, 2, 3], dtype=mg.int32), 0).dtype == mg.int64
    assert mg.tensor([1, 2, 3]).cumprod(0).numpy().tolist() == [1, 2, 6]
    assert mg.cumprod(mg.tensor([1, 2]), 0, dtype=mg.float64).dtype == mg.float64
    assert mg.cumprod(mg.tensor(3.0), 0).item() == 3.0


# ---------------------------------------------------------------------- logcumsumexp
def lcse_ref(a):
    """log Σ_{k≤j} e^{a_k} per prefix, shifted by the prefix's own max (Python floats)."""
    out = np.empty_like(a)
    for idx in np.ndindex(a.shape[:-1]):
        line = a[idx]
        for j in range(len(line)):
            m = max(line[:j + 1])
            out[idx + (j,)] = m + math.log(sum(math.exp(v - m) for v in line[:j + 1]))
    return out


def test_logcumsumexp_forward_and_gradient():
    x = R.normal(0, 2, (3, 6))
    check_op(lambda t: mg.logcumsumexp(t, -1), lcse_ref, [x])
    check_op(lambda t: t.logcumsumexp(0), lambda a: lcse_ref(a.T).T, [x])


def test_logcumsumexp_extreme_values_and_gradient():
    x = np.array([-1000.0, 0.0, 1000.0, -np.inf, 999.0, 1000.0])
    t = mg.tensor(x, requires_grad=True)
    y = mg.logcumsumexp(t, 0)
    ref = lcse_ref(np.where(np.isinf(x), -1e300, x))
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-15)
    g = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])
    y.backward(mg.tensor(g))
    # ∂L/∂x_i = Σ_{j≥i} g_j e^{x_i − y_j}: every exponent ≤ 0, summed directly
    want = [sum(g[j] * math.exp(x[i] - ref[j]) for j in range(i, 6)) for i in range(6)]
    np.testing.assert_allclose(t.grad.numpy(), want, rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------- multinomial
def binomial_ok(count, n, p, z=5.0):
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1e-9


def test_multinomial_with_replacement_frequencies():
    w = np.array([0.2, 0.0, 0.6, 1.2])                       # unnormalised, one zero
    n = 20000
    g = mg.Generator().manual_seed(1)
    s = mg.multinomial(mg.tensor(w), n, replacement=True, generator=g).numpy()
    assert s.shape == (n,) and s.dtype == np.int64
    counts = np.bincount(s, minlength=4)
    assert counts[1] == 0
    for c, p in zip(counts, w / w.sum()):
        assert binomial_ok(c, n, p), (counts, w / w.sum())
    rows = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 2.0]])
    s = mg.tensor(rows).multinomial(6000, True, generator=g).numpy()
    assert (s[0] == 0).all() and (s[1] == 2).all()
    for c, p in zip(np.bincount(s[2], minlength=3), [0.25, 0.25, 0.5]):
        assert binomial_ok(c, 6000, p)


class _FixedUniform:
    """A generator stand-in whose uniforms are all ``u`` (the edges of [0, 1))."""
    def __init__(self, u):
        self.u = u

    def random(self, shape):
        return np.full(shape, self.u)


@pytest.mark.parametrize("u", [0.0, np.nextafter(1.0, 0.0)])
def test_multinomial_never_draws_a_zero_weight_category_at_the_edges(u):
    g = mg.Generator()
    g._rng = _FixedUniform(u)
    w = mg.tensor(np.tile([0.0, 1.0, 0.0, 1.0, 0.0], (5, 1)))    # 5 rows: offsets 0 … 8
    s = mg.multinomial(w, 3, replacement=True, generator=g).numpy()
    assert (s == (1 if u == 0 else 3)).all(), s


def test_multinomial_without_replacement_law():
    p = np.array([0.5, 0.3, 0.2, 0.0])
    n = 20000
    s = mg.multinomial(mg.tensor(np.tile(p, (n, 1))), 2,
                       generator=mg.Generator().manual_seed(2)).numpy()
    assert (s[:, 0] != s[:, 1]).all() and (s != 3).all()
    # first draw ~ p; second: P(j) = Σ_{i≠j} p_i p_j / (1 − p_i) (draw, remove, renormalise)
    second = [sum(p[i] * p[j] / (1 - p[i]) for i in range(3) if i != j) for j in range(3)]
    for j in range(3):
        assert binomial_ok((s[:, 0] == j).sum(), n, p[j])
        assert binomial_ok((s[:, 1] == j).sum(), n, second[j])
    full = mg.multinomial(mg.tensor([1.0, 2.0, 3.0]), 3).numpy()
    assert sorted(full.tolist()) == [0, 1, 2]


def test_multinomial_seeded_and_errors():
    w = mg.tensor([0.1, 0.4, 0.5])
    a = mg.multinomial(w, 50, True, generator=mg.Generator().manual_seed(7)).numpy()
    b = mg.multinomial(w, 50, True, generator=mg.Generator().manual_seed(7)).numpy()
    c = mg.multinomial(w, 50, True, generator=mg.Generator().manual_seed(8)).numpy()
    assert (a == b).all() and (a != c).any()
    for bad, match in (([0.5, -0.1], "element < 0"), ([np.nan, 1.0], "nan"),
                       ([0.0, 0.0], "sum of probabilities")):
        with pytest.raises(RuntimeError, match=match):
            mg.multinomial(mg.tensor(bad), 1, True)
    with pytest.raises(RuntimeError, match="without replacement"):
        mg.multinomial(w, 4)
    with pytest.raises(RuntimeError, match="not enough"):
        mg.multinomial(mg.tensor([1.0, 0.0, 0.0]), 2)
    with pytest.raises(RuntimeError, match="1-D or 2-D"):
        mg.multinomial(mg.ones(2, 2, 2), 1)
    with pytest.raises(RuntimeError, match="positive"):
        mg.multinomial(w, 0)


# ---------------------------------------------------------------------- bernoulli
def test_bernoulli_frequencies_and_dtype():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    n = 8000
    probs = mg.tensor(np.tile(p, (n, 1)), dtype=mg.float64)
    s = mg.bernoulli(probs, generator=mg.Generator().manual_seed(3))
    assert s.dtype == mg.float64 and s.shape == (n, 5)
    s = s.numpy()
    assert set(np.unique(s).tolist()) <= {0.0, 1.0}
    assert (s[:, 0] == 0).all() and (s[:, 4] == 1).all()
    for j in (1, 2, 3):
        assert binomial_ok(s[:, j].sum(), n, p[j])
    half = mg.zeros(n).bernoulli(0.25, generator=mg.Generator().manual_seed(4)).numpy()
    assert binomial_ok(half.sum(), n, 0.25)
    with pytest.raises(RuntimeError, match=r"\[0, 1\]"):
        mg.bernoulli(mg.tensor([0.5, 1.5]))
    with pytest.raises(RuntimeError, match=r"\[0, 1\]"):
        mg.zeros(2).bernoulli(-0.1)


# ---------------------------------------------------------------------- the CuPy code path
def test_same_code_on_the_device_stand_in(monkeypatch):
    """Every op through the xp code path on a non-numpy array module (logcumsumexp takes the
    Hillis–Steele scan there); the random ops draw the same stream as on the CPU."""
    cpu = {}
    x = R.normal(0, 3, (3, 8))
    w = np.abs(x)

    def run(dev):
        t = mg.tensor(x, device=dev, requires_grad=True)
        v, i = mg.topk(t, 3)
        s = mg.sort(t, descending=True)
        lc = mg.logcumsumexp(t, 1)
        cp = mg.cumprod(t, 0)
        (v.sum() + s.values[:, :2].sum() + lc.sum() + cp.sum()).backward()
        seq = mg.sort(t.detach(), 1).values
        return dict(
            v=v, i=i, s=s.values, si=s.indices, lc=lc, cp=cp, g=t.grad,
            ss=mg.searchsorted(seq, t.detach()[:, :4], right=True),
            ss1=mg.searchsorted(seq[0], t.detach()),
            u=mg.unique(mg.tensor(np.round(x), device=dev), return_counts=True)[1],
            m=mg.multinomial(mg.tensor(w, device=dev), 3,
                             generator=mg.Generator(dev).manual_seed(5)),
            mr=mg.multinomial(mg.tensor(w, device=dev), 4, True,
                              generator=mg.Generator(dev).manual_seed(5)),
            b=mg.bernoulli(mg.tensor(w / w.max(), device=dev),
                           generator=mg.Generator(dev).manual_seed(5)))

    cpu = {k: v.detach().numpy() for k, v in run("cpu").items()}
    fake_cupy.install(monkeypatch)
    dev = {k: v.detach().data.get() for k, v in run("cuda").items()}
    for k in cpu:
        np.testing.assert_allclose(dev[k], cpu[k], rtol=1e-13, err_msg=k)


# ---------------------------------------------------------------------- torch as an oracle
def test_against_torch():
    torch = pytest.importorskip("torch")
    x = np.round(R.normal(0, 2, (5, 9)), 1)                      # ties included
    tx = torch.from_numpy(x)
    for desc in (False, True):
        v, i = mg.sort(mg.tensor(x), descending=desc)
        tv, ti = torch.sort(tx, descending=desc, stable=True)
        np.testing.assert_array_equal(v.numpy(), tv.numpy())
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
    np.testing.assert_array_equal(mg.topk(mg.tensor(x), 4).values.numpy(),
                                  torch.topk(tx, 4).values.numpy())
    seq = np.sort(x, axis=1)
    for right in (False, True):
        np.testing.assert_array_equal(
            mg.searchsorted(mg.tensor(seq), mg.tensor(x), right=right).numpy(),
            torch.searchsorted(torch.from_numpy(seq), tx.contiguous(), right=right).numpy())
    u, inv, cnt = torch.unique(tx, return_inverse=True, return_counts=True)
    mu, minv, mcnt = mg.unique(mg.tensor(x), return_inverse=True, return_counts=True)
    for a, b in ((mu, u), (minv, inv), (mcnt, cnt)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    g = R.normal(size=CP.shape)
    for mine, theirs, arr in ((lambda t: mg.cumprod(t, 1), lambda t: torch.cumprod(t, 1), CP),
                              (lambda t: mg.logcumsumexp(t, 1),
                               lambda t: torch.logcumsumexp(t, 1), CP * 300)):
        tm = mg.tensor(arr, requires_grad=True)
        ym = mine(tm)
        ym.backward(mg.tensor(g))
        tt = torch.from_numpy(arr).requires_grad_()
        yt = theirs(tt)
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(tm.grad.numpy(), tt.grad.numpy(), rtol=1e-12, atol=1e-300)


# ------------------------------------------------ empty inputs (found by the OpInfo run)
def test_searchsorted_batched_empty():
    # (0, 0) boundaries and values: reshape(-1, 0) of 0 elements has no inferable size
    seq, vals = mg.zeros(0, 0, dtype=mg.float64), mg.zeros(0, 0, dtype=mg.float64)
    out = mg.searchsorted(seq, vals, right=True)
    assert tuple(out.shape) == (0, 0) and out.dtype == mg.int64
    out = mg.searchsorted(mg.zeros(3, 0, dtype=mg.float64), mg.ones(3, 2, dtype=mg.float64))
    np.testing.assert_array_equal(out.data, np.zeros((3, 2), dtype=np.int64))


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_unique_dim_of_an_input_with_a_zero_size_dim(dim):
    x = np.zeros((5, 0, 4))
    # numpy's unique over an axis is the reference for the shapes of the result
    ref, inv, cnt = np.unique(x, axis=dim, return_inverse=True, return_counts=True)
    keys, inverse, counts = mg.unique(mg.tensor(x), dim=dim, return_inverse=True,
                                      return_counts=True)
    assert tuple(keys.shape) == ref.shape
    np.testing.assert_array_equal(inverse.data, inv.reshape(-1))
    np.testing.assert_array_equal(counts.data, cnt)
