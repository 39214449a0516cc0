// Kernel family noise_schedule: fused diffusion ops (MATH.md §6–8), C++ CPU version.
//
// Versions: minigen/reference/noise_schedule.py (numpy, one expression per equation, several
// passes); this file (one pass, OpenMP, float32/float64); kernels/noise_schedule.py (Triton,
// one launch per op). All gather their per-sample coefficients from the schedule's float64
// table (minigen/schedules.py: row t, column COL_*) by the sample's timestep index.
//
// Per-sample scalars are computed once per sample in double from the table and rounded to T;
// the elementwise work is then a one-pass loop over the N·D elements (D = elements per sample)
// that the compiler vectorizes. Three kernels:
//
//   ns_lincomb   out = a_t x + b_t y, a_t = sa·table[t, ca], b_t = sb·table[t, cb]
//                  q_sample:    x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
//                  predict_x0:  x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε   (or from v)
//                  posterior:   μ̃_t = c1_t x̂_0 + c2_t x_t
//                bytes: read x, y, write out = 3·sizeof(T) per element (12 B float32).
//   ns_scale2    gx = a_t g, gy = b_t g (q_sample's backward); read g, write gx, gy:
//                3·sizeof(T) per element (2· when only one gradient is wanted).
//   ns_step      one sampler step, DDPM (kind 0) or DDIM (kind 1), with optional guidance:
//                  m   = (1 + w) ε_c − w ε_u    (or ε_c)             guidance, MATH.md §8
//                  x̂_0 = a m + b x_t … written  x̂_0 = a_t x_t + b_t m,  clipped to ±r
//                  out = A x̂_0 + B x_t + C m + σ z
//                with the per-sample (a, b, A, B, C, σ) of step_coefs below (DDPM: A, B =
//                posterior c1, c2; DDIM: A = √ᾱ_{t'}, (B, C) = the direction term).
//                bytes: read x_t, ε_c [, ε_u] [, z], write out [, x̂_0]:
//                  DDPM 16 B/elt (float32), DDIM η=0 12 B, DDIM+CFG η=0 16 B, η>0 +4 B,
//                  +4 B when x̂_0 is also written.
//   FLOPs are a handful per element: every kernel here is memory-bound.
//
// Threads: the flat range [0, N·D) is split into one contiguous chunk per thread (a chunk
// may span samples), so one large image and many small ones parallelise alike. Below
// kNoiseParallelMin (2^17 elements) a kernel stays on the calling thread. Measured on the
// 2-core machine, q_sample at 128×3×32×32 (393k elements, 4.5 MB moved, in cache): 48–50 µs on
// one thread; on two, 73–76 µs while minigen set OMP_WAIT_POLICY=PASSIVE (waking the sleeping
// thread cost more than half the pass), 37 µs with libgomp's default (the pool stays warm
// between the sampler's kernels); PyTorch's three eager ops: 86 µs.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace minigen {
namespace {

constexpr std::ptrdiff_t kNoiseParallelMin = std::ptrdiff_t(1) << 17;  // see the comment above

// Column indices of the coefficient table: the COL_* constants of minigen/schedules.py.
enum Col : int {
    kAB = 0, kOMAB = 1, kSqrtAB = 2, kSqrtOMAB = 3, kSqrtRecipAB = 4, kSqrtRecipm1AB = 5,
    kPostC1 = 6, kPostC2 = 7, kPostVar = 8, kPostLogVar = 9, kSigmaLarge = 10,
    kSigmaSmall = 11, kBeta = 12, kNumCols = 13
};
enum Pred : int { kEpsilon = 0, kSample = 1, kVPrediction = 2 };

// f(n, begin, end): elements [begin, end) of sample n. Chunks are contiguous in memory.
template <typename F>
void for_segments(std::ptrdiff_t N, std::ptrdiff_t D, F&& f) {
    const std::ptrdiff_t total = N * D;
    if (total == 0) return;
    auto run = [&](std::ptrdiff_t lo, std::ptrdiff_t hi) {
        while (lo < hi) {
            const std::ptrdiff_t n = lo / D, b = lo - n * D;
            const std::ptrdiff_t e = std::min(D, b + (hi - lo));
            f(n, b, e);
            lo += e - b;
        }
    };
#ifdef _OPENMP
    const int nt = total >= kNoiseParallelMin ? num_threads() : 1;
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const std::ptrdiff_t k = omp_get_num_threads(), id = omp_get_thread_num();
            run(total * id / k, total * (id + 1) / k);
        }
        return;
    }
