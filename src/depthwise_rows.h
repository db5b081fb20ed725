/* SIMD depthwise forward for stride 1 along W: one output plane from one (zero-padded) input
 * plane, accumulating all KH x KW taps of a run of output columns in registers before one store
 * (the scalar kernel adds each tap into the output row in memory: a load and a store per
 * multiply-add). Compiled per instruction set (simd.h). Taps are summed in (kh, kw) order after
 * the bias, for every column: results do not depend on the thread count.
 */
#ifndef FASTCONV_DEPTHWISE_ROWS_H
#define FASTCONV_DEPTHWISE_ROWS_H

#include "simd.h"

/* Vectors per register block of output columns. */
#define FC_DW_VECTORS 4

/* y[oh, ow] = bias + sum over taps of w[kh, kw] * x[oh * sh + kh * dh, ow + kw * dw] (then
 * ReLU), for oh < OH, ow < OW; x: rows XW apart, every tap inside (the caller pads). */
#define FC_DEFINE_DEPTHWISE(SFX, T, VBYTES, TARGET)                                                \
typedef T fc_dwvec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                 \
TARGET static void fc_depthwise_plane_##SFX(const T *x, fc_idx XW, const T *w, fc_idx KH,          \
                                           fc_idx KW, T bias, T *y, fc_idx OH, fc_idx OW,          \
                                           fc_idx sh, fc_idx dh, fc_idx dw, int relu) {            \
    typedef fc_dwvec_##SFX vec;                                                                    \
    enum { VL = VBYTES / sizeof(T), RUN = FC_DW_VECTORS * VL };                                    \
    const vec zero = {0};                                                                          \
    for (fc_idx oh = 0; oh < OH; oh++) {                                                           \
        const T *xr = x + oh * sh * XW;                                                            \
        T *yr = y + oh * OW;                                                                       \
        fc_idx ow = 0;                                                                             \
        for (; ow + RUN <= OW; ow += RUN) {                                                        \
            vec acc[FC_DW_VECTORS];                                                                \
            for (int v = 0; v < FC_DW_VECTORS; v++) acc[v] = zero + bias;                          \
            for (fc_idx kh = 0; kh < KH; kh++)                                                     \
                for (fc_idx kw = 0; kw < KW; kw++) {                                               \
                    const vec wv = zero + w[kh * KW + kw];                                         \
                    const T *xt = xr + kh * dh * XW + kw * dw + ow;                                \
                    for (int v = 0; v < FC_DW_VECTORS; v++)                                        \
                        acc[v] += wv * *(const vec *)(xt + v * VL);                                \
                }                                                                                  \
            memcpy(yr + ow, acc, sizeof acc);                                                      \
            if (relu) /* v <= 0 is false for NaN: the fused ReLU keeps NaN. */                     \
                for (int i = 0; i < RUN; i++) yr[ow + i] = yr[ow + i] <= 0 ? (T)0 : yr[ow + i];    \
        }                                                                                          \
        for (; ow + VL <= OW; ow += VL) { /* the rest of the row, one vector at a time */          \
            vec acc = zero + bias;                                                                 \
            for (fc_idx kh = 0; kh < KH; kh++)                                                     \
                for (fc_idx kw = 0; kw < KW; kw++)                                                 \
                    acc += (zero + w[kh * KW + kw])                                                \
                           * *(const vec *)(xr + kh * dh * XW + kw * dw + ow);                     \
            memcpy(yr + ow, &acc, sizeof acc);                                                     \
            if (relu)                                                                              \
                for (int i = 0; i < VL; i++) yr[ow + i] = yr[ow + i] <= 0 ? (T)0 : yr[ow + i];     \
        }                                                                                          \
        for (; ow < OW; ow++) {                                                                    \
            T acc = bias;                                                                          \
            for (fc_idx kh = 0; kh < KH; kh++)                                                     \
                for (fc_idx kw = 0; kw < KW; kw++)                                                 \
                    acc += w[kh * KW + kw] * xr[kh * dh * XW + kw * dw + ow];                      \
            yr[ow] = relu && acc <= 0 ? (T)0 : acc;                                                \
        }                                                                                          \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_DEPTHWISE)

#define FC_DEFINE_DEPTHWISE_ENTRY(T)                                                               \
static void fc_depthwise_plane_##T(int level, const T *x, fc_idx XW, const T *w, fc_idx KH,        \
                                   fc_idx KW, T bias, T *y, fc_idx OH, fc_idx OW, fc_idx sh,       \
                                   fc_idx dh, fc_idx dw, int relu) {                               \
    FC_DISPATCH(fc_depthwise_plane, T, x, XW, w, KH, KW, bias, y, OH, OW, sh, dh, dw, relu);       \
}
FC_DEFINE_DEPTHWISE_ENTRY(float)
FC_DEFINE_DEPTHWISE_ENTRY(double)

#endif
