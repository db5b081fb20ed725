/* Winograd F(4x4, 3x3), float32, for few tiles (small images, many channels: 512 x 7 x 7 has 32
 * tiles per batch of 8): every transformed weight is then used by few tiles, so the weights must
 * be transformed once per call, in cache-sized chunks, each consumed at once by the GEMM.
 *
 * Flow (winograd.pyx, _convolve_few): V of all tiles of a block is transformed first (split by
 * channels over the threads); then each item, a block of FWF_FB filters, loops over chunks of
 * FWF_CC channels: transform that chunk of weights (fwf_weights, into an L2-sized buffer), add
 * its products to M (fwf_gemm: M of the block stays in L2 across the chunks), and at the end runs
 * the output transform of the block (fw_output). Each M element is summed over the channels in
 * order by one item: results do not depend on the thread count.
 *
 * The weights are read along their contiguous axis: tap k of element (a, b) is w[a sa + 9 b + k sk]
 * (b: the forward channel, 9 floats apart; sk = -1 for the rotated kernel of grad-input), and
 * each vector transforms VL consecutive b of one a from one 9 VL-float run (the gather over 6
 * filter rows in fw_weights missed L1 lane by lane: 80 cycles per pair, 40% of 512 x 7 x 7).
 * So U(f, c) of the GEMM is U[p][f][c] in the forward pass (a = filter) and U[p][c][f] in
 * grad-input (a = channel, b = filter): fwf_gemm broadcasts from either layout.
 */
#ifndef FASTCONV_WINOGRAD_FEW_H
#define FASTCONV_WINOGRAD_FEW_H

#include "winograd_f43.h"

/* Channels per chunk of weights: rows of U in grad-input, its row length in the forward pass.
 * Sweep on 512 x 7 x 7, Zen 3, one thread: FWF_CC 32 / 64 / 128 x FWF_FB 24 / 48 filters, 64 x 24
 * fastest (its U chunk, 221 KB, and M, 113 KB, share the 512 KB L2). */
#ifndef FWF_CC
#define FWF_CC 64
#endif
/* Floats per point of a chunk of U (FWF_FB x FWF_CC, padded: see FW_PSTRIDE). */
#define FWF_USTRIDE(FB) ((FB) * FWF_CC + 16)
/* Rows of weights read ahead by software prefetches (1 and 4 measured no faster than 2). */
#ifndef FWF_PD
#define FWF_PD 2
#endif
#ifndef FWF_PV /* V of the next point prefetched by the GEMM (about 5% on 512 x 7 x 7) */
#define FWF_PV 1
#endif

/* g[k] lane v = tap k (k < 9) of the v-th of VL kernels stored 9 floats apart from wb, their taps
 * in order (sk = 1) or reversed (sk = -1; wb: tap 0 of the first, so tap k at wb + 9 v - k). AVX2:
 * eight row loads and an 8 x 8 transpose give 8 taps, one gather the ninth (with nine gathers
 * the transform took 0.2 of 512 x 7 x 7's time, 0.15 with this); AVX-512 the same per half of
 * its 16 kernels. The baseline gathers lane by lane. */
static inline void fwf_taps_base(const float *wb, const int *idx, fc_idx sk, fw_vec_base *g) {
    fw_gather9_base(wb, idx, sk, g);
}
#ifdef FC_X86_DISPATCH
/* AVX-512: the AVX2 steps for each half of the 16 kernels (eight 8-float rows, a transpose, an
 * 8-lane gather for the ninth tap), the halves joined. A 16-lane gather took ~27 cycles on this
 * project's Ice Lake-SP VM; with nine of them the weight transform was a quarter of the kernel's
 * time in 512 x 7 x 7's grad-input (perf). */
