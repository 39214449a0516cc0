"""Kernel family conv2d: conv2d / conv_transpose2d, every implementation against the reference.

1. the reference itself: forward against a direct 7-loop sum, gradients against float64
   central differences (op_check.check_op), through the op layer (so also "same" padding,
   unbatched input and non-contiguous views);
2. every implementation (native, triton in the interpreter) against the reference, forward
   and all three gradients, on hypothesis-drawn geometries (groups, strides, paddings incl.
   "same", dilations, odd sizes) and non-contiguous inputs;
3. against PyTorch when importable; 4. the nn modules; 5. error messages.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import minigen as mg
import minigen.nn.functional as F
from minigen import dispatch
from op_check import check_op
from kernel_impls import implementations

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


# ------------------------------------------------------------------------------ helpers
def loop_conv2d(x, w, b, stride, padding, dilation, groups):
    """The definition, one multiply-add at a time (tiny shapes only)."""
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og = c_out // groups
    y = np.zeros((n, c_out, ho, wo))
    for b_, o, a, c in itertools.product(range(n), range(c_out), range(ho), range(wo)):
        s = 0.0 if b is None else b[o]
        for ci, i, j in itertools.product(range(cg), range(kh), range(kw)):
            r, q = a * sh + i * dh - ph, c * sw + j * dw - pw
            if 0 <= r < h and 0 <= q < wd:
                s += w[o, ci, i, j] * x[b_, (o // og) * cg + ci, r, q]
        y[b_, o, a, c] = s
    return y


def _leaf(a, noncontig):
    """(leaf tensor, input tensor with a's values, gradient of the input from the leaf's).

    noncontig: the input is the view leaf[..., ::2] of a leaf twice as wide."""
    if a is None:
        return None, None, None
    if not noncontig:
        t = mg.tensor(a, requires_grad=True)
        return t, t, lambda: t.grad.numpy()
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    t = mg.tensor(big, requires_grad=True)

    def grad():
        gr = t.grad.numpy()
        assert not gr[..., 1::2].any(), "gradient leaked into elements outside the view"
        return gr[..., ::2]
    return t, t[..., ::2], grad


@st.composite
def conv_cases(draw, transposed=False, small=False):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 2 if small else 3))
    og = draw(st.integers(1, 2 if small else 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    n = draw(st.integers(1, 2 if small else 3))
    if transposed:
        padding = (draw(st.integers(0, (kh - 1) * dilation[0] // 2)),
                   draw(st.integers(0, (kw - 1) * dilation[1] // 2)))
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                               for s, d in zip(stride, dilation))
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 6))
        return dict(n=n, c_in=groups * cg, c_out=groups * og, h=h, w=w, k=(kh, kw),
                    stride=stride, padding=padding, output_padding=output_padding,
                    dilation=dilation, groups=groups, bias=draw(st.booleans()))
    same = stride == (1, 1) and draw(st.booleans())
    padding = "same" if same else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    h = draw(st.integers(max(1, span[0] - (0 if same else 2 * padding[0])), span[0] + 6))
    w = draw(st.integers(max(1, span[1] - (0 if same else 2 * padding[1])), span[1] + 7))
    return dict(n=n, c_in=groups * cg, c_out=groups * og, h=h, w=w, k=(kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()))


def _arrays(case, transposed, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    wshape = ((case["c_in"], case["c_out"] // case["groups"]) if transposed else
              (case["c_out"], case["c_in"] // case["groups"])) + case["k"]
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype) if case["bias"] else None
    return x, w, b


def _run(case, transposed, impl, x, w, b, g_seed=1, noncontig=False):
    """(y, gx, gw, gb) as numpy arrays through the op layer with ``impl`` forced."""
    _, tx, gx = _leaf(x, noncontig)
    _, tw, gw = _leaf(w, noncontig)
    _, tb, gb = _leaf(b, noncontig)
    with dispatch.use(conv2d=impl):
        if transposed:
            y = F.conv_transpose2d(tx, tw, tb, case["stride"], case["padding"],
                                   case["output_padding"], case["groups"], case["dilation"])
        else:
            y = F.conv2d(tx, tw, tb, case["stride"], case["padding"], case["dilation"],
                         case["groups"])
        g = np.random.default_rng(g_seed).standard_normal(y.shape).astype(x.dtype)
        y.backward(mg.tensor(g))
    return y.detach().numpy(), gx(), gw(), (None if gb is None else gb())


def _compare(got, want, tol):
    for name, a, r in zip(("y", "dx", "dw", "db"), got, want):
        if r is None:
            assert a is None
            continue
        assert a.shape == r.shape, f"{name}: shape {a.shape} != reference {r.shape}"
        np.testing.assert_allclose(a, r, atol=tol, rtol=tol, err_msg=name)


# ------------------------------------------------------------------------ 1. the reference
def test_reference_matches_loop_definition():
    rng = np.random.default_rng(3)
    from minigen.reference import conv2d as ref
    for stride, padding, dilation, groups in [((1, 1), (0, 0), (1, 1), 1),
                                              ((2, 1), (1, 2), (1, 2), 2),
                                              ((3, 2), (2, 0), (2, 1), 1)]:
        x = rng.standard_normal((2, 4, 7, 6))
        w = rng.standard_normal((6, 4 // groups, 3, 2))
        b = rng.standard_normal(6)
        np.testing.assert_allclose(
            ref.conv2d_forward(x, w, b, stride, padding, dilation, groups),
            loop_conv2d(x, w, b, stride, padding, dilation, groups), atol=1e-12)


def test_reference_transpose_is_adjoint():
    """<conv2d(u, w), v> = <u, conv_transpose2d(v, w)> with the output size matched."""
    from minigen.reference import conv2d as ref
    rng = np.random.default_rng(4)
    s, p, d, groups, op = (2, 3), (1, 0), (1, 2), 2, (1, 1)
    v = rng.standard_normal((2, 4, 3, 4))                      # conv_transpose2d input
    w = rng.standard_normal((4, 3, 3, 2))                      # (C_in, C_out/G, kh, kw)
    y = ref.conv_transpose2d_forward(v, w, None, s, p, op, d, groups)
    u = rng.standard_normal(y.shape)
    cu = ref.conv2d_forward(u, w, None, s, p, d, groups)
    assert cu.shape == v.shape
    np.testing.assert_allclose((cu * v).sum(), (u * y).sum(), rtol=1e-12)


@pytest.mark.parametrize("cfg", [
    dict(stride=1, padding=1, dilation=1, groups=1, shape=(2, 2, 5, 4), k=(3, 3), c_out=3),
    dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2, shape=(1, 4, 6, 5),
         k=(2, 3), c_out=2),
    dict(stride=1, padding="same", dilation=(2, 1), groups=1, shape=(3, 5, 4), k=(2, 2),
         c_out=2),   # unbatched, even kernel: asymmetric padding
])
def test_reference_check_op_conv2d(cfg):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(cfg["shape"])
    c_in = cfg["shape"][-3]
    w = rng.standard_normal((cfg["c_out"], c_in // cfg["groups"]) + cfg["k"])
    b = rng.standard_normal(cfg["c_out"])

    def ref(x, w, b):
        xb = x[None] if x.ndim == 3 else x
        pad = cfg["padding"]
        if pad == "same":
            tot = [d * (k - 1) for d, k in zip(cfg["dilation"], cfg["k"])]
            xb = np.pad(xb, ((0, 0), (0, 0), (tot[0] // 2, tot[0] - tot[0] // 2),
                             (tot[1] // 2, tot[1] - tot[1] // 2)))
            pad = 0
        pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
        y = loop_conv2d(xb, w, b, pair(cfg["stride"]), pair(pad), pair(cfg["dilation"]),
                        cfg["groups"])
        return y[0] if x.ndim == 3 else y

    with dispatch.use(conv2d="reference"):
        check_op(lambda x, w, b: F.conv2d(x, w, b, cfg["stride"], cfg["padding"],
                                          cfg["dilation"], cfg["groups"]),
                 ref, [x, w, b], atol=1e-10, rtol=1e-10)


def test_reference_check_op_conv_transpose2d():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 1, 3, 2))
    b = rng.standard_normal(2)
    s, p, op, d, groups = (2, 3), (1, 0), (1, 2), (1, 1), 2

    def ref(x, w, b):   # the adjoint by brute force: transpose of the conv2d matrix
        from minigen.reference import conv2d as r
        ho = (x.shape[2] - 1) * s[0] - 2 * p[0] + d[0] * 2 + op[0] + 1
        wo = (x.shape[3] - 1) * s[1] - 2 * p[1] + d[1] * 1 + op[1] + 1
        m = np.zeros((x[0].size, 2 * ho * wo))
        for k in range(2 * ho * wo):
            e = np.zeros(2 * ho * wo)
            e[k] = 1
            m[:, k] = loop_conv2d(e.reshape(1, 2, ho, wo), w, None, s, p, d, groups).ravel()
        y = np.einsum("ik,ni->nk", m, x.reshape(x.shape[0], -1)).reshape(-1, 2, ho, wo)
        assert r is not None
        return y + b.reshape(1, -1, 1, 1)

    with dispatch.use(conv2d="reference"):
        check_op(lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op, groups, d), ref,
                 [x, w, b], atol=1e-10, rtol=1e-10)


# ---------------------------------------------------------- 2. implementations vs reference
IMPLS = implementations("conv2d", exclude=("reference",))


def _examples(impl):
    return 10 if impl == "triton" else 25


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_impl_matches_reference(impl, transposed):
    small = impl == "triton"

    @settings(max_examples=_examples(impl), deadline=None)
    @given(case=conv_cases(transposed=transposed, small=small), seed=st.integers(0, 3),
           noncontig=st.booleans())
    def check(case, seed, noncontig):
        x, w, b = _arrays(case, transposed, seed)
        want = _run(case, transposed, "reference", x, w, b)
        got = _run(case, transposed, impl, x, w, b, noncontig=noncontig)
        _compare(got, want, 1e-10)

    check()


PINNED = {  # whatever hypothesis draws: no block multiple (the interpreter's blocks are 16)
    "odd-channels": (False, dict(n=2, c_in=17, c_out=19, h=5, w=7, k=(3, 3), stride=(1, 1),
                                 padding=(1, 1), dilation=(1, 1), groups=1, bias=True)),
    "groups-stride-dilation": (False, dict(n=2, c_in=6, c_out=9, h=7, w=6, k=(3, 2),
                                           stride=(2, 1), padding=(1, 0), dilation=(2, 1),
                                           groups=3, bias=False)),
    "transposed": (True, dict(n=2, c_in=6, c_out=9, h=4, w=5, k=(3, 2), stride=(2, 2),
                              padding=(1, 0), output_padding=(1, 0), dilation=(1, 2),
                              groups=3, bias=True)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(PINNED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_impl_pinned_cases(impl, case, dtype):
    """Pinned odd sizes, grouped/strided/dilated and transposed, every operand a non-contiguous
    view, both dtypes (float32: tol + |ref|·eps as the float32 test below), forward and the
    three gradients against the float64 reference (itself checked against the loop definition
    and central differences above)."""
    transposed, cfg = PINNED[case]
    x, w, b = _arrays(cfg, transposed, seed=5)
    want = _run(cfg, transposed, "reference", x, w, b)
    cast = (lambda a: a) if dtype == np.float64 else (
        lambda a: None if a is None else a.astype(np.float32))
    got = _run(cfg, transposed, impl, cast(x), cast(w), cast(b), noncontig=True)
    if dtype == np.float64:
        _compare(got, want, 1e-10)
        return
    for name, a, r in zip(("y", "dx", "dw", "db"), got, want):
        if r is None:
            assert a is None
            continue
        assert a.dtype == np.float32 and a.shape == r.shape, name
        err = np.abs(a - r)
        assert (err <= 1e-4 * (1 + np.abs(r))).all(), f"{name}: {err.max():.3g}"


@pytest.mark.parametrize("impl", IMPLS)
def test_impl_float32_and_pointwise(impl):
    """float32 (llm.c tolerance tol + |ref|·eps) on a 1×1 conv (native: the GEMM-only path)
    and a 3×3 one with more channels than the triton block."""
    rng = np.random.default_rng(7)
    for k, pad, c in [((1, 1), 0, 20), ((3, 3), 1, 18)]:
        case = dict(n=2, c_in=c, c_out=c + 3, h=5, w=6, k=k, stride=(1, 1), padding=(pad, pad),
                    dilation=(1, 1), groups=1, bias=True)
        x, w, b = _arrays(case, False, int(rng.integers(100)))
        want = _run(case, False, "reference", x, w, b)
        got = _run(case, False, impl, *(a.astype(np.float32) for a in (x, w, b)))
        for a, r in zip(got, want):
            assert a.dtype == np.float32
            err = np.abs(a - r)
            assert (err <= 1e-4 * (1 + np.abs(r))).all(), err.max()


@pytest.mark.parametrize("per_chunk", [1, 2])
def test_native_chunks(monkeypatch, per_chunk):
    """The native version walks the batch in chunks (ragged last one here: 3 images)."""
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    from minigen.native import conv2d as nat
    for transposed, stride, pad in [(False, (1, 1), (1, 1)), (False, (2, 1), (1, 0)),
                                    (True, (2, 2), (1, 0))]:
        case = dict(n=3, c_in=4, c_out=6, h=6, w=5, k=(3, 2), stride=stride, padding=pad,
                    output_padding=(1, 0), dilation=(1, 1), groups=2, bias=True)
        x, w, b = _arrays(case, transposed, 9)
        want = _run(case, transposed, "reference", x, w, b)
        monkeypatch.setattr(nat, "chunk_images", lambda n, k, p, itemsize: per_chunk)
        monkeypatch.setattr(nat, "USE_DIRECT", False)
        _compare(_run(case, transposed, "native", x, w, b), want, 1e-10)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit_gemm", "im2col_chunks"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_native_implicit_gemm_and_chunks(monkeypatch, implicit, transposed):
    """Both forward-product paths of the native version (the implicit GEMM that packs from the
    image, and im2col chunks), whatever the image size threshold between them."""
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    from minigen.native import conv2d as nat
    monkeypatch.setattr(nat, "IMPLICIT_GEMM_MIN_PIXELS", 0 if implicit else 10**9)
    monkeypatch.setattr(nat, "USE_DIRECT", False)   # stride 1 on the GEMM paths too

    @settings(max_examples=25, deadline=None)
    @given(case=conv_cases(transposed=transposed, small=False), seed=st.integers(0, 3),
           noncontig=st.booleans())
    def check(case, seed, noncontig):
        x, w, b = _arrays(case, transposed, seed)
        want = _run(case, transposed, "reference", x, w, b)
        _compare(_run(case, transposed, "native", x, w, b, noncontig=noncontig), want, 1e-10)

    check()


def test_native_forward_gemm_errors():
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    from minigen import _native
    C = _native.module()
    x = np.zeros((2, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="y must have shape"):
        C.conv2d_forward_gemm(x, w, np.zeros((2, 4, 5, 5), np.float32), 3, 3, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        C.conv2d_forward_gemm(x, w[:, :2], np.zeros((2, 4, 3, 3), np.float32), 3, 3, 1, 1, 0, 0,
                              1, 1)
    with pytest.raises(ValueError, match="share a dtype"):
        C.conv2d_forward_gemm(x, w.astype(np.float64), np.zeros((2, 4, 3, 3), np.float32), 3,
                              3, 1, 1, 0, 0, 1, 1)


def _im2col_definition(x, kh, kw, stride, padding, dilation):
    """X_col[n, (c, i, j), (a, b)] = x_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w], by loops."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            cols[:, :, i, j] = xp[:, :, r0:r0 + stride[0] * (ho - 1) + 1:stride[0],
                                  c0:c0 + stride[1] * (wo - 1) + 1:stride[1]]
    return cols.reshape(n, c * kh * kw, ho * wo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [  # (n, c, h, w), (kh, kw), stride, padding, dilation
    ((2, 3, 5, 9), (3, 3), (2, 2), (1, 1), (1, 1)),     # the downsampling conv, odd width
    ((3, 2, 4, 7), (2, 3), (1, 3), (0, 2), (1, 2)),     # padding > stride: phase of a negative
    ((1, 2, 3, 2), (1, 2), (2, 4), (1, 1), (1, 1)),     # width < stride: empty phases
    ((2, 1, 6, 11), (3, 4), (3, 4), (2, 3), (2, 1)),
    ((2, 2, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1)),     # stride 1 (no phase split)
])
def test_native_im2col_col2im_definition(geom, dtype):
    """The C++ im2col against its definition, both column layouts (batched, and wide: one GEMM
    per chunk), and col2im as its adjoint: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ with a random c
    (width stride > 1 goes through the phase split of the plane rows)."""
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    C = mg._native.module()
    shape, (kh, kw), stride, padding, dilation = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    want = _im2col_definition(x, kh, kw, stride, padding, dilation)
    n, k, p = want.shape
    args = (kh, kw, *stride, *padding, *dilation)
    batched = np.full((n, k, p), np.nan, dtype)
    C.conv2d_im2col(x, batched, *args)
    np.testing.assert_array_equal(batched, want)
    wide = np.full((k, n * p), np.nan, dtype)
    C.conv2d_im2col(x, wide, *args)
    np.testing.assert_array_equal(wide.reshape(k, n, p).transpose(1, 0, 2), want)
    cols = rng.standard_normal((n, k, p)).astype(dtype)
    for layout in (cols, np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(k, n * p)):
        back = np.full(shape, np.nan, dtype)
        C.conv2d_col2im(layout, back, *args)
        lhs, rhs = np.vdot(want.astype(np.float64), cols), np.vdot(x.astype(np.float64), back)
        assert abs(lhs - rhs) <= (1e-4 if dtype == np.float32 else 1e-10) * (1 + abs(lhs))


