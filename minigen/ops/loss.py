"""Loss functions with PyTorch's names, arguments and reductions.

Every loss takes ``reduction``: "none" (the per-element losses), "sum", or "mean" (the sum
divided by the number of elements; nll_loss / cross_entropy with class indices divide by the
summed class weights of the targets that are not ignored, as PyTorch).

The pointwise losses are fused primitives whose backward is the derivative written next to
the forward; the numerically delicate ones use stable forms:
binary_cross_entropy_with_logits never forms σ(x) and then its log, cross_entropy goes through
log_softmax, binary_cross_entropy clamps its logs at −100 like PyTorch.

Value checks (class targets in range, probabilities in [0, 1], variances ≥ 0) run on the host:
always for CPU tensors, for CUDA tensors only under ``minigen.debug_checks()`` or anomaly
detection, since each is a device→host synchronisation (``autograd/grad_mode.py``).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..autograd.grad_mode import value_checks
from ..backend import xp_of
from ..tensor import Tensor
from ._util import broadcast_shape, unbroadcast
from .reduce import log_softmax

__all__ = ["mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss", "gaussian_nll_loss"]

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------- shared helpers
def _check_reduction(op, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _reduce(loss, reduction):
    """Apply ``reduction`` to a Tensor or a raw array of per-element losses."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _spread(g, shape, reduction):
    """The gradient of a reduced loss spread back over the per-element losses of ``shape``."""
    if reduction == "none":
        return g
    n = math.prod(shape)
    return g / n if reduction == "mean" else g


def _check_tensor(op, name, t, float_=True):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if float_ and not dtypes.is_floating(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating point tensor, got dtype {t.dtype}")


def _check_same_device(op, input, **others):
    for name, t in others.items():
        if isinstance(t, Tensor) and t.device is not input.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but the input is on "
                               f"{input.device}")


def _promote(a, b):
    if a.dtype != b.dtype:
        dt = dtypes.promote(a.dtype, b.dtype)
        a, b = a.to(dt), b.to(dt)
    return a, b


def _sigmoid(xp, x):
    return (xp.tanh(x * 0.5) + 1) * 0.5


# ---------------------------------------------------------------------- regression losses
class MSELoss(Function):
    """ℓ = (x − y)² (x, y broadcast), reduced; dℓ/dx = 2(x − y), dℓ/dy = −2(x − y)
    (÷ n for "mean")."""
    saves_inputs = False

    def forward(self, x, y, reduction):
        self.d = x - y
        self.sx, self.sy, self.reduction = x.shape, y.shape, reduction
        return _reduce(self.d * self.d, reduction)

    def backward(self, g):
        n = self.needs_input_grad
        gd = _spread(g, self.d.shape, self.reduction) * 2 * self.d
        return (unbroadcast(gd, self.sx) if n[0] else None,
                unbroadcast(-gd, self.sy) if n[1] else None)


class L1Loss(Function):
    """ℓ = |x − y|, reduced; dℓ/dx = sign(x − y) (0 at a tie), dℓ/dy = −sign(x − y)."""
    saves_inputs = False

    def forward(self, x, y, reduction):
        xp = xp_of(x)
        d = x - y
        self.sign = xp.sign(d)
        self.sx, self.sy, self.reduction = x.shape, y.shape, reduction
        return _reduce(xp.abs(d), reduction)

    def backward(self, g):
        n = self.needs_input_grad
        gd = _spread(g, self.sign.shape, self.reduction) * self.sign
        return (unbroadcast(gd, self.sx) if n[0] else None,
                unbroadcast(-gd, self.sy) if n[1] else None)


def _regression_args(op, input, target, reduction):
    _check_tensor(op, "input", input)
    _check_tensor(op, "target", target)
    _check_reduction(op, reduction)
    _check_same_device(op, input, target=target)
    if tuple(input.shape) != tuple(target.shape):
        broadcast_shape(op, input.shape, target.shape)
        warnings.warn(f"{op}: target size {tuple(target.shape)} differs from input size "
                      f"{tuple(input.shape)}; they are broadcast, which is likely not intended",
                      stacklevel=3)
    return _promote(input, target)


def mse_loss(input, target, reduction="mean"):
    """Squared error (x − y)², reduced."""
    input, target = _regression_args("mse_loss", input, target, reduction)
    return MSELoss.apply(input, target, reduction)


def l1_loss(input, target, reduction="mean"):
    """Absolute error |x − y|, reduced."""
    input, target = _regression_args("l1_loss", input, target, reduction)
    return L1Loss.apply(input, target, reduction)


