/* Rows of an im2col tile: zeros where the tap reads padding, the input row between; and
 * col2im of one channel plane as a gather (fc_col2im_plane).
 * In C for `restrict`: Cython cannot say that dst and src never overlap, and without it the
 * compiler checks for overlap on every call, which on the short rows of small images (OW = 28:
 * 7168 rows per tile) cost more than the copy. */
#ifndef FASTCONV_IM2COL_ROWS_H
#define FASTCONV_IM2COL_ROWS_H

#include <stddef.h>

#include "simd.h"

#define FC_DEFINE_ROW(T)                                                                           \
static inline void fc_im2col_row_base_##T(T *restrict dst, const T *restrict src, ptrdiff_t lo,    \
                                          ptrdiff_t hi, ptrdiff_t n, ptrdiff_t stride) {           \
    for (ptrdiff_t i = 0; i < lo; i++) dst[i] = 0;                                                 \
    if (stride == 1) {                                                                             \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[i];                                       \
    } else if (stride == 2) { /* its own loop: a constant stride vectorises */                     \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[2 * i];                                   \
    } else {                                                                                       \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[i * stride];                              \
    }                                                                                              \
    for (ptrdiff_t i = hi; i < n; i++) dst[i] = 0;                                                 \
}
FC_DEFINE_ROW(float)
FC_DEFINE_ROW(double)
#undef FC_DEFINE_ROW

#ifdef FC_X86_DISPATCH
/* AVX-512, float32, strides 1 and 2: 16 elements per step, the row's ends by masked loads and
 * stores (masked-out elements are neither read nor written: no fault past the input); `rows`
 * rows at once (src and dst advancing by sstep and dstep), as a call per row of 28 elements
 * cost about as much as its copy. Stride 2 takes the even elements of two vectors in one
 * permute; the baseline loop (SSE2 shuffles) was a fifth of the stride-2 3x3 64 -> 128 forward
 * on 8 x 56 x 56 (perf, Ice Lake-SP, one thread). */
FC_TARGET_AVX512 static void fc_im2col_rows_avx512_float(float *restrict dst,
                                                         const float *restrict src, ptrdiff_t lo,
                                                         ptrdiff_t hi, ptrdiff_t n,
                                                         ptrdiff_t stride, ptrdiff_t rows,
                                                         ptrdiff_t sstep, ptrdiff_t dstep) {
    const __m512 zero = _mm512_setzero_ps();
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    if (n <= 32 && lo <= 16 && hi - lo <= 32 && n - hi <= 16) {
        /* rows of up to 32 (28 x 28 outputs): every mask computed once for all the rows (their
         * moves to mask registers were a third of the instructions with masks per step) */
        const ptrdiff_t k0 = hi - lo < 16 ? hi - lo : 16, k1 = hi - lo - k0;
        const ptrdiff_t e0 = 2 * k0 - 1, e1 = k1 > 0 ? 2 * k1 - 1 : 0;
        const __mmask16 mz = (__mmask16)((1u << lo) - 1), mt = (__mmask16)((1u << (n - hi)) - 1);
        const __mmask16 m0 = (__mmask16)((1u << k0) - 1), m1 = (__mmask16)((1u << k1) - 1);
        const __mmask16 a0 = (__mmask16)(e0 >= 16 ? 0xFFFFu : (1u << (e0 > 0 ? e0 : 0)) - 1);
        const __mmask16 b0 = (__mmask16)(e0 > 16 ? (1u << (e0 - 16)) - 1 : 0);
        const __mmask16 a1 = (__mmask16)(e1 >= 16 ? 0xFFFFu : (1u << e1) - 1);
        const __mmask16 b1 = (__mmask16)(e1 > 16 ? (1u << (e1 - 16)) - 1 : 0);
        for (ptrdiff_t r = 0; r < rows; r++, src += sstep, dst += dstep) {
            _mm512_mask_storeu_ps(dst, mz, zero);
            if (stride == 1) {
                _mm512_mask_storeu_ps(dst + lo, m0, _mm512_maskz_loadu_ps(m0, src + lo));
                _mm512_mask_storeu_ps(dst + lo + 16, m1,
                                      _mm512_maskz_loadu_ps(m1, src + lo + 16));
            } else {
                const float *s0 = src + 2 * lo;
                _mm512_mask_storeu_ps(dst + lo, m0, _mm512_permutex2var_ps(
                    _mm512_maskz_loadu_ps(a0, s0), even, _mm512_maskz_loadu_ps(b0, s0 + 16)));
                _mm512_mask_storeu_ps(dst + lo + 16, m1, _mm512_permutex2var_ps(
                    _mm512_maskz_loadu_ps(a1, s0 + 32), even,
                    _mm512_maskz_loadu_ps(b1, s0 + 48)));
            }
            _mm512_mask_storeu_ps(dst + hi, mt, zero);
        }
        return;
    }
    for (ptrdiff_t r = 0; r < rows; r++, src += sstep, dst += dstep) {
        for (ptrdiff_t i = 0; i < lo; i += 16) {
            const ptrdiff_t k = lo - i < 16 ? lo - i : 16;
            _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << k) - 1), zero);
        }
        for (ptrdiff_t i = lo; i < hi; i += 16) {
            const ptrdiff_t k = hi - i < 16 ? hi - i : 16;
            const __mmask16 m = (__mmask16)((1u << k) - 1);
            __m512 v;
            if (stride == 1) {
                v = _mm512_maskz_loadu_ps(m, src + i);
            } else { /* elements 2 i .. 2 (i + k - 1): 2 k - 1 of them */
                const ptrdiff_t e = 2 * k - 1;
                const __mmask16 ma = (__mmask16)(e >= 16 ? 0xFFFFu : (1u << e) - 1);
                const __mmask16 mb = (__mmask16)(e > 16 ? (1u << (e - 16)) - 1 : 0);
                v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(ma, src + 2 * i), even,
                                           _mm512_maskz_loadu_ps(mb, src + 2 * i + 16));
            }
            _mm512_mask_storeu_ps(dst + i, m, v);
        }
        for (ptrdiff_t i = hi; i < n; i += 16) {
            const ptrdiff_t k = n - i < 16 ? n - i : 16;
            _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << k) - 1), zero);
        }
    }
}
#endif

