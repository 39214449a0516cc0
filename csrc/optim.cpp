// Kernel family: optimizer steps adam_step (Adam, AdamW) and sgd_momentum_step, in place.
//
// Versions: the numpy reference in minigen/optim/ (the same equations, one array expression
// per line, so several passes over memory); this one (C++, fused: one pass, OpenMP, float32
// and float64). Both follow PyTorch's torch.optim.Adam / AdamW / SGD (foreach=False) step.
//
// Adam and AdamW, step t ≥ 1, learning rate γ, weight decay λ, gradient g, parameter θ:
//     AdamW (decoupled):  θ ← θ · (1 − γλ)
//     Adam (L2):          g ← g + λθ
//     m ← β1 m + (1 − β1) g                      first moment   (exp_avg)
//     v ← β2 v + (1 − β2) g²                     second moment  (exp_avg_sq)
//     bc1 = 1 − β1ᵗ,  bc2 = 1 − β2ᵗ             bias corrections
//     denom = √v / √bc2 + ε
//     θ ← θ − (γ / bc1) · m / denom
//   Bytes moved per element: read θ, g, m, v and write θ, m, v = 7·sizeof(T):
//   28 B (float32), 56 B (float64). The scalars (bc1, bc2, γ/bc1) are computed once per call
//   in double and rounded to T, as PyTorch does with its Python-float scalars.
//
// SGD with momentum μ, dampening τ, weight decay λ, buffer b (momentum_buffer):
//     d ← g + λθ
//     b ← d                    on the first step (PyTorch's buffer starts as a copy of d)
//     b ← μ b + (1 − τ) d      on later steps
//     d ← d + μ b (Nesterov),  d ← b otherwise
//     θ ← θ − γ d
//   With μ = 0 this is plain SGD, θ ← θ − γ (g + λθ), and b is neither read nor written.
//   Bytes moved per element: read θ, g, b and write θ, b = 5·sizeof(T) (4·sizeof(T) on the
//   first step, where b is only written; 3·sizeof(T) for plain SGD).
#include "common.h"

#include <cmath>
#include <string>

namespace minigen {

// ---- Adam / AdamW -------------------------------------------------------------------------

template <typename T>
struct AdamScalars {
    T decay;            // 1 − γλ for AdamW, 1 for Adam (θ·1 is exact)
    T l2;               // λ for Adam with weight decay
    T beta1, one_minus_beta1;
    T beta2, one_minus_beta2;
    T sqrt_bc2;         // √(1 − β2ᵗ)
    T eps;
    T step_size;        // γ / (1 − β1ᵗ)
};

template <typename T, bool kL2>
static void adam_kernel(T* __restrict theta, const T* __restrict grad, T* __restrict exp_avg,
                        T* __restrict exp_avg_sq, std::ptrdiff_t n, const AdamScalars<T>& s) {
    const T decay = s.decay, l2 = s.l2;
    const T beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
    const T beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2;
    const T sqrt_bc2 = s.sqrt_bc2, eps = s.eps, step_size = s.step_size;
    MINIGEN_PARALLEL_FOR(n)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        T g = grad[i];
        T p = theta[i];
        if constexpr (kL2) {
            g = g + l2 * p;                                   // g ← g + λθ        (Adam)
        }
        p = p * decay;                                        // θ ← θ(1 − γλ)     (AdamW)
        const T m = beta1 * exp_avg[i] + one_minus_beta1 * g;         // m ← β1 m + (1−β1) g
        const T v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;  // v ← β2 v + (1−β2) g²
        const T denom = std::sqrt(v) / sqrt_bc2 + eps;        // √v / √bc2 + ε
        theta[i] = p - step_size * m / denom;                 // θ ← θ − (γ/bc1) m / denom
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
    }
}

template <typename T>
static void adam_typed(py::array& param, const py::array& grad, py::array& exp_avg,
                       py::array& exp_avg_sq, const AdamScalars<T>& s, bool l2) {
    T* theta = static_cast<T*>(param.mutable_data());
    const T* g = static_cast<const T*>(grad.data());
    T* m = static_cast<T*>(exp_avg.mutable_data());
    T* v = static_cast<T*>(exp_avg_sq.mutable_data());
    const std::ptrdiff_t n = param.size();
    py::gil_scoped_release release;
    with_bool(l2, [&](auto kL2) { adam_kernel<T, decltype(kL2)::value>(theta, g, m, v, n, s); });
}

