/* Direct convolution for few filters (groups = 1), vectorised over the filters.
 *
 * Why: with F <= 32 a GEMM has F rows only, so the im2col copy and BLAS's packing cost as much as
 * the multiply-adds (LeNet-5's conv2, 6 -> 16 channels on 10x10 outputs, ran at a third of
 * oneDNN's speed). Here SIMD registers hold a block of filters of one output pixel; a few pixels
 * share each weight-vector load; no column matrix is built.
 *
 * Compiled once per instruction set (simd.h); without AVX2 the caller keeps the GEMM path (the
 * baseline kernel still runs when asked for, e.g. by the tests).
 *
 * The caller pads the input, so padded taps are multiplied by zero, never skipped: 0 * inf = NaN
 * as in the GEMM path.
 * Every output element is summed by one call in a fixed order (bias first, then taps in
 * (c, kh, kw) order): results do not depend on the thread count.
 */
#ifndef FASTCONV_DIRECT_CONV_H
#define FASTCONV_DIRECT_CONV_H

#include "simd.h"

/* Pixels (forward) or taps (grad-weight) per register block: that many vector accumulators
 * per vector of filters. AVX2, LeNet-5 conv2 forward on one thread, measured here: 8 -> 55
 * GFLOP/s, 12 -> 36 (spills); two vectors per pixel (16 filters) x 6 pixels -> 53. */
#define FC_PIX 8
/* Vectors of filters per register block, at most. AVX-512's 32 registers hold 2 x 8
 * accumulators, the two weight vectors and a broadcast: each broadcast input value then feeds
 * two multiply-adds, where one vector per pixel loaded a value per multiply-add (the loads, not
 * the multiply-adds, bound the inner loop). Ice Lake-SP, one thread, CPU time, medians of 15
 * interleaved reps on a loaded machine, one vector -> two: 7x7 stride-2 stem (64 filters)
 * forward 31.6 -> 21.2 ms, its grad-weight 35.6 -> 25.3 ms; LeNet-5 conv2 float64 (16 filters)
 * forward 1.06 -> 0.72 ms, grad-weight 0.99 -> 0.64 ms. AVX2's 16 registers hold one vector per
 * pixel. */
#define FC_NV 2

/* fc_tstore_<SFX>(acc, y, YPLANE, FB, relu): y[f * YPLANE + q] = lane f of acc[q] (then ReLU) for
 * f < FB, q < FC_PIX, as vector stores after in-register transposes of the FC_PIX x VL block;
 * returns 0 (nothing stored) where no transpose is written: the caller stores the lanes one by
 * one. AVX2 float32 (8 pixels x 8 filters): the scalar stores and selects were about a fifth of
 * LeNet-5 conv2's forward instructions. */
#define FC_NO_TSTORE(SFX, T, VBYTES)                                                               \
    static inline int fc_tstore_##SFX(const void *acc, T *y, fc_idx YPLANE, fc_idx FB, int relu) { \
        (void)acc, (void)y, (void)YPLANE, (void)FB, (void)relu;                                    \
        return 0;                                                                                  \
    }
#ifdef FC_X86_DISPATCH
FC_TARGET_AVX2 static inline int fc_tstore_float_avx2(const void *acc, float *y, fc_idx YPLANE,
                                                     fc_idx FB, int relu) {
    const __m256 *a = (const __m256 *)acc; /* 8 pixels, each 8 filters */
    __m256 r[8], t[8];
    for (int q = 0; q < 8; q++) {
        r[q] = _mm256_loadu_ps((const float *)&a[q]);
        /* v <= 0 is false for NaN: the fused ReLU keeps NaN, as the GEMM path's does */
        if (relu) r[q] = _mm256_andnot_ps(_mm256_cmp_ps(r[q], _mm256_setzero_ps(), _CMP_LE_OQ), r[q]);
    }
    fc_transpose8x8_avx2(r, t); /* t[f]: filter f of the 8 pixels */
    for (fc_idx f = 0; f < FB; f++) _mm256_storeu_ps(y + f * YPLANE, t[f]);
    return 1;
}
/* AVX-512 float32: the 8 pixels' accumulators (16 filters each), ReLU'd if `relu` (kept where
 * not (v <= 0): NaN too, as in the GEMM path's ReLU), split into filters 0-7 (lo) and 8-15 (hi). */
