"""2-D toy densities with KNOWN log-densities, as datasets of the registry (kind "points"):
``--data moons | 8gaussians | checkerboard | ring``. Samples are drawn by seeded code (the
training split with seed 0, the held-out split with seed 1), so every run sees the same points.

    moons         two half circles of radius 1, p = ½ Σ_k (1/π) ∫_0^π N(x; c_k(θ), σ² I) dθ,
                  c_1(θ) = (cos θ − ½, sin θ − ¼), c_2(θ) = (½ − cos θ, ¼ − sin θ), σ = 0.1
                  (scikit-learn's make_moons layout, centred); the θ-integral by 256-node
                  Gauss–Legendre quadrature (a Gaussian of width σ = 0.1 rad on [0, π]: the
                  rule is exact to round-off; tests/test_flow_models.py checks ∫p = 1)
    8gaussians    ⅛ Σ_k N(x; 2 (cos kπ/4, sin kπ/4), 0.25² I)
    checkerboard  uniform on the 8 unit squares [i, i+1) × [j, j+1) ⊂ [−2, 2)² with i + j even:
                  p = 1/8 there, 0 elsewhere; entropy log 8
    ring          angle ~ U[0, 2π), radius r ~ N(2, 0.2²) truncated to r > 0:
                  p(x) = φ((|x| − 2)/0.2) / (0.2 · 2π |x| · Φ(10))

``density.log_prob(x)`` (float64, −inf outside the support) makes KL(p‖q) of a model q
estimable: KL = E_p[log p − log q] over fresh samples of p (minigen/flows/family.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ToyDensity", "PointDataset", "DENSITIES", "load_toy", "N_TRAIN", "N_HELDOUT"]

N_TRAIN, N_HELDOUT = 100_000, 20_000
_LOG_2PI = math.log(2.0 * math.pi)


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis)


class ToyDensity:
    name = ""
    bounds = (-3.0, 3.0, -3.0, 3.0)        # plotting window (x0, x1, y0, y1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Moons(ToyDensity):
    name, sigma = "moons", 0.1
    bounds = (-2.0, 2.0, -1.5, 1.5)

    def __init__(self, nodes: int = 256):
        t, w = np.polynomial.legendre.leggauss(nodes)
        self.theta = (t + 1.0) * (math.pi / 2.0)       # [−1, 1] → [0, π]
        self.log_w = np.log(w * (math.pi / 2.0) / math.pi)   # dθ/π, the uniform angle

    def centres(self, theta):
        c1 = np.stack([np.cos(theta) - 0.5, np.sin(theta) - 0.25], -1)
        return c1, -c1

    def sample(self, n, rng):
        k = rng.integers(0, 2, n)
        theta = rng.uniform(0.0, math.pi, n)
        c1, c2 = self.centres(theta)
        return np.where(k[:, None] == 0, c1, c2) + self.sigma * rng.standard_normal((n, 2))

    def log_prob(self, x):
        x = np.asarray(x, dtype=np.float64)
        s2 = self.sigma ** 2
        out = []
        for chunk in np.array_split(x, max(1, len(x) // 4096)):
            terms = []
            for c in self.centres(self.theta):     # (nodes, 2) each
                d2 = ((chunk[:, None, :] - c[None]) ** 2).sum(-1)
                terms.append(self.log_w - d2 / (2 * s2) - math.log(2 * math.pi * s2))
            out.append(_logsumexp(np.concatenate(terms, 1), 1) - math.log(2.0))
        return np.concatenate(out) if out else np.zeros(0)


class EightGaussians(ToyDensity):
    name, radius, sigma = "8gaussians", 2.0, 0.25
    bounds = (-3.0, 3.0, -3.0, 3.0)

    def __init__(self):
        a = np.arange(8) * math.pi / 4
        self.means = self.radius * np.stack([np.cos(a), np.sin(a)], -1)

    def sample(self, n, rng):
        return self.means[rng.integers(0, 8, n)] + self.sigma * rng.standard_normal((n, 2))

    def log_prob(self, x):
        x = np.asarray(x, dtype=np.float64)
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        s2 = self.sigma ** 2
        return _logsumexp(-d2 / (2 * s2), 1) - math.log(2 * math.pi * s2) - math.log(8.0)


class Checkerboard(ToyDensity):
    name = "checkerboard"
    bounds = (-2.5, 2.5, -2.5, 2.5)

    def __init__(self):
        self.cells = np.array([(i, j) for i in range(-2, 2) for j in range(-2, 2)
                               if (i + j) % 2 == 0], dtype=np.float64)   # 8 lower-left corners

    def sample(self, n, rng):
        return self.cells[rng.integers(0, 8, n)] + rng.random((n, 2))

    def log_prob(self, x):
        x = np.asarray(x, dtype=np.float64)
        cell = np.floor(x)
        ok = ((x >= -2.0) & (x < 2.0)).all(1) & ((cell[:, 0] + cell[:, 1]) % 2 == 0)
        return np.where(ok, -math.log(8.0), -np.inf)


class Ring(ToyDensity):
    name, radius, sigma = "ring", 2.0, 0.2
    bounds = (-3.0, 3.0, -3.0, 3.0)

    def sample(self, n, rng):
        r = self.radius + self.sigma * rng.standard_normal(n)
        while (r <= 0).any():                       # truncation to r > 0 (P ≈ 1e−23)
            bad = r <= 0
            r[bad] = self.radius + self.sigma * rng.standard_normal(int(bad.sum()))
        a = rng.uniform(0.0, 2 * math.pi, n)
        return np.stack([r * np.cos(a), r * np.sin(a)], -1)

    def log_prob(self, x):
        x = np.asarray(x, dtype=np.float64)
        r = np.sqrt((x ** 2).sum(1))
        u = (r - self.radius) / self.sigma
        log_trunc = math.log(0.5 * math.erfc(-self.radius / self.sigma / math.sqrt(2)))
        with np.errstate(divide="ignore"):
            return (-0.5 * u * u - 0.5 * _LOG_2PI - math.log(self.sigma) - _LOG_2PI
                    - np.log(r) - log_trunc)


DENSITIES = {d.name: d for d in (Moons(), EightGaussians(), Checkerboard(), Ring())}


@dataclass
class PointDataset:
    """Train and held-out points (N, 2) float32 of a known density."""
    name: str
    train: np.ndarray
    heldout: np.ndarray
    density: ToyDensity
    source: str = "seeded generator (minigen/data/toy2d.py)"

    @property
    def shape(self) -> tuple:
        return tuple(self.train.shape[1:])

    def describe_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "shape": list(self.shape),
                "n_train": len(self.train), "n_heldout": len(self.heldout), "kind": "points"}

    def describe(self) -> str:
        return (f"{self.name} ({self.source}): {len(self.train)} train / {len(self.heldout)} "
                "held-out points in 2-D")


def load_toy(name: str, data_dir=None, limit=None) -> PointDataset:
    if name not in DENSITIES:
        raise ValueError(f"unknown 2-D density {name!r}; known: {', '.join(DENSITIES)}")
    if data_dir is not None:
        raise ValueError(f"--data {name} is generated by code: --data-dir does not apply")
    d = DENSITIES[name]
    train = d.sample(N_TRAIN, np.random.default_rng(0)).astype(np.float32)
    held = d.sample(N_HELDOUT, np.random.default_rng(1)).astype(np.float32)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be positive, got {limit}")
        train = train[:limit]
    return PointDataset(name, train, held, d)


def _register():
    from .images import register_dataset
    helps = {"moons": "two moons, σ 0.1 (2-D, known density)",
             "8gaussians": "8 Gaussians on a circle of radius 2, σ 0.25 (2-D, known density)",
             "checkerboard": "uniform on 8 squares of a 4x4 board (2-D, known density)",
             "ring": "a ring of radius 2, radial σ 0.2 (2-D, known density)"}
    for name in DENSITIES:
        register_dataset(name, (lambda n: lambda data_dir, limit: load_toy(n, data_dir, limit))(
            name), "points", helps[name])


_register()
