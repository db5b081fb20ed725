/* Max pooling over 2x2 windows with stride 2 and no padding (LeNet's, and most CNNs'), float32,
 * eight (then four) windows per AVX2 step: the two input rows are loaded 16 (8) floats at a time,
 * split into their even and odd columns, and the four candidates of each window compared in
 * window order (top-left, top-right, bottom-left, bottom-right) with the scalar kernel's rule
 * (pool.pyx): a value replaces the running max when it is greater, or when it is the first NaN.
 * So the max and the winner's index equal the scalar kernel's, bit for bit (tests force both).
 * The columns the AVX2 steps leave (OW % 4 per row) go to pool.pyx's branch-free scalar loop: an
 * earlier version gave them to a branching C loop, which mispredicted on random data and made
 * the whole kernel slower than the scalar one at LeNet's 14-wide rows. AVX-512 takes 16 windows
 * a step and a row's last ones by masks, so no column is left (LeNet-5's two poolings, batch
 * 64, two threads, Ice Lake-SP, max_pool2d with out=: 102 -> 38 us and 55 -> 31 us).
 */
#ifndef FASTCONV_POOL_2X2_H
#define FASTCONV_POOL_2X2_H

#include "simd.h"

#ifdef FC_X86_DISPATCH
#include <immintrin.h>

/* best, code := candidate v (with code c) where it wins, per lane; PS: _mm256 or _mm. The rule
 * in two compares: v wins where best is not NaN and v <= best is false (v greater, or NaN). */
#define FC_MAX2X2_TAKE(PS, SI, v, c)                                                               \
    do {                                                                                           \
        const __typeof__(best) take = PS##_and_ps(PS##_cmp_ps(v, best, _CMP_NLE_UQ),               \
                                                  PS##_cmp_ps(best, best, _CMP_ORD_Q));            \
        best = PS##_blendv_ps(best, v, take);                                                      \
        code = PS##_castps_##SI(PS##_blendv_ps(PS##_cast##SI##_ps(code),                         \
                                               PS##_cast##SI##_ps(c), take));                    \
    } while (0)

/* Columns [0, returned) of every row of one plane (2 * OH <= H, 2 * OW <= W, W + 1 fits an int):
 * y[oh, ow] = max of x[2oh:2oh+2, 2ow:2ow+2], idx[oh, ow] = the winner's ih * W + iw. */
FC_TARGET_AVX2 static fc_idx fc_max_2x2_avx2(const float *x, float *y, long long *idx, fc_idx W,
                                             fc_idx OH, fc_idx OW) {
    const fc_idx done8 = OW - OW % 8, done = OW - OW % 4;
    for (fc_idx oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        long long *ir = idx + oh * OW;
        fc_idx ow = 0;
        for (; ow < done8; ow += 8) {
            /* [p0 p2 p8 p10 | p4 p6 p12 p14] within 128-bit lanes, then the 64-bit pairs ordered */
            const __m256 a = _mm256_loadu_ps(r0 + 2 * ow), b = _mm256_loadu_ps(r0 + 2 * ow + 8);
            const __m256 c = _mm256_loadu_ps(r1 + 2 * ow), d = _mm256_loadu_ps(r1 + 2 * ow + 8);
#define FC_EVEN_ODD(lo, hi, sel)                                                                   \
    _mm256_castpd_ps(_mm256_permute4x64_pd(                                                       \
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, sel)), _MM_SHUFFLE(3, 1, 2, 0)))
            __m256 best = FC_EVEN_ODD(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 right = FC_EVEN_ODD(a, b, _MM_SHUFFLE(3, 1, 3, 1));
            const __m256 below = FC_EVEN_ODD(c, d, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 diag = FC_EVEN_ODD(c, d, _MM_SHUFFLE(3, 1, 3, 1));
#undef FC_EVEN_ODD
            __m256i code = _mm256_setzero_si256();
            FC_MAX2X2_TAKE(_mm256, si256, right, _mm256_set1_epi32(1));
            FC_MAX2X2_TAKE(_mm256, si256, below, _mm256_set1_epi32((int)W));
            FC_MAX2X2_TAKE(_mm256, si256, diag, _mm256_set1_epi32((int)W + 1));
            _mm256_storeu_ps(yr + ow, best);
            /* idx = 2 oh W + 2 (ow + lane) + code, widened to 64 bits four lanes at a time */
            const __m256i start = _mm256_set1_epi64x(2 * oh * W + 2 * ow);
            const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(code));
            const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(code, 1));
            _mm256_storeu_si256((__m256i *)(ir + ow),
                                _mm256_add_epi64(_mm256_add_epi64(start, _mm256_set_epi64x(6, 4, 2, 0)), lo));
            _mm256_storeu_si256((__m256i *)(ir + ow + 4),
                                _mm256_add_epi64(_mm256_add_epi64(start, _mm256_set_epi64x(14, 12, 10, 8)), hi));
        }
        for (; ow < done; ow += 4) { /* four windows: 128-bit shuffles need no lane fix-up */
            const __m128 a = _mm_loadu_ps(r0 + 2 * ow), b = _mm_loadu_ps(r0 + 2 * ow + 4);
            const __m128 c = _mm_loadu_ps(r1 + 2 * ow), d = _mm_loadu_ps(r1 + 2 * ow + 4);
            __m128 best = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 right = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
            const __m128 below = _mm_shuffle_ps(c, d, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 diag = _mm_shuffle_ps(c, d, _MM_SHUFFLE(3, 1, 3, 1));
            __m128i code = _mm_setzero_si128();
            FC_MAX2X2_TAKE(_mm, si128, right, _mm_set1_epi32(1));
            FC_MAX2X2_TAKE(_mm, si128, below, _mm_set1_epi32((int)W));
            FC_MAX2X2_TAKE(_mm, si128, diag, _mm_set1_epi32((int)W + 1));
            _mm_storeu_ps(yr + ow, best);
            const __m256i start = _mm256_set1_epi64x(2 * oh * W + 2 * ow);
            _mm256_storeu_si256((__m256i *)(ir + ow),
                                _mm256_add_epi64(_mm256_add_epi64(start, _mm256_set_epi64x(6, 4, 2, 0)),
                                                 _mm256_cvtepi32_epi64(code)));
        }
    }
    return done;
}

