/* Winograd grad-weight, F(3x3, 4x4), float32 and float64: grad_y's transform (vectorised over
 * filters), the GEMM over tiles, the kernel transform (vectorised over filters), per instruction
 * set.
 *
 * grad_w[f, c] = sum over images and 4x4 output tiles of the correlation of the tile's grad_y
 * block u (4x4) with its 6x6 input window d. By the transposition principle the forward's
 * F(4x4, 3x3) identity y = A^T [(G g) . (B^T d)] (over 6x6 with B^T, G, A^T of winograd_f43.h,
 * points 0, +-sqrt2, +-sqrt2/2) gives, per tile,
 *
 *     grad_w (3x3) = G^T [ (A u A^T) . (B^T d B) ] G
 *
 * so the input transform is the forward's (fw_input), grad_y's is A u A^T (4x4 -> 6x6), and the
 * kernel transform G^T M G runs once per (filter, channel) after M[p][c][f] = sum over tiles t of
 * V[p][c][t] Ud[p][t][f]: 36 GEMMs whose inner dimension is the tiles, 2.25 multiplies per
 * output and (filter, channel) pair instead of 9. Layouts: V as fw_input writes it (tiles along
 * rows: broadcast by the GEMM), Ud with filters along rows (the GEMM's vectors), so neither is
 * packed. Float32 error against a float64 reference: 6e-7 .. 1.1e-6 relative to max |grad_w| on
 * the test shapes and the ResNet layers (GEMM's own float32 error there: 2e-7 .. 5e-7); the
 * tests bound it by 5e-5.
 *
 * The float32 input transform is fw_input (winograd_f43.h, with its gathers); wg_input here is the
 * float64 one (windows gathered through a buffer). Constants are written in double and cast to
 * the type: in float32 they equal winograd_f43.h's; float64 needs sqrt 2 to double precision
 * (the identity holds only for the exact points).
 */
#ifndef FASTCONV_WINOGRAD_WGRAD_H
#define FASTCONV_WINOGRAD_WGRAD_H

#include "winograd_f43.h"

#define WG_S2 1.41421356237309504880
#define WG_S2_2 0.70710678118654752440
#define WG_S2_4 0.35355339059327376220
#define WG_2S2 2.82842712474619009760

/* 4 -> 6 points, A (= (A^T)^T): out[p so] = sum_i A^T[i][p] in[i si]. */
#define WG_A4(T, V, in, si, out, so)                                                               \
    do {                                                                                           \
        const V u0 = in[0 * si], u1 = in[1 * si], u2 = in[2 * si], u3 = in[3 * si];                \
        const V e1 = u0 + (T)2 * u2, o1 = (T)WG_S2 * u1 + (T)WG_2S2 * u3;                          \
        const V e2 = u0 + (T)0.5 * u2, o2 = (T)WG_S2_2 * u1 + (T)WG_S2_4 * u3;                     \
        out[0 * so] = u0;                                                                          \
        out[1 * so] = e1 + o1;                                                                     \
        out[2 * so] = e1 - o1;                                                                     \
        out[3 * so] = e2 + o2;                                                                     \
        out[4 * so] = e2 - o2;                                                                     \
        out[5 * so] = u3;                                                                          \
    } while (0)

/* 6 -> 3 points, G^T: out[k so] = sum_p G[p][k] in[p si]. */
#define WG_GT6(T, V, in, si, out, so)                                                              \
    do {                                                                                           \
        const V a = in[1 * si] + in[2 * si], b = in[1 * si] - in[2 * si];                          \
        const V c = in[3 * si] + in[4 * si], e = in[3 * si] - in[4 * si];                          \
        out[0 * so] = (in[0 * si] + (T)(1.0 / 6) * a) - (T)(2.0 / 3) * c;                          \
        out[1 * so] = (T)(WG_S2 / 6) * b - (T)(WG_S2 / 3) * e;                                     \
        out[2 * so] = (T)(1.0 / 3) * (a - c) + in[5 * si];                                         \
    } while (0)