FC_TARGET_AVX512 static inline void fc_split_halves_float_avx512(const __m512 *a, int relu,
                                                                  __m256 lo[8], __m256 hi[8]) {
    for (int q = 0; q < 8; q++) {
        __m512 r = _mm512_loadu_ps((const float *)&a[q]);
        if (relu) r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_NLE_UQ), r);
        lo[q] = _mm512_castps512_ps256(r);
        hi[q] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r), 1));
    }
}
/* AVX-512 float32: 8 pixels x 16 filters as two 8 x 8 transposes of the vectors' halves. */
FC_TARGET_AVX512 static inline int fc_tstore_float_avx512(const void *acc, float *y,
                                                         fc_idx YPLANE, fc_idx FB, int relu) {
    const __m512 *a = (const __m512 *)acc;
    __m256 lo[8], hi[8], t[8];
    fc_split_halves_float_avx512(a, relu, lo, hi);
    fc_transpose8x8_avx512(lo, t);
    for (fc_idx f = 0; f < FB && f < 8; f++) _mm256_storeu_ps(y + f * YPLANE, t[f]);
    if (FB > 8) {
        fc_transpose8x8_avx512(hi, t);
        for (fc_idx f = 8; f < FB; f++) _mm256_storeu_ps(y + f * YPLANE, t[f - 8]);
    }
    return 1;
}
/* AVX-512 float64: 8 pixels x 8 filters as four 4 x 4 transposes. */
FC_TARGET_AVX512 static inline int fc_tstore_double_avx512(const void *acc, double *y,
                                                          fc_idx YPLANE, fc_idx FB, int relu) {
    const __m512d *a = (const __m512d *)acc;
    __m256d h[2][8], t[4]; /* h[half][q]: filters 4 half .. 4 half + 3 of pixel q */
    for (int q = 0; q < 8; q++) {
        __m512d r = _mm512_loadu_pd((const double *)&a[q]);
        if (relu) r = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_NLE_UQ), r);
        h[0][q] = _mm512_castpd512_pd256(r);
        h[1][q] = _mm512_extractf64x4_pd(r, 1);
    }
    for (int half = 0; half < 2; half++)
        for (int qb = 0; qb < 8; qb += 4) {
            fc_transpose4x4_pd_avx512(&h[half][qb], t);
            for (fc_idx f = 4 * half; f < FB && f < 4 * half + 4; f++)
                _mm256_storeu_pd(y + f * YPLANE + qb, t[f - 4 * half]);
        }
    return 1;
}
FC_NO_TSTORE(double_avx2, double, 32)
#endif
FC_NO_TSTORE(float_base, float, 16)
FC_NO_TSTORE(double_base, double, 16)

/* fc_tstore_n_<SFX>(acc, y, YPLANE, FB, relu, n): as fc_tstore for the first n <= FC_PIX pixels
 * only (masked stores write nothing past them); 0 where not implemented (then lane by lane). */
#define FC_NO_TSTORE_N(SFX, T)                                                                     \
    static inline int fc_tstore_n_##SFX(const void *acc, T *y, fc_idx YPLANE, fc_idx FB, int relu, \
                                        int n) {                                                   \
        (void)acc, (void)y, (void)YPLANE, (void)FB, (void)relu, (void)n;                           \
        return 0;                                                                                  \
    }
#ifdef FC_X86_DISPATCH
FC_TARGET_AVX512 static inline int fc_tstore_n_float_avx512(const void *acc, float *y,
                                                           fc_idx YPLANE, fc_idx FB, int relu,
                                                           int n) {
    const __m512 *a = (const __m512 *)acc;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    __m256 lo[8], hi[8], t[8];
    fc_split_halves_float_avx512(a, relu, lo, hi);
    fc_transpose8x8_avx512(lo, t);
    for (fc_idx f = 0; f < FB && f < 8; f++)
        _mm512_mask_storeu_ps(y + f * YPLANE, m, _mm512_castps256_ps512(t[f]));
    if (FB > 8) {
        fc_transpose8x8_avx512(hi, t);
        for (fc_idx f = 8; f < FB; f++)
            _mm512_mask_storeu_ps(y + f * YPLANE, m, _mm512_castps256_ps512(t[f - 8]));
    }
    return 1;
}
FC_NO_TSTORE_N(float_avx2, float)
FC_NO_TSTORE_N(double_avx512, double)
FC_NO_TSTORE_N(double_avx2, double)
#endif
FC_NO_TSTORE_N(float_base, float)
FC_NO_TSTORE_N(double_base, double)

/* The shared inner product, in both kernels: for q < FC_PIX, k < NV,
 *     acc[k][q] += sum over j < J of x[base[q] + off[j]] * V[j][k]      (V[j][k]: one vector)
 * Forward: q runs over output pixels, j over taps (V[j] = the weights of tap j for NV vectors
 * of filters). Grad-weight: q runs over taps, j over output pixels (V[j] = grad_y at pixel j for
 * the block of filters). x is the zero-padded input window, so every index is in bounds. NV is
 * a constant where this is inlined. */
