// Kernel family: group_norm (with an optional fused SiLU) and silu (elementwise).
//
// Versions: the numpy reference in minigen/ops/normalization.py (GroupNorm) and
// minigen/ops/elementwise.py (Silu), which the tests hold these to; this one (C++, float32 and
// float64, statistics accumulated in double; float32 e^x by a vectorizable polynomial,
// exp_approx, float64 by std::exp; each kernel compiled for AVX-512 / AVX2 / SSE2 and picked
// at load time, see MINIGEN_CLONES).
//
// Math (x viewed as (N, G, K, S): K = C/G channels of S positions per (sample n, group g)):
//   μ = mean x,  σ² = mean (x − μ)²  (biased, over the K·S elements),  r = 1/√(σ² + eps)
//   x̂ = (x − μ) r,  z = w_c x̂ + b_c = (x − μ)·(r w_c) + b_c,  y = z  or  y = silu(z)
//   silu(z) = z σ(z),  silu'(z) = σ(z) (1 + z (1 − σ(z))),  σ(z) = 1/(1 + e^{−z})
// Backward, with g_z = g (or g·silu'(z), z recomputed from x, μ, r) and ĝ = g_z w_c:
//   dx = r (ĝ − mean ĝ − x̂ mean(ĝ x̂)),  dw_c = Σ_{n,s} g_z x̂,  db_c = Σ_{n,s} g_z.
//   The group means come from per-(n, c) sums A = Σ_s g_z x̂ and B = Σ_s g_z:
//   mean ĝ = Σ_c w_c B_c / (K S),  mean ĝ x̂ = Σ_c w_c A_c / (K S); dw, db sum A, B over n.
//
// Bytes moved per element (T = sizeof(float or double)):
//   forward:  read x twice (mean, then variance: the (n, g) slab is K·S·T bytes, usually in
//             L2 on the second read), read x once more and write y: ~3 reads + 1 write.
//   backward: pass 1 reads x and g, writes g_z into dx; pass 2 reads x and dx, writes dx.
// The fused SiLU adds one exp per element forward and one backward (z is recomputed rather
// than saved: an exp is cheaper than another N·C·S array written and read back).
//
// Threads: the (n, g) slabs are independent; one OpenMP loop over N·G when the tensor has at
// least kNormParallelMin (2^17) elements (see the constant below).
#include "common.h"

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

// GCC keeps a float select (the clamps of vecmath.h) as a branch when FP compares may trap
// (-ftrapping-math, its default), and a branch stops the vectorizer; nothing here relies on FP
// exceptions, so this file drops that assumption (no result changes).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "vecmath.h"

