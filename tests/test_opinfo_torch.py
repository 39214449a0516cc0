"""minigen against PyTorch on PyTorch's own operator test inputs (the OpInfo sample inputs).

Every OpInfo of ``torch.testing._internal.common_methods_invocations.op_db`` whose name is a
minigen op (``mg.<name>``, ``mg.nn.functional.<name>``, ``mg.linalg.<name>``,
``mg.special.<name>``, a Tensor method or property) runs its float64 samples on the CPU
(int64 where the op takes no float64) through both libraries: forward values must agree (same
shapes and dtype kinds, rtol 1e-7, NaN at the same places) and, for differentiable outputs, the
gradients of every input that requires grad under one random upstream gradient must agree
(``torch.autograd.grad`` against ``minigen.autograd.grad``); random ops (``RANDOM_OPS`` in the
adapter) compare shapes, dtypes and that the gradient exists. Samples PyTorch itself rejects
are not counted.

The options that minigen refuses are in ONE table, ``UNSUPPORTED`` below: for each sample that
uses one, minigen must raise a clear error (TypeError, ValueError, NotImplementedError or
RuntimeError) whose message names the option; a sample of a listed option that minigen now
accepts fails the test too, so the table cannot go stale.

PyTorch is a test-only oracle: the file is skipped without it (and without ``expecttest``,
which PyTorch's test database imports). Each op runs at most ``MAX_SAMPLES`` samples spread over its
list, and beside them up to half as many of its samples with an empty or a 0-d tensor
(``_select``); MINIGEN_OPINFO_SAMPLES=0 lifts the cap.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")
cmi = pytest.importorskip("torch.testing._internal.common_methods_invocations")

import opinfo_adapter as A  # noqa: E402

# 40 samples of each OpInfo (and up to 20 empty / 0-d ones) keep the file under a minute;
# MINIGEN_OPINFO_SAMPLES=0 runs them all
MAX_SAMPLES = int(os.environ.get("MINIGEN_OPINFO_SAMPLES", "40")) or None
_ERRORS = (TypeError, ValueError, NotImplementedError, RuntimeError, AttributeError)


def _kw(name, pred=lambda v: True):
    """The sample passes keyword ``name`` with a value for which ``pred`` holds."""
    return lambda s: name in s.kwargs and pred(s.kwargs[name])


def _arg_or_kw(pos, name, pred):
    def uses(s):
        if name in s.kwargs:
            return pred(s.kwargs[name])
        return len(s.args) > pos and pred(s.args[pos])
    return uses


def _shape(pred):
    return lambda s: isinstance(s.input, torch.Tensor) and pred(tuple(s.input.shape))


def _not_square(s):
    return s.input.shape[-1] != s.input.shape[-2]


def _negative(v):
    return isinstance(v, (int, float)) and v < 0


def _tensordot_broadcast(s):
    a, b = s.input, s.args[0]
    dims = s.kwargs.get("dims", s.args[1] if len(s.args) > 1 else 2)
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = dims
    return any(a.shape[i] != b.shape[j] for i, j in zip(da, db))


def _einsum_repeat(s):
    eq = s.args[0]
    ops = eq.split("->")[0].replace(" ", "").replace("...", "").split(",")
    return any(len(set(t)) != len(t) for t in ops)


# (OpInfo name, option, does the sample use it, text the error must contain, why minigen refuses)
UNSUPPORTED = [
    ("to", "memory_format", _kw("memory_format"), "memory_format",
     "minigen tensors have one memory layout (row-major numpy / CuPy arrays)"),
    *[(name, "memory_format", _kw("memory_format"), "memory_format",
       "minigen tensors have one memory layout")
      for name in ("bool", "double", "float", "half", "int", "long")],
    ("normal:number_mean", "layout", _kw("layout"), "layout",
     "minigen has strided tensors only"),
    ("normal:in_place", "Tensor.normal_", lambda s: True, "normal_",
     "in-place random fills are minigen.nn.init.normal_ / uniform_, not Tensor methods"),
    ("nn.functional.group_norm", "eps < 0", _kw("eps", _negative), "eps",
     "σ² + eps can be negative: the result would be NaN"),
    ("nn.functional.layer_norm", "eps < 0", _arg_or_kw(2, "eps", _negative), "eps",
     "σ² + eps can be negative: the result would be NaN"),
    ("nn.functional.rms_norm", "eps < 0", _arg_or_kw(1, "eps", _negative), "eps",
     "mean(x²) + eps can be negative: the result would be NaN"),
    ("nn.functional.normalize", "p ≤ 0", _arg_or_kw(0, "p", lambda p: p <= 0), "p must be",
     "‖x‖_p is a norm only for p > 0; the zero-safe composition clamps Σ|x|^p at eps^p"),
    ("nn.functional.batch_norm", "1-D input", _shape(lambda sh: len(sh) < 2), "2 dimensions",
     "batch_norm normalizes over the batch per channel: input (N, C, ...) needs a channel dim"),
    ("einsum", "repeated index in one operand", _einsum_repeat, "repeated index",
     "a diagonal inside einsum; take .diagonal() first"),
    ("tensordot", "size-1 contracted dim against size n", _tensordot_broadcast, "does not match",
     "PyTorch broadcasts a size-1 contracted dim; minigen requires equal sizes"),
    ("linalg.lu_factor", "non-square A", _not_square, "square",
     "LU of a rectangular matrix (and its gradient) is not implemented"),
]


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _edge(s):
    """The sample has an empty or a 0-d tensor."""
    return any(t.numel() == 0 or t.ndim == 0
               for t in _tensors([s.input, list(s.args), s.kwargs]))


def _spread(items, n):
    if n is None or len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _select(samples):
    """At most MAX_SAMPLES samples spread over the OpInfo's list, and beside them up to half as
    many of its empty / 0-d ones (spread too), in their order."""
    keep = {id(s) for s in _spread(samples, MAX_SAMPLES)}
    extra = None if MAX_SAMPLES is None else MAX_SAMPLES // 2
    keep |= {id(s) for s in _spread([s for s in samples if _edge(s)], extra)}
    return [s for s in samples if id(s) in keep]


def _key(o):
    return o.name + (":" + o.variant_test_name if o.variant_test_name else "")


def _sample_dtype(o):
    supported = o.supported_dtypes("cpu")
    for dt in (torch.float64, torch.int64):
        if dt in supported:
            return dt
    return None


def _cases():
    cases = []
    for o in cmi.op_db:
        r = A.resolve(o)
        if r is None or _sample_dtype(o) is None:
            continue
        cases.append(o)
    return cases


CASES = _cases()


def _unsupported(key, sample):
    for name, option, uses, text, _ in UNSUPPORTED:
        if name == key and uses(sample):
            return option, text
    return None


def run_opinfo(o):
    """(compared, agreed, refused-as-documented, failures) over the OpInfo's samples."""
    dt = _sample_dtype(o)
    call = A.minigen_call(o, A.resolve(o))
    key = _key(o)
    grad = o.supports_autograd and dt.is_floating_point
    samples = _select(list(o.sample_inputs("cpu", dt, requires_grad=grad)))
    rng = np.random.default_rng(0)
    compared = agreed = refused = 0
    failures = []
    for i, s in enumerate(samples):
        where = f"{key} sample {i} ({_describe(s)})"
        un = _unsupported(key, s)
        if un is not None:
            option, text = un
            try:
                A.run_torch(o, s)
            except A.TorchRefuses:
                continue
            compared += 1
            try:
                A.run_minigen(o, s, call)
            except _ERRORS as exc:
                if text.lower() in str(exc).lower():
                    refused += 1
                else:
                    failures.append(f"{where}: unsupported option {option!r} raised "
                                    f"{type(exc).__name__} without naming it: {exc}")
            else:
                failures.append(f"{where}: {option!r} is in UNSUPPORTED but minigen accepted "
                                "it: drop the entry")
            continue
        try:
            msg = A.run_sample(o, s, call, rng)
        except A.TorchRefuses:
            continue
        except Exception as exc:  # noqa: BLE001 - any crash of minigen's is a finding
            msg = f"minigen raised {type(exc).__name__}: {exc}"
        compared += 1
        if msg is None:
            agreed += 1
        else:
            failures.append(f"{where}: {msg}")
    return compared, agreed, refused, failures


