/* Max pooling over 2x2 windows with stride 2 and no padding (LeNet's, and most CNNs'), float32,
 * eight windows per AVX2 instruction: the two input rows are loaded 16 floats at a time, split
 * into their even and odd columns, and the four candidates of each window compared in window
 * order (top-left, top-right, bottom-left, bottom-right) with the scalar kernel's rule: a value
 * replaces the running max when it is greater, or when it is the first NaN. So the max and the
 * index of the winner equal the scalar kernel's, bit for bit (tests force both).
 * The entry points fc_max_2x2_plane_<T>(level, ...) take the module's SIMD level (simd.h).
 */
#ifndef FASTCONV_POOL_2X2_H
#define FASTCONV_POOL_2X2_H

#include "simd.h"

/* The scalar kernel, columns [ow0, OW) of every row: the rule above, one window at a time,
 * unrolled and branch-free (random data mispredicts an `if`). */
#define FC_MAX2X2_STEP(T, v, i)                                                                    \
    do {                                                                                           \
        const T v_ = (v);                                                                          \
        const int take_ = (v_ > best) | ((v_ != v_) & (best == best));                             \
        best = take_ ? v_ : best;                                                                  \
        best_index = take_ ? (i) : best_index;                                                     \
    } while (0)
#define FC_DEFINE_MAX_2X2_SCALAR(T)                                                                \
static void fc_max_2x2_cols_##T(const T *x, T *y, long long *idx, fc_idx W, fc_idx OH,             \
                                fc_idx OW, fc_idx ow0) {                                           \
    for (fc_idx oh = 0; oh < OH; oh++)                                                             \
        for (fc_idx ow = ow0; ow < OW; ow++) {                                                     \
            const fc_idx i = 2 * oh * W + 2 * ow;                                                  \
            T best = x[i];                                                                         \
            fc_idx best_index = i;                                                                 \
            FC_MAX2X2_STEP(T, x[i + 1], i + 1);                                                    \
            FC_MAX2X2_STEP(T, x[i + W], i + W);                                                    \
            FC_MAX2X2_STEP(T, x[i + W + 1], i + W + 1);                                            \
            y[oh * OW + ow] = best;                                                                \
            idx[oh * OW + ow] = best_index;                                                        \
        }                                                                                          \
}
FC_DEFINE_MAX_2X2_SCALAR(float)
FC_DEFINE_MAX_2X2_SCALAR(double)

#ifdef FC_X86_DISPATCH
#include <immintrin.h>

/* best, code := candidate v (with code c) where it wins, per lane. */
#define FC_MAX2X2_TAKE(v, c)                                                                       \
    do {                                                                                           \
        const __m256 take = _mm256_or_ps(                                                          \
            _mm256_cmp_ps(v, best, _CMP_GT_OQ),                                                    \
            _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q))); \
        best = _mm256_blendv_ps(best, v, take);                                                    \
        code = _mm256_castps_si256(                                                                \
            _mm256_blendv_ps(_mm256_castsi256_ps(code), _mm256_castsi256_ps(c), take));           \
    } while (0)

/* Split 16 consecutive floats p[0..15] into the even (p[0], p[2], ...) and odd columns. */
FC_TARGET_AVX2 static inline void fc_even_odd(const float *p, __m256 *even, __m256 *odd) {
    const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    /* within 128-bit lanes: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], then order the 64-bit pairs */
    const __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* One plane: y[oh, ow] = max of x[2oh:2oh+2, 2ow:2ow+2], idx[oh, ow] = the winner's ih * W + iw,
 * for oh < OH, ow < OW (2 * OH <= H and 2 * OW <= W). */
FC_TARGET_AVX2 static void fc_max_2x2_plane_avx2(const float *x, float *y, long long *idx,
                                                 fc_idx W, fc_idx OH, fc_idx OW) {
    const __m256i c_right = _mm256_set1_epi32(1), c_below = _mm256_set1_epi32((int)W),
                  c_diag = _mm256_set1_epi32((int)W + 1);
    for (fc_idx oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        long long *ir = idx + oh * OW;
        for (fc_idx ow = 0; ow + 8 <= OW; ow += 8) {
            __m256 best, right, below, diag;
            fc_even_odd(r0 + 2 * ow, &best, &right);
            fc_even_odd(r1 + 2 * ow, &below, &diag);
            __m256i code = _mm256_setzero_si256();
            FC_MAX2X2_TAKE(right, c_right);
            FC_MAX2X2_TAKE(below, c_below);
            FC_MAX2X2_TAKE(diag, c_diag);
            _mm256_storeu_ps(yr + ow, best);
            /* idx = 2 * oh * W + 2 * (ow + lane) + code, widened to 64 bits four lanes at a time */
            const __m256i start = _mm256_set1_epi64x(2 * oh * W + 2 * ow);
            const __m256i lanes_lo = _mm256_set_epi64x(6, 4, 2, 0), lanes_hi = _mm256_set_epi64x(14, 12, 10, 8);
            const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(code));
            const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(code, 1));
            _mm256_storeu_si256((__m256i *)(ir + ow), _mm256_add_epi64(_mm256_add_epi64(start, lanes_lo), lo));
            _mm256_storeu_si256((__m256i *)(ir + ow + 4), _mm256_add_epi64(_mm256_add_epi64(start, lanes_hi), hi));
        }
    }
}
#endif

