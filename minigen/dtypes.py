"""dtypes: minigen uses numpy dtype objects directly (``minigen.float32 is np.dtype('float32')``).

bfloat16 has no numpy dtype of its own; it comes from the optional ``ml_dtypes`` package on the
CPU. Without it, asking for bfloat16 raises an error that says how to get it.

Type promotion follows PyTorch, not numpy, where the two differ:
- a Python float with an integer tensor gives the default float dtype (float32), not float64;
- an integer tensor with a float tensor gives the float tensor's dtype (numpy would widen
  int64 + float32 to float64);
- otherwise the wider of the two (numpy's rule).
"""
from __future__ import annotations

import numpy as np

float16 = half = np.dtype("float16")
float32 = float = np.dtype("float32")
float64 = double = np.dtype("float64")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
bool_ = np.dtype("bool")



class _UnavailableDtype:
    """Stands in for bfloat16 when ``ml_dtypes`` is missing: any use raises a clear error
    (rather than ``dtype=None`` silently meaning the default float)."""
    name = "bfloat16"

    def __repr__(self):
        return "bfloat16 (unavailable: pip install ml_dtypes)"


try:  # optional: bfloat16 on the CPU
    import ml_dtypes as _ml_dtypes

    bfloat16 = np.dtype(_ml_dtypes.bfloat16)
    _HAVE_BF16 = True
except Exception:  # pragma: no cover - depends on the environment
    bfloat16 = _UnavailableDtype()
    _HAVE_BF16 = False

_default_float = float32

_NAMES = {
    "float16": float16, "half": float16, "float32": float32, "float": float32,
    "float64": float64, "double": float64, "int8": int8, "uint8": uint8, "int16": int16,
    "int32": int32, "int": int32, "int64": int64, "long": int64, "bool": bool_,
}


def get_default_dtype():
    return _default_float


def set_default_dtype(dtype):
    global _default_float
    dtype = as_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"default dtype must be a floating dtype, got {dtype}")
    _default_float = dtype


def as_dtype(dtype) -> np.dtype:
    """Turn a dtype-like (np.dtype, 'float32', python type, minigen.float32) into an np.dtype."""
    if isinstance(dtype, np.dtype):
        return dtype
    if dtype is None:
        return _default_float
    if isinstance(dtype, _UnavailableDtype):
        return _require_bfloat16()
    if isinstance(dtype, str):
        if dtype == "bfloat16":
            return _require_bfloat16()
        if dtype in _NAMES:
            return _NAMES[dtype]
        raise TypeError(f"unknown dtype {dtype!r}")
    if dtype is builtins_float:
        return _default_float
    if dtype is builtins_int:
        return int64
    if dtype is builtins_bool:
        return bool_
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None


def _require_bfloat16():
    if not _HAVE_BF16:
        raise TypeError("bfloat16 needs the 'ml_dtypes' package on the CPU: pip install ml_dtypes")
    return bfloat16


import builtins as _b  # noqa: E402

builtins_float, builtins_int, builtins_bool = _b.float, _b.int, _b.bool


def is_floating(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or (_HAVE_BF16 and dtype == bfloat16)


def promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's promotion of two tensor dtypes."""
    if a is b or a == b:
        return a
    fa, fb = is_floating(a), is_floating(b)
    if fa and not fb:
        return a
    if fb and not fa:
        return b
    if _HAVE_BF16 and (a == bfloat16 or b == bfloat16):
        other = b if a == bfloat16 else a
        return float32 if other == float16 else (other if other.itemsize > 2 else bfloat16)
    return np.promote_types(a, b)


def scalar_result(dtype: np.dtype, scalar) -> np.dtype:
    """dtype of ``tensor op python_scalar``: the tensor's, unless a float meets an integer/bool
    tensor (then the default float) or an int meets a bool tensor (then int64)."""
    if isinstance(scalar, _b.bool):
        return dtype
    if isinstance(scalar, _b.float) and not is_floating(dtype):
        return _default_float
    if isinstance(scalar, _b.int) and dtype == bool_:
        return int64
    return dtype
