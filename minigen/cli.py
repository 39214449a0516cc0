"""The ``minigen`` command line (``python -m minigen ...`` too):

    minigen list                       model families, their presets and datasets
    minigen train FAMILY [options]     e.g. minigen train vae; minigen train ddpm --minutes 60
    minigen sample RUN [options]       PNG grid + samples_*.npz from a trained run
    minigen eval RUN [options]         the family's metrics, into RUN/eval.json
    minigen info                       what is built and active (native kernels, triton, cuda)

The parser is generated from the family registry: ``minigen/harness/cli.py``.
"""
from __future__ import annotations

import sys

from .harness.cli import build_parser, main

__all__ = ["main", "build_parser"]

if __name__ == "__main__":
    sys.exit(main())