#endif
    run(0, total);
}

// ---- argument checks (with the GIL held, before anything is written) ----------------------
struct Table {
    const double* data;
    std::ptrdiff_t T;
    double at(std::int64_t t, int col) const { return data[t * kNumCols + col]; }
};

Table check_table(const py::object& obj, const char* fn) {
    py::array a = as_ndarray(obj, fn, "table");
    if (!py::isinstance<py::array_t<double>>(a) || a.ndim() != 2 || a.shape(1) != kNumCols) {
        throw py::value_error(std::string(fn) + ": table must be the float64 (T, " +
                              std::to_string(kNumCols) + ") table of a NoiseSchedule, got " +
                              dtype_str(a) + " " + shape_str(a));
    }
    require_c_contiguous(a, fn, "table");
    return {static_cast<const double*>(a.data()), static_cast<std::ptrdiff_t>(a.shape(0))};
}

// int64 (N,) indices, each in [lo, T).
const std::int64_t* check_t(const py::object& obj, std::ptrdiff_t N, std::ptrdiff_t T,
                            std::int64_t lo, const char* fn, const char* name) {
    py::array a = as_ndarray(obj, fn, name);
    if (!py::isinstance<py::array_t<std::int64_t>>(a) || a.ndim() != 1 || a.shape(0) != N) {
        throw py::value_error(std::string(fn) + ": " + name + " must be an int64 array of "
                              "shape (" + std::to_string(N) + ",), got " + dtype_str(a) + " " +
                              shape_str(a));
    }
    require_c_contiguous(a, fn, name);
    const auto* t = static_cast<const std::int64_t*>(a.data());
    for (std::ptrdiff_t n = 0; n < N; ++n) {
        if (t[n] < lo || t[n] >= T) {
            throw py::value_error(std::string(fn) + ": " + name + "[" + std::to_string(n) +
                                  "] = " + std::to_string(t[n]) + " is out of range [" +
                                  std::to_string(lo) + ", " + std::to_string(T - 1) + "]");
        }
    }
    return t;
}

// A float array shaped like ref (same dtype, C-contiguous); writeable when out is true.
py::array check_like(const py::object& obj, const py::array& ref, const char* fn,
                     const char* name, bool out = false) {
    py::array a = as_ndarray(obj, fn, name);
    require_like(a, name, ref, "sample", fn);
    require_c_contiguous(a, fn, name);
    if (out) require_writeable(a, fn, name);
    return a;
}

py::array check_sample(const py::object& obj, const char* fn, const char* name) {
    py::array a = as_ndarray(obj, fn, name);
    float_dtype(a, fn, name);
    require_c_contiguous(a, fn, name);
    if (a.ndim() < 1) throw py::value_error(std::string(fn) + ": " + name + " is 0-d");
    return a;
}

// ---- lincomb: out = a_t x + b_t y ---------------------------------------------------------
// bytes per element: read x, y; write out → 3·sizeof(T).
// One sample's segment: o[i] = a x[i] + b y[i]. A function, so that __restrict binds to
// parameters (GCC ignores it on lambda locals).
template <typename T>
void axpby(const T* __restrict x, const T* __restrict y, T* __restrict o, T a, T b,
           std::ptrdiff_t lo, std::ptrdiff_t hi) {
    MINIGEN_PRAGMA(omp simd)
    for (std::ptrdiff_t i = lo; i < hi; ++i) o[i] = a * x[i] + b * y[i];
}

