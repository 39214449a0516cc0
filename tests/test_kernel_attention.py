"""Kernel family ``attention``: every implementation against the reference (forward, backward,
mask gradient), the reference's blocked version, the op through op_check (float64 central
differences), PyTorch's SDPA and MultiheadAttention when importable, dropout, errors."""
from __future__ import annotations

import numpy as np
import pytest

import minigen as mg
import minigen.nn.functional as F
from minigen import dispatch, nn
from minigen.reference import attention as R

from kernel_impls import implementations
from op_check import check_op

hyp = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings, strategies as st  # noqa: E402

IMPLS = implementations("attention")
IMPLS_NOREF = implementations("attention", exclude=("reference",))


def _impl_module(name):
    return dispatch._FAMILIES["attention"][name].load()


def _inputs(rng, B, L, S, E, Ev, mask_kind, dt):
    q = rng.standard_normal((B, L, E)).astype(dt)
    k = rng.standard_normal((B, S, E)).astype(dt)
    v = rng.standard_normal((B, S, Ev)).astype(dt)
    mask = None
    if mask_kind == "additive":
        mask = rng.standard_normal((B, L, S)).astype(dt)
    elif mask_kind == "boolean":            # as the op layer passes it: 0 / −inf
        mask = np.where(rng.random((B, L, S)) < 0.7, 0.0, -np.inf).astype(dt)
    elif mask_kind == "broadcast":          # one (L, S) mask shared by the batch: stride 0
        mask = np.broadcast_to(rng.standard_normal((1, L, S)).astype(dt), (B, L, S))
    if mask is not None and mask_kind != "broadcast" and L > 1:
        mask[0, L // 2] = -np.inf           # a fully-masked row
    return q, k, v, mask


def _close(got, want, dt, what):
    tol = dict(rtol=1e-10, atol=1e-12) if dt == np.float64 else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               err_msg=what, **tol)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40),
                   st.sampled_from([8, 16, 32]), st.sampled_from([8, 16, 24]))


