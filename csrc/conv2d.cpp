// Kernel family conv2d (and conv_transpose2d, its adjoint): the C++ data-movement half.
//
// Versions: minigen/reference/conv2d.py (numpy, the definition and the math); this file plus
// minigen/native/conv2d.py (im2col/col2im here, the GEMMs through numpy's BLAS); and
// kernels/conv2d.py (Triton implicit GEMM, GPU).
//
// A convolution is a matrix product once the input is unrolled into columns (im2col):
//     X_col[n][(c, i, j), (a, b)] = x_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w]
//     y[n] = W X_col[n]          W: (C_out, C_in·k_h·k_w) per group       (forward, GEMM)
//     ∂w  = Σ_n G[n] X_col[n]ᵀ                                           (wgrad, GEMM)
//     ∂x[n] = col2im(Wᵀ G[n])    col2im: x[c, a·s_h + i·d_h − p_h, ...] += col[(c,i,j),(a,b)]
// This file does the two data movements; minigen/native/conv2d.py calls BLAS in between, a
// few images at a time, so that the column buffer stays in cache between its write here and
// its read by the GEMM.
//
// Bytes moved per image (float32): im2col reads C·H·W·4 and writes C·k_h·k_w·H_out·W_out·4
// (the k_h·k_w-fold expansion: 2.4 MB for one K1 image, 64×32×32 with a 3×3 kernel); col2im
// reads that many column bytes and writes C·H·W·4. FLOPs: none here (col2im: one add per
// column element); the GEMMs do 2·C_out·H_out·W_out·C_in/G·k_h·k_w FLOPs per image. Width
// stride 2 is compiled as a constant (see im2col_kernel); splitting each plane into its
// stride phases first (so that every row is a memcpy) measured no faster than that.
//
// Parallelism: optional (argument `parallel`), OpenMP over the (image, channel) planes; each
// plane owns k_h·k_w rows of the column matrix, and in col2im each thread writes only its own
// planes (no atomics). The Python face calls these between BLAS GEMMs and passes
// parallel=False: OpenBLAS's worker threads keep spinning for a while after each GEMM, so a
// second OpenMP thread competes with them for the other core of a 2-core machine and each
// chunk waits a scheduler time slice (measured, K1 forward: 270 ms with parallel im2col
// between the GEMMs, 14 ms with single-threaded im2col; the GEMMs alone take 12.4 ms).
#include "common.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

namespace minigen {

namespace {

struct Geometry {
    std::ptrdiff_t planes;   // images · channels
    std::ptrdiff_t channels;
    // Column row (c, i, j) of image n starts at cols + n·img_stride + ((c·k_h + i)·k_w + j)·ld:
    // batched layout (n, C·k_h·k_w, P): img_stride = C·k_h·k_w·P, ld = P;
    // wide layout (C·k_h·k_w, n·P), one GEMM for the whole chunk: img_stride = P, ld = n·P.
    std::ptrdiff_t img_stride, ld;
    std::ptrdiff_t h, w;     // input plane
    std::ptrdiff_t ho, wo;   // output plane
    std::ptrdiff_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// Output columns b whose input column b·s − p + j·d lies in [0, w): [lo, hi).
inline void valid_range(std::ptrdiff_t w, std::ptrdiff_t wo, std::ptrdiff_t s,
                        std::ptrdiff_t off, std::ptrdiff_t* lo, std::ptrdiff_t* hi) {
    // b·s + off ≥ 0  ⇔  b ≥ ⌈−off / s⌉;   b·s + off < w  ⇔  b < ⌈(w − off) / s⌉
    std::ptrdiff_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    std::ptrdiff_t h = w - off <= 0 ? 0 : (w - off + s - 1) / s;
    *lo = std::min(l, wo);
    *hi = std::max(*lo, std::min(h, wo));
}

// Run body(plane) for plane in [0, planes), in parallel when the work is worth a team.
template <typename F>
void for_planes(std::ptrdiff_t planes, std::ptrdiff_t work, bool parallel, F&& body) {
#ifdef _OPENMP
    const bool par = parallel && work >= (std::ptrdiff_t(1) << 15) && planes > 1 &&
                     num_threads() > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
        body(p);
    }
#else
    (void)work;
    (void)parallel;
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
        body(p);
    }
#endif
}

// S: the width stride when known at compile time (2, the downsampling convs: the compiler
// then vectorises the strided gather/scatter of a row; K2 stride-2 rows, 1 thread, same loop
// with a runtime stride: im2col 22–49 → 11–26 µs per image, col2im 24–48 → 19–32 µs);
// 0 = read it from g.sw.
template <typename T, int S>
void im2col_kernel(const T* __restrict x, T* __restrict cols, const Geometry& g, bool par) {
    const std::ptrdiff_t plane_in = g.h * g.w, row = g.ho * g.wo;
    const std::ptrdiff_t sw = S > 0 ? S : g.sw;
    for_planes(g.planes, g.planes * g.kh * g.kw * row, par, [&](std::ptrdiff_t p) {
        const T* src = x + p * plane_in;
        T* dst = cols + (p / g.channels) * g.img_stride + (p % g.channels) * g.kh * g.kw * g.ld;
        for (std::ptrdiff_t i = 0; i < g.kh; ++i) {
            for (std::ptrdiff_t j = 0; j < g.kw; ++j, dst += g.ld) {
                const std::ptrdiff_t col_off = j * g.dw - g.pw;
                std::ptrdiff_t lo, hi;
                valid_range(g.w, g.wo, g.sw, col_off, &lo, &hi);
                for (std::ptrdiff_t a = 0; a < g.ho; ++a) {
                    T* out = dst + a * g.wo;
                    const std::ptrdiff_t r = a * g.sh + i * g.dh - g.ph;
                    if (r < 0 || r >= g.h) {
                        std::fill(out, out + g.wo, T(0));
                        continue;
                    }
                    const T* in = src + r * g.w + col_off;   // in[b·s] = x[r, b·s + col_off]
                    std::fill(out, out + lo, T(0));
                    if (sw == 1) {
                        std::memcpy(out + lo, in + lo, sizeof(T) * (hi - lo));
                    } else {
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b] = in[b * sw];
                        }
                    }
                    std::fill(out + hi, out + g.wo, T(0));
                }
            }
        }
    });
}

