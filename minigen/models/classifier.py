"""The MNIST classifiers minigen trains itself for evaluation and guidance (MATH.md §8, §11):
the networks. Their training, caching and prediction helpers are in
``minigen/harness/classifier.py`` (shared evaluation, used by every family).

Two uses:
- **Evaluation** (``MNISTClassifier``): its penultimate layer gives the features of the
  Fréchet classifier distance (FCD, ``minigen.harness.metrics.fcd``) and its predictions
  the accuracy of class-conditional samples. Trained on clean images.
- **Classifier guidance** (``NoisyClassifier``): the same network with a timestep input,
  trained on noised images x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (t uniform), so that
  ∇_{x_t} log p_φ(y | x_t) is meaningful at every noise level (the sampler's
  ε̄ = ε_θ − γ √(1 − ᾱ_t) ∇ log p_φ(y | x_t)).

Network (input (N, 1, 28, 28) in [−1, 1], the diffusion models' scaling):

    h = maxpool2(ReLU(conv3×3(x) → 16))                 (N, 16, 14, 14)
    h = maxpool2(ReLU(conv3×3(h) → 32))                 (N, 32, 7, 7)
    f = ReLU(Linear(32·7·7 → feature_dim)(flatten h))   (N, feature_dim)   ← FCD features
    logits = Linear(feature_dim → 10)(f)

(~0.21M parameters, ~1.2M multiply-adds per image forward: an epoch over 4500 images is a
few seconds of CPU; ``image_size`` s other than 28 gives Linear(32·(s/4)² → feature_dim).) The
noisy classifier is the same network with GroupNorm before each ReLU (the input's scale
changes with t) and Linear(sinusoid(t)) added after each conv and to the feature layer.
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from .unet import _sinusoid_freqs, timestep_embedding

__all__ = ["MNISTClassifier", "NoisyClassifier", "NUM_CLASSES"]

NUM_CLASSES = 10


class MNISTClassifier(nn.Module):
    """x (N, 1, 28, 28) in [−1, 1] → logits (N, 10); ``features(x)`` → (N, feature_dim)."""

    def __init__(self, feature_dim: int = 128, in_channels: int = 1, num_classes: int = 10,
                 image_size: int = 28, device=None, dtype=None, generator=None):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"MNISTClassifier: image_size must be divisible by 4, got "
                             f"{image_size}")
        kw = dict(device=device, dtype=dtype)
        self.config = dict(feature_dim=feature_dim, in_channels=in_channels,
                           num_classes=num_classes, image_size=image_size)
        self.feature_dim = feature_dim
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, **kw)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, **kw)
        self.fc = nn.Linear(32 * (image_size // 4) ** 2, feature_dim, **kw)
        self.head = nn.Linear(feature_dim, num_classes, **kw)
        if generator is not None:
            for m in (self.conv1, self.conv2, self.fc, self.head):
                m.reset_parameters(generator=generator)

    def features(self, x):
        """The penultimate activations f (N, feature_dim): the FCD features."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.reshape(h.shape[0], -1)))

    def forward(self, x):
        return self.head(self.features(x))


class NoisyClassifier(nn.Module):
    """p_φ(y | x_t, t): x_t (N, 1, s, s), t (N,) integer timesteps → logits (N, 10).

    The clean network with GroupNorm before each ReLU and the time added as in the UNet:
    e = sinusoid(t) (width ``temb_channels``), Linear(e) added per channel after each conv and
    to the feature layer's pre-activation.
    """

    def __init__(self, feature_dim: int = 128, in_channels: int = 1, num_classes: int = 10,
                 temb_channels: int = 32, image_size: int = 28, device=None, dtype=None,
                 generator=None):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"NoisyClassifier: image_size must be divisible by 4, got "
                             f"{image_size}")
        kw = dict(device=device, dtype=dtype)
        self.config = dict(feature_dim=feature_dim, in_channels=in_channels,
                           num_classes=num_classes, temb_channels=temb_channels,
                           image_size=image_size)
        self.temb_channels = temb_channels
        self.register_buffer("freqs", _sinusoid_freqs(temb_channels, dtype, device),
                             persistent=False)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, **kw)
        self.norm1 = nn.GroupNorm(4, 16, **kw)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, **kw)
        self.norm2 = nn.GroupNorm(8, 32, **kw)
        self.fc = nn.Linear(32 * (image_size // 4) ** 2, feature_dim, **kw)
        self.time_proj = nn.Linear(temb_channels, 16 + 32 + feature_dim, **kw)
        self.head = nn.Linear(feature_dim, num_classes, **kw)
        if generator is not None:
            for m in (self.time_proj, self.conv1, self.conv2, self.fc, self.head):
                m.reset_parameters(generator=generator)

    def forward(self, x, t):
        if t.ndim == 0:
            t = t.reshape(1).expand(x.shape[0])
        e = self.time_proj(timestep_embedding(t.to(self.freqs.dtype), self.temb_channels,
                                              self.freqs))
        f = self.fc.out_features
        h = self.conv1(x) + e[:, :16, None, None]
        h = F.max_pool2d(F.relu(self.norm1(h)), 2)
        h = self.conv2(h) + e[:, 16:48, None, None]
        h = F.max_pool2d(F.relu(self.norm2(h)), 2)
        h = F.relu(self.fc(h.reshape(h.shape[0], -1)) + e[:, 48:48 + f])
        return self.head(h)


# ---------------------------------------------------------------------- evaluation helpers
