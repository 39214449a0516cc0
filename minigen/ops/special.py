"""Special functions numpy lacks. erf comes from the native extension (C++ ``std::erf``, OpenMP)
when it is built, from ``cupyx.scipy.special`` on the GPU, and from Python's ``math.erf``
element by element otherwise (exact, but slow)."""
from __future__ import annotations

import math

import numpy as np

_erf_py = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    if isinstance(x, (np.ndarray, np.generic)):
        from .. import _native
        if _native.available() and x.dtype in (np.float32, np.float64):
            # (ascontiguousarray makes 0-d input 1-d: reshape back)
            return _native.module().erf(np.ascontiguousarray(x)).reshape(x.shape)
        # frompyfunc gives an object array (a bare Python float for 0-d input)
        return np.asarray(_erf_py(x), dtype=x.dtype)
    import cupyx.scipy.special as cs  # cupy arrays
    return cs.erf(x)
