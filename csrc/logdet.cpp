// Kernel family logdet (C++ CPU), part 1: LU with partial pivoting and triangular solves
// (slogdet, inv, solve). Part 2, the fused normalizing-flow primitives (actnorm, affine
// coupling) with their log-dets, is logdet_flow.cpp.
//
// Versions: the numpy reference minigen/reference/logdet.py (the math, one column per step,
// vectorised over the batch); this file (called from minigen/native/logdet.py; for large n
// the blocked LU and A⁻ᵀ run here whole, their products through gemm.h's gemm_parallel, and
// the blocked solves are driven from Python); Triton kernels/logdet.py; CUDA
// kernels/logdet.cu (batched small LU).
//
// LU (LAPACK getrf, 0-based pivots): for k = 0..n−1, p = argmax_{i≥k} |a_ik| (first on ties),
// swap rows k and p, l_ik = a_ik / a_kk, a_ij −= l_ik a_kj (i, j > k). P A = L U.
//   FLOPs ≈ 2n³/3 per matrix; bytes: the n² matrix read and written once when it stays in
//   cache (n ≤ 64 is 32 KiB in float64), so the small batched case is compute-bound.
// Triangular solve T X = B (T m×m, B m×k): m²k FLOPs; rows of B are updated with axpys over
//   their k contiguous entries (the loop the compiler vectorizes).
#include "common.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gemm.h"     // gemm_parallel (the trailing updates)
#include "vecmath.h"  // MINIGEN_CLONES

