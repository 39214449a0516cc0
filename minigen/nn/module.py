"""``Module``: the base class of every layer and model.

A module keeps three ordered registries, filled by attribute assignment:

- ``_parameters``: name -> Parameter (learnable, returned by ``parameters()``),
- ``_buffers``: name -> Tensor (state that is not learned: running statistics, masks);
  persistent buffers go into ``state_dict``, non-persistent ones do not,
- ``_modules``: name -> Module (children; their parameters/buffers are found recursively).

``model.fc.weight`` finds the entry through ``__getattr__``; ``model.fc = Linear(...)``
registers it through ``__setattr__``. State dict keys are dotted paths: ``"fc.weight"``.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..backend import Device, array_module, to_device
from ..tensor import Tensor
from .parameter import Parameter, zero_grads

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Subclass, create sub-modules and parameters in ``__init__``, compute in ``forward``."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ registration
    def _check_initialised(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign parameters, buffers or modules before "
                                 f"Module.__init__() call in {type(self).__name__}.__init__")

    def register_parameter(self, name: str, param):
        self._check_initialised()
        _check_name(self, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter '{name}' "
                            "(minigen.nn.Parameter or None expected)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True):
        """Register ``tensor`` (or None) as buffer ``name``: moved by ``to()``, saved in
        ``state_dict`` when ``persistent``, never returned by ``parameters()``."""
        self._check_initialised()
        _check_name(self, name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer '{name}' "
                            "(Tensor or None expected)")
        if isinstance(tensor, Parameter):
            raise TypeError(f"buffer '{name}' is a Parameter: use register_parameter")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module):
        self._check_initialised()
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            self._check_initialised()
            _remove_from(self, name, keep="_parameters")
            self._parameters[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(minigen.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._check_initialised()
            _remove_from(self, name, keep="_modules")
            self._modules[name] = value
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(Module or None expected)")
            d["_modules"][name] = None
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                "(Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                return r[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for reg in ("_parameters", "_buffers", "_modules"):
            r = self.__dict__.get(reg)
            if r is not None and name in r:
                del r[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) for self and every descendant, each module once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, prefix + ("." if prefix else "") + name,
                                           remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """(dotted name, Parameter); a parameter shared by several modules comes once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str):
        mod = self
        if target == "":
            return mod
        for part in target.split("."):
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule '{part}' "
                                     f"(looking up '{target}')")
            mod = child
        return mod

    def get_parameter(self, target: str):
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter '{name}'")
        return mod._parameters[name]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be a bool")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True):
        zero_grads(self.parameters(), set_to_none)

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant (children first) and on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ device and dtype
    def to(self, *args, device=None, dtype=None):
        """Move (and/or cast) parameters and buffers **in place**: every Parameter stays the same
        object, so an optimizer built on ``model.parameters()`` remains valid. Only floating point
        tensors are cast by ``dtype``. ``model.to("cuda")``, ``model.to(minigen.float64)``."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, Device)):
                device = a
            else:
                dtype = a
        device = Device(device) if device is not None else None
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        if dtype is not None and not dtypes.is_floating(dtype):
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            _move_in_place(t, device, dtype)
            if t.grad is not None:
                _move_in_place(t.grad, device, dtype)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index: int = 0):
        return self.to(Device("cuda", index))

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    # ------------------------------------------------------------------ state dict
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Ordered ``{dotted name: tensor}`` of parameters and persistent buffers.

        The tensors share memory with the module (detached unless ``keep_vars``); copy them (or
        ``minigen.save`` them) to keep a snapshot.
        """
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _state_targets(self):
        """{dotted name: tensor} that load_state_dict writes into (all parameters, including
        shared ones under each of their names, and persistent buffers)."""
        targets = OrderedDict()
        for mod_prefix, mod in self.named_modules(remove_duplicate=False):
            dot = mod_prefix + "." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    targets[dot + name] = p
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent_buffers:
                    targets[dot + name] = b
        return targets

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy ``state_dict``'s values into the parameters and buffers, in place.

        Everything is checked before anything is written: with ``strict`` missing and
        unexpected keys are errors; a shape mismatch is always an error. The error lists every
        problem. Values are cast to each target's dtype and device. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"expected a dict-like state_dict, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems = []
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " +
                            ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " +
                            ", ".join(f'"{k}"' for k in missing) + ".")
        sources = {}
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            arr = _as_array(value)
            if arr is None:
                problems.append(f'value for "{key}" is a {type(value).__name__}, expected a '
                                "tensor or an array.")
                continue
            if tuple(arr.shape) != tuple(target.shape):
                problems.append(f'size mismatch for "{key}": copying a param with shape '
                                f"{tuple(arr.shape)} from checkpoint, the shape in current "
                                f"model is {tuple(target.shape)}.")
                continue
            sources[key] = arr
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(problems))
        with no_grad():
            for key, arr in sources.items():
                target = targets[key]
                arr = to_device(arr, target._device)
                array_module(target._device).copyto(target.data, arr, casting="unsafe")
                target._vc[0] += 1
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """One line of constructor arguments shown in ``repr``; override in layers."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        main = type(self).__name__ + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


# ---------------------------------------------------------------------- helpers
def _check_name(module, name, kind):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{kind} name must be non-empty and contain no '.', got {name!r}")
    regs = ("_parameters", "_buffers", "_modules")
    if hasattr(module, name) and not any(name in module.__dict__[r] for r in regs):
        raise KeyError(f"attribute '{name}' already exists")
    for r in regs:
        if r != {"parameter": "_parameters", "buffer": "_buffers"}[kind] and \
                name in module.__dict__[r]:
            raise KeyError(f"'{name}' is already registered in {r[1:]}")


def _remove_from(module, name, keep):
    for reg in ("_parameters", "_buffers", "_modules"):
        if reg != keep:
            module.__dict__[reg].pop(name, None)
    module._non_persistent_buffers.discard(name)
    module.__dict__.pop(name, None)


def _as_array(value):
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy / cupy arrays
        return value
    return None


def _move_in_place(t: Tensor, device, dtype):
    """Replace ``t.data`` with its moved/cast copy, keeping the Tensor object."""
    arr = t.data
    changed = False
    if dtype is not None and dtypes.is_floating(arr.dtype) and arr.dtype != dtype:
        arr = arr.astype(dtype)
        changed = True
    if device is not None and device is not t._device:
        arr = to_device(arr, device)
        changed = True
    if changed:
        t.data = arr
        if device is not None:
            t._device = device
        t._vc[0] += 1


__all__ = ["Module"]
