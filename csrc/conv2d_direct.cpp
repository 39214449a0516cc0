// Kernel family conv2d: the direct convolution of the native version, for groups 1 (every
// convolution of the E2 UNet, and the input gradient of the stride-1 ones, which is again a
// stride-1 convolution). The other native pieces are in conv2d.cpp (im2col/col2im, the
// implicit-GEMM forward) and minigen/native/conv2d.py, which chooses between them; the math is
// minigen/reference/conv2d.py.
//
// The idea: the GEMM micro-kernel of gemm.h, with its B operand read in place from a
// zero-padded copy of one image instead of from a column matrix (no im2col, no packing).
// Stride 1: pad the image to x_p (C, H_p, W_p), H_p = H + 2p_h, W_p = W + 2p_w, and number an
// output pixel (a, b) by its place in a row of the *padded* width, q = a·W_p + b. Then
//
//     y[o, a, b] = Σ_{c,i,j} w[o, c, i, j] · x_p[c, a + i·d_h, b + j·d_w]
//                = Σ_k W[o, k] · x_p[off_k + q],     k = (c, i, j),
//                                                    off_k = c·H_p·W_p + i·d_h·W_p + j·d_w
//
// so row k of the product's B is the flat padded image shifted by off_k: the NR pixels of a
// micro-tile are NR consecutive numbers in memory, one or two vector loads. The pixels with
// b ≥ W_out are computed and dropped when the tile is copied out; rows that share their zero
// border (pitch W + p_w instead of W_p, make_direct) leave p_w of them per row: at 28×28 with a
// 3×3 kernel, 1 of 29. The input gradient of a stride-1 convolution is the
// same product on g with the flipped weights (native/conv2d.py).
//
// Stride s: split the padded image into its s_h·s_w phases, x_s[(c, u, v), r, t] =
// x_p[c, s_h·r + u, s_w·t + v], planes of H_s × W_s = ⌈H_p/s_h⌉ × ⌈W_p/s_w⌉. Tap (i, j) of
// output (a, b) reads x_p[c, s_h·a + i·d_h, s_w·b + j·d_w] = x_s[(c, i·d_h mod s_h,
// j·d_w mod s_w), a + ⌊i·d_h/s_h⌋, b + ⌊j·d_w/s_w⌋]: again a shifted plane, with q = a·W_s + b.
// The same kernels run unchanged; only the copy in (pad_image) and the offsets differ.
//
// The weight gradient in the same coordinates, with G_p the output gradient at the padded (or
// phase) width, zeros at the dropped q:
//
//     ∂W[o, k] = Σ_n Σ_q G_p[n][o, q] · x_p[n][off_k + q]
//
// computed as ∂Wᵀ, an MR × NR tile of (k, o) per micro-kernel call: per q, the MR values
// x_p[off_k + q] (one broadcast each, MR streams walking the padded image) times the NR values
// G_pᵀ[q, o0 : o0 + NR] (G transposed once per image, so that they are contiguous).
//
// Why (2-core AVX-512 EPYC, E2 shapes): with im2col the convolutions ran at ~150–170 GFLOP/s,
// the column matrix costing a write, a read and a packing copy per element for only C_out
// multiply-adds each; here every micro-kernel operand comes from cache, as in a GEMM. The
// numbers are in the module docstring of native/conv2d.py.
//
// Threads: images split across them (the weight gradient in per-thread partial sums, added at
// the end); with fewer images than threads, each image's pixel tiles (forward) or ∂W's rows
// (weight gradient).
#pragma GCC optimize("fp-contract=fast")  // the micro-kernels' c += a·b: one FMA (gemm.h)