namespace minigen {

namespace {

// ---- argument checks ----------------------------------------------------------------------

// A 2-D float array whose rows are contiguous (last stride = itemsize), any row stride: a
// sub-block of a C-contiguous matrix, as the blocked LU and solves pass them.
template <typename T>
struct Mat {
    T* p;
    std::ptrdiff_t ld, rows, cols;
    T& operator()(std::ptrdiff_t i, std::ptrdiff_t j) const { return p[i * ld + j]; }
    T* row(std::ptrdiff_t i) const { return p + i * ld; }
};

void require_rows_contiguous(const py::array& a, const char* fn, const char* name) {
    if (a.ndim() != 2) {
        throw py::value_error(std::string(fn) + ": " + name + " must be 2-D, got shape " +
                              shape_str(a));
    }
    const auto item = static_cast<py::ssize_t>(a.itemsize());
    if ((a.shape(1) > 1 && a.strides(1) != item) || a.strides(0) % item != 0 ||
        a.strides(0) < 0) {
        throw py::value_error(std::string(fn) + ": " + name +
                              " must have contiguous rows (a row-major matrix or a block of "
                              "one), got shape " + shape_str(a));
    }
}

template <typename T>
Mat<T> as_mat(py::array& a) {
    const auto item = static_cast<std::ptrdiff_t>(sizeof(T));
    return {static_cast<T*>(a.mutable_data()), a.strides(0) / item, a.shape(0), a.shape(1)};
}

void require_int32(const py::array& a, const char* fn, const char* name) {
    if (!py::isinstance<py::array_t<std::int32_t>>(a)) {
        throw py::value_error(std::string(fn) + ": " + name + " must be an int32 array, got " +
                              dtype_str(a));
    }
    require_c_contiguous(a, fn, name);
}

// ---- LU of a column panel -------------------------------------------------------------------

// Factor columns [k0, k0 + nb) of the n×n row-major matrix a (rows k0..n−1), unblocked and
// right-looking within the panel: pivot search down column j, swap of WHOLE rows (LAPACK's
// laswp applied at once to the left and right parts), multipliers, rank-1 update of the panel
// columns right of j. Columns ≥ k0 + nb are only swapped (the caller updates them). Returns
// the number of row swaps (its parity is det P).
template <typename T>
MINIGEN_CLONES int lu_panel(T* a, std::ptrdiff_t n, std::ptrdiff_t k0, std::ptrdiff_t nb,
                            std::int32_t* piv) {
    int swaps = 0;
    const std::ptrdiff_t kend = k0 + nb;
    for (std::ptrdiff_t j = k0; j < kend; ++j) {
        std::ptrdiff_t p = j;
        T best = std::abs(a[j * n + j]);
        for (std::ptrdiff_t i = j + 1; i < n; ++i) {
            const T v = std::abs(a[i * n + j]);
            if (v > best) {  // strict: the first maximum wins, as idamax
                best = v;
                p = i;
            }
        }
        piv[j] = static_cast<std::int32_t>(p);
        if (p != j) {
            std::swap_ranges(a + j * n, a + j * n + n, a + p * n);
            ++swaps;
        }
        const T pivot = a[j * n + j];
        if (pivot == T(0)) {
            continue;  // the column below is zero already: nothing to eliminate
        }
        const T* __restrict rj = a + j * n;
        for (std::ptrdiff_t i = j + 1; i < n; ++i) {
            T* __restrict ri = a + i * n;
            const T l = ri[j] / pivot;  // l_ij = a_ij / a_jj
            ri[j] = l;
            if (l != T(0)) {
                for (std::ptrdiff_t c = j + 1; c < kend; ++c) {
                    ri[c] -= l * rj[c];  // a_ic −= l_ij a_jc
                }
            }
        }
    }
    return swaps;
}

// The same panel for the blocked LU, on a packed copy: columns [k0, k0 + nb), rows k0..n−1,
// copied column-major, so the pivot search and the rank-1 update run down contiguous columns
// of length n − j (row-major, the update is a loop over the < nb panel columns of each row,
// too short to vectorize well). The parts of the swapped rows outside the panel are swapped in
// the matrix. Same operations per element, in the same order, as lu_panel (which skips rows
// with l = 0; here a_rc − 0·u is computed, the same value for finite inputs).
// Measured (one thread, float32, n = 256, NB = 32, the 8 panels together): 0.31 ms row-major,
// 0.19 ms packed.
template <typename T>
MINIGEN_CLONES int lu_panel_packed(T* a, std::ptrdiff_t n, std::ptrdiff_t k0, std::ptrdiff_t nb,
                                   std::int32_t* piv) {
    const std::ptrdiff_t m = n - k0;
    std::vector<T> buf(static_cast<std::size_t>(m * nb));
    for (std::ptrdiff_t r = 0; r < m; ++r) {
        const T* __restrict src = a + (k0 + r) * n + k0;
        for (std::ptrdiff_t c = 0; c < nb; ++c) {
            buf[c * m + r] = src[c];
        }
    }
    int swaps = 0;
    for (std::ptrdiff_t j = 0; j < nb; ++j) {
        T* __restrict cj = buf.data() + j * m;
        std::ptrdiff_t p = j;
        T best = std::abs(cj[j]);
        for (std::ptrdiff_t r = j + 1; r < m; ++r) {
            const T v = std::abs(cj[r]);
            if (v > best) {  // strict: the first maximum wins, as idamax
                best = v;
                p = r;
            }
        }
        piv[k0 + j] = static_cast<std::int32_t>(k0 + p);
        if (p != j) {
            for (std::ptrdiff_t c = 0; c < nb; ++c) {
                std::swap(buf[c * m + j], buf[c * m + p]);
            }
            T* rj = a + (k0 + j) * n;
            T* rp = a + (k0 + p) * n;
            std::swap_ranges(rj, rj + k0, rp);                  // left of the panel
            std::swap_ranges(rj + k0 + nb, rj + n, rp + k0 + nb);  // right of it
            ++swaps;
        }
        const T pivot = cj[j];
        if (pivot == T(0)) {
            continue;  // the column below is zero already: nothing to eliminate
        }
        for (std::ptrdiff_t r = j + 1; r < m; ++r) {
            cj[r] /= pivot;  // l_rj = a_rj / a_jj
        }
        for (std::ptrdiff_t c = j + 1; c < nb; ++c) {
            T* __restrict cc = buf.data() + c * m;
            const T u = cc[j];
            for (std::ptrdiff_t r = j + 1; r < m; ++r) {
                cc[r] -= cj[r] * u;  // a_rc −= l_rj a_jc
            }
        }
    }
    for (std::ptrdiff_t r = 0; r < m; ++r) {
        T* __restrict dst = a + (k0 + r) * n + k0;
        for (std::ptrdiff_t c = 0; c < nb; ++c) {
            dst[c] = buf[c * m + r];
        }
    }
    return swaps;
}

// ---- triangular solves on rows --------------------------------------------------------------

// B ← T⁻¹ B in place, T lower (forward) or upper (backward) triangular, unit diagonal or not.
// Row i of the solution: x_i = (b_i − Σ_j t_ij x_j) / t_ii, an axpy over B's k columns per j.
template <typename T>
void tri_solve_rows(const Mat<T>& t, const Mat<T>& b, std::ptrdiff_t c0, std::ptrdiff_t c1,
                    bool lower, bool unit) {
    const std::ptrdiff_t m = t.rows;
    for (std::ptrdiff_t s = 0; s < m; ++s) {
        const std::ptrdiff_t i = lower ? s : m - 1 - s;
        T* __restrict bi = b.row(i);
        const std::ptrdiff_t j0 = lower ? 0 : i + 1, j1 = lower ? i : m;
        for (std::ptrdiff_t j = j0; j < j1; ++j) {
            const T tij = t(i, j);
            if (tij == T(0)) {
                continue;
            }
            const T* __restrict bj = b.row(j);
            for (std::ptrdiff_t c = c0; c < c1; ++c) {
                bi[c] -= tij * bj[c];
            }
        }
        if (!unit) {
            const T d = t(i, i);
            for (std::ptrdiff_t c = c0; c < c1; ++c) {
                bi[c] /= d;
            }
        }
    }
}

// Register-tiled solve: RB rows × 2 vectors of 64 bytes (32 floats / 16 doubles) of B held in
// registers. The rows are taken in solve order (s = 0, 1, ...: row s for lower, row m−1−s for
// upper); a tile of RB consecutive steps first subtracts the already solved rows,
//   acc_q −= t(i_q, j) x_j  for every solved j  (each x_j loaded once, used RB times),
// then the small triangle inside the tile, acc_q −= t(i_q, i_p) acc_p (p < q), dividing by
// t(i_q, i_q) unless unit. The same sums as tri_solve_rows, taken in solve order (for upper
// tri_solve_rows goes by ascending column instead), so the two differ only by rounding.
// Measured (one thread, float32, a 64×64 unit-lower block on 64×256): 0.054 ms row by row in
// the portable SSE2 build, 0.013 ms tiled (AVX-512 clone).
template <typename T> struct Vec64;
template <> struct Vec64<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct Vec64<double> { typedef double type __attribute__((vector_size(64))); };

template <typename T, int RB>
inline __attribute__((always_inline)) void tri_solve_tile(const Mat<T>& t, const Mat<T>& b,
                                                          std::ptrdiff_t c, std::ptrdiff_t s0,
                                                          bool lower, bool unit) {
    using V = typename Vec64<T>::type;
    constexpr std::ptrdiff_t W = 64 / sizeof(T);
    const std::ptrdiff_t m = t.rows;
    std::ptrdiff_t rows[RB];
    V acc[RB][2];
    for (int q = 0; q < RB; ++q) {
        rows[q] = lower ? s0 + q : m - 1 - (s0 + q);
        std::memcpy(&acc[q][0], b.row(rows[q]) + c, sizeof(V));
        std::memcpy(&acc[q][1], b.row(rows[q]) + c + W, sizeof(V));
    }
    for (std::ptrdiff_t s = 0; s < s0; ++s) {
        const std::ptrdiff_t j = lower ? s : m - 1 - s;
        V x0, x1;
        std::memcpy(&x0, b.row(j) + c, sizeof(V));
        std::memcpy(&x1, b.row(j) + c + W, sizeof(V));
        for (int q = 0; q < RB; ++q) {
            const T tq = t(rows[q], j);
            acc[q][0] -= tq * x0;
            acc[q][1] -= tq * x1;
        }
    }
    for (int q = 0; q < RB; ++q) {
        for (int p = 0; p < q; ++p) {
            const T tq = t(rows[q], rows[p]);
            acc[q][0] -= tq * acc[p][0];
            acc[q][1] -= tq * acc[p][1];
        }
        if (!unit) {
            const T d = t(rows[q], rows[q]);
            acc[q][0] /= d;
            acc[q][1] /= d;
        }
        std::memcpy(b.row(rows[q]) + c, &acc[q][0], sizeof(V));
        std::memcpy(b.row(rows[q]) + c + W, &acc[q][1], sizeof(V));
    }
}

// Columns [c0, c1) of B: full-width column tiles through tri_solve_tile (4 rows at a time,
// then single rows), the leftover columns (< 2 vectors) through tri_solve_rows.
template <typename T>
MINIGEN_CLONES void tri_solve_cols(const Mat<T>& t, const Mat<T>& b, std::ptrdiff_t c0,
                                   std::ptrdiff_t c1, bool lower, bool unit) {
    constexpr std::ptrdiff_t CW = 2 * 64 / sizeof(T);
    const std::ptrdiff_t m = t.rows;
    std::ptrdiff_t c = c0;
    for (; c + CW <= c1; c += CW) {
        std::ptrdiff_t s = 0;
        for (; s + 4 <= m; s += 4) {
            tri_solve_tile<T, 4>(t, b, c, s, lower, unit);
        }
        for (; s < m; ++s) {
            tri_solve_tile<T, 1>(t, b, c, s, lower, unit);
        }
    }
    if (c < c1) {
        tri_solve_rows(t, b, c, c1, lower, unit);
    }
}

// Split B's columns into chunks that threads solve independently (each chunk is a full solve).
// Threads only for big solves (≥ 2^24 multiply-adds): the blocked LU and solves call this on
// 32–64-row diagonal blocks between numpy BLAS calls, and an OpenMP team there fights
// OpenBLAS's threads for the cores; with a spinning OpenMP runtime (PyTorch's libgomp loaded
// first) the K6 slogdet 256 forward + backward took 60 ms instead of 2.6 ms at 2^18.
template <typename T>
void tri_solve(const Mat<T>& t, const Mat<T>& b, bool lower, bool unit) {
    constexpr std::ptrdiff_t kChunk = 64;
    const std::ptrdiff_t k = b.cols, chunks = (k + kChunk - 1) / kChunk;
    const bool parallel = chunks > 1 && t.rows * t.rows * k >= (std::ptrdiff_t(1) << 24);
    (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
    for (std::ptrdiff_t q = 0; q < chunks; ++q) {
        tri_solve_cols(t, b, q * kChunk, std::min(k, (q + 1) * kChunk), lower, unit);
    }
}

// ---- the large-n paths: blocked LU and A⁻ᵀ, one call each -----------------------------------
// (minigen/native/logdet.py chooses them above SMALL_N; they were Python loops over the C++
// blocks and minigen._C.gemm until the per-call overhead, ~5 µs × ~40 calls, was a fifth of
// the K6 slogdet 256 forward + backward.)

// In-place blocked right-looking LU of one n×n row-major matrix (LAPACK's getrf): per panel
// of nb columns k..e = k+nb, (1) factor A[k:, k:e] with its row swaps (lu_panel_packed),
// (2) U12 = L11⁻¹ A12, (3) A22 −= L21 U12 through the GEMM (≈ all the 2n³/3 FLOPs).
// Returns the number of row swaps.
template <typename T>
int lu_blocked(T* a, std::ptrdiff_t n, std::ptrdiff_t nb, std::int32_t* piv, int threads) {
    int swaps = 0;
    for (std::ptrdiff_t k = 0; k < n; k += nb) {
        const std::ptrdiff_t kb = std::min(nb, n - k), e = k + kb;
        swaps += lu_panel_packed(a, n, k, kb, piv);
        if (e < n) {
            tri_solve(Mat<T>{a + k * n + k, n, kb, kb}, Mat<T>{a + k * n + e, n, kb, n - e},
                      true, true);
            gemm::gemm_parallel<T>(n - e, n - e, kb, gemm::View<T>{a + e * n + k, n, 1},
                                   gemm::View<T>{a + k * n + e, n, 1}, a + e * n + e, n, true,
                                   T(-1), threads);
        }
    }
    return swaps;
}

// A⁻ᵀ (out, n×n row-major) from P A = L U in lu: A⁻¹ = U⁻¹ L⁻¹ P, so with Y = U⁻¹ L⁻¹,
// A⁻ᵀ = Pᵀ Yᵀ. L⁻¹ by block forward substitution, X_I = L_II⁻¹ (I_I − Σ_{J<I} L_IJ X_J), each
// block row restricted to the columns < i1 where the lower-triangular X has nonzeros (n³/3
// multiply-adds); then Y = U⁻¹ X by block back substitution (n³). 4n³/3 in all, against the
// 2n³ of solve(A, I).
template <typename T>
void inv_transposed(const T* lu, const std::int32_t* piv, std::ptrdiff_t n, std::ptrdiff_t nb,
                    T* out, int threads) {
    T* l = const_cast<T*>(lu);   // read only: Mat and View carry non-const pointers
    std::vector<T> yv(static_cast<std::size_t>(n * n), T(0));
    T* y = yv.data();
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        y[i * n + i] = T(1);
    }
    for (std::ptrdiff_t i0 = 0; i0 < n; i0 += nb) {            // X = L⁻¹
        const std::ptrdiff_t i1 = std::min(i0 + nb, n), m = i1 - i0;
        tri_solve(Mat<T>{l + i0 * n + i0, n, m, m}, Mat<T>{y + i0 * n, n, m, i1}, true, true);
        if (i1 < n) {
            gemm::gemm_parallel<T>(n - i1, i1, m, gemm::View<T>{l + i1 * n + i0, n, 1},
                                   gemm::View<T>{y + i0 * n, n, 1}, y + i1 * n, n, true, T(-1),
                                   threads);
        }
    }
    const std::ptrdiff_t top = (n - 1) / nb * nb;               // Y = U⁻¹ X, last block first
    for (std::ptrdiff_t i0 = top; i0 >= 0; i0 -= nb) {
        const std::ptrdiff_t i1 = std::min(i0 + nb, n), m = i1 - i0;
        tri_solve(Mat<T>{l + i0 * n + i0, n, m, m}, Mat<T>{y + i0 * n, n, m, n}, false, false);
        if (i0 > 0) {
            gemm::gemm_parallel<T>(i0, n, m, gemm::View<T>{l + i0, n, 1},
                                   gemm::View<T>{y + i0 * n, n, 1}, y, n, true, T(-1), threads);
        }
    }
    for (std::ptrdiff_t i = 0; i < n; ++i) {                    // out = Yᵀ
        for (std::ptrdiff_t j = 0; j < n; ++j) {
            out[i * n + j] = y[j * n + i];
        }
    }
    for (std::ptrdiff_t r = n - 1; r >= 0; --r) {               // Pᵀ: the swaps reversed
        if (piv[r] != r) {
            std::swap_ranges(out + r * n, out + r * n + n, out + piv[r] * n);
        }
    }
}

// Solve A X = B (or Aᵀ X = B) for one matrix from its LU; b is n×k row-major, in place.
template <typename T>
void lu_solve_one(const T* lu, const std::int32_t* piv, T* b, std::ptrdiff_t n,
                  std::ptrdiff_t k, bool transpose) {
    if (!transpose) {
        for (std::ptrdiff_t r = 0; r < n; ++r) {  // P B: the swaps in order
            if (piv[r] != r) {
                std::swap_ranges(b + r * k, b + r * k + k, b + piv[r] * k);
            }
        }
        const Mat<T> t{const_cast<T*>(lu), n, n, n}, bm{b, k, n, k};
        tri_solve_cols(t, bm, 0, k, true, true);    // L y = P B
        tri_solve_cols(t, bm, 0, k, false, false);  // U x = y
        return;
    }
    // Uᵀ z = B (forward, column i of U is row i of Uᵀ), then Lᵀ w = z (backward, unit).
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        T* __restrict bi = b + i * k;
        for (std::ptrdiff_t j = 0; j < i; ++j) {
            const T u = lu[j * n + i];
            const T* __restrict bj = b + j * k;
            for (std::ptrdiff_t c = 0; c < k; ++c) {
                bi[c] -= u * bj[c];
            }
        }
        const T d = lu[i * n + i];
        for (std::ptrdiff_t c = 0; c < k; ++c) {
            bi[c] /= d;
        }
    }
    for (std::ptrdiff_t i = n - 2; i >= 0; --i) {
        T* __restrict bi = b + i * k;
        for (std::ptrdiff_t j = i + 1; j < n; ++j) {
            const T l = lu[j * n + i];
            const T* __restrict bj = b + j * k;
            for (std::ptrdiff_t c = 0; c < k; ++c) {
                bi[c] -= l * bj[c];
            }
        }
    }
    for (std::ptrdiff_t r = n - 1; r >= 0; --r) {  // x = Pᵀ w: the swaps in reverse order
        if (piv[r] != r) {
            std::swap_ranges(b + r * k, b + r * k + k, b + piv[r] * k);
        }
    }
}

// ---- bindings: LU and solves ----------------------------------------------------------------

// a (B, n, n) in place → LU; piv (B, n) int32; sign (B,) = det P = ±1. OpenMP over the batch.
void lu_factor_batched(py::array a, py::array piv, py::array sign) {
    const char* fn = "logdet_lu_factor_batched";
    a = as_ndarray(a, fn, "a");
    const DType dt = float_dtype(a, fn, "a");
    require_c_contiguous(a, fn, "a");
    require_writeable(a, fn, "a");
    if (a.ndim() != 3 || a.shape(1) != a.shape(2)) {
        throw py::value_error(std::string(fn) + ": a must be (B, n, n), got " + shape_str(a));
    }
    const std::ptrdiff_t nb = a.shape(0), n = a.shape(1);
    require_int32(piv, fn, "piv");
    require_shape(piv, {nb, n}, fn, "piv");
    sign = as_ndarray(sign, fn, "sign");
    require_shape(sign, {nb}, fn, "sign");
    if (dtype_str(sign) != dtype_str(a)) {
        throw py::value_error(std::string(fn) + ": sign must have a's dtype " + dtype_str(a) +
                              ", got " + dtype_str(sign));
    }
    require_c_contiguous(sign, fn, "sign");
    require_writeable(sign, fn, "sign");
    auto* p = static_cast<std::int32_t*>(piv.mutable_data());
    const bool parallel = nb > 1 && nb * n * n * n >= (std::ptrdiff_t(1) << 15);
    (void)parallel;
    auto run = [&](auto* base, auto* sg) {
        py::gil_scoped_release release;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
        for (std::ptrdiff_t b = 0; b < nb; ++b) {
            const int swaps = lu_panel(base + b * n * n, n, 0, n, p + b * n);
            sg[b] = (swaps & 1) ? -1 : 1;
        }
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(a.mutable_data()), static_cast<float*>(sign.mutable_data()));
    } else {
        run(static_cast<double*>(a.mutable_data()), static_cast<double*>(sign.mutable_data()));
    }
}

