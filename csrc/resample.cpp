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
#include <type_traits>

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

// Either pass, checked and run: upward, in = x (small) → out = y (big); else in = g (big) →
// out = gx (small). The width factor 2 is a compile-time constant (see upsample_kernel).
void resample(const char* fn, const py::object& in_obj, const char* in_name,
              const py::object& out_obj, const char* out_name, std::ptrdiff_t fh,
              std::ptrdiff_t fw, bool upward) {
    const py::array in = as_ndarray(in_obj, fn, in_name);
    py::array out = as_ndarray(out_obj, fn, out_name);
    const Shapes s = upward ? check_pair(fn, in, in_name, out, out_name, fh, fw)
                            : check_pair(fn, out, out_name, in, in_name, fh, fw);
    require_writeable(out, fn, out_name);
    const bool f32 = float_dtype(in, fn, in_name) == DType::Float32;
    const void* ip = in.data();
    void* op = out.mutable_data();
    py::gil_scoped_release release;
    auto run = [&](auto zero, auto fw_const) {
        using T = decltype(zero);
        constexpr int FW = decltype(fw_const)::value;
        const T* src = static_cast<const T*>(ip);
        T* dst = static_cast<T*>(op);
        if (upward) {
            upsample_kernel<T, FW>(src, dst, s.planes, s.h, s.w, fh, fw);
        } else {
            upsample_backward_kernel<T, FW>(src, dst, s.planes, s.h, s.w, fh, fw);
        }
    };
    auto by_width = [&](auto zero) {
        if (fw == 2) {
            run(zero, std::integral_constant<int, 2>{});
        } else {
            run(zero, std::integral_constant<int, 0>{});
        }
    };
    if (f32) {
        by_width(float(0));
    } else {
        by_width(double(0));
    }
}

}  // namespace

// y (N, C, H·f_h, W·f_w) ← nearest upsampling of x (N, C, H, W).
void upsample_nearest2d(const py::object& x, const py::object& y, std::ptrdiff_t fh,
                        std::ptrdiff_t fw) {
    resample("upsample_nearest2d", x, "x", y, "y", fh, fw, true);
}

// gx (N, C, H, W) ← the gradient of nearest upsampling: the f_h × f_w block sums of g.
void upsample_nearest2d_backward(const py::object& g, const py::object& gx, std::ptrdiff_t fh,
                                 std::ptrdiff_t fw) {
    resample("upsample_nearest2d_backward", g, "g", gx, "gx", fh, fw, false);
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
