/* Winograd F(4x4, 3x3), part 1: moving tiles between memory and vectors, per instruction set:
 * gathering the 6x6 input windows of a group of tiles, and storing their 4x4 output blocks.
 * Included by winograd_f43.h after its definitions (fw_tile, the transform macros). */
#ifndef FASTCONV_WINOGRAD_IO_H
#define FASTCONV_WINOGRAD_IO_H

/* Vector types per instruction set (unaligned: loads and stores go anywhere in the buffers). */
#ifdef FC_X86_DISPATCH
#include <immintrin.h>
typedef float fw_vec_avx512 __attribute__((vector_size(64), aligned(4)));
typedef float fw_vec_avx2 __attribute__((vector_size(32), aligned(4)));
#endif
typedef float fw_vec_base __attribute__((vector_size(16), aligned(4)));

/* Gathering the 6x6 windows of VL tiles (one channel) into 36 vectors d[6 k + l] (lane v: tile v's
 * window row k, column l; zero outside the image). The windows of a group lie at arbitrary
 * offsets (tiles of several rows, images or dilation sub-grids). AVX2: row loads and transposes
 * for columns 1 or 2 apart (fw_rows_avx2), else hardware gathers with per-lane offsets, as on
 * AVX-512 (for columns more than 2 apart; the caller gives AVX-512 CPUs the AVX2 rows otherwise);
 * a plan built once per group serves every channel. The scalar version (baseline, and arrays too
 * large for 32-bit lane offsets) goes through a buffer: on Zen 3 it cost more than the GEMM. */
#define FW_GATHER_SCALAR(SFX, VL)                                                                  \
    static inline void fw_gather_scalar_##SFX(const float *xc, const fw_tile *tl, fc_idx rs,      \
                                              fc_idx cs, fw_vec_##SFX *d) {                        \
        float buf[36][VL];                                                                         \
        for (int v = 0; v < VL; v++) {                                                             \
            const fc_idx base = tl[v].xoff;                                                        \
            const int rows = tl[v].rows, cols = tl[v].cols;                                        \
            for (int k = 0; k < 6; k++)                                                            \
                for (int l = 0; l < 6; l++)                                                        \
                    buf[6 * k + l][v] = ((rows >> k) & (cols >> l) & 1)                            \
                        ? xc[base + k * rs + l * cs] : 0.0f;                                       \
        }                                                                                          \
        for (int k = 0; k < 36; k++) d[k] = *(const fw_vec_##SFX *)buf[k];                         \
    }

typedef struct { int scalar; } fw_plan_base;
static inline void fw_gplan_base(const fw_tile *tl, fc_idx cs, fw_plan_base *g) {
    (void)tl, (void)cs;
    g->scalar = 1;
}
FW_GATHER_SCALAR(base, 4)
static inline void fw_gather_base(const float *xc, const fw_tile *tl, fc_idx rs, fc_idx cs,
                                  const fw_plan_base *g, fw_vec_base *d) {
    (void)g;
    fw_gather_scalar_base(xc, tl, rs, cs, d);
}

/* g[k] lane v = base[idx[v] + k sk], k < 9: the taps of the weight transform's (channel,
 * filter) pairs (sk = -1: the taps of a 180-degree rotated kernel). */
static inline void fw_gather9_base(const float *base, const int *idx, fc_idx sk, fw_vec_base *g) {
    float lanes[9][4];
    for (int k = 0; k < 9; k++)
        for (int v = 0; v < 4; v++) lanes[k][v] = base[idx[v] + k * sk];
    for (int k = 0; k < 9; k++) g[k] = *(const fw_vec_base *)lanes[k];
}
#ifdef FC_X86_DISPATCH
FC_TARGET_AVX2 static inline void fw_gather9_avx2(const float *base, const int *idx, fc_idx sk,
                                                  fw_vec_avx2 *g) {
    const __m256i i = _mm256_loadu_si256((const __m256i *)idx);
    for (int k = 0; k < 9; k++) g[k] = (fw_vec_avx2)_mm256_i32gather_ps(base + k * sk, i, 4);
}
FC_TARGET_AVX512 static inline void fw_gather9_avx512(const float *base, const int *idx,
                                                      fc_idx sk, fw_vec_avx512 *g) {
    const __m512i i = _mm512_loadu_si512((const void *)idx);
    for (int k = 0; k < 9; k++) g[k] = (fw_vec_avx512)_mm512_i32gather_ps(i, base + k * sk, 4);
}
#endif