/* 6-point B^T (as FW_BT6, in T's precision). */
#define WG_BT6(T, V, in, si, out, so)                                                              \
    do {                                                                                           \
        const V d0 = in[0 * si], d1 = in[1 * si], d2 = in[2 * si];                                 \
        const V d3 = in[3 * si], d4 = in[4 * si], d5 = in[5 * si];                                 \
        const V e1 = d4 - (T)0.5 * d2, o1 = (T)WG_S2 * d3 - (T)WG_S2_2 * d1;                       \
        const V e2 = d4 - (T)2 * d2, o2 = (T)WG_S2_2 * d3 - (T)WG_S2 * d1;                         \
        out[0 * so] = (d0 + d4) - (T)2.5 * d2;                                                     \
        out[1 * so] = e1 + o1;                                                                     \
        out[2 * so] = e1 - o1;                                                                     \
        out[3 * so] = e2 + o2;                                                                     \
        out[4 * so] = e2 - o2;                                                                     \
        out[5 * so] = (d1 + d5) - (T)2.5 * d3;                                                     \
    } while (0)

/* Vectors per type and instruction set (unaligned: loads and stores go anywhere in the buffers). */
#ifdef FC_X86_DISPATCH
typedef float wg_vec_float_avx512 __attribute__((vector_size(64), aligned(4)));
typedef double wg_vec_double_avx512 __attribute__((vector_size(64), aligned(8)));
typedef float wg_vec_float_avx2 __attribute__((vector_size(32), aligned(4)));
typedef double wg_vec_double_avx2 __attribute__((vector_size(32), aligned(8)));
#endif
typedef float wg_vec_float_base __attribute__((vector_size(16), aligned(4)));
typedef double wg_vec_double_base __attribute__((vector_size(16), aligned(8)));

/* Strided lane loads: lane v < nl of wg_lanes_load = b[v stride], the other lanes zero (not read):
 * one grad_y value of VL consecutive filters (planes OH OW apart). Hardware gathers (32-bit lane
 * offsets: the caller takes the baseline for planes of 2^27 elements or more); the baseline
 * goes element by element. */
#define WG_LANES_SCALAR(SFX, T, VL)                                                                \
    typedef struct { fc_idx stride; int nl; } wg_lanes_##SFX;                                      \
    static inline void wg_lanes_init_##SFX(wg_lanes_##SFX *g, fc_idx stride, int nl) {             \
        g->stride = stride;                                                                        \
        g->nl = nl;                                                                                \
    }                                                                                              \
    static inline wg_vec_##SFX wg_lanes_load_##SFX(const T *b, const wg_lanes_##SFX *g) {          \
        union { wg_vec_##SFX v; T a[VL]; } u;                                                      \
        for (int v = 0; v < VL; v++) u.a[v] = v < g->nl ? b[v * g->stride] : 0;                    \
        return u.v;                                                                                \
    }
WG_LANES_SCALAR(float_base, float, 4)
WG_LANES_SCALAR(double_base, double, 2)

#ifdef FC_X86_DISPATCH
typedef struct { __m512i idx; __mmask16 k; } wg_lanes_float_avx512;
FC_TARGET_AVX512 static inline void wg_lanes_init_float_avx512(wg_lanes_float_avx512 *g,
                                                               fc_idx stride, int nl) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    g->idx = _mm512_mullo_epi32(iota, _mm512_set1_epi32((int)stride));
    g->k = (__mmask16)(nl >= 16 ? 0xFFFFu : nl <= 0 ? 0u : (1u << nl) - 1);
}
FC_TARGET_AVX512 static inline wg_vec_float_avx512 wg_lanes_load_float_avx512(
        const float *b, const wg_lanes_float_avx512 *g) {
    return (wg_vec_float_avx512)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), g->k, g->idx, b, 4);
}