#include "common.h"
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace minigen {

namespace {

using gemm::VecT;

// Below this many multiply-adds a call runs on the calling thread.
constexpr std::ptrdiff_t kDirectParallelMin = std::ptrdiff_t(1) << 21;
// Pixels of the weight gradient per pass over ∂Wᵀ's tiles: a G_pᵀ chunk of QC × NR floats
// (16 KiB) stays in L1 across the MR-row panels.
constexpr std::ptrdiff_t QC = 128;

// The geometry of one convolution, per image.
struct Direct {
    std::ptrdiff_t c_in, c_out, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
    std::ptrdiff_t hp, wp;    // padded input plane
    std::ptrdiff_t hs, ws;    // one stride phase of it: ⌈H_p/s_h⌉ × ⌈W_p/s_w⌉ (stride 1: H_p × W_p)
    std::ptrdiff_t ho, wo;    // output plane
    std::ptrdiff_t k;         // C_in·k_h·k_w: the shared dimension of the products
    std::ptrdiff_t jq;        // H_out·W_s: output pixels numbered at the phase width
    std::ptrdiff_t padded;    // elements of x_p: C_in·s_h·s_w phase planes of H_s·W_s, then
                              // zeros that the last tile's loads may read past the end
};

Direct make_direct(std::ptrdiff_t c_in, std::ptrdiff_t c_out, std::ptrdiff_t h,
                   std::ptrdiff_t w, std::ptrdiff_t kh, std::ptrdiff_t kw, std::ptrdiff_t sh,
                   std::ptrdiff_t sw, std::ptrdiff_t ph, std::ptrdiff_t pw, std::ptrdiff_t dh,
                   std::ptrdiff_t dw, std::ptrdiff_t nr) {
    Direct d{c_in, c_out, h, w, kh, kw, sh, sw, ph, pw, dh, dw, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    d.hp = h + 2 * ph;
    d.wp = w + 2 * pw;
    d.hs = (d.hp + sh - 1) / sh;
    d.ws = (d.wp + sw - 1) / sw;
    if (sh == 1 && sw == 1 && pw <= dw * (kw - 1)) {
        // stride 1: rows share their padding. At a row pitch of W + p_w, the p_w zeros that
        // start row r + 1 are also the right border of row r, and an output row (W_out =
        // W + 2p_w − d_w(k_w − 1) ≤ W + p_w) still fits in one pitch: p_w dropped columns per
        // row instead of 2p_w (3×3: 1 of 29 at 28×28, 1 of 8 at 7×7, instead of 2 of 30 and 9).
        d.ws = w + pw;
    }
    d.ho = (d.hp - dh * (kh - 1) - 1) / sh + 1;
    d.wo = (d.wp - dw * (kw - 1) - 1) / sw + 1;
    d.k = c_in * kh * kw;
    d.jq = d.ho * d.ws;
    d.padded = c_in * sh * sw * d.hs * d.ws + (kw - 1) * dw + nr;
    return d;
}

std::ptrdiff_t round_up(std::ptrdiff_t v, std::ptrdiff_t m) { return (v + m - 1) / m * m; }

// off_k for k = (c, i, j) < K: the phase plane (c, i·d_h mod s_h, j·d_w mod s_w) shifted by
// (⌊i·d_h/s_h⌋, ⌊j·d_w/s_w⌋); stride 1: c·H_p·W_p + i·d_h·W_p + j·d_w. Rows past K (the
// zero-padded edge of a row panel) point at the start of the image: their products are dropped.
std::vector<std::ptrdiff_t> shift_offsets(const Direct& d, std::ptrdiff_t rows) {
    std::vector<std::ptrdiff_t> off(rows, 0);
    std::ptrdiff_t k = 0;
    for (std::ptrdiff_t c = 0; c < d.c_in; ++c) {
        for (std::ptrdiff_t i = 0; i < d.kh; ++i) {
            for (std::ptrdiff_t j = 0; j < d.kw; ++j) {
                const std::ptrdiff_t u = i * d.dh % d.sh, v = j * d.dw % d.sw;
                off[k++] = ((c * d.sh + u) * d.sw + v) * d.hs * d.ws +
                           i * d.dh / d.sh * d.ws + j * d.dw / d.sw;
            }
        }
    }
    return off;
}

// x (C, H, W) → x_p: stride 1, (C, H_p, W_p) with a zero border; stride s, its phases
// x_p[(c, u, v), r, t] = x_pad[c, s_h·r + u, s_w·t + v] (zero outside the image); then the
// zero tail.
template <typename T>
void pad_image(const T* __restrict x, T* __restrict xp, const Direct& d) {
    T* p = xp;
    if (d.sh != 1 || d.sw != 1) {
        for (std::ptrdiff_t c = 0; c < d.c_in; ++c) {
            for (std::ptrdiff_t u = 0; u < d.sh; ++u) {
                for (std::ptrdiff_t v = 0; v < d.sw; ++v) {
                    for (std::ptrdiff_t r = 0; r < d.hs; ++r, p += d.ws) {
                        const std::ptrdiff_t row = d.sh * r + u - d.ph;
                        if (row < 0 || row >= d.h) {
                            std::fill(p, p + d.ws, T(0));
                            continue;
                        }
                        const T* in = x + (c * d.h + row) * d.w;
                        for (std::ptrdiff_t t = 0; t < d.ws; ++t) {
                            const std::ptrdiff_t col = d.sw * t + v - d.pw;
                            p[t] = col >= 0 && col < d.w ? in[col] : T(0);
                        }
                    }
                }
            }
        }
        std::fill(p, xp + d.padded, T(0));
        return;
    }
    // rows of pitch W_s (W_p, or W + p_w with shared borders: make_direct), each p_w zeros
    // then the image row then zeros to the pitch; p_h zero rows above and below each plane
    for (std::ptrdiff_t c = 0; c < d.c_in; ++c) {
        std::fill(p, p + d.ph * d.ws, T(0));
        p += d.ph * d.ws;
        for (std::ptrdiff_t r = 0; r < d.h; ++r, p += d.ws) {
            std::fill(p, p + d.pw, T(0));
            std::memcpy(p + d.pw, x + (c * d.h + r) * d.w, sizeof(T) * d.w);
            std::fill(p + d.pw + d.w, p + d.ws, T(0));
        }
        std::fill(p, p + d.ph * d.ws, T(0));
        p += d.ph * d.ws;
    }
    std::fill(p, xp + d.padded, T(0));
}

// Per-thread buffers, grown on demand.
template <typename T>
struct Scratch {
    std::vector<T> xp, out;
};

template <typename T>
Scratch<T>& scratch() {
    thread_local Scratch<T> s;
    return s;
}

template <typename T>
T* grown(std::vector<T>& v, std::ptrdiff_t n) {
    if (static_cast<std::ptrdiff_t>(v.size()) < n) {
        v.resize(n);
    }
    return v.data();
}

// ---- micro-kernels ------------------------------------------------------------------------

// C[0:MR, 0:NR] (row stride ldc) = or += Σ_{k<kc} a_k ⊗ x_p[off_k : off_k + NR]: gemm.h's
// micro-kernel with B's row k read in place from the padded image at its shift.
template <typename T, int MR, int VB>
inline __attribute__((always_inline)) void tile_forward(std::ptrdiff_t kc,
                                                        const T* __restrict a,
                                                        const T* __restrict xq,
                                                        const std::ptrdiff_t* __restrict off,
                                                        T* __restrict c, std::ptrdiff_t ldc,
                                                        bool accumulate) {
    using V = typename VecT<T, VB>::type;
    constexpr int W = VB / sizeof(T);
    V c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        c0[r] = V{};
        c1[r] = V{};
    }
    for (std::ptrdiff_t k = 0; k < kc; ++k) {
        const T* bk = xq + off[k];
        V b0, b1;
        std::memcpy(&b0, bk, sizeof(V));
        std::memcpy(&b1, bk + W, sizeof(V));
        const T* ak = a + k * MR;
        for (int r = 0; r < MR; ++r) {
            c0[r] += ak[r] * b0;
            c1[r] += ak[r] * b1;
        }
    }
    gemm::store_tile<T, MR>(c0, c1, c, ldc, accumulate);
}

// C[0:MR, 0:NR] += Σ_{q<nq} (x_p[off_r + q])_r ⊗ gt[q, 0:NR]: a tile of ∂Wᵀ (rows k, columns
// o), the MR values of a column broadcast from MR streams over the padded image.
template <typename T, int MR, int VB>
inline __attribute__((always_inline)) void tile_wgrad(std::ptrdiff_t nq, const T* xq,
                                                      const std::ptrdiff_t* __restrict off,
                                                      const T* __restrict gt, std::ptrdiff_t ldg,
                                                      T* __restrict c, std::ptrdiff_t ldc) {
    using V = typename VecT<T, VB>::type;
    constexpr int W = VB / sizeof(T);
    const T* p[MR];
    V c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        p[r] = xq + off[r];
        std::memcpy(&c0[r], c + r * ldc, sizeof(V));
        std::memcpy(&c1[r], c + r * ldc + W, sizeof(V));
    }
    for (std::ptrdiff_t q = 0; q < nq; ++q) {
        V b0, b1;
        std::memcpy(&b0, gt + q * ldg, sizeof(V));
        std::memcpy(&b1, gt + q * ldg + W, sizeof(V));
        for (int r = 0; r < MR; ++r) {
            const T s = p[r][q];
            c0[r] += s * b0;
            c1[r] += s * b1;
        }
    }
    gemm::store_tile<T, MR>(c0, c1, c, ldc, false);   // C was loaded into c0, c1 above
}

// ---- one image's share, per instruction set ---------------------------------------------

// Output tiles q ∈ [q0, q1) (multiples of NR) of one image: out[m, q] for every row panel m,
// a = W packed as ⌈C_out/MR⌉ panels of K × MR (k-major).
template <typename T, int MR, int VB>
inline __attribute__((always_inline)) void forward_tiles(const Direct& d, const T* xp,
                                                         const T* a,
                                                         const std::ptrdiff_t* off, T* out,
                                                         std::ptrdiff_t ldo, std::ptrdiff_t q0,
                                                         std::ptrdiff_t q1) {
    constexpr std::ptrdiff_t NR = 2 * VB / sizeof(T);
    const std::ptrdiff_t mpad = round_up(d.c_out, MR);
    for (std::ptrdiff_t q = q0; q < q1; q += NR) {
        for (std::ptrdiff_t pc = 0; pc < d.k; pc += gemm::KC) {
            const std::ptrdiff_t kc = std::min(gemm::KC, d.k - pc);
            for (std::ptrdiff_t m = 0; m < mpad; m += MR) {
                tile_forward<T, MR, VB>(kc, a + m * d.k + pc * MR, xp + q, off + pc,
                                        out + m * ldo + q, ldo, pc > 0);
            }
        }
    }
}

// Rows [m0, m1) (multiples of MR) of ∂Wᵀ (ld = C_out rounded up to NR) += one image's share.
template <typename T, int MR, int VB>
inline __attribute__((always_inline)) void wgrad_rows(const Direct& d, const T* xp,
                                                      const T* gt, const std::ptrdiff_t* off,
                                                      std::ptrdiff_t m0, std::ptrdiff_t m1,
                                                      T* dwt) {
    constexpr std::ptrdiff_t NR = 2 * VB / sizeof(T);
    const std::ptrdiff_t ld = round_up(d.c_out, NR);
    for (std::ptrdiff_t q0 = 0; q0 < d.jq; q0 += QC) {
        const std::ptrdiff_t nq = std::min(QC, d.jq - q0);
        for (std::ptrdiff_t o = 0; o < ld; o += NR) {
            for (std::ptrdiff_t m = m0; m < m1; m += MR) {
                tile_wgrad<T, MR, VB>(nq, xp + q0, off + m, gt + q0 * ld + o, ld,
                                      dwt + m * ld + o, ld);
            }
        }
    }
}

template <typename T>
struct Kernels {
    void (*forward)(const Direct&, const T*, const T*, const std::ptrdiff_t*, T*, std::ptrdiff_t,
                    std::ptrdiff_t, std::ptrdiff_t);
    void (*wgrad)(const Direct&, const T*, const T*, const std::ptrdiff_t*, std::ptrdiff_t,
                  std::ptrdiff_t, T*);
    int mr, nr;
};

#ifdef MINIGEN_GEMM_X86
template <typename T>
__attribute__((target("avx512f"))) void forward_avx512(const Direct& d, const T* xp, const T* a,
                                                       const std::ptrdiff_t* off, T* out,
                                                       std::ptrdiff_t ldo, std::ptrdiff_t q0,
                                                       std::ptrdiff_t q1) {
    forward_tiles<T, 8, 64>(d, xp, a, off, out, ldo, q0, q1);
}
template <typename T>
__attribute__((target("avx512f"))) void wgrad_avx512(const Direct& d, const T* xp, const T* gt,
                                                     const std::ptrdiff_t* off, std::ptrdiff_t m0,
                                                     std::ptrdiff_t m1, T* dwt) {
    wgrad_rows<T, 8, 64>(d, xp, gt, off, m0, m1, dwt);
}
template <typename T>
__attribute__((target("avx2,fma"))) void forward_avx2(const Direct& d, const T* xp, const T* a,
                                                      const std::ptrdiff_t* off, T* out,
                                                      std::ptrdiff_t ldo, std::ptrdiff_t q0,
                                                      std::ptrdiff_t q1) {
    forward_tiles<T, 6, 32>(d, xp, a, off, out, ldo, q0, q1);
}
template <typename T>
__attribute__((target("avx2,fma"))) void wgrad_avx2(const Direct& d, const T* xp, const T* gt,
                                                    const std::ptrdiff_t* off, std::ptrdiff_t m0,
                                                    std::ptrdiff_t m1, T* dwt) {
    wgrad_rows<T, 6, 32>(d, xp, gt, off, m0, m1, dwt);
}
#endif
template <typename T>
void forward_portable(const Direct& d, const T* xp, const T* a, const std::ptrdiff_t* off,
                      T* out, std::ptrdiff_t ldo, std::ptrdiff_t q0, std::ptrdiff_t q1) {
    forward_tiles<T, 4, 16>(d, xp, a, off, out, ldo, q0, q1);
}
template <typename T>
void wgrad_portable(const Direct& d, const T* xp, const T* gt, const std::ptrdiff_t* off,
                    std::ptrdiff_t m0, std::ptrdiff_t m1, T* dwt) {
    wgrad_rows<T, 4, 16>(d, xp, gt, off, m0, m1, dwt);
}

// The variants for this CPU: the tile shapes of gemm.h's isa().
template <typename T>
Kernels<T> pick_kernels() {
    const int vb = gemm::isa().vb, mr = gemm::isa().mr;
    const int nr = 2 * vb / static_cast<int>(sizeof(T));
#ifdef MINIGEN_GEMM_X86
    if (vb == 64) {
        return {forward_avx512<T>, wgrad_avx512<T>, mr, nr};
    }
    if (vb == 32) {
        return {forward_avx2<T>, wgrad_avx2<T>, mr, nr};
    }
#endif
    return {forward_portable<T>, wgrad_portable<T>, mr, nr};
}

// ---- the batch ------------------------------------------------------------------------------

// out (C_out rows of ldo, padded-width q) → y[o, a, b] (+ bias[o]) for the q in [q0, q1).
template <typename T>
void crop(const Direct& d, const T* out, std::ptrdiff_t ldo, const T* bias, T* y,
          std::ptrdiff_t q0, std::ptrdiff_t q1) {
    const std::ptrdiff_t a0 = q0 / d.ws, a1 = std::min(d.ho, (q1 + d.ws - 1) / d.ws);
    for (std::ptrdiff_t o = 0; o < d.c_out; ++o) {
        const T bo = bias ? bias[o] : T(0);
        const T* src = out + o * ldo;
        T* dst = y + o * d.ho * d.wo;
        for (std::ptrdiff_t a = a0; a < a1; ++a) {
            const std::ptrdiff_t lo = std::max(a * d.ws, q0);
            const std::ptrdiff_t hi = std::min(a * d.ws + d.wo, q1);
            T* row = dst + a * d.wo - a * d.ws;   // row[q] = y[o, a, q − a·W_s]
            for (std::ptrdiff_t q = lo; q < hi; ++q) {
                row[q] = src[q] + bo;
            }
        }
    }
}

// y (N, C_out, H_out, W_out) = conv2d(x, w) + bias, groups 1.
template <typename T>
void direct_forward(const T* x, const T* w, const T* bias, T* y, std::ptrdiff_t n,
                    const Direct& d, int threads) {
    const Kernels<T> kern = pick_kernels<T>();
    const std::ptrdiff_t mpad = round_up(d.c_out, kern.mr);
    const std::ptrdiff_t ldo = round_up(d.jq, kern.nr);
    if (d.k == 0) {   // no input channels: the empty sum, y = bias
        for (std::ptrdiff_t i = 0; i < n * d.c_out; ++i) {
            std::fill(y + i * d.ho * d.wo, y + (i + 1) * d.ho * d.wo,
                      bias ? bias[i % d.c_out] : T(0));
        }
        return;
    }
    // W as ⌈C_out/MR⌉ panels of K × MR, zero rows past C_out
    std::vector<T> a(mpad * d.k, T(0));
    for (std::ptrdiff_t o = 0; o < d.c_out; ++o) {
        for (std::ptrdiff_t k = 0; k < d.k; ++k) {
            a[(o / kern.mr) * kern.mr * d.k + k * kern.mr + o % kern.mr] = w[o * d.k + k];
        }
    }
    const std::vector<std::ptrdiff_t> off = shift_offsets(d, d.k);
    const std::ptrdiff_t x_img = d.c_in * d.h * d.w, y_img = d.c_out * d.ho * d.wo;
    // one image's tiles [q0, q1): pad it into this thread's buffer, multiply, crop
    auto run = [&](std::ptrdiff_t im, std::ptrdiff_t q0, std::ptrdiff_t q1) {
        Scratch<T>& s = scratch<T>();
        T* xp = grown(s.xp, d.padded);
        T* out = grown(s.out, mpad * ldo);
        pad_image(x + im * x_img, xp, d);
        kern.forward(d, xp, a.data(), off.data(), out, ldo, q0, q1);
        crop(d, out, ldo, bias, y + im * y_img, q0, q1);
    };
    const bool parallel = threads > 1 && n * mpad * ldo * d.k >= kDirectParallelMin;
    if (!parallel || n >= threads) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#endif
        for (std::ptrdiff_t im = 0; im < n; ++im) {
            run(im, 0, ldo);
        }
        return;
    }
    const std::ptrdiff_t tiles = ldo / kern.nr;
    for (std::ptrdiff_t im = 0; im < n; ++im) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
        {
            const std::ptrdiff_t t = omp_get_thread_num(), team = omp_get_num_threads();
#else
        {
            const std::ptrdiff_t t = 0, team = 1;
#endif
            const std::ptrdiff_t s0 = tiles * t / team * kern.nr;
            const std::ptrdiff_t s1 = tiles * (t + 1) / team * kern.nr;
            if (s1 > s0) {
                run(im, s0, s1);
            }
        }
    }
}

