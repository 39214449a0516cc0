// Elementwise math the compiler can vectorize, shared by the kernels of csrc/ that need e^x or
// log(1 + x) per element (normalization.cpp: SiLU; logdet.cpp: the coupling's sigmoid and its
// log). std::exp / std::log1p are libm calls per element in the portable build (no
// -march=native, no -ffast-math, so no libmvec), which stops the vectorizer.
//
// A file that includes this should also carry, before the include,
//   #pragma GCC optimize("no-trapping-math")
// (GCC only): otherwise GCC keeps the clamps' float selects as branches ("control flow in
// loop") and does not vectorize. No result changes: nothing reads FP exception flags.
#pragma once

#include <cstdint>
#include <cstring>

// MINIGEN_CLONES: compile a kernel once per instruction set and pick the best at load time
// (GCC/Clang function multiversioning through an ELF ifunc). The portable build targets plain
// x86-64 (SSE2, 4 floats per instruction); the clones keep that binary portable and still use
// AVX2 / AVX-512 where the CPU has them. No -ffast-math and no FMA contraction in ISO C++
// mode, so every clone computes the same bits. Measured, silu forward on 1.6M floats (the
// exp_approx loop): 2.1 ms SSE2, 0.97 ms AVX2, 0.29 ms AVX-512.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MINIGEN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef MINIGEN_CLONES
#define MINIGEN_CLONES
#endif

namespace minigen {

// e^x for float in a form the compiler vectorizes (std::exp is a libm call per element: the
// portable build has no -march=native and no -ffast-math, so libmvec is not used; measured on
// (64, 32, 28, 28): silu forward 3.1 ms with std::exp, see the report for this version).
//   x = k ln2 + t,  k = round(x / ln2),  |t| ≤ ln2/2,  e^x = 2^k e^t
//   round by the 1.5·2^23 trick (no roundps in SSE2), t with ln2 split in two (Cody–Waite:
//   k·ln2_hi is exact for |k| < 2^9), e^t by its Taylor series to t^7/7! (truncation error
//   (ln2/2)^8/8! ≈ 5e-9 relative, below float's 6e-8 rounding), 2^k built in the exponent bits.
//   x is clamped to [−80, 80]: e^x and everything derived from it stay normal floats. With
//   ±87 the vectorized select still computed the clamped lanes' constant path through
//   denormals (microcode assists): silu forward took 6.5 ms instead of 2.1 ms on 1.6M floats.
//   Callers only need e^x there to saturate σ: σ(80) = 1 in float, and for z < −80 silu(z)
//   = z·1.8e−35 instead of ≈ z e^z (an absolute error below 1e−30 for |z| < 10^5).
inline float exp_approx(float x) {
    x = x < -80.0f ? -80.0f : x;  // ternaries, not std::min/max: see the top of this file
    x = x > 80.0f ? 80.0f : x;
    const float shifter = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
    const float ks = x * 1.44269504088896341f + shifter;  // k + 1.5·2^23; k in its low bits
    const float kf = ks - shifter;
    const float t = (x - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * t + 1.0f / 720.0f;
    p = p * t + 1.0f / 120.0f;
    p = p * t + 1.0f / 24.0f;
    p = p * t + 1.0f / 6.0f;
    p = p * t + 0.5f;
    p = p * t + 1.0f;
    p = p * t + 1.0f;
    std::int32_t kb;
    std::memcpy(&kb, &ks, sizeof kb);
    const std::int32_t bits = (kb - 0x4B400000 + 127) << 23;  // 0x4B400000 = bits of 1.5·2^23
    float two_k;
    std::memcpy(&two_k, &bits, sizeof two_k);
    return p * two_k;
}

// log(1 + e) for float e in [0, 1] (e = e^{−|z|} in the log-sigmoid), vectorizable:
//   write 1 + e = 2^k m with k ∈ {0, 1} and m ∈ [√2/2, √2]; log m = 2 atanh f, f = (m−1)/(m+1):
//   k = 0 (e ≤ √2 − 1): f = e/(2 + e)            (from e itself: no cancellation, so log1p
//                                                  keeps its relative accuracy for tiny e)
//   k = 1:              f = (e − 1)/(e + 3),  + ln 2
//   |f| ≤ 3 − 2√2 ≈ 0.1716; 2 atanh f = 2(f + f³/3 + f⁵/5 + f⁷/7 + f⁹/9) + O(f¹¹), truncation
//   ≈ 2·0.1716¹¹/11 ≈ 7e−10 absolute (log m ≥ 0.34 where f is largest): below float rounding.
inline float log1p_approx01(float e) {
    const bool big = e > 0.41421356237f;
    const float f = big ? (e - 1.0f) / (e + 3.0f) : e / (2.0f + e);
    const float f2 = f * f;
    float p = 1.0f / 9.0f;
    p = p * f2 + 1.0f / 7.0f;
    p = p * f2 + 1.0f / 5.0f;
    p = p * f2 + 1.0f / 3.0f;
    p = p * f2 + 1.0f;
    return 2.0f * f * p + (big ? 0.69314718056f : 0.0f);
}

}  // namespace minigen
