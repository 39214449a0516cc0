"""One helper checks any op (the pattern of tinygrad's helper_test_op):

1. forward in float64 against the numpy reference, tight tolerance;
2. the same with every float input handed in as a non-contiguous view;
3. forward in float32 against the reference with llm.c's tolerance ``tol + |ref|·eps``,
   tol = eps = ``eps32`` (2e-5 by default: a few float32 ulps of accumulated rounding, ~170 ulp
   at 1.0; every op in the suite holds it);
4. backward against float64 central differences (``minigen.autograd.gradcheck``), also
   through non-contiguous views.

``device`` runs the same checks on "cuda" (tests marked ``gpu`` pass it).
"""
from __future__ import annotations

import numpy as np

import minigen as mg
from minigen.autograd import gradcheck


def _noncontig(arr: np.ndarray, requires_grad=False, device="cpu"):
    """A leaf holding ``arr``'s values and a non-contiguous view of it with arr's shape.

    Returns (leaf, make_view) where make_view(leaf) gives the view inside the checked fn.
    """
    if arr.ndim >= 2:
        leaf = mg.tensor(np.ascontiguousarray(np.swapaxes(arr, -1, -2)), device=device,
                         requires_grad=requires_grad)
        return leaf, lambda t: t.transpose(-1, -2)
    if arr.ndim == 1:
        big = np.zeros(2 * arr.shape[0], dtype=arr.dtype)
        big[::2] = arr
        leaf = mg.tensor(big, device=device, requires_grad=requires_grad)
        return leaf, lambda t: t[::2]
    leaf = mg.tensor(arr, device=device, requires_grad=requires_grad)
    return leaf, lambda t: t


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _to_np(t):
    return np.asarray(t.detach().cpu().data if hasattr(t, "detach") else t)


def check_op(fn, ref, arrays, *, grad=True, noncontig=True, float32=True, atol=1e-7,
             rtol=1e-7, grad_atol=1e-6, grad_rtol=1e-5, eps32=2e-5, device="cpu",
             grad_inputs=None):
    """``fn(*tensors)`` (minigen) must match ``ref(*arrays)`` (numpy); float arrays should be
    float64. ``grad_inputs``: indices of inputs to differentiate (default: every float input)."""
    arrays = [np.asarray(a) for a in arrays]
    floats = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    if grad_inputs is None:
        grad_inputs = floats
    refs = [np.asarray(r) for r in _outputs(ref(*arrays))]

    def compare(outs, tol_a, tol_r, what):
        outs = _outputs(outs)
        assert len(outs) == len(refs), f"{what}: {len(outs)} outputs, reference has {len(refs)}"
        for o, r in zip(outs, refs):
            got = _to_np(o)
            assert got.shape == r.shape, f"{what}: shape {got.shape} != reference {r.shape}"
            if r.dtype.kind in "biu":
                np.testing.assert_array_equal(got, r, err_msg=what)
            else:
                np.testing.assert_allclose(got.astype(np.float64), r, atol=tol_a, rtol=tol_r,
                                           err_msg=what)

    # 1. float64 forward
    ts = [mg.tensor(a, device=device) for a in arrays]
    compare(fn(*ts), atol, rtol, "float64 forward")

    # 2. non-contiguous views
    if noncontig:
        pairs = [_noncontig(a, device=device) if i in floats else
                 (mg.tensor(a, device=device), lambda t: t) for i, a in enumerate(arrays)]
        views = [mk(leaf) for leaf, mk in pairs]
        compare(fn(*views), atol, rtol, "non-contiguous forward")

    # 3. float32 forward: tol + |ref| * eps
    if float32 and floats:
        ts32 = [mg.tensor(a.astype(np.float32) if a.dtype.kind == "f" else a, device=device)
                for a in arrays]
        outs = _outputs(fn(*ts32))
        for o, r in zip(outs, refs):
            got = _to_np(o)
            if r.dtype.kind == "f":
                assert got.dtype == np.float32, f"float32 inputs gave {got.dtype} output"
                err = np.abs(got.astype(np.float64) - r)
                bound = eps32 * (1 + np.abs(r))
                assert (err <= bound).all(), f"float32 forward: max error {err.max():.3g}"

    # 4. gradients against float64 central differences
    if grad and grad_inputs:
        leaves = [mg.tensor(a, device=device, requires_grad=(i in grad_inputs))
                  for i, a in enumerate(arrays)]
        gradcheck(fn, leaves, atol=grad_atol, rtol=grad_rtol)
        if noncontig:
            pairs = [_noncontig(a, requires_grad=True, device=device) if i in grad_inputs else
                     (mg.tensor(a, device=device), lambda t: t) for i, a in enumerate(arrays)]
            leaves = [leaf for leaf, _ in pairs]
            makers = [mk for _, mk in pairs]
            gradcheck(lambda *ls: fn(*[mk(t) for mk, t in zip(makers, ls)]), leaves,
                      atol=grad_atol, rtol=grad_rtol)
