"""Learning-rate schedules. ``scheduler.step()`` once per optimizer step (or epoch) sets each
group's ``lr`` from a closed form of the step count t (``last_epoch``) and the group's base rate
η₀ (``initial_lr``, recorded by the first scheduler attached to the optimizer):

| scheduler | η(t) |
|---|---|
| LambdaLR | η₀ · λ(t) |
| LinearLR | η₀ · (s + (e − s) · min(t, T)/T)   start factor s, end factor e |
| CosineAnnealingLR | η_min + (η₀ − η_min)(1 + cos(π t/T_max))/2 |
| StepLR | η₀ · γ^⌊t/step_size⌋ |
| ExponentialLR | η₀ · γᵗ |
| SequentialLR | the i-th scheduler at t − milestone_{i−1} once t ≥ milestone_{i−1} |

Because every value is a closed form, two schedulers do not chain multiplicatively on one
optimizer: combine them with ``SequentialLR`` (``warmup_cosine`` builds the usual one).
``state_dict`` holds the step count and settings (not the optimizer, not lambdas).
"""
from __future__ import annotations

import bisect
import math

from .optimizer import Optimizer


class LRScheduler:
    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if last_epoch == -1:
            for g in groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   "when resuming a scheduler with last_epoch != -1")
        self.base_lrs = [g["initial_lr"] for g in groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, t: int) -> list:
        """The learning rate of every group at step ``t``."""
        raise NotImplementedError

    def get_lr(self) -> list:
        return self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list:
        return list(self._last_lr)

    def step(self, epoch=None):
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        self._apply(self.lr_at(self.last_epoch))

    def _apply(self, lrs):
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = list(lrs)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict: dict):
        """Restore the step count and settings (the optimizer's own state_dict restores the
        current ``lr`` of its groups)."""
        self.__dict__.update({k: (list(v) if k in ("base_lrs", "_last_lr") else v)
                              for k, v in state_dict.items()})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


class LambdaLR(LRScheduler):
    """η₀ · lr_lambda(t); ``lr_lambda`` is one function or one per group."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"expected {n} lr_lambdas, got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * fn(t) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class LinearLR(LRScheduler):
    """Factor going linearly from ``start_factor`` to ``end_factor`` over ``total_iters``
    steps, then constant (linear warm-up with ``end_factor=1``)."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError("LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1]")
        if total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be >= 1, got {total_iters}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        f = self.start_factor + (self.end_factor - self.start_factor) * \
            min(max(t, 0), self.total_iters) / self.total_iters
        return [base * f for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from η₀ down to ``eta_min`` over ``T_max`` steps (SGDR without
    restarts)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class StepLR(LRScheduler):
    """Multiply by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * self.gamma ** (t // self.step_size) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply by ``gamma`` every step."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * self.gamma ** t for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` from its step 0,
    and so on. All schedulers must drive the same optimizer."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch: int = -1):
        schedulers, milestones = list(schedulers), [int(m) for m in milestones]
        if len(schedulers) < 1:
            raise ValueError("SequentialLR needs at least one scheduler")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                             f"{len(schedulers)} schedulers, got {len(milestones)}")
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing, got {milestones}")
        for i, s in enumerate(schedulers):
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} drives a different optimizer")
        self._schedulers, self._milestones = schedulers, milestones
        super().__init__(optimizer, last_epoch)

    def _locate(self, t):
        i = bisect.bisect_right(self._milestones, t)
        start = self._milestones[i - 1] if i > 0 else 0
        return self._schedulers[i], t - start

    def lr_at(self, t):
        sched, local = self._locate(t)
        return sched.lr_at(local)

    def step(self, epoch=None):
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        sched, local = self._locate(self.last_epoch)
        sched.last_epoch = local
        lrs = sched.lr_at(local)
        sched._last_lr = list(lrs)
        self._apply(lrs)

    def state_dict(self):
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        subs = state_dict.pop("_schedulers")
        if len(subs) != len(self._schedulers):
            raise ValueError(f"SequentialLR: state has {len(subs)} schedulers, this one has "
                             f"{len(self._schedulers)}")
        super().load_state_dict(state_dict)
        self._milestones = list(self._milestones)
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int, eta_min: float = 0.0):
    """Linear warm-up then cosine decay: η(t) = η₀ (t + 1)/(W + 1) for t < W, then
    η_min + (η₀ − η_min)(1 + cos(π (t − W)/(T − W)))/2, reaching η_min at t = T."""
    if total_steps <= warmup_steps:
        raise ValueError(f"warmup_cosine: total_steps ({total_steps}) must exceed warmup_steps "
                         f"({warmup_steps})")
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=eta_min)
    if warmup_steps <= 0:
        return cosine
    warm = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0,
                    total_iters=warmup_steps)
    return SequentialLR(optimizer, [warm, cosine], milestones=[warmup_steps])


__all__ = ["LRScheduler", "LambdaLR", "LinearLR", "CosineAnnealingLR", "StepLR", "ExponentialLR",
           "SequentialLR", "warmup_cosine"]