// One panel of the blocked LU of one n×n matrix (columns k0..k0+nb); returns the swap count.
int lu_panel_py(py::array a, std::ptrdiff_t k0, std::ptrdiff_t nb, py::array piv) {
    const char* fn = "logdet_lu_panel";
    a = as_ndarray(a, fn, "a");
    const DType dt = float_dtype(a, fn, "a");
    require_c_contiguous(a, fn, "a");
    require_writeable(a, fn, "a");
    if (a.ndim() != 2 || a.shape(0) != a.shape(1)) {
        throw py::value_error(std::string(fn) + ": a must be (n, n), got " + shape_str(a));
    }
    const std::ptrdiff_t n = a.shape(0);
    require_int32(piv, fn, "piv");
    require_shape(piv, {n}, fn, "piv");
    if (k0 < 0 || nb < 0 || k0 + nb > n) {
        throw py::value_error(std::string(fn) + ": panel [k0, k0 + nb) outside the matrix");
    }
    auto* p = static_cast<std::int32_t*>(piv.mutable_data());
    py::gil_scoped_release release;
    if (dt == DType::Float32) {
        return lu_panel_packed(static_cast<float*>(a.mutable_data()), n, k0, nb, p);
    }
    return lu_panel_packed(static_cast<double*>(a.mutable_data()), n, k0, nb, p);
}

