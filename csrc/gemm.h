// The GEMM machinery shared by csrc/gemm.cpp (minigen._C.gemm, the plain matrix product) and
// csrc/conv2d.cpp (the implicit-GEMM convolution, which packs B straight from the image):
// packing, the micro-kernel, the blocked serial GEMM over a B source, one compiled variant per
// instruction set. The design, the tile shapes and the references: the comment of gemm.cpp.
//
// A file that includes this must also have, before it,
//   #pragma GCC optimize("fp-contract=fast")
// (the micro-kernel's c += a·b must be a fused multiply-add: ISO C++ mode turns contraction
// off, and the option of the including file is what applies to these inlined templates).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#define MINIGEN_GEMM_X86 1  // AVX-512 and AVX2 variants, chosen by __builtin_cpu_supports
#endif

namespace minigen {
namespace gemm {

constexpr std::ptrdiff_t KC = 256;    // shared-dimension block: an MR×KC A micro-panel and a
                                      // KC×NR B micro-panel are 8 + 32 KiB in float32
constexpr std::ptrdiff_t MC = 96;     // rows of A per packed block (a multiple of 8, 6 and 4)
constexpr std::ptrdiff_t NC = 4096;   // columns of B per packed block

// A strided 2-D operand: element (i, j) at p[i * rs + j * cs].
template <typename T>
struct View {
    const T* p;
    std::ptrdiff_t rs, cs;
};

template <typename T, int VB> struct VecT;
template <> struct VecT<float, 16> { typedef float type __attribute__((vector_size(16))); };
template <> struct VecT<float, 32> { typedef float type __attribute__((vector_size(32))); };
template <> struct VecT<float, 64> { typedef float type __attribute__((vector_size(64))); };
template <> struct VecT<double, 16> { typedef double type __attribute__((vector_size(16))); };
template <> struct VecT<double, 32> { typedef double type __attribute__((vector_size(32))); };
template <> struct VecT<double, 64> { typedef double type __attribute__((vector_size(64))); };

// ---- packing ------------------------------------------------------------------------------

// B[k0 : k0+kc, j0 : j0+nc] → ceil(nc/NR) micro-panels, each kc × NR (k-major), zero-padded.
template <typename T, int NR>
inline __attribute__((always_inline)) void pack_b(const View<T>& b, std::ptrdiff_t k0,
                                                  std::ptrdiff_t kc, std::ptrdiff_t j0,
                                                  std::ptrdiff_t nc, T* __restrict dst) {
    for (std::ptrdiff_t jr = 0; jr < nc; jr += NR) {
        const std::ptrdiff_t nr = std::min<std::ptrdiff_t>(NR, nc - jr);
        T* __restrict d = dst + jr * kc;
        if (b.cs == 1 && nr == NR) {  // rows of B contiguous (or columns of A): NR at a time
            for (std::ptrdiff_t k = 0; k < kc; ++k) {
                std::memcpy(d + k * NR, b.p + (k0 + k) * b.rs + j0 + jr, NR * sizeof(T));
            }
            continue;
        }
        for (std::ptrdiff_t c = 0; c < NR; ++c) {
            if (c < nr) {
                const T* src = b.p + k0 * b.rs + (j0 + jr + c) * b.cs;
                for (std::ptrdiff_t k = 0; k < kc; ++k) {
                    d[k * NR + c] = src[k * b.rs];
                }
            } else {
                for (std::ptrdiff_t k = 0; k < kc; ++k) {
                    d[k * NR + c] = T(0);
                }
            }
        }
    }
}

// A[i0 : i0+mc, k0 : k0+kc] → ceil(mc/MR) micro-panels, each kc × MR (k-major), zero-padded:
// the B packing of Aᵀ (the same layout with rows and columns swapped).
template <typename T, int MR>
inline __attribute__((always_inline)) void pack_a(const View<T>& a, std::ptrdiff_t i0,
                                                  std::ptrdiff_t mc, std::ptrdiff_t k0,
                                                  std::ptrdiff_t kc, T* __restrict dst) {
    pack_b<T, MR>(View<T>{a.p, a.cs, a.rs}, k0, kc, i0, mc, dst);
}

// ---- micro-kernel -------------------------------------------------------------------------

// A full MR×NR tile from its 2·MR accumulator vectors to C (row stride ldc): stored, or added
// to what C holds. Shared by micro_kernel and conv2d_direct.cpp's tiles.
template <typename T, int MR, typename V>
inline __attribute__((always_inline)) void store_tile(V* c0, V* c1, T* c, std::ptrdiff_t ldc,
                                                      bool accumulate) {
    constexpr int W = sizeof(V) / sizeof(T);
    for (int r = 0; r < MR; ++r) {
        T* cr = c + r * ldc;
        if (accumulate) {
            V o0, o1;
            std::memcpy(&o0, cr, sizeof(V));
            std::memcpy(&o1, cr + W, sizeof(V));
            c0[r] += o0;
            c1[r] += o1;
        }
        std::memcpy(cr, &c0[r], sizeof(V));
        std::memcpy(cr + W, &c1[r], sizeof(V));
    }
}

// C[0:mr, 0:nr] (row stride ldc) = or += α Σ_k a_k b_kᵀ over the packed micro-panels a (kc×MR)
// and b (kc×NR). The MR×NR accumulators live in 2·MR vector registers.
template <typename T, int MR, int VB>
inline __attribute__((always_inline)) void micro_kernel(std::ptrdiff_t kc,
                                                        const T* __restrict a,
                                                        const T* __restrict b, T* c,
                                                        std::ptrdiff_t ldc, bool accumulate,
                                                        T alpha, std::ptrdiff_t mr,
                                                        std::ptrdiff_t nr) {
    using V = typename VecT<T, VB>::type;
    constexpr int W = VB / sizeof(T);
    constexpr int NR = 2 * W;
    V c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        c0[r] = V{};
        c1[r] = V{};
    }
    for (std::ptrdiff_t k = 0; k < kc; ++k) {
        V b0, b1;
        std::memcpy(&b0, b + k * NR, sizeof(V));
        std::memcpy(&b1, b + k * NR + W, sizeof(V));
        const T* ak = a + k * MR;
        for (int r = 0; r < MR; ++r) {
            c0[r] += ak[r] * b0;
            c1[r] += ak[r] * b1;
        }
    }
    if (alpha != T(1)) {
        for (int r = 0; r < MR; ++r) {
            c0[r] *= alpha;
            c1[r] *= alpha;
        }
    }
    if (mr == MR && nr == NR) {
        store_tile<T, MR>(c0, c1, c, ldc, accumulate);
        return;
    }
    alignas(64) T tile[MR][NR];  // a ragged edge tile: through a buffer
    for (int r = 0; r < MR; ++r) {
        std::memcpy(&tile[r][0], &c0[r], sizeof(V));
        std::memcpy(&tile[r][W], &c1[r], sizeof(V));
    }
    for (std::ptrdiff_t r = 0; r < mr; ++r) {
        T* cr = c + r * ldc;
        for (std::ptrdiff_t j = 0; j < nr; ++j) {
            cr[j] = accumulate ? cr[j] + tile[r][j] : tile[r][j];
        }
    }
}

// B given by its strides: an ordinary matrix or any strided view of one.
template <typename T>
struct StridedB {
    View<T> v;
    template <int NR>
    void pack(std::ptrdiff_t k0, std::ptrdiff_t kc, std::ptrdiff_t j0, std::ptrdiff_t nc,
              T* dst) const {
        pack_b<T, NR>(v, k0, kc, j0, nc, dst);
    }
};

// ---- one serial GEMM ----------------------------------------------------------------------

// C[M×N] (row stride ldc, contiguous rows) = or += α A[M×K] B[K×N]. abuf: MC·KC, bbuf: KC·NC
// (rounded up to whole micro-panels) elements of scratch. B is a source with
// pack<NR>(k0, kc, j0, nc, dst): it writes B[k0:k0+kc, j0:j0+nc] as ⌈nc/NR⌉ zero-padded
// kc×NR micro-panels (StridedB for a matrix; conv2d.cpp's implicit im2col reads an image).
template <typename T, int MR, int VB, typename BSrc>
inline __attribute__((always_inline)) void gemm_serial(std::ptrdiff_t M, std::ptrdiff_t N,
                                                       std::ptrdiff_t K, View<T> a,
                                                       const BSrc& b,
                                                       T* c, std::ptrdiff_t ldc,
                                                       bool accumulate, T alpha, T* abuf,
                                                       T* bbuf) {
    constexpr std::ptrdiff_t NR = 2 * VB / sizeof(T);
    if (K == 0) {
        if (!accumulate) {
            for (std::ptrdiff_t i = 0; i < M; ++i) {
                std::fill(c + i * ldc, c + i * ldc + N, T(0));
            }
        }
        return;
    }
    for (std::ptrdiff_t jc = 0; jc < N; jc += NC) {
        const std::ptrdiff_t nc = std::min(NC, N - jc);
        for (std::ptrdiff_t pc = 0; pc < K; pc += KC) {
            const std::ptrdiff_t kc = std::min(KC, K - pc);
            const bool acc = accumulate || pc > 0;
            b.template pack<NR>(pc, kc, jc, nc, bbuf);
            for (std::ptrdiff_t ic = 0; ic < M; ic += MC) {
                const std::ptrdiff_t mc = std::min(MC, M - ic);
                pack_a<T, MR>(a, ic, mc, pc, kc, abuf);
                for (std::ptrdiff_t jr = 0; jr < nc; jr += NR) {
                    const std::ptrdiff_t nr = std::min(NR, nc - jr);
                    for (std::ptrdiff_t ir = 0; ir < mc; ir += MR) {
                        const std::ptrdiff_t mr = std::min<std::ptrdiff_t>(MR, mc - ir);
                        micro_kernel<T, MR, VB>(kc, abuf + ir * kc, bbuf + jr * kc,
                                                c + (ic + ir) * ldc + jc + jr, ldc, acc, alpha,
                                                mr, nr);
                    }
                }
            }
        }
    }
}

struct Isa {
    const char* name;
    int mr, vb;
};

inline Isa detect_isa() {
#ifdef MINIGEN_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        return {"avx512f", 8, 64};
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        return {"avx2+fma", 6, 32};
    }
#endif
    return {"portable", 4, 16};
}

