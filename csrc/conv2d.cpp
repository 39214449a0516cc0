// Kernel family conv2d (and conv_transpose2d, its adjoint): the C++ half of the native version.
//
// Versions: minigen/reference/conv2d.py (numpy, the definition and the math); this file plus
// minigen/native/conv2d.py (im2col/col2im here, the GEMMs through gemm.h / native/gemm.py, and
// an implicit-GEMM forward that packs the GEMM's B panels straight from the image); and
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
// planes (no atomics). The Python face passes parallel=True since the GEMMs run on the same
// OpenMP pool. (While they were numpy's OpenBLAS calls it passed False: OpenBLAS's workers kept
// spinning after each GEMM, a second OpenMP thread competed with them for the other core of a
// 2-core machine and each chunk waited a scheduler time slice; K1 forward: 270 ms with
// parallel im2col between the GEMMs, 14 ms single-threaded.)
#pragma GCC optimize("fp-contract=fast")  // for gemm.h's micro-kernel (see there)

#include "common.h"
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace minigen {

namespace {

// Below this many multiply-adds the implicit-GEMM forward runs on the calling thread.
constexpr std::ptrdiff_t kGemmConvParallelMin = std::ptrdiff_t(1) << 21;

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

// ---- implicit-GEMM forward: im2col inside the GEMM's packing --------------------------------

// B of one image's forward product, read from the image as the GEMM packs it:
//   B[(c, i, j), (a, b)] = x_pad[c, a·s_h + i·d_h, b·s_w + j·d_w]
// The column matrix is never written out: each kc×NR micro-panel is gathered from the image
// (C·H·W, in cache) into the packing buffer, one copy instead of im2col's write plus the
// packing's read and write of a K·P buffer. The panel's NR columns are cut into runs that share
// an output row a (computed once per panel); per row k of the panel, each run is a zero-fill
// outside the image and a copy (contiguous when s_w = 1) inside.
template <typename T>
struct Im2colB {
    const T* x;              // one image (C, H, W)
    Geometry g;
    std::ptrdiff_t j_base;   // first output pixel of this product (a split by columns)

    template <int NR>
    void pack(std::ptrdiff_t k0, std::ptrdiff_t kc, std::ptrdiff_t j0, std::ptrdiff_t nc,
              T* __restrict dst) const {
        struct Run {
            std::ptrdiff_t q, len, a, b;
        };
        const std::ptrdiff_t khw = g.kh * g.kw, plane = g.h * g.w;
        // output columns b whose input column b·s_w + j·d_w − p_w is inside, per kernel column j
        std::vector<std::ptrdiff_t> lo(g.kw), hi(g.kw);
        for (std::ptrdiff_t j = 0; j < g.kw; ++j) {
            valid_range(g.w, g.wo, g.sw, j * g.dw - g.pw, &lo[j], &hi[j]);
        }
        for (std::ptrdiff_t jr = 0; jr < nc; jr += NR) {
            const std::ptrdiff_t nr = std::min<std::ptrdiff_t>(NR, nc - jr);
            Run runs[NR];
            int nruns = 0;
            for (std::ptrdiff_t q = 0; q < nr;) {
                const std::ptrdiff_t p = j_base + j0 + jr + q, a = p / g.wo, b = p % g.wo;
                const std::ptrdiff_t len = std::min(nr - q, g.wo - b);
                runs[nruns++] = {q, len, a, b};
                q += len;
            }
            std::ptrdiff_t c = k0 / khw, r = k0 % khw, i = r / g.kw, j = r % g.kw;
            T* d = dst + jr * kc;
            for (std::ptrdiff_t k = 0; k < kc; ++k) {
                T* __restrict dk = d + k * NR;
                const T* src = x + c * plane;
                const std::ptrdiff_t row_off = i * g.dh - g.ph, col_off = j * g.dw - g.pw;
                const std::ptrdiff_t jlo = lo[j], jhi = hi[j];
                for (int u = 0; u < nruns; ++u) {
                    const Run& rn = runs[u];
                    T* out = dk + rn.q;
                    const std::ptrdiff_t row = rn.a * g.sh + row_off;
                    const std::ptrdiff_t t0 = std::clamp(jlo - rn.b, std::ptrdiff_t(0), rn.len);
                    const std::ptrdiff_t t1 = std::clamp(jhi - rn.b, t0, rn.len);
                    if (row < 0 || row >= g.h) {
                        std::fill(out, out + rn.len, T(0));
                        continue;
                    }
                    const T* in = src + row * g.w + rn.b * g.sw + col_off;  // in[t·s_w]
                    std::fill(out, out + t0, T(0));
                    if (g.sw == 1) {
                        for (std::ptrdiff_t t = t0; t < t1; ++t) {
                            out[t] = in[t];
                        }
                    } else {
                        for (std::ptrdiff_t t = t0; t < t1; ++t) {
                            out[t] = in[t * g.sw];
                        }
                    }
                    std::fill(out + t1, out + rn.len, T(0));
                }
                std::fill(dk + nr, dk + NR, T(0));
                if (++j == g.kw) {   // next row of B: (c, i, j + 1)
                    j = 0;
                    if (++i == g.kh) {
                        i = 0;
                        ++c;
                    }
                }
            }
        }
    }
};

// y[n] (C_out × P) = W (C_out × C·k_h·k_w) · B(x[n]) for every image (groups = 1). Threads:
// images split across them when there are enough images, else each image's columns.
template <typename T>
void forward_gemm_kernel(const T* x, const T* w, T* y, std::ptrdiff_t n, std::ptrdiff_t c_out,
                         const Geometry& g, int threads) {
    using gemm::View;
    const std::ptrdiff_t K = g.channels * g.kh * g.kw, P = g.ho * g.wo;
    const std::ptrdiff_t img = g.channels * g.h * g.w;
    const auto fn = gemm::pick_serial<T, Im2colB<T>>();
    const std::size_t need = gemm::scratch_size<T>();
    const View<T> a{w, K, 1};
    auto one = [&](std::ptrdiff_t im, std::ptrdiff_t j0, std::ptrdiff_t j1) {
        T* buf = gemm::scratch<T>(need);
        const Im2colB<T> b{x + im * img, g, j0};
        fn(c_out, j1 - j0, K, a, b, y + im * c_out * P + j0, P, false, T(1), buf,
           buf + gemm::a_scratch_elems<T>());
    };
    const bool parallel = threads > 1 && n * c_out * P * K >= kGemmConvParallelMin;
    if (!parallel) {
        for (std::ptrdiff_t im = 0; im < n; ++im) {
            one(im, 0, P);
        }
        return;
    }
    if (n >= threads) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
        for (std::ptrdiff_t im = 0; im < n; ++im) {
            one(im, 0, P);
        }
        return;
    }
    const std::ptrdiff_t unit = 2 * gemm::isa().vb / static_cast<std::ptrdiff_t>(sizeof(T));
    const std::ptrdiff_t units = (P + unit - 1) / unit;
    for (std::ptrdiff_t im = 0; im < n; ++im) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), team = omp_get_num_threads();
#else
        {
            const int t = 0, team = 1;
#endif
            const std::ptrdiff_t s0 = std::min(P, units * t / team * unit);
            const std::ptrdiff_t s1 = std::min(P, units * (t + 1) / team * unit);
            if (s1 > s0) {
                one(im, s0, s1);
            }
        }
    }
}

}  // namespace