// The checks of the one-matrix large-n calls: a (n, n) C-contiguous float, piv (n,) int32.
std::ptrdiff_t check_square(const char* fn, const py::array& a, const char* name,
                            const py::array& piv) {
    float_dtype(a, fn, name);
    require_c_contiguous(a, fn, name);
    if (a.ndim() != 2 || a.shape(0) != a.shape(1)) {
        throw py::value_error(std::string(fn) + ": " + name + " must be (n, n), got " +
                              shape_str(a));
    }
    const std::ptrdiff_t n = a.shape(0);
    require_int32(piv, fn, "piv");
    require_shape(piv, {n}, fn, "piv");
    return n;
}

// In place: a (n, n) → its blocked LU (panels of nb columns); piv (n,) ← the row swaps.
// Returns the number of swaps.
int lu_blocked_py(py::array a, py::array piv, std::ptrdiff_t nb) {
    const char* fn = "logdet_lu_blocked";
    a = as_ndarray(a, fn, "a");
    const std::ptrdiff_t n = check_square(fn, a, "a", piv);
    require_writeable(a, fn, "a");
    require_writeable(piv, fn, "piv");
    if (nb < 1) {
        throw py::value_error(std::string(fn) + ": nb must be ≥ 1");
    }
    auto* p = static_cast<std::int32_t*>(piv.mutable_data());
    const int threads = num_threads();
    const bool f32 = float_dtype(a, fn, "a") == DType::Float32;
    void* ap = a.mutable_data();
    py::gil_scoped_release release;
    return f32 ? lu_blocked(static_cast<float*>(ap), n, nb, p, threads)
               : lu_blocked(static_cast<double*>(ap), n, nb, p, threads);
}