inline const Isa& isa() {
    static const Isa chosen = detect_isa();
    return chosen;
}


// ---- one serial GEMM per instruction set -----------------------------------------------------

// SerialFn<T, BSrc>: gemm_serial compiled for the instruction set of this CPU (see pick_serial).
template <typename T, typename BSrc>
using SerialFn = void (*)(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, View<T>, const BSrc&,
                          T*, std::ptrdiff_t, bool, T, T*, T*);

#ifdef MINIGEN_GEMM_X86
template <typename T, typename BSrc>
__attribute__((target("avx512f"))) void serial_avx512(std::ptrdiff_t M, std::ptrdiff_t N,
                                                      std::ptrdiff_t K, View<T> a,
                                                      const BSrc& b, T* c, std::ptrdiff_t ldc,
                                                      bool acc, T alpha, T* abuf, T* bbuf) {
    gemm_serial<T, 8, 64>(M, N, K, a, b, c, ldc, acc, alpha, abuf, bbuf);
}

template <typename T, typename BSrc>
__attribute__((target("avx2,fma"))) void serial_avx2(std::ptrdiff_t M, std::ptrdiff_t N,
                                                     std::ptrdiff_t K, View<T> a, const BSrc& b,
                                                     T* c, std::ptrdiff_t ldc, bool acc,
                                                     T alpha, T* abuf, T* bbuf) {
    gemm_serial<T, 6, 32>(M, N, K, a, b, c, ldc, acc, alpha, abuf, bbuf);
}
#endif

