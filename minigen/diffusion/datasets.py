"""The image datasets moved to ``minigen.data.images`` (the registry every family shares);
this name stays for existing imports."""
from ..data.images import DATASETS, ImageDataset, load_image_dataset  # noqa: F401

__all__ = ["ImageDataset", "load_image_dataset", "DATASETS"]