// out (n, n) ← A⁻ᵀ from lu (n, n) and piv (n,) (P A = L U), blocks of nb rows.
void inv_transposed_py(py::array lu, py::array piv, py::array out, std::ptrdiff_t nb) {
    const char* fn = "logdet_inv_transposed";
    lu = as_ndarray(lu, fn, "lu");
    out = as_ndarray(out, fn, "out");
    const std::ptrdiff_t n = check_square(fn, lu, "lu", piv);
    require_shape(out, {n, n}, fn, "out");
    if (!same_dtype(lu, out)) {
        throw py::value_error(std::string(fn) + ": out has dtype " + dtype_str(out) + ", lu " +
                              dtype_str(lu));
    }
    require_c_contiguous(out, fn, "out");
    require_writeable(out, fn, "out");
    require_disjoint({{&lu, "lu"}, {&out, "out"}}, fn);
    if (nb < 1) {
        throw py::value_error(std::string(fn) + ": nb must be ≥ 1");
    }
    const auto* p = static_cast<const std::int32_t*>(piv.data());
    for (std::ptrdiff_t r = 0; r < n; ++r) {
        if (p[r] < 0 || p[r] >= n) {
            throw py::value_error(std::string(fn) + ": pivot " + std::to_string(p[r]) +
                                  " of row " + std::to_string(r) + " out of range");
        }
    }
    const int threads = num_threads();
    const bool f32 = float_dtype(lu, fn, "lu") == DType::Float32;
    const void* lp = lu.data();
    void* op = out.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        inv_transposed(static_cast<const float*>(lp), p, n, nb, static_cast<float*>(op),
                       threads);
    } else {
        inv_transposed(static_cast<const double*>(lp), p, n, nb, static_cast<double*>(op),
                       threads);
    }
}

