"""Modules over ``minigen.ops.layers`` with PyTorch's names, arguments and initialisation:
Conv1d, ConvTranspose1d (weights (C_out, C_in/groups, k) / (C_in, C_out/groups, k), kaiming
uniform a = √5 and bias U(±1/√fan_in) as PyTorch), AdaptiveAvgPool2d, InstanceNorm2d,
RMSNorm, GLU, SELU, ReLU6, Hardswish, PReLU (slopes initialised to 0.25), Unfold, KLDivLoss,
SmoothL1Loss, HuberLoss, CosineSimilarity, PairwiseDistance."""
from __future__ import annotations

import numbers

from .. import creation
from . import functional as F
from .conv import _ConvNd
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "ConvTranspose1d", "AdaptiveAvgPool2d", "InstanceNorm2d", "RMSNorm", "GLU",
           "SELU", "ReLU6", "Hardswish", "PReLU", "Unfold", "KLDivLoss", "SmoothL1Loss",
           "HuberLoss", "CosineSimilarity", "PairwiseDistance"]


def _one(v):
    if isinstance(v, (tuple, list)):
        (v,) = v
    return int(v)


class _Conv1dBase(_ConvNd):
    """conv.py's constructor, initialisation and repr with one spatial dim."""
    _ntuple = staticmethod(lambda v: (_one(v),))


class Conv1d(_Conv1dBase):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f"Conv1d: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, "zeros", False, device=device, dtype=dtype)

    def forward(self, x):
        p = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(x, self.weight, self.bias, self.stride[0], p, self.dilation[0],
                        self.groups)


class ConvTranspose1d(_Conv1dBase):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose1d: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose1d: padding must be an int, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, "zeros", True, output_padding, device=device,
                         dtype=dtype)

    def forward(self, x):
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride[0], self.padding[0],
                                  self.output_padding[0], self.groups, self.dilation[0])


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class InstanceNorm2d(Module):
    """Per-(sample, channel) normalisation of (N, C, H, W) or (C, H, W); affine=False and
    track_running_stats=False by default, as PyTorch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
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
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        if x.ndim not in (3, 4):
            raise RuntimeError(f"InstanceNorm2d: expected a 3-D or 4-D input, got shape "
                               f"{tuple(x.shape)}")
        unbatched = x.ndim == 3
        xb = x.unsqueeze(0) if unbatched else x
        if xb.shape[1] != self.num_features:
            raise RuntimeError(f"InstanceNorm2d: expected {self.num_features} channels, got "
                               f"input of shape {tuple(x.shape)}")
        use_input_stats = self.training or not self.track_running_stats
        y = F.instance_norm(xb, self.running_mean, self.running_var, self.weight, self.bias,
                            use_input_stats, self.momentum, self.eps)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class RMSNorm(Module):
    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None,
                 dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(creation.ones(*self.normalized_shape, dtype=dtype,
                                                  device=device))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GLU(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.glu(x, self.dim)


class _Act(Module):
    fn = None

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return type(self).fn(x, inplace=self.inplace)


class SELU(_Act):
    fn = staticmethod(F.selu)


class ReLU6(_Act):
    fn = staticmethod(F.relu6)


class Hardswish(_Act):
    fn = staticmethod(F.hardswish)


class PReLU(Module):
    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = int(num_parameters)
        self.init = init
        self.weight = Parameter(creation.full((self.num_parameters,), float(init), dtype=dtype,
                                              device=device))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Unfold(Module):
    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.padding, self.stride = padding, stride

    def forward(self, x):
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)


class KLDivLoss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        self.reduction = F._layers._legacy("KLDivLoss", size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class SmoothL1Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__()
        self.reduction = F._layers._legacy("SmoothL1Loss", size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(Module):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__()
        self.reduction, self.delta = reduction, delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class CosineSimilarity(Module):
    def __init__(self, dim=1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    def __init__(self, p=2.0, eps=1e-6, keepdim=False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
