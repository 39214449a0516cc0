"""The special functions the distributions use: lgamma and digamma are the engine's
(``minigen/ops/mathfns.py``; array level ``minigen/ops/special.py``); ``xlogy`` is this package's
own, because its gradient at x = 0 differs from ``torch.xlogy``'s on purpose (below)."""
from __future__ import annotations

from ..ops.mathfns import digamma, lgamma  # noqa: F401
from ..ops.special import digamma as digamma_array  # noqa: F401


def xlogy(x, y):
    """x log y, 0 where x = 0 = y. d/dx = log y (also at x = 0, where the log-density of a
    Gamma/Beta with concentration 1 still depends on it), d/dy = x / y; at x = y = 0 the log's
    argument is made 1 so both stay finite (0)."""
    from ..ops.elementwise import where
    both_zero = (x == 0).logical_and(y == 0)
    return x * where(both_zero, 1.0, y).log()