template <typename T>
void lincomb_kernel(const T* x, const T* y, T* out, const std::vector<T>& a,
                    const std::vector<T>& b, std::ptrdiff_t N, std::ptrdiff_t D) {
    for_segments(N, D, [&](std::ptrdiff_t n, std::ptrdiff_t lo, std::ptrdiff_t hi) {
        axpby(x + n * D, y + n * D, out + n * D, a[n], b[n], lo, hi);
    });
}

template <typename T>
std::vector<T> gather(const Table& tab, const std::int64_t* t, std::ptrdiff_t N, int col,
                      double sign) {
    std::vector<T> v(N);
    for (std::ptrdiff_t n = 0; n < N; ++n) v[n] = static_cast<T>(sign * tab.at(t[n], col));
    return v;
}

void ns_lincomb(const py::object& table_o, const py::object& t_o, const py::object& x_o,
                const py::object& y_o, const py::object& out_o, int ca, double sa, int cb,
                double sb) {
    const char* fn = "ns_lincomb";
    const Table tab = check_table(table_o, fn);
    py::array x = check_sample(x_o, fn, "x");
    py::array y = check_like(y_o, x, fn, "y");
    py::array out = check_like(out_o, x, fn, "out", true);
    require_disjoint({{&x, "x"}, {&out, "out"}}, fn);
    require_disjoint({{&y, "y"}, {&out, "out"}}, fn);
    if (ca < 0 || ca >= kNumCols || cb < 0 || cb >= kNumCols) {
        throw py::value_error(std::string(fn) + ": column out of range");
    }
    const std::ptrdiff_t N = x.shape(0), D = N ? x.size() / N : 0;
    const std::int64_t* t = check_t(t_o, N, tab.T, 0, fn, "t");
    auto run = [&](auto zero) {
        using T = decltype(zero);
        auto a = gather<T>(tab, t, N, ca, sa), b = gather<T>(tab, t, N, cb, sb);
        const T* xp = static_cast<const T*>(x.data());
        const T* yp = static_cast<const T*>(y.data());
        T* op = static_cast<T*>(out.mutable_data());
        py::gil_scoped_release release;
        lincomb_kernel<T>(xp, yp, op, a, b, N, D);
    };
    if (float_dtype(x, fn, "x") == DType::Float32) run(float(0)); else run(double(0));
}

// ---- scale2: gx = a_t g, gy = b_t g (either optional) -------------------------------------
// bytes per element: read g; write gx and/or gy → 3·sizeof(T) (2· with one output).
template <typename T>
void scale2_kernel(const T* g, T* gx, T* gy, const std::vector<T>& a, const std::vector<T>& b,
                   std::ptrdiff_t N, std::ptrdiff_t D) {
    for_segments(N, D, [&](std::ptrdiff_t n, std::ptrdiff_t lo, std::ptrdiff_t hi) {
        const T an = a[n], bn = b[n];
        const T* __restrict gs = g + n * D;
        if (gx && gy) {
            T* __restrict xs = gx + n * D;
            T* __restrict ys = gy + n * D;
            MINIGEN_PRAGMA(omp simd)
            for (std::ptrdiff_t i = lo; i < hi; ++i) {
                xs[i] = an * gs[i];
                ys[i] = bn * gs[i];
            }
        } else {
            T* __restrict os = gx ? gx + n * D : gy + n * D;
            const T c = gx ? an : bn;
            MINIGEN_PRAGMA(omp simd)
            for (std::ptrdiff_t i = lo; i < hi; ++i) os[i] = c * gs[i];
        }
    });
}

