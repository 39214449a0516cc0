"""MultiheadAttention. Placeholder until the family lands."""
__all__ = []
