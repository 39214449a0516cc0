"""conv2d and conv_transpose2d (kernel family ``conv2d``), with PyTorch's signatures.

The math and the family interface are in ``minigen/reference/conv2d.py``. The two primitives
here check the arguments, then hand the arrays to the implementation ``minigen.dispatch``
chooses for the device (native C++ on the CPU, Triton on a GPU, the numpy reference as the
fallback); their backward calls the same implementation's backward.

Inputs: (N, C, H, W) or unbatched (C, H, W) (a batch of one, removed again from the output).
``padding`` may be an int, a pair, "valid" (0) or "same" (stride 1 only: the output has the
input's size; an odd total padding d·(k − 1) puts the extra row/column at the end, as
PyTorch does, by padding the input explicitly).
"""
from __future__ import annotations

import numbers

from .. import dispatch
from ..autograd.function import Function
from ..tensor import Tensor
from ._util import require_float
from .shape import pad as _pad_op

__all__ = ["conv2d", "conv_transpose2d"]


def _impl(array):
    return dispatch.get_for("conv2d", array)


class Conv2dFn(Function):
    """y = conv2d(x, w) + b; backward (∂x, ∂w, ∂b) = (dgrad, wgrad, Σ g)."""

    def forward(self, x, w, b, stride, padding, dilation, groups):
        self.x, self.w, self.geom = x, w, (stride, padding, dilation, groups)
        self.has_bias = b is not None
        return _impl(x).conv2d_forward(x, w, b, stride, padding, dilation, groups)

    def backward(self, g):
        needs = tuple(self.needs_input_grad[:3]) if self.has_bias else \
            (self.needs_input_grad[0], self.needs_input_grad[1], False)
        return _impl(g).conv2d_backward(g, self.x, self.w, *self.geom, needs=needs)


class ConvTranspose2dFn(Function):
    """y = conv_transpose2d(x, w) + b, the adjoint of conv2d (see the reference)."""

    def forward(self, x, w, b, stride, padding, output_padding, dilation, groups):
        self.x, self.w = x, w
        self.geom = (stride, padding, output_padding, dilation, groups)
        self.has_bias = b is not None
        return _impl(x).conv_transpose2d_forward(x, w, b, stride, padding, output_padding,
                                                 dilation, groups)

    def backward(self, g):
        needs = tuple(self.needs_input_grad[:3]) if self.has_bias else \
            (self.needs_input_grad[0], self.needs_input_grad[1], False)
        return _impl(g).conv_transpose2d_backward(g, self.x, self.w, *self.geom, needs=needs)


# ------------------------------------------------------------------------- argument checks
def _pair(op, name, v, minimum):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 1 and isinstance(v[0], numbers.Integral):
        v = (int(v[0]), int(v[0]))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"{op}: {name} must be {'positive' if minimum else 'non-negative'}, "
                         f"got {v}")
    return v


def _check_tensors(op, input, weight, bias, transposed):
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"{op}: bias must be a Tensor or None, got {type(bias).__name__}")
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                           f"shape {tuple(input.shape)}")
    if weight.ndim != 4:
        layout = "(C_in, C_out/groups, kH, kW)" if transposed else "(C_out, C_in/groups, kH, kW)"
        raise RuntimeError(f"{op}: expected a 4-D weight {layout}, got shape "
                           f"{tuple(weight.shape)}")
    require_float(input, op)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: input ({input.dtype}) and {name} ({t.dtype}) must have the "
                            "same dtype")
        if t is not None and t.device != input.device:
            raise RuntimeError(f"{op}: input is on {input.device} but {name} is on {t.device}")


def _check_groups(op, groups):
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _batched(input):
    """(input as 4-D, whether to drop the batch dim of the output)."""
    return (input.unsqueeze(0), True) if input.ndim == 3 else (input, False)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of input (N, C_in, H, W) or (C_in, H, W) with weight
    (C_out, C_in/groups, kH, kW), plus bias (C_out): PyTorch's F.conv2d."""
    op = "conv2d"
    _check_tensors(op, input, weight, bias, transposed=False)
    groups = _check_groups(op, groups)
    stride = _pair(op, "stride", stride, 1)
    dilation = _pair(op, "dilation", dilation, 1)
    x, unbatched = _batched(input)
    c_out, cg, kh, kw = weight.shape
    c_in = x.shape[1]
    if c_out % groups:
        raise ValueError(f"{op}: out_channels (weight.shape[0] = {c_out}) must be divisible by "
                         f"groups = {groups}")
    if cg * groups != c_in:
        raise RuntimeError(f"{op}: input of shape {tuple(input.shape)} has {c_in} channels but "
                           f"weight of shape {tuple(weight.shape)} with groups = {groups} expects "
                           f"{cg * groups} (= weight.shape[1] · groups)")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise RuntimeError(f"{op}: bias must have shape ({c_out},), got {tuple(bias.shape)}")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride {stride})")
            total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] % 2, total[1] % 2)
            if extra != (0, 0):  # PyTorch puts the odd row/column at the end
                x = _pad_op(x, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got "
                             f"{padding!r}")
    else:
        padding = _pair(op, "padding", padding, 0)
    h, w = x.shape[2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise RuntimeError(f"{op}: the kernel {kh}x{kw} (dilation {dilation}) is larger than the "
                           f"padded input: input {h}x{w} with padding {padding} gives an output "
                           f"of size {ho}x{wo}")
    y = Conv2dFn.apply(x, weight, bias, stride, padding, dilation, groups)
    return y.squeeze(0) if unbatched else y


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed convolution (the adjoint of conv2d, "deconvolution") of input
    (N, C_in, H, W) or (C_in, H, W) with weight (C_in, C_out/groups, kH, kW), plus bias
    (C_out): PyTorch's F.conv_transpose2d. H_out = (H−1)s − 2p + d(k−1) + output_padding + 1."""
    op = "conv_transpose2d"
    _check_tensors(op, input, weight, bias, transposed=True)
    groups = _check_groups(op, groups)
    stride = _pair(op, "stride", stride, 1)
    dilation = _pair(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, got {padding!r}")
    padding = _pair(op, "padding", padding, 0)
    output_padding = _pair(op, "output_padding", output_padding, 0)
    for a in range(2):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than "
                             f"either stride {stride} or dilation {dilation}")
    x, unbatched = _batched(input)
    c_in_w, cg_out, kh, kw = weight.shape
    c_in = x.shape[1]
    if c_in_w != c_in:
        raise RuntimeError(f"{op}: input of shape {tuple(input.shape)} has {c_in} channels but "
                           f"weight of shape {tuple(weight.shape)} expects {c_in_w} "
                           "(= weight.shape[0])")
    if c_in % groups:
        raise ValueError(f"{op}: in_channels ({c_in}) must be divisible by groups = {groups}")
    c_out = cg_out * groups
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise RuntimeError(f"{op}: bias must have shape ({c_out},), got {tuple(bias.shape)}")
    h, w = x.shape[2:]
    ho = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    wo = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    if ho < 1 or wo < 1:
        raise RuntimeError(f"{op}: input {h}x{w} with padding {padding} gives an output of size "
                           f"{ho}x{wo}, which is not positive")
    y = ConvTranspose2dFn.apply(x, weight, bias, stride, padding, output_padding, dilation,
                                groups)
    return y.squeeze(0) if unbatched else y