/* Store the 4 x 4 outputs o[4 i + j] (lane v: tile v) of VL tiles into y (one filter's plane):
 * row i, column j of tile v goes to yf[yoff_v + i dh OW + j dw]; only its vh x vw real ones. */
#define FW_STORE_SCALAR(SFX, VL)                                                                   \
    static inline void fw_store_scalar_##SFX(const fw_vec_##SFX *o, const fw_tile *tl,            \
                                             float *yf, fc_idx OW, fc_idx dh, fc_idx dw) {         \
        float out[16][VL];                                                                         \
        for (int k = 0; k < 16; k++) *(fw_vec_##SFX *)out[k] = o[k];                               \
        for (int v = 0; v < VL; v++) {                                                             \
            float *yv = yf + tl[v].yoff;                                                           \
            for (int i = 0; i < tl[v].vh; i++)                                                     \
                for (int j = 0; j < tl[v].vw; j++) yv[i * dh * OW + j * dw] = out[4 * i + j][v];   \
        }                                                                                          \
    }
FW_STORE_SCALAR(base, 4)
static inline void fw_store_base(const fw_vec_base *o, const fw_tile *tl, float *yf, fc_idx OW,
                                 fc_idx dh, fc_idx dw) {
    fw_store_scalar_base(o, tl, yf, OW, dh, dw);
}

#ifdef FC_X86_DISPATCH
FW_STORE_SCALAR(avx2, 8)
/* Undilated: a 4 x 8 transpose per output row gives each tile's 4 columns as one 16-byte store. */
FC_TARGET_AVX2 static inline void fw_store_avx2(const fw_vec_avx2 *o, const fw_tile *tl,
                                                float *yf, fc_idx OW, fc_idx dh, fc_idx dw) {
    int full = dw == 1;
    for (int v = 0; v < 8; v++) full &= tl[v].vh == 4 && tl[v].vw == 4;
    if (!full) {
        fw_store_scalar_avx2(o, tl, yf, OW, dh, dw);
        return;
    }
    for (int i = 0; i < 4; i++) {
        const __m256 a = (__m256)o[4 * i], b = (__m256)o[4 * i + 1];
        const __m256 c = (__m256)o[4 * i + 2], d = (__m256)o[4 * i + 3];
        const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
        const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
        const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const fc_idx row = i * dh * OW;
        _mm_storeu_ps(yf + tl[0].yoff + row, _mm256_castps256_ps128(s0));
        _mm_storeu_ps(yf + tl[1].yoff + row, _mm256_castps256_ps128(s1));
        _mm_storeu_ps(yf + tl[2].yoff + row, _mm256_castps256_ps128(s2));
        _mm_storeu_ps(yf + tl[3].yoff + row, _mm256_castps256_ps128(s3));
        _mm_storeu_ps(yf + tl[4].yoff + row, _mm256_extractf128_ps(s0, 1));
        _mm_storeu_ps(yf + tl[5].yoff + row, _mm256_extractf128_ps(s1, 1));
        _mm_storeu_ps(yf + tl[6].yoff + row, _mm256_extractf128_ps(s2, 1));
        _mm_storeu_ps(yf + tl[7].yoff + row, _mm256_extractf128_ps(s3, 1));
    }
}
FW_STORE_SCALAR(avx512, 16)
/* One tile's output row r (its 4 values in lanes 0-3) at p: columns dw = 1 or 2 apart, its vw
 * real ones. Masked 512-bit stores write only their unmasked elements (no fault, and the other
 * sub-grid's outputs between them are left alone); AVX-512F has no narrower masked store. */
FC_TARGET_AVX512 static inline __attribute__((always_inline)) void fw_put_avx512(
        float *p, __m128 r, int vw, fc_idx dw) {
    if (dw == 1 && vw == 4) {
        _mm_storeu_ps(p, r);
    } else if (dw == 1) {
        _mm512_mask_storeu_ps(p, (__mmask16)((1 << vw) - 1), _mm512_castps128_ps512(r));
    } else { /* dw = 2: values to the even lanes */
        const __m512 e = _mm512_maskz_expand_ps(0x55, _mm512_castps128_ps512(r));
        _mm512_mask_storeu_ps(p, (__mmask16)(0x55 & ((1 << (2 * vw - 1)) - 1)), e);
    }
}
/* Columns 1 or 2 apart: per output row a 4 x 16 transpose (within 128-bit lanes) gives each
 * tile's 4 values as one 128-bit lane. The scalar stores took a fifth of the samples of 3x3
 * 64 -> 64 on 8 x 56 x 56 (perf, Ice Lake-SP, 1 thread). */
FC_TARGET_AVX512 static inline void fw_store_avx512(const fw_vec_avx512 *o, const fw_tile *tl,
                                                    float *yf, fc_idx OW, fc_idx dh, fc_idx dw) {
    if (dw > 2) {
        fw_store_scalar_avx512(o, tl, yf, OW, dh, dw);
        return;
    }
    for (int i = 0; i < 4; i++) {
        const __m512 a = (__m512)o[4 * i], b = (__m512)o[4 * i + 1];
        const __m512 c = (__m512)o[4 * i + 2], d = (__m512)o[4 * i + 3];
        const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
        const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
        /* s[j], 128-bit lane L: tile 4 L + j's row i */
        const __m512 s[4] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xEE),
                             _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xEE)};
        const fc_idx row = i * dh * OW;
