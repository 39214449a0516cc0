"""``minigen.special``: the special functions under ``torch.special``'s names.

    import minigen as mg
    mg.special.ndtr(x), mg.special.log_ndtr(x), mg.special.ndtri(p), mg.special.gammaln(x)

Each is the differentiable op of ``minigen/ops/mathfns.py`` (or of the module named); the
array-level formulas and their accuracy are in ``minigen/ops/special.py``.
"""
from .ops.activation import sigmoid as expit
from .ops.elementwise import erf, exp2, expm1, log1p
from .ops.mathfns import (digamma, erfc, erfinv, lgamma as gammaln, log_ndtr, logit, ndtr,
                          ndtri, xlogy)
from .ops.reduce import log_softmax, logsumexp, softmax

psi = digamma

__all__ = ["digamma", "erf", "erfc", "erfinv", "exp2", "expit", "expm1", "gammaln", "log1p",
           "log_ndtr", "log_softmax", "logit", "logsumexp", "ndtr", "ndtri", "psi", "softmax",
           "xlogy"]
