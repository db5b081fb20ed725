/* One row of an im2col tile: zeros where the tap reads padding, the input row between; and
 * col2im of one channel plane as a gather (fc_col2im_plane).
 * In C for `restrict`: Cython cannot say that dst and src never overlap, and without it the
 * compiler checks for overlap on every call, which on the short rows of small images (OW = 28:
 * 7168 rows per tile) cost more than the copy. */
#ifndef FASTCONV_IM2COL_ROWS_H
#define FASTCONV_IM2COL_ROWS_H

#include <stddef.h>

#include "simd.h"

#define FC_DEFINE_ROW(T)                                                                           \
static inline void fc_im2col_row_##T(T *restrict dst, const T *restrict src, ptrdiff_t lo,         \
                                     ptrdiff_t hi, ptrdiff_t n, ptrdiff_t stride) {                \
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