template <typename T, typename BSrc>
void serial_portable(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, View<T> a,
                     const BSrc& b, T* c, std::ptrdiff_t ldc, bool acc, T alpha, T* abuf,
                     T* bbuf) {
    gemm_serial<T, 4, 16>(M, N, K, a, b, c, ldc, acc, alpha, abuf, bbuf);
}

// The variant for this CPU (isa()); the template is inlined into each, so its vector types
// compile to that instruction set's registers.
template <typename T, typename BSrc>
SerialFn<T, BSrc> pick_serial() {
#ifdef MINIGEN_GEMM_X86
    if (isa().vb == 64) {
        return serial_avx512<T, BSrc>;
    }
    if (isa().vb == 32) {
        return serial_avx2<T, BSrc>;
    }
#endif
    return serial_portable<T, BSrc>;
}

// C[M×N] (row stride ldc) = or += α A[M×K] B[K×N] on up to `threads` OpenMP threads (C split by
// columns, or by rows when narrow; one thread below ~2^21 multiply-adds). Defined in gemm.cpp,
// for float and double: the product minigen._C.gemm and logdet.cpp's blocked LU run.
template <typename T>
void gemm_parallel(std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, View<T> a, View<T> b,
                   T* c, std::ptrdiff_t ldc, bool accumulate, T alpha, int threads);

// Elements of the A part of scratch<T>(scratch_size<T>()); the B part starts there.
template <typename T>
std::ptrdiff_t a_scratch_elems() {
    const std::ptrdiff_t mr = isa().mr;
    return KC * ((MC + mr - 1) / mr * mr);
}

// Scratch per thread, grown on demand (never shrunk: the sizes are bounded by MC·KC + KC·NC).
template <typename T>
T* scratch(std::size_t n) {
    thread_local std::vector<T> buf;
    if (buf.size() < n) {
        buf.resize(n);
    }
    return buf.data();
}

template <typename T>
std::size_t scratch_size() {
    const std::ptrdiff_t nr = 2 * isa().vb / static_cast<std::ptrdiff_t>(sizeof(T));
    const std::ptrdiff_t mr = isa().mr;
    const std::ptrdiff_t mc = (MC + mr - 1) / mr * mr, nc = (NC + nr - 1) / nr * nr;
    return static_cast<std::size_t>(KC * (mc + nc));
}

}  // namespace gemm
}  // namespace minigen
