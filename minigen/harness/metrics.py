"""Evaluation every family shares (MATH.md §11): the Fréchet classifier distance (FCD) beside
its floor, with the MNIST classifier it needs, class accuracy, and bits/dim.

Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2):

    FD = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}

(the symmetric form of Tr (Σ1 Σ2)^{1/2}: the two matrices are similar), with both square roots
from ``eigh`` of symmetric PSD matrices in float64, negative round-off eigenvalues clipped to 0.

FCD: FD between Gaussians fitted to the penultimate features of ``MNISTClassifier``
(``minigen.models.classifier``), trained by minigen on the same data. Its floor is the FCD of the
held-out split against the training split: a model cannot be expected to beat real unseen data.
FCD is not comparable with Inception FID (other features, other dimension, other data).

``sample_fcd(images, data)`` is the one call a family makes: FCD of its samples against the
training split, and the floor, for 1×28×28 data (MNIST-like), the classifier trained once and
cached.

bits/dim of a negative log-likelihood L (nats per example of D dimensions): L / (D ln 2). How L
is obtained (a discretised decoder, dequantisation of 8-bit data) is the family's part;
``bits_per_dim(nats, dims)`` only converts.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, tensor

__all__ = ["frechet_distance", "feature_statistics", "fcd", "fcd_floor", "class_accuracy",
           "sample_fcd", "bits_per_dim"]


def bits_per_dim(nats, dims: int) -> float:
    """L nats per example of ``dims`` dimensions → L / (D ln 2) bits per dimension."""
    return float(nats) / (dims * math.log(2.0))


def sample_fcd(images, data, device="cpu", log=print) -> dict:
    """{"fcd", "fcd_floor", "fcd_samples"} of ``images`` ((N, 1, 28, 28) in [−1, 1]) against
    ``data``'s training split, beside the floor (held-out vs training); {} for data of another
    shape (the classifier is MNIST's)."""
    if tuple(data.shape) != (1, 28, 28):
        log(f"(FCD needs the MNIST classifier: skipped for {tuple(data.shape)} images)")
        return {}
    from .classifier import train_classifier
    clf = train_classifier(device=device, log=log)
    ref = feature_statistics(clf, data.to_float(data.train), device=device)
    floor = fcd(clf, data.to_float(data.heldout), ref, device=device)
    return {"fcd": fcd(clf, images, ref, device=device), "fcd_floor": floor,
            "fcd_samples": int(len(images))}


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigh; round-off negatives → 0)."""
    w, v = np.linalg.eigh((a + a.T) * 0.5)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}, float64 (module doc)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                   np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2,
                                                                                     np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes μ1 {mu1.shape}, Σ1 {s1.shape}, μ2 "
                         f"{mu2.shape}, Σ2 {s2.shape} do not describe two {d}-dim Gaussians")
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    w = np.linalg.eigvalsh((m + m.T) * 0.5)
    tr_covmean = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def feature_statistics(classifier, images, batch_size: int = 500, device="cpu"):
    """(μ, Σ) float64 of ``classifier.features`` over images ((N, 1, 28, 28) in [−1, 1], or
    uint8 0..255)."""
    x = images
    if isinstance(x, Tensor):
        x = np.asarray(x.detach().to("cpu").numpy())
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    if x.ndim == 3:
        x = x[:, None]
    feats = []
    was = classifier.training
    classifier.eval()
    with no_grad():
        for s in range(0, len(x), batch_size):
            f = classifier.features(tensor(np.ascontiguousarray(x[s:s + batch_size],
                                                                dtype=np.float32), device=device))
            feats.append(np.asarray(f.to("cpu").numpy(), dtype=np.float64))
    classifier.train(was)
    f = np.concatenate(feats)
    if len(f) < 2:
        raise ValueError("feature_statistics: need at least 2 images")
    return f.mean(0), np.cov(f, rowvar=False)


def fcd(classifier, images, reference, batch_size: int = 500, device="cpu") -> float:
    """FCD of ``images`` against ``reference``: images, or their (μ, Σ) from
    ``feature_statistics`` (for the training split, compute once and reuse)."""
    if isinstance(reference, tuple) and len(reference) == 2:
        mu_r, s_r = reference
    else:
        mu_r, s_r = feature_statistics(classifier, reference, batch_size, device)
    mu, s = feature_statistics(classifier, images, batch_size, device)
    return frechet_distance(mu, s, mu_r, s_r)


def fcd_floor(classifier, train_images, heldout_images, device="cpu") -> float:
    """The FCD of real held-out images against the training split (module doc)."""
    return fcd(classifier, heldout_images, train_images, device=device)


def class_accuracy(classifier, images, labels, device="cpu") -> float:
    """Share of (class-conditional) samples that ``classifier`` assigns to their label."""
    from .classifier import accuracy
    x = images
    if isinstance(x, Tensor):
        x = np.asarray(x.detach().to("cpu").numpy())
    if isinstance(labels, Tensor):
        labels = np.asarray(labels.to("cpu").numpy())
    return accuracy(classifier, np.asarray(x, dtype=np.float32), np.asarray(labels),
                    device=device)
