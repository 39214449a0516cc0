"""Reference models built on ``minigen.nn``; each file is one model in the notation of MATH.md.

- ``VAE`` (``vae.py``): the MLP VAE of workload E1; trained by ``vae_train.py``
  (``minigen train vae``).
"""
from .vae import VAE

__all__ = ["VAE"]
