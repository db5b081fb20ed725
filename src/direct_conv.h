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

/* Pixels (forward) or taps (grad-weight) per register block: that many vector accumulators.
 * AVX2, LeNet-5 conv2 forward on one thread, measured here: 8 -> 55 GFLOP/s, 12 -> 36 (spills);
 * two vectors per pixel (16 filters) x 6 pixels -> 53. AVX-512 takes the same shape (not measured:
 * no AVX-512 CPU was at hand when this was tuned). */
#define FC_PIX 8

/* fc_tstore_<SFX>(acc, y, YPLANE, FB, relu): y[f * YPLANE + q] = lane f of acc[q] (then ReLU) for
 * f < FB, q < FC_PIX, as FB vector stores after an in-register transpose of the FC_PIX x VL
 * block; returns 0 (nothing stored) where no transpose is written: the caller stores the lanes
 * one by one. AVX2 float32 (8 pixels x 8 filters): the scalar stores and selects were about a
 * fifth of LeNet-5 conv2's forward instructions. */
#define FC_NO_TSTORE(SFX, T, VBYTES)                                                               \
    static inline int fc_tstore_##SFX(const void *acc, T *y, fc_idx YPLANE, fc_idx FB, int relu) { \
        (void)acc, (void)y, (void)YPLANE, (void)FB, (void)relu;                                    \
        return 0;                                                                                  \
    }
#ifdef FC_X86_DISPATCH
FC_NO_TSTORE(float_avx512, float, 64)
FC_NO_TSTORE(double_avx512, double, 64)
FC_NO_TSTORE(double_avx2, double, 32)
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
#endif
FC_NO_TSTORE(float_base, float, 16)
FC_NO_TSTORE(double_base, double, 16)

/* The shared inner product, in both kernels: for q < FC_PIX,
 *     acc[q] += sum over j < J of x[base[q] + off[j]] * V[j]      (V[j]: one vector)
 * Forward: q runs over output pixels, j over taps (V = the weights of tap j for a block of
 * filters). Grad-weight: q runs over taps, j over output pixels (V = grad_y at pixel j for the
 * block of filters). x is the zero-padded input window, so every index is in bounds. */
