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
// column element); the GEMMs do 2·C_out·H_out·W_out·C_in/G·k_h·k_w per image.
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

template <typename T>
void im2col_kernel(const T* __restrict x, T* __restrict cols, const Geometry& g, bool par) {
    const std::ptrdiff_t plane_in = g.h * g.w, row = g.ho * g.wo;
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
                    if (g.sw == 1) {
                        std::memcpy(out + lo, in + lo, sizeof(T) * (hi - lo));
                    } else {
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b] = in[b * g.sw];
                        }
                    }
                    std::fill(out + hi, out + g.wo, T(0));
                }
            }
        }
    });
}

template <typename T>
void col2im_kernel(const T* __restrict cols, T* __restrict x, const Geometry& g, bool par) {
    const std::ptrdiff_t plane_in = g.h * g.w, row = g.ho * g.wo;
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
                    if (g.sw == 1) {
#pragma omp simd
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b] += in[b];
                        }
                    } else {
                        for (std::ptrdiff_t b = lo; b < hi; ++b) {
                            out[b * g.sw] += in[b];
                        }
                    }
                }
            }
        }
    });
}

// Shifted columns (stride 1): with the chunk's input zero-padded and laid out per channel as
// one flat run xp[c] = (m, H_p, W_p) (H_p = H + 2p_h, W_p = W + 2p_w) followed by `slack` =
// (k_h−1)d_h·W_p + (k_w−1)d_w zeros, the column row (c, i, j) over the padded output grid is
// one contiguous slice:  X_col[(c,i,j), q] = xp[c][q + i·d_h·W_p + j·d_w],  q < m·H_p·W_p.
// Position q = (n, a, b) is a real output pixel when a < H_out and b < W_out; the others read
// neighbouring (finite or zero) input and are cropped by the caller. Bytes: the pad writes
// C·(m·H_p·W_p + slack) and the rows are k_h·k_w·C memcpys of m·H_p·W_p elements each, instead
// of C·k_h·k_w·m·H_out short rows of W_out elements in im2col.
template <typename T>
void shifted_cols_kernel(const T* __restrict x, T* __restrict xp, T* __restrict cols,
                         std::ptrdiff_t m, std::ptrdiff_t c, std::ptrdiff_t h, std::ptrdiff_t w,
                         std::ptrdiff_t kh, std::ptrdiff_t kw, std::ptrdiff_t ph,
                         std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw) {
    const std::ptrdiff_t hp = h + 2 * ph, wp = w + 2 * pw, len = m * hp * wp;
    const std::ptrdiff_t slack = (kh - 1) * dh * wp + (kw - 1) * dw, run = len + slack;
    for (std::ptrdiff_t ch = 0; ch < c; ++ch) {
        T* dst = xp + ch * run;
        for (std::ptrdiff_t n = 0; n < m; ++n) {
            const T* src = x + (n * c + ch) * h * w;
            std::fill(dst, dst + ph * wp, T(0));                 // top rows
            dst += ph * wp;
            for (std::ptrdiff_t r = 0; r < h; ++r, src += w, dst += wp) {
                std::fill(dst, dst + pw, T(0));
                std::memcpy(dst + pw, src, sizeof(T) * w);
                std::fill(dst + pw + w, dst + wp, T(0));
            }
            std::fill(dst, dst + ph * wp, T(0));                 // bottom rows
            dst += ph * wp;
        }
        std::fill(dst, dst + slack, T(0));
    }
    T* out = cols;
    for (std::ptrdiff_t ch = 0; ch < c; ++ch) {
        for (std::ptrdiff_t i = 0; i < kh; ++i) {
            for (std::ptrdiff_t j = 0; j < kw; ++j, out += len) {
                std::memcpy(out, xp + ch * run + i * dh * wp + j * dw, sizeof(T) * len);
            }
        }
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
        im2col_kernel(static_cast<const float*>(src), static_cast<float*>(dst), g, parallel);
    } else {
        im2col_kernel(static_cast<const double*>(src), static_cast<double*>(dst), g, parallel);
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
        col2im_kernel(static_cast<const float*>(src), static_cast<float*>(dst), g, parallel);
    } else {
        col2im_kernel(static_cast<const double*>(src), static_cast<double*>(dst), g, parallel);
    }
}