/* For r < rows: dst[r dstep:][:lo] = 0, dst[r dstep:][lo:hi] = src[r sstep:][lo * stride:hi *
 * stride:stride], dst[r dstep:][hi:n] = 0, by the kernel of SIMD `level` (simd.h; AVX-512 for
 * float32 with strides 1 and 2; the values are the same at any level). */
static inline void fc_im2col_rows_float(int level, float *restrict dst,
                                        const float *restrict src, ptrdiff_t lo, ptrdiff_t hi,
                                        ptrdiff_t n, ptrdiff_t stride, ptrdiff_t rows,
                                        ptrdiff_t sstep, ptrdiff_t dstep) {
#ifdef FC_X86_DISPATCH
    if (level == 2 && stride <= 2) {
        fc_im2col_rows_avx512_float(dst, src, lo, hi, n, stride, rows, sstep, dstep);
        return;
    }
#endif
    (void)level;
    for (ptrdiff_t r = 0; r < rows; r++)
        fc_im2col_row_base_float(dst + r * dstep, src + r * sstep, lo, hi, n, stride);
}
static inline void fc_im2col_rows_double(int level, double *restrict dst,
                                         const double *restrict src, ptrdiff_t lo, ptrdiff_t hi,
                                         ptrdiff_t n, ptrdiff_t stride, ptrdiff_t rows,
                                         ptrdiff_t sstep, ptrdiff_t dstep) {
    (void)level;
    for (ptrdiff_t r = 0; r < rows; r++)
        fc_im2col_row_base_double(dst + r * dstep, src + r * sstep, lo, hi, n, stride);
}