namespace minigen {

namespace {


// σ(z) = 1/(1 + e^{−z}); for z → −∞ e^{−z} is large and σ → 0, which is right.
inline float sigmoid(float z) { return 1.0f / (1.0f + exp_approx(-z)); }
inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Threads from 2^17 elements. While the convolutions' GEMMs ran on numpy's OpenBLAS, an OpenMP
// team here competed with OpenBLAS's spinning workers (E3 forward 208 ms with these kernels on
// 2 threads, 158 ms on 1), so the threshold was 2^23 (never reached in E2). With minigen's
// GEMM on the same OpenMP pool that fight is gone: per E2 step, GroupNorm backward went from
// ~12 to ~6.5 ms on 2 threads, the step as a whole within run-to-run noise (340–350 ms).
constexpr std::ptrdiff_t kNormParallelMin = std::ptrdiff_t(1) << 17;

template <typename T, bool Silu>
MINIGEN_CLONES void gn_forward_kernel(const T* __restrict x, const T* __restrict w, const T* __restrict b,
                       T* __restrict y, T* __restrict mean, T* __restrict rstd,
                       std::ptrdiff_t N, std::ptrdiff_t C, std::ptrdiff_t S,
                       std::ptrdiff_t G, double eps) {
    const std::ptrdiff_t K = C / G, M = K * S, NG = N * G;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) \
    if (N * C * S >= kNormParallelMin)
#endif
    for (std::ptrdiff_t ng = 0; ng < NG; ++ng) {
        const T* xs = x + ng * M;
        T* ys = y + ng * M;
        double s1 = 0;
#pragma omp simd reduction(+ : s1)
        for (std::ptrdiff_t i = 0; i < M; ++i) s1 += double(xs[i]);
        const double mu = s1 / double(M);
        double s2 = 0;
#pragma omp simd reduction(+ : s2)
        for (std::ptrdiff_t i = 0; i < M; ++i) {
            const double d = double(xs[i]) - mu;
            s2 += d * d;
        }
        const double r = 1.0 / std::sqrt(s2 / double(M) + eps);
        mean[ng] = T(mu);
        rstd[ng] = T(r);
        const std::ptrdiff_t g = ng % G;
        for (std::ptrdiff_t k = 0; k < K; ++k) {
            const std::ptrdiff_t c = g * K + k;
            const double wc = w ? double(w[c]) : 1.0, bc = b ? double(b[c]) : 0.0;
            // z = (x − μ)·(r w_c) + b_c. Not x·scale + shift: when σ ≪ |μ| the product x·scale
            // rounds at the size of μ r and the cancellation against shift loses all digits.
            const T m = T(mu), scale = T(r * wc), shift = T(bc);
            const T* xc = xs + k * S;
            T* yc = ys + k * S;
#pragma omp simd
            for (std::ptrdiff_t s = 0; s < S; ++s) {
                const T z = (xc[s] - m) * scale + shift;
                yc[s] = Silu ? z * sigmoid(z) : z;
            }
        }
    }
}

// dx (N, C, S) and the per-(n, c) partial sums A = Σ_s g_z x̂, B = Σ_s g_z (double).
template <typename T, bool Silu>
MINIGEN_CLONES void gn_backward_kernel(const T* __restrict x, const T* __restrict w, const T* __restrict b,
                        const T* __restrict mean, const T* __restrict rstd,
                        const T* __restrict gy, T* __restrict dx, double* __restrict A,
                        double* __restrict B, std::ptrdiff_t N, std::ptrdiff_t C,
                        std::ptrdiff_t S, std::ptrdiff_t G) {
    const std::ptrdiff_t K = C / G, M = K * S, NG = N * G;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) \
    if (N * C * S >= kNormParallelMin)
#endif
    for (std::ptrdiff_t ng = 0; ng < NG; ++ng) {
        const std::ptrdiff_t n = ng / G, g = ng % G;
        const T mu = mean[ng], r = rstd[ng];
        const T* xs = x + ng * M;
        const T* gs = gy + ng * M;
        T* ds = dx + ng * M;
        double mean_gh = 0, mean_ghxh = 0;
        // pass 1: g_z into dx, the channel sums A, B
        for (std::ptrdiff_t k = 0; k < K; ++k) {
            const std::ptrdiff_t c = g * K + k;
            const T wc = w ? w[c] : T(1), bc = b ? b[c] : T(0);
            const T* xc = xs + k * S;
            const T* gc = gs + k * S;
            T* dc = ds + k * S;
            double a = 0, bb = 0;
#pragma omp simd reduction(+ : a, bb)
            for (std::ptrdiff_t s = 0; s < S; ++s) {
                const T xh = (xc[s] - mu) * r;
                T gz = gc[s];
                if (Silu) {
                    const T z = xh * wc + bc;
                    const T sg = sigmoid(z);
                    gz = gz * (sg * (T(1) + z * (T(1) - sg)));
                    dc[s] = gz;
                }
                a += double(gz) * double(xh);
                bb += double(gz);
            }
            A[n * C + c] = a;
            B[n * C + c] = bb;
            mean_gh += double(wc) * bb;
            mean_ghxh += double(wc) * a;
        }
        const T m1 = T(mean_gh / double(M)), m2 = T(mean_ghxh / double(M));
        // pass 2: dx = r (w_c g_z − mean ĝ − x̂ mean ĝx̂)
        for (std::ptrdiff_t k = 0; k < K; ++k) {
            const std::ptrdiff_t c = g * K + k;
            const T wc = w ? w[c] : T(1);
            const T* xc = xs + k * S;
            const T* gz = Silu ? ds + k * S : gs + k * S;
            T* dc = ds + k * S;
#pragma omp simd
            for (std::ptrdiff_t s = 0; s < S; ++s) {
                const T xh = (xc[s] - mu) * r;
                dc[s] = r * (wc * gz[s] - m1 - xh * m2);
            }
        }
    }
}

struct GnArgs {
    py::array x, w, b;
    bool has_w = false, has_b = false;
    DType dtype = DType::Float32;
    std::ptrdiff_t N = 0, C = 0, S = 0;
};

