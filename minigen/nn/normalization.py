"""Normalisation layers: ``LayerNorm``, ``GroupNorm``, ``BatchNorm1d``, ``BatchNorm2d``.

Each standardises x over a group and applies a learned per-feature affine map
(y = w ⊙ (x − μ)/√(σ² + eps) + b; the math and its backward are in ``minigen/ops/normalization``).
BatchNorm also keeps running statistics as *buffers* (``running_mean``, ``running_var``,
``num_batches_tracked``): saved in ``state_dict``, moved by ``to()``, never optimised.
Running update (training): m ← (1 − momentum) m + momentum μ_batch, v likewise with the
unbiased batch variance; ``momentum=None`` uses the cumulative average (momentum = 1/t).
"""
from __future__ import annotations

import numbers

from .. import creation, dtypes
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """Normalise over the trailing dims ``normalized_shape``: input (*, *normalized_shape)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(creation.ones(self.normalized_shape, dtype=dtype,
                                                  device=device))
            if bias:
                self.bias = Parameter(creation.zeros(self.normalized_shape, dtype=dtype,
                                                     device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """input (N, C, *): channels split into ``num_groups`` groups, each normalised per sample."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = eps, affine
        if affine:
            self.weight = Parameter(creation.ones(self.num_channels, dtype=dtype, device=device))
            self.bias = Parameter(creation.zeros(self.num_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class _BatchNorm(Module):
    _expected_ndim: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_features = int(num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(creation.ones(self.num_features, dtype=dtype, device=device))
            self.bias = Parameter(creation.zeros(self.num_features, dtype=dtype, device=device))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(self.num_features, dtype=dtype,
                                                                device=device))
            self.register_buffer("running_var", creation.ones(self.num_features, dtype=dtype,
                                                              device=device))
            self.register_buffer("num_batches_tracked",
                                 creation.zeros((), dtype=dtypes.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0
            for b in (self.running_mean, self.running_var, self.num_batches_tracked):
                b._vc[0] += 1

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, x):
        if x.ndim not in self._expected_ndim:
            want = " or ".join(f"{n}D" for n in self._expected_ndim)
            raise ValueError(f"{type(self).__name__}: expected {want} input, got shape "
                             f"{tuple(x.shape)}")

    def forward(self, x):
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            nbt = self.num_batches_tracked
            nbt.data[...] += 1
            nbt._vc[0] += 1
            factor = 1.0 / int(nbt.data) if self.momentum is None else self.momentum
        # batch statistics in training, and whenever there are no running statistics
        use_batch = self.training or self.running_mean is None
        update = not self.training or self.track_running_stats
        rm = self.running_mean if update else None
        rv = self.running_var if update else None
        out = F.batch_norm(x, rm, rv, self.weight, self.bias, use_batch, factor, self.eps)
        if use_batch and rm is not None:
            rm._vc[0] += 1  # updated in place by batch_norm
            rv._vc[0] += 1
        return out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """input (N, C) or (N, C, L); statistics per channel C."""
    _expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """input (N, C, H, W); statistics per channel C."""
    _expected_ndim = (4,)


__all__ = ["LayerNorm", "GroupNorm", "BatchNorm1d", "BatchNorm2d"]
