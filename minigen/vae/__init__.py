"""The VAE family (``minigen train vae``): what is particular to it is in ``family.py``; the
network is ``minigen.models.vae.VAE``."""
from .family import VAEConfig, VAEFamily, binarize, heldout_elbo  # noqa: F401
