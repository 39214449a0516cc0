// attention: the softmax pieces of scaled dot-product attention on the CPU (C++, OpenMP).
//
// Versions of this family: minigen/reference/attention.py (numpy, the definition, and a blocked
// online-softmax version that reads like the flash kernel); this file with its Python face
// minigen/native/attention.py (CPU); kernels/attention.py (Triton flash attention on the GPU).
//
// On the CPU the five matrix products of attention go through numpy's BLAS (the Python face
// calls np.matmul on a few heads at a time, so that one chunk's L×S block stays in the L2
// cache); what lies between the products is a row-wise pass over the L×S block, done here in
// one sweep instead of numpy's four or five:
//
//   attention_softmax_forward   s ← p = exp(c·s + mask − lse),  lse_i = log Σ_j exp(c·s_ij +
//                               mask_ij); −inf for j > i when causal. A row with no finite
//                               entry gets p = 0 and lse = +inf (output row 0, no gradient).
//   attention_softmax_recompute s ← p = exp(c·s + mask − lse) from the saved lse (backward).
//   attention_softmax_backward  dp ← α · p ⊙ (dp − δ), given δ_i = Σ_e do_ie o_ie (softmax
//                               backward; δ = rowsum(dP ⊙ P) = rowsum(dO ⊙ O) needs only the
//                               L×Ev outputs). α = c folds the scale of dQ = c dS K in.
//   row_offset: the block's rows are queries row_offset, row_offset + 1, … (for causal, when
//   the caller cuts the queries into row blocks). parallel: OpenMP over rows, or the calling
//   thread (what the Python face uses between threaded BLAS calls: see
//   minigen/native/attention.py).
//
// Work and bytes per L×S element: forward 1 exp + ~5 flops, read and write 4 B (float32) in
// place plus the mask when there is one; the backward pair reads s, dp and writes both.
// The GEMMs (2·L·S·(E+Ev) flops forward, 2.5× that backward) dominate at head dim ≥ 32.
//
// exp: vecmath.h's vectorizable float exp (relative error ~1e-7), so the row loops vectorize
// on the baseline ISA; with function multiversioning they also get AVX2 and AVX-512 clones
// picked at load time. Float64 uses std::exp.
#include "common.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

// Without trapping-math GCC turns the clamps' float selects into blends instead of branches,
// which is what lets the row loops vectorize (see vecmath.h); no result changes.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "vecmath.h"

