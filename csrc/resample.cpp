// Nearest upsampling by integer factors (the UNet's ×2 upsampling), forward and backward, on
// (N, C, H, W) arrays: the C++ side of minigen/ops/pooling.py's NearestUpsampleInt, whose
// numpy broadcast is the reference (and the path for other arrays and devices).
//
//     y[n, c, f_h·i + a, f_w·j + b] = x[n, c, i, j]                 0 ≤ a < f_h, 0 ≤ b < f_w
//     ∂x[n, c, i, j] = Σ_{a, b} g[n, c, f_h·i + a, f_w·j + b]
//
// Why: numpy's broadcast copy into y viewed as (N, C, H, f_h, W, f_w) runs an inner loop of
// f_w = 2 elements: 4.9–6.4 ms per E2 forward for its two (64 channels, to 14×14 and to
// 28×28; 16 MB written), ~3 GB/s. Here each output row is
// built once and copied f_h − 1 more times: a memory-bound pass (bytes: read x, write
// f_h·f_w·|x|; backward the reverse). OpenMP over the (n, c) planes.
#include "common.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace minigen {

namespace {

// FW: the width factor when it is 2 (a constant: the compiler then vectorises the interleave),
// 0 = read it from fw.
template <typename T, int FW>
void upsample_kernel(const T* __restrict x, T* __restrict y, std::ptrdiff_t planes,
                     std::ptrdiff_t h, std::ptrdiff_t w, std::ptrdiff_t fh, std::ptrdiff_t fw_) {
    const std::ptrdiff_t fw = FW > 0 ? FW : fw_, wo = w * fw;
    const bool par = planes * h * w * fh * fw >= kParallelMin;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
#endif
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
        const T* src = x + p * h * w;
        T* dst = y + p * h * fh * wo;
        for (std::ptrdiff_t i = 0; i < h; ++i) {
            const T* in = src + i * w;
            T* out = dst + i * fh * wo;
            for (std::ptrdiff_t j = 0; j < w; ++j) {
                for (std::ptrdiff_t b = 0; b < fw; ++b) {
                    out[j * fw + b] = in[j];
                }
            }
            for (std::ptrdiff_t a = 1; a < fh; ++a) {
                std::memcpy(out + a * wo, out, sizeof(T) * wo);
            }
        }
    }
    (void)par;
}

template <typename T, int FW>
void upsample_backward_kernel(const T* __restrict g, T* __restrict gx, std::ptrdiff_t planes,
                              std::ptrdiff_t h, std::ptrdiff_t w, std::ptrdiff_t fh,
                              std::ptrdiff_t fw_) {
    const std::ptrdiff_t fw = FW > 0 ? FW : fw_, wo = w * fw;
    const bool par = planes * h * w * fh * fw >= kParallelMin;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
#endif
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
        const T* src = g + p * h * fh * wo;
        T* dst = gx + p * h * w;
        for (std::ptrdiff_t i = 0; i < h; ++i) {
            T* out = dst + i * w;
            for (std::ptrdiff_t j = 0; j < w; ++j) {
                // a sum of f_h·f_w values, in another order than the numpy path's (which adds
                // the factor axes one at a time): equal up to rounding
                T s = T(0);
                for (std::ptrdiff_t a = 0; a < fh; ++a) {
                    const T* in = src + (i * fh + a) * wo + j * fw;
                    for (std::ptrdiff_t b = 0; b < fw; ++b) {
                        s += in[b];
                    }
                }
                out[j] = s;
            }
        }
    }
    (void)par;
}

struct Shapes {
    std::ptrdiff_t planes, h, w;
};

