"""The flow containers (MATH.md §4), normflows/nflows conventions.

A flow layer maps data → latent: ``forward(x) -> (z, log_det)`` with log_det (N,) =
log|det ∂z/∂x| per sample, and ``inverse(z) -> (x, log_det)`` with the negated log-det. A
``FlowSequential`` chains layers and sums their log-dets (inverse: reversed order). A
``NormalizingFlow`` is a flow with a base density p_Z:

    log p_X(x) = log p_Z(f(x)) + log|det ∂f(x)/∂x|

and offers ``forward(x) -> (z, log_det)``, ``inverse(z) -> x``, ``log_prob(x)``,
``sample(n, temperature=1.0, generator=None)``.
"""
from __future__ import annotations

from .. import creation
from ..nn.container import ModuleList
from ..nn.module import Module
from ..tensor import Tensor

__all__ = ["Flow", "FlowSequential", "NormalizingFlow", "zero_logdet", "check_finite"]


def zero_logdet(x):
    """The (N,) zero log-det of a volume-preserving layer, on x's device and dtype."""
    return creation.zeros(x.shape[0], dtype=x.dtype, device=x.device)


def check_finite(op, x):
    """ValueError naming ``op`` if x holds NaN or ±inf (one host read)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: x must be a Tensor, got {type(x).__name__}")
    if not bool(x.isfinite().all().item()):
        raise ValueError(f"{op}: the input holds NaN or infinite values; a density is defined "
                         "for finite points only")


class Flow(Module):
    """A bijection data → latent with its log-det (module doc)."""

    def forward(self, x):
        raise NotImplementedError

    def inverse(self, z):
        raise NotImplementedError


class FlowSequential(Flow):
    """Layers applied in order; log_det = Σ of theirs. inverse runs them backwards."""

    def __init__(self, *flows):
        super().__init__()
        if len(flows) == 1 and isinstance(flows[0], (list, tuple)):
            flows = tuple(flows[0])
        self.flows = ModuleList(list(flows))

    def __len__(self):
        return len(self.flows)

    def __iter__(self):
        return iter(self.flows)

    def __getitem__(self, i):
        return self.flows[i]

    def forward(self, x):
        total = None
        for f in self.flows:
            x, ld = f(x)
            total = ld if total is None else total + ld
        return x, (zero_logdet(x) if total is None else total)

    def inverse(self, z):
        total = None
        for f in reversed(list(self.flows)):
            z, ld = f.inverse(z)
            total = ld if total is None else total + ld
        return z, (zero_logdet(z) if total is None else total)


class NormalizingFlow(Module):
    """A flow (data → latent) with a base distribution p_Z (module doc).

    ``event_shape``, when given, is checked on every input: a wrong channel count or size is
    named in the error instead of surfacing deep inside a layer.
    """

    def __init__(self, flow, base, event_shape=None):
        super().__init__()
        self.flow, self.base = flow, base
        self.event_shape = None if event_shape is None else tuple(int(s) for s in event_shape)

    def _check_shape(self, x):
        if self.event_shape is not None and tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{type(self).__name__}: expected input (N, "
                             f"{', '.join(map(str, self.event_shape))}), got shape "
                             f"{tuple(x.shape)}")

    def forward(self, x):
        self._check_shape(x)
        return self.flow(x)

    def inverse(self, z):
        return self.flow.inverse(z)[0]

    def log_prob(self, x, check=True):
        """log p_X(x) (N,). ``check`` (one host read) refuses non-finite input."""
        if check:
            check_finite(f"{type(self).__name__}.log_prob", x)
        z, ld = self.forward(x)
        return self.base.log_prob(z) + ld

    def _device_dtype(self):
        p = next(iter(self.parameters()), None)
        if p is None:
            p = next(iter(self.buffers()), None)
        return (None, None) if p is None else (p.device, p.dtype)

    def sample(self, n, temperature=1.0, generator=None):
        device, dtype = self._device_dtype()
        z = self.base.sample(n, temperature, generator=generator, device=device, dtype=dtype)
        return self.inverse(z)
