"""Neural-network layers: ``Module`` and ``Parameter``, containers, layers, ``functional``
(stateless ops) and ``init`` (in-place initialisers), as in ``torch.nn``."""
from . import functional, init  # noqa: F401
from .activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, \
    Softplus, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .dropout import Dropout
from .linear import Embedding, Flatten, Identity, Linear, Unflatten
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .parameter import Parameter
from . import utils  # noqa: F401,E402
from .conv import *  # noqa: F401,F403,E402
from .attention import *  # noqa: F401,F403,E402
from .flows import *  # noqa: F401,F403,E402
from . import conv as _conv, attention as _attention, flows as _flows  # noqa: E402

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Linear",
           "Embedding", "Identity", "Flatten", "Unflatten", "LayerNorm", "GroupNorm",
           "BatchNorm1d", "BatchNorm2d", "Dropout", "ReLU", "LeakyReLU", "SiLU", "GELU", "Tanh",
           "Sigmoid", "Softplus", "ELU", "Softmax", "LogSoftmax", "functional", "init", "utils"]
__all__ += list(_conv.__all__) + list(_attention.__all__) + list(_flows.__all__)
from .layers import *  # noqa: F401,F403,E402
from . import layers as _layers  # noqa: E402
__all__ += list(_layers.__all__)
