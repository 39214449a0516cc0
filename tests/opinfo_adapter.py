"""Run one PyTorch OpInfo sample through PyTorch and through minigen, and compare.

A test-only helper of ``test_opinfo_torch.py`` (it imports torch; minigen never does).

``resolve(opinfo)`` finds the minigen callable that shares the OpInfo's name (``mg.<name>``,
``mg.nn.functional.<name>``, ``mg.linalg.<name>``, ``mg.special.<name>`` or a Tensor method /
property); ``compare(opinfo, sample, call)`` converts the sample's tensors (and nested lists,
tuples and dicts of them, dtypes, sizes, devices) to minigen, runs both, and returns ``None``
when forward values agree (same shapes, dtype kinds, values to rtol 1e-7 and the same NaN
positions) and, for differentiable outputs, the input gradients under one random upstream
gradient agree too; otherwise a string that says what differs.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

import minigen as mg
import minigen.nn.functional as F

RTOL, ATOL = 1e-7, 1e-9

# Ops whose outputs are random (or uninitialised memory): the values cannot agree, so only the
# structure (shapes, dtypes) and the gradient's existence are compared.
RANDOM_OPS = {"bernoulli", "multinomial", "normal", "randn", "randn_like", "rand_like",
              "randint", "randint_like", "empty", "empty_like", "new_empty",
              "nn.functional.dropout"}


class Unsupported(Exception):
    """An argument this adapter cannot express in minigen (e.g. a complex tensor)."""


# ------------------------------------------------------------------------------ resolution
def _torch_method_lambda(op):
    """The source of an OpInfo's lambda ``op`` (to see ``x.name(...)``, a method call)."""
    try:
        src = inspect.getsource(op)
    except (OSError, TypeError):
        return None
    return src


def resolve(opinfo):
    """(kind, minigen callable or attribute name) for an OpInfo, or None when minigen lacks it."""
    name = opinfo.name
    for prefix, ns in (("nn.functional.", F), ("linalg.", getattr(mg, "linalg", None)),
                       ("special.", getattr(mg, "special", None))):
        if name.startswith(prefix):
            fn = getattr(ns, name[len(prefix):], None)
            return ("fn", fn) if fn is not None else None
    if "." in name:
        return None
    if name.startswith("__"):  # dunder: a Tensor method
        return ("method", name) if hasattr(mg.Tensor, name) else None
    attr = inspect.getattr_static(mg.Tensor, name, None)
    if isinstance(attr, property):
        return ("property", name)
    fn = getattr(mg, name, None)
    if fn is not None and callable(fn) and not isinstance(fn, type):
        return ("fn", fn)
    if attr is not None:
        return ("method", name)
    return None


# Calls of OpInfos whose ``op`` is a lambda with another argument order than torch.<name>.
def _special_calls():
    return {
        "einsum": lambda tensors, eq: mg.einsum(eq, *tensors),
        "where": lambda self, cond, other, **kw: mg.where(cond, self, other, **kw),
        "nn.functional.embedding": lambda weight, idx, **kw: F.embedding(idx, weight, **kw),
        "zero_": lambda x: x.clone().zero_(),
        "item": lambda x: x.item(),
        "normal:number_mean": lambda std, mean, *a, **kw: mg.normal(mean, std, *a, **kw),
        "normal:in_place": lambda x, *a, **kw: x.normal_(*a, **kw),
    }


def minigen_call(opinfo, resolved):
    """A function f(input, *args, **kwargs) that runs the minigen op the way opinfo.op runs
    torch's."""
    key = opinfo.name + (":" + opinfo.variant_test_name if opinfo.variant_test_name else "")
    special = _special_calls()
    if key in special:
        return special[key]
    if opinfo.name in special:
        return special[opinfo.name]
    kind, target = resolved
    if kind == "property":
        return lambda x: getattr(x, target)
    src = _torch_method_lambda(opinfo.op) if getattr(opinfo.op, "__name__", "") == "<lambda>" \
        else None
    method_form = kind == "method" or (src is not None and "x." + opinfo.name + "(" in src) \
        or (src is not None and "self." + opinfo.name + "(" in src)
    if method_form:
        name = opinfo.name

        def call(x, *args, **kwargs):
            return getattr(x, name)(*args, **kwargs)
        return call
    return target


# ------------------------------------------------------------------------------ conversion
_DTYPES = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
           torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
           torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}


