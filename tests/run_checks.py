"""Helpers for the tests of training runs: a checkpoint flattened to comparable values (the
"tensor for tensor" comparisons of resumed and uninterrupted runs)."""
from __future__ import annotations

import os

import numpy as np

import minigen as mg


def checkpoint_values(run_dir, keys=None, skip=("seconds",)):
    """The run's checkpoint as {".a.b.0": numpy array or plain value}; ``keys``: only these
    top-level entries; ``skip``: top-level entries left out (wall time differs between runs)."""
    ck = mg.load(os.path.join(run_dir, "checkpoint.safetensors"))
    flat = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}.{i}", v)
        elif isinstance(obj, mg.Tensor):
            flat[prefix] = obj.numpy()
        else:
            flat[prefix] = obj
    walk("", {k: v for k, v in ck.items()
              if (keys is None or k in keys) and k not in skip})
    return flat