// cols (C·k_h·k_w, m·H_p·W_p) ← the shifted columns of image (m, C, H, W) over the padded
// output grid (stride 1; see shifted_cols_kernel); scratch: C·(m·H_p·W_p + slack) elements.
void conv2d_shifted_cols(const py::object& image_obj, const py::object& scratch_obj,
                         const py::object& cols_obj, std::ptrdiff_t kh, std::ptrdiff_t kw,
                         std::ptrdiff_t ph, std::ptrdiff_t pw, std::ptrdiff_t dh,
                         std::ptrdiff_t dw) {
    const char* fn = "conv2d_shifted_cols";
    const py::array image = as_ndarray(image_obj, fn, "image");
    py::array scratch = as_ndarray(scratch_obj, fn, "scratch");
    py::array cols = as_ndarray(cols_obj, fn, "cols");
    const bool f32 = float_dtype(image, fn, "image") == DType::Float32;
    if (image.ndim() != 4) {
        throw py::value_error(std::string(fn) + ": image must be 4-D (N, C, H, W), got shape " +
                              shape_str(image));
    }
    if (kh < 1 || kw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) {
        throw py::value_error(std::string(fn) + ": kernel size and dilation must be positive "
                              "and padding non-negative");
    }
    const std::ptrdiff_t m = image.shape(0), c = image.shape(1), h = image.shape(2),
                         w = image.shape(3);
    const std::ptrdiff_t hp = h + 2 * ph, wp = w + 2 * pw, len = m * hp * wp;
    if (hp < dh * (kh - 1) + 1 || wp < dw * (kw - 1) + 1) {
        throw py::value_error(std::string(fn) + ": the kernel is larger than the padded image " +
                              shape_str(image));
    }
    const std::ptrdiff_t run = len + (kh - 1) * dh * wp + (kw - 1) * dw;
    if (cols.ndim() != 2 || cols.shape(0) != c * kh * kw || cols.shape(1) != len) {
        throw py::value_error(std::string(fn) + ": cols must have shape (" +
                              std::to_string(c * kh * kw) + ", " + std::to_string(len) +
                              "), got " + shape_str(cols));
    }
    if (scratch.size() != c * run) {
        throw py::value_error(std::string(fn) + ": scratch must have " + std::to_string(c * run) +
                              " elements, got " + std::to_string(scratch.size()));
    }
    for (const py::array* a : {&scratch, &cols}) {
        if (!image.dtype().is(a->dtype())) {
            throw py::value_error(std::string(fn) + ": image, scratch and cols must have the "
                                  "same dtype, got " + dtype_str(image) + ", " +
                                  dtype_str(scratch) + ", " + dtype_str(cols));
        }
    }
    require_c_contiguous(image, fn, "image");
    require_c_contiguous(scratch, fn, "scratch");
    require_c_contiguous(cols, fn, "cols");
    require_writeable(scratch, fn, "scratch");
    require_writeable(cols, fn, "cols");
    require_disjoint({{&image, "image"}, {&scratch, "scratch"}, {&cols, "cols"}}, fn);
    const void* src = image.data();
    void* sp = scratch.mutable_data();
    void* dst = cols.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        shifted_cols_kernel(static_cast<const float*>(src), static_cast<float*>(sp),
                            static_cast<float*>(dst), m, c, h, w, kh, kw, ph, pw, dh, dw);
    } else {
        shifted_cols_kernel(static_cast<const double*>(src), static_cast<double*>(sp),
                            static_cast<double*>(dst), m, c, h, w, kh, kw, ph, pw, dh, dw);
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
    m.def("conv2d_shifted_cols", &conv2d_shifted_cols, py::arg("image"), py::arg("scratch"),
          py::arg("cols"), py::arg("kh"), py::arg("kw"), py::arg("ph"), py::arg("pw"),
          py::arg("dh"), py::arg("dw"),
          "cols (C·kh·kw, N·Hp·Wp) <- stride-1 columns of image over the padded output grid");
    kernel_names().push_back("conv2d_im2col");
    kernel_names().push_back("conv2d_col2im");
    kernel_names().push_back("conv2d_shifted_cols");
}

}  // namespace minigen