template <typename T, int S>
void col2im_kernel(const T* __restrict cols, T* __restrict x, const Geometry& g, bool par) {
    const std::ptrdiff_t plane_in = g.h * g.w, row = g.ho * g.wo;
    const std::ptrdiff_t sw = S > 0 ? S : g.sw;
    for_planes(g.planes, g.planes * g.kh * g.kw * row, par, [&](std::ptrdiff_t p) {
        T* dst = x + p * plane_in;
        const T* src =
            cols + (p / g.channels) * g.img_stride + (p % g.channels) * g.kh * g.kw * g.ld;
        std::fill(dst, dst + plane_in, T(0));
        for (std::ptrdiff_t i = 0; i < g.kh; ++i) {
            for (std::ptrdiff_t j = 0; j < g.kw; ++j, src += g.ld) {
                const std::ptrdiff_t col_off = j * g.dw - g.pw;
                std::ptrdiff_t lo, hi;
                valid_range(g.w, g.wo, g.sw, col_off, &lo, &hi);
                for (std::ptrdiff_t a = 0; a < g.ho; ++a) {
                    const std::ptrdiff_t r = a * g.sh + i * g.dh - g.ph;
                    if (r < 0 || r >= g.h) {
                        continue;
                    }
                    const T* in = src + a * g.wo;
                    T* out = dst + r * g.w + col_off;    // out[b·s] = x[r, b·s + col_off]
                    if (sw == 1) {
#pragma omp simd
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b] += in[b];
                        }
                    } else {
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b * sw] += in[b];
                        }
                    }
                }
            }
        }
    });
}

// f(std::integral_constant<int, 2>) when the width stride is 2, else f(... 0) (runtime).
template <typename F>
void with_stride2(const Geometry& g, F&& f) {
    if (g.sw == 2) {
        f(std::integral_constant<int, 2>{});
    } else {
        f(std::integral_constant<int, 0>{});
    }
}

// Shared argument handling of im2col / col2im: image (n, C, H, W), columns
// (n, C·k_h·k_w, H_out·W_out), both C-contiguous, same dtype.
Geometry check_args(const char* fn, const py::array& image, const py::array& cols,
                    std::ptrdiff_t kh, std::ptrdiff_t kw, std::ptrdiff_t sh, std::ptrdiff_t sw,
                    std::ptrdiff_t ph, std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw) {
    float_dtype(image, fn, "image");
    if (image.ndim() != 4) {
        throw py::value_error(std::string(fn) + ": image must be 4-D (N, C, H, W), got shape " +
                              shape_str(image));
    }
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) {
        throw py::value_error(std::string(fn) + ": kernel size, stride and dilation must be "
                              "positive and padding non-negative");
    }
    Geometry g{};
    g.planes = image.shape(0) * image.shape(1);
    g.h = image.shape(2);
    g.w = image.shape(3);
    g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw;
    g.ho = (g.h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    g.wo = (g.w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    if (g.h + 2 * ph - dh * (kh - 1) - 1 < 0 || g.w + 2 * pw - dw * (kw - 1) - 1 < 0) {
        throw py::value_error(std::string(fn) + ": the kernel is larger than the padded image " +
                              shape_str(image));
    }
    const std::ptrdiff_t n = image.shape(0), k = image.shape(1) * kh * kw, p = g.ho * g.wo;
    g.channels = image.shape(1);
    if (cols.ndim() == 3 && cols.shape(0) == n && cols.shape(1) == k && cols.shape(2) == p) {
        g.img_stride = k * p;
        g.ld = p;
    } else if (cols.ndim() == 2 && cols.shape(0) == k && cols.shape(1) == n * p) {
        g.img_stride = p;
        g.ld = n * p;
    } else {
        throw py::value_error(std::string(fn) + ": cols must have shape (" + std::to_string(n) +
                              ", " + std::to_string(k) + ", " + std::to_string(p) + ") or (" +
                              std::to_string(k) + ", " + std::to_string(n * p) + "), got " +
                              shape_str(cols));
    }
    if (!image.dtype().is(cols.dtype())) {
        throw py::value_error(std::string(fn) + ": image (" + dtype_str(image) + ") and cols (" +
                              dtype_str(cols) + ") must have the same dtype");
    }
    require_c_contiguous(image, fn, "image");
    require_c_contiguous(cols, fn, "cols");
    require_disjoint({{&image, "image"}, {&cols, "cols"}}, fn);
    return g;
}

}  // namespace

