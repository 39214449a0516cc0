"""scaled_dot_product_attention (kernel family attention). Placeholder until the family lands."""
__all__ = []
