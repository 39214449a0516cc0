// GEMM, C = A·B (or C += α A·B), float32 and float64: the matrix product of minigen's native
// kernels (conv2d, attention, logdet) and of the engine's matmul/linear on the CPU
// (minigen/native/gemm.py; the numpy reference is a @ b). Why not numpy's BLAS: the machines we
// benchmark on pin numpy's OpenBLAS to its Haswell kernels (OPENBLAS_CORETYPE; half its AVX-512
// rate), OpenBLAS's worker threads spin after every call and took a core from the next OpenMP
// kernel on a 2-core machine, and many products here are small (a convolution chunk, one
// attention head). The machinery (packing, micro-kernel, blocked serial GEMM over a "B source",
// one variant per instruction set) is in gemm.h, shared with conv2d.cpp's implicit-GEMM
// convolution; this file adds the threading and minigen._C.gemm.
//
// It is the classic blocked GEMM (Goto and van de Geijn, "Anatomy of high-performance matrix
// multiplication", 2008; the loop structure BLIS documents):
//
//   for jc (NC columns of B and C)            B block  KC×NC  packed, stays in L3
//     for pc (KC of the shared dimension)
//       pack B[pc, jc] into NR-wide micro-panels  (k-major: NR consecutive values per k)
//       for ic (MC rows of A and C)             A block  MC×KC  packed, stays in L2
//         pack A[ic, pc] into MR-tall micro-panels (k-major: MR consecutive values per k)
//         for jr, ir: micro-kernel              an MR×NR tile of C in registers,
//                                               KC rank-1 updates: C_tile += a_k b_kᵀ
//
// Measured (2-core AVX-512 EPYC, float32, same process as numpy pinned to Haswell):
// 1024³ at 193 GFLOP/s on one thread, 330–360 on two (numpy: 108 on one); conv-shaped
// 32×3136×288 at 250–270 on two (numpy: 95–180).
//
// Packing makes every operand read of the micro-kernel contiguous whatever the strides of A
// and B (a transposed view costs nothing extra), and pads the ragged edges with zeros so the
// micro-kernel has one shape. The micro-kernel is written once with GCC vector types and
// compiled per instruction set, with the tile shape that fits its register file:
//   AVX-512 (32 × 512-bit registers): MR = 8,  NR = 2 vectors (32 floats / 16 doubles):
//                                     16 accumulators + 2 B vectors + 1 broadcast
//   AVX2 + FMA (16 × 256-bit):        MR = 6,  NR = 2 vectors (16 floats / 8 doubles): 12 + 3
//   SSE2 (16 × 128-bit):              MR = 4,  NR = 2 vectors (8 floats / 4 doubles):   8 + 3
// chosen at load time (__builtin_cpu_supports). FMA contraction is on in this file (the
// micro-kernel's c += a·b is one fused multiply-add): results differ from numpy's BLAS by
// rounding, as two BLAS builds do.
//
// Threads: C is split into column ranges (or row ranges when it has few columns), one per
// thread, each a full serial GEMM with its own packing buffers; a batch of small products is
// split by batch entry instead.
#pragma GCC optimize("fp-contract=fast")

#include "common.h"
#include "gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace minigen {

namespace {

using namespace gemm;

// Below this many multiply-adds a product runs on the calling thread (a team's wake-up and
// the other core's cold caches cost more than the split saves).
constexpr std::ptrdiff_t kGemmParallelMin = std::ptrdiff_t(1) << 21;

}  // namespace

