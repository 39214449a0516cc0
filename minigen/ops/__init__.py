"""The primitives, one module per kind. Importing this package attaches every op as a Tensor
method (see ``_util.tensor_method``)."""
from . import activation, elementwise, indexing, matmul, reduce, shape  # noqa: F401
from . import loss, nn_misc, normalization, pooling  # noqa: F401
from . import attention, conv, flow, noise_schedule  # noqa: F401  (the kernel layer)
from .elementwise import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .nn_misc import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .noise_schedule import *  # noqa: F401,F403
from .flow import *  # noqa: F401,F403
from . import mathfns  # noqa: F401,E402
from .mathfns import *  # noqa: F401,F403,E402
from . import composite  # noqa: F401,E402
from .composite import *  # noqa: F401,F403,E402
from . import layers  # noqa: F401,E402
from .layers import cdist, cosine_similarity, pairwise_distance  # noqa: F401,E402
from ..linalg import logdet  # noqa: F401,E402
from . import sorting  # noqa: F401,E402
from .sorting import *  # noqa: F401,F403,E402
