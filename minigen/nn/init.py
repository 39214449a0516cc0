"""Parameter initialisation, in place, as PyTorch's ``torch.nn.init``.

Every function writes ``tensor.data`` directly (no graph is recorded, as under ``no_grad``),
bumps the tensor's version counter and returns the tensor. ``generator=`` draws from a given
``minigen.Generator`` instead of the default one.

fan_in = size(1)·receptive field, fan_out = size(0)·receptive field (receptive field = product of
dims 2..), gain from ``calculate_gain``:
    kaiming:  std = gain/√fan_mode,                uniform bound = √3·std
    xavier:   std = gain·√(2/(fan_in + fan_out)),  uniform bound = √3·std
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import array_module
from ..random import seed_for
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
           "zeros_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "_calculate_fan_in_and_fan_out"]


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for an activation: relu √2, tanh 5/3, leaky_relu √(2/(1 + a²)),
    selu 3/4, linear/conv/sigmoid 1."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid", "identity")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions (shape {tuple(tensor.shape)})")
    receptive = math.prod(tensor.shape[2:]) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _check(tensor, op):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(tensor).__name__}")


def _write(tensor, values):
    array_module(tensor.device).copyto(tensor.data, values, casting="unsafe")
    tensor._vc[0] += 1
    return tensor


def _draw_dtype(tensor):
    dt = tensor.data.dtype
    return dt if dt in (np.float32, np.float64) else np.float64


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    _check(tensor, "uniform_")
    rng = seed_for(tensor.device, generator)
    u = rng.random(tensor.shape, dtype=_draw_dtype(tensor))
    u *= b - a
    u += a
    return _write(tensor, u)


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std²)."""
    _check(tensor, "normal_")
    rng = seed_for(tensor.device, generator)
    z = rng.standard_normal(tensor.shape, dtype=_draw_dtype(tensor))
    z *= std
    z += mean
    return _write(tensor, z)


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """Fill with N(mean, std²) restricted to [a, b] (absolute bounds, as PyTorch): draws
    outside the interval are redrawn."""
    _check(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    xp = array_module(tensor.device)
    rng = seed_for(tensor.device, generator)
    out = rng.standard_normal(tensor.shape, dtype=np.float64) * std + mean
    bad = (out < a) | (out > b)
    for _ in range(1000):
        n = int(bad.sum())
        if n == 0:
            break
        out[bad] = rng.standard_normal((n,), dtype=np.float64) * std + mean
        bad = (out < a) | (out > b)
    else:
        raise RuntimeError("trunc_normal_: [a, b] holds too little of the normal's mass")
    return _write(tensor, xp.clip(out, a, b))


def constant_(tensor, val: float):
    _check(tensor, "constant_")
    tensor.data[...] = val
    tensor._vc[0] += 1
    return tensor


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """U(±gain·√(6/(fan_in + fan_out)))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator=generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """N(0, gain²·2/(fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator=generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """U(±gain·√(3/fan)) with gain = calculate_gain(nonlinearity, a) (He et al., 2015)."""
    _check(tensor, "kaiming_uniform_")
    if 0 in tensor.shape:
        return tensor
    fan = _fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator=generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """N(0, gain²/fan) with gain = calculate_gain(nonlinearity, a)."""
    _check(tensor, "kaiming_normal_")
    if 0 in tensor.shape:
        return tensor
    fan = _fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator=generator)
