"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), PyTorch's update equations.

At step t (starting at 1), for gradient g and parameter θ:

    AdamW: θ ← θ (1 − η λ)                (decoupled weight decay)
    Adam:  g ← g + λ θ                    (L2 penalty folded into the gradient)
    m ← m + (1 − β1)(g − m)               (= β1 m + (1 − β1) g)
    v ← β2 v + (1 − β2) g²
    v̂ ← max(v̂, v) if amsgrad else v
    θ ← θ − (η / (1 − β1ᵗ)) · m / (√v̂ / √(1 − β2ᵗ) + ε)

Hot path: on the CPU, for C-contiguous float32/float64 arrays and without amsgrad/maximize,
the fused native kernel ``minigen._native.module().adam_step`` updates θ, m, v in one pass.
Otherwise the numpy (or CuPy) path below does the same math with one scratch array per shape.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import xp_of
from . import optimizer as _opt
from .optimizer import Optimizer


class Adam(Optimizer):
    decoupled = False  # AdamW sets True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid beta parameters: {betas} (each must be in [0, 1))")
        if not 0.0 <= weight_decay:
            raise ValueError(f"invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))
        self._scratch: dict = {}

    def _tmp(self, like):
        gpu = getattr(getattr(like, "device", None), "id", None)  # cupy: the GPU ordinal
        key = (like.shape, like.dtype.str, id(xp_of(like)), gpu)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = xp_of(like).empty(like.shape, like.dtype)
        return buf

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        native = _opt.native_kernel("adam_step")
        decoupled = self.decoupled
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                theta, g = p.data, p.grad.data
                state = self.state.get(p)
                if not state:
                    xp = xp_of(theta)
                    state = self.state[p] = {
                        "step": 0,
                        "exp_avg": xp.zeros(theta.shape, theta.dtype),
                        "exp_avg_sq": xp.zeros(theta.shape, theta.dtype)}
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if (native is not None and not amsgrad and not maximize
                        and type(g) is np.ndarray and _opt.native_ok(theta, m, v)
                        and g.dtype == theta.dtype):
                    native(theta, _opt.c_contiguous(g), m, v, float(lr), float(beta1),
                           float(beta2), float(eps), float(wd), int(t), bool(decoupled))
                else:
                    self._numpy_step(theta, -g if maximize else g, state, lr, beta1, beta2,
                                     eps, wd, t, amsgrad, decoupled)
                self._bump(p)
        return loss

    def _numpy_step(self, theta, g, state, lr, beta1, beta2, eps, wd, t, amsgrad, decoupled):
        xp = xp_of(theta)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if wd != 0:
            if decoupled:
                theta *= 1 - lr * wd
            else:
                g = g + wd * theta
        tmp = self._tmp(theta)
        xp.subtract(g, m, out=tmp)           # m ← m + (1 − β1)(g − m)
        tmp *= 1 - beta1
        m += tmp
        v *= beta2                           # v ← β2 v + (1 − β2) g²
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        step_size = lr / (1 - beta1 ** t)
        bc2_sqrt = math.sqrt(1 - beta2 ** t)
        if amsgrad:
            vmax = state.get("max_exp_avg_sq")
            if vmax is None:
                vmax = state["max_exp_avg_sq"] = xp.zeros(theta.shape, theta.dtype)
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        xp.sqrt(v, out=tmp)                  # denominator √v̂/√(1 − β2ᵗ) + ε
        tmp /= bc2_sqrt
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        theta -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay θ ← θ(1 − ηλ) (default λ = 0.01)."""
    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


__all__ = ["Adam", "AdamW"]
