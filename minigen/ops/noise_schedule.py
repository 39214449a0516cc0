"""Fused diffusion noise-schedule ops (kernel family noise_schedule). Placeholder until the family lands."""
__all__ = []