namespace gemm {

// One product, split over threads by columns of C (rows when C is narrow). Declared in gemm.h
// (logdet.cpp's blocked LU calls it too); instantiated for float and double below.
template <typename T>
void gemm_parallel(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, View<T> a, View<T> b,
                   T* c, std::ptrdiff_t ldc, bool accumulate, T alpha, int threads) {
    const auto fn = pick_serial<T, StridedB<T>>();
    const std::ptrdiff_t nr = 2 * isa().vb / static_cast<std::ptrdiff_t>(sizeof(T));
    const std::ptrdiff_t mr = isa().mr;
    const std::size_t need = scratch_size<T>();
    const bool by_cols = N >= 4 * nr * threads || N >= M;
    const std::ptrdiff_t unit = by_cols ? nr : mr, extent = by_cols ? N : M;
    const std::ptrdiff_t units = (extent + unit - 1) / unit;
    if (threads <= 1 || M * N * K < kGemmParallelMin || units < 2) {
        T* buf = scratch<T>(need);
        fn(M, N, K, a, StridedB<T>{b}, c, ldc, accumulate, alpha, buf,
           buf + a_scratch_elems<T>());
        return;
    }
    const int team = static_cast<int>(std::min<std::ptrdiff_t>(threads, units));
#ifdef _OPENMP
#pragma omp parallel num_threads(team)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        const std::ptrdiff_t u0 = units * t / team, u1 = units * (t + 1) / team;
        const std::ptrdiff_t s0 = u0 * unit, s1 = std::min(extent, u1 * unit);
        if (s1 > s0) {
            T* buf = scratch<T>(need);
            T* bbuf = buf + a_scratch_elems<T>();
            if (by_cols) {
                View<T> bs{b.p + s0 * b.cs, b.rs, b.cs};
                fn(M, s1 - s0, K, a, StridedB<T>{bs}, c + s0, ldc, accumulate, alpha, buf,
                   bbuf);
            } else {
                View<T> as{a.p + s0 * a.rs, a.rs, a.cs};
                fn(s1 - s0, N, K, as, StridedB<T>{b}, c + s0 * ldc, ldc, accumulate, alpha, buf,
                   bbuf);
            }
        }
    }
}

template void gemm_parallel<float>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, View<float>,
                                   View<float>, float*, std::ptrdiff_t, bool, float, int);
template void gemm_parallel<double>(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, View<double>,
                                    View<double>, double*, std::ptrdiff_t, bool, double, int);

}  // namespace gemm