#define FW_PUT_LANE(L)                                                                             \
        for (int j = 0; j < 4; j++) {                                                              \
            const fw_tile *tv = tl + 4 * (L) + j;                                                  \
            if (i < tv->vh) fw_put_avx512(yf + tv->yoff + row, _mm512_extractf32x4_ps(s[j], L),    \
                                          tv->vw, dw);                                             \
        }
        FW_PUT_LANE(0)
        FW_PUT_LANE(1)
        FW_PUT_LANE(2)
        FW_PUT_LANE(3)
#undef FW_PUT_LANE
    }
}
#endif

#ifdef FC_X86_DISPATCH
/* Lane offsets are 32-bit: the caller takes the baseline gather for inputs of 2^31 elements or more. */
/* lo, hi: for columns 1 or 2 apart (fw_rows_avx2), the load masks of window row k of tile v:
 * all lanes for tiles whose rows lie in the image (row8), else the in-image columns (cs = 1:
 * lane l for column l; cs = 2: lane 2 l of the first 8 floats, lane 2 l - 8 of the next 8), none
 * for rows outside; built once per group of tiles for all its channels (built per channel, with
 * a branch per tile and row: 3x3 64 -> 64 on 8 x 56 x 56 8.0 -> 7.8 ms, Ice Lake-SP, one thread,
 * minima of 20 calls in 3 interleaved runs; about even with dilation 2 and at 512 x 7 x 7). */