// b ← T⁻¹ b (t m×m, b m×k: blocks of row-major matrices), lower/upper, unit diagonal or not.
void tri_solve_py(py::array t, py::array b, bool lower, bool unit) {
    const char* fn = "logdet_tri_solve";
    t = as_ndarray(t, fn, "t");
    b = as_ndarray(b, fn, "b");
    const DType dt = float_dtype(t, fn, "t");
    require_rows_contiguous(t, fn, "t");
    require_rows_contiguous(b, fn, "b");
    require_writeable(b, fn, "b");
    if (!same_dtype(b, t)) {
        throw py::value_error(std::string(fn) + ": b has dtype " + dtype_str(b) + ", t " +
                              dtype_str(t));
    }
    if (t.shape(0) != t.shape(1) || b.shape(0) != t.shape(0)) {
        throw py::value_error(std::string(fn) + ": t must be (m, m) and b (m, k), got " +
                              shape_str(t) + " and " + shape_str(b));
    }
    py::gil_scoped_release release;
    if (dt == DType::Float32) {
        tri_solve(as_mat<float>(t), as_mat<float>(b), lower, unit);
    } else {
        tri_solve(as_mat<double>(t), as_mat<double>(b), lower, unit);
    }
}

// b (B, n, k) ← A⁻¹ b (or A⁻ᵀ b) in place from lu (B, n, n), piv (B, n). OpenMP over the batch.
void lu_solve_batched(py::array lu, py::array piv, py::array b, bool transpose) {
    const char* fn = "logdet_lu_solve_batched";
    lu = as_ndarray(lu, fn, "lu");
    b = as_ndarray(b, fn, "b");
    const DType dt = float_dtype(lu, fn, "lu");
    require_c_contiguous(lu, fn, "lu");
    require_c_contiguous(b, fn, "b");
    require_writeable(b, fn, "b");
    if (lu.ndim() != 3 || lu.shape(1) != lu.shape(2)) {
        throw py::value_error(std::string(fn) + ": lu must be (B, n, n), got " + shape_str(lu));
    }
    const std::ptrdiff_t nb = lu.shape(0), n = lu.shape(1);
    if (b.ndim() != 3 || b.shape(0) != nb || b.shape(1) != n || dtype_str(b) != dtype_str(lu)) {
        throw py::value_error(std::string(fn) + ": b must be (" + std::to_string(nb) + ", " +
                              std::to_string(n) + ", k) of lu's dtype, got " + shape_str(b) +
                              " " + dtype_str(b));
    }
    require_int32(piv, fn, "piv");
    require_shape(piv, {nb, n}, fn, "piv");
    const std::ptrdiff_t k = b.shape(2);
    const auto* p = static_cast<const std::int32_t*>(piv.data());
    const bool parallel = nb > 1 && nb * n * n * k >= (std::ptrdiff_t(1) << 15);
    (void)parallel;
    auto run = [&](const auto* l, auto* x) {
        py::gil_scoped_release release;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(::minigen::num_threads()) if(parallel)
#endif
        for (std::ptrdiff_t i = 0; i < nb; ++i) {
            lu_solve_one(l + i * n * n, p + i * n, x + i * n * k, n, k, transpose);
        }
    };
    if (dt == DType::Float32) {
        run(static_cast<const float*>(lu.data()), static_cast<float*>(b.mutable_data()));
    } else {
        run(static_cast<const double*>(lu.data()), static_cast<double*>(b.mutable_data()));
    }
}