namespace {

using namespace gemm;

// ---- bindings -----------------------------------------------------------------------------

// c[..., M, N] = (or +=) α a[..., M, K] @ b[..., K, N]. All three have the same number of
// dimensions (≥ 2); c's leading dimensions are the batch, a's and b's each equal c's or 1
// (broadcast). a and b may have any strides (multiples of the item size, not negative); c's
// rows must be contiguous. c must not share memory with a or b: minigen/native/gemm.py checks
// that exactly (np.shares_memory: views of one matrix side by side are fine).
void gemm_py(py::object a_obj, py::object b_obj, py::object c_obj, bool accumulate,
             double alpha) {
    const char* fn = "gemm";
    py::array a = as_ndarray(a_obj, fn, "a"), b = as_ndarray(b_obj, fn, "b"),
              c = as_ndarray(c_obj, fn, "c");
    const DType dt = float_dtype(c, fn, "c");
    if (!same_dtype(a, c) || !same_dtype(b, c)) {
        throw py::value_error(std::string(fn) + ": a, b and c must share a dtype, got " +
                              dtype_str(a) + ", " + dtype_str(b) + ", " + dtype_str(c));
    }
    const py::ssize_t d = c.ndim();
    if (d < 2 || a.ndim() != d || b.ndim() != d) {
        throw py::value_error(std::string(fn) + ": a, b, c must have the same number (≥ 2) of "
                              "dimensions, got shapes " + shape_str(a) + ", " + shape_str(b) +
                              ", " + shape_str(c));
    }
    const std::ptrdiff_t M = c.shape(d - 2), N = c.shape(d - 1), K = a.shape(d - 1);
    if (a.shape(d - 2) != M || b.shape(d - 2) != K || b.shape(d - 1) != N) {
        throw py::value_error(std::string(fn) + ": shapes " + shape_str(a) + " @ " +
                              shape_str(b) + " do not give " + shape_str(c));
    }
    const auto item = static_cast<py::ssize_t>(c.itemsize());
    if (c.size() == 0) {
        return;  // nothing to compute (and an empty array's strides mean nothing)
    }
    std::vector<std::ptrdiff_t> batch, sa, sb, sc;
    for (py::ssize_t i = 0; i < d - 2; ++i) {
        const py::ssize_t n = c.shape(i);
        for (const py::array* x : {&a, &b}) {
            if (x->shape(i) != n && x->shape(i) != 1) {
                throw py::value_error(std::string(fn) + ": batch dimensions of " +
                                      shape_str(a) + " and " + shape_str(b) +
                                      " do not broadcast to " + shape_str(c));
            }
        }
        batch.push_back(n);
        sa.push_back(a.shape(i) == 1 ? 0 : a.strides(i) / item);
        sb.push_back(b.shape(i) == 1 ? 0 : b.strides(i) / item);
        sc.push_back(c.strides(i) / item);
    }
    for (const auto* x : {&a, &b, &c}) {
        for (py::ssize_t i = 0; i < d; ++i) {
            if (x->strides(i) % item != 0 || x->strides(i) < 0) {
                throw py::value_error(std::string(fn) + ": strides must be non-negative "
                                      "multiples of the item size");
            }
        }
    }
    require_writeable(c, fn, "c");
    if (N > 1 && c.strides(d - 1) != item) {
        throw py::value_error(std::string(fn) + ": c's rows must be contiguous, got strides of " +
                              shape_str(c));
    }
    std::ptrdiff_t count = 1;
    for (auto n : batch) {
        count *= n;
    }
    auto run = [&](auto* c_ptr) {
        using T = std::remove_pointer_t<decltype(c_ptr)>;
        const T* ap = static_cast<const T*>(a.data());
        const T* bp = static_cast<const T*>(b.data());
        const std::ptrdiff_t ars = a.strides(d - 2) / item, acs = a.strides(d - 1) / item;
        const std::ptrdiff_t brs = b.strides(d - 2) / item, bcs = b.strides(d - 1) / item;
        const std::ptrdiff_t ldc = c.strides(d - 2) / item;
        // Offsets of batch entry e (row-major over the batch dimensions).
        auto offsets = [&](std::ptrdiff_t e, std::ptrdiff_t& oa, std::ptrdiff_t& ob,
                           std::ptrdiff_t& oc) {
            oa = ob = oc = 0;
            for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(batch.size()) - 1; i >= 0; --i) {
                const std::ptrdiff_t idx = e % batch[i];
                e /= batch[i];
                oa += idx * sa[i];
                ob += idx * sb[i];
                oc += idx * sc[i];
            }
        };
        const int threads = num_threads();
        py::gil_scoped_release release;
        const bool by_batch = count >= threads && threads > 1 && count * M * N * K >=
                              kGemmParallelMin && M * N * K <= (std::ptrdiff_t(1) << 24);
        if (by_batch) {
            const auto f = pick_serial<T, StridedB<T>>();
            const std::size_t need = scratch_size<T>();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
            for (std::ptrdiff_t e = 0; e < count; ++e) {
                std::ptrdiff_t oa, ob, oc;
                offsets(e, oa, ob, oc);
                T* buf = scratch<T>(need);
                f(M, N, K, View<T>{ap + oa, ars, acs}, StridedB<T>{View<T>{bp + ob, brs, bcs}},
                  c_ptr + oc, ldc, accumulate, static_cast<T>(alpha), buf,
                  buf + a_scratch_elems<T>());
            }
            return;
        }
        for (std::ptrdiff_t e = 0; e < count; ++e) {
            std::ptrdiff_t oa, ob, oc;
            offsets(e, oa, ob, oc);
            gemm_parallel<T>(M, N, K, View<T>{ap + oa, ars, acs}, View<T>{bp + ob, brs, bcs},
                        c_ptr + oc, ldc, accumulate, static_cast<T>(alpha), threads);
        }
    };
    if (dt == DType::Float32) {
        run(static_cast<float*>(c.mutable_data()));
    } else {
        run(static_cast<double*>(c.mutable_data()));
    }
}

}  // namespace

void register_gemm(py::module_& m) {
    m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("c"),
          py::arg("accumulate") = false, py::arg("alpha") = 1.0,
          "c[..., M, N] = alpha a[..., M, K] @ b[..., K, N] (or += with accumulate): "
          "float32/float64, "
          "a and b any strides, batch dimensions broadcast (size 1), c rows contiguous.");
    m.def("gemm_isa", []() { return std::string(isa().name); },
          "The instruction set the GEMM micro-kernel runs with on this CPU.");
    kernel_names().push_back("gemm");
}

}  // namespace minigen