typedef struct { __m256i idx; __m256 mask[36]; int all, masked; __m256i lo[6][8], hi[6][8]; } fw_plan_avx2;
FC_TARGET_AVX2 static void fw_gplan_avx2(const fw_tile *tl, fc_idx cs, fw_plan_avx2 *g) {
    int off[8], m[8], all = 1;
    for (int v = 0; v < 8; v++) off[v] = (int)(tl[v].xoff - tl[0].xoff);
    g->idx = _mm256_loadu_si256((const __m256i *)off);
    for (int k = 0; k < 36; k++) {
        for (int v = 0; v < 8; v++) {
            m[v] = ((tl[v].rows >> (k / 6)) & (tl[v].cols >> (k % 6)) & 1) ? -1 : 0;
            all &= m[v];
        }
        g->mask[k] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)m));
    }
    g->all = all != 0;
    g->masked = 0;
    for (int v = 0; v < 8; v++) g->masked |= !tl[v].row8;
    if (cs > 2 || !g->masked) return;
    const __m256i bits = cs == 1 ? _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 0, 0)
                                 : _mm256_setr_epi32(1, 0, 2, 0, 4, 0, 8, 0);
    const __m256i bits2 = _mm256_setr_epi32(16, 0, 32, 0, 0, 0, 0, 0);
    const __m256i z = _mm256_setzero_si256(), ones = _mm256_set1_epi32(-1);
    for (int v = 0; v < 8; v++) {
        const __m256i c = _mm256_set1_epi32(tl[v].cols);
        const __m256i clo = _mm256_cmpgt_epi32(_mm256_and_si256(c, bits), z);
        const __m256i chi = _mm256_cmpgt_epi32(_mm256_and_si256(c, bits2), z);
        for (int k = 0; k < 6; k++) {
            const int in = (tl[v].rows >> k) & 1;
            g->lo[k][v] = tl[v].row8 ? ones : in ? clo : z;
            g->hi[k][v] = tl[v].row8 ? ones : in ? chi : z;
        }
    }
}
FW_GATHER_SCALAR(avx2, 8)
/* Columns 1 or 2 apart (cs, the dilation along W): each lane's window row is one unaligned
 * 8-float load (cs = 2: two, and the even elements), from x or from a zero-padded copy for tiles
 * at the image border, and an 8 x 8 transpose turns the 8 lanes' rows into the 6 column vectors. Zen 3, 3x3-c64-56 on one thread: the input transform
 * took as long as the GEMM with hardware gathers (36 per channel and group of 8 tiles), half as
 * long with this (whole convolution 7% faster). */
FC_TARGET_AVX2 static inline __attribute__((always_inline)) __m256 fw_row_avx2(const float *p,
                                                                              fc_idx cs) {
    if (cs == 1) return _mm256_loadu_ps(p);
    /* cs = 2: the even elements of 16 floats */
    const __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
    return _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}
