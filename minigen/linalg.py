"""minigen.linalg: slogdet, inv, solve on one LU factorisation (kernel family logdet). Placeholder until the family lands."""
__all__ = []