template <typename T>
static AdamScalars<T> adam_scalars(double lr, double beta1, double beta2, double eps,
                                   double weight_decay, long long step, bool decoupled) {
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    AdamScalars<T> s;
    s.decay = static_cast<T>(decoupled ? 1.0 - lr * weight_decay : 1.0);
    s.l2 = static_cast<T>(decoupled ? 0.0 : weight_decay);
    s.beta1 = static_cast<T>(beta1);
    s.one_minus_beta1 = static_cast<T>(1.0 - beta1);
    s.beta2 = static_cast<T>(beta2);
    s.one_minus_beta2 = static_cast<T>(1.0 - beta2);
    s.sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    s.eps = static_cast<T>(eps);
    s.step_size = static_cast<T>(lr / bc1);
    return s;
}

// what is a literal: a std::string parameter would build one (heap-allocated past 15 chars) on
// every successful call.
static void require_range(bool ok, const char* fn, const char* what, double value) {
    if (!ok) {
        throw py::value_error(std::string(fn) + ": " + what + ", got " + std::to_string(value));
    }
}

void adam_step(const py::object& param_obj, const py::object& grad_obj,
               const py::object& exp_avg_obj, const py::object& exp_avg_sq_obj, double lr,
               double beta1, double beta2, double eps, double weight_decay, long long step,
               bool decoupled) {
    const char* fn = "adam_step";
    py::array param = as_ndarray(param_obj, fn, "param");
    const py::array grad = as_ndarray(grad_obj, fn, "grad");
    py::array exp_avg = as_ndarray(exp_avg_obj, fn, "exp_avg");
    py::array exp_avg_sq = as_ndarray(exp_avg_sq_obj, fn, "exp_avg_sq");

    const DType dtype = float_dtype(param, fn, "param");
    require_like(grad, "grad", param, "param", fn);
    require_like(exp_avg, "exp_avg", param, "param", fn);
    require_like(exp_avg_sq, "exp_avg_sq", param, "param", fn);
    require_c_contiguous(param, fn, "param");
    require_c_contiguous(grad, fn, "grad");
    require_c_contiguous(exp_avg, fn, "exp_avg");
    require_c_contiguous(exp_avg_sq, fn, "exp_avg_sq");
    require_writeable(param, fn, "param");
    require_writeable(exp_avg, fn, "exp_avg");
    require_writeable(exp_avg_sq, fn, "exp_avg_sq");
    require_disjoint({{&param, "param"}, {&grad, "grad"}, {&exp_avg, "exp_avg"},
                      {&exp_avg_sq, "exp_avg_sq"}},
                     fn);
    if (step < 1) {
        throw py::value_error(std::string(fn) + ": step counts from 1 (the bias corrections " +
                              "1 − βᵗ vanish at t = 0), got " + std::to_string(step));
    }
    require_range(lr >= 0.0, fn, "lr must be >= 0", lr);
    require_range(eps >= 0.0, fn, "eps must be >= 0", eps);
    require_range(beta1 >= 0.0 && beta1 < 1.0, fn, "beta1 must be in [0, 1)", beta1);
    require_range(beta2 >= 0.0 && beta2 < 1.0, fn, "beta2 must be in [0, 1)", beta2);
    require_range(weight_decay >= 0.0, fn, "weight_decay must be >= 0", weight_decay);

    const bool l2 = !decoupled && weight_decay != 0.0;
    if (dtype == DType::Float32) {
        adam_typed(param, grad, exp_avg, exp_avg_sq,
                   adam_scalars<float>(lr, beta1, beta2, eps, weight_decay, step, decoupled), l2);
    } else {
        adam_typed(param, grad, exp_avg, exp_avg_sq,
                   adam_scalars<double>(lr, beta1, beta2, eps, weight_decay, step, decoupled),
                   l2);
    }
}

