"""The primitives, one module per kind. Importing this package attaches every op as a Tensor
method (see ``_util.tensor_method``)."""
from . import elementwise, indexing, matmul, reduce, shape  # noqa: F401
from . import loss, nn_misc, normalization, pooling  # noqa: F401
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .nn_misc import *  # noqa: F401,F403
