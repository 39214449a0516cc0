"""Reference models built on ``minigen.nn``; each file is one model in the notation of MATH.md.

- ``VAE`` (``vae.py``): the MLP VAE of workload E1; trained by the VAE family
  (``minigen/vae/family.py``, ``minigen train vae``).
- ``UNet`` (``unet.py``): the ε-prediction UNet of the diffusion models; ``UNet.e2()`` is the
  network of workloads E2/E3.
"""
from .unet import UNet
from .vae import VAE

__all__ = ["VAE", "UNet"]
