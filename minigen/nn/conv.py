"""Conv2d and ConvTranspose2d layers (PyTorch names, shapes and default initialisation).

Conv2d.weight: (out_channels, in_channels/groups, kH, kW); ConvTranspose2d.weight:
(in_channels, out_channels/groups, kH, kW); bias: (out_channels,). Both initialise as PyTorch:
w ~ kaiming_uniform(a = √5), i.e. U(±√(1/fan_in)), and b ~ U(±1/√fan_in), where fan_in is
computed from the weight tensor (size(1)·kH·kW) as PyTorch does, for both layers.
"""
from __future__ import annotations

import math
import numbers

from .. import creation
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


def _pair(v):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    return tuple(int(e) for e in v)


class _ConvNd(Module):
    """The shared constructor of the conv layers; ``_ntuple`` turns an int or sequence into one
    value per spatial dim (pairs here; Conv1d/ConvTranspose1d in ``layers.py`` use 1-tuples)."""
    _ntuple = staticmethod(_pair)

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, transposed, output_padding=0, device=None,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        if groups <= 0 or in_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by "
                             f"groups ({groups})")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by "
                             f"groups ({groups})")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {sorted(_PAD_MODES)}, got "
                             f"{padding_mode!r}")
        if transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: only 'zeros' padding mode is supported")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a pair, "
                                 f"got {padding!r}")
            if padding == "same" and any(v != 1 for v in self._ntuple(stride)):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 "convolutions")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = self._ntuple(kernel_size), self._ntuple(stride)
        self.padding = padding if isinstance(padding, str) else self._ntuple(padding)
        self.dilation, self.groups = self._ntuple(dilation), int(groups)
        self.output_padding = self._ntuple(output_padding)
        self.transposed, self.padding_mode = transposed, padding_mode
        shape = ((in_channels, out_channels // groups) if transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(creation.empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(creation.empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != "valid" and any(self.padding):
            s += f", padding={self.padding}"
        if any(v != 1 for v in self.dilation):
            s += f", dilation={self.dilation}"
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """x (N, C_in, H, W) or (C_in, H, W) → (N, C_out, H_out, W_out), F.conv2d with learned
    weight and bias. ``padding_mode`` other than 'zeros' pads the input explicitly first."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, False, device=device, dtype=dtype)

    def forward(self, x):
        if self.padding_mode == "zeros":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                            self.dilation, self.groups)
        if self.padding == "same":
            tot = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pads = (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
        elif self.padding == "valid":
            pads = (0, 0, 0, 0)
        else:
            pads = (self.padding[1], self.padding[1], self.padding[0], self.padding[0])
        x = F.pad(x, pads, mode=_PAD_MODES[self.padding_mode])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """x (N, C_in, H, W) or (C_in, H, W) → (N, C_out, H_out, W_out) with
    H_out = (H−1)s − 2p + d(k−1) + output_padding + 1 (F.conv_transpose2d)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, True, output_padding, device=device,
                         dtype=dtype)

    def forward(self, x, output_size=None):
        op = self.output_padding
        if output_size is not None:  # choose output_padding so the output has output_size
            size = tuple(output_size)[-2:]
            h, w = x.shape[-2:]
            op = tuple(int(sz) - ((n - 1) * s - 2 * p + d * (k - 1) + 1) for sz, n, s, p, d, k in
                       zip(size, (h, w), self.stride, self.padding, self.dilation,
                           self.kernel_size))
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, op,
                                  self.groups, self.dilation)