// ---- SGD with momentum --------------------------------------------------------------------

template <typename T, bool kL2, bool kFirst, bool kNesterov>
static void sgd_momentum_kernel(T* __restrict theta, const T* __restrict grad, T* __restrict buf,
                                std::ptrdiff_t n, T lr, T momentum, T one_minus_dampening,
                                T weight_decay) {
    MINIGEN_PARALLEL_FOR(n)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        T d = grad[i];
        if constexpr (kL2) {
            d = d + weight_decay * theta[i];                  // d ← g + λθ
        }
        T b;
        if constexpr (kFirst) {
            b = d;                                            // b ← d        (first step)
        } else {
            b = momentum * buf[i] + one_minus_dampening * d;  // b ← μ b + (1 − τ) d
        }
        buf[i] = b;
        if constexpr (kNesterov) {
            d = d + momentum * b;                             // d ← d + μ b  (Nesterov)
        } else {
            d = b;                                            // d ← b
        }
        theta[i] = theta[i] - lr * d;                         // θ ← θ − γ d
    }
}

template <typename T, bool kL2>
static void sgd_kernel(T* __restrict theta, const T* __restrict grad, std::ptrdiff_t n, T lr,
                       T weight_decay) {
    MINIGEN_PARALLEL_FOR(n)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        T d = grad[i];
        if constexpr (kL2) {
            d = d + weight_decay * theta[i];                  // d ← g + λθ
        }
        theta[i] = theta[i] - lr * d;                         // θ ← θ − γ d
    }
}

template <typename T>
static void sgd_typed(py::array& param, const py::array& grad, py::array& buf, double lr,
                      double momentum, double dampening, double weight_decay, bool nesterov,
                      bool first_step) {
    T* theta = static_cast<T*>(param.mutable_data());
    const T* g = static_cast<const T*>(grad.data());
    T* b = static_cast<T*>(buf.mutable_data());
    const std::ptrdiff_t n = param.size();
    const T lr_t = static_cast<T>(lr), mu = static_cast<T>(momentum);
    const T one_minus_tau = static_cast<T>(1.0 - dampening), wd = static_cast<T>(weight_decay);
    py::gil_scoped_release release;
    with_bool(weight_decay != 0.0, [&](auto kL2) {
        constexpr bool l2 = decltype(kL2)::value;
        if (momentum == 0.0) {
            sgd_kernel<T, l2>(theta, g, n, lr_t, wd);
            return;
        }
        with_bool(first_step, [&](auto kFirst) {
            with_bool(nesterov, [&](auto kNesterov) {
                sgd_momentum_kernel<T, l2, decltype(kFirst)::value, decltype(kNesterov)::value>(
                    theta, g, b, n, lr_t, mu, one_minus_tau, wd);
            });
        });
    });
}

void sgd_momentum_step(const py::object& param_obj, const py::object& grad_obj,
                       const py::object& buf_obj, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool first_step) {
    const char* fn = "sgd_momentum_step";
    py::array param = as_ndarray(param_obj, fn, "param");
    const py::array grad = as_ndarray(grad_obj, fn, "grad");
    py::array buf = as_ndarray(buf_obj, fn, "buf");

    const DType dtype = float_dtype(param, fn, "param");
    require_like(grad, "grad", param, "param", fn);
    require_like(buf, "buf", param, "param", fn);
    require_c_contiguous(param, fn, "param");
    require_c_contiguous(grad, fn, "grad");
    require_c_contiguous(buf, fn, "buf");
    require_writeable(param, fn, "param");
    require_writeable(buf, fn, "buf");
    require_disjoint({{&param, "param"}, {&grad, "grad"}, {&buf, "buf"}}, fn);
    require_range(lr >= 0.0, fn, "lr must be >= 0", lr);
    require_range(momentum >= 0.0, fn, "momentum must be >= 0", momentum);
    require_range(weight_decay >= 0.0, fn, "weight_decay must be >= 0", weight_decay);

    if (dtype == DType::Float32) {
        sgd_typed<float>(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                         first_step);
    } else {
        sgd_typed<double>(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                          first_step);
    }
}

}  // namespace minigen