@pytest.mark.parametrize("impl", IMPLS_NOREF)
@settings(max_examples=12)
@given(shape=shapes, mask_kind=st.sampled_from([None, "additive", "boolean", "broadcast"]),
       causal=st.booleans(), scale=st.sampled_from([None, 0.3]),
       dt=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
# pinned whatever the draw: sizes that are no block multiple (L, S odd, past 16/32), a
# broadcast (stride-0) mask, causal with L ≠ S, masks with fully-masked rows, both dtypes
@example(shape=(2, 17, 33, 16, 24), mask_kind="broadcast", causal=False, scale=None,
         dt=np.float32, seed=1)
@example(shape=(3, 33, 17, 32, 8), mask_kind=None, causal=True, scale=0.3, dt=np.float64,
         seed=2)
@example(shape=(1, 37, 35, 8, 16), mask_kind="boolean", causal=False, scale=None,
         dt=np.float64, seed=3)
@example(shape=(2, 19, 21, 16, 16), mask_kind="additive", causal=False, scale=0.3,
         dt=np.float32, seed=4)
def test_impl_matches_reference(impl, shape, mask_kind, causal, scale, dt, seed):
    B, L, S, E, Ev = shape
    if mask_kind is not None:
        causal = False
    rng = np.random.default_rng(seed)
    q, k, v, mask = _inputs(rng, B, L, S, E, Ev, mask_kind, dt)
    c = 1 / np.sqrt(E) if scale is None else scale
    mod = _impl_module(impl)
    o_ref, lse_ref = R.attention_forward(q, k, v, mask, causal, c)
    o, lse = mod.attention_forward(q, k, v, mask, causal, c)
    assert o.shape == o_ref.shape and o.dtype == q.dtype
    _close(o, o_ref, dt, "output")
    fin = np.isfinite(lse_ref)
    assert (np.asarray(lse)[~fin] == np.inf).all(), "fully-masked rows: lse = +inf"
    _close(np.asarray(lse)[fin], lse_ref[fin], dt, "lse")
    do = rng.standard_normal(o_ref.shape).astype(dt)
    want = R.attention_backward(do, q, k, v, o_ref, lse_ref, mask, causal, c, True)
    got = mod.attention_backward(do, q, k, v, o_ref, lse_ref, mask, causal, c, True)
    for name, g, w in zip(("dq", "dk", "dv", "dmask"), got, want):
        assert g.shape == w.shape, name
        _close(g, w, dt, name)
    got2 = mod.attention_backward(do, q, k, v, o_ref, lse_ref, mask, causal, c, False)
    assert got2[3] is None
    for name, g, w in zip(("dq", "dk", "dv"), got2, want):
        _close(g, w, dt, name + " (no dmask)")


@settings(max_examples=10)
@given(shape=shapes, mask_kind=st.sampled_from([None, "additive", "broadcast"]),
       causal=st.booleans(), bm=st.sampled_from([4, 16]), bn=st.sampled_from([8, 16]),
       seed=st.integers(0, 2 ** 16))
def test_blocked_reference_matches_plain(shape, mask_kind, causal, bm, bn, seed):
    B, L, S, E, Ev = shape
    causal = causal and mask_kind is None
    rng = np.random.default_rng(seed)
    q, k, v, mask = _inputs(rng, B, L, S, E, Ev, mask_kind, np.float64)
    o, lse = R.attention_forward(q, k, v, mask, causal, 0.25)
    o2, lse2 = R.attention_forward_blocked(q, k, v, mask, causal, 0.25, bm, bn)
    _close(o2, o, np.float64, "blocked output")
    np.testing.assert_allclose(lse2, lse, rtol=1e-12)
    do = rng.standard_normal(o.shape)
    want = R.attention_backward(do, q, k, v, o, lse, mask, causal, 0.25, True)
    got = R.attention_backward_blocked(do, q, k, v, o, lse, mask, causal, 0.25, True, bm, bn)
    for name, g, w in zip(("dq", "dk", "dv", "dmask"), got, want):
        _close(g, w, np.float64, "blocked " + name)


def _np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    """Plain numpy softmax attention (independent of minigen) for check_op."""
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = s + mask
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    return (p / p.sum(axis=-1, keepdims=True)) @ v


@pytest.mark.parametrize("impl", [p for p in IMPLS if p.id.split("-")[0] != "triton"])
def test_op_check(impl, rng):
    """Forward in float64/float32/non-contiguous and float64 gradients (incl. the additive mask's
    and broadcast leading dims) against central differences."""
    q = rng.standard_normal((2, 3, 5, 4))
    k = rng.standard_normal((3, 7, 4))              # broadcasts over the first dim
    v = rng.standard_normal((2, 1, 7, 6))           # broadcasts over heads
    m = rng.standard_normal((5, 7))
    with dispatch.use(attention=impl):
        check_op(lambda a, b, c, d: F.scaled_dot_product_attention(a, b, c, attn_mask=d),
                 lambda a, b, c, d: _np_sdpa(a, b, c, d), [q, k, v, m])
        check_op(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True,
                                                                scale=0.7),
                 lambda a, b, c: _np_sdpa(a, b, c, causal=True, scale=0.7),
                 [rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 5, 4)),
                  rng.standard_normal((2, 5, 3))])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [mg.float32, mg.float64])
def test_views_and_broadcasting_through_the_op(impl, dt):
    """Every implementation (Triton included) through the op layer with a transposed query, a
    key broadcast over the batch, a value broadcast over heads and an (L, S) mask broadcast
    over both, odd sizes: the output against explicit numpy softmax attention, the gradients
    against the float64 reference run on contiguous copies (itself checked by op_check)."""
    rng = np.random.default_rng(21)
    q_t = rng.standard_normal((2, 3, 8, 19))                    # viewed as (2, 3, 19, 8)
    k = rng.standard_normal((3, 23, 8))
    v = rng.standard_normal((2, 1, 23, 5))
    m = rng.standard_normal((19, 23))
    do = rng.standard_normal((2, 3, 19, 5))

    def run(name, dtype, contiguous):
        leaves = [mg.tensor(a, dtype=dtype, requires_grad=True) for a in (q_t, k, v, m)]
        q = leaves[0].transpose(-1, -2)
        if contiguous:
            q = q.contiguous()
        with dispatch.use(attention=name):
            o = F.scaled_dot_product_attention(q, leaves[1], leaves[2], attn_mask=leaves[3])
            o.backward(mg.tensor(do, dtype=dtype))
        return [o.detach().numpy()] + [t.grad.numpy() for t in leaves]

    got = run(impl, dt, False)
    want = run("reference", mg.float64, True)
    ref_o = _np_sdpa(np.swapaxes(q_t, -1, -2), k, v, m)
    tol = dict(rtol=1e-10, atol=1e-12) if dt == mg.float64 else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got[0], ref_o, **tol, err_msg="output")
    for name, g, w in zip(("dq", "dk", "dv", "dmask"), got[1:], want[1:]):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, **tol, err_msg=name)