// Rows of b (n, k) permuted by the pivots: swaps in order (P b) or reversed (Pᵀ b).
void swap_rows_py(py::array b, py::array piv, bool reverse) {
    const char* fn = "logdet_swap_rows";
    b = as_ndarray(b, fn, "b");
    const DType dt = float_dtype(b, fn, "b");
    require_c_contiguous(b, fn, "b");
    require_writeable(b, fn, "b");
    if (b.ndim() != 2) {
        throw py::value_error(std::string(fn) + ": b must be (n, k), got " + shape_str(b));
    }
    const std::ptrdiff_t n = b.shape(0), k = b.shape(1);
    require_int32(piv, fn, "piv");
    require_shape(piv, {n}, fn, "piv");
    const auto* p = static_cast<const std::int32_t*>(piv.data());
    for (std::ptrdiff_t r = 0; r < n; ++r) {
        if (p[r] < 0 || p[r] >= n) {
            throw py::value_error(std::string(fn) + ": pivot out of range");
        }
    }
    auto run = [&](auto* x) {
        py::gil_scoped_release release;
        for (std::ptrdiff_t s = 0; s < n; ++s) {
            const std::ptrdiff_t r = reverse ? n - 1 - s : s;
            if (p[r] != r) {
                std::swap_ranges(x + r * k, x + r * k + k, x + p[r] * k);
            }
        }
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(b.mutable_data()));
    } else {
        run(static_cast<double*>(b.mutable_data()));
    }
}

}  // namespace