def _describe(s):
    def d(a):
        if isinstance(a, torch.Tensor):
            return f"{tuple(a.shape)}:{str(a.dtype).replace('torch.', '')}"
        if isinstance(a, (list, tuple)):
            return "[" + ", ".join(d(x) for x in a) + "]"
        return repr(a)
    parts = [d(s.input)] + [d(a) for a in s.args] + [f"{k}={d(v)}" for k, v in s.kwargs.items()]
    return ", ".join(parts)[:200]


@pytest.mark.parametrize("opinfo", CASES, ids=_key)
def test_opinfo_agrees_with_torch(opinfo):
    compared, agreed, refused, failures = run_opinfo(opinfo)
    assert not failures, f"{len(failures)} of {compared} samples:\n" + "\n".join(failures[:8])
    assert agreed + refused == compared


def test_opinfo_coverage():
    # the adapter must keep finding minigen's ops: a resolver that quietly found nothing would
    # make every test above pass vacuously
    names = {o.name for o in CASES}
    assert len(CASES) >= 300 and len(names) >= 270
    for must in ("add", "matmul", "softmax", "linalg.det", "nn.functional.conv2d", "sort",
                 "special.ndtr", "__getitem__", "T"):
        assert must in names, must


def test_unsupported_table_entries_name_real_opinfos():
    keys = {_key(o) for o in CASES}
    for name, option, *_ in UNSUPPORTED:
        assert name in keys, f"UNSUPPORTED names {name!r} ({option}), which is not an OpInfo here"