// small (N, C, H, W) and big (N, C, H·f_h, W·f_w): C-contiguous, one float dtype, disjoint.
Shapes check_pair(const char* fn, const py::array& small, const char* small_name,
                  const py::array& big, const char* big_name, std::ptrdiff_t fh,
                  std::ptrdiff_t fw) {
    float_dtype(small, fn, small_name);
    if (fh < 1 || fw < 1) {
        throw py::value_error(std::string(fn) + ": the factors must be ≥ 1, got " +
                              std::to_string(fh) + ", " + std::to_string(fw));
    }
    if (small.ndim() != 4) {
        throw py::value_error(std::string(fn) + ": " + small_name + " must be 4-D (N, C, H, W), "
                              "got shape " + shape_str(small));
    }
    require_shape(big, {small.shape(0), small.shape(1), small.shape(2) * fh, small.shape(3) * fw},
                  fn, big_name);
    if (!same_dtype(small, big)) {
        throw py::value_error(std::string(fn) + ": " + small_name + " (" + dtype_str(small) +
                              ") and " + big_name + " (" + dtype_str(big) +
                              ") must share a dtype");
    }
    require_c_contiguous(small, fn, small_name);
    require_c_contiguous(big, fn, big_name);
    require_disjoint({{&small, small_name}, {&big, big_name}}, fn);
    return {small.shape(0) * small.shape(1), small.shape(2), small.shape(3)};
}

template <template <typename, int> class K>
struct Launch {
    template <typename T>
    static void run(const void* in, void* out, const Shapes& s, std::ptrdiff_t fh,
                    std::ptrdiff_t fw) {
        if (fw == 2) {
            K<T, 2>::call(static_cast<const T*>(in), static_cast<T*>(out), s, fh, fw);
        } else {
            K<T, 0>::call(static_cast<const T*>(in), static_cast<T*>(out), s, fh, fw);
        }
    }
};

template <typename T, int FW>
struct Up {
    static void call(const T* x, T* y, const Shapes& s, std::ptrdiff_t fh, std::ptrdiff_t fw) {
        upsample_kernel<T, FW>(x, y, s.planes, s.h, s.w, fh, fw);
    }
};

template <typename T, int FW>
struct Down {
    static void call(const T* g, T* gx, const Shapes& s, std::ptrdiff_t fh, std::ptrdiff_t fw) {
        upsample_backward_kernel<T, FW>(g, gx, s.planes, s.h, s.w, fh, fw);
    }
};

}  // namespace

// y (N, C, H·f_h, W·f_w) ← nearest upsampling of x (N, C, H, W).
void upsample_nearest2d(const py::object& x_obj, const py::object& y_obj, std::ptrdiff_t fh,
                        std::ptrdiff_t fw) {
    const char* fn = "upsample_nearest2d";
    const py::array x = as_ndarray(x_obj, fn, "x");
    py::array y = as_ndarray(y_obj, fn, "y");
    const Shapes s = check_pair(fn, x, "x", y, "y", fh, fw);
    require_writeable(y, fn, "y");
    const bool f32 = float_dtype(x, fn, "x") == DType::Float32;
    const void* in = x.data();
    void* out = y.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        Launch<Up>::run<float>(in, out, s, fh, fw);
    } else {
        Launch<Up>::run<double>(in, out, s, fh, fw);
    }
}

// gx (N, C, H, W) ← the gradient of nearest upsampling: the f_h × f_w block sums of g.
void upsample_nearest2d_backward(const py::object& g_obj, const py::object& gx_obj,
                                 std::ptrdiff_t fh, std::ptrdiff_t fw) {
    const char* fn = "upsample_nearest2d_backward";
    const py::array g = as_ndarray(g_obj, fn, "g");
    py::array gx = as_ndarray(gx_obj, fn, "gx");
    const Shapes s = check_pair(fn, gx, "gx", g, "g", fh, fw);
    require_writeable(gx, fn, "gx");
    const bool f32 = float_dtype(g, fn, "g") == DType::Float32;
    const void* in = g.data();
    void* out = gx.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        Launch<Down>::run<float>(in, out, s, fh, fw);
    } else {
        Launch<Down>::run<double>(in, out, s, fh, fw);
    }
}

void register_resample(py::module_& m) {
    m.def("upsample_nearest2d", &upsample_nearest2d, py::arg("x"), py::arg("y"), py::arg("fh"),
          py::arg("fw"),
          "y (N, C, H*fh, W*fw) <- nearest upsampling of x (N, C, H, W) by integer factors");
    m.def("upsample_nearest2d_backward", &upsample_nearest2d_backward, py::arg("g"),
          py::arg("gx"), py::arg("fh"), py::arg("fw"),
          "gx (N, C, H, W) <- the fh x fw block sums of g (N, C, H*fh, W*fw): the gradient of "
          "upsample_nearest2d");
    kernel_names().push_back("upsample_nearest2d");
    kernel_names().push_back("upsample_nearest2d_backward");
}

}  // namespace minigen