FC_TARGET_AVX512 static inline void fwf_taps_avx512(const float *wb, const int *idx, fc_idx sk,
                                                    fw_vec_avx512 *g) {
    const int up = sk > 0;
    const __m256i ix = _mm256_loadu_si256((const __m256i *)idx); /* kernels 0..7: 9 v */
    __m256 half[2][9];
    for (int h = 0; h < 2; h++) {
        const float *wh = wb + 72 * h;
        const float *r0 = up ? wh : wh - 8; /* row v, element i: tap i (up) or 8 - i */
        __m256 r[8], t[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(r0 + 9 * j);
        fc_transpose8x8_avx512(r, t);
        for (int i = 0; i < 8; i++) half[h][up ? i : 8 - i] = t[i];
        half[h][up ? 8 : 0] = _mm256_i32gather_ps(wh + (up ? 8 : 0), ix, 4);
    }
    for (int k = 0; k < 9; k++)
        g[k] = (fw_vec_avx512)_mm512_castpd_ps(_mm512_insertf64x4(
            _mm512_castpd256_pd512(_mm256_castps_pd(half[0][k])), _mm256_castps_pd(half[1][k]), 1));
}
FC_TARGET_AVX2 static inline void fwf_taps_avx2(const float *wb, const int *idx, fc_idx sk,
                                                fw_vec_avx2 *g) {
    const int up = sk > 0;
    const float *r0 = up ? wb : wb - 8; /* row v, element i: tap i (up) or 8 - i */
    __m256 r[8], t[8];
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(r0 + 9 * j);
    fc_transpose8x8_avx2(r, t); /* t[i]: element i of every row */
    for (int i = 0; i < 4; i++) {
        g[up ? i : 8 - i] = (fw_vec_avx2)t[i];
        g[up ? i + 4 : 4 - i] = (fw_vec_avx2)t[i + 4];
    }
    const __m256i ix = _mm256_loadu_si256((const __m256i *)idx);
    g[up ? 8 : 0] = (fw_vec_avx2)_mm256_i32gather_ps(wb + (up ? 8 : 0), ix, 4);
}
#endif

/* Row l of G times (a, b, c), as FW_G3 computes it. */
#define FWF_GROW(V, l, a, b, c)                                                                    \
    ((l) == 0 ? (a) : (l) == 5 ? (c)                                                               \
     : (l) == 1 ? ((1.0f / 6) * (a) + (1.0f / 3) * (c)) + (FW_S2 / 6) * (b)                        \
     : (l) == 2 ? ((1.0f / 6) * (a) + (1.0f / 3) * (c)) - (FW_S2 / 6) * (b)                        \
     : (l) == 3 ? ((-2.0f / 3) * (a) - (1.0f / 3) * (c)) - (FW_S2 / 3) * (b)                       \
                : ((-2.0f / 3) * (a) - (1.0f / 3) * (c)) + (FW_S2 / 3) * (b))

#define FWF_DEFINE(SFX, FB, TARGET)                                                                \
/* U[p][a][b] (a < na, b < nb, nb a multiple of VL; rows ldu apart, points FWF_USTRIDE(FB) apart)  \
 * = (G g G^T)[p] of the kernel g whose tap k is w[a sa + 9 b + k sk]; zero where a >= na_ok or    \
 * b >= nb_ok. */                                                                                  \
TARGET static void fwf_weights_##SFX(const float *w, fc_idx sa, fc_idx sk, fc_idx na,              \
                                    fc_idx na_ok, fc_idx nb, fc_idx nb_ok, float *U, fc_idx ldu) { \
    typedef fw_vec_##SFX V;                                                                        \
    enum { VL = FW_VL_##SFX };                                                                     \
    V g[9];                                                                                             \
    int idx[VL];                                                                                   \
    float lanes[9][VL];                                                                            \
    for (int v = 0; v < VL; v++) idx[v] = 9 * v;                                                   \
    for (fc_idx a = 0; a < na; a++) {                                                              \
        for (fc_idx b0 = 0; b0 < nb; b0 += VL) {                                                   \
            const float *wb = w + a * sa + 9 * b0;                                                 \
            /* The rows are short runs far apart, which the hardware prefetcher missed: the     \
             * first tap gather of a run took half of this function (from L3 or memory). */     \
            for (int j = -8; j < 9 * VL; j += 16) __builtin_prefetch(wb + FWF_PD * sa + j);      \
            if (a < na_ok && b0 + VL <= nb_ok) {                                                   \
                fwf_taps_##SFX(wb, idx, sk, g);                                                    \
            } else {                                                                               \
                for (int v = 0; v < VL; v++) {                                                     \
                    const int ok = a < na_ok && b0 + v < nb_ok;                                    \
                    for (int k = 0; k < 9; k++) lanes[k][v] = ok ? wb[9 * v + k * sk] : 0.0f;      \
                }                                                                                  \
                for (int k = 0; k < 9; k++) g[k] = *(const V *)lanes[k];                           \
            }                                                                                      \
            float *dst = U + a * ldu + b0;                                                         \
            /* Column l of g G^T, then G times it, stored at once: 15 live vectors, where the     \
             * whole G g (18) then u (36) spilled to the stack. */                                 \
            _Pragma("GCC unroll 6") for (int l = 0; l < 6; l++) {                                  \
                V s[3], o[6];                                                                      \
                for (int k = 0; k < 3; k++) s[k] = FWF_GROW(V, l, g[3 * k], g[3 * k + 1], g[3 * k + 2]); \
                FW_G3(V, s, 1, o, 1);                                                              \
                for (int i = 0; i < 6; i++) *(V *)(dst + (6 * i + l) * FWF_USTRIDE(FB)) = o[i];    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* M[p][f][t] = (first ? 0 : M[p][f][t]) + sum over c < nc, in order, of U(f, c) V[p][c][t], for   \
 * f < FB and t < T (a multiple of VL); U(f, c) at U + p FWF_USTRIDE(FB) + f SR + c SC (the two    \
 * layouts as compile-time strides); V rows and M rows T floats, points pstv and pstm apart.       \
 * FW_FR filters x 2 vectors of tiles per register block, as fw_gemm. */                           \
TARGET static void fwf_gemm_##SFX(const float *U, int grad, const float *Vt, fc_idx pstv,          \
                                 fc_idx T, fc_idx nc, float *M, fc_idx pstm, int first) {          \
    if (grad) fwf_gemm_s_##SFX(U, 1, FB, Vt, pstv, T, nc, M, pstm, first);                         \
    else fwf_gemm_s_##SFX(U, FWF_CC, 1, Vt, pstv, T, nc, M, pstm, first);                          \
}

#define FWF_ACC(r, v0, v1) a##r##0 += uc[r * SR] * v0; a##r##1 += uc[r * SR] * v1
#define FWF_KERNEL(SFX, TARGET)                                                                    \
static inline __attribute__((always_inline)) TARGET void fwf_gemm_s_##SFX(                         \
    const float *U, const fc_idx SR, const fc_idx SC, const float *Vt, fc_idx pstv, fc_idx T,      \
    fc_idx nc, float *M, fc_idx pstm, int first) {                                                 \
    typedef fw_vec_##SFX V;                                                                        \
    enum { VL = FW_VL_##SFX, FB = FWF_FB_##SFX };                                                  \
    for (int p = 0; p < 36; p++) {                                                                 \
        const float *Vp = Vt + p * pstv, *Up = U + p * FWF_USTRIDE(FB);                            \
        for (fc_idx f = 0; f < FB; f += FW_FR) {                                                   \
            const float *u = Up + f * SR;                                                          \
            float *m = M + p * pstm + f * T;                                                       \
            for (fc_idx t = 0; t < T; t += 2 * VL) {                                               \
                const int two = t + 2 * VL <= T; /* else one vector of tiles left */               \
                V a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0};                \
                V a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0};                \
                if (!first) {                                                                      \
                    a00 = *(V *)(m + 0 * T + t); a10 = *(V *)(m + 1 * T + t);                      \
                    a20 = *(V *)(m + 2 * T + t); a30 = *(V *)(m + 3 * T + t);                      \
                    a40 = *(V *)(m + 4 * T + t); a50 = *(V *)(m + 5 * T + t);                      \
                    if (two) {                                                                     \
                        a01 = *(V *)(m + 0 * T + t + VL); a11 = *(V *)(m + 1 * T + t + VL);        \
                        a21 = *(V *)(m + 2 * T + t + VL); a31 = *(V *)(m + 3 * T + t + VL);        \
                        a41 = *(V *)(m + 4 * T + t + VL); a51 = *(V *)(m + 5 * T + t + VL);        \
                    }                                                                              \
                }                                                                                  \
                const float *v = Vp + t;                                                           \
                if (two) {                                                                         \
                    for (fc_idx c = 0; c < nc; c++) {                                              \
                        const V v0 = *(const V *)(v + c * T), v1 = *(const V *)(v + c * T + VL);   \
                        const float *uc = u + c * SC;                                              \
                        if (FWF_PV) __builtin_prefetch(v + c * T + pstv);                          \
                        FWF_ACC(0, v0, v1); FWF_ACC(1, v0, v1); FWF_ACC(2, v0, v1);                \
                        FWF_ACC(3, v0, v1); FWF_ACC(4, v0, v1); FWF_ACC(5, v0, v1);                \
                    }                                                                              \
                } else {                                                                           \
                    for (fc_idx c = 0; c < nc; c++) {                                              \
                        const V v0 = *(const V *)(v + c * T);                                      \
                        const float *uc = u + c * SC;                                              \
                        a00 += uc[0] * v0; a10 += uc[SR] * v0; a20 += uc[2 * SR] * v0;             \
                        a30 += uc[3 * SR] * v0; a40 += uc[4 * SR] * v0; a50 += uc[5 * SR] * v0;    \
                    }                                                                              \
                }                                                                                  \
                *(V *)(m + 0 * T + t) = a00; *(V *)(m + 1 * T + t) = a10;                          \
                *(V *)(m + 2 * T + t) = a20; *(V *)(m + 3 * T + t) = a30;                          \
                *(V *)(m + 4 * T + t) = a40; *(V *)(m + 5 * T + t) = a50;                          \
                if (two) {                                                                         \
                    *(V *)(m + 0 * T + t + VL) = a01; *(V *)(m + 1 * T + t + VL) = a11;            \
                    *(V *)(m + 2 * T + t + VL) = a21; *(V *)(m + 3 * T + t + VL) = a31;            \
                    *(V *)(m + 4 * T + t + VL) = a41; *(V *)(m + 5 * T + t + VL) = a51;            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}

/* Filters per item: a multiple of FW_FR and of the vector lanes (grad-input's weight transform
 * runs along the filters). */
#ifdef FC_X86_DISPATCH
#ifndef FWF_FB2
#define FWF_FB2 24
#endif
enum { FWF_FB_avx512 = 48, FWF_FB_avx2 = FWF_FB2 };
FWF_KERNEL(avx512, FC_TARGET_AVX512)
FWF_DEFINE(avx512, 48, FC_TARGET_AVX512)
FWF_KERNEL(avx2, FC_TARGET_AVX2)
FWF_DEFINE(avx2, FWF_FB2, FC_TARGET_AVX2)
#endif
enum { FWF_FB_base = 24 };
FWF_KERNEL(base, )
FWF_DEFINE(base, 24, )

static int fwf_fb(int level) { return level == 2 ? 48 : level == 1 ? FWF_FB2 : 24; }
static void fwf_weights(int level, const float *w, fc_idx sa, fc_idx sk, fc_idx na, fc_idx na_ok,
                        fc_idx nb, fc_idx nb_ok, float *U, fc_idx ldu) {
    FW_DISPATCH(fwf_weights, w, sa, sk, na, na_ok, nb, nb_ok, U, ldu);
}
static void fwf_gemm(int level, const float *U, int grad, const float *Vt, fc_idx pstv, fc_idx T,
                     fc_idx nc, float *M, fc_idx pstm, int first) {
    FW_DISPATCH(fwf_gemm, U, grad, Vt, pstv, T, nc, M, pstm, first);
}

#endif