typedef struct { __m256i idx; __mmask8 k; } wg_lanes_double_avx512;
FC_TARGET_AVX512 static inline void wg_lanes_init_double_avx512(wg_lanes_double_avx512 *g,
                                                                fc_idx stride, int nl) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    g->idx = _mm256_mullo_epi32(iota, _mm256_set1_epi32((int)stride));
    g->k = (__mmask8)(nl >= 8 ? 0xFFu : nl <= 0 ? 0u : (1u << nl) - 1);
}
FC_TARGET_AVX512 static inline wg_vec_double_avx512 wg_lanes_load_double_avx512(
        const double *b, const wg_lanes_double_avx512 *g) {
    return (wg_vec_double_avx512)_mm512_mask_i32gather_pd(_mm512_setzero_pd(), g->k, g->idx, b, 8);
}

typedef struct { __m256i idx; __m256 mask; } wg_lanes_float_avx2;
FC_TARGET_AVX2 static inline void wg_lanes_init_float_avx2(wg_lanes_float_avx2 *g, fc_idx stride,
                                                           int nl) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    g->idx = _mm256_mullo_epi32(iota, _mm256_set1_epi32((int)stride));
    g->mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nl), iota));
}
FC_TARGET_AVX2 static inline wg_vec_float_avx2 wg_lanes_load_float_avx2(
        const float *b, const wg_lanes_float_avx2 *g) {
    return (wg_vec_float_avx2)_mm256_mask_i32gather_ps(_mm256_setzero_ps(), b, g->idx, g->mask, 4);
}

typedef struct { __m128i idx; __m256d mask; } wg_lanes_double_avx2;
FC_TARGET_AVX2 static inline void wg_lanes_init_double_avx2(wg_lanes_double_avx2 *g, fc_idx stride,
                                                            int nl) {
    g->idx = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32((int)stride));
    g->mask = _mm256_castsi256_pd(
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(nl), _mm256_setr_epi64x(0, 1, 2, 3)));
}
FC_TARGET_AVX2 static inline wg_vec_double_avx2 wg_lanes_load_double_avx2(
        const double *b, const wg_lanes_double_avx2 *g) {
    return (wg_vec_double_avx2)_mm256_mask_i32gather_pd(_mm256_setzero_pd(), b, g->idx, g->mask, 8);
}
#endif

/* The 4 x 4 grad_y block of one tile for VL filters: u[4 i + j] lane v = the value at row i,
 * column j of filter v's block (g: filter 0's (0, 0); planes OHW, rows rs, columns dw apart), zero
 * past the tile's vh x vw real outputs and in lanes v >= nl. By the lane loads above, except: */
#define WG_DY_GATHER(SFX, T, TARGET)                                                               \
    TARGET static inline void wg_dy_block_##SFX(const T *g, fc_idx OHW, fc_idx rs, fc_idx dw,      \
                                                int vh, int vw, int nl,                            \
                                                const wg_lanes_##SFX *lanes, wg_vec_##SFX *u) {    \
        const wg_vec_##SFX zero = {0};                                                             \
        (void)OHW;                                                                                 \
        (void)nl;                                                                                  \
        for (int i = 0; i < 4; i++)                                                                \
            for (int j = 0; j < 4; j++)                                                            \
                u[4 * i + j] = i < vh && j < vw ? wg_lanes_load_##SFX(g + i * rs + j * dw, lanes)  \
                                                : zero;                                            \
    }
WG_DY_GATHER(float_base, float, )
WG_DY_GATHER(double_base, double, )
#ifdef FC_X86_DISPATCH
WG_DY_GATHER(double_avx512, double, FC_TARGET_AVX512)
WG_DY_GATHER(float_avx2, float, FC_TARGET_AVX2)
WG_DY_GATHER(double_avx2, double, FC_TARGET_AVX2)