@pytest.mark.parametrize("per_chunk", [1, 2, 5])
def test_native_wide_strides_in_chunks(monkeypatch, per_chunk):
    """Width strides 3 and 4 (phase split with ragged phases) with groups and dilation,
    forward and backward, over ragged multi-image chunks; float64 against the reference."""
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    from minigen.native import conv2d as nat
    for transposed, stride, pad, dil in [(False, (2, 3), (1, 2), (1, 2)),
                                         (False, (1, 4), (2, 1), (2, 1)),
                                         (True, (2, 3), (1, 1), (1, 2))]:
        case = dict(n=5, c_in=4, c_out=6, h=7, w=11, k=(3, 3), stride=stride, padding=pad,
                    output_padding=(1, 1), dilation=dil, groups=2, bias=True)
        x, w, b = _arrays(case, transposed, 11)
        want = _run(case, transposed, "reference", x, w, b)
        with monkeypatch.context() as mp:
            mp.setattr(nat, "chunk_images", lambda n, k, p, itemsize: per_chunk)
            _compare(_run(case, transposed, "native", x, w, b), want, 1e-10)


def test_native_kernel_argument_errors():
    if "native" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("native implementation unavailable here")
    C = mg._native.module()
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="cols must have shape"):
        C.conv2d_im2col(x, np.zeros((2, 27, 24), np.float32), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="same dtype"):
        C.conv2d_im2col(x, np.zeros((2, 27, 25)), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="contiguous"):
        C.conv2d_col2im(np.zeros((27, 50), np.float32), x[:, :, :, ::-1], 3, 3, 1, 1, 1, 1, 1,
                        1)


