"""The numpy references of the kernel families: the readable definitions and the test oracles.

One module per family (conv2d, attention, noise_schedule, logdet); each function works on numpy arrays
(and on CuPy arrays, through the array module of its inputs) and carries the equation it computes.
"""