// cols ← im2col(image): column row (c, i, j) of image n holds, at output pixel (a, b),
// image_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w]; cols batched (N, C·k_h·k_w, P) or wide
// (C·k_h·k_w, N·P).
void conv2d_im2col(const py::object& image_obj, const py::object& cols_obj, std::ptrdiff_t kh,
                   std::ptrdiff_t kw, std::ptrdiff_t sh, std::ptrdiff_t sw, std::ptrdiff_t ph,
                   std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw, bool parallel) {
    const char* fn = "conv2d_im2col";
    const py::array image = as_ndarray(image_obj, fn, "image");
    py::array cols = as_ndarray(cols_obj, fn, "cols");
    const Geometry g = check_args(fn, image, cols, kh, kw, sh, sw, ph, pw, dh, dw);
    require_writeable(cols, fn, "cols");
    const bool f32 = float_dtype(image, fn, "image") == DType::Float32;
    const void* src = image.data();
    void* dst = cols.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        with_stride2(g, [&](auto s) {
            im2col_kernel<float, decltype(s)::value>(static_cast<const float*>(src),
                                                     static_cast<float*>(dst), g, parallel);
        });
    } else {
        with_stride2(g, [&](auto s) {
            im2col_kernel<double, decltype(s)::value>(static_cast<const double*>(src),
                                                      static_cast<double*>(dst), g, parallel);
        });
    }
}

// image ← col2im(cols): image_pad[n, c, a·s_h + i·d_h, b·s_w + j·d_w] += cols[n, (c,i,j), (a,b)],
// starting from zero, padding cropped (the adjoint of im2col). Overwrites image.
void conv2d_col2im(const py::object& cols_obj, const py::object& image_obj, std::ptrdiff_t kh,
                   std::ptrdiff_t kw, std::ptrdiff_t sh, std::ptrdiff_t sw, std::ptrdiff_t ph,
                   std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw, bool parallel) {
    const char* fn = "conv2d_col2im";
    const py::array cols = as_ndarray(cols_obj, fn, "cols");
    py::array image = as_ndarray(image_obj, fn, "image");
    const Geometry g = check_args(fn, image, cols, kh, kw, sh, sw, ph, pw, dh, dw);
    require_writeable(image, fn, "image");
    const bool f32 = float_dtype(image, fn, "image") == DType::Float32;
    const void* src = cols.data();
    void* dst = image.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        with_stride2(g, [&](auto s) {
            col2im_kernel<float, decltype(s)::value>(static_cast<const float*>(src),
                                                     static_cast<float*>(dst), g, parallel);
        });
    } else {
        with_stride2(g, [&](auto s) {
            col2im_kernel<double, decltype(s)::value>(static_cast<const double*>(src),
                                                      static_cast<double*>(dst), g, parallel);
        });
    }
}

void register_conv2d(py::module_& m) {
    m.def("conv2d_im2col", &conv2d_im2col, py::arg("image"), py::arg("cols"), py::arg("kh"),
          py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
          py::arg("dh"), py::arg("dw"), py::arg("parallel") = false,
          "cols (N, C·kh·kw, Hout·Wout) <- im2col of image (N, C, H, W), zero padding");
    m.def("conv2d_col2im", &conv2d_col2im, py::arg("cols"), py::arg("image"), py::arg("kh"),
          py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
          py::arg("dh"), py::arg("dw"), py::arg("parallel") = false,
          "image (N, C, H, W) <- col2im of cols (the adjoint of im2col), overwritten");
    kernel_names().push_back("conv2d_im2col");
    kernel_names().push_back("conv2d_col2im");
}

}  // namespace minigen
