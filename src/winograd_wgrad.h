/* Winograd grad-weight, F(3x3, 4x4), float32 and float64: the transforms of grad_y and of the
 * summed products, vectorised over tiles (grad_y) or channels (the weights), per instruction set.
 *
 * grad_w[f, c] = sum over images and 4x4 output tiles of the correlation of the tile's grad_y
 * block u (4x4) with its 6x6 input window d. By the transposition principle the forward's
 * F(4x4, 3x3) identity y = A^T [(G g) . (B^T d)] (over 6x6 with B^T, G, A^T of winograd_f43.h,
 * points 0, +-sqrt2, +-sqrt2/2) gives, per tile,
 *
 *     grad_w (3x3) = G^T [ (A u A^T) . (B^T d B) ] G
 *
 * so the input transform is the forward's (fw_input), grad_y's is A u A^T (4x4 -> 6x6), and the
 * kernel transform G^T M G runs once per (filter, channel) after M[p][f][c] = sum over tiles of
 * Ud[p][f][t] V[p][c][t] (36 GEMMs whose inner dimension is the tiles). Float32 error against a
 * float64 reference: 1.2e-6 .. 3.2e-6 relative to max |grad_w| at C = F = 64..512 (a NumPy model
 * of these sums; the tests bound it by 5e-5).
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

#define WG_DEFINE(SFX, T, VBYTES, TARGET)                                                          \
typedef T wg_vec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                   \
                                                                                                   \
/* u[4 i + j] lane v = tile v's grad_y at row i, column j of its 4x4 block (gf: one filter's      \
 * plane; rows rs apart, columns cs apart: a dilation sub-grid), zero past its vh x vw real      \
 * outputs (a partial tile, or a padding tile of a short block). */                                \
TARGET static inline void wg_dygather_##SFX(const T *gf, const fw_tile *tl, fc_idx rs, fc_idx cs,  \
                                            wg_vec_##SFX *u) {                                     \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    T buf[16][VL];                                                                                 \
    for (int v = 0; v < VL; v++) {                                                                 \
        const T *g = gf + tl[v].yoff;                                                              \
        const int vh = tl[v].vh, vw = tl[v].vw;                                                    \
        for (int i = 0; i < 4; i++)                                                                \
            for (int j = 0; j < 4; j++) buf[4 * i + j][v] = i < vh && j < vw ? g[i * rs + j * cs] : 0;\
    }                                                                                              \
    for (int k = 0; k < 16; k++) u[k] = *(const wg_vec_##SFX *)buf[k];                             \
}                                                                                                  \
                                                                                                   \
/* Ud[p][f][t] = (A u A^T)[p] of tile t < nT (a multiple of the lanes) and filter f < F, at        \
 * Ud + p FT + f nT + t; grad_y's filter planes are OHW apart, rows dh OW, columns dw. */          \