def test_triton_wgrad_split_k():
    """The Triton weight gradient splits its long reduction (N·H_out·W_out) over programs and
    adds the partial sums; a ragged split must give the same result."""
    if "triton" not in [p.values[0] for p in IMPLS if not p.marks]:
        pytest.skip("triton implementation unavailable here")
    from minigen.kernels import conv2d as tri
    from minigen.reference import conv2d as ref
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 7, 6))
    g = rng.standard_normal((3, 6, 4, 6))
    want = ref.conv2d_weight_grad(g, x, (3, 2), (2, 1), (1, 1), (1, 2), 2)
    for split in (1, 3, 5):
        got = tri._wgrad(g, x, (3, 2), (2, 1), (1, 1), (1, 2), 2, split=split)
        np.testing.assert_allclose(got, want, atol=1e-10, rtol=1e-10)


# ------------------------------------------------------------------------- 3. PyTorch
@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_against_torch(transposed, data):
    torch = pytest.importorskip("torch")
    case = data.draw(conv_cases(transposed=transposed))
    x, w, b = _arrays(case, transposed, 2)
    got = _run(case, transposed, dispatch.active("conv2d"), x, w, b)
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    if transposed:
        y = torch.nn.functional.conv_transpose2d(tx, tw, tb, case["stride"], case["padding"],
                                                 case["output_padding"], case["groups"],
                                                 case["dilation"])
    else:
        y = torch.nn.functional.conv2d(tx, tw, tb, case["stride"], case["padding"],
                                       case["dilation"], case["groups"])
    g = np.random.default_rng(1).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(g))
    want = (y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(),
            None if tb is None else tb.grad.numpy())
    _compare(got, want, 1e-10)


