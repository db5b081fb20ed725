/* Run-time choice of instruction set for the hand-vectorised kernels (direct_conv.h,
 * depthwise_rows.h).
 *
 * The library is compiled for the baseline instruction set (a wheel must run on any x86-64), so
 * each kernel is compiled three times with GCC/Clang `target` attributes (AVX-512, AVX2 + FMA,
 * baseline) and the caller picks one with fc_simd_level(). Other compilers or CPUs get the
 * baseline variant only.
 */
#ifndef FASTCONV_SIMD_H
#define FASTCONV_SIMD_H

#include <stddef.h>
#include <string.h>

typedef ptrdiff_t fc_idx;

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86_DISPATCH 1
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* Keeps vector v in a register at this point. A vector loaded once and used by several FMAs is
 * otherwise folded into each of them as a memory operand (GCC): one load per use, and at
 * AVX-512 nearly every unaligned 64-byte load spans two cache lines (the row grad-weight ran
 * 1.3-1.4x slower at AVX-512 than at AVX2 so, one thread, Ice Lake-SP). */
#ifdef FC_X86_DISPATCH
#define FC_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FC_IN_REGISTER(v) ((void)0)
#endif

/* 2: AVX-512, 1: AVX2 + FMA, 0: neither. */
static int fc_simd_level(void) {
#ifdef FC_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* Bytes of the vector the kernels use at `level`: the widest register. */
static int fc_vector_bytes(int level) { return level == 2 ? 64 : level == 1 ? 32 : 16; }

#ifdef FC_X86_DISPATCH
#include <immintrin.h>

/* out[j] lane i = r[i] lane j: an 8x8 float32 block transposed in registers (unpack pairs,
 * shuffle quads, swap 128-bit halves). Defined once per target that inlines it (an AVX2 + FMA
 * function does not inline into an AVX-512F one: GCC's avx512f does not imply fma). */
#define FC_DEFINE_TRANSPOSE8X8(SFX, TARGET)                                                        \
    TARGET static inline void fc_transpose8x8_##SFX(const __m256 r[8], __m256 out[8]) {            \
        __m256 t[8], s[8];                                                                         \
        for (int j = 0; j < 8; j += 2) {                                                           \
            t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);                                             \
            t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);                                         \
        }                                                                                          \
        for (int j = 0; j < 8; j += 4) {                                                           \
            s[j] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(1, 0, 1, 0));                     \
            s[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(3, 2, 3, 2));                 \
            s[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(1, 0, 1, 0));             \
            s[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(3, 2, 3, 2));             \
        }                                                                                          \
        for (int i = 0; i < 4; i++) {                                                              \
            out[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);                                 \
            out[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);                             \
        }                                                                                          \
    }
FC_DEFINE_TRANSPOSE8X8(avx2, FC_TARGET_AVX2)
FC_DEFINE_TRANSPOSE8X8(avx512, FC_TARGET_AVX512)

/* out[j] lane i = r[i] lane j: a 4x4 float64 block transposed in registers. */
FC_TARGET_AVX512 static inline void fc_transpose4x4_pd_avx512(const __m256d r[4], __m256d out[4]) {
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    out[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    out[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    out[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    out[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#endif

/* DEFINE(SUFFIX, T, VECTOR_BYTES, TARGET) once per type and instruction set. */
#ifdef FC_X86_DISPATCH
#define FC_SIMD_INSTANTIATE(DEFINE)                                                                \
    DEFINE(float_avx512, float, 64, FC_TARGET_AVX512)                                              \
    DEFINE(double_avx512, double, 64, FC_TARGET_AVX512)                                            \
    DEFINE(float_avx2, float, 32, FC_TARGET_AVX2)                                                  \
    DEFINE(double_avx2, double, 32, FC_TARGET_AVX2)                                                \
    DEFINE(float_base, float, 16, )                                                                \
    DEFINE(double_base, double, 16, )
#define FC_DISPATCH(KERNEL, T, ...)                                                                \
    do {                                                                                           \
        if (level == 2) KERNEL##_##T##_avx512(__VA_ARGS__);                                        \
        else if (level == 1) KERNEL##_##T##_avx2(__VA_ARGS__);                                     \
        else KERNEL##_##T##_base(__VA_ARGS__);                                                     \
    } while (0)
#else
#define FC_SIMD_INSTANTIATE(DEFINE)                                                                \
    DEFINE(float_base, float, 16, )                                                                \
    DEFINE(double_base, double, 16, )
#define FC_DISPATCH(KERNEL, T, ...) KERNEL##_##T##_base(__VA_ARGS__)
#endif

#endif