class GaussianNLL(Function):
    """ℓ = ½ (log v̄ + (x − y)²/v̄) [+ ½ log 2π], v̄ = max(v, eps).

    dℓ/dx = (x − y)/v̄, dℓ/dy = −(x − y)/v̄, dℓ/dv = ½ (1/v̄ − (x − y)²/v̄²): the clamp is
    treated as the identity in backward, as PyTorch does (it clamps under no_grad).
    """
    saves_inputs = False

    def forward(self, x, y, v, eps, full):
        xp = xp_of(x)
        vc = xp.maximum(v, eps).astype(x.dtype, copy=False)
        d = x - y
        self.d, self.vc = d, vc
        self.shapes = (x.shape, y.shape, v.shape)
        loss = 0.5 * (xp.log(vc) + d * d / vc)
        if full:
            loss = loss + 0.5 * math.log(2 * math.pi)
        self.out_shape = loss.shape
        return loss

    def backward(self, g):
        n = self.needs_input_grad
        gx = g * self.d / self.vc
        gv = g * 0.5 * (1 / self.vc - self.d * self.d / (self.vc * self.vc)) if n[2] else None
        return (unbroadcast(gx, self.shapes[0]) if n[0] else None,
                unbroadcast(-gx, self.shapes[1]) if n[1] else None,
                unbroadcast(gv, self.shapes[2]) if n[2] else None)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Negative log-likelihood of ``target`` under N(input, var), per element.

    ``var``: same shape as input (heteroscedastic), or one fewer trailing dim, or the same
    number of dims with exactly one of them 1 (homoscedastic); or a non-negative float.
    """
    op = "gaussian_nll_loss"
    _check_tensor(op, "input", input)
    _check_tensor(op, "target", target)
    _check_reduction(op, reduction)
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"{op}: var has a negative entry ({var})")
        var = Tensor._wrap(xp_of(input.data).full(input.shape, var, dtype=input.dtype),
                           input.device)
    _check_tensor(op, "var", var)
    _check_same_device(op, input, target=target, var=var)
    if tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = var.unsqueeze(-1)
        elif not (var.ndim == input.ndim and sum(
                v for i, v in zip(input.shape, var.shape) if i != v) == 1):
            raise ValueError(f"{op}: var of shape {tuple(var.shape)} has an incorrect size for "
                             f"the input of shape {tuple(input.shape)}")
    broadcast_shape(op, input.shape, target.shape)
    if value_checks(var.device) and bool((var.data < 0).any()):
        raise ValueError(f"{op}: var has negative entries")
    input, target = _promote(input, target)
    if var.dtype != input.dtype:
        var = var.to(input.dtype)
    loss = GaussianNLL.apply(input, target, var, float(eps), bool(full))
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------- binary classification
class BinaryCrossEntropy(Function):
    """ℓ = −w (y log x + (1 − y) log(1 − x)), each log clamped at −100 (PyTorch).

    dℓ/dx = w (x − y) / max(x (1 − x), 1e-12);  dℓ/dy = w (log(1 − x) − log x) (clamped logs);
    dℓ/dw = the unweighted loss.
    """
    saves_inputs = False

    def forward(self, x, y, w):
        xp = xp_of(x)
        lx = xp.maximum(xp.log(x), -100)
        l1x = xp.maximum(xp.log1p(-x), -100)
        base = -(y * lx + (1 - y) * l1x)
        self.x, self.y, self.w, self.lx, self.l1x = x, y, w, lx, l1x
        self.base = base
        return base if w is None else base * w

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        x, y = self.x, self.y
        gw = g if self.w is None else g * self.w
        gx = gy = gwt = None
        if n[0]:
            gx = gw * (x - y) / xp.maximum(x * (1 - x), 1e-12)
        if n[1]:
            gy = gw * (self.l1x - self.lx)
        if len(n) > 2 and n[2]:
            gwt = unbroadcast(g * self.base, self.w.shape)
        return gx, gy, gwt


class BinaryCrossEntropyWithLogits(Function):
    """From logits x: ℓ = w ((1 − y) x + l_y softplus(−x)), l_y = 1 + (p − 1) y (p: pos_weight,
    l_y = 1 without it), softplus(−x) = max(−x, 0) + log1p(e^{−|x|}); without pos_weight this
    is w (max(x, 0) − x y + log1p(e^{−|x|})).

    dℓ/dx = w (l_y σ(x) − l_y + 1 − y) = w (σ(x) − y) without pos_weight;
    dℓ/dy = w (−x + (p − 1) softplus(−x));  dℓ/dw = ℓ/w;  dℓ/dp = w y softplus(−x).
    """
    saves_inputs = False

    def forward(self, x, y, w, p):
        xp = xp_of(x)
        sp = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))  # softplus(−x) = −log σ(x)
        if p is None:
            base = (1 - y) * x + sp
        else:
            base = (1 - y) * x + (1 + (p - 1) * y) * sp
        self.x, self.y, self.w, self.p, self.sp, self.base = x, y, w, p, sp, base
        return base if w is None else base * w

    def backward(self, g):
        xp = xp_of(g)
        n = self.needs_input_grad
        x, y, p = self.x, self.y, self.p
        gw = g if self.w is None else g * self.w
        gx = gy = gwt = gp = None
        if n[0]:
            s = _sigmoid(xp, x)
            if p is None:
                gx = gw * (s - y)
            else:
                ly = 1 + (p - 1) * y
                gx = gw * (ly * s - ly + 1 - y)
        if n[1]:
            gy = gw * (-x) if p is None else gw * ((p - 1) * self.sp - x)
        if n[2]:
            gwt = unbroadcast(g * self.base, self.w.shape)
        if n[3]:
            gp = unbroadcast(gw * y * self.sp, p.shape)
        return gx, gy, gwt, gp


def _binary_args(op, input, target, weight, reduction):
    _check_tensor(op, "input", input)
    _check_tensor(op, "target", target)
    _check_reduction(op, reduction)
    _check_same_device(op, input, target=target, weight=weight)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: target of shape {tuple(target.shape)} must have the same shape "
                         f"as the input {tuple(input.shape)}")
    if target.dtype != input.dtype:
        target = target.to(input.dtype)
    if weight is not None:
        _check_tensor(op, "weight", weight)
        if broadcast_shape(op + " (weight)", weight.shape, input.shape) != tuple(input.shape):
            raise RuntimeError(f"{op}: weight of shape {tuple(weight.shape)} does not broadcast "
                               f"to the input's shape {tuple(input.shape)}")
        if weight.dtype != input.dtype:
            weight = weight.to(input.dtype)
    return target, weight


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """−w (y log x + (1 − y) log(1 − x)) for probabilities x in [0, 1]; prefer
    ``binary_cross_entropy_with_logits`` (stable, and no clamping)."""
    op = "binary_cross_entropy"
    target, weight = _binary_args(op, input, target, weight, reduction)
    xd = input.data
    if xd.size and value_checks(input.device) and bool(((xd < 0) | (xd > 1)).any()):
        raise ValueError(f"{op}: all elements of input should be between 0 and 1 (they are "
                         "probabilities; for logits use binary_cross_entropy_with_logits)")
    return _reduce(BinaryCrossEntropy.apply(input, target, weight), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """BCE of σ(input) against ``target`` computed from the logits, stably. ``weight``
    broadcasts to the input; ``pos_weight`` (e.g. shape (C,)) weighs the positive term and
    broadcasts along the last dim."""
    op = "binary_cross_entropy_with_logits"
    target, weight = _binary_args(op, input, target, weight, reduction)
    if pos_weight is not None:
        _check_tensor(op, "pos_weight", pos_weight)
        _check_same_device(op, input, pos_weight=pos_weight)
        if broadcast_shape(op + " (pos_weight)", pos_weight.shape, input.shape) != \
                tuple(input.shape):
            raise RuntimeError(f"{op}: pos_weight of shape {tuple(pos_weight.shape)} does not "
                               f"broadcast to the input's shape {tuple(input.shape)}")
        if pos_weight.dtype != input.dtype:
            pos_weight = pos_weight.to(input.dtype)
    loss = BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------- multi-class
class NLLLoss(Function):
    """ℓ_i = −w[t_i] x[i, t_i] (0 where t_i = ignore_index), x of shape (N, C, *).

    "mean" divides Σ ℓ_i by Σ w[t_i] over the targets not ignored. The gradient is −w[t_i]
    (÷ that sum for "mean") at (i, t_i) and 0 elsewhere. ``weight`` gets no gradient.
    """
    saves_inputs = False

    def forward(self, x, target, weight, ignore_index, reduction):
        xp = xp_of(x)
        valid = target != ignore_index
        t = xp.where(valid, target, 0)
        picked = xp.take_along_axis(x, xp.expand_dims(t, 1), axis=1)[:, 0]
        wt = valid.astype(x.dtype) if weight is None else weight[t] * valid
        self.t, self.wt, self.shape, self.reduction = t, wt, x.shape, reduction
        loss = -picked * wt
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        self.denom = wt.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return loss.sum() / self.denom

    def backward(self, g):
        xp = xp_of(g)
        coef = -self.wt * g
        if self.reduction == "mean":
            coef = coef / self.denom
        classes = xp.arange(self.shape[1]).reshape((1, -1) + (1,) * (len(self.shape) - 2))
        onehot = classes == xp.expand_dims(self.t, 1)
        return (onehot * xp.expand_dims(coef, 1)).astype(g.dtype, copy=False)


def _check_class_targets(op, input, target, weight, ignore_index):
    """Shared checks for class-index targets: input (N, C, *) or (C,), target (N, *) or ()."""
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    expect = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: class-index targets must have an integer dtype, got "
                        f"{target.dtype}")
    if tuple(target.shape) != expect:
        raise ValueError(f"{op}: target of shape {tuple(target.shape)} does not match the input "
                         f"of shape {tuple(input.shape)}: class indices need shape {expect} "
                         "(the input's shape without the class dim)")
    if target.numel() and value_checks(target.device):
        td = target.data
        bad = (td != ignore_index) & ((td < 0) | (td >= c))
        if bool(bad.any()):
            first = int(td[bad].reshape(-1)[0])
            raise IndexError(f"{op}: target {first} is out of bounds for {c} classes "
                             f"(ignore_index={ignore_index})")
    if weight is not None:
        _check_tensor(op, "weight", weight)
        _check_same_device(op, input, weight=weight)
        if tuple(weight.shape) != (c,):
            raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} should have one entry "
                             f"per class ({c},)")
        if weight.requires_grad:   # the fused op has no gradient for it (zero, silently)
            raise RuntimeError(f"{op}: a class weight that requires grad is not supported with "
                               "class-index targets (it gets no gradient); pass it detached")
    return c


def _input_nd(op, input):
    _check_tensor(op, "input", input)
    if input.ndim < 1:
        raise ValueError(f"{op}: input must have a class dim: (C,), (N, C) or (N, C, d1, ...); "
                         f"got a 0-d tensor")


def _nll(input, target, weight, ignore_index, reduction):
    """nll_loss without the checks; input (N, C, *) or (C,)."""
    unbatched = input.ndim == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    w = None if weight is None else weight.data.astype(input.dtype, copy=False)
    loss = NLLLoss.apply(input, target.data, w, int(ignore_index), reduction)
    return loss[0] if unbatched and reduction == "none" else loss


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """−input[i, target[i]] weighted by ``weight[target[i]]``; input holds log-probabilities,
    shape (N, C, d1, ...) or (C,); target class indices of shape (N, d1, ...) or ()."""
    op = "nll_loss"
    _input_nd(op, input)
    _check_reduction(op, reduction)
    _check_tensor(op, "target", target, float_=False)
    _check_same_device(op, input, target=target)
    _check_class_targets(op, input, target, weight, ignore_index)
    return _nll(input, target, weight, ignore_index, reduction)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy from logits ``input`` of shape (N, C, d1, ...) or (C,).

    ``target`` is either class indices (integer, shape (N, d1, ...)), giving
    ℓ = −w[t] log softmax(x)[t] with ``ignore_index`` skipped, or class probabilities (float,
    the input's shape), giving ℓ = −Σ_c w_c y_c log softmax(x)_c. ``label_smoothing`` ε mixes
    the target with the uniform distribution: (1 − ε)·target + ε/C.
    """
    op = "cross_entropy"
    _input_nd(op, input)
    _check_reduction(op, reduction)
    _check_tensor(op, "target", target, float_=False)
    _check_same_device(op, input, target=target)
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim]
    wshape = (-1,) + (1,) * (input.ndim - 1 - cdim)

    if tuple(target.shape) == tuple(input.shape) and target.ndim != 0:
        # class probabilities
        if not dtypes.is_floating(target.dtype):
            raise TypeError(f"{op}: a target of the input's shape {tuple(input.shape)} holds "
                            f"class probabilities and must be floating point, got "
                            f"{target.dtype} (class indices have shape without the class dim)")
        if ignore_index >= 0:
            raise ValueError(f"{op}: ignore_index is not supported with class-probability "
                             "targets")
        if weight is not None:
            _check_tensor(op, "weight", weight)
            _check_same_device(op, input, weight=weight)
            if tuple(weight.shape) != (c,):
                raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} should have one "
                                 f"entry per class ({c},)")
        if target.dtype != input.dtype:
            target = target.to(input.dtype)
        logp = log_softmax(input, cdim)
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / c
        prod = logp * target
        if weight is not None:
            prod = prod * weight.to(input.dtype).reshape(wshape)
        return _reduce(-prod.sum(cdim), reduction)

    _check_class_targets(op, input, target, weight, ignore_index)
    if weight is not None:
        weight = weight.detach()  # class weights get no gradient (nll_loss gives them none)
    logp = log_softmax(input, cdim)
    nll = _nll(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return nll
    # the uniform part: −Σ_c w_c log p_c per sample, masked where ignored
    xp = xp_of(input.data)
    valid = target.data != ignore_index
    prod = logp if weight is None else logp * weight.to(input.dtype).reshape(wshape)
    smooth = -prod.sum(cdim) * Tensor._wrap(valid.astype(input.dtype), input.device)
    if reduction == "mean":
        if weight is None:
            denom = valid.sum()
        else:
            t = xp.where(valid, target.data, 0)
            denom = (weight.data[t] * valid).sum()
        smooth = smooth.sum() / Tensor._wrap(denom.astype(input.dtype), input.device)
    elif reduction == "sum":
        smooth = smooth.sum()
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / c)