GnArgs gn_args(const char* fn, const py::object& xo, const py::object& wo, const py::object& bo,
               long long groups) {
    GnArgs a;
    a.x = as_ndarray(xo, fn, "x");
    a.dtype = float_dtype(a.x, fn, "x");
    require_c_contiguous(a.x, fn, "x");
    if (a.x.ndim() != 3) {
        throw py::value_error(std::string(fn) + ": x must be 3-D (N, C, S), got shape " +
                              shape_str(a.x));
    }
    a.N = a.x.shape(0);
    a.C = a.x.shape(1);
    a.S = a.x.shape(2);
    if (groups < 1 || a.C % groups) {
        throw py::value_error(std::string(fn) + ": groups=" + std::to_string(groups) +
                              " does not divide the " + std::to_string(a.C) + " channels");
    }
    for (auto [o, arr, has, name] :
         {std::tuple<const py::object&, py::array*, bool*, const char*>{wo, &a.w, &a.has_w,
                                                                         "weight"},
          std::tuple<const py::object&, py::array*, bool*, const char*>{bo, &a.b, &a.has_b,
                                                                         "bias"}}) {
        if (o.is_none()) continue;
        *arr = as_ndarray(o, fn, name);
        if (float_dtype(*arr, fn, name) != a.dtype) {
            throw py::value_error(std::string(fn) + ": " + name + " has dtype " +
                                  dtype_str(*arr) + " but x has dtype " + dtype_str(a.x));
        }
        require_c_contiguous(*arr, fn, name);
        if (arr->ndim() != 1 || arr->shape(0) != a.C) {
            throw py::value_error(std::string(fn) + ": " + name + " has shape " +
                                  shape_str(*arr) + ", expected (" + std::to_string(a.C) + ",)");
        }
        *has = true;
    }
    return a;
}

template <typename T>
py::tuple gn_forward_typed(const GnArgs& a, long long G, double eps, bool silu) {
    py::array_t<T> y({a.N, a.C, a.S}), mean({a.N, py::ssize_t(G)}), rstd({a.N, py::ssize_t(G)});
    const T* x = static_cast<const T*>(a.x.data());
    const T* w = a.has_w ? static_cast<const T*>(a.w.data()) : nullptr;
    const T* b = a.has_b ? static_cast<const T*>(a.b.data()) : nullptr;
    T *yp = y.mutable_data(), *mp = mean.mutable_data(), *rp = rstd.mutable_data();
    {
        py::gil_scoped_release release;
        with_bool(silu, [&](auto s) {
            gn_forward_kernel<T, decltype(s)::value>(x, w, b, yp, mp, rp, a.N, a.C, a.S, G,
                                                     eps);
        });
    }
    return py::make_tuple(y, mean, rstd);
}

template <typename T>
py::tuple gn_backward_typed(const GnArgs& a, const py::array& mean, const py::array& rstd,
                            const py::array& g, long long G, bool silu) {
    py::array_t<T> dx({a.N, a.C, a.S}), dw(a.C), db(a.C);
    std::vector<double> A(size_t(a.N * a.C)), B(size_t(a.N * a.C));
    const T* x = static_cast<const T*>(a.x.data());
    const T* w = a.has_w ? static_cast<const T*>(a.w.data()) : nullptr;
    const T* b = a.has_b ? static_cast<const T*>(a.b.data()) : nullptr;
    const T* mp = static_cast<const T*>(mean.data());
    const T* rp = static_cast<const T*>(rstd.data());
    const T* gp = static_cast<const T*>(g.data());
    T *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
    {
        py::gil_scoped_release release;
        with_bool(silu, [&](auto s) {
            gn_backward_kernel<T, decltype(s)::value>(x, w, b, mp, rp, gp, dxp, A.data(),
                                                      B.data(), a.N, a.C, a.S, G);
        });
        for (std::ptrdiff_t c = 0; c < a.C; ++c) {
            double sa = 0, sb = 0;
            for (std::ptrdiff_t n = 0; n < a.N; ++n) {
                sa += A[n * a.C + c];
                sb += B[n * a.C + c];
            }
            dwp[c] = T(sa);
            dbp[c] = T(sb);
        }
    }
    return py::make_tuple(dx, dw, db);
}

py::tuple group_norm_forward(const py::object& x, const py::object& weight,
                             const py::object& bias, long long groups, double eps, bool silu) {
    const char* fn = "group_norm_forward";
    GnArgs a = gn_args(fn, x, weight, bias, groups);
    return a.dtype == DType::Float32 ? gn_forward_typed<float>(a, groups, eps, silu)
                                     : gn_forward_typed<double>(a, groups, eps, silu);
}

