"""PyTorch twins of the BENCH.md end-to-end workloads, for benchmarks only.

Built from the same description as the minigen models (not from their code), with the same
parameter names, so ``copy_minigen_params`` can give both the same initial weights. PyTorch is
never a dependency of minigen: only ``benchmarks/`` imports this file.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TorchVAE(nn.Module):
    """E1: 784 → 512 (ReLU) → μ, log σ² (20 each); 20 → 512 (ReLU) → 784 Bernoulli logits."""

    def __init__(self, x_dim: int = 784, hidden: int = 512, z_dim: int = 20):
        super().__init__()
        self.enc = nn.Linear(x_dim, hidden)
        self.enc_mu = nn.Linear(hidden, z_dim)
        self.enc_logvar = nn.Linear(hidden, z_dim)
        self.dec = nn.Linear(z_dim, hidden)
        self.dec_out = nn.Linear(hidden, x_dim)

    def forward(self, x, eps):
        h = F.relu(self.enc(x))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.dec_out(F.relu(self.dec(z))), mu, logvar

    def loss(self, x, eps):
        """Negative ELBO per sample, batch mean: Σ BCE-with-logits + ½ Σ (μ² + σ² − 1 − log σ²)."""
        logits, mu, logvar = self(x, eps)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum()
        return (rec + kl) / x.shape[0]


def copy_minigen_params(torch_model: nn.Module, minigen_model) -> None:
    """Overwrite the torch model's parameters with the minigen model's (same names, shapes)."""
    src = dict(minigen_model.named_parameters())
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if name not in src:
                raise KeyError(f"minigen model has no parameter {name!r}")
            value = torch.from_numpy(src[name].detach().numpy().copy())
            if value.shape != p.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} vs {tuple(p.shape)}")
            p.copy_(value)
