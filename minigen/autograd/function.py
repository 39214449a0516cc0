"""``Function``: one differentiable primitive, its forward and backward side by side.

A primitive subclasses ``Function`` and writes two methods against the array module ``xp``
(numpy on cpu, cupy on cuda), never against ``Tensor``:

    class Mul(Function):
        def forward(self, a, b):          # arrays in, array (or tuple of arrays) out
            self.a, self.b = a, b         # keep what backward needs on ``self``
            return a * b
        def backward(self, grad):         # d loss / d out in, one gradient per forward arg out
            return grad * self.b, grad * self.a

``Mul.apply(x, y)`` unwraps Tensors, runs ``forward``, wraps the result, and, when gradients
are being recorded and some input requires them, links the node into the graph. ``self`` is the
node: it holds the saved arrays, ``needs_input_grad`` (one bool per positional argument, so a
backward can skip gradients nobody wants) and the edges to the inputs' nodes.

Saved-tensor checks: a node remembers the version counters of the inputs it saved
(``saves_inputs``; all tensor inputs by default, none when a backward needs no input values,
or a tuple of argument positions) and of its output (``saves_output``), and backward raises if
any of them was modified in place since.
"""
from __future__ import annotations

from .grad_mode import STATE

_TENSOR = [None]  # minigen.tensor.Tensor, filled in by tensor.py (it imports this module)
try:
    from ..dtypes import bfloat16 as _BFLOAT16
except ImportError:  # pragma: no cover
    _BFLOAT16 = None


class Function:
    saves_inputs = True     # True (all tensor args), False, or a tuple of arg positions
    saves_output = False    # the output's array is kept (exp, sigmoid, tanh, ...)
    differentiable = True   # False for comparisons, argmax, ...

    # Set by apply when the node is recorded:
    #   needs_input_grad: tuple[bool] per positional arg
    #   edges: per positional arg None | leaf Tensor | (node, output_index)
    #   n_outputs, _versions, _freed, _retained

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run the primitive on tensors (python values pass through); record it if needed.

        This is the hot path of every op: keep it free of work the common case doesn't need.
        """
        Tensor = _TENSOR[0]
        ctx = object.__new__(cls)
        raw = []
        device = None
        any_grad = False
        for a in args:
            if isinstance(a, Tensor):
                if device is None:
                    device = a._device
                elif a._device is not device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, "
                        f"got {device} and {a._device}")
                raw.append(a.data)
                if a.requires_grad:
                    any_grad = True
            else:
                raw.append(a)
        if any_grad and STATE.grad_enabled and cls.differentiable:
            return _apply_recorded(cls, ctx, args, raw, device, kwargs)
        ctx.needs_input_grad = ()
        out = ctx.forward(*raw, **kwargs)
        if STATE.anomaly:
            _check_finite(cls.__name__, "forward output", out)
        wrap = Tensor._wrap
        if type(out) is tuple:
            return tuple(wrap(o, device) for o in out)
        return wrap(out, device)

    # ----------------------------------------------------------------- engine helpers
    def _check_versions(self):
        for vc, seen, pos in self._versions:
            if vc[0] != seen:
                what = "its output" if pos < 0 else f"input {pos}"
                raise RuntimeError(
                    f"one of the tensors saved for backward by {self.name} ({what}) was modified "
                    f"by an in-place operation: it is at version {vc[0]}, expected {seen}. "
                    "Clone it before the in-place op, or do the in-place op before using it.")

    def _release(self):
        """Free saved arrays after backward (retain_graph=False)."""
        edges, n = self.edges, self.n_outputs
        self.__dict__.clear()
        self.edges, self.n_outputs, self._freed = edges, n, True


def _check_finite(op: str, what: str, arrays):
    from ..backend import xp_of

    if type(arrays) is not tuple:
        arrays = (arrays,)
    for a in arrays:
        if a is None or a.dtype.kind not in "fc":
            continue
        xp = xp_of(a)
        if not bool(xp.isfinite(a).all()):
            kind = "NaN" if bool(xp.isnan(a).any()) else "inf"
            raise RuntimeError(f"anomaly detected: {op} produced {kind} in its {what}")


def _apply_recorded(cls, ctx, args, raw, device, kwargs):
    """apply() when the node joins the graph: edges to the inputs, saved-tensor versions.

    One pass over the arguments builds ``needs_input_grad``, the edges and the version
    snapshot (this runs once per recorded op: it is as hot as apply itself).
    """
    Tensor = _TENSOR[0]
    n = len(args)
    needs = [False] * n
    edges = [None] * n
    versions = []
    saved = cls.saves_inputs
    i = 0
    for a in args:
        if isinstance(a, Tensor):
            if a.requires_grad:
                needs[i] = True
                edges[i] = a if a._ctx is None else (a._ctx, a._idx)
            if saved is True or (saved and i in saved):
                versions.append((a._vc, a._vc[0], i))
        i += 1
    ctx.needs_input_grad = tuple(needs)
    out = ctx.forward(*raw, **kwargs)
    if STATE.anomaly:
        _check_finite(cls.__name__, "forward output", out)
    wrap = Tensor._wrap
    multi = type(out) is tuple
    outs = tuple(wrap(o, device) for o in out) if multi else (wrap(out, device),)
    ctx.edges = edges
    ctx.n_outputs = len(outs)
    idx = 0
    for t in outs:
        dt = t.data.dtype
        if dt.kind == "f" or dt is _BFLOAT16:  # only floating outputs carry gradients
            t.requires_grad = True
            t._ctx = ctx
            t._idx = idx
        idx += 1
    if cls.saves_output:
        versions.append((outs[0]._vc, 0, -1))
    ctx._versions = versions
    return outs if multi else outs[0]