/* One plane (2 * OH <= H, 2 * OW <= W): the AVX2 kernel for float32 at level >= 1 (W + 1 must
 * fit an int), eight columns at a time, the scalar one for the rest and for float64. */
static void fc_max_2x2_plane_float(int level, const float *x, float *y, long long *idx, fc_idx W,
                                   fc_idx OH, fc_idx OW) {
    fc_idx done = 0;
#ifdef FC_X86_DISPATCH
    if (level >= 1 && W < 2147483647) {
        fc_max_2x2_plane_avx2(x, y, idx, W, OH, OW);
        done = OW - OW % 8;
    }
#endif
    fc_max_2x2_cols_float(x, y, idx, W, OH, OW, done);
}

static void fc_max_2x2_plane_double(int level, const double *x, double *y, long long *idx,
                                    fc_idx W, fc_idx OH, fc_idx OW) {
    (void)level;
    fc_max_2x2_cols_double(x, y, idx, W, OH, OW, 0);
}

/* Max-pool backward for one plane when every index lies in its own output's 2x2 block (rows
 * 2oh, 2oh+1, columns 2ow, 2ow+1; what a 2x2 stride-2 forward gives): each block is written
 * whole (the gradient at the index, zeros elsewhere) and the cells outside every block are
 * zeroed, which equals zeroing the plane and scattering, in one pass with no read-modify-write.
 * The functions return 0, leaving the plane incomplete, at the first index outside its block:
 * the caller then zeroes and scatters. 2 * OH <= H, 2 * OW <= W.
 * fc_max_2x2_backward_cols_<T>: columns [ow0, OW) of every row, the cells right of the blocks
 * and the rows below them. */
#define FC_DEFINE_MAX_2X2_BACKWARD(T)                                                              \
static int fc_max_2x2_backward_cols_##T(const T *dy, const long long *idx, T *dx, fc_idx H,        \
                                        fc_idx W, fc_idx OH, fc_idx OW, fc_idx ow0) {              \
    for (fc_idx oh = 0; oh < OH; oh++) {                                                           \
        T *r0 = dx + 2 * oh * W, *r1 = r0 + W;                                                     \
        for (fc_idx ow = ow0; ow < OW; ow++) {                                                     \
            const long long off = idx[oh * OW + ow] - (2 * oh * W + 2 * ow);                       \
            const T g = dy[oh * OW + ow];                                                          \
            if (off != 0 && off != 1 && off != W && off != W + 1) return 0;                        \
            r0[2 * ow] = off == 0 ? g : (T)0;                                                      \
            r0[2 * ow + 1] = off == 1 ? g : (T)0;                                                  \
            r1[2 * ow] = off == W ? g : (T)0;                                                      \
            r1[2 * ow + 1] = off == W + 1 ? g : (T)0;                                              \
        }                                                                                          \
        for (fc_idx iw = 2 * OW; iw < W; iw++) r0[iw] = r1[iw] = 0;                                \
    }                                                                                              \
    for (fc_idx i = 2 * OH * W; i < H * W; i++) dx[i] = 0;                                        \
    return 1;                                                                                      \
}
FC_DEFINE_MAX_2X2_BACKWARD(float)
FC_DEFINE_MAX_2X2_BACKWARD(double)

