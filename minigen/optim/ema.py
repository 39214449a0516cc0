"""Exponential moving average of a model's parameters (Polyak averaging), as used to sample
from diffusion models and GANs:

    θ̄ ← d θ̄ + (1 − d) θ     after every optimizer step (``update()``),
    d = decay, or min(decay, (1 + n)/(10 + n)) after n updates when ``warmup=True``.

Only *parameters* are averaged: buffers (BatchNorm running statistics, ...) are not touched,
neither in ``update`` nor in ``copy_to``. Typical use::

    ema = EMA(model, decay=0.999)
    for batch in data:
        ...; opt.step(); ema.update()
    with ema.average_parameters():      # evaluate with θ̄, then put θ back
        sample(model)
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

from ..backend import array_module, to_device, xp_of
from ..tensor import Tensor


class EMA:
    def __init__(self, model, decay: float = 0.999, warmup: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.model = model
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0
        self.shadow = OrderedDict(
            (name, p.data.copy()) for name, p in self._named(model))
        self._backup = None

    @staticmethod
    def _named(model):
        return [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]

    def _pairs(self, model):
        model = self.model if model is None else model
        pairs = self._named(model)
        names = [n for n, _ in pairs]
        if names != list(self.shadow):
            missing = [n for n in self.shadow if n not in names]
            extra = [n for n in names if n not in self.shadow]
            raise RuntimeError(f"EMA: model parameters differ from the averaged ones (missing: "
                               f"{missing}, unexpected: {extra})")
        return pairs

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    def update(self, model=None):
        """θ̄ ← d θ̄ + (1 − d) θ for every parameter (buffers untouched)."""
        self.num_updates += 1
        d = self.current_decay()
        for name, p in self._pairs(model):
            s = self.shadow[name]
            theta = p.data
            if xp_of(s) is not xp_of(theta):
                s = self.shadow[name] = to_device(s, p.device)
            tmp = xp_of(s).subtract(s, theta)   # θ̄ − θ
            tmp *= 1 - d
            s -= tmp

    def copy_to(self, model=None):
        """Write the averages into the model's parameters (in place)."""
        for name, p in self._pairs(model):
            array_module(p.device).copyto(p.data, to_device(self.shadow[name], p.device),
                                          casting="unsafe")
            p._vc[0] += 1

    def store(self, model=None):
        """Remember the model's current parameters (for ``restore``)."""
        self._backup = OrderedDict((n, p.data.copy()) for n, p in self._pairs(model))

    def restore(self, model=None):
        """Put back the parameters saved by ``store``."""
        if self._backup is None:
            raise RuntimeError("EMA.restore() called without a previous store()")
        for name, p in self._pairs(model):
            array_module(p.device).copyto(p.data, self._backup[name], casting="unsafe")
            p._vc[0] += 1
        self._backup = None

    @contextlib.contextmanager
    def average_parameters(self, model=None):
        """Inside the block the model holds the averages; afterwards its own parameters."""
        self.store(model)
        self.copy_to(model)
        try:
            yield
        finally:
            self.restore(model)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": OrderedDict((n, Tensor._wrap(s, None)) for n, s in self.shadow.items())}

    def load_state_dict(self, state_dict: dict):
        shadow = state_dict["shadow"]
        missing = [n for n in self.shadow if n not in shadow]
        unexpected = [n for n in shadow if n not in self.shadow]
        bad = [f"{n}: expected {tuple(s.shape)}, got {tuple(shadow[n].shape)}"
               for n, s in self.shadow.items() if n in shadow and
               tuple(shadow[n].shape) != tuple(s.shape)]
        if missing or unexpected or bad:
            raise RuntimeError(f"EMA.load_state_dict: missing {missing}, unexpected {unexpected}, "
                               f"shape mismatch {bad}")
        for n, s in self.shadow.items():
            v = shadow[n]
            arr = v.data if isinstance(v, Tensor) else v
            xp_of(s).copyto(s, to_device(arr, _device_of_array(s)), casting="unsafe")
        self.decay = float(state_dict["decay"])
        self.warmup = bool(state_dict.get("warmup", False))
        self.num_updates = int(state_dict["num_updates"])


def _device_of_array(a):
    from ..backend import device_of
    return device_of(a)


__all__ = ["EMA"]