/* float32, AVX-512, columns up to 5 apart: row loads and transposes instead of 16 gathers. On
 * Ice Lake-SP (this project's VM) a 16-lane gather took ~27 cycles: grad_y's transform was 17% of
 * the 3x3 64 -> 64 grad-weight (perf), its 16 gathers per tile and 16 filters 155 ns against 40 ns
 * for these loads (thread CPU time, a C loop). Per row i: filter v's 4 values (one masked load of
 * the columns j dw, packed by a compress when dw > 1) in the low 128 bits; filters q, q + 4,
 * q + 8, q + 12 combined into z[q] (128-bit lane L: filter q + 4 L); a 4 x 4 transpose in every
 * lane then puts value j of filter 4 L + q at element 4 L + q of u[4 i + j]. */
FC_TARGET_AVX512 static inline void wg_dy_block_float_avx512(
        const float *g, fc_idx OHW, fc_idx rs, fc_idx dw, int vh, int vw, int nl,
        const wg_lanes_float_avx512 *lanes, wg_vec_float_avx512 *u) {
    if (dw > 5) { /* the columns span more than a vector */
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                u[4 * i + j] = i < vh && j < vw
                                   ? wg_lanes_load_float_avx512(g + i * rs + j * dw, lanes)
                                   : (wg_vec_float_avx512)_mm512_setzero_ps();
        return;
    }
    __mmask16 m = 0;
    for (int j = 0; j < vw; j++) m |= (__mmask16)(1u << (j * dw));
    for (int i = 0; i < 4; i++) {
        if (i >= vh) {
            for (int j = 0; j < 4; j++) u[4 * i + j] = (wg_vec_float_avx512)_mm512_setzero_ps();
            continue;
        }
        __m512 z[4];
        for (int q = 0; q < 4; q++) {
            __m512 x[4];
            for (int L = 0; L < 4; L++) {
                const int v = q + 4 * L;
                x[L] = v < nl ? _mm512_maskz_loadu_ps(m, g + v * OHW + i * rs)
                              : _mm512_setzero_ps();
                if (dw > 1) x[L] = _mm512_maskz_compress_ps(m, x[L]);
            }
            const __m512 ab = _mm512_shuffle_f32x4(x[0], x[1], 0x00); /* x0 x0 x1 x1 */
            const __m512 cd = _mm512_shuffle_f32x4(x[2], x[3], 0x00);
            z[q] = _mm512_shuffle_f32x4(ab, cd, 0x88); /* x0 x1 x2 x3 */
        }
        const __m512 t0 = _mm512_unpacklo_ps(z[0], z[1]), t1 = _mm512_unpacklo_ps(z[2], z[3]);
        const __m512 t2 = _mm512_unpackhi_ps(z[0], z[1]), t3 = _mm512_unpackhi_ps(z[2], z[3]);
        u[4 * i + 0] = (wg_vec_float_avx512)_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = (wg_vec_float_avx512)_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = (wg_vec_float_avx512)_mm512_shuffle_ps(t2, t3, _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = (wg_vec_float_avx512)_mm512_shuffle_ps(t2, t3, _MM_SHUFFLE(3, 2, 3, 2));
    }
}
#endif
#undef WG_DY_GATHER

/* Elements a GEMM column block spans: Ud's rows and M's column blocks are padded to a multiple
 * of it (two vectors of the widest level, both types). */
#define WG_COLS 32

#define WG_DEFINE(SFX, T, VBYTES, TARGET)                                                          \
/* Ud[p][t][f] = (A u A^T)[p] of tile t < nv and filter f < nf (u: the tile's 4x4 block of grad_y, \
 * zero past its vh x vw real outputs), at Ud + p PU + t nfp + f; zero for nf <= f < nfp.          \
 * Vectorised over filters (their planes OHW apart): Ud's rows are then the GEMM's contiguous      \
 * operand, and partial tiles cost no more than whole ones. */                                     \
TARGET static void wg_dy_##SFX(const T *gy, fc_idx nf, fc_idx nfp, fc_idx OHW, fc_idx OW,          \
                               fc_idx dh, fc_idx dw, const fw_tile *tiles, fc_idx nv, T *Ud,       \
                               fc_idx PU) {                                                        \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    const fc_idx rs = dh * OW;                                                                     \
    const V zero = {0};                                                                            \
    V u[16], s[24], d[36];                                                                         \
    for (fc_idx f0 = 0; f0 < nfp; f0 += VL) {                                                      \
        const int nl = (int)(nf - f0 < VL ? nf - f0 : VL);                                         \
        wg_lanes_##SFX lanes;                                                                      \
        wg_lanes_init_##SFX(&lanes, OHW, nl);                                                      \
        for (fc_idx t = 0; t < nv; t++) {                                                          \
            T *dst = Ud + t * nfp + f0;                                                            \
            if (nl <= 0) {                                                                         \
                for (int p = 0; p < 36; p++) *(V *)(dst + p * PU) = zero;                          \
                continue;                                                                          \
            }                                                                                      \
            wg_dy_block_##SFX(gy + f0 * OHW + tiles[t].yoff, OHW, rs, dw, tiles[t].vh,            \
                              tiles[t].vw, nl, &lanes, u);                                         \
            for (int j = 0; j < 4; j++) WG_A4(T, V, (u + j), 4, (s + j), 4);  /* A u: 6 x 4 */     \
            for (int p = 0; p < 6; p++) WG_A4(T, V, (s + 4 * p), 1, (d + 6 * p), 1); /* (.) A^T */ \
            for (int p = 0; p < 36; p++) *(V *)(dst + p * PU) = d[p];                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* V[p][c][t] = (B^T d B)[p] of tile t < nT and channel c < C at Vt + p CT + c nT + t, as          \
 * fw_input, in T's precision; windows gathered element by element through a buffer. */           \
TARGET static void wg_input_##SFX(const T *x, fc_idx C, fc_idx H, fc_idx W, fc_idx dh, fc_idx dw,  \
                                  const fw_tile *tiles, fc_idx nT, T *Vt, fc_idx CT) {             \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    V d[36], t[36];                                                                                \
    union { V v; T a[VL]; } buf[36];                                                               \
    const fc_idx HW = H * W, rs = dh * W;                                                          \
    for (fc_idx t0 = 0; t0 < nT; t0 += VL) {                                                       \
        const fw_tile *tl = tiles + t0;                                                            \
        for (fc_idx c = 0; c < C; c++) {                                                           \
            const T *xc = x + c * HW;                                                              \
            for (int v = 0; v < VL; v++) {                                                         \
                const int rows = tl[v].rows, cols = tl[v].cols;                                    \
                for (int k = 0; k < 6; k++)                                                        \
                    for (int l = 0; l < 6; l++)                                                    \
                        buf[6 * k + l].a[v] = ((rows >> k) & (cols >> l) & 1)                      \
                            ? xc[tl[v].xoff + k * rs + l * dw] : 0;                                \
            }                                                                                      \
            for (int k = 0; k < 36; k++) d[k] = buf[k].v;                                          \
            for (int l = 0; l < 6; l++) WG_BT6(T, V, (d + l), 6, (t + l), 6);  /* B^T d */         \
            for (int i = 0; i < 6; i++) WG_BT6(T, V, (t + 6 * i), 1, (d + 6 * i), 1);  /* (.) B */ \
            T *dst = Vt + c * nT + t0;                                                             \
            for (int p = 0; p < 36; p++) *(V *)(dst + p * CT) = d[p];                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* Rows [0, RB) of a block of M (m: its first row, rows ldm apart) (+)= v (RB rows of V, ldv     \
 * apart) @ Ud (K rows of nfp, from Up), in column blocks of 2 vectors: RB x 2 accumulators, V     \
 * broadcast along its rows, Ud read as vectors. With add, the block's rows of M are prefetched   \
 * as its sums start: they wait in L2 (all 36 points' M) and their loads at the end were a fifth  \
 * of this GEMM's time (perf, Ice Lake-SP, 3x3 64 -> 64 on 56 x 56). */                            \
TARGET static inline __attribute__((always_inline)) void wg_gemm_rows_##SFX(                       \
        int RB, const T *v, fc_idx ldv, const T *Up, fc_idx K, fc_idx nfp, T *m, fc_idx ldm,       \
        int add) {                                                                                 \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T), RM = 8 };                                                      \
    for (fc_idx f = 0; f < nfp; f += 2 * VL) {                                                     \
        V a[RM][2];                                                                                \
        T *mf = m + f;                                                                             \
        for (int r = 0; r < RB; r++) {                                                             \
            a[r][0] = (V){0};                                                                      \
            a[r][1] = (V){0};                                                                      \
            if (add) {                                                                             \
                __builtin_prefetch(mf + r * ldm, 1, 3);                                            \
                __builtin_prefetch(mf + r * ldm + VL, 1, 3);                                       \
            }                                                                                      \
        }                                                                                          \
        const T *u = Up + f;                                                                       \
        for (fc_idx t = 0; t < K; t++) {                                                           \
            const V b0 = *(const V *)(u + t * nfp), b1 = *(const V *)(u + t * nfp + VL);           \
            for (int r = 0; r < RB; r++) {                                                         \
                const T w = v[r * ldv + t];                                                        \
                a[r][0] += w * b0;                                                                 \
                a[r][1] += w * b1;                                                                 \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < RB; r++) {                                                             \
            T *mr = mf + r * ldm;                                                                  \
            if (add) {                                                                             \
                a[r][0] += *(V *)mr;                                                               \
                a[r][1] += *(V *)(mr + VL);                                                        \
            }                                                                                      \
            *(V *)mr = a[r][0];                                                                    \
            *(V *)(mr + VL) = a[r][1];                                                             \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* For the 36 points p: M[p][c][f] (+)= sum over t < K of V[p][c][t] Ud[p][t][f], for c < nc and   \
 * f < nfp (a multiple of WG_COLS); V rows ldv apart, points PV; Ud rows nfp apart, points PU; M   \
 * rows ldm apart, points PM; add: accumulate, else overwrite. Blocks of 6 rows (12 accumulators:  \
 * AVX2 has 16 registers), of 8 with AVX-512 (32 registers; 64 channels, the blocks' size, then   \
 * need no rows one at a time, which ran at the latency of 2 dependent chains), then 4, 2, 1;     \
 * both operands as the transforms wrote them, nothing packed (OpenBLAS's copies of both took     \
 * half as long as its multiply here). Each M element is summed over t in order by one call,     \
 * whatever the block. */                                                                          \
TARGET static void wg_gemm_##SFX(const T *Vt, fc_idx ldv, fc_idx PV, const T *Ud, fc_idx PU,       \
                                 fc_idx K, fc_idx nc, fc_idx nfp, T *M, fc_idx ldm, fc_idx PM,     \
                                 int add) {                                                        \
    for (int p = 0; p < 36; p++) {                                                                 \
        const T *Vp = Vt + p * PV, *Up = Ud + p * PU;                                              \
        T *Mp = M + p * PM;                                                                        \
        fc_idx c = 0;                                                                              \
        if (VBYTES == 64)                                                                          \
            for (; c + 8 <= nc; c += 8)                                                            \
                wg_gemm_rows_##SFX(8, Vp + c * ldv, ldv, Up, K, nfp, Mp + c * ldm, ldm, add);      \
        for (; c + 6 <= nc; c += 6)                                                                \
            wg_gemm_rows_##SFX(6, Vp + c * ldv, ldv, Up, K, nfp, Mp + c * ldm, ldm, add);          \
        if (c + 4 <= nc) {                                                                         \
            wg_gemm_rows_##SFX(4, Vp + c * ldv, ldv, Up, K, nfp, Mp + c * ldm, ldm, add);          \
            c += 4;                                                                                \
        }                                                                                          \
        if (c + 2 <= nc) {                                                                         \
            wg_gemm_rows_##SFX(2, Vp + c * ldv, ldv, Up, K, nfp, Mp + c * ldm, ldm, add);          \
            c += 2;                                                                                \
        }                                                                                          \
        if (c < nc)                                                                                \
            wg_gemm_rows_##SFX(1, Vp + c * ldv, ldv, Up, K, nfp, Mp + c * ldm, ldm, add);          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* One channel's weight gradients: dwc[9 C f + k] (f < F; dwc = grad_w + 9 c) = (G^T M G)[k] of    \
 * M[p] = the sum over partials r < P, in order, of Mc[r PR + p PM + f] (Mc: the channel's row of  \
 * partial 0). Vectorised over filters (M's rows). */                                              \
TARGET static void wg_kernel_##SFX(const T *Mc, fc_idx P, fc_idx PR, fc_idx PM, fc_idx F,          \
                                   fc_idx C, T *dwc) {                                             \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    V m[36], r[18];                                                                                \
    union { V v; T a[VL]; } w[9];                                                                  \
    for (fc_idx f0 = 0; f0 < F; f0 += VL) {                                                        \
        for (int p = 0; p < 36; p++) {                                                             \
            m[p] = *(const V *)(Mc + p * PM + f0);                                                 \
            for (fc_idx q = 1; q < P; q++) m[p] += *(const V *)(Mc + q * PR + p * PM + f0);        \
        }                                                                                          \
        for (int q = 0; q < 6; q++) WG_GT6(T, V, (m + q), 6, (r + q), 6);  /* G^T M: 3 x 6 */      \
        for (int k = 0; k < 3; k++) WG_GT6(T, V, (r + 6 * k), 1, (&w[3 * k].v), 1);  /* (.) G */   \
        const fc_idx nf = F - f0 < VL ? F - f0 : VL;                                               \
        for (fc_idx v = 0; v < nf; v++)                                                            \
            for (int k = 0; k < 9; k++) dwc[9 * C * (f0 + v) + k] = w[k].a[v];                     \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(WG_DEFINE)

#define WG_TYPED(T)                                                                                \
    static void wg_dy_##T(int level, const T *gy, fc_idx nf, fc_idx nfp, fc_idx OHW, fc_idx OW,    \
                          fc_idx dh, fc_idx dw, const fw_tile *tiles, fc_idx nv, T *Ud,            \
                          fc_idx PU) {                                                             \
        FC_DISPATCH(wg_dy, T, gy, nf, nfp, OHW, OW, dh, dw, tiles, nv, Ud, PU);                    \
    }                                                                                              \
    static void wg_input_##T(int level, const T *x, fc_idx C, fc_idx H, fc_idx W, fc_idx dh,       \
                             fc_idx dw, const fw_tile *tiles, fc_idx nT, T *Vt, fc_idx CT) {       \
        FC_DISPATCH(wg_input, T, x, C, H, W, dh, dw, tiles, nT, Vt, CT);                           \
    }                                                                                              \
    static void wg_gemm_##T(int level, const T *Vt, fc_idx ldv, fc_idx PV, const T *Ud, fc_idx PU, \
                            fc_idx K, fc_idx nc, fc_idx nfp, T *M, fc_idx ldm, fc_idx PM,          \
                            int add) {                                                             \
        FC_DISPATCH(wg_gemm, T, Vt, ldv, PV, Ud, PU, K, nc, nfp, M, ldm, PM, add);                 \
    }                                                                                              \
    static void wg_kernel_##T(int level, const T *Mc, fc_idx P, fc_idx PR, fc_idx PM, fc_idx F,    \
                              fc_idx C, T *dwc) {                                                  \
        FC_DISPATCH(wg_kernel, T, Mc, P, PR, PM, F, C, dwc);                                       \
    }
WG_TYPED(float)
WG_TYPED(double)

#endif
