"""``minigen.nn.functional``: the stateless layer ops under PyTorch's names
(``import minigen.nn.functional as F``).

Everything here is implemented in ``minigen.ops``; this module only gathers it, adding the
``inplace=`` flag PyTorch's activations take. Contents:

activations  relu, relu_, leaky_relu, silu, gelu, softplus, elu, mish, hardtanh, logsigmoid,
             sigmoid, tanh, softmax, log_softmax
linear       linear
layout       pad, one_hot, pixel_shuffle, pixel_unshuffle, interpolate, upsample
pooling      avg_pool2d, max_pool2d
norms        layer_norm, group_norm, batch_norm, normalize
regularise   dropout, embedding
losses       mse_loss, l1_loss, binary_cross_entropy, binary_cross_entropy_with_logits,
             cross_entropy, nll_loss, gaussian_nll_loss
"""
from __future__ import annotations

from ..ops import activation as _act
from ..ops import elementwise as _ew
from ..ops import reduce as _red
from ..ops.indexing import one_hot
from ..ops.loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                        gaussian_nll_loss, l1_loss, mse_loss, nll_loss)
from ..ops.matmul import linear
from ..ops.nn_misc import dropout, embedding, normalize
from ..ops.normalization import batch_norm, group_norm, layer_norm
from ..ops.pooling import (avg_pool2d, interpolate, max_pool2d, pixel_shuffle, pixel_unshuffle,
                           upsample)
from ..ops.shape import pad

__all__ = [
    "relu", "relu_", "leaky_relu", "silu", "gelu", "softplus", "elu", "mish", "hardtanh",
    "logsigmoid", "sigmoid", "tanh", "softmax", "log_softmax", "linear", "pad", "one_hot",
    "pixel_shuffle", "pixel_unshuffle", "interpolate", "upsample", "avg_pool2d", "max_pool2d",
    "layer_norm", "group_norm", "batch_norm", "normalize", "dropout", "embedding", "mse_loss",
    "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
    "nll_loss", "gaussian_nll_loss",
]

sigmoid = _act.sigmoid
tanh = _ew.tanh
gelu = _act.gelu
softplus = _act.softplus
logsigmoid = _act.logsigmoid


def _maybe_inplace(input, inplace, fn):
    return input._inplace_from(fn) if inplace else fn(input)


def relu(input, inplace=False):
    """max(x, 0)."""
    return _maybe_inplace(input, inplace, _act.relu)


def relu_(input):
    return relu(input, inplace=True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, negative_slope · x otherwise."""
    return _maybe_inplace(input, inplace, lambda t: _act.leaky_relu(t, negative_slope))


def silu(input, inplace=False):
    """x σ(x)."""
    return _maybe_inplace(input, inplace, _act.silu)


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, α(eˣ − 1) otherwise."""
    return _maybe_inplace(input, inplace, lambda t: _act.elu(t, alpha))


def mish(input, inplace=False):
    """x tanh(softplus(x))."""
    return _maybe_inplace(input, inplace, _act.mish)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """clamp(x, min_val, max_val)."""
    return _maybe_inplace(input, inplace, lambda t: _act.hardtanh(t, min_val, max_val))


def softmax(input, dim, dtype=None):
    """e^{x} / Σ e^{x} along ``dim`` (computed in ``dtype`` when given)."""
    if dtype is not None:
        input = input.to(dtype)
    return _red.softmax(input, dim)


def log_softmax(input, dim, dtype=None):
    """x − logsumexp(x) along ``dim`` (computed in ``dtype`` when given)."""
    if dtype is not None:
        input = input.to(dtype)
    return _red.log_softmax(input, dim)


# The kernel layer (conv2d, attention, noise schedule, flows): each module's __all__.
from ..ops.conv import *  # noqa: F401,F403,E402
from ..ops.attention import *  # noqa: F401,F403,E402
from ..ops import conv as _conv, attention as _attention  # noqa: E402
__all__ += list(_conv.__all__) + list(_attention.__all__)

# Layers and losses of minigen.ops.layers (conv1d, conv_transpose1d, adaptive_avg_pool2d,
# unfold, instance_norm, rms_norm, glu, selu, relu6, hardswish, prelu, kl_div, smooth_l1_loss,
# huber_loss, cosine_similarity, pairwise_distance, cdist).
from ..ops import layers as _layers  # noqa: E402
from ..ops.layers import *  # noqa: F401,F403,E402
__all__ += list(_layers.__all__)


def hardswish(input, inplace=False):  # noqa: F811
    """x · relu6(x + 3) / 6."""
    return _maybe_inplace(input, inplace, _layers.hardswish)


def relu6(input, inplace=False):  # noqa: F811
    """min(max(x, 0), 6)."""
    return _maybe_inplace(input, inplace, _layers.relu6)


def selu(input, inplace=False):  # noqa: F811
    """λ elu(x, α), α ≈ 1.6733, λ ≈ 1.0507."""
    return _maybe_inplace(input, inplace, _layers.selu)
