"""A KL-regularised convolutional autoencoder for latent diffusion (MATH.md §1 and §8;
Rombach et al. 2022's "AutoencoderKL", small).

    encoder q_φ(z | x) = N(μ(x), diag σ²(x)):  (μ, log σ²) = E(x)
                                    x (N, C, H, W) → μ, log σ² (N, c_z, H/4, W/4) each
    z = μ + σ ⊙ ε,  ε ~ N(0, I)     (reparameterization)
    decoder x̂ = D(z)                (N, c_z, h, w) → (N, C, 4h, 4w)
    loss = (1/N) Σ_n [ Σ_d (x − x̂)²  +  β · ½ Σ_j (μ² + σ² − 1 − log σ²) ]
           reconstruction (squared error summed over pixels) + β · KL(q ‖ N(0, I)), per image

With images in [−1, 1] the squared error is the Gaussian log-likelihood up to constants; a small
β (default 1e-3) keeps the latents close to deterministic while the KL keeps their scale bounded
and their neighbourhoods decodable: what the diffusion in latent space needs. MNIST 1×28×28 →
4×7×7 latents (196 numbers, a quarter of the pixels).

Layout (w1, w2 = ``channels``):

    E: conv3×3(C → w1), SiLU, conv3×3/2(w1 → w2), SiLU, conv3×3/2(w2 → w2), SiLU,
       conv3×3(w2 → 2 c_z)  → split into μ, log σ² (clamped to [−30, 20])
    D: conv3×3(c_z → w2), SiLU, up×2, conv3×3(w2 → w2), SiLU, up×2, conv3×3(w2 → w1), SiLU,
       conv3×3(w1 → C)                                   (up×2: nearest-neighbour upsampling)

| symbol | name in code |
|---|---|
| μ, log σ² | ``mean``, ``logvar`` |
| β | ``beta`` |
| ε, z, x̂ | ``eps``, ``z``, ``recon`` |

Its training is the latent-diffusion family's part: ``minigen/diffusion/autoencoder_train.py``.
"""
from __future__ import annotations

from .. import creation, nn
from ..autograd.grad_mode import no_grad
from ..nn import functional as F

__all__ = ["AutoencoderKL"]


class AutoencoderKL(nn.Module):
    """x (N, in_channels, H, W) in [−1, 1] ↔ z (N, latent_channels, H/4, W/4); H, W % 4 == 0."""

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, channels=(16, 32),
                 beta: float = 1e-3, device=None, dtype=None, generator=None):
        super().__init__()
        w1, w2 = channels
        self.config = dict(in_channels=in_channels, latent_channels=latent_channels,
                           channels=list(channels), beta=beta)
        self.in_channels, self.latent_channels, self.beta = in_channels, latent_channels, beta
        kw = dict(device=device, dtype=dtype)
        self.enc = nn.ModuleList([
            nn.Conv2d(in_channels, w1, 3, padding=1, **kw),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1, **kw),
            nn.Conv2d(w2, w2, 3, stride=2, padding=1, **kw),
            nn.Conv2d(w2, 2 * latent_channels, 3, padding=1, **kw)])
        self.dec = nn.ModuleList([
            nn.Conv2d(latent_channels, w2, 3, padding=1, **kw),
            nn.Conv2d(w2, w2, 3, padding=1, **kw),
            nn.Conv2d(w2, w1, 3, padding=1, **kw),
            nn.Conv2d(w1, in_channels, 3, padding=1, **kw)])
        if generator is not None:
            for m in list(self.enc) + list(self.dec):
                m.reset_parameters(generator=generator)

    # ------------------------------------------------------------------ the two networks
    def encode(self, x):
        """x (N, C, H, W) → (mean, logvar), each (N, c_z, H/4, W/4)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"AutoencoderKL.encode: x must be (N, {self.in_channels}, H, W) "
                             f"with H, W divisible by 4, got shape {tuple(x.shape)}")
        h = x
        for conv in self.enc[:-1]:
            h = F.silu(conv(h))
        h = self.enc[-1](h)
        c = self.latent_channels
        return h[:, :c], h[:, c:].clamp(-30.0, 20.0)

    def decode(self, z):
        """z (N, c_z, h, w) → x̂ (N, C, 4h, 4w)."""
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"AutoencoderKL.decode: z must be (N, {self.latent_channels}, h, w),"
                             f" got shape {tuple(z.shape)}")
        h = F.silu(self.dec[0](z))
        h = F.silu(self.dec[1](F.interpolate(h, scale_factor=2, mode="nearest")))
        h = F.silu(self.dec[2](F.interpolate(h, scale_factor=2, mode="nearest")))
        return self.dec[3](h)

    def forward(self, x, eps=None, generator=None):
        """x → (x̂, mean, logvar) with z = μ + σ ⊙ ε (ε drawn when not given)."""
        mean, logvar = self.encode(x)
        if eps is None:
            eps = creation.randn(*mean.shape, generator=generator, dtype=mean.dtype,
                                 device=mean.device)
        z = mean + (logvar * 0.5).exp() * eps
        return self.decode(z), mean, logvar

    # ------------------------------------------------------------------ objective
    @staticmethod
    def kl(mean, logvar):
        """KL(N(μ, σ²) ‖ N(0, I)) per image (N,): ½ Σ (μ² + σ² − 1 − log σ²)."""
        n = mean.shape[0]
        return ((mean * mean + logvar.exp() - 1.0 - logvar) * 0.5).reshape(n, -1).sum(1)

    def loss(self, x, eps=None, generator=None, beta: float | None = None):
        """(total, reconstruction, kl): batch means per image; total = rec + β·kl."""
        beta = self.beta if beta is None else beta
        recon, mean, logvar = self(x, eps=eps, generator=generator)
        n = x.shape[0]
        rec = ((recon - x) ** 2).sum() * (1.0 / n)
        kl = self.kl(mean, logvar).sum() * (1.0 / n)
        return rec + kl * beta, rec, kl

    def reconstruct(self, x):
        """D(μ(x)), no grad."""
        with no_grad():
            return self.decode(self.encode(x)[0])