void ns_scale2(const py::object& table_o, const py::object& t_o, const py::object& g_o,
               const py::object& gx_o, const py::object& gy_o, int ca, int cb) {
    const char* fn = "ns_scale2";
    const Table tab = check_table(table_o, fn);
    py::array g = check_sample(g_o, fn, "grad");
    py::array gx, gy;
    if (!gx_o.is_none()) gx = check_like(gx_o, g, fn, "gx", true);
    if (!gy_o.is_none()) gy = check_like(gy_o, g, fn, "gy", true);
    const std::ptrdiff_t N = g.shape(0), D = N ? g.size() / N : 0;
    const std::int64_t* t = check_t(t_o, N, tab.T, 0, fn, "t");
    if (gx_o.is_none() && gy_o.is_none()) return;
    auto run = [&](auto zero) {
        using T = decltype(zero);
        auto a = gather<T>(tab, t, N, ca, 1.0), b = gather<T>(tab, t, N, cb, 1.0);
        const T* gp = static_cast<const T*>(g.data());
        T* xp = gx_o.is_none() ? nullptr : static_cast<T*>(gx.mutable_data());
        T* yp = gy_o.is_none() ? nullptr : static_cast<T*>(gy.mutable_data());
        py::gil_scoped_release release;
        scale2_kernel<T>(gp, xp, yp, a, b, N, D);
    };
    if (float_dtype(g, fn, "grad") == DType::Float32) run(float(0)); else run(double(0));
}

// ---- sampler step ------------------------------------------------------------------------
struct StepCoef {
    double a, b;        // x̂_0 = a x_t + b m
    double A, B, C;     // out = A x̂_0 + B x_t + C m + s z
    double s;
};

// x̂_0 = a x_t + b m for each prediction type:
//   epsilon: x̂_0 = x_t/√ᾱ − √(1/ᾱ − 1) ε;  v: x̂_0 = √ᾱ x_t − √(1−ᾱ) v;  sample: x̂_0 = m.
void x0_coefs(const Table& tab, std::int64_t t, int pred, double& a, double& b) {
    switch (pred) {
        case kEpsilon: a = tab.at(t, kSqrtRecipAB); b = -tab.at(t, kSqrtRecipm1AB); break;
        case kVPrediction: a = tab.at(t, kSqrtAB); b = -tab.at(t, kSqrtOMAB); break;
        default: a = 0.0; b = 1.0; break;
    }
}

// DDPM (MATH.md §6): x_{t−1} = μ̃_t(x̂_0, x_t) + σ_t z = c1 x̂_0 + c2 x_t + σ_t z.
StepCoef ddpm_coefs(const Table& tab, std::int64_t t, int pred, int sigma_col) {
    StepCoef c{};
    x0_coefs(tab, t, pred, c.a, c.b);
    c.A = tab.at(t, kPostC1);
    c.B = tab.at(t, kPostC2);
    c.C = 0.0;
    c.s = tab.at(t, sigma_col);  // 0 at t = 0 (in the table)
    return c;
}

// DDIM (MATH.md §7), t → t' (t' = −1: ᾱ_{t'} = 1):
//   σ² = η² (1−ᾱ_{t'})/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'}),  d = √(1 − ᾱ_{t'} − σ²)
//   x_{t'} = √ᾱ_{t'} x̂_0 + d ε̂ + σ z, with ε̂ = p x_t + q m, or, after clipping x̂_0,
//   ε̂ = (x_t − √ᾱ_t x̂_0)/√(1−ᾱ_t), folded into A and B.
StepCoef ddim_coefs(const Table& tab, std::int64_t t, std::int64_t tp, int pred, double eta,
                    bool clip) {
    StepCoef c{};
    x0_coefs(tab, t, pred, c.a, c.b);
    const double ab = tab.at(t, kAB), omab = tab.at(t, kOMAB);
    const double ab_p = tp < 0 ? 1.0 : tab.at(tp, kAB);
    const double omab_p = tp < 0 ? 0.0 : tab.at(tp, kOMAB);
    // 1 − ᾱ_t/ᾱ_{t'} = ((1−ᾱ_t) − (1−ᾱ_{t'}))/ᾱ_{t'}: no cancellation near t = 0
    const double var = eta * eta * (omab_p / omab) * ((omab - omab_p) / ab_p);
    const double d = std::sqrt(std::max(omab_p - var, 0.0));
    const double sab = std::sqrt(ab), somab = std::sqrt(omab);
    c.A = std::sqrt(ab_p);
    if (clip) {
        c.A -= d * sab / somab;
        c.B = d / somab;
        c.C = 0.0;
    } else {
        double p = 0.0, q = 1.0;                                   // epsilon: ε̂ = m
        if (pred == kVPrediction) { p = somab; q = sab; }          // ε̂ = √(1−ᾱ) x_t + √ᾱ v
        if (pred == kSample) { p = 1.0 / somab; q = -sab / somab; }  // ε̂ = (x_t − √ᾱ m)/√(1−ᾱ)
        c.B = d * p;
        c.C = d * q;
    }
    c.s = std::sqrt(var);
    return c;
}