# --------------------------------------------------------------------------- 4. modules
def test_conv2d_module():
    m = mg.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert tuple(m.weight.shape) == (6, 2, 3, 3) and tuple(m.bias.shape) == (6,)
    assert list(m.state_dict()) == ["weight", "bias"]
    bound = 1 / np.sqrt(2 * 9)   # kaiming_uniform(a=√5): U(±1/√fan_in); bias the same
    assert np.abs(m.weight.detach().numpy()).max() <= bound
    assert np.abs(m.bias.detach().numpy()).max() <= bound
    y = m(mg.randn(2, 4, 9, 8))
    assert tuple(y.shape) == (2, 6, 5, 4)
    assert tuple(m(mg.randn(4, 9, 8)).shape) == (6, 5, 4)   # unbatched
    y.sum().backward()
    assert m.weight.grad is not None and m.bias.grad is not None
    m2 = mg.nn.Conv2d(3, 5, (2, 3), padding="same", bias=False)
    assert m2.bias is None and list(m2.state_dict()) == ["weight"]
    assert tuple(m2(mg.randn(1, 3, 7, 6)).shape) == (1, 5, 7, 6)


def test_conv2d_module_padding_modes():
    torch = pytest.importorskip("torch")
    for mode in ("reflect", "replicate", "circular"):
        m = mg.nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
        t = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode).double()
        t.load_state_dict({k: torch.tensor(v.detach().numpy(), dtype=torch.float64)
                           for k, v in m.state_dict().items()})
        x = np.random.default_rng(0).standard_normal((1, 2, 5, 4))
        want = t(torch.tensor(x)).detach().numpy()
        got = m(mg.tensor(x, dtype=mg.float32)).detach().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=mode)