/* Every column of every row of one plane (as fc_max_2x2_avx2), 16 windows a step: each row of
 * windows in steps of 16 (masked loads and stores for the last, partial one; masked lanes
 * never fault), the even and odd columns split by two-source permutes, the same rule. */
FC_TARGET_AVX512 static fc_idx fc_max_2x2_avx512(const float *x, float *y, long long *idx,
                                                 fc_idx W, fc_idx OH, fc_idx OW) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i twice_lane = even; /* 2 * lane */
    const __m512i right = _mm512_set1_epi32(1), below = _mm512_set1_epi32((int)W);
    const __m512i diag = _mm512_set1_epi32((int)W + 1);
    for (fc_idx oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        long long *ir = idx + oh * OW;
        for (fc_idx ow = 0; ow < OW; ow += 16) {
            const fc_idx n = OW - ow < 16 ? OW - ow : 16; /* windows in this step */
            const __mmask16 out = (__mmask16)((1u << n) - 1);
            const __mmask16 lo = (__mmask16)(n >= 8 ? 0xFFFF : (1u << 2 * n) - 1);
            const __mmask16 hi = (__mmask16)(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
            const __m512 a = _mm512_maskz_loadu_ps(lo, r0 + 2 * ow);
            const __m512 b = _mm512_maskz_loadu_ps(hi, r0 + 2 * ow + 16);
            const __m512 c = _mm512_maskz_loadu_ps(lo, r1 + 2 * ow);
            const __m512 d = _mm512_maskz_loadu_ps(hi, r1 + 2 * ow + 16);
            __m512 best = _mm512_permutex2var_ps(a, even, b);
            __m512i code = _mm512_setzero_si512();
#define FC_MAX2X2_TAKE512(v, c)                                                                    \
    do {                                                                                           \
        const __mmask16 take = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(best, best, _CMP_ORD_Q), \
                                                       v, best, _CMP_NLE_UQ);                      \
        best = _mm512_mask_blend_ps(take, best, v);                                                \
        code = _mm512_mask_blend_epi32(take, code, c);                                             \
    } while (0)
            FC_MAX2X2_TAKE512(_mm512_permutex2var_ps(a, odd, b), right);
            FC_MAX2X2_TAKE512(_mm512_permutex2var_ps(c, even, d), below);
            FC_MAX2X2_TAKE512(_mm512_permutex2var_ps(c, odd, d), diag);
#undef FC_MAX2X2_TAKE512
            _mm512_mask_storeu_ps(yr + ow, out, best);
            /* idx = 2 oh W + 2 (ow + lane) + code, widened to 64 bits eight lanes at a time */
            const __m512i at = _mm512_add_epi32(twice_lane, code);
            const __m512i start = _mm512_set1_epi64(2 * oh * W + 2 * ow);
            _mm512_mask_storeu_epi64(ir + ow, (__mmask8)out,
                                     _mm512_add_epi64(start, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at))));
            _mm512_mask_storeu_epi64(ir + ow + 8, (__mmask8)(out >> 8),
                                     _mm512_add_epi64(start, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(at, 1))));
        }
    }
    return OW;
}
#endif

/* Columns done by the SIMD steps at `level` (the caller's scalar loop does the rest): float32
 * at level >= 1 (all of them at level 2); 0 otherwise. */
static fc_idx fc_max_2x2_float(int level, const float *x, float *y, long long *idx, fc_idx W,
                               fc_idx OH, fc_idx OW) {
#ifdef FC_X86_DISPATCH
    if (level >= 2 && W < 2147483647) return fc_max_2x2_avx512(x, y, idx, W, OH, OW);
    if (level >= 1 && W < 2147483647) return fc_max_2x2_avx2(x, y, idx, W, OH, OW);
#endif
    (void)level, (void)x, (void)y, (void)idx, (void)W, (void)OH, (void)OW;
    return 0;
}

#endif