@pytest.mark.parametrize("impl", IMPLS)
def test_fully_masked_row_is_zero(impl, rng):
    q, k, v = (mg.tensor(rng.standard_normal(s), requires_grad=True)
               for s in ((2, 4, 8), (2, 6, 8), (2, 6, 8)))
    mask = np.ones((4, 6), bool)
    mask[1] = False
    with dispatch.use(attention=impl):
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mg.tensor(mask))
        o.sum().backward()
    out = o.detach().numpy()
    assert np.isfinite(out).all() and (out[:, 1] == 0).all()
    assert (q.grad.numpy()[:, 1] == 0).all()
    for t in (q, k, v):
        assert np.isfinite(t.grad.numpy()).all()


def test_default_dispatch_cpu():
    assert dispatch.active("attention", "cpu") in ("native", "reference")


# ------------------------------------------------------------------------------ PyTorch
def _torch_case(torch, rng, qs, ks, vs, mask=None, causal=False, scale=None, bool_mask=False):
    q, k, v = (rng.standard_normal(s) for s in (qs, ks, vs))
    m = None if mask is None else (rng.random(mask) < 0.7 if bool_mask
                                   else rng.standard_normal(mask))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tm = None if m is None else torch.tensor(m, requires_grad=not bool_mask)
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm,
                                                          is_causal=causal, scale=scale)
    g = rng.standard_normal(tuple(to.shape))
    to.backward(torch.tensor(g))
    mq, mk, mv = (mg.tensor(a, requires_grad=True) for a in (q, k, v))
    mm = None if m is None else mg.tensor(m, requires_grad=not bool_mask)
    mo = F.scaled_dot_product_attention(mq, mk, mv, attn_mask=mm, is_causal=causal,
                                        scale=scale)
    mo.backward(mg.tensor(g))
    pairs = [(mo.detach().numpy(), to.detach().numpy())]
    pairs += [(a.grad.numpy(), b.grad.numpy()) for a, b in ((mq, tq), (mk, tk), (mv, tv))]
    if m is not None and not bool_mask:
        pairs.append((mm.grad.numpy(), tm.grad.numpy()))
    for got, want in pairs:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("impl", [p for p in IMPLS if p.id.split("-")[0] != "triton"])