template <typename T>
struct StepCoefT {
    T a, b, A, B, C, s;
};

// One sample's segment [lo, hi) of a step (restrict-qualified parameters, see axpby).
template <typename T, bool kCFG, bool kClip, bool kNoise, bool kX0>
void step_segment(const T* __restrict xs, const T* __restrict cs, const T* __restrict us,
                  const T* __restrict zs, T* __restrict os, T* __restrict ps,
                  const StepCoefT<T> k, T wc, T wu, T r, std::ptrdiff_t lo, std::ptrdiff_t hi) {
    MINIGEN_PRAGMA(omp simd)
    for (std::ptrdiff_t i = lo; i < hi; ++i) {
        const T x = xs[i];
        T m = cs[i];
        if constexpr (kCFG) m = wc * m - wu * us[i];        // (1 + w) ε_c − w ε_u
        T x0 = k.a * x + k.b * m;                           // x̂_0
        if constexpr (kClip) x0 = std::min(std::max(x0, -r), r);
        T o = k.A * x0 + k.B * x + k.C * m;                 // A x̂_0 + B x_t + C m
        if constexpr (kNoise) o += k.s * zs[i];             // + σ z
        os[i] = o;
        if constexpr (kX0) ps[i] = x0;
    }
}

// Bytes per element: read x_t, ε_c [, ε_u if kCFG] [, z if kNoise];
// write out [, x̂_0 if kX0]. 3–6 streams of sizeof(T).
template <typename T, bool kCFG, bool kClip, bool kNoise, bool kX0>
void step_kernel(const T* xt, const T* ec, const T* eu, const T* z, T* out, T* x0out,
                 const std::vector<StepCoefT<T>>& coef, T wc, T wu, T r, std::ptrdiff_t N,
                 std::ptrdiff_t D) {
    for_segments(N, D, [&](std::ptrdiff_t n, std::ptrdiff_t lo, std::ptrdiff_t hi) {
        const std::ptrdiff_t off = n * D;
        step_segment<T, kCFG, kClip, kNoise, kX0>(
            xt + off, ec + off, kCFG ? eu + off : nullptr, kNoise ? z + off : nullptr,
            out + off, kX0 ? x0out + off : nullptr, coef[n], wc, wu, r, lo, hi);
    });
}

