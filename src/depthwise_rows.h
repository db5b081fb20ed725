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

/* Taps per pass of the grad-weight kernel: one vector accumulator each (3x3 in one pass over the
 * plane; AVX2's 16 registers hold them, a grad_y vector, an input vector and the bias sum). */
#define FC_DWG_TAPS 9
/* Output rows per flush of the float accumulators into double: each lane's float partial sum has
 * at most this many rows' terms (a 112-column row, 16 lanes: 7 a row). */
#define FC_DWG_ROWS 8

/* Depthwise grad-weight (and grad-bias) of one plane, stride 1 along W: for taps t in [t0, t1)
 * (t = kh * KW + kw, t1 - t0 <= FC_DWG_TAPS),
 *     acc[t] += sum over oh < OH, ow < OW of gy[oh * OW + ow] * x[(oh sh + kh dh) XW + ow + kw dw]
 * and with bias (not NULL) *bias += sum of gy. x: the zero-padded plane (rows XW apart, every tap
 * inside). Sums in float over FC_DWG_ROWS rows per lane (whole vectors; the columns past the last
 * whole vector in scalars), then in double: lanes in order, then the scalars. The order depends
 * on the shapes only. */
#define FC_DEFINE_DW_GRAD_WEIGHT(SFX, T, VBYTES, TARGET)                                           \
typedef double fc_dwdvec_##SFX __attribute__((vector_size(VBYTES * 8 / sizeof(T)), aligned(8)));   \
TARGET static void fc_depthwise_gw_plane_##SFX(const T *x, fc_idx XW, const T *gy, fc_idx OH,      \
                                              fc_idx OW, fc_idx KW, fc_idx t0, fc_idx t1,          \
                                              fc_idx sh, fc_idx dh, fc_idx dw, double *acc,        \
                                              double *bias) {                                      \
    typedef fc_dwvec_##SFX vec;                                                                    \
    typedef fc_dwdvec_##SFX dvec;                                                                  \
    enum { VL = VBYTES / sizeof(T), NT = FC_DWG_TAPS };                                            \
    const fc_idx nt = t1 - t0, full = OW / VL * VL;                                                \
    fc_idx toff[NT];                                                                               \
    for (fc_idx t = 0; t < NT; t++) {                                                              \
        const fc_idx tt = t0 + (t < nt ? t : nt - 1);                                              \
        toff[t] = tt / KW * dh * XW + tt % KW * dw;                                                \
    }                                                                                              \
    dvec dsum[NT + 1];                                                                             \
    double tail[NT + 1];                                                                           \
    for (int t = 0; t <= NT; t++) dsum[t] = (dvec){0}, tail[t] = 0;                                \
    for (fc_idx r0 = 0; r0 < OH; r0 += FC_DWG_ROWS) {                                              \
        const fc_idx r1 = OH - r0 < FC_DWG_ROWS ? OH : r0 + FC_DWG_ROWS;                           \
        vec a[NT + 1]; /* a[NT]: the bias sum */                                                   \
        for (int t = 0; t <= NT; t++) a[t] = (vec){0};                                             \
        for (fc_idx oh = r0; oh < r1; oh++) {                                                      \
            const T *g = gy + oh * OW, *xr = x + oh * sh * XW;                                     \
            for (fc_idx ow = 0; ow < full; ow += VL) {                                             \
                const vec gv = *(const vec *)(g + ow);                                             \
                a[NT] += gv;                                                                       \
                /* constant trip count: the accumulators stay in registers; taps past nt repeat  \
                 * the last and are dropped */                                                     \
                for (int t = 0; t < NT; t++) a[t] += gv * *(const vec *)(xr + toff[t] + ow);       \
            }                                                                                      \
            for (fc_idx ow = full; ow < OW; ow++) {                                                \
                tail[NT] += g[ow];                                                                 \
                for (int t = 0; t < nt; t++) tail[t] += (double)g[ow] * xr[toff[t] + ow];          \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t <= NT; t++) dsum[t] += __builtin_convertvector(a[t], dvec);              \
    }                                                                                              \
    for (int t = 0; t <= NT; t++) {                                                                \
        if (t >= nt && t < NT) continue;                                                           \
        double s = 0;                                                                              \
        for (int l = 0; l < VL; l++) s += dsum[t][l];                                              \
        s += tail[t];                                                                              \
        if (t == NT) {                                                                             \
            if (bias) *bias += s;                                                                  \
        } else                                                                                     \
            acc[t0 + t] += s;                                                                      \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_DEPTHWISE)
FC_SIMD_INSTANTIATE(FC_DEFINE_DW_GRAD_WEIGHT)

#define FC_DEFINE_DEPTHWISE_ENTRY(T)                                                               \
static void fc_depthwise_plane_##T(int level, const T *x, fc_idx XW, const T *w, fc_idx KH,        \
                                   fc_idx KW, T bias, T *y, fc_idx OH, fc_idx OW, fc_idx sh,       \
                                   fc_idx dh, fc_idx dw, int relu) {                               \
    FC_DISPATCH(fc_depthwise_plane, T, x, XW, w, KH, KW, bias, y, OH, OW, sh, dh, dw, relu);       \
}
FC_DEFINE_DEPTHWISE_ENTRY(float)
FC_DEFINE_DEPTHWISE_ENTRY(double)

#define FC_DEFINE_DW_GRAD_WEIGHT_ENTRY(T)                                                          \
static void fc_depthwise_gw_plane_##T(int level, const T *x, fc_idx XW, const T *gy, fc_idx OH,    \
                                      fc_idx OW, fc_idx KW, fc_idx t0, fc_idx t1, fc_idx sh,       \
                                      fc_idx dh, fc_idx dw, double *acc, double *bias) {           \
    FC_DISPATCH(fc_depthwise_gw_plane, T, x, XW, gy, OH, OW, KW, t0, t1, sh, dh, dw, acc, bias);   \
}
FC_DEFINE_DW_GRAD_WEIGHT_ENTRY(float)
FC_DEFINE_DW_GRAD_WEIGHT_ENTRY(double)

#endif