#define FC_DEFINE_KERNELS(SFX, T, VBYTES, TARGET)                                                  \
typedef T fc_vec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                   \
enum { FC_VL_##SFX = VBYTES / sizeof(T) };                                                         \
TARGET static inline __attribute__((always_inline)) void fc_core_##SFX(                            \
        const T *x, const fc_idx *base, const fc_idx *off, const T *V, fc_idx J, int NV,          \
        fc_vec_##SFX acc[FC_NV][FC_PIX]) {                                                         \
    /* one pointer per q: each broadcast is then one load xq[q][off[j]] (base + index * size), \
     * where x + off[j] + base[q] took an extra address add per FMA (~3.8 -> ~2.8 instructions  \
     * per FMA, callgrind) */                                                                      \
    const T *xq[FC_PIX];                                                                           \
    for (int q = 0; q < FC_PIX; q++) xq[q] = x + base[q];                                          \
    for (fc_idx j = 0; j < J; j++) {                                                               \
        fc_vec_##SFX v[FC_NV];                                                                     \
        for (int k = 0; k < NV; k++) v[k] = *(const fc_vec_##SFX *)(V + (j * NV + k) * FC_VL_##SFX); \
        const fc_idx o = off[j];                                                                   \
        /* (scalar * vector broadcasts; (vector){0} + scalar would add 0 to it first: -0 + 0) */  \
        for (int q = 0; q < FC_PIX; q++)                                                           \
            for (int k = 0; k < NV; k++) acc[k][q] += xq[q][o] * v[k];                             \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* The forward over a run of pixels for NV vectors of filters (a constant where inlined). */       \
TARGET static inline __attribute__((always_inline)) void fc_forward_nv_##SFX(                      \
        int NV, const T *x, fc_idx XW, const fc_idx *tapoff, fc_idx KH, fc_idx KTAPS,             \
        const int *khr, const T *wpack, const T *bias, T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW, \
        fc_idx sh, fc_idx sw, fc_idx npix, int relu) {                                             \
    enum { VL = FC_VL_##SFX };                                                                     \
    fc_vec_##SFX acc[FC_NV][FC_PIX];                                                               \
    T lanes[VL];                                                                                   \
    fc_idx base[FC_PIX];                                                                           \
    fc_idx oh = 0, ow = 0; /* of pixel p; advanced without dividing */                             \
    for (fc_idx p = 0; p < npix; p += FC_PIX) {                                                    \
        const fc_idx np = npix - p < FC_PIX ? npix - p : FC_PIX;                                   \
        const fc_idx oh_first = oh;                                                                \
        for (fc_idx q = 0; q < np; q++) {                                                          \
            base[q] = oh * sh * XW + ow * sw;                                                      \
            if (++ow == OW) { ow = 0; oh++; }                                                      \
        }                                                                                          \
        /* A short last block repeats its last pixel: computed, never stored. */                   \
        for (fc_idx q = np; q < FC_PIX; q++) base[q] = base[np - 1];                               \
        fc_idx lo = 0, hi = KH;                                                                    \
        if (khr) {                                                                                 \
            const fc_idx oh_last = ow == 0 ? oh - 1 : oh;                                          \
            lo = KH, hi = 0;                                                                       \
            for (fc_idx r = oh_first; r <= oh_last; r++) {                                         \
                if (khr[2 * r] < lo) lo = khr[2 * r];                                              \
                if (khr[2 * r + 1] > hi) hi = khr[2 * r + 1];                                      \
            }                                                                                      \
        }                                                                                          \
        for (int k = 0; k < NV; k++)                                                               \
            for (int q = 0; q < FC_PIX; q++) acc[k][q] = *(const fc_vec_##SFX *)(bias + k * VL);  \
        if (lo < hi)                                                                               \
            fc_core_##SFX(x, base, tapoff + lo * KTAPS, wpack + lo * KTAPS * NV * VL,              \
                          (hi - lo) * KTAPS, NV, acc);                                             \
        for (int k = 0; k < NV; k++) {                                                             \
            const fc_idx fb = FB - k * VL < VL ? FB - k * VL : VL; /* this vector's filters */     \
            T *yk = y + k * VL * YPLANE + p;                                                       \
            if (fb <= 0) break;                                                                    \
            if (np == FC_PIX && fc_tstore_##SFX(acc[k], yk, YPLANE, fb, relu)) continue;           \
            for (fc_idx q = 0; q < np; q++) {                                                      \
                memcpy(lanes, &acc[k][q], sizeof lanes);                                           \
                for (fc_idx f = 0; f < fb; f++) {                                                  \
                    const T v = lanes[f];                                                          \
                    /* v <= 0 is false for NaN: the fused ReLU keeps NaN, as the GEMM path's */    \
                    yk[f * YPLANE + q] = relu && v <= 0 ? (T)0 : v;                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* y[f, p] (f < FB, p < npix; planes YPLANE apart) = bias[f] + sum over taps k of                  \
 * x[pixoff(p) + tapoff[k]] * wpack[k, f], then ReLU if asked; pixoff(p) = oh*sh*XW + ow*sw for    \
 * p = oh * OW + ow. Taps are ordered (kh, c, kw), KTAPS = C * KW per kernel row. wpack: (K,        \
 * NV * VL), lanes >= FB zero; bias: NV * VL values; NV: 1 or (AVX-512) 2. khr (or NULL): for      \
 * output row oh, kernel rows outside [khr[2 oh], khr[2 oh + 1]) read only padding and are         \
 * skipped (the caller allows it only when the weights are finite, as 0 * inf must otherwise give \
 * NaN). */                                                                                        \
TARGET static void fc_forward_##SFX(const T *x, fc_idx XW, const fc_idx *tapoff, fc_idx KH,        \
                                   fc_idx KTAPS, const int *khr, const T *wpack, const T *bias,    \
                                   T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW, fc_idx sh,           \
                                   fc_idx sw, fc_idx npix, int relu, int nv) {                     \
    if (VBYTES == 64 && nv == 2)                                                                   \
        fc_forward_nv_##SFX(2, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB, OW, sh, \
                            sw, npix, relu);                                                       \
    else                                                                                           \
        fc_forward_nv_##SFX(1, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB, OW, sh, \
                            sw, npix, relu);                                                       \
}                                                                                                  \
                                                                                                   \
/* The grad-weight for NV vectors of filters (a constant where inlined). */                       \
TARGET static inline __attribute__((always_inline)) void fc_grad_weight_nv_##SFX(                  \
        int NV, const T *x, const fc_idx *tapoff, fc_idx k0, fc_idx k1, const fc_idx *pixoff,     \
        const T *gyt, fc_idx npix, T *dw) {                                                        \
    fc_vec_##SFX acc[FC_NV][FC_PIX];                                                               \
    for (fc_idx k = k0; k < k1; k += FC_PIX) {                                                     \
        const fc_idx nk = k1 - k < FC_PIX ? k1 - k : FC_PIX;                                       \
        fc_idx base[FC_PIX];                                                                       \
        for (fc_idx q = 0; q < FC_PIX; q++) base[q] = tapoff[k + (q < nk ? q : nk - 1)];           \
        for (int v = 0; v < NV; v++)                                                               \
            for (int q = 0; q < FC_PIX; q++) acc[v][q] = (fc_vec_##SFX){0};                        \
        fc_core_##SFX(x, base, pixoff, gyt, npix, NV, acc);                                        \
        for (fc_idx q = 0; q < nk; q++)                                                            \
            for (int v = 0; v < NV; v++) {                                                         \
                fc_vec_##SFX *row = (fc_vec_##SFX *)(dw + ((k + q) * NV + v) * FC_VL_##SFX);        \
                *row += acc[v][q];                                                                 \
            }                                                                                      \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* dw[k, :] += sum over pixels p < npix of x[tapoff[k] + pixoff[p]] * gyt[p, :] for taps           \
 * k in [k0, k1); dw: (K, NV * VL), gyt: (npix, NV * VL) (grad_y transposed, one block of NV      \
 * vectors of filters; NV: 1 or (AVX-512) 2). */                                                   \
TARGET static void fc_grad_weight_##SFX(const T *x, const fc_idx *tapoff, fc_idx k0, fc_idx k1,    \
                                       const fc_idx *pixoff, const T *gyt, fc_idx npix, T *dw,     \
                                       int nv) {                                                   \
    if (VBYTES == 64 && nv == 2)                                                                   \
        fc_grad_weight_nv_##SFX(2, x, tapoff, k0, k1, pixoff, gyt, npix, dw);                      \
    else                                                                                           \
        fc_grad_weight_nv_##SFX(1, x, tapoff, k0, k1, pixoff, gyt, npix, dw);                      \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_KERNELS)

/* The forward for one vector of filters with stride 1 and no dilation along W, KW = 3 or 5: a
 * register block is NP neighbouring pixels of one output row (NP <= FC_PIX, so that the row's
 * blocks are even: LeNet-5 conv2's 10 columns are 2 x 5). Per kernel row (kh, c) the KW weight
 * vectors stay in registers and each of the NP + KW - 1 input values the block reads is
 * broadcast once for all the taps that read it: NP + 2 KW - 1 loads per NP KW multiply-adds,
 * where a tap at a time loaded an input value per multiply-add (the loads bound the loop):
 * LeNet-5 conv2 forward, AVX-512, 0.47 -> 0.37 ms (Ice Lake-SP, one thread). Every output's taps
 * are summed in the same (kh, c, kw) order as fc_forward's: the results are bitwise the same. */
#define FC_DEFINE_ROW_REUSE(SFX, T, VBYTES, TARGET)                                                \
TARGET static inline __attribute__((always_inline)) void fc_rr_block_##SFX(                        \
        int NP, int KW, const T *x, const fc_idx *rowoff, fc_idx nrows, const T *wpack,           \
        const T *bias, fc_vec_##SFX acc[FC_PIX]) {                                                 \
    typedef fc_vec_##SFX V;                                                                        \
    enum { VL = FC_VL_##SFX };                                                                     \
    for (int q = 0; q < FC_PIX; q++) acc[q] = *(const V *)bias;                                    \
    for (fc_idx r = 0; r < nrows; r++) {                                                           \
        const T *xr = x + rowoff[r];                                                               \
        const T *wr = wpack + r * KW * VL;                                                         \
        V w[5];                                                                                    \
        for (int kw = 0; kw < KW; kw++) w[kw] = *(const V *)(wr + kw * VL);                        \
        for (int i = 0; i < NP + KW - 1; i++) {                                                    \
            const T b = xr[i];                                                                     \
            for (int kw = KW - 1; kw >= 0; kw--) { /* output i - kw: kw ascending per output */   \
                const int q = i - kw;                                                              \
                if (q >= 0 && q < NP) acc[q] += b * w[kw];                                         \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* The same for two output rows at once, the second's input rows x2 further on (the same kernel   \
 * rows): each weight vector serves both, and 2 NP accumulators hide the FMA latency that NP = 5  \
 * (LeNet-5 conv2's rows of 10) left exposed: 5 chains of 4-cycle FMAs fill 5 of the 8 slots of   \
 * two FMA pipes. Each output's sum is in the same order as fc_rr_block's. */                     \
TARGET static inline __attribute__((always_inline)) void fc_rr_block2_##SFX(                       \
        int NP, int KW, const T *x, fc_idx x2, const fc_idx *rowoff, fc_idx nrows,               \
        const T *wpack, const T *bias, fc_vec_##SFX acc[FC_PIX], fc_vec_##SFX acc2[FC_PIX]) {     \
    typedef fc_vec_##SFX V;                                                                        \
    enum { VL = FC_VL_##SFX };                                                                     \
    for (int q = 0; q < FC_PIX; q++) acc[q] = acc2[q] = *(const V *)bias;                          \
    for (fc_idx r = 0; r < nrows; r++) {                                                           \
        const T *xr = x + rowoff[r], *xr2 = xr + x2;                                               \
        const T *wr = wpack + r * KW * VL;                                                         \
        V w[5];                                                                                    \
        for (int kw = 0; kw < KW; kw++) w[kw] = *(const V *)(wr + kw * VL);                        \
        /* unrolled in full (GCC's own limit left the accumulators in memory: 3x slower) */       \
        _Pragma("GCC unroll 16")                                                                   \
        for (int i = 0; i < NP + KW - 1; i++) {                                                    \
            const T b = xr[i], b2 = xr2[i];                                                        \
            _Pragma("GCC unroll 8")                                                                \
            for (int kw = KW - 1; kw >= 0; kw--) {                                                 \
                const int q = i - kw;                                                              \
                if (q >= 0 && q < NP) {                                                            \
                    acc[q] += b * w[kw];                                                           \
                    acc2[q] += b2 * w[kw];                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* Stores NP pixels of acc at y + p (y[f * YPLANE + p + q], then ReLU): masked vector stores     \
 * where the level has them, else lane by lane. */                                                 \
TARGET static inline void fc_rr_store_##SFX(const fc_vec_##SFX *acc, T *y, fc_idx YPLANE,          \
                                           fc_idx FB, int relu, fc_idx NP) {                       \
    enum { VL = FC_VL_##SFX };                                                                     \
    T lanes[VL];                                                                                   \
    if (fc_tstore_n_##SFX(acc, y, YPLANE, FB, relu, (int)NP)) return;                              \
    for (fc_idx q = 0; q < NP; q++) {                                                              \
        memcpy(lanes, &acc[q], sizeof lanes);                                                      \
        for (fc_idx f = 0; f < FB; f++) {                                                          \
            const T v = lanes[f];                                                                  \
            y[f * YPLANE + q] = relu && v <= 0 ? (T)0 : v;                                         \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* y[f, oh OW + ow] (f < FB, oh < npix / OW) as fc_forward gives it, for sw = dw = 1 and KW =    \
 * 3 or 5 (rowoff[r]: the input offset of kernel row r = kh C + c, its taps kw apart). */          \
TARGET static void fc_forward_rr_##SFX(const T *x, fc_idx XW, const fc_idx *tapoff, fc_idx KH,     \
                                      fc_idx KTAPS, fc_idx KW, const int *khr, const T *wpack,     \
                                      const T *bias, T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW,    \
                                      fc_idx sh, fc_idx npix, int relu) {                          \
    enum { VL = FC_VL_##SFX };                                                                     \
    const fc_idx C = KTAPS / KW, nrows = npix / OW;                                                \
    const fc_idx nb = (OW + FC_PIX - 1) / FC_PIX, NP = (OW + nb - 1) / nb; /* even blocks */     \
    fc_idx rowoff[KH * C];                                                                         \
    fc_vec_##SFX acc[FC_PIX], acc2[FC_PIX];                                                        \
    T lanes[VL];                                                                                   \
    for (fc_idx r = 0; r < KH * C; r++) rowoff[r] = tapoff[r * KW];                                \
    for (fc_idx oh = 0; oh < nrows; oh++) {                                                        \
        const fc_idx lo = khr ? khr[2 * oh] : 0, hi = khr ? khr[2 * oh + 1] : KH;                  \
        /* Two rows at once with AVX-512 float32 (32 registers: 16 accumulators, 5 weights),      \
         * where they read the same kernel rows: LeNet-5 conv2 (6 x 14 x 14 -> 16, 5 x 5)         \
         * forward, batch 64 0.32 -> 0.23 ms, 256 1.30 -> 0.93 ms (Ice Lake-SP, one thread, CPU   \
         * time, minima of 300 / 80 calls in 3 interleaved runs, a shared machine). */            \
        const int two = VBYTES == 64 && sizeof(T) == 4 && oh + 1 < nrows                           \
                        && (!khr || (khr[2 * oh + 2] == lo && khr[2 * oh + 3] == hi));            \
        for (fc_idx b = 0; b < nb; b++) {                                                          \
            fc_idx ow0 = b * NP;                                                                   \
            if (ow0 + NP > OW) ow0 = OW - NP; /* the last block ends at the row's end */          \
            const T *xb = x + oh * sh * XW + ow0;                                                  \
            const fc_idx nr = hi > lo ? (hi - lo) * C : 0;                                         \
            const T *wb = wpack + lo * KTAPS * VL;                                                 \
            const fc_idx *ro = rowoff + lo * C;                                                    \
            if (two) {                                                                             \
                const fc_idx x2 = sh * XW;                                                         \
                switch (NP * 8 + KW) {                                                             \
                    case 4 * 8 + 3: fc_rr_block2_##SFX(4, 3, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 5 * 8 + 3: fc_rr_block2_##SFX(5, 3, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 6 * 8 + 3: fc_rr_block2_##SFX(6, 3, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 7 * 8 + 3: fc_rr_block2_##SFX(7, 3, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 8 * 8 + 3: fc_rr_block2_##SFX(8, 3, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 4 * 8 + 5: fc_rr_block2_##SFX(4, 5, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 5 * 8 + 5: fc_rr_block2_##SFX(5, 5, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 6 * 8 + 5: fc_rr_block2_##SFX(6, 5, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    case 7 * 8 + 5: fc_rr_block2_##SFX(7, 5, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                    default: fc_rr_block2_##SFX(8, 5, xb, x2, ro, nr, wb, bias, acc, acc2); break; \
                }                                                                                  \
                const fc_idx p = oh * OW + ow0;                                                    \
                fc_rr_store_##SFX(acc, y + p, YPLANE, FB, relu, NP);                               \
                fc_rr_store_##SFX(acc2, y + p + OW, YPLANE, FB, relu, NP);                         \
                continue;                                                                          \
            }                                                                                      \
            switch (NP * 8 + KW) { /* NP, KW constants: the block in registers */              \
                case 4 * 8 + 3: fc_rr_block_##SFX(4, 3, xb, ro, nr, wb, bias, acc); break;         \
                case 5 * 8 + 3: fc_rr_block_##SFX(5, 3, xb, ro, nr, wb, bias, acc); break;         \
                case 6 * 8 + 3: fc_rr_block_##SFX(6, 3, xb, ro, nr, wb, bias, acc); break;         \
                case 7 * 8 + 3: fc_rr_block_##SFX(7, 3, xb, ro, nr, wb, bias, acc); break;         \
                case 8 * 8 + 3: fc_rr_block_##SFX(8, 3, xb, ro, nr, wb, bias, acc); break;         \
                case 4 * 8 + 5: fc_rr_block_##SFX(4, 5, xb, ro, nr, wb, bias, acc); break;         \
                case 5 * 8 + 5: fc_rr_block_##SFX(5, 5, xb, ro, nr, wb, bias, acc); break;         \
                case 6 * 8 + 5: fc_rr_block_##SFX(6, 5, xb, ro, nr, wb, bias, acc); break;         \
                case 7 * 8 + 5: fc_rr_block_##SFX(7, 5, xb, ro, nr, wb, bias, acc); break;         \
                default: fc_rr_block_##SFX(8, 5, xb, ro, nr, wb, bias, acc); break;                \
            }                                                                                      \
            /* Lanes past NP hold the bias: a whole 8-pixel transposed store lands them on        \
             * pixels this call writes later (the next block, the next row), so it is used        \
             * unless they would reach past this call's last pixel. */                            \
            const fc_idx p = oh * OW + ow0;                                                        \
            if (p + FC_PIX <= npix && fc_tstore_##SFX(acc, y + p, YPLANE, FB, relu)) continue;     \
            for (fc_idx q = 0; q < NP; q++) {                                                      \
                memcpy(lanes, &acc[q], sizeof lanes);                                              \
                for (fc_idx f = 0; f < FB; f++) {                                                  \
                    const T v = lanes[f];                                                          \
                    y[f * YPLANE + p + q] = relu && v <= 0 ? (T)0 : v;                             \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        oh += two; /* the row done with this one */                                               \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_ROW_REUSE)

/* The grad-weight's counterpart of fc_forward_rr, for one vector of filters, stride and dilation
 * 1 along W, KW = 3 or 5 and output rows of 4 to 16 columns: the KW taps of each of two kernel
 * rows (2 KW sums, in registers for all the output rows: OW and KW are constants) take an output
 * row in blocks of NP <= 8 columns, whose NP grad_y vectors are loaded once while each of the
 * NP + KW - 1 input values of a kernel row is broadcast once for the taps that read it:
 * NP + 2 (NP + KW - 1) loads per 2 NP KW multiply-adds, where fc_grad_weight loads an input value
 * per multiply-add (the loads bound its loop, as the forward's). LeNet-5 conv2's grad-weight
 * (16 filters, 6 x 5 x 5 taps, 10 x 10 pixels), batch 64, AVX-512, one thread: 455 -> 284 us
 * (Ice Lake-SP, minima of 300 calls, three interleaved rounds); with the sums left in memory
 * between blocks of columns (GCC's choice when the block's width is not a constant), no faster
 * than fc_grad_weight. Each tap's sum runs over the call's pixels in order from zero, as
 * fc_grad_weight's: the same bits. */
#define FC_DEFINE_GRAD_WEIGHT_RR(SFX, T, VBYTES, TARGET)                                           \
TARGET static inline __attribute__((always_inline)) void fc_gw_rr_rows_##SFX(                      \
        int OW, int KW, const T *x, const T *x2, fc_idx XWS, fc_idx rows, const T *gyt, T *dw,     \
        T *dw2) {                                                                                  \
    typedef fc_vec_##SFX V;                                                                        \
    enum { VL = FC_VL_##SFX };                                                                     \
    const int nb = (OW + FC_PIX - 1) / FC_PIX, NP = (OW + nb - 1) / nb; /* even blocks */          \
    V acc[5], acc2[5];                                                                             \
    for (int kw = 0; kw < KW; kw++) acc[kw] = acc2[kw] = (V){0};                                   \
    for (fc_idx oh = 0; oh < rows; oh++) {                                                         \
        const T *xr = x + oh * XWS, *xr2 = x2 + oh * XWS, *g = gyt + oh * OW * VL;                 \
        _Pragma("GCC unroll 4")                                                                    \
        for (int b = 0; b < nb; b++) {                                                             \
            const int ow0 = b * NP, np = b + 1 < nb ? NP : OW - (nb - 1) * NP;                     \
            V gv[FC_PIX];                                                                          \
            _Pragma("GCC unroll 8")                                                                \
            for (int q = 0; q < np; q++) gv[q] = *(const V *)(g + (ow0 + q) * VL);                 \
            _Pragma("GCC unroll 16")                                                               \
            for (int i = 0; i < np + KW - 1; i++) {                                                \
                const T b1 = xr[ow0 + i], b2 = xr2[ow0 + i];                                       \
                _Pragma("GCC unroll 8")                                                            \
                for (int kw = KW - 1; kw >= 0; kw--) { /* pixel i - kw: pixels ascending per tap */ \
                    const int q = i - kw;                                                          \
                    if (q >= 0 && q < np) {                                                        \
                        acc[kw] += b1 * gv[q];                                                     \
                        acc2[kw] += b2 * gv[q];                                                    \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    for (int kw = 0; kw < KW; kw++) {                                                              \
        *(V *)(dw + kw * VL) += acc[kw];                                                           \
        if (dw2) *(V *)(dw2 + kw * VL) += acc2[kw];                                                \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* dw[k, :] += sum over the pixels of `rows` whole output rows (of OW columns, XWS apart in x) of  \
 * x[tapoff[k] + pixel offset] * gyt[pixel, :], for taps k in [k0, k1), k0 and k1 multiples of     \
 * KW (whole kernel rows, their taps kw apart); dw: (K, VL), gyt: (rows OW, VL). OW and KW as      \
 * fc_direct_grad_weight_row_reuse allows. */                                                      \
TARGET static void fc_grad_weight_rr_##SFX(const T *x, const fc_idx *tapoff, fc_idx k0, fc_idx k1, \
                                          fc_idx KW, fc_idx XWS, fc_idx OW, fc_idx rows,           \
                                          const T *gyt, T *dw) {                                   \
    for (fc_idx k = k0; k < k1; k += 2 * KW) {                                                     \
        /* an odd last kernel row is paired with itself, its second sums dropped */                \
        const fc_idx k2 = k + KW < k1 ? k + KW : k;                                                \
        const T *xa = x + tapoff[k], *xb = x + tapoff[k2];                                         \
        T *da = dw + k * FC_VL_##SFX, *db = k2 != k ? dw + k2 * FC_VL_##SFX : NULL;                \
        switch (OW * 8 + KW) { /* OW, KW constants: the sums stay in registers */                  \
            FC_GW_RR_CASES(SFX, 3)                                                                 \
            FC_GW_RR_CASES(SFX, 5)                                                                 \
        }                                                                                          \
    }                                                                                              \
}
#define FC_GW_RR_CASE(SFX, OW, KW)                                                                 \
    case OW * 8 + KW: fc_gw_rr_rows_##SFX(OW, KW, xa, xb, XWS, rows, gyt, da, db); break;
#define FC_GW_RR_CASES(SFX, KW)                                                                    \
    FC_GW_RR_CASE(SFX, 4, KW) FC_GW_RR_CASE(SFX, 5, KW) FC_GW_RR_CASE(SFX, 6, KW)                  \
    FC_GW_RR_CASE(SFX, 7, KW) FC_GW_RR_CASE(SFX, 8, KW) FC_GW_RR_CASE(SFX, 9, KW)                  \
    FC_GW_RR_CASE(SFX, 10, KW) FC_GW_RR_CASE(SFX, 11, KW) FC_GW_RR_CASE(SFX, 12, KW)               \
    FC_GW_RR_CASE(SFX, 13, KW) FC_GW_RR_CASE(SFX, 14, KW) FC_GW_RR_CASE(SFX, 15, KW)               \
    FC_GW_RR_CASE(SFX, 16, KW)

FC_SIMD_INSTANTIATE(FC_DEFINE_GRAD_WEIGHT_RR)

/* The grad-weight's grad_y, one vector of filters at a time, as (pixel, filter) rows: dst[j BL +
 * r] = src[r ld + j] for r < nf (filters), 0 for nf <= r < VL (the vector's other lanes), j <
 * npix; src: the filters' rows of grad_y, ld apart. float32 with AVX2 or AVX-512, 8 x 8 blocks
 * transposed in registers: the scalar strided stores were ~30% of LeNet-5 conv2's grad-weight
 * (16 filters, 10 x 10 pixels) once its inner loop broadcast each input value once. */
#define FC_GRAD_Y_LANES_SCALAR(T)                                                                  \
    static void fc_grad_y_lanes_scalar_##T(const T *src, fc_idx ld, fc_idx nf, fc_idx VL,          \
                                           fc_idx j0, fc_idx npix, T *dst, fc_idx BL) {            \
        for (fc_idx r = 0; r < VL; r++)                                                            \
            for (fc_idx j = j0; j < npix; j++) dst[j * BL + r] = r < nf ? src[r * ld + j] : (T)0;  \
    }
FC_GRAD_Y_LANES_SCALAR(float)
FC_GRAD_Y_LANES_SCALAR(double)
#ifdef FC_X86_DISPATCH
#define FC_DEFINE_GRAD_Y_LANES(SFX, TARGET, VL)                                                    \
    TARGET static void fc_grad_y_lanes_##SFX(const float *src, fc_idx ld, fc_idx nf, fc_idx npix,  \
                                             float *dst, fc_idx BL) {                              \
        const fc_idx full = npix - npix % 8;                                                       \
        __m256 r[8], t[8];                                                                         \
        for (fc_idx g0 = 0; g0 < VL; g0 += 8) /* filters g0 .. g0 + 7 */                          \
            for (fc_idx j0 = 0; j0 < full; j0 += 8) {                                              \
                for (fc_idx q = 0; q < 8; q++)                                                     \
                    r[q] = g0 + q < nf ? _mm256_loadu_ps(src + (g0 + q) * ld + j0)                 \
                                       : _mm256_setzero_ps();                                      \
                fc_transpose8x8_##SFX(r, t); /* t[q]: pixel j0 + q's 8 filters */                  \
                for (fc_idx q = 0; q < 8; q++) _mm256_storeu_ps(dst + (j0 + q) * BL + g0, t[q]);   \
            }                                                                                      \
        fc_grad_y_lanes_scalar_float(src, ld, nf, VL, full, npix, dst, BL);                        \
    }
FC_DEFINE_GRAD_Y_LANES(avx2, FC_TARGET_AVX2, 8)
FC_DEFINE_GRAD_Y_LANES(avx512, FC_TARGET_AVX512, 16)
#endif
static void fc_grad_y_lanes_float(int level, const float *src, fc_idx ld, fc_idx nf, fc_idx npix,
                                  float *dst, fc_idx BL) {
#ifdef FC_X86_DISPATCH
    if (level == 2)
        fc_grad_y_lanes_avx512(src, ld, nf, npix, dst, BL);
    else if (level == 1)
        fc_grad_y_lanes_avx2(src, ld, nf, npix, dst, BL);
    else
#endif
        fc_grad_y_lanes_scalar_float(src, ld, nf, fc_vector_bytes(level) / 4, 0, npix, dst, BL);
}
static void fc_grad_y_lanes_double(int level, const double *src, fc_idx ld, fc_idx nf,
                                   fc_idx npix, double *dst, fc_idx BL) {
    fc_grad_y_lanes_scalar_double(src, ld, nf, fc_vector_bytes(level) / 8, 0, npix, dst, BL);
}

/* Whether fc_direct_forward_rr runs this shape: KW 3 or 5, rows of 4 columns at least. */
static int fc_direct_row_reuse(fc_idx KW, fc_idx OW) { return (KW == 3 || KW == 5) && OW >= 4; }
/* Whether fc_direct_grad_weight_rr runs this shape: KW 3 or 5, rows of 4 to 16 columns. */
static int fc_direct_grad_weight_row_reuse(fc_idx KW, fc_idx OW) {
    return (KW == 3 || KW == 5) && OW >= 4 && OW <= 16;
}

/* Filters per vector at `level` for elements of `itemsize` bytes. */
static int fc_direct_block(int level, int itemsize) { return fc_vector_bytes(level) / itemsize; }

/* Vectors of filters per register block for F filters (forward and grad-weight): two on AVX-512
 * where F fills more than one. */
static int fc_direct_vectors(int level, int itemsize, fc_idx F) {
    return level == 2 && F > fc_direct_block(level, itemsize) ? FC_NV : 1;
}

/* The entry points Cython calls; `level` comes from fc_simd_level(). */
#define FC_DEFINE_ENTRIES(T)                                                                       \
static void fc_direct_forward_##T(int level, const T *x, fc_idx XW, const fc_idx *tapoff,          \
                                  fc_idx KH, fc_idx KTAPS, const int *khr, const T *wpack,         \
                                  const T *bias, T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW,        \
                                  fc_idx sh, fc_idx sw, fc_idx npix, int relu, int nv) {           \
    FC_DISPATCH(fc_forward, T, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB, OW, sh,  \
                sw, npix, relu, nv);                                                               \
}                                                                                                  \
static void fc_direct_grad_weight_##T(int level, const T *x, const fc_idx *tapoff, fc_idx k0,      \
                                      fc_idx k1, const fc_idx *pixoff, const T *gyt, fc_idx npix,  \
                                      T *dw, int nv) {                                             \
    FC_DISPATCH(fc_grad_weight, T, x, tapoff, k0, k1, pixoff, gyt, npix, dw, nv);                  \
}
FC_DEFINE_ENTRIES(float)
FC_DEFINE_ENTRIES(double)

#define FC_DEFINE_RR_ENTRY(T)                                                                      \
static void fc_direct_forward_rr_##T(int level, const T *x, fc_idx XW, const fc_idx *tapoff,       \
                                     fc_idx KH, fc_idx KTAPS, fc_idx KW, const int *khr,           \
                                     const T *wpack, const T *bias, T *y, fc_idx YPLANE,           \
                                     fc_idx FB, fc_idx OW, fc_idx sh, fc_idx npix, int relu) {     \
    FC_DISPATCH(fc_forward_rr, T, x, XW, tapoff, KH, KTAPS, KW, khr, wpack, bias, y, YPLANE, FB,   \
                OW, sh, npix, relu);                                                               \
}
FC_DEFINE_RR_ENTRY(float)
FC_DEFINE_RR_ENTRY(double)

#define FC_DEFINE_GW_RR_ENTRY(T)                                                                   \
static void fc_direct_grad_weight_rr_##T(int level, const T *x, const fc_idx *tapoff, fc_idx k0,   \
                                         fc_idx k1, fc_idx KW, fc_idx XWS, fc_idx OW,              \
                                         fc_idx rows, const T *gyt, T *dw) {                       \
    FC_DISPATCH(fc_grad_weight_rr, T, x, tapoff, k0, k1, KW, XWS, OW, rows, gyt, dw);             \
}
FC_DEFINE_GW_RR_ENTRY(float)
FC_DEFINE_GW_RR_ENTRY(double)

#endif