TARGET static void wg_dy_##SFX(const T *gy, fc_idx F, fc_idx OHW, fc_idx OW, fc_idx dh, fc_idx dw, \
                               const fw_tile *tiles, fc_idx nT, T *Ud, fc_idx FT) {                \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    V u[16], s[24], d[36];                                                                         \
    for (fc_idx t0 = 0; t0 < nT; t0 += VL) {                                                       \
        const fw_tile *tl = tiles + t0;                                                            \
        for (fc_idx f = 0; f < F; f++) {                                                           \
            wg_dygather_##SFX(gy + f * OHW, tl, dh * OW, dw, u);                                   \
            for (int j = 0; j < 4; j++) WG_A4(T, V, (u + j), 4, (s + j), 4);  /* A u: 6 x 4 */     \
            for (int p = 0; p < 6; p++) WG_A4(T, V, (s + 4 * p), 1, (d + 6 * p), 1); /* (.) A^T */ \
            T *dst = Ud + f * nT + t0;                                                             \
            for (int p = 0; p < 36; p++) *(V *)(dst + p * FT) = d[p];                              \
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
    T buf[36][VL];                                                                                 \
    const fc_idx HW = H * W, rs = dh * W;                                                          \
    for (fc_idx t0 = 0; t0 < nT; t0 += VL) {                                                       \
        const fw_tile *tl = tiles + t0;                                                            \
        for (fc_idx c = 0; c < C; c++) {                                                           \
            const T *xc = x + c * HW;                                                              \
            for (int v = 0; v < VL; v++) {                                                         \
                const int rows = tl[v].rows, cols = tl[v].cols;                                    \
                for (int k = 0; k < 6; k++)                                                        \
                    for (int l = 0; l < 6; l++)                                                    \
                        buf[6 * k + l][v] = ((rows >> k) & (cols >> l) & 1)                        \
                            ? xc[tl[v].xoff + k * rs + l * dw] : 0;                                \
            }                                                                                      \
            for (int k = 0; k < 36; k++) d[k] = *(const V *)buf[k];                                \
            for (int l = 0; l < 6; l++) WG_BT6(T, V, (d + l), 6, (t + l), 6);  /* B^T d */         \
            for (int i = 0; i < 6; i++) WG_BT6(T, V, (t + 6 * i), 1, (d + 6 * i), 1);  /* (.) B */ \
            T *dst = Vt + c * nT + t0;                                                             \
            for (int p = 0; p < 36; p++) *(V *)(dst + p * CT) = d[p];                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* One filter's weight gradients: dwf[9 c + k] = (G^T M G)[k] of M[p] = Mf[p PS + c], c < C       \
 * (taps k = 3 kh + kw, the layout of grad_w (F, C, 3, 3)); vectorised over channels. */           \
TARGET static void wg_kernel_##SFX(const T *Mf, fc_idx PS, fc_idx C, T *dwf) {                     \
    typedef wg_vec_##SFX V;                                                                        \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    V m[36], r[18], w[9];                                                                          \
    T buf[36][VL];                                                                                 \
    for (fc_idx c0 = 0; c0 < C; c0 += VL) {                                                        \
        const fc_idx nc = C - c0 < VL ? C - c0 : VL;                                               \
        if (nc == VL) {                                                                            \
            for (int p = 0; p < 36; p++) m[p] = *(const V *)(Mf + p * PS + c0);                    \
        } else {                                                                                   \
            for (int p = 0; p < 36; p++) {                                                         \
                for (int v = 0; v < VL; v++) buf[p][v] = v < nc ? Mf[p * PS + c0 + v] : 0;         \
                m[p] = *(const V *)buf[p];                                                         \
            }                                                                                      \
        }                                                                                          \
        for (int q = 0; q < 6; q++) WG_GT6(T, V, (m + q), 6, (r + q), 6);  /* G^T M: 3 x 6 */      \
        for (int k = 0; k < 3; k++) WG_GT6(T, V, (r + 6 * k), 1, (w + 3 * k), 1);  /* (.) G */     \
        for (int k = 0; k < 9; k++) *(V *)buf[k] = w[k];                                           \
        for (fc_idx v = 0; v < nc; v++)                                                            \
            for (int k = 0; k < 9; k++) dwf[9 * (c0 + v) + k] = buf[k][v];                         \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(WG_DEFINE)

static void wg_dy_float(int level, const float *gy, fc_idx F, fc_idx OHW, fc_idx OW, fc_idx dh,
                        fc_idx dw, const fw_tile *tiles, fc_idx nT, float *Ud, fc_idx FT) {
    FC_DISPATCH(wg_dy, float, gy, F, OHW, OW, dh, dw, tiles, nT, Ud, FT);
}
static void wg_dy_double(int level, const double *gy, fc_idx F, fc_idx OHW, fc_idx OW, fc_idx dh,
                         fc_idx dw, const fw_tile *tiles, fc_idx nT, double *Ud, fc_idx FT) {
    FC_DISPATCH(wg_dy, double, gy, F, OHW, OW, dh, dw, tiles, nT, Ud, FT);
}
static void wg_input_double(int level, const double *x, fc_idx C, fc_idx H, fc_idx W, fc_idx dh,
                            fc_idx dw, const fw_tile *tiles, fc_idx nT, double *Vt, fc_idx CT) {
    FC_DISPATCH(wg_input, double, x, C, H, W, dh, dw, tiles, nT, Vt, CT);
}
static void wg_kernel_float(int level, const float *Mf, fc_idx PS, fc_idx C, float *dwf) {
    FC_DISPATCH(wg_kernel, float, Mf, PS, C, dwf);
}
static void wg_kernel_double(int level, const double *Mf, fc_idx PS, fc_idx C, double *dwf) {
    FC_DISPATCH(wg_kernel, double, Mf, PS, C, dwf);
}

#endif