def test_matches_torch_sdpa(impl, rng):
    torch = pytest.importorskip("torch")
    with dispatch.use(attention=impl):
        _torch_case(torch, rng, (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6))
        _torch_case(torch, rng, (2, 3, 5, 8), (3, 7, 8), (1, 3, 7, 6), mask=(5, 7))
        _torch_case(torch, rng, (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), mask=(2, 1, 1, 7),
                    bool_mask=True)
        _torch_case(torch, rng, (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), mask=(3, 5, 7),
                    scale=0.3)
        _torch_case(torch, rng, (2, 9, 8), (2, 7, 8), (2, 7, 5), causal=True)   # L > S
        _torch_case(torch, rng, (2, 5, 8), (2, 7, 8), (2, 7, 5), causal=True)   # L < S
        # a boolean mask with a fully-masked row: torch's fused CPU kernel gives 0, as we do
        q, k, v = (rng.standard_normal(s) for s in ((1, 3, 4), (1, 5, 4), (1, 5, 4)))
        m = np.ones((3, 5), bool)
        m[1] = False
        want = torch.nn.functional.scaled_dot_product_attention(
            *(torch.tensor(a) for a in (q, k, v)), attn_mask=torch.tensor(m)).numpy()
        got = F.scaled_dot_product_attention(*(mg.tensor(a) for a in (q, k, v)),
                                             attn_mask=mg.tensor(m)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def _mha_pair(torch, rng, kw, E=8, H=2):
    t = torch.nn.MultiheadAttention(E, H, **kw).double()
    m = nn.MultiheadAttention(E, H, **kw).to(mg.float64)
    tn = sorted(n for n, _ in t.named_parameters())
    assert sorted(n for n, _ in m.named_parameters()) == tn
    params = dict(m.named_parameters())
    for name, p in t.named_parameters():
        params[name].data[...] = p.detach().numpy()
    return t, m


@pytest.mark.parametrize("kw,call", [
    ({}, {}),
    ({"batch_first": True}, {"need_weights": False}),
    ({"kdim": 5, "vdim": 6}, {}),
    ({"bias": False}, {"average_attn_weights": False}),
    ({}, {"attn_mask": "bool"}),
    ({}, {"attn_mask": "float3", "need_weights": False}),
    ({}, {"key_padding_mask": True, "need_weights": False}),
    ({"add_bias_kv": True}, {"key_padding_mask": True}),
    ({"add_zero_attn": True, "add_bias_kv": True}, {"attn_mask": "bool", "need_weights": False}),
    ({}, {"attn_mask": "causal", "is_causal": True, "need_weights": False}),
    ({}, {"unbatched": True}),
])
def test_multihead_attention_matches_torch(kw, call, rng):
    torch = pytest.importorskip("torch")
    t, m = _mha_pair(torch, rng, kw)
    L, S, N, E, H = 5, 7, 3, 8, 2
    call = dict(call)
    if call.get("attn_mask") == "causal":
        S = L
    bf = kw.get("batch_first", False)
    unbatched = call.pop("unbatched", False)

    def shp(n, d):
        return (n, d) if unbatched else (N, n, d) if bf else (n, N, d)
    arrays = [rng.standard_normal(shp(L, E)), rng.standard_normal(shp(S, kw.get("kdim", E))),
              rng.standard_normal(shp(S, kw.get("vdim", E)))]
    extra = {k_: v_ for k_, v_ in call.items() if k_ not in ("attn_mask", "key_padding_mask")}
    masks = {}
    if call.get("attn_mask") == "bool":
        masks["attn_mask"] = rng.random((L, S)) < 0.2
    elif call.get("attn_mask") == "float3":
        masks["attn_mask"] = rng.standard_normal((N * H, L, S))
    elif call.get("attn_mask") == "causal":
        masks["attn_mask"] = np.triu(np.ones((L, S), bool), 1)
    if call.get("key_padding_mask"):
        masks["key_padding_mask"] = rng.random((N, S)) < 0.3
    tin = [torch.tensor(a, requires_grad=True) for a in arrays]
    min_ = [mg.tensor(a, requires_grad=True) for a in arrays]
    to, tw = t(*tin, **{k_: torch.tensor(v_) for k_, v_ in masks.items()}, **extra)
    mo, mw = m(*min_, **{k_: mg.tensor(v_) for k_, v_ in masks.items()}, **extra)
    np.testing.assert_allclose(mo.detach().numpy(), to.detach().numpy(), rtol=1e-9, atol=1e-12)
    if tw is None:
        assert mw is None
    else:
        np.testing.assert_allclose(mw.detach().numpy(), tw.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
    to.sum().backward()
    mo.sum().backward()
    for a, b in zip(min_, tin):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-11)
    tparams = dict(t.named_parameters())
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)


def test_multihead_attention_errors():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    m = nn.MultiheadAttention(8, 2)
    x = mg.zeros(5, 3, 8)
    with pytest.raises(RuntimeError, match="is_causal"):
        m(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match="attn_mask must be"):
        m(x, x, x, attn_mask=mg.zeros(4, 5))
    with pytest.raises(RuntimeError, match="key_padding_mask"):
        m(x, x, x, key_padding_mask=mg.zeros(3, 4, dtype=mg.bool))


