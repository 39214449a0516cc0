"""minigen: a small autograd tensor engine with custom kernels for generative models.

Read in this order: ``tensor.py`` (the Tensor), ``autograd/`` (Function, engine), ``ops/`` (the
primitives with their backward), ``nn/`` and ``optim/`` (modules, optimizers).
"""
from . import backends, dtypes
from .autograd import enable_grad, no_grad, set_grad_enabled, is_grad_enabled
from .autograd import debug_checks, is_debug_checks_enabled, set_debug_checks
from .backend import Device as device, cuda_available
from .creation import *  # noqa: F401,F403
from .dtypes import (bfloat16, bool_ as bool, double, float16, float32, float64, half, int8,
                     int16, int32, int64, long, uint8, get_default_dtype, set_default_dtype)
from .ops import *  # noqa: F401,F403
import importlib as _importlib  # noqa: E402
# minigen.special (torch.special's names); imported by path: the star import above brought in
# ops.special (the array functions) under the same name
special = _importlib.import_module(__name__ + ".special")
from .random import Generator, get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor, as_tensor, from_dlpack, from_numpy, tensor
from . import autograd  # noqa: E402

__version__ = "0.1.0"


class cuda:  # minigen.cuda.is_available(), as in PyTorch
    is_available = staticmethod(cuda_available)


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def load_run(path, device="cpu", ema=True):
    """A trained run (``minigen train FAMILY --out RUN``) as its family object: ``.model``
    (EMA weights where kept), ``.config``, ``.metrics``, ``.sample(...)``, ``.evaluate(...)``
    (``minigen.harness.load_run``)."""
    from .harness import load_run as _load_run
    return _load_run(path, device=device, ema=ema)


def _late_imports():
    # nn, optim and serialization import the ops above; keep them after.
    global nn, optim, save, load, dispatch, linalg, distributions
    from . import nn, optim  # noqa: F401
    from . import dispatch, linalg  # noqa: F401
    from . import distributions  # noqa: F401
    from .serialization import load, save  # noqa: F401


try:
    _late_imports()
except ImportError as _exc:  # pragma: no cover - during development of those packages
    if "minigen.nn" not in str(_exc) and "minigen.optim" not in str(_exc) and \
            "serialization" not in str(_exc):
        raise
