"""Optimizers, learning-rate schedules, parameter averaging and gradient clipping, as in
``torch.optim`` (``clip_grad_norm_`` is also in ``minigen.nn.utils``)."""
from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW
from .clip_grad import clip_grad_norm_, clip_grad_value_, get_total_norm
from .ema import EMA
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "EMA", "lr_scheduler", "clip_grad_norm_",
           "clip_grad_value_", "get_total_norm"]
