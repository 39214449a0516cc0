"""minigen's GPU kernels, installed as the subpackage ``minigen.kernels`` (the source tree keeps
them in ``kernels/`` at the top level, beside ``csrc/`` for the C++ CPU kernels).

One kernel family per name, the same name everywhere:

    family          numpy reference                    C++ (CPU)               here (GPU)
    conv2d          minigen/reference/conv2d.py        csrc/conv2d.cpp         conv2d.py (Triton)
    attention       minigen/reference/attention.py     csrc/attention.cpp      attention.py (Triton)
    noise_schedule  minigen/reference/noise_schedule.py csrc/noise_schedule.cpp noise_schedule.py
    logdet          minigen/reference/logdet.py        csrc/logdet.cpp         logdet.py (Triton),
                                                                               logdet.cu + logdet_cuda.py

Triton modules run on a GPU, or on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``,
how CI checks them); ``_triton.py`` adapts numpy and CuPy arrays to what Triton's launcher
expects. Raw CUDA sources (``.cu``) are package data compiled at run time by CuPy (NVRTC); the
tests compile them ahead of time with nvcc. ``minigen/dispatch.py`` chooses among them.
"""
