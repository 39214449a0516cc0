// Kernel family logdet (C++ CPU), part 2: the fused normalizing-flow primitives with their
// log-dets (part 1, the LU and solves, is logdet.cpp; the math of both in
// minigen/reference/logdet.py, MATH.md §4).
//
// actnorm: y = e^ℓ x + b per channel: read x, write y (2 passes of N·C·M elements);
//   backward reads g and x, writes g_x, and reduces Σ g x, Σ g per channel.
// coupling: y_a = s x_a + t, s = sigmoid(raw + 2), log-det Σ log s per sample: read x and h
//   (2·N·C·M), write y (N·C·M) and N log-dets, one pass; backward reads g, x, h, writes g_x, g_h.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

// The coupling kernels use vecmath.h's vectorizable e^x and log1p for float32; GCC vectorizes
// their clamps and selects only without trapping-math (no result changes, see vecmath.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "vecmath.h"

namespace minigen {

namespace {

// ---- flow primitives ------------------------------------------------------------------------

// Arrays of one flow kernel call: all C-contiguous, same dtype, checked by the caller.
struct FlowShape {
    std::ptrdiff_t n, c, m;  // batch, channels, positions per channel (Π spatial)
};

FlowShape flow_shape(const py::array& x, const char* fn) {
    if (x.ndim() < 2) {
        throw py::value_error(std::string(fn) + ": x must be (N, C, *), got " + shape_str(x));
    }
    std::ptrdiff_t m = 1;
    for (py::ssize_t d = 2; d < x.ndim(); ++d) {
        m *= x.shape(d);
    }
    return {x.shape(0), x.shape(1), m};
}

void require_same(const py::array& a, const char* name, const py::array& ref,
                  const char* ref_name, const char* fn, bool writeable) {
    require_like(a, name, ref, ref_name, fn);
    require_c_contiguous(a, fn, name);
    if (writeable) {
        require_writeable(a, fn, name);
    }
}

void require_vec(const py::array& a, std::ptrdiff_t len, const py::array& ref, const char* name,
                 const char* fn, bool writeable) {
    require_shape(a, {len}, fn, name);
    if (dtype_str(a) != dtype_str(ref)) {
        throw py::value_error(std::string(fn) + ": " + name + " has dtype " + dtype_str(a) +
                              ", expected " + dtype_str(ref));
    }
    require_c_contiguous(a, fn, name);
    if (writeable) {
        require_writeable(a, fn, name);
    }
}

// actnorm: out = e^ℓ x + b (forward) or (x − b) e^{−ℓ} (reverse), per channel; one pass.
template <typename T>
void actnorm_fwd(const T* __restrict x, const T* ls, const T* bias, T* __restrict out,
                 FlowShape f, bool reverse) {
    const std::ptrdiff_t planes = f.n * f.c, m = f.m;
    const bool parallel = planes * m >= kParallelMin;
    (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
    for (std::ptrdiff_t q = 0; q < planes; ++q) {
        const std::ptrdiff_t c = q % f.c;
        const T* __restrict xi = x + q * m;
        T* __restrict yi = out + q * m;
        if (!reverse) {
            const T s = std::exp(ls[c]), b = bias[c];
            for (std::ptrdiff_t i = 0; i < m; ++i) {
                yi[i] = s * xi[i] + b;
            }
        } else {
            const T r = std::exp(-ls[c]), b = bias[c];
            for (std::ptrdiff_t i = 0; i < m; ++i) {
                yi[i] = (xi[i] - b) * r;
            }
        }
    }
}

// actnorm backward: g_in = g e^{±ℓ}; per channel Σ g·x → sum_gx, Σ g → sum_g (threads own
// channels, so the sums need no atomics).
template <typename T>
void actnorm_bwd(const T* __restrict g, const T* __restrict x, const T* ls, T* __restrict g_in,
                 T* sum_gx, T* sum_g, FlowShape f, bool reverse) {
    const bool parallel = f.c > 1 && f.n * f.c * f.m >= (kParallelMin >> 2);
    (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
    for (std::ptrdiff_t c = 0; c < f.c; ++c) {
        const T k = reverse ? std::exp(-ls[c]) : std::exp(ls[c]);
        double sgx = 0.0, sg = 0.0;
        for (std::ptrdiff_t n = 0; n < f.n; ++n) {
            const std::ptrdiff_t off = (n * f.c + c) * f.m;
            const T* __restrict gi = g + off;
            const T* __restrict xi = x + off;
            T* __restrict oi = g_in + off;
            T a = 0, b = 0;
            for (std::ptrdiff_t i = 0; i < f.m; ++i) {
                oi[i] = gi[i] * k;
                a += gi[i] * xi[i];
                b += gi[i];
            }
            sgx += a;
            sg += b;
        }
        sum_gx[c] = static_cast<T>(sgx);
        sum_g[c] = static_cast<T>(sg);
    }
}

// log s and s for s = sigmoid(z): log s = min(z, 0) − log1p(e^{−|z|}), no overflow for any z.
// float64 through libm; float32 through vecmath.h's polynomials, so that the loop vectorizes
// (measured on K7, 64×48×16×16: see benchmarks/RESULTS.md).
inline void sigmoid_log(double z, double& s, double& log_s) {
    const double e = std::exp(-std::abs(z));
    log_s = std::min(z, 0.0) - std::log1p(e);
    s = (z >= 0 ? 1.0 : e) / (1.0 + e);
}

inline void sigmoid_log(float z, float& s, float& log_s) {
    const float az = z < 0.0f ? -z : z;
    const float e = exp_approx(-az);
    log_s = (z < 0.0f ? z : 0.0f) - log1p_approx01(e);
    s = (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

// y_a[i] = s x_a + t (or (x_a − t)/s) for i in [i0, i1), acc += Σ log s.
template <typename T, bool Reverse>
MINIGEN_CLONES void coupling_block(const T* __restrict xa, const T* __restrict raw,
                                   const T* __restrict t, T* __restrict ya, std::ptrdiff_t i0,
                                   std::ptrdiff_t i1, T& acc_out) {
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (std::ptrdiff_t i = i0; i < i1; ++i) {
        T s, log_s;
        sigmoid_log(raw[i] + T(2), s, log_s);
        ya[i] = Reverse ? (xa[i] - t[i]) / s : s * xa[i] + t[i];
        acc += log_s;
    }
    acc_out = acc;
}

// Affine coupling, one pass per sample: y_a = s x_a + t (or (x_a − t)/s), y_b = x_b,
// logdet[n] = ±Σ log s over the sample's C/2·M scales (accumulated in double).
template <typename T>
void coupling_fwd(const T* __restrict x, const T* __restrict h, T* __restrict out,
                  T* __restrict logdet, FlowShape f, bool reverse) {
    const std::ptrdiff_t half = (f.c / 2) * f.m, per = f.c * f.m;
    const bool parallel = f.n > 1 && f.n * per >= (kParallelMin >> 3);
    (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
    for (std::ptrdiff_t n = 0; n < f.n; ++n) {
        const T* __restrict xa = x + n * per;
        const T* __restrict raw = h + n * per;
        const T* __restrict t = raw + half;
        T* __restrict ya = out + n * per;
        double ld = 0.0;
        // float32: partial sums of ≤ 1024 terms in T, then added in double; the inner loop is
        // branch-free so that it vectorizes.
        for (std::ptrdiff_t i0 = 0; i0 < half; i0 += 1024) {
            const std::ptrdiff_t i1 = std::min(half, i0 + 1024);
            T acc = 0;
            if (reverse) {
                coupling_block<T, true>(xa, raw, t, ya, i0, i1, acc);
            } else {
                coupling_block<T, false>(xa, raw, t, ya, i0, i1, acc);
            }
            ld += acc;
        }
        std::copy(xa + half, xa + per, ya + half);  // y_b = x_b
        logdet[n] = static_cast<T>(reverse ? -ld : ld);
    }
}

// Coupling backward (s recomputed from h): forward g_x_a = g_a s, g_t = g_a,
// g_raw = (g_a x_a s + g_ld)(1 − s); reverse (x_a = (y_a − t)/s) g_y_a = g_a / s,
// g_t = −g_a / s, g_raw = −(g_a x_a + g_ld)(1 − s); g_x_b = g_b.
template <typename T>
void coupling_bwd(const T* __restrict g, const T* __restrict gld, const T* __restrict inp,
                  const T* __restrict h, T* __restrict g_inp, T* __restrict g_h, FlowShape f,
                  bool reverse) {
    const std::ptrdiff_t half = (f.c / 2) * f.m, per = f.c * f.m;
    const bool parallel = f.n > 1 && f.n * per >= (kParallelMin >> 3);
    (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
    for (std::ptrdiff_t n = 0; n < f.n; ++n) {
        const std::ptrdiff_t o = n * per;
        const T gl = gld ? gld[n] : T(0);
        const T* __restrict ga = g + o;
        const T* __restrict xa = inp + o;
        const T* __restrict raw = h + o;
        const T* __restrict t = raw + half;
        T* __restrict gxa = g_inp + o;
        T* __restrict graw = g_h + o;
        T* __restrict gt = graw + half;
        for (std::ptrdiff_t i = 0; i < half; ++i) {
            T s, log_s;
            sigmoid_log(raw[i] + T(2), s, log_s);
            if (!reverse) {
                gxa[i] = ga[i] * s;
                gt[i] = ga[i];
                graw[i] = (ga[i] * xa[i] * s + gl) * (T(1) - s);
            } else {
                const T x = (xa[i] - t[i]) / s;
                gxa[i] = ga[i] / s;
                gt[i] = -ga[i] / s;
                graw[i] = -(ga[i] * x + gl) * (T(1) - s);
            }
        }
        std::copy(ga + half, ga + per, gxa + half);  // g_x_b = g_b
    }
}

void actnorm_forward_py(py::array x, py::array ls, py::array bias, py::array out,
                        bool reverse) {
    const char* fn = "logdet_actnorm_forward";
    x = as_ndarray(x, fn, "x");
    const DType dt = float_dtype(x, fn, "x");
    require_c_contiguous(x, fn, "x");
    const FlowShape f = flow_shape(x, fn);
    require_vec(ls, f.c, x, "log_scale", fn, false);
    require_vec(bias, f.c, x, "bias", fn, false);
    require_same(out, "out", x, "x", fn, true);
    py::gil_scoped_release release;
    if (dt == DType::Float32) {
        actnorm_fwd(static_cast<const float*>(x.data()), static_cast<const float*>(ls.data()),
                    static_cast<const float*>(bias.data()), static_cast<float*>(out.mutable_data()),
                    f, reverse);
    } else {
        actnorm_fwd(static_cast<const double*>(x.data()), static_cast<const double*>(ls.data()),
                    static_cast<const double*>(bias.data()),
                    static_cast<double*>(out.mutable_data()), f, reverse);
    }
}

void actnorm_backward_py(py::array g, py::array x, py::array ls, py::array g_in,
                         py::array sum_gx, py::array sum_g, bool reverse) {
    const char* fn = "logdet_actnorm_backward";
    x = as_ndarray(x, fn, "x");
    const DType dt = float_dtype(x, fn, "x");
    require_c_contiguous(x, fn, "x");
    const FlowShape f = flow_shape(x, fn);
    require_same(g, "g", x, "x", fn, false);
    require_same(g_in, "g_in", x, "x", fn, true);
    require_vec(ls, f.c, x, "log_scale", fn, false);
    require_vec(sum_gx, f.c, x, "sum_gx", fn, true);
    require_vec(sum_g, f.c, x, "sum_g", fn, true);
    py::gil_scoped_release release;
    auto run = [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        actnorm_bwd(static_cast<const T*>(g.data()), static_cast<const T*>(x.data()),
                    static_cast<const T*>(ls.data()), static_cast<T*>(g_in.mutable_data()),
                    static_cast<T*>(sum_gx.mutable_data()), static_cast<T*>(sum_g.mutable_data()),
                    f, reverse);
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(nullptr));
    } else {
        run(static_cast<double*>(nullptr));
    }
}

void coupling_forward_py(py::array x, py::array h, py::array out, py::array logdet,
                         bool reverse) {
    const char* fn = "logdet_coupling_forward";
    x = as_ndarray(x, fn, "x");
    const DType dt = float_dtype(x, fn, "x");
    require_c_contiguous(x, fn, "x");
    const FlowShape f = flow_shape(x, fn);
    if (f.c % 2) {
        throw py::value_error(std::string(fn) + ": x needs an even number of channels, got " +
                              shape_str(x));
    }
    require_same(h, "h", x, "x", fn, false);
    require_same(out, "out", x, "x", fn, true);
    require_vec(logdet, f.n, x, "logdet", fn, true);
    require_disjoint({{&x, "x"}, {&out, "out"}, {&h, "h"}}, fn);
    py::gil_scoped_release release;
    auto run = [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        coupling_fwd(static_cast<const T*>(x.data()), static_cast<const T*>(h.data()),
                     static_cast<T*>(out.mutable_data()), static_cast<T*>(logdet.mutable_data()),
                     f, reverse);
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(nullptr));
    } else {
        run(static_cast<double*>(nullptr));
    }
}

void coupling_backward_py(py::array g, py::object gld, py::array inp, py::array h,
                          py::array g_inp, py::array g_h, bool reverse) {
    const char* fn = "logdet_coupling_backward";
    inp = as_ndarray(inp, fn, "inp");
    const DType dt = float_dtype(inp, fn, "inp");
    require_c_contiguous(inp, fn, "inp");
    const FlowShape f = flow_shape(inp, fn);
    if (f.c % 2) {
        throw py::value_error(std::string(fn) + ": inp needs an even number of channels, got " +
                              shape_str(inp));
    }
    require_same(g, "g", inp, "inp", fn, false);
    require_same(h, "h", inp, "inp", fn, false);
    require_same(g_inp, "g_inp", inp, "inp", fn, true);
    require_same(g_h, "g_h", inp, "inp", fn, true);
    py::array gl;
    if (!gld.is_none()) {
        gl = as_ndarray(gld, fn, "g_logdet");
        require_vec(gl, f.n, inp, "g_logdet", fn, false);
    }
    const void* glp = gld.is_none() ? nullptr : gl.data();
    py::gil_scoped_release release;
    auto run = [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        coupling_bwd(static_cast<const T*>(g.data()), static_cast<const T*>(glp),
                     static_cast<const T*>(inp.data()), static_cast<const T*>(h.data()),
                     static_cast<T*>(g_inp.mutable_data()), static_cast<T*>(g_h.mutable_data()),
                     f, reverse);
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(nullptr));
    } else {
        run(static_cast<double*>(nullptr));
    }
}

}  // namespace

void register_logdet_flow(py::module_& m) {
    m.def("logdet_actnorm_forward", &actnorm_forward_py, py::arg("x"), py::arg("log_scale"),
          py::arg("bias"), py::arg("out"), py::arg("reverse"),
          "out = exp(log_scale) x + bias per channel (reverse: (x - bias) exp(-log_scale)).");
    m.def("logdet_actnorm_backward", &actnorm_backward_py, py::arg("g"), py::arg("x"),
          py::arg("log_scale"), py::arg("g_in"), py::arg("sum_gx"), py::arg("sum_g"),
          py::arg("reverse"), "g_in = g exp(±log_scale); per channel sums of g x and g.");
    m.def("logdet_coupling_forward", &coupling_forward_py, py::arg("x"), py::arg("h"),
          py::arg("out"), py::arg("logdet"), py::arg("reverse"),
          "Affine coupling y_a = s x_a + t, s = sigmoid(h_a + 2), y_b = x_b, and Σ log s.");
    m.def("logdet_coupling_backward", &coupling_backward_py, py::arg("g"), py::arg("g_logdet"),
          py::arg("inp"), py::arg("h"), py::arg("g_inp"), py::arg("g_h"), py::arg("reverse"),
          "Gradients of the affine coupling with respect to its input and h.");
    for (const char* name : {"logdet_actnorm_forward", "logdet_actnorm_backward",
                             "logdet_coupling_forward", "logdet_coupling_backward"}) {
        kernel_names().push_back(name);
    }
}

}  // namespace minigen