// g (C_out, H_out, W_out) → gt (q, o) = G_pᵀ, ld = C_out rounded up to NR; the dropped q
// (b ≥ W_out) and the padding columns o ≥ C_out are left as they are (zeroed once).
template <typename T>
void transpose_grad(const Direct& d, const T* __restrict g, T* __restrict gt, std::ptrdiff_t ld) {
    for (std::ptrdiff_t a = 0; a < d.ho; ++a) {
        for (std::ptrdiff_t o = 0; o < d.c_out; ++o) {
            const T* src = g + (o * d.ho + a) * d.wo;
            T* dst = gt + a * d.ws * ld + o;
            for (std::ptrdiff_t b = 0; b < d.wo; ++b) {
                dst[b * ld] = src[b];
            }
        }
    }
}

// gw (C_out, C_in, k_h, k_w) = Σ_n ∂W of image n.
template <typename T>
void direct_wgrad(const T* g, const T* x, T* gw, std::ptrdiff_t n, const Direct& d,
                  int threads) {
    const Kernels<T> kern = pick_kernels<T>();
    const std::ptrdiff_t kpad = round_up(d.k, kern.mr), ld = round_up(d.c_out, kern.nr);
    const std::vector<std::ptrdiff_t> off = shift_offsets(d, kpad);
    const std::ptrdiff_t x_img = d.c_in * d.h * d.w, g_img = d.c_out * d.ho * d.wo;
    const bool parallel = threads > 1 && n * kpad * ld * d.jq >= kDirectParallelMin;
    const bool by_image = !parallel || n >= threads;
    const int team = parallel ? threads : 1;
    // ∂Wᵀ (K_pad × ld): one partial sum per thread when the images are split, else one shared
    // (each thread owns a range of its rows)
    std::vector<T> dwt((by_image ? team : 1) * kpad * ld, T(0));
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (parallel)
    {
        const std::ptrdiff_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    {
        const std::ptrdiff_t t = 0, nt = 1;
#endif
        Scratch<T>& s = scratch<T>();
        T* xp = grown(s.xp, d.padded);
        T* gt = grown(s.out, d.jq * ld);
        std::fill(gt, gt + d.jq * ld, T(0));
        const std::ptrdiff_t panels = kpad / kern.mr;
        const std::ptrdiff_t n0 = by_image ? n * t / nt : 0, n1 = by_image ? n * (t + 1) / nt : n;
        const std::ptrdiff_t m0 = by_image ? 0 : panels * t / nt * kern.mr;
        const std::ptrdiff_t m1 = by_image ? kpad : panels * (t + 1) / nt * kern.mr;
        T* acc = dwt.data() + (by_image ? t * kpad * ld : 0);
        if (m1 > m0) {
            for (std::ptrdiff_t im = n0; im < n1; ++im) {
                pad_image(x + im * x_img, xp, d);
                transpose_grad(d, g + im * g_img, gt, ld);
                kern.wgrad(d, xp, gt, off.data(), m0, m1, acc);
            }
        }
    }
    const std::ptrdiff_t parts = by_image ? team : 1;
    for (std::ptrdiff_t o = 0; o < d.c_out; ++o) {
        for (std::ptrdiff_t k = 0; k < d.k; ++k) {
            T sum = T(0);
            for (std::ptrdiff_t p = 0; p < parts; ++p) {
                sum += dwt[(p * kpad + k) * ld + o];
            }
            gw[o * d.k + k] = sum;
        }
    }
}

// An operand of x's dtype with exactly this shape, C-contiguous (y, g, bias).
void check_operand(const char* fn, const py::array& a, const char* name, const py::array& x,
                   std::initializer_list<py::ssize_t> shape) {
    require_shape(a, shape, fn, name);
    if (!same_dtype(x, a)) {
        throw py::value_error(std::string(fn) + ": " + name + " (" + dtype_str(a) +
                              ") must have x's dtype " + dtype_str(x));
    }
    require_c_contiguous(a, fn, name);
}

// The shared argument checks: x (N, C_in, H, W), w (C_out, C_in, k_h, k_w), the geometry.
Direct check_direct(const char* fn, const py::array& x, const py::array& w, const char* w_name,
                    std::ptrdiff_t sh, std::ptrdiff_t sw, std::ptrdiff_t ph, std::ptrdiff_t pw,
                    std::ptrdiff_t dh, std::ptrdiff_t dw) {
    float_dtype(x, fn, "x");
    if (x.ndim() != 4 || w.ndim() != 4) {
        throw py::value_error(std::string(fn) + ": x and " + w_name + " must be 4-D, got " +
                              shape_str(x) + " and " + shape_str(w));
    }
    if (!same_dtype(x, w)) {
        throw py::value_error(std::string(fn) + ": x (" + dtype_str(x) + ") and " + w_name +
                              " (" + dtype_str(w) + ") must share a dtype");
    }
    if (w.shape(1) != x.shape(1)) {
        throw py::value_error(std::string(fn) + ": " + w_name + " " + shape_str(w) +
                              " does not fit x " +
                              shape_str(x) + " (C_in must match; groups = 1)");
    }
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0 || dh < 1 || dw < 1) {
        throw py::value_error(std::string(fn) + ": stride and dilation must be ≥ 1 and "
                              "padding ≥ 0");
    }
    const std::ptrdiff_t kh = w.shape(2), kw = w.shape(3);
    if (x.shape(2) + 2 * ph < dh * (kh - 1) + 1 || x.shape(3) + 2 * pw < dw * (kw - 1) + 1) {
        throw py::value_error(std::string(fn) + ": the kernel is larger than the padded image " +
                              shape_str(x));
    }
    require_c_contiguous(x, fn, "x");
    require_c_contiguous(w, fn, w_name);
    const std::ptrdiff_t nr = 2 * gemm::isa().vb / static_cast<std::ptrdiff_t>(x.itemsize());
    return make_direct(x.shape(1), w.shape(0), x.shape(2), x.shape(3), kh, kw, sh, sw, ph, pw, dh,
                       dw, nr);
}

}  // namespace

