"""Stochastic gradient descent with momentum (PyTorch's formulation).

    g ← ∇f(θ) (+ λ θ)                                   weight decay λ (L2, added to the gradient)
    b ← g on the first step, then b ← μ b + (1 − τ) g    momentum μ, dampening τ
    d ← g + μ b if nesterov else b                      (d ← g when μ = 0)
    θ ← θ − η d                                          learning rate η

With momentum, on the CPU for C-contiguous float32/float64 arrays, the fused native kernel
``sgd_momentum_step`` (csrc/optim.cpp) does the step in one pass; the numpy path is the
reference.
"""
from __future__ import annotations

import numpy as np

from ..backend import xp_of
from . import optimizer as _opt
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        native = _opt.native_kernel("sgd_momentum_step")
        for group in self.param_groups:
            lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                theta = p.data
                xp = xp_of(theta)
                g = p.grad.data
                if native is not None and mu != 0 and not maximize and type(g) is np.ndarray \
                        and g.dtype == theta.dtype and _opt.native_ok(theta):
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    first = buf is None
                    if first:  # the kernel writes b ← d into it
                        buf = state["momentum_buffer"] = np.empty(theta.shape, theta.dtype)
                    if _opt.native_ok(theta, buf):
                        native(theta, _opt.c_contiguous(g), buf, float(lr), float(mu),
                               float(tau), float(wd), bool(nesterov), first)
                        self._bump(p)
                        continue
                if maximize:
                    g = -g
                if wd != 0:
                    g = g + wd * theta  # a new array: p.grad stays untouched
                d = g
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = xp.array(g, copy=True, order="C")
                    else:
                        buf *= mu
                        if tau == 0:
                            buf += g
                        else:
                            buf += (1 - tau) * g
                    d = g + mu * buf if nesterov else buf
                theta -= lr * d
                self._bump(p)
        return loss


__all__ = ["SGD"]