void register_logdet(py::module_& m) {
    m.def("logdet_lu_factor_batched", &lu_factor_batched, py::arg("a"), py::arg("piv"),
          py::arg("sign"),
          "In place: a (B, n, n) → its LU with partial pivoting; piv (B, n) int32 0-based "
          "row swaps; sign (B,) = det P.");
    m.def("logdet_lu_panel", &lu_panel_py, py::arg("a"), py::arg("k0"), py::arg("nb"),
          py::arg("piv"),
          "One panel (columns k0..k0+nb) of the blocked LU of a (n, n), in place; returns the "
          "number of row swaps.");
    m.def("logdet_tri_solve", &tri_solve_py, py::arg("t"), py::arg("b"), py::arg("lower"),
          py::arg("unit"), "b ← T⁻¹ b in place, T triangular (blocks of row-major matrices).");
    m.def("logdet_lu_solve_batched", &lu_solve_batched, py::arg("lu"), py::arg("piv"),
          py::arg("b"), py::arg("transpose"),
          "b (B, n, k) ← A⁻¹ b (A⁻ᵀ b if transpose) in place, from A's LU.");
    m.def("logdet_swap_rows", &swap_rows_py, py::arg("b"), py::arg("piv"), py::arg("reverse"),
          "Rows of b (n, k) swapped by the pivots, in order (P b) or reversed (Pᵀ b).");
    m.def("logdet_lu_blocked", &lu_blocked_py, py::arg("a"), py::arg("piv"), py::arg("nb"),
          "In place: a (n, n) → its blocked LU with partial pivoting (panels of nb columns, "
          "trailing updates through the GEMM); piv (n,) int32 ← the row swaps; returns their "
          "number.");
    m.def("logdet_inv_transposed", &inv_transposed_py, py::arg("lu"), py::arg("piv"),
          py::arg("out"), py::arg("nb"),
          "out (n, n) ← A⁻ᵀ from A's LU (lu, piv): U⁻¹ L⁻¹ P transposed, blocked by nb rows.");
    for (const char* name : {"logdet_lu_factor_batched", "logdet_lu_panel", "logdet_tri_solve",
                             "logdet_lu_solve_batched", "logdet_swap_rows", "logdet_lu_blocked",
                             "logdet_inv_transposed"}) {
        kernel_names().push_back(name);
    }
    register_logdet_flow(m);  // logdet_flow.cpp: actnorm, affine coupling
}

}  // namespace minigen
