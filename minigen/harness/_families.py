"""The built-in families, imported for their ``@register``."""
from ..diffusion import family as _ddpm  # noqa: F401
from ..vae import family as _vae  # noqa: F401
from ..flows import family as _flows  # noqa: F401
