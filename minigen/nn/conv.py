"""Conv2d, ConvTranspose2d. Placeholder until the family lands."""
__all__ = []
