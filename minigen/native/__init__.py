"""Python faces of the C++ kernels (csrc/<family>.cpp in minigen._C), one module per family, with the
same functions and signatures as minigen/reference/<family>.py."""