#ifdef FC_X86_DISPATCH
/* Write 16 floats: a0 b0 a1 b1 ... a7 b7. */
FC_TARGET_AVX2 static inline void fc_store_interleaved(float *p, __m256 a, __m256 b) {
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* The blocks of columns [0, OW - OW % 8), eight outputs per step; 0 at an index outside its
 * block (checked on the 64-bit offsets, before they are narrowed). */
FC_TARGET_AVX2 static int fc_max_2x2_backward_avx2(const float *dy, const long long *idx,
                                                   float *dx, fc_idx W, fc_idx OH, fc_idx OW) {
    const __m256i w64 = _mm256_set1_epi64x(W), w164 = _mm256_set1_epi64x(W + 1);
    const __m256i one64 = _mm256_set1_epi64x(1), zero = _mm256_setzero_si256();
    const __m256i w32 = _mm256_set1_epi32((int)W), w132 = _mm256_set1_epi32((int)W + 1);
    const __m256i one32 = _mm256_set1_epi32(1), low_halves = _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0);
    const __m256i lanes_lo = _mm256_set_epi64x(6, 4, 2, 0), lanes_hi = _mm256_set_epi64x(14, 12, 10, 8);
    for (fc_idx oh = 0; oh < OH; oh++) {
        float *r0 = dx + 2 * oh * W, *r1 = r0 + W;
        for (fc_idx ow = 0; ow + 8 <= OW; ow += 8) {
            const __m256i start = _mm256_set1_epi64x(2 * oh * W + 2 * ow);
            const __m256i off_lo = _mm256_sub_epi64(
                _mm256_loadu_si256((const __m256i *)(idx + oh * OW + ow)), _mm256_add_epi64(start, lanes_lo));
            const __m256i off_hi = _mm256_sub_epi64(
                _mm256_loadu_si256((const __m256i *)(idx + oh * OW + ow + 4)), _mm256_add_epi64(start, lanes_hi));
            __m256i ok = _mm256_and_si256(_mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi64(off_lo, zero),
                                                                          _mm256_cmpeq_epi64(off_lo, one64)),
                                                          _mm256_or_si256(_mm256_cmpeq_epi64(off_lo, w64),
                                                                          _mm256_cmpeq_epi64(off_lo, w164))),
                                          _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi64(off_hi, zero),
                                                                          _mm256_cmpeq_epi64(off_hi, one64)),
                                                          _mm256_or_si256(_mm256_cmpeq_epi64(off_hi, w64),
                                                                          _mm256_cmpeq_epi64(off_hi, w164))));
            if (_mm256_movemask_pd(_mm256_castsi256_pd(ok)) != 0xF) return 0;
            /* the low 32 bits of the eight offsets, in order */
            const __m256i lo32 = _mm256_permutevar8x32_epi32(off_lo, low_halves);
            const __m256i hi32 = _mm256_permutevar8x32_epi32(off_hi, low_halves);
            const __m256i off = _mm256_permute2x128_si256(lo32, hi32, 0x20);
            const __m256 g = _mm256_loadu_ps(dy + oh * OW + ow);
            const __m256 a = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(off, zero)));
            const __m256 b = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(off, one32)));
            const __m256 c = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(off, w32)));
            const __m256 d = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(off, w132)));
            fc_store_interleaved(r0 + 2 * ow, a, b);
            fc_store_interleaved(r1 + 2 * ow, c, d);
        }
    }
    return 1;
}
#endif

/* The whole plane: AVX2 for float32 at level >= 1 (W + 1 must fit an int), else scalar. */
static int fc_max_2x2_backward_plane_float(int level, const float *dy, const long long *idx,
                                           float *dx, fc_idx H, fc_idx W, fc_idx OH, fc_idx OW) {
    fc_idx done = 0;
#ifdef FC_X86_DISPATCH
    if (level >= 1 && W < 2147483647) {
        if (!fc_max_2x2_backward_avx2(dy, idx, dx, W, OH, OW)) return 0;
        done = OW - OW % 8;
    }
#endif
    return fc_max_2x2_backward_cols_float(dy, idx, dx, H, W, OH, OW, done);
}

static int fc_max_2x2_backward_plane_double(int level, const double *dy, const long long *idx,
                                            double *dx, fc_idx H, fc_idx W, fc_idx OH, fc_idx OW) {
    (void)level;
    return fc_max_2x2_backward_cols_double(dy, idx, dx, H, W, OH, OW, 0);
}

#endif
