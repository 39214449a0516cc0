"""``Dropout``: in training, zero each element with probability p and scale the rest by
1/(1 − p) (so E[y] = x); in evaluation, the identity.

``generator=`` (a ``minigen.Generator``) makes the masks reproducible independently of the
global random state; its state is saved with ``generator.get_state()`` for exact resume.
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p, self.inplace, self.generator = float(p), inplace, generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, inplace=self.inplace, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


__all__ = ["Dropout"]
