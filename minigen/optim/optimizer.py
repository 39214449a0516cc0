"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and checkpointing.

``param_groups`` is a list of dicts ``{"params": [Tensor, ...], "lr": ..., ...}``: each group
has its own hyper-parameters (missing ones are filled from the optimizer's defaults), and
schedulers change ``group["lr"]``. ``state[p]`` holds a parameter's buffers (momentum, moments)
as backend arrays plus a Python int ``step``.

``state_dict()`` follows PyTorch's layout: ``{"state": {index: {name: Tensor | int}},
"param_groups": [{..., "params": [index, ...]}]}`` with parameters numbered in group order, so
it can be loaded into a freshly built optimizer over the same model.

Subclasses implement ``step`` and update ``p.data`` in place without recording a graph; after
changing a parameter they call ``_bump(p)`` so graphs that saved the old value notice.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from ..autograd.grad_mode import enable_grad
from ..backend import to_device
from ..nn.parameter import zero_grads
from ..tensor import Tensor


def native_kernel(name: str):
    """The fused C++ step ``minigen._C.<name>``, or None when the extension is not built, is
    disabled (``MINIGEN_DISABLE_NATIVE=1``) or lacks it. Optimizers ask on every step, so tests
    can monkeypatch this function to force the numpy path."""
    if not _native.available():
        return None
    return getattr(_native.module(), name, None)


def native_ok(*arrays) -> bool:
    """True when every array is a C-contiguous float32/float64 numpy array of one dtype (what
    the native kernels accept)."""
    dt = arrays[0].dtype
    if dt != np.float32 and dt != np.float64:
        return False
    return all(type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous
               for a in arrays)


def c_contiguous(a):
    """``a`` itself when C-contiguous, else a C-contiguous copy (keeps 0-d arrays 0-d, unlike
    ``np.ascontiguousarray``)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or dicts, got a Tensor: "
                            "pass [tensor] or model.parameters()")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict):
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters must be an ordered collection, not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears twice in one parameter group")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"hyper-parameter '{name}'")
            group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True):
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _bump(p):
        p._vc[0] += 1

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """``{"state": {i: {...}}, "param_groups": [...]}``; arrays as Tensors sharing memory."""
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                s = self.state.get(p)
                if s:
                    state[index[id(p)]] = {k: _to_tensor(v, p) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Restore hyper-parameters and state saved by ``state_dict`` (copies the arrays, casts
        floating state to each parameter's dtype and device)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, the "
                             f"optimizer has {len(self.param_groups)}")
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"loaded state dict contains a parameter group (group {i}) with "
                                 f"{len(sg['params'])} parameters that doesn't match the size "
                                 f"of the optimizer's group ({len(g['params'])})")
        by_index = {}
        for g, sg in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], sg["params"]):
                by_index[int(idx)] = p
        saved_state = state_dict.get("state", {})
        new_state = {}
        for key, s in saved_state.items():
            idx = int(key)
            if idx not in by_index:
                raise ValueError(f"loaded state dict has state for parameter {idx}, which no "
                                 "parameter group lists")
            p = by_index[idx]
            entry = {}
            for k, v in s.items():
                arr = _as_array(v)
                if arr is None:
                    entry[k] = v
                    continue
                if tuple(arr.shape) != tuple(p.shape) and arr.ndim != 0:
                    raise ValueError(f"state '{k}' of parameter {idx} has shape "
                                     f"{tuple(arr.shape)}, the parameter {tuple(p.shape)}")
                arr = to_device(arr, p.device)
                if arr.dtype.kind == "f" and arr.dtype != p.dtype:
                    arr = arr.astype(p.dtype)
                else:
                    arr = arr.copy()
                if arr.ndim == 0 and k == "step":
                    entry[k] = int(arr)
                else:
                    entry[k] = arr
            new_state[p] = entry
        self.state = new_state
        for g, sg in zip(self.param_groups, saved_groups):
            for k, v in sg.items():
                if k != "params":
                    g[k] = v

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _as_array(v):
    if isinstance(v, Tensor):
        return v.data
    if isinstance(v, np.generic):
        return np.asarray(v)
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (int, float)):
        return v
    return None


def _to_tensor(v, p):
    if isinstance(v, Tensor) or not hasattr(v, "dtype") or not hasattr(v, "shape"):
        return v
    return Tensor._wrap(v, p.device)


__all__ = ["Optimizer", "required", "native_kernel"]
