// Elementwise kernels: erf, and (below) the engine's large adds (add_broadcast) and
// concatenations (copy_rows).
//
// Versions: the numpy reference in minigen/ops/special.py (Python's math.erf per element);
// this one (C++ std::erf, OpenMP, float32 and float64); cupyx.scipy.special.erf on the GPU.
//
// Math:  erf(x) = 2/√π ∫₀ˣ exp(−t²) dt.   Odd; erf(±∞) = ±1, erf(±0) = ±0, erf(nan) = nan.
//        The exact GELU uses it: gelu(x) = x · ½ (1 + erf(x/√2)).
//
// Bytes moved per element: read x, write y = 2·sizeof(T): 8 B (float32), 16 B (float64).
// std::erf costs tens of cycles, so at a few threads the kernel is compute-bound, not
// bandwidth-bound; OpenMP splits the array into one contiguous chunk per thread.
#include "common.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace minigen {

template <typename T>
static void erf_kernel(const T* __restrict x, T* __restrict y, std::ptrdiff_t n) {
    MINIGEN_PARALLEL_FOR(n)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        y[i] = std::erf(x[i]);  // y = erf(x): the libm erf/erff, within 1–2 ulp
    }
}

template <typename T>
static py::array erf_typed(const py::array& x) {
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<T> y(shape);  // new C-contiguous array, same shape and dtype as x
    const T* src = static_cast<const T*>(x.data());
    T* dst = y.mutable_data();
    const std::ptrdiff_t n = x.size();
    {
        py::gil_scoped_release release;
        erf_kernel(src, dst, n);
    }
    return y;
}

py::array erf(const py::object& obj) {
    const py::array x = as_ndarray(obj, "erf", "x");
    const DType dtype = float_dtype(x, "erf", "x");
    require_c_contiguous(x, "erf", "x");
    return dtype == DType::Float32 ? erf_typed<float>(x) : erf_typed<double>(x);
}

}  // namespace minigen

// ---- add with a row broadcast --------------------------------------------------------------
//
// out[i] = big[i] + small[⌊i / L⌋], L = |big| / |small|: the two broadcasts of the engine's Add
// that the UNet uses on large arrays, same shape (L = 1: a residual connection) and an operand
// constant over the trailing dims ((N, C, H, W) + (N, C, 1, 1): the time embedding). numpy's
// reference is `a + b` (minigen/ops/elementwise.py, Add), which stays the path for every other
// case. Why: numpy runs it on one thread; E3's 13 adds took ~3–5 ms of a ~67 ms forward.
// Bytes per element: read 2·sizeof(T) (same shape) or sizeof(T), write sizeof(T).

namespace minigen {

namespace {

// Below this many elements the add runs on the calling thread.
constexpr std::ptrdiff_t kAddParallelMin = std::ptrdiff_t(1) << 18;

template <typename T>
void add_rows_kernel(const T* __restrict big, const T* __restrict small, T* __restrict out,
                     std::ptrdiff_t rows, std::ptrdiff_t len) {
    if (len == 1) {
        const std::ptrdiff_t n = rows;
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) num_threads(num_threads()) \
    if (parallel: n >= kAddParallelMin)
#endif
        for (std::ptrdiff_t i = 0; i < n; ++i) {
            out[i] = big[i] + small[i];
        }
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) \
    if (rows * len >= kAddParallelMin)
#endif
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const T s = small[r];
        const T* in = big + r * len;
        T* o = out + r * len;
#pragma omp simd
        for (std::ptrdiff_t j = 0; j < len; ++j) {
            o[j] = in[j] + s;
        }
    }
}

}  // namespace

