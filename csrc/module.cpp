// The Python module minigen._C: registers the C++ kernels of csrc/ (one family per file,
// declared in common.h). Python code reaches it through minigen._native.module(), which
// reports why it is missing instead of failing at import time.
//
// Every kernel takes C-contiguous numpy arrays of float32 or float64, checks dtype, layout and
// shape (ValueError with the argument's name), releases the GIL and runs an OpenMP loop.
#include "common.h"

PYBIND11_MODULE(_C, m) {
    using namespace minigen;
    m.doc() =
        "minigen's C++ CPU kernels (OpenMP). Built from csrc/ by setup.py through CMake; "
        "build_info() says how.";

    m.def("erf", &minigen::erf, py::arg("x"),
          "erf(x) -> new array: elementwise erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt.\n\n"
          "x: C-contiguous float32 or float64 numpy array of any shape; the result has the same "
          "shape and dtype.");

    m.def("adam_step", &minigen::adam_step, py::arg("param"), py::arg("grad"),
          py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("lr"), py::arg("beta1"),
          py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
          py::arg("decoupled"),
          "One Adam (decoupled=False, L2 weight decay) or AdamW (decoupled=True) step, in "
          "place, as torch.optim.Adam/AdamW:\n"
          "  AdamW: p *= 1 - lr*wd;  Adam: g = g + wd*p\n"
          "  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2\n"
          "  p -= (lr/(1-b1^step)) * m / (sqrt(v)/sqrt(1-b2^step) + eps)\n"
          "param, exp_avg, exp_avg_sq are updated; all four arrays share one shape and dtype "
          "(float32 or float64) and are C-contiguous. step counts from 1.");

    m.def("sgd_momentum_step", &minigen::sgd_momentum_step, py::arg("param"), py::arg("grad"),
          py::arg("buf"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
          py::arg("weight_decay"), py::arg("nesterov"), py::arg("first_step"),
          "One SGD step with momentum, in place, as torch.optim.SGD:\n"
          "  d = g + wd*p\n"
          "  buf = d if first_step else momentum*buf + (1-dampening)*d\n"
          "  d = d + momentum*buf if nesterov else buf\n"
          "  p -= lr*d\n"
          "With momentum == 0 it is plain SGD (p -= lr*(g + wd*p)) and buf is left alone.");

    m.def("add_broadcast", &minigen::add_broadcast, py::arg("big"), py::arg("small"),
          py::arg("out"),
          "out[i] = big[i] + small[i // L], L = big.size // small.size: a same-shape add "
          "(L = 1) or small constant over big's trailing dims, e.g. (N, C, H, W) + (N, C, 1, 1). "
          "C-contiguous float32/float64 arrays of one dtype; out has big's size.");

    m.def("copy_rows", &minigen::copy_rows, py::arg("src"), py::arg("dst"),
          "dst[r, :] = src[r, :]: src a C-contiguous 2-D float32/float64 array, dst of its "
          "shape and dtype with contiguous rows at any row stride (one input's block of a "
          "concatenation).");

    for (const char* name : {"erf", "add_broadcast", "copy_rows", "adam_step",
                             "sgd_momentum_step"}) {
        kernel_names().push_back(name);
    }
    register_gemm(m);
    register_conv2d(m);
    register_conv2d_direct(m);
    register_attention(m);
    register_noise_schedule(m);
    register_logdet(m);
    register_normalization(m);
    register_resample(m);

    m.def("num_threads", &minigen::num_threads,
          "Threads the parallel kernels use (OpenMP's default: OMP_NUM_THREADS or the core "
          "count; 1 without OpenMP).");
    m.def("set_num_threads", &minigen::set_num_threads, py::arg("n"),
          "Set the threads the parallel kernels use (process-wide, n >= 1).");
    m.def("build_info", &minigen::build_info,
          "dict: compiler, OpenMP on/off and version, flags, build type, threads.");
}
