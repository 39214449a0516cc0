"""conv2d and conv_transpose2d (kernel family conv2d). Placeholder until the family lands."""
__all__ = []
