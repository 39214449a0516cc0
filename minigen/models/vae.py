"""The MLP variational autoencoder of workload E1 (BENCH.md), in the notation of MATH.md §1.

    encoder q_φ(z|x) = N(μ, diag σ²):   h = ReLU(W₁x + b₁),  μ = W_μ h + b_μ,  log σ² = W_v h + b_v
    reparameterization:                 z = μ + σ ⊙ ε,  σ = exp(½ log σ²),  ε ~ N(0, I)
    decoder p_θ(x|z) = Bernoulli(sigmoid(ℓ)):  ℓ = W₃ ReLU(W₂z + b₂) + b₃  (ℓ: logits)
    ELBO(x) = E_q[log p(x|z)] − KL(q ‖ N(0, I))
            ≈ −Σ_d BCEwithLogits(ℓ_d, x_d) − ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)      (one ε)

Shapes (MNIST): x (B, 784) with values in [0, 1] (the Bernoulli targets), h (B, 512),
μ, log σ² (B, 20), ℓ (B, 784). ``loss(x)`` is the negative ELBO averaged over the batch, in
nats per image.

| symbol | name in code |
|---|---|
| μ, log σ², σ | ``mu``, ``logvar``, ``std`` |
| ε, z | ``eps``, ``z`` |
| ℓ | ``logits`` |
"""
from __future__ import annotations

from .. import creation, nn
from ..autograd.grad_mode import no_grad
from ..nn import functional as F

__all__ = ["VAE"]


class VAE(nn.Module):
    """784 → 512 (ReLU) → μ, log σ² (20 each); 20 → 512 (ReLU) → 784 Bernoulli logits."""

    def __init__(self, x_dim: int = 784, hidden: int = 512, z_dim: int = 20, device=None,
                 dtype=None, generator=None):
        super().__init__()
        self.x_dim, self.hidden, self.z_dim = x_dim, hidden, z_dim
        kw = dict(device=device, dtype=dtype)
        self.enc = nn.Linear(x_dim, hidden, **kw)
        self.enc_mu = nn.Linear(hidden, z_dim, **kw)
        self.enc_logvar = nn.Linear(hidden, z_dim, **kw)
        self.dec = nn.Linear(z_dim, hidden, **kw)
        self.dec_out = nn.Linear(hidden, x_dim, **kw)
        if generator is not None:  # a seeded initialisation, independent of the global RNG
            for layer in (self.enc, self.enc_mu, self.enc_logvar, self.dec, self.dec_out):
                layer.reset_parameters(generator=generator)

    # ------------------------------------------------------------------ the two networks
    def encode(self, x):
        """x (B, x_dim) → μ, log σ² (B, z_dim)."""
        h = F.relu(F.linear(x, self.enc.weight, self.enc.bias))
        mu = F.linear(h, self.enc_mu.weight, self.enc_mu.bias)
        logvar = F.linear(h, self.enc_logvar.weight, self.enc_logvar.bias)
        return mu, logvar

    def decode(self, z):
        """z (B, z_dim) → Bernoulli logits ℓ (B, x_dim)."""
        h = F.relu(F.linear(z, self.dec.weight, self.dec.bias))
        return F.linear(h, self.dec_out.weight, self.dec_out.bias)

    def forward(self, x, eps=None, generator=None):
        """x (B, x_dim) → (logits, mu, logvar) with z = μ + σ ⊙ ε.

        eps: the noise ε (B, z_dim); drawn from ``generator`` (or the global one) when None.
        """
        mu, logvar = self.encode(x)
        std = (logvar * 0.5).exp()
        if eps is None:
            eps = creation.randn(*mu.shape, generator=generator, dtype=mu.dtype,
                                 device=mu.device)
        z = mu + std * eps
        return self.decode(z), mu, logvar

    # ------------------------------------------------------------------ objective
    @staticmethod
    def kl(mu, logvar):
        """KL(N(μ, σ²) ‖ N(0, I)) per sample: ½ Σ_j (μ² + σ² − 1 − log σ²), shape (B,)."""
        return ((mu * mu + logvar.exp() - 1.0 - logvar).sum(-1)) * 0.5

    def loss(self, x, eps=None, generator=None):
        """Negative ELBO per sample, averaged over the batch (a scalar, nats)."""
        logits, mu, logvar = self(x, eps=eps, generator=generator)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = (mu * mu + logvar.exp() - 1.0 - logvar).sum() * 0.5
        return (rec + kl) * (1.0 / x.shape[0])

    def elbo_terms(self, x, eps=None, generator=None):
        """Per-sample (reconstruction log-likelihood E_q[log p(x|z)], KL), each (B,); no grad."""
        with no_grad():
            logits, mu, logvar = self(x, eps=eps, generator=generator)
            rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            return rec, self.kl(mu, logvar)

    def elbo(self, x, eps=None, generator=None):
        """Per-sample ELBO (B,) with one draw of ε: a stochastic lower bound on log p(x)."""
        rec, kl = self.elbo_terms(x, eps=eps, generator=generator)
        return rec - kl

    # ------------------------------------------------------------------ generation
    def sample(self, n: int, generator=None):
        """n images from the model: z ~ N(0, I) → Bernoulli means sigmoid(ℓ), shape (n, x_dim)."""
        p = next(iter(self.parameters()))
        with no_grad():
            z = creation.randn(n, self.z_dim, generator=generator, dtype=p.dtype, device=p.device)
            return self.decode(z).sigmoid()

    def reconstruct(self, x):
        """Decode the posterior mean: sigmoid(decode(μ(x))) (B, x_dim)."""
        with no_grad():
            mu, _ = self.encode(x)
            return self.decode(mu).sigmoid()
