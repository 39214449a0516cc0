"""``minigen.nn.utils``: gradient clipping (implemented in ``minigen.optim.clip_grad``, exported
here too because PyTorch has it in ``torch.nn.utils``) and parameter/vector conversion."""
from __future__ import annotations

from ..optim.clip_grad import clip_grad_norm_, clip_grad_value_, get_total_norm
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "parameters_to_vector",
           "vector_to_parameters"]


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from ..ops.shape import cat
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters_to_vector: no parameters")
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D ``vec`` into ``parameters`` (in place, no graph)."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError("vector_to_parameters: vec must be a 1-D Tensor")
    parameters = list(parameters)
    total = sum(p.numel() for p in parameters)
    if vec.numel() != total:
        raise ValueError(f"vector_to_parameters: vec has {vec.numel()} elements, the parameters "
                         f"{total}")
    offset = 0
    for p in parameters:
        n = p.numel()
        src = vec.data[offset:offset + n].reshape(p.shape)
        if src.__class__ is not p.data.__class__:
            from ..backend import to_device
            src = to_device(src, p.device)
        p.data[...] = src
        p._vc[0] += 1
        offset += n
