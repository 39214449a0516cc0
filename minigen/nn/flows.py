"""Flow layers: ActNorm, InvConv2dLU, AffineCoupling. Placeholder until the family lands."""
__all__ = []