namespace minigen {

namespace {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MINIGEN_ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MINIGEN_ATTN_CLONES
#endif

// e^x for the softmax: vecmath.h's exp_approx (clamped at ±80, so no lane of a vectorized
// loop ever computes a denormal: with a clamp at −87 the vectorized loop took 10× longer
// through microcode assists), and 0 below −80 (e^−80 ≈ 1.8e−35 is below anything that can
// change a softmax row, whose largest entry is e^0 = 1; exp(−inf) = 0 as it must).
inline float fast_exp(float x) {
    const float e = exp_approx(x);
    return x < -80.0f ? 0.0f : e;
}

inline double fast_exp(double x) { return std::exp(x); }

template <typename T>
struct MaskView {  // mask element (b, i, j) at data[b·sb + i·si + j·sj]; strides may be 0
    const T* data = nullptr;
    std::ptrdiff_t sb = 0, si = 0, sj = 0;
};

// One row: x_j = c·s_j + m_j (j < n_valid; −inf beyond, the causal part), then in place
// p_j = exp(x_j − lse) with lse = max + log Σ exp(x − max). Returns lse (+inf: empty row).
template <typename T>
MINIGEN_ATTN_CLONES T softmax_row(T* __restrict s, const T* __restrict m, std::ptrdiff_t msj,
                                  std::ptrdiff_t n, std::ptrdiff_t n_valid, T c) {
    const T neg_inf = -std::numeric_limits<T>::infinity();
    T mx = neg_inf;
    if (m == nullptr) {
#pragma omp simd reduction(max : mx)
        for (std::ptrdiff_t j = 0; j < n_valid; ++j) {
            s[j] = c * s[j];
            mx = s[j] > mx ? s[j] : mx;
        }
    } else {
#pragma omp simd reduction(max : mx)
        for (std::ptrdiff_t j = 0; j < n_valid; ++j) {
            s[j] = c * s[j] + m[j * msj];
            mx = s[j] > mx ? s[j] : mx;
        }
    }
    if (!(mx > neg_inf)) {  // fully masked (or NaN): output 0, no gradient
        for (std::ptrdiff_t j = 0; j < n; ++j) s[j] = T(0);
        return std::numeric_limits<T>::infinity();
    }
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::ptrdiff_t j = 0; j < n_valid; ++j) {
        const T e = fast_exp(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    const T inv = T(1) / sum;
#pragma omp simd
    for (std::ptrdiff_t j = 0; j < n_valid; ++j) s[j] *= inv;
    for (std::ptrdiff_t j = n_valid; j < n; ++j) s[j] = T(0);
    return mx + std::log(sum);
}

// One row of the recompute: p_j = exp(c·s_j + m_j − lse).
template <typename T>
MINIGEN_ATTN_CLONES void recompute_row(T* __restrict s, const T* __restrict m,
                                       std::ptrdiff_t msj, std::ptrdiff_t n,
                                       std::ptrdiff_t n_valid, T c, T lse) {
    if (!(lse < std::numeric_limits<T>::infinity())) n_valid = 0;
    if (m == nullptr) {
#pragma omp simd
        for (std::ptrdiff_t j = 0; j < n_valid; ++j) s[j] = fast_exp(c * s[j] - lse);
    } else {
#pragma omp simd
        for (std::ptrdiff_t j = 0; j < n_valid; ++j) s[j] = fast_exp(c * s[j] + m[j * msj] - lse);
    }
    for (std::ptrdiff_t j = n_valid; j < n; ++j) s[j] = T(0);
}

// One row of the softmax backward: dp_j ← α p_j (dp_j − δ).
template <typename T>
MINIGEN_ATTN_CLONES void softmax_backward_row(const T* __restrict p, T* __restrict dp,
                                              std::ptrdiff_t n, T delta, T alpha) {
#pragma omp simd
    for (std::ptrdiff_t j = 0; j < n; ++j) dp[j] = alpha * p[j] * (dp[j] - delta);
}

const char* kFwd = "attention_softmax_forward";
const char* kRe = "attention_softmax_recompute";
const char* kBwd = "attention_softmax_backward";

// s must be a C-contiguous, writeable (b, L, S) float array.
py::array checked_scores(const py::object& obj, const char* fn, const char* name, DType* dt) {
    py::array s = as_ndarray(obj, fn, name);
    *dt = float_dtype(s, fn, name);
    if (s.ndim() != 3) {
        throw py::value_error(std::string(fn) + ": " + name + " must be 3-D (batch, L, S), got "
                              "shape " + shape_str(s));
    }
    require_c_contiguous(s, fn, name);
    require_writeable(s, fn, name);
    return s;
}

// mask: None, or an array of s's dtype and shape with any strides (stride 0 = broadcast).
template <typename T>
MaskView<T> checked_mask(const py::object& obj, const py::array& s, const char* fn) {
    MaskView<T> view;
    if (obj.is_none()) return view;
    py::array m = as_ndarray(obj, fn, "mask");
    if (m.ndim() != 3 || m.shape(0) != s.shape(0) || m.shape(1) != s.shape(1) ||
        m.shape(2) != s.shape(2) || !py::isinstance<py::array_t<T>>(m)) {
        throw py::value_error(std::string(fn) + ": mask must have the scores' dtype and shape " +
                              dtype_str(s) + " " + shape_str(s) + " (broadcast views allowed), "
                              "got " + dtype_str(m) + " " + shape_str(m));
    }
    const auto item = static_cast<std::ptrdiff_t>(sizeof(T));
    for (int d = 0; d < 3; ++d) {
        if (m.strides(d) % item != 0) {
            throw py::value_error(std::string(fn) + ": mask strides must be multiples of its "
                                  "element size");
        }
    }
    view.data = static_cast<const T*>(m.data());
    view.sb = m.strides(0) / item;
    view.si = m.strides(1) / item;
    view.sj = m.strides(2) / item;
    return view;
}

// lse (and delta): (b, L) of s's dtype, any strides (a view of a larger (B, L) array); returns the
// element strides.
template <typename T>
std::pair<std::ptrdiff_t, std::ptrdiff_t> checked_lse(const py::array& lse, const py::array& s,
                                                      const char* fn, bool write) {
    if (lse.ndim() != 2 || lse.shape(0) != s.shape(0) || lse.shape(1) != s.shape(1) ||
        !py::isinstance<py::array_t<T>>(lse)) {
        throw py::value_error(std::string(fn) + ": lse must be " + dtype_str(s) + " of shape (" +
                              std::to_string(s.shape(0)) + ", " + std::to_string(s.shape(1)) +
                              "), got " + dtype_str(lse) + " " + shape_str(lse));
    }
    const auto item = static_cast<std::ptrdiff_t>(sizeof(T));
    if (lse.strides(0) % item != 0 || lse.strides(1) % item != 0) {
        throw py::value_error(std::string(fn) + ": lse is not aligned to its element size");
    }
    if (write) require_writeable(lse, fn, "lse");
    return {lse.strides(0) / item, lse.strides(1) / item};
}

// Rows of the (b, L, S) block in parallel. With causal, local row i is query i + offset and
// sees keys j ≤ i + offset: its valid length is min(S, i + offset + 1).
template <typename T, typename RowFn>
void for_rows(std::ptrdiff_t b, std::ptrdiff_t L, std::ptrdiff_t S, bool causal,
              std::ptrdiff_t offset, bool parallel, RowFn&& row) {
    const std::ptrdiff_t rows = b * L;
    const bool par = parallel && rows * S >= (std::ptrdiff_t(1) << 15) && rows > 1;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
#endif
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const std::ptrdiff_t i = r % L;
        const std::ptrdiff_t lim = i + offset + 1;
        const std::ptrdiff_t valid = causal ? (lim < S ? lim : S) : S;
        row(r, r / L, i, valid);
    }
    (void)par;
}

template <typename T>
void forward_typed(py::array& s, const MaskView<T>& mv, py::array& lse,
                   std::pair<std::ptrdiff_t, std::ptrdiff_t> ls, bool causal,
                   std::ptrdiff_t offset, T c, bool parallel) {
    T* sp = static_cast<T*>(s.mutable_data());
    T* lp = static_cast<T*>(lse.mutable_data());
    const std::ptrdiff_t b = s.shape(0), L = s.shape(1), S = s.shape(2);
    py::gil_scoped_release release;
    for_rows<T>(b, L, S, causal, offset, parallel, [&](std::ptrdiff_t r, std::ptrdiff_t bb,
                                             std::ptrdiff_t i, std::ptrdiff_t valid) {
        const T* m = mv.data ? mv.data + bb * mv.sb + i * mv.si : nullptr;
        lp[bb * ls.first + i * ls.second] = softmax_row<T>(sp + r * S, m, mv.sj, S, valid, c);
    });
}

template <typename T>
void recompute_typed(py::array& s, const MaskView<T>& mv, const py::array& lse,
                     std::pair<std::ptrdiff_t, std::ptrdiff_t> ls, bool causal,
                     std::ptrdiff_t offset, T c, bool parallel) {
    T* sp = static_cast<T*>(s.mutable_data());
    const T* lp = static_cast<const T*>(lse.data());
    const std::ptrdiff_t b = s.shape(0), L = s.shape(1), S = s.shape(2);
    py::gil_scoped_release release;
    for_rows<T>(b, L, S, causal, offset, parallel, [&](std::ptrdiff_t r, std::ptrdiff_t bb,
                                             std::ptrdiff_t i, std::ptrdiff_t valid) {
        const T* m = mv.data ? mv.data + bb * mv.sb + i * mv.si : nullptr;
        recompute_row<T>(sp + r * S, m, mv.sj, S, valid, c, lp[bb * ls.first + i * ls.second]);
    });
}

template <typename T>
void backward_typed(const py::array& p, py::array& dp, const py::array& delta,
                    std::pair<std::ptrdiff_t, std::ptrdiff_t> ds, T alpha, bool parallel) {
    const T* pp = static_cast<const T*>(p.data());
    T* dpp = static_cast<T*>(dp.mutable_data());
    const T* dl = static_cast<const T*>(delta.data());
    const std::ptrdiff_t b = p.shape(0), L = p.shape(1), S = p.shape(2);
    py::gil_scoped_release release;
    for_rows<T>(b, L, S, false, 0, parallel, [&](std::ptrdiff_t r, std::ptrdiff_t bb,
                                                 std::ptrdiff_t i, std::ptrdiff_t) {
        softmax_backward_row<T>(pp + r * S, dpp + r * S, S, dl[bb * ds.first + i * ds.second],
                                alpha);
    });
}

}  // namespace

void attention_softmax_forward(const py::object& scores, const py::object& mask,
                               const py::object& lse_out, bool is_causal, long long row_offset,
                               double scale, bool parallel) {
    DType dt;
    py::array s = checked_scores(scores, kFwd, "scores", &dt);
    py::array lse = as_ndarray(lse_out, kFwd, "lse");
    if (dt == DType::Float32) {
        auto ls = checked_lse<float>(lse, s, kFwd, true);
        forward_typed<float>(s, checked_mask<float>(mask, s, kFwd), lse, ls, is_causal,
                             row_offset, static_cast<float>(scale), parallel);
    } else {
        auto ls = checked_lse<double>(lse, s, kFwd, true);
        forward_typed<double>(s, checked_mask<double>(mask, s, kFwd), lse, ls, is_causal,
                              row_offset, scale, parallel);
    }
}

void attention_softmax_recompute(const py::object& scores, const py::object& mask,
                                 const py::object& lse_in, bool is_causal, long long row_offset,
                                 double scale, bool parallel) {
    DType dt;
    py::array s = checked_scores(scores, kRe, "scores", &dt);
    py::array lse = as_ndarray(lse_in, kRe, "lse");
    if (dt == DType::Float32) {
        auto ls = checked_lse<float>(lse, s, kRe, false);
        recompute_typed<float>(s, checked_mask<float>(mask, s, kRe), lse, ls, is_causal,
                               row_offset, static_cast<float>(scale), parallel);
    } else {
        auto ls = checked_lse<double>(lse, s, kRe, false);
        recompute_typed<double>(s, checked_mask<double>(mask, s, kRe), lse, ls, is_causal,
                                row_offset, scale, parallel);
    }
}

void attention_softmax_backward(const py::object& probs, const py::object& dprobs,
                                const py::object& delta_in, double alpha, bool parallel) {
    DType dt;
    py::array dp = checked_scores(dprobs, kBwd, "dprobs", &dt);
    py::array p = as_ndarray(probs, kBwd, "probs");
    require_like(p, "probs", dp, "dprobs", kBwd);
    require_c_contiguous(p, kBwd, "probs");
    require_disjoint({{&p, "probs"}, {&dp, "dprobs"}}, kBwd);
    py::array delta = as_ndarray(delta_in, kBwd, "delta");
    if (dt == DType::Float32) {
        auto ds = checked_lse<float>(delta, p, kBwd, false);
        backward_typed<float>(p, dp, delta, ds, static_cast<float>(alpha), parallel);
    } else {
        auto ds = checked_lse<double>(delta, p, kBwd, false);
        backward_typed<double>(p, dp, delta, ds, alpha, parallel);
    }
}

void register_attention(py::module_& m) {
    m.def("attention_softmax_forward", &attention_softmax_forward, py::arg("scores"),
          py::arg("mask"), py::arg("lse"), py::arg("is_causal"), py::arg("row_offset"),
          py::arg("scale"), py::arg("parallel") = true,
          "scores (b, L, S) <- softmax(scale·scores + mask) in place; lse (b, L) written "
          "(+inf for a row with nothing to attend, whose probabilities are 0)");
    m.def("attention_softmax_recompute", &attention_softmax_recompute, py::arg("scores"),
          py::arg("mask"), py::arg("lse"), py::arg("is_causal"), py::arg("row_offset"),
          py::arg("scale"), py::arg("parallel") = true,
          "scores (b, L, S) <- exp(scale·scores + mask - lse) in place");
    m.def("attention_softmax_backward", &attention_softmax_backward, py::arg("probs"),
          py::arg("dprobs"), py::arg("delta"), py::arg("alpha"), py::arg("parallel") = true,
          "dprobs <- alpha · probs ⊙ (dprobs − delta) in place (delta (b, L) = rowsum(dO ⊙ O))");
    kernel_names().push_back("attention_softmax_forward");
    kernel_names().push_back("attention_softmax_recompute");
    kernel_names().push_back("attention_softmax_backward");
}

}  // namespace minigen
