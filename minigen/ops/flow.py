"""Fused normalizing-flow primitives: actnorm, invertible 1x1 conv (LU), affine coupling (kernel family logdet). Placeholder until the family lands."""
__all__ = []