// y (N, C_out, H_out, W_out) ← conv2d(x, w) + bias, groups 1 (bias may be None).
void conv2d_direct_forward(const py::object& x_obj, const py::object& w_obj,
                           const py::object& bias_obj, const py::object& y_obj,
                           std::ptrdiff_t sh, std::ptrdiff_t sw, std::ptrdiff_t ph,
                           std::ptrdiff_t pw, std::ptrdiff_t dh, std::ptrdiff_t dw) {
    const char* fn = "conv2d_direct_forward";
    const py::array x = as_ndarray(x_obj, fn, "x");
    const py::array w = as_ndarray(w_obj, fn, "w");
    py::array y = as_ndarray(y_obj, fn, "y");
    const Direct d = check_direct(fn, x, w, "w", sh, sw, ph, pw, dh, dw);
    const std::ptrdiff_t n = x.shape(0);
    check_operand(fn, y, "y", x, {n, d.c_out, d.ho, d.wo});
    require_writeable(y, fn, "y");
    py::array bias;
    const bool has_bias = !bias_obj.is_none();
    if (has_bias) {
        bias = as_ndarray(bias_obj, fn, "bias");
        check_operand(fn, bias, "bias", x, {d.c_out});
        require_disjoint({{&bias, "bias"}, {&y, "y"}}, fn);
    }
    require_disjoint({{&x, "x"}, {&y, "y"}}, fn);
    require_disjoint({{&w, "w"}, {&y, "y"}}, fn);
    const int threads = num_threads();
    const bool f32 = float_dtype(x, fn, "x") == DType::Float32;
    const void* xp = x.data();
    const void* wp = w.data();
    const void* bp = has_bias ? bias.data() : nullptr;
    void* yp = y.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        direct_forward(static_cast<const float*>(xp), static_cast<const float*>(wp),
                       static_cast<const float*>(bp), static_cast<float*>(yp), n, d, threads);
    } else {
        direct_forward(static_cast<const double*>(xp), static_cast<const double*>(wp),
                       static_cast<const double*>(bp), static_cast<double*>(yp), n, d, threads);
    }
}