py::tuple group_norm_backward(const py::object& grad, const py::object& x,
                              const py::object& weight, const py::object& bias,
                              const py::object& mean, const py::object& rstd, long long groups,
                              bool silu) {
    const char* fn = "group_norm_backward";
    GnArgs a = gn_args(fn, x, weight, bias, groups);
    const py::array g = as_ndarray(grad, fn, "grad");
    require_c_contiguous(g, fn, "grad");
    require_like(g, "grad", a.x, "x", fn);
    const py::array m = as_ndarray(mean, fn, "mean"), r = as_ndarray(rstd, fn, "rstd");
    for (auto [arr, name] : {std::pair<const py::array*, const char*>{&m, "mean"}, {&r, "rstd"}}) {
        require_c_contiguous(*arr, fn, name);
        if (float_dtype(*arr, fn, name) != a.dtype || arr->ndim() != 2 ||
            arr->shape(0) != a.N || arr->shape(1) != groups) {
            throw py::value_error(std::string(fn) + ": " + name + " must be (" +
                                  std::to_string(a.N) + ", " + std::to_string(groups) +
                                  ") of x's dtype, got " + shape_str(*arr) + " " +
                                  dtype_str(*arr));
        }
    }
    return a.dtype == DType::Float32 ? gn_backward_typed<float>(a, m, r, g, groups, silu)
                                     : gn_backward_typed<double>(a, m, r, g, groups, silu);
}

// ---- silu, elementwise --------------------------------------------------------------------
template <typename T>
MINIGEN_CLONES void silu_kernel(const T* __restrict x, const T* __restrict g, T* __restrict y,
                                std::ptrdiff_t n) {
    if (g) {
        MINIGEN_PARALLEL_FOR(n)
        for (std::ptrdiff_t i = 0; i < n; ++i) {
            const T s = sigmoid(x[i]);
            y[i] = g[i] * (s * (T(1) + x[i] * (T(1) - s)));  // g silu'(x)
        }
    } else {
        MINIGEN_PARALLEL_FOR(n)
        for (std::ptrdiff_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
    }
}

template <typename T>
py::array silu_typed(const py::array& x, const py::array* g) {
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<T> y(shape);
    const T* xp = static_cast<const T*>(x.data());
    const T* gp = g ? static_cast<const T*>(g->data()) : nullptr;
    T* yp = y.mutable_data();
    const std::ptrdiff_t n = x.size();
    {
        py::gil_scoped_release release;
        silu_kernel(xp, gp, yp, n);
    }
    return y;
}

py::array silu_forward(const py::object& xo) {
    const py::array x = as_ndarray(xo, "silu_forward", "x");
    const DType dt = float_dtype(x, "silu_forward", "x");
    require_c_contiguous(x, "silu_forward", "x");
    return dt == DType::Float32 ? silu_typed<float>(x, nullptr) : silu_typed<double>(x, nullptr);
}

py::array silu_backward(const py::object& go, const py::object& xo) {
    const char* fn = "silu_backward";
    const py::array x = as_ndarray(xo, fn, "x"), g = as_ndarray(go, fn, "grad");
    const DType dt = float_dtype(x, fn, "x");
    require_c_contiguous(x, fn, "x");
    require_c_contiguous(g, fn, "grad");
    require_like(g, "grad", x, "x", fn);
    return dt == DType::Float32 ? silu_typed<float>(x, &g) : silu_typed<double>(x, &g);
}

}  // namespace

void register_normalization(py::module_& m) {
    m.def("group_norm_forward", &group_norm_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("groups"), py::arg("eps"), py::arg("silu"),
          "group_norm_forward(x (N, C, S), weight (C,) or None, bias (C,) or None, groups, eps, "
          "silu) -> (y, mean (N, G), rstd (N, G)); y = silu(gn(x)) when silu.");
    m.def("group_norm_backward", &group_norm_backward, py::arg("grad"), py::arg("x"),
          py::arg("weight"), py::arg("bias"), py::arg("mean"), py::arg("rstd"),
          py::arg("groups"), py::arg("silu"),
          "group_norm_backward(grad, x, weight, bias, mean, rstd, groups, silu) -> (dx, dw, db)"
          "; dw and db are computed even without weight/bias (then of the unit affine map).");
    m.def("silu_forward", &silu_forward, py::arg("x"), "x * sigmoid(x), elementwise.");
    m.def("silu_backward", &silu_backward, py::arg("grad"), py::arg("x"),
          "grad * sigmoid(x) * (1 + x (1 - sigmoid(x))), elementwise.");
    for (const char* name :
         {"group_norm_forward", "group_norm_backward", "silu_forward", "silu_backward"}) {
        kernel_names().push_back(name);
    }
}

}  // namespace minigen