#define FC_DEFINE_KERNELS(SFX, T, VBYTES, TARGET)                                                  \
typedef T fc_vec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                   \
enum { FC_VL_##SFX = VBYTES / sizeof(T) };                                                         \
TARGET static inline __attribute__((always_inline)) void fc_core_##SFX(                            \
        const T *x, const fc_idx *base, const fc_idx *off, const T *V, fc_idx J,                  \
        fc_vec_##SFX *acc) {                                                                       \
    /* one pointer per q: each broadcast is then one load xq[q][off[j]] (base + index * size), \
     * where x + off[j] + base[q] took an extra address add per FMA (~3.8 -> ~2.8 instructions  \
     * per FMA, callgrind) */                                                                      \
    const T *xq[FC_PIX];                                                                           \
    for (int q = 0; q < FC_PIX; q++) xq[q] = x + base[q];                                          \
    for (fc_idx j = 0; j < J; j++) {                                                               \
        const fc_vec_##SFX v = *(const fc_vec_##SFX *)(V + j * FC_VL_##SFX);                       \
        const fc_idx o = off[j];                                                                   \
        for (int q = 0; q < FC_PIX; q++) acc[q] += xq[q][o] * v;                                   \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* y[f, p] (f < FB, p < npix; planes YPLANE apart) = bias[f] + sum over taps k of                  \
 * x[pixoff(p) + tapoff[k]] * wpack[k, f], then ReLU if asked; pixoff(p) = oh*sh*XW + ow*sw for    \
 * p = oh * OW + ow. Taps are ordered (kh, c, kw), KTAPS = C * KW per kernel row. wpack: (K, VL),   \
 * lanes >= FB zero; bias: VL values. khr (or NULL): for output row oh, kernel rows outside         \
 * [khr[2 oh], khr[2 oh + 1]) read only padding and are skipped (the caller allows it only when    \
 * the weights are finite, as 0 * inf must otherwise give NaN). */                                 \
TARGET static void fc_forward_##SFX(const T *x, fc_idx XW, const fc_idx *tapoff, fc_idx KH,        \
                                   fc_idx KTAPS, const int *khr, const T *wpack, const T *bias,    \
                                   T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW, fc_idx sh,           \
                                   fc_idx sw, fc_idx npix, int relu) {                             \
    enum { VL = FC_VL_##SFX };                                                                     \
    fc_vec_##SFX acc[FC_PIX];                                                                      \
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
        for (int q = 0; q < FC_PIX; q++) acc[q] = *(const fc_vec_##SFX *)bias;                     \
        if (lo < hi)                                                                               \
            fc_core_##SFX(x, base, tapoff + lo * KTAPS, wpack + lo * KTAPS * VL,                   \
                          (hi - lo) * KTAPS, acc);                                                 \
        if (np == FC_PIX && fc_tstore_##SFX(acc, y + p, YPLANE, FB, relu)) continue;               \
        for (fc_idx q = 0; q < np; q++) {                                                          \
            memcpy(lanes, &acc[q], sizeof lanes);                                                  \
            for (fc_idx f = 0; f < FB; f++) {                                                      \
                const T v = lanes[f];                                                              \
                /* v <= 0 is false for NaN: the fused ReLU keeps NaN, as the GEMM path's does. */  \
                y[f * YPLANE + p + q] = relu && v <= 0 ? (T)0 : v;                                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* dw[k, :] += sum over pixels p < npix of x[tapoff[k] + pixoff[p]] * gyt[p, :] for taps           \
 * k in [k0, k1); dw: (K, VL), gyt: (npix, VL) (grad_y transposed, one block of filters). */      \
TARGET static void fc_grad_weight_##SFX(const T *x, const fc_idx *tapoff, fc_idx k0, fc_idx k1,    \
                                       const fc_idx *pixoff, const T *gyt, fc_idx npix, T *dw) {   \
    fc_vec_##SFX acc[FC_PIX];                                                                      \
    for (fc_idx k = k0; k < k1; k += FC_PIX) {                                                     \
        const fc_idx nk = k1 - k < FC_PIX ? k1 - k : FC_PIX;                                       \
        fc_idx base[FC_PIX];                                                                       \
        for (fc_idx q = 0; q < FC_PIX; q++) base[q] = tapoff[k + (q < nk ? q : nk - 1)];           \
        for (int q = 0; q < FC_PIX; q++) acc[q] = (fc_vec_##SFX){0};                               \
        fc_core_##SFX(x, base, pixoff, gyt, npix, acc);                                            \
        for (fc_idx q = 0; q < nk; q++) {                                                          \
            fc_vec_##SFX *row = (fc_vec_##SFX *)(dw + (k + q) * FC_VL_##SFX);                      \
            *row += acc[q];                                                                        \
        }                                                                                          \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_KERNELS)

/* Filters per block at `level` for elements of `itemsize` bytes: the vector the kernels use. */
static int fc_direct_block(int level, int itemsize) { return fc_vector_bytes(level) / itemsize; }

/* The entry points Cython calls; `level` comes from fc_simd_level(). */
#define FC_DEFINE_ENTRIES(T)                                                                       \
static void fc_direct_forward_##T(int level, const T *x, fc_idx XW, const fc_idx *tapoff,          \
                                  fc_idx KH, fc_idx KTAPS, const int *khr, const T *wpack,         \
                                  const T *bias, T *y, fc_idx YPLANE, fc_idx FB, fc_idx OW,        \
                                  fc_idx sh, fc_idx sw, fc_idx npix, int relu) {                   \
    FC_DISPATCH(fc_forward, T, x, XW, tapoff, KH, KTAPS, khr, wpack, bias, y, YPLANE, FB, OW, sh,  \
                sw, npix, relu);                                                                   \
}                                                                                                  \
static void fc_direct_grad_weight_##T(int level, const T *x, const fc_idx *tapoff, fc_idx k0,      \
                                      fc_idx k1, const fc_idx *pixoff, const T *gyt, fc_idx npix,  \
                                      T *dw) {                                                     \
    FC_DISPATCH(fc_grad_weight, T, x, tapoff, k0, k1, pixoff, gyt, npix, dw);                      \
}
FC_DEFINE_ENTRIES(float)
FC_DEFINE_ENTRIES(double)

#endif
