"""Glow's flow layers: ``ActNorm``, ``InvConv2dLU``, ``AffineCoupling`` (MATH.md §4).

Convention (normflows/nflows): ``forward(x) -> (y, log_det)`` maps data → latent (the
direction of the likelihood, log p(x) = log p_Z(z) + Σ log_det), ``inverse(y) -> (x, log_det)``
maps latent → data with log_det = −(forward's log-det) at that point. log_det has shape (N,).
The math and its fused kernels are in ``minigen/ops/flow.py`` (family ``logdet``).
"""
from __future__ import annotations

import numpy as np

from .. import creation, no_grad
from ..dtypes import get_default_dtype
from ..backend import xp_of
from ..ops import flow as F
from ..tensor import tensor as _tensor
from .module import Module
from .parameter import Parameter

__all__ = ["ActNorm", "InvConv2dLU", "AffineCoupling"]


class ActNorm(Module):
    """y = exp(log_scale) ⊙ x + bias per channel, on x (N, C, *); log_det = M Σ log_scale.

    Data-dependent initialisation (Glow): the first ``forward`` in training mode (or an explicit
    ``initialize(x)``) sets bias and log_scale so that that batch comes out with zero mean and
    unit variance per channel: s = 1/(std + eps), b = −mean · s.
    """

    def __init__(self, num_features: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps = int(num_features), eps
        self.log_scale = Parameter(creation.zeros(num_features, dtype=dtype, device=device))
        self.bias = Parameter(creation.zeros(num_features, dtype=dtype, device=device))
        self.register_buffer("initialized", creation.zeros(1, dtype=dtype, device=device))

    @no_grad()
    def initialize(self, x):
        """Set bias, log_scale from the batch x: per channel zero mean, unit variance."""
        axes = (0,) + tuple(range(2, x.ndim))
        xp = xp_of(x.data)
        d = x.data.astype(xp.float64)
        s = 1.0 / (d.std(axis=axes) + self.eps)
        dt = self.log_scale.data.dtype
        self.log_scale.data[...] = xp.log(s).astype(dt)
        self.bias.data[...] = (-d.mean(axis=axes) * s).astype(dt)
        self.initialized.data[...] = 1

    def forward(self, x):
        if self.training and not bool(self.initialized.data[0]):
            self.initialize(x)
        return F.actnorm(x, self.log_scale, self.bias)

    def inverse(self, y):
        return F.actnorm(y, self.log_scale, self.bias, reverse=True)

    def extra_repr(self) -> str:
        return f"{self.num_features}"


class InvConv2dLU(Module):
    """Invertible 1×1 convolution, W = P L (U + diag s) (Glow's LU form), on x (N, C, *).

    P is a fixed permutation (buffer ``perm``), L = tril(lower, −1) + I, U = triu(upper, 1),
    s = sign_s ⊙ exp(log_s) with sign_s fixed (buffer) and log_s learned: log_det = M Σ log_s
    with M positions, O(C) instead of an O(C³) determinant. Initialised, as Glow, from the LU
    factorisation of a random orthogonal matrix (log_det 0 at the start).
    """

    def __init__(self, num_channels: int, generator=None, device=None, dtype=None):
        super().__init__()
        c = self.num_channels = int(num_channels)
        q = creation.randn(c, c, generator=generator, dtype="float64").data
        q = np.linalg.qr(np.asarray(q))[0]                     # a random orthogonal matrix
        from ..reference.logdet import lu_factor, pivots_to_permutation
        lu, piv, _ = lu_factor(q)                               # P_r q = L U
        perm = pivots_to_permutation(piv)
        p = np.eye(c)[perm].T                                   # q = P_rᵀ L U: P = P_rᵀ
        d = np.diag(lu)

        dtype = dtype if dtype is not None else get_default_dtype()

        def t(a, param):
            v = _tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
            return Parameter(v) if param else v
        self.register_buffer("perm", t(p, False))
        self.register_buffer("sign_s", t(np.sign(d), False))
        self.lower = t(np.tril(lu, -1), True)
        self.upper = t(np.triu(lu, 1), True)
        self.log_s = t(np.log(np.abs(d)), True)

    def weight(self, inverse: bool = False):
        """W (C, C), or W⁻¹ (by triangular solves) when ``inverse``."""
        return F.invconv_lu_weight(self.perm, self.lower, self.upper, self.log_s, self.sign_s,
                                   inverse=inverse)

    def forward(self, x):
        return F.invconv2d_lu(x, self.perm, self.lower, self.upper, self.log_s, self.sign_s)

    def inverse(self, y):
        return F.invconv2d_lu(y, self.perm, self.lower, self.upper, self.log_s, self.sign_s,
                              reverse=True)

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


class AffineCoupling(Module):
    """Glow's affine coupling on x (N, C, *), C even.

    x_a = x[:, :C/2] is transformed, x_b = x[:, C/2:] passes through; h = nn(x_b) (the user's
    network: C/2 channels → C channels), raw = h[:, :C/2], t = h[:, C/2:], s = sigmoid(raw + 2):
        forward  y_a = s ⊙ x_a + t,   log_det = Σ log s
        inverse  x_a = (y_a − t) / s, log_det = −Σ log s
    The affine map and its log-det run in one fused kernel (``minigen.affine_coupling``).
    Glow initialises the network's last layer to zero so the layer starts near the identity.
    """

    def __init__(self, nn: Module):
        super().__init__()
        self.nn = nn

    def _h(self, x):
        c = x.shape[1]
        if c % 2:
            raise RuntimeError(f"AffineCoupling: the input needs an even number of channels, "
                               f"got shape {tuple(x.shape)}")
        h = self.nn(x[:, c // 2:])
        if tuple(h.shape) != tuple(x.shape):
            raise RuntimeError(f"AffineCoupling: nn(x_b) must have shape {tuple(x.shape)} "
                               f"(log-scale and shift, C/2 channels each), got {tuple(h.shape)}")
        return h

    def forward(self, x):
        return F.affine_coupling(x, self._h(x))

    def inverse(self, y):
        return F.affine_coupling(y, self._h(y), reverse=True)