FC_TARGET_AVX2 static inline __attribute__((always_inline)) void fw_rows_avx2(
        const float *xc, const fw_tile *tl, fc_idx rs, fc_idx cs, const fw_plan_avx2 *g,
        fw_vec_avx2 *d) {
    /* Groups with tiles at the border: each window row of every tile one masked load (cs = 2:
     * two, of the even elements; zero outside the image; masked lanes are not read, so no
     * fault), with the plan's masks, instead of staging the window element by element: all 32
     * tiles of 512 x 7 x 7 are border tiles, and staging made the input transform 8% of that
     * convolution; with cs = 2 (dilation 2: 49% of the tiles of 8 x 64 x 56 x 56 padded by 2 are
     * border tiles) the staging loop took 28% of the convolution's samples (perf, Ice Lake-SP,
     * 1 thread). */
    const int masked = g->masked;
    const float *src[8];
    for (int v = 0; v < 8; v++) src[v] = xc + tl[v].xoff;
    for (int k = 0; k < 6; k++) {
        __m256 r[8];
        if (masked && cs == 1)
            for (int v = 0; v < 8; v++) r[v] = _mm256_maskload_ps(src[v] + k * rs, g->lo[k][v]);
        else if (masked) /* cs = 2 */
            for (int v = 0; v < 8; v++) {
                const __m256 lo = _mm256_maskload_ps(src[v] + k * rs, g->lo[k][v]);
                const __m256 hi = _mm256_maskload_ps(src[v] + k * rs + 8, g->hi[k][v]);
                r[v] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(lo, hi, 0x88),
                                                _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
            }
        else
            for (int v = 0; v < 8; v++) r[v] = fw_row_avx2(src[v] + k * rs, cs);
        const __m256 r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
        const __m256 r4 = r[4], r5 = r[5], r6 = r[6], r7 = r[7];
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        /* lanes 0-3: tiles 0-3 (from s0..s3), lanes 4-7: tiles 4-7 (s4..s7); column j of the
         * window: low halves for j < 4, high halves for j = 4, 5 */
        d[6 * k + 0] = (fw_vec_avx2)_mm256_permute2f128_ps(s0, s4, 0x20);
        d[6 * k + 1] = (fw_vec_avx2)_mm256_permute2f128_ps(s1, s5, 0x20);
        d[6 * k + 2] = (fw_vec_avx2)_mm256_permute2f128_ps(s2, s6, 0x20);
        d[6 * k + 3] = (fw_vec_avx2)_mm256_permute2f128_ps(s3, s7, 0x20);
        d[6 * k + 4] = (fw_vec_avx2)_mm256_permute2f128_ps(s0, s4, 0x31);
        d[6 * k + 5] = (fw_vec_avx2)_mm256_permute2f128_ps(s1, s5, 0x31);
    }
}
FC_TARGET_AVX2 static inline void fw_gather_avx2(const float *xc, const fw_tile *tl, fc_idx rs,
                                                 fc_idx cs, const fw_plan_avx2 *g,
                                                 fw_vec_avx2 *d) {
    const float *b = xc + tl[0].xoff;
    if (cs == 1) { /* constant cs: two specialised copies of the inlined loop */
        fw_rows_avx2(xc, tl, rs, 1, g, d);
    } else if (cs == 2) {
        fw_rows_avx2(xc, tl, rs, 2, g, d);
    } else if (g->all) {
        for (int k = 0; k < 6; k++)
            for (int l = 0; l < 6; l++)
                d[6 * k + l] = (fw_vec_avx2)_mm256_i32gather_ps(b + k * rs + l * cs, g->idx, 4);
    } else {
        for (int k = 0; k < 6; k++)
            for (int l = 0; l < 6; l++)
                d[6 * k + l] = (fw_vec_avx2)_mm256_mask_i32gather_ps(
                    _mm256_setzero_ps(), b + k * rs + l * cs, g->idx, g->mask[6 * k + l], 4);
    }
}

typedef struct { __m512i idx; __mmask16 mask[36]; int all; } fw_plan_avx512;
FC_TARGET_AVX512 static void fw_gplan_avx512(const fw_tile *tl, fc_idx cs, fw_plan_avx512 *g) {
    int off[16], all = 1;
    (void)cs;
    for (int v = 0; v < 16; v++) off[v] = (int)(tl[v].xoff - tl[0].xoff);
    g->idx = _mm512_loadu_si512((const void *)off);
    for (int k = 0; k < 36; k++) {
        unsigned m = 0;
        for (int v = 0; v < 16; v++)
            m |= (unsigned)((tl[v].rows >> (k / 6)) & (tl[v].cols >> (k % 6)) & 1) << v;
        g->mask[k] = (__mmask16)m;
        all &= m == 0xFFFFu;
    }
    g->all = all;
}
FW_GATHER_SCALAR(avx512, 16)
FC_TARGET_AVX512 static inline void fw_gather_avx512(const float *xc, const fw_tile *tl,
                                                     fc_idx rs, fc_idx cs,
                                                     const fw_plan_avx512 *g,
                                                     fw_vec_avx512 *d) {
    const float *b = xc + tl[0].xoff;
    if (g->all) {
        for (int k = 0; k < 6; k++)
            for (int l = 0; l < 6; l++)
                d[6 * k + l] = (fw_vec_avx512)_mm512_i32gather_ps(g->idx, b + k * rs + l * cs, 4);
    } else {
        for (int k = 0; k < 6; k++)
            for (int l = 0; l < 6; l++)
                d[6 * k + l] = (fw_vec_avx512)_mm512_mask_i32gather_ps(
                    _mm512_setzero_ps(), g->mask[6 * k + l], g->idx, b + k * rs + l * cs, 4);
    }
}
#endif

#endif
