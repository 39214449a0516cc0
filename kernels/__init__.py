"""minigen's GPU kernels, installed as the subpackage ``minigen.kernels`` (the source tree keeps
them in ``kernels/`` at the top level, beside ``csrc/`` for the C++ CPU kernels).

What lives here: Triton kernels (Python modules; on a CPU they run in Triton's interpreter,
``TRITON_INTERPRET=1``) and raw CUDA sources (``.cu``/``.cuh`` files, installed as package data
and compiled at runtime through CuPy), one kernel family per name: the family ``conv2d`` has its
numpy reference in ``minigen/ops``, its C++ version in ``csrc/``, and its GPU versions here under
the same name.

For now it holds nothing else: the kernel layer comes in a later issue.
"""