// gw (C_out, C_in, k_h, k_w) ← ∂L/∂w of y = conv2d(x, w), groups 1, from g = ∂L/∂y.
void conv2d_direct_wgrad(const py::object& g_obj, const py::object& x_obj,
                         const py::object& gw_obj, std::ptrdiff_t sh, std::ptrdiff_t sw,
                         std::ptrdiff_t ph, std::ptrdiff_t pw, std::ptrdiff_t dh,
                         std::ptrdiff_t dw) {
    const char* fn = "conv2d_direct_wgrad";
    const py::array g = as_ndarray(g_obj, fn, "g");
    const py::array x = as_ndarray(x_obj, fn, "x");
    py::array gw = as_ndarray(gw_obj, fn, "gw");
    const Direct d = check_direct(fn, x, gw, "gw", sh, sw, ph, pw, dh, dw);
    const std::ptrdiff_t n = x.shape(0);
    check_operand(fn, g, "g", x, {n, d.c_out, d.ho, d.wo});
    require_c_contiguous(gw, fn, "gw");
    require_writeable(gw, fn, "gw");
    require_disjoint({{&g, "g"}, {&gw, "gw"}}, fn);
    require_disjoint({{&x, "x"}, {&gw, "gw"}}, fn);
    const int threads = num_threads();
    const bool f32 = float_dtype(x, fn, "x") == DType::Float32;
    const void* gp = g.data();
    const void* xp = x.data();
    void* gwp = gw.mutable_data();
    py::gil_scoped_release release;
    if (f32) {
        direct_wgrad(static_cast<const float*>(gp), static_cast<const float*>(xp),
                     static_cast<float*>(gwp), n, d, threads);
    } else {
        direct_wgrad(static_cast<const double*>(gp), static_cast<const double*>(xp),
                     static_cast<double*>(gwp), n, d, threads);
    }
}

void register_conv2d_direct(py::module_& m) {
    m.def("conv2d_direct_forward", &conv2d_direct_forward, py::arg("x"), py::arg("w"),
          py::arg("bias"), py::arg("y"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
          py::arg("pw"), py::arg("dh"), py::arg("dw"),
          "y (N, C_out, Hout, Wout) <- conv2d(x, w) + bias (bias may be None), groups 1: the "
          "direct convolution (the GEMM micro-kernel reading a zero-padded copy of each image, "
          "split into its stride phases, in place)");
    m.def("conv2d_direct_wgrad", &conv2d_direct_wgrad, py::arg("g"), py::arg("x"),
          py::arg("gw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
          py::arg("dh"), py::arg("dw"),
          "gw (C_out, C_in, kh, kw) <- the weight gradient of y = conv2d(x, w) (groups 1) from "
          "g = dL/dy (N, C_out, Hout, Wout); gw is overwritten");
    kernel_names().push_back("conv2d_direct_forward");
    kernel_names().push_back("conv2d_direct_wgrad");
}

}  // namespace minigen