// y (N, C_out, H_out, W_out) ← conv2d(x, w) with groups = 1, no bias: an implicit GEMM per
// image (the column matrix is packed from the image, never stored). w (C_out, C, k_h, k_w).
void conv2d_forward_gemm(const py::object& x_obj, const py::object& w_obj,
                         const py::object& y_obj, std::ptrdiff_t kh, std::ptrdiff_t kw,
                         std::ptrdiff_t sh, std::ptrdiff_t sw, std::ptrdiff_t ph,
                         std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw) {
    const char* fn = "conv2d_forward_gemm";
    const py::array x = as_ndarray(x_obj, fn, "x");
    const py::array w = as_ndarray(w_obj, fn, "w");
    py::array y = as_ndarray(y_obj, fn, "y");
    const bool f32 = float_dtype(x, fn, "x") == DType::Float32;
    if (x.ndim() != 4 || w.ndim() != 4 || y.ndim() != 4) {
        throw py::value_error(std::string(fn) + ": x, w, y must be 4-D, got " + shape_str(x) +
                              ", " + shape_str(w) + ", " + shape_str(y));
    }
    if (!same_dtype(x, w) || !same_dtype(x, y)) {
        throw py::value_error(std::string(fn) + ": x, w, y must share a dtype, got " +
                              dtype_str(x) + ", " + dtype_str(w) + ", " + dtype_str(y));
    }
    if (w.shape(1) != x.shape(1) || w.shape(2) != kh || w.shape(3) != kw) {
        throw py::value_error(std::string(fn) + ": w " + shape_str(w) + " does not fit x " +
                              shape_str(x) + " with a " + std::to_string(kh) + "×" +
                              std::to_string(kw) + " kernel (groups = 1)");
    }
    // the geometry (and its checks) as im2col has it, with a batched-columns shape stand-in
    const std::ptrdiff_t n = x.shape(0), c_out = w.shape(0);
    const std::ptrdiff_t ho_s = x.shape(2) + 2 * ph - dh * (kh - 1) - 1;
    const std::ptrdiff_t wo_s = x.shape(3) + 2 * pw - dw * (kw - 1) - 1;
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0 ||
        ho_s < 0 || wo_s < 0) {
        throw py::value_error(std::string(fn) + ": bad geometry (kernel, stride, padding, "
                              "dilation) for x " + shape_str(x));
    }
    const std::ptrdiff_t ho = ho_s / sh + 1, wo = wo_s / sw + 1;
    require_shape(y, {n, c_out, ho, wo}, fn, "y");
    require_c_contiguous(x, fn, "x");
    require_c_contiguous(w, fn, "w");
    require_c_contiguous(y, fn, "y");
    require_writeable(y, fn, "y");
    require_disjoint({{&x, "x"}, {&y, "y"}}, fn);
    require_disjoint({{&w, "w"}, {&y, "y"}}, fn);
    Geometry g{};
    g.planes = n * x.shape(1);
    g.channels = x.shape(1);
    g.h = x.shape(2);
    g.w = x.shape(3);
    g.ho = ho;
    g.wo = wo;
    g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw;
    const int threads = num_threads();
    const void* xp = x.data();
    const void* wp = w.data();
    void* yp = y.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        forward_gemm_kernel(static_cast<const float*>(xp), static_cast<const float*>(wp),
                            static_cast<float*>(yp), n, c_out, g, threads);
    } else {
        forward_gemm_kernel(static_cast<const double*>(xp), static_cast<const double*>(wp),
                            static_cast<double*>(yp), n, c_out, g, threads);
    }
}

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
    m.def("conv2d_forward_gemm", &conv2d_forward_gemm, py::arg("x"), py::arg("w"), py::arg("y"),
          py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
          py::arg("pw"), py::arg("dh"), py::arg("dw"),
          "y (N, C_out, Hout, Wout) <- conv2d(x, w), groups 1, no bias: an implicit GEMM per "
          "image (im2col inside the GEMM's packing)");
    kernel_names().push_back("conv2d_forward_gemm");
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
