"""Random numbers: a ``Generator`` per device and a global default one.

On the CPU a Generator wraps numpy's PCG64 bit generator, so a seeded run repeats exactly;
on the GPU it wraps a CuPy generator seeded the same way (same seed, different stream).
"""
from __future__ import annotations

import numpy as np

from .backend import CPU, Device, cupy_module


class Generator:
    """``minigen.Generator(device="cpu").manual_seed(0)``; pass as ``generator=`` to random ops."""

    def __init__(self, device="cpu"):
        self.device = Device(device)
        self._seed = None
        self.manual_seed(np.random.SeedSequence().entropy % (2 ** 63))

    def manual_seed(self, seed: int):
        self._seed = int(seed)
        if self.device.type == "cpu":
            self._rng = np.random.Generator(np.random.PCG64(self._seed))
        else:
            cp = cupy_module()
            with cp.cuda.Device(self.device.index):
                self._rng = cp.random.Generator(cp.random.XORWOW(self._seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """A picklable snapshot (CPU only) for exact resume."""
        if self.device.type != "cpu":
            raise RuntimeError("get_state is supported for cpu generators only")
        return self._rng.bit_generator.state

    def set_state(self, state):
        if self.device.type != "cpu":
            raise RuntimeError("set_state is supported for cpu generators only")
        self._rng.bit_generator.state = state

    @property
    def rng(self):
        return self._rng


_default = {}


def default_generator(device=CPU) -> Generator:
    device = Device(device)
    gen = _default.get(device)
    if gen is None:
        gen = _default[device] = Generator(device)
    return gen


def manual_seed(seed: int):
    """Seed the default generators of every device in use (cpu always)."""
    default_generator(CPU).manual_seed(seed)
    for dev, gen in _default.items():
        if dev is not CPU:
            gen.manual_seed(seed)
    return default_generator(CPU)


def seed_for(device, generator):
    gen = generator if generator is not None else default_generator(device)
    if gen.device is not Device(device):
        raise RuntimeError(f"generator is on {gen.device} but the tensor is on {device}")
    return gen.rng


def get_rng_state():
    return default_generator(CPU).get_state()


def set_rng_state(state):
    default_generator(CPU).set_state(state)