# ------------------------------------------------------------------------------ dropout
def test_dropout_statistics_and_seed():
    L, S, p = 300, 40, 0.3
    q = mg.zeros(1, L, 8)
    k = mg.zeros(1, S, 8)                   # uniform attention: P = 1/S
    v = mg.tensor(np.eye(S, dtype=np.float32)[None])   # o_ij = P_ij · keep_ij
    o = F.scaled_dot_product_attention(q, k, v, dropout_p=p,
                                       generator=mg.Generator().manual_seed(1)).numpy()
    zero = (o == 0).mean()
    assert abs(zero - p) < 0.02, zero
    np.testing.assert_allclose(o[o != 0], 1 / (S * (1 - p)), rtol=1e-6)
    o2 = F.scaled_dot_product_attention(q, k, v, dropout_p=p,
                                        generator=mg.Generator().manual_seed(1)).numpy()
    o3 = F.scaled_dot_product_attention(q, k, v, dropout_p=p,
                                        generator=mg.Generator().manual_seed(2)).numpy()
    assert np.array_equal(o, o2) and not np.array_equal(o, o3)
    mg.manual_seed(5)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=p).numpy()
    mg.manual_seed(5)
    assert np.array_equal(a, F.scaled_dot_product_attention(q, k, v, dropout_p=p).numpy())
    assert (F.scaled_dot_product_attention(q, k, v, dropout_p=1.0).numpy() == 0).all()


def test_dropout_gradient(rng):
    """With a fixed keep mask (same seed each call) the op is smooth: float64 gradcheck."""
    from minigen.autograd import gradcheck
    arrays = [rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 6, 4)),
              rng.standard_normal((2, 6, 3))]
    leaves = [mg.tensor(a, requires_grad=True) for a in arrays]
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(
        a, b, c, dropout_p=0.4, generator=mg.Generator().manual_seed(3)), leaves,
        atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------ errors
def test_errors():
    q, k, v = mg.zeros(2, 5, 8), mg.zeros(2, 7, 8), mg.zeros(2, 7, 4)
    sdpa = F.scaled_dot_product_attention
    with pytest.raises(RuntimeError, match="query's last dim"):
        sdpa(q, mg.zeros(2, 7, 6), v)
    with pytest.raises(RuntimeError, match="same length"):
        sdpa(q, k, mg.zeros(2, 6, 4))
    with pytest.raises(RuntimeError, match="does not broadcast"):
        sdpa(q, k, v, attn_mask=mg.zeros(5, 6))
    with pytest.raises(RuntimeError, match="not both"):
        sdpa(q, k, v, attn_mask=mg.zeros(5, 7), is_causal=True)
    with pytest.raises(TypeError, match="same dtype"):
        sdpa(q, k.to(mg.float64), v)
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        sdpa(mg.zeros(2, 5, 8), mg.zeros(3, 7, 8), mg.zeros(3, 7, 4))
    with pytest.raises(ValueError, match="dropout_p"):
        sdpa(q, k, v, dropout_p=1.5)
    with pytest.raises(TypeError, match="boolean or floating"):
        sdpa(q, k, v, attn_mask=mg.zeros(5, 7, dtype=mg.int64))
    with pytest.raises(TypeError, match="must be a Tensor"):
        sdpa(np.zeros((2, 5, 8)), k, v)


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["float32", "float16"])
def test_triton_on_gpu(dt):
    cp = pytest.importorskip("cupy")
    from minigen.kernels import attention as T
    rng = np.random.default_rng(0)
    for causal, mask_kind in ((False, None), (True, None), (False, "additive")):
        q, k, v, mask = _inputs(rng, 3, 77, 61, 64, 64, mask_kind, np.float32)
        o_ref, lse_ref = R.attention_forward(q, k, v, mask, causal, 0.125)
        do = rng.standard_normal(o_ref.shape).astype(np.float32)
        want = R.attention_backward(do, q, k, v, o_ref, lse_ref, mask, causal, 0.125, True)
        g = [None if a is None else cp.asarray(a).astype(dt) for a in (q, k, v, mask, do)]
        o, lse = T.attention_forward(g[0], g[1], g[2], g[3], causal, 0.125)
        got = T.attention_backward(g[4], g[0], g[1], g[2], o, lse, g[3], causal, 0.125, True)
        tol = dict(rtol=2e-5, atol=2e-5) if dt == "float32" else dict(rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(cp.asnumpy(o).astype(np.float64), o_ref, **tol)
        for g_, w in zip(got, want):
            np.testing.assert_allclose(cp.asnumpy(g_).astype(np.float64), w, **tol)