/* floor(a / b) for b > 0 and any a. */
static inline ptrdiff_t fc_floor_div(ptrdiff_t a, ptrdiff_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* dx (H x W, one channel of one image) = col2im of dcols (KH * KW rows of OH * OW, tap (kh, kw)
 * at row kh * KW + kw): dx[ih, iw] = sum of dcols[kh, kw][oh, ow] over the taps with
 * oh * sh - pt + kh * dh = ih and ow * sw - pl + kw * dw = iw, every element written.
 * With a column stride sw > 1 the taps add into `buf` (H rows of the sw column phases of a row of
 * dx, iw = j * sw + r at row ih, buf[(ih * sw + r) * ceil(W / sw) + j]), where each tap's row is a
 * contiguous run, and the rows are then interleaved into dx: the scatter this replaces (one
 * strided pass over dx per tap) ran a scalar read-modify-write per term, 28% of the stride-2 3x3
 * 64 -> 128 grad-input's time (perf, Ice Lake-SP). sw = 1 adds into dx itself. Each element gets
 * its terms in (kh, kw) order from zero, as the scatter's passes added them: bitwise the same
 * sums. Divisions only per tap (a division per row and tap cost more than the adds). */
#define FC_DEFINE_COL2IM(SFX, T, VBYTES, TARGET)                                                   \
TARGET static void fc_col2im_plane_##SFX(const T *restrict dcols, fc_idx OH, fc_idx OW,            \
                                         T *restrict dx, fc_idx H, fc_idx W, fc_idx KH,            \
                                         fc_idx KW, fc_idx sh, fc_idx sw, fc_idx pt, fc_idx pl,    \
                                         fc_idx dh, fc_idx dw, T *restrict buf) {                  \
    const fc_idx WP = (W + sw - 1) / sw, RW = sw * WP, OHW = OH * OW;                              \
    T *restrict plane = sw == 1 ? dx : buf; /* H rows of RW */                                     \
    for (fc_idx i = 0; i < H * RW; i++) plane[i] = 0;                                              \
    for (fc_idx kh = 0; kh < KH; kh++) {                                                           \
        const fc_idx offh = kh * dh - pt; /* ih = oh * sh + offh */                                \
        const fc_idx oh_lo = -fc_floor_div(offh, sh) > 0 ? -fc_floor_div(offh, sh) : 0;           \
        const fc_idx oh_end = fc_floor_div(H - 1 - offh, sh) + 1;                                  \
        const fc_idx oh_hi = oh_end < OH ? oh_end : OH;                                            \
        for (fc_idx kw = 0; kw < KW; kw++) {                                                       \
            /* iw = (ow + q) * sw + r: phase r, index ow + q in it */                              \
            const fc_idx off = kw * dw - pl, q = fc_floor_div(off, sw), r = off - q * sw;          \
            const fc_idx lo = -q > 0 ? -q : 0, end = (W - r + sw - 1) / sw - q;                    \
            const fc_idx hi = end < OW ? end : OW;                                                 \
            const T *restrict src = dcols + (kh * KW + kw) * OHW;                                  \
            for (fc_idx oh = oh_lo; oh < oh_hi; oh++) {                                            \
                T *restrict dst = plane + (oh * sh + offh) * RW + r * WP + q;                      \
                const T *restrict s = src + oh * OW;                                               \
                for (fc_idx ow = lo; ow < hi; ow++) dst[ow] += s[ow];                              \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    if (sw == 2) { /* its own loop: a constant stride vectorises */                               \
        for (fc_idx ih = 0; ih < H; ih++) {                                                        \
            const T *restrict even = buf + ih * RW, *restrict odd = even + WP;                     \
            T *restrict out = dx + ih * W;                                                         \
            for (fc_idx j = 0; j < W / 2; j++) {                                                   \
                out[2 * j] = even[j];                                                              \
                out[2 * j + 1] = odd[j];                                                           \
            }                                                                                      \
            if (W % 2) out[W - 1] = even[WP - 1];                                                  \
        }                                                                                          \
    } else if (sw > 2) {                                                                           \
        for (fc_idx ih = 0; ih < H; ih++)                                                          \
            for (fc_idx r = 0; r < sw; r++)                                                        \
                for (fc_idx j = 0; j * sw + r < W; j++)                                            \
                    dx[ih * W + j * sw + r] = buf[ih * RW + r * WP + j];                           \
    }                                                                                              \
}
FC_SIMD_INSTANTIATE(FC_DEFINE_COL2IM)
#undef FC_DEFINE_COL2IM

#define FC_DEFINE_COL2IM_ENTRY(T)                                                                  \
static void fc_col2im_plane_##T(int level, const T *dcols, fc_idx OH, fc_idx OW, T *dx, fc_idx H,  \
                                fc_idx W, fc_idx KH, fc_idx KW, fc_idx sh, fc_idx sw, fc_idx pt,   \
                                fc_idx pl, fc_idx dh, fc_idx dw, T *buf) {                         \
    FC_DISPATCH(fc_col2im_plane, T, dcols, OH, OW, dx, H, W, KH, KW, sh, sw, pt, pl, dh, dw, buf); \
}
FC_DEFINE_COL2IM_ENTRY(float)
FC_DEFINE_COL2IM_ENTRY(double)
#undef FC_DEFINE_COL2IM_ENTRY

#endif