void ns_step(const py::object& table_o, const py::object& t_o, const py::object& tp_o,
             const py::object& xt_o, const py::object& ec_o, const py::object& eu_o,
             const py::object& z_o, const py::object& out_o, const py::object& x0_o, int kind,
             int pred, int sigma_col, double eta, double w, double clip) {
    const char* fn = kind == 0 ? "ddpm_step" : "ddim_step";
    const Table tab = check_table(table_o, fn);
    py::array xt = check_sample(xt_o, fn, "sample");
    py::array ec = check_like(ec_o, xt, fn, "model_output");
    py::array eu, z, x0;
    const bool cfg = !eu_o.is_none(), noise = !z_o.is_none(), want_x0 = !x0_o.is_none();
    if (cfg) eu = check_like(eu_o, xt, fn, "uncond_output");
    if (noise) z = check_like(z_o, xt, fn, "noise");
    py::array out = check_like(out_o, xt, fn, "out", true);
    if (want_x0) {
        x0 = check_like(x0_o, xt, fn, "pred_original_sample", true);
        require_disjoint({{&out, "out"}, {&x0, "pred_original_sample"}}, fn);
    }
    require_disjoint({{&xt, "sample"}, {&out, "out"}}, fn);
    if (pred < 0 || pred > 2 || (kind == 0 && sigma_col != kSigmaLarge &&
                                 sigma_col != kSigmaSmall)) {
        throw py::value_error(std::string(fn) + ": bad prediction type or variance column");
    }
    const std::ptrdiff_t N = xt.shape(0), D = N ? xt.size() / N : 0;
    const std::int64_t* t = check_t(t_o, N, tab.T, 0, fn, "t");
    const std::int64_t* tp = kind == 1 ? check_t(tp_o, N, tab.T, -1, fn, "t_prev") : nullptr;
    const bool clipping = clip > 0;
    auto run = [&](auto zero) {
        using T = decltype(zero);
        std::vector<StepCoefT<T>> coef(N);
        for (std::ptrdiff_t n = 0; n < N; ++n) {
            const StepCoef c = kind == 0 ? ddpm_coefs(tab, t[n], pred, sigma_col)
                                         : ddim_coefs(tab, t[n], tp[n], pred, eta, clipping);
            coef[n] = {T(c.a), T(c.b), T(c.A), T(c.B), T(c.C), T(c.s)};
        }
        const T* xp = static_cast<const T*>(xt.data());
        const T* cp = static_cast<const T*>(ec.data());
        const T* up = cfg ? static_cast<const T*>(eu.data()) : nullptr;
        const T* zp = noise ? static_cast<const T*>(z.data()) : nullptr;
        T* op = static_cast<T*>(out.mutable_data());
        T* pp = want_x0 ? static_cast<T*>(x0.mutable_data()) : nullptr;
        const T wc = T(1.0 + w), wu = T(w), r = T(clip);
        py::gil_scoped_release release;
        with_bool(cfg, [&](auto kCFG) {
            with_bool(clipping, [&](auto kClip) {
                with_bool(noise, [&](auto kNoise) {
                    with_bool(want_x0, [&](auto kX0) {
                        step_kernel<T, decltype(kCFG)::value, decltype(kClip)::value,
                                    decltype(kNoise)::value, decltype(kX0)::value>(
                            xp, cp, up, zp, op, pp, coef, wc, wu, r, N, D);
                    });
                });
            });
        });
    };
    if (float_dtype(xt, fn, "sample") == DType::Float32) run(float(0)); else run(double(0));
}

}  // namespace

void register_noise_schedule(py::module_& m) {
    m.def("ns_lincomb", &ns_lincomb, py::arg("table"), py::arg("t"), py::arg("x"),
          py::arg("y"), py::arg("out"), py::arg("col_a"), py::arg("sign_a"), py::arg("col_b"),
          py::arg("sign_b"),
          "out = sign_a·table[t, col_a] x + sign_b·table[t, col_b] y, per sample, one pass");
    m.def("ns_scale2", &ns_scale2, py::arg("table"), py::arg("t"), py::arg("grad"),
          py::arg("gx"), py::arg("gy"), py::arg("col_a"), py::arg("col_b"),
          "gx = table[t, col_a] grad, gy = table[t, col_b] grad (either may be None)");
    m.def("ns_step", &ns_step, py::arg("table"), py::arg("t"), py::arg("t_prev"),
          py::arg("sample"), py::arg("eps_c"), py::arg("eps_u"), py::arg("noise"),
          py::arg("out"), py::arg("x0_out"), py::arg("kind"), py::arg("prediction"),
          py::arg("sigma_col"), py::arg("eta"), py::arg("w"), py::arg("clip"),
          "one DDPM (kind 0) or DDIM (kind 1) step with optional guidance, one pass");
    for (const char* name : {"ns_lincomb", "ns_scale2", "ns_step"}) {
        kernel_names().push_back(name);
    }
}

}  // namespace minigen