def test_conv_transpose2d_module():
    m = mg.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert tuple(m.weight.shape) == (4, 3, 3, 3) and tuple(m.bias.shape) == (6,)
    assert list(m.state_dict()) == ["weight", "bias"]
    bound = 1 / np.sqrt(3 * 9)   # PyTorch computes fan_in from weight.shape[1]·kH·kW
    assert np.abs(m.weight.detach().numpy()).max() <= bound
    y = m(mg.randn(2, 4, 5, 4))
    assert tuple(y.shape) == (2, 6, 10, 8)
    assert tuple(m(mg.randn(2, 4, 5, 4), output_size=(9, 7)).shape) == (2, 6, 9, 7)
    y.mean().backward()
    assert tuple(m.weight.grad.shape) == (4, 3, 3, 3)


# ---------------------------------------------------------------------------- 5. errors
@pytest.mark.parametrize("call, exc, words", [
    (lambda: F.conv2d(mg.randn(2, 3, 5, 5), mg.randn(4, 2, 3, 3)), RuntimeError,
     "has 3 channels"),
    (lambda: F.conv2d(mg.randn(2, 4, 5, 5), mg.randn(3, 2, 3, 3), groups=2), ValueError,
     "divisible by groups"),
    (lambda: F.conv2d(mg.randn(5, 5), mg.randn(3, 1, 3, 3)), RuntimeError, "4-D"),
    (lambda: F.conv2d(mg.randn(1, 1, 5, 5), mg.randn(3, 1, 3)), RuntimeError, "4-D weight"),
    (lambda: F.conv2d(mg.randn(1, 1, 5, 5), mg.randn(1, 1, 3, 3, dtype=mg.float64)),
     TypeError, "same dtype"),
    (lambda: F.conv2d(mg.randn(1, 1, 2, 5), mg.randn(1, 1, 3, 3)), RuntimeError,
     "larger than the padded input"),
    (lambda: F.conv2d(mg.randn(1, 1, 5, 5), mg.randn(1, 1, 3, 3), stride=2, padding="same"),
     ValueError, "strided"),
    (lambda: F.conv2d(mg.randn(1, 1, 5, 5), mg.randn(1, 1, 3, 3), padding="full"),
     ValueError, "padding"),
    (lambda: F.conv2d(mg.randn(1, 1, 5, 5), mg.randn(2, 1, 3, 3), mg.randn(3)), RuntimeError,
     "bias must have shape"),
    (lambda: F.conv_transpose2d(mg.randn(1, 2, 3, 3), mg.randn(3, 1, 3, 3)), RuntimeError,
     "expects 3"),
    (lambda: F.conv_transpose2d(mg.randn(1, 2, 3, 3), mg.randn(2, 1, 3, 3), stride=2,
                                output_padding=2), ValueError, "output_padding"),
    (lambda: F.conv_transpose2d(mg.randn(1, 2, 1, 1), mg.randn(2, 1, 1, 1), padding=1),
     RuntimeError, "not positive"),
    (lambda: mg.nn.Conv2d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    (lambda: mg.nn.Conv2d(2, 4, 3, padding_mode="mirror"), ValueError, "padding_mode"),
])
def test_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


@pytest.mark.parametrize("impl", implementations("conv2d", exclude=("triton",)))
def test_half_precision_runs_in_float32_and_keeps_its_dtype(impl):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    from minigen.reference import conv2d as ref
    want = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None,
                                     (1, 1), (1, 1), (1, 1), 1)
    with dispatch.use(conv2d=impl):
        xt = mg.tensor(x, requires_grad=True)
        wt = mg.tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, padding=1)
        y.sum().backward()
        yt = F.conv_transpose2d(xt, wt.detach().transpose(0, 1).contiguous(), padding=1)
    assert y.dtype == mg.float16 and xt.grad.dtype == mg.float16 and wt.grad.dtype == mg.float16
    assert yt.dtype == mg.float16
    np.testing.assert_allclose(y.detach().numpy().astype(np.float64), want, rtol=2e-2, atol=2e-2)