void add_broadcast(const py::object& big_obj, const py::object& small_obj,
                   const py::object& out_obj) {
    const char* fn = "add_broadcast";
    const py::array big = as_ndarray(big_obj, fn, "big");
    const py::array small = as_ndarray(small_obj, fn, "small");
    py::array out = as_ndarray(out_obj, fn, "out");
    const DType dtype = float_dtype(big, fn, "big");
    if (!same_dtype(big, small) || !same_dtype(big, out)) {
        throw py::value_error(std::string(fn) + ": big (" + dtype_str(big) + "), small (" +
                              dtype_str(small) + ") and out (" + dtype_str(out) +
                              ") must share a dtype");
    }
    const std::ptrdiff_t n = big.size(), m = small.size();
    if (out.size() != n || m == 0 || n % m != 0) {
        throw py::value_error(std::string(fn) + ": out " + shape_str(out) + " must have big's " +
                              "size and small's size must divide it; got big " +
                              shape_str(big) + ", small " + shape_str(small));
    }
    for (const auto& [a, name] : {std::pair<const py::array*, const char*>{&big, "big"},
                                  {&small, "small"}, {&out, "out"}}) {
        require_c_contiguous(*a, fn, name);
    }
    require_writeable(out, fn, "out");
    require_disjoint({{&big, "big"}, {&out, "out"}}, fn);
    require_disjoint({{&small, "small"}, {&out, "out"}}, fn);
    const void* bp = big.data();
    const void* sp = small.data();
    void* op = out.mutable_data();
    const std::ptrdiff_t len = m == n ? 1 : n / m, rows = m == n ? n : m;
    py::gil_scoped_release release;
    if (dtype == DType::Float32) {
        add_rows_kernel(static_cast<const float*>(bp), static_cast<const float*>(sp),
                        static_cast<float*>(op), rows, len);
    } else {
        add_rows_kernel(static_cast<const double*>(bp), static_cast<const double*>(sp),
                        static_cast<double*>(op), rows, len);
    }
}

}  // namespace minigen

// ---- copy into a strided block: the engine's large concatenations ------------------------
//
// dst[r, 0:L] = src[r, 0:L] for r < R, src (R, L) C-contiguous, dst (R, L) with contiguous rows
// at any row stride: one input of np.concatenate along an axis, dst being out's slice for it
// viewed as (∏ leading dims, ∏ trailing dims · the input's extent on the axis). numpy's
// concatenate (the reference, ops/shape.py Cat) copies on one thread; the UNet's three skip
// concatenations (up to 19 MB) took ~3 ms of E3's forward.

namespace minigen {

namespace {

template <typename T>
void copy_rows_kernel(const T* __restrict src, T* __restrict dst, std::ptrdiff_t rows,
                      std::ptrdiff_t len, std::ptrdiff_t ld) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads()) \
    if (rows * len >= kAddParallelMin && rows > 1)
#endif
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        std::memcpy(dst + r * ld, src + r * len, sizeof(T) * len);
    }
}

}  // namespace

void copy_rows(const py::object& src_obj, const py::object& dst_obj) {
    const char* fn = "copy_rows";
    const py::array src = as_ndarray(src_obj, fn, "src");
    py::array dst = as_ndarray(dst_obj, fn, "dst");
    const DType dtype = float_dtype(src, fn, "src");
    if (!same_dtype(src, dst)) {
        throw py::value_error(std::string(fn) + ": src (" + dtype_str(src) + ") and dst (" +
                              dtype_str(dst) + ") must share a dtype");
    }
    if (src.ndim() != 2) {
        throw py::value_error(std::string(fn) + ": src must be 2-D, got " + shape_str(src));
    }
    require_shape(dst, {src.shape(0), src.shape(1)}, fn, "dst");
    require_c_contiguous(src, fn, "src");
    const std::ptrdiff_t item = static_cast<std::ptrdiff_t>(src.itemsize());
    const std::ptrdiff_t rows = src.shape(0), len = src.shape(1);
    if ((len > 1 && dst.strides(1) != item) || (rows > 1 && (dst.strides(0) < len * item ||
                                                            dst.strides(0) % item != 0))) {
        throw py::value_error(std::string(fn) + ": dst must have contiguous, non-overlapping "
                              "rows, got strides (" + std::to_string(dst.strides(0)) + ", " +
                              std::to_string(dst.strides(1)) + ")");
    }
    require_writeable(dst, fn, "dst");
    if (rows == 0 || len == 0) {
        return;
    }
    // the extent of dst's rows in memory, for the overlap check
    const auto lo = reinterpret_cast<std::uintptr_t>(dst.data());
    const auto hi = lo + static_cast<std::uintptr_t>((rows - 1) * dst.strides(0) + len * item);
    const auto s_lo = reinterpret_cast<std::uintptr_t>(src.data());
    if (s_lo < hi && lo < s_lo + static_cast<std::uintptr_t>(src.nbytes())) {
        throw py::value_error(std::string(fn) + ": src and dst share memory; pass separate "
                              "arrays");
    }
    const std::ptrdiff_t ld = rows > 1 ? dst.strides(0) / item : len;
    const void* sp = src.data();
    void* dp = dst.mutable_data();
    py::gil_scoped_release release;
    if (dtype == DType::Float32) {
        copy_rows_kernel(static_cast<const float*>(sp), static_cast<float*>(dp), rows, len, ld);
    } else {
        copy_rows_kernel(static_cast<const double*>(sp), static_cast<double*>(dp), rows, len,
                         ld);
    }
}

}  // namespace minigen