def to_minigen(obj, leaves):
    """minigen twin of a (nested) sample argument; appends (torch_leaf, mg_leaf) pairs of the
    tensors that require grad to ``leaves``."""
    if isinstance(obj, torch.Tensor):
        if obj.is_complex() or obj.dtype not in _DTYPES:
            raise Unsupported(f"tensor of dtype {obj.dtype}")
        arr = obj.detach().cpu().numpy().copy()
        t = mg.tensor(arr, dtype=getattr(mg, _DTYPES[obj.dtype]))
        if obj.requires_grad:
            t.requires_grad_(True)
            leaves.append((obj, t))
        return t
    if isinstance(obj, torch.dtype):
        if obj not in _DTYPES:
            raise Unsupported(f"dtype {obj}")
        return getattr(mg, _DTYPES[obj])
    if isinstance(obj, torch.Size):
        return tuple(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, (torch.memory_format, torch.layout)):
        # no minigen twin: handed on by name, for minigen to refuse (see the table of the test)
        return str(obj).replace("torch.", "")
    if isinstance(obj, torch.Generator):
        raise Unsupported("a torch.Generator")
    if isinstance(obj, tuple):
        return tuple(to_minigen(o, leaves) for o in obj)
    if isinstance(obj, list):
        return [to_minigen(o, leaves) for o in obj]
    if isinstance(obj, dict):
        return {k: to_minigen(v, leaves) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(to_minigen(obj.start, leaves), to_minigen(obj.stop, leaves),
                     to_minigen(obj.step, leaves))
    return obj


def _flatten(out):
    if isinstance(out, (tuple, list)):
        flat = []
        for o in out:
            flat.extend(_flatten(o))
        return flat
    return [out]


def _kind(dtype_name):
    if dtype_name == "bool":
        return "b"
    if dtype_name.startswith(("int", "uint")):
        return "i"
    return "f"


def _torch_info(t):
    return _kind(str(t.dtype).split(".")[1]), t.detach().cpu().numpy()


def _mg_info(t):
    return _kind(str(np.asarray(t.detach().data).dtype)), np.asarray(t.detach().data)


def _compare_values(where, a, b, values=True):
    """None or a message: a torch result, b the minigen one."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, mg.Tensor):
            return f"{where}: minigen gave {type(b).__name__}, torch a tensor"
        (ka, na), (kb, nb) = _torch_info(a), _mg_info(b)
        if na.shape != nb.shape:
            return f"{where}: shape {nb.shape}, torch {na.shape}"
        if ka != kb:
            return f"{where}: dtype {nb.dtype}, torch {a.dtype}"
        if not values:
            return None
        return _close(where, na, nb)
    if isinstance(a, (bool, int, float)) and not isinstance(a, torch.Tensor):
        bv = b.item() if isinstance(b, mg.Tensor) else b
        if isinstance(bv, (tuple, list)) or bv is None:
            return f"{where}: minigen gave {bv!r}, torch {a!r}"
        if not values:
            return None
        return _close(where, np.asarray(a, dtype=np.float64), np.asarray(bv, dtype=np.float64))
    if a is None:
        return None if b is None else f"{where}: minigen gave {type(b).__name__}, torch None"
    if isinstance(a, (torch.dtype, str)):
        return None
    return f"{where}: cannot compare a {type(a).__name__}"


def _close(where, na, nb):
    if na.dtype.kind in "fc" or nb.dtype.kind in "fc":
        na, nb = na.astype(np.float64), nb.astype(np.float64)
        if not np.array_equal(np.isnan(na), np.isnan(nb)):
            return f"{where}: NaN at other places ({np.isnan(nb).sum()} vs {np.isnan(na).sum()})"
        ok = np.isclose(nb, na, rtol=RTOL, atol=ATOL, equal_nan=True)
        if not ok.all():
            i = np.argwhere(~ok)[0]
            i = tuple(int(j) for j in i)
            err = np.max(np.abs(np.where(ok, 0, nb - na)))
            return (f"{where}: {int((~ok).sum())}/{ok.size} values differ (max |err| {err:.3g};"
                    f" at {i}: minigen {nb[i]!r}, torch {na[i]!r})")
        return None
    if not np.array_equal(na, nb):
        return f"{where}: values differ (minigen {nb.ravel()[:6]}, torch {na.ravel()[:6]})"
    return None


def _hermitian_wrapped(opinfo, fn, is_torch):
    """OpInfos of ops that read one triangle differentiate through op(A + Aᴴ): the same for
    minigen (real inputs: Aᴴ = Aᵀ)."""
    wrapper = getattr(opinfo, "gradcheck_wrapper", None)
    if getattr(wrapper, "__name__", "") != "gradcheck_wrapper_hermitian_input":
        return fn
    if is_torch:
        return lambda x, *a, **k: fn(x + x.mH, *a, **k)
    return lambda x, *a, **k: fn(x + x.mT, *a, **k)


def is_random(opinfo, sample):
    return opinfo.name in RANDOM_OPS or (
        opinfo.name == "nn.functional.scaled_dot_product_attention"
        and sample.kwargs.get("dropout_p", 0.0) > 0)


class TorchRefuses(Exception):
    """The sample is one PyTorch itself rejects: no reference to compare with."""


def run_torch(opinfo, sample):
    fn = _hermitian_wrapped(opinfo, opinfo.op, True)
    try:
        return fn(sample.input, *sample.args, **sample.kwargs)
    except Exception as exc:
        raise TorchRefuses(f"{type(exc).__name__}: {exc}") from exc


def run_minigen(opinfo, sample, call, leaves=None):
    leaves = [] if leaves is None else leaves
    m_in = to_minigen(sample.input, leaves)
    m_args = to_minigen(tuple(sample.args), leaves)
    m_kwargs = to_minigen(dict(sample.kwargs), leaves)
    return _hermitian_wrapped(opinfo, call, False)(m_in, *m_args, **m_kwargs)


def run_sample(opinfo, sample, call, rng):
    """None when torch and minigen agree on this sample, else a message. Raises TorchRefuses
    for a sample that PyTorch rejects."""
    leaves = []
    random = is_random(opinfo, sample)
    t_out = run_torch(opinfo, sample)
    m_out = run_minigen(opinfo, sample, call, leaves)
    proc = sample.output_process_fn_grad
    t_out = proc(t_out)
    m_out = proc(m_out)
    t_flat, m_flat = _flatten(t_out), _flatten(m_out)
    if len(t_flat) != len(m_flat):
        return f"minigen gave {len(m_flat)} outputs, torch {len(t_flat)}"
    for i, (a, b) in enumerate(zip(t_flat, m_flat)):
        msg = _compare_values(f"output {i}", a, b, values=not random)
        if msg:
            return msg
    # gradients under one random upstream gradient
    t_leaves = [t for t, _ in leaves if t.is_floating_point()]
    m_leaves = [m for t, m in leaves if t.is_floating_point()]
    if not t_leaves:
        return None
    pairs = [(a, b) for a, b in zip(t_flat, m_flat)
             if isinstance(a, torch.Tensor) and a.requires_grad]
    if not pairs:
        return None
    gouts = [rng.standard_normal(tuple(a.shape)) for a, _ in pairs]
    t_grads = torch.autograd.grad([a for a, _ in pairs], t_leaves,
                                  [torch.tensor(g, dtype=a.dtype) for g, (a, _) in
                                   zip(gouts, pairs)], allow_unused=True)
    # a minigen output outside the graph contributes no gradient: where torch's gradient through
    # it is not zero too, that is a lost gradient, and the comparison below says so
    m_pairs = [(b, g) for (_, b), g in zip(pairs, gouts)
               if isinstance(b, mg.Tensor) and b.requires_grad]
    lost = len(m_pairs) < len(pairs)
    if m_pairs:
        m_grads = mg.autograd.grad([b for b, _ in m_pairs], m_leaves,
                                   [mg.tensor(g, dtype=b.dtype) for b, g in m_pairs],
                                   allow_unused=True)
    else:
        m_grads = [None] * len(m_leaves)
    for j, (tg, mgd, leaf) in enumerate(zip(t_grads, m_grads, t_leaves)):
        tn = np.zeros(tuple(leaf.shape)) if tg is None else tg.detach().numpy()
        mn = np.zeros(tuple(leaf.shape)) if mgd is None else np.asarray(mgd.data)
        if tn.shape != mn.shape:
            return f"gradient {j}: shape {mn.shape}, torch {tn.shape}"
        if random:  # another random draw: only the gradient's existence and shape
            if lost and np.any(tn != 0):
                return f"gradient {j}: lost (an output of minigen's is outside the graph)"
            continue
        msg = _close(f"gradient {j}", tn, mn)
        if msg:
            return msg + (" (an output of minigen's is outside the graph)" if lost else "")
    return None
