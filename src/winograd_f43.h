/* Winograd F(4x4, 3x3) for float32: the transforms, vectorised over tiles (over (channel,
 * filter) pairs for the weight transform), and the GEMM of transformed weights and inputs,
 * compiled per instruction set (simd.h).
 *
 * Y = A^T [ (G g G^T) . (B^T d B) ] A  per 6x6 input tile d and 3x3 filter g, with the points
 * 0, +-sqrt2, +-sqrt2/2 and infinity (ncnn's choice). The textbook points 0, +-1, +-2 give 5.5e-6 to
 * 1.6e-5 relative error in float32 (C = 64..512), above the 1e-5 bar; these give 1.4e-6 to 2.7e-6
 * (tools/winograd_f43.py derives the matrices, checks the identity in exact arithmetic and
 * measures the float32 error):
 *
 *   B^T = [ 1     0      -5/2   0      1  0 ]     G = [  1     0       0    ]
 *         [ 0  -s2/2     -1/2   s2     1  0 ]         [  1/6   s2/6    1/3  ]
 *         [ 0   s2/2     -1/2  -s2     1  0 ]         [  1/6  -s2/6    1/3  ]
 *         [ 0  -s2       -2     s2/2   1  0 ]         [ -2/3  -s2/3   -1/3  ]
 *         [ 0   s2       -2    -s2/2   1  0 ]         [ -2/3   s2/3   -1/3  ]
 *         [ 0   1         0    -5/2    0  1 ]         [  0     0       1    ]
 *
 *   A^T = [ 1  1      1      1      1     0 ]        (s2 = sqrt 2)
 *         [ 0  s2    -s2     s2/2  -s2/2  0 ]
 *         [ 0  2      2      1/2    1/2   0 ]
 *         [ 0  2s2   -2s2    s2/4  -s2/4  1 ]
 *
 * The rows pair up (+a, -a): each pair shares an even part and an odd part, which the code below
 * computes once (even +- odd).
 *
 * Non-finite inputs: a NaN or inf anywhere in a tile's 6x6 window reaches all 16 outputs of the
 * tile (as NaN or inf), not only those whose 3x3 window holds it. Every output that the exact
 * convolution makes non-finite is non-finite here too (nothing is lost), but some finite ones turn
 * NaN: callers that need exact IEEE propagation take another path for non-finite data.
 */
#ifndef FASTCONV_WINOGRAD_F43_H
#define FASTCONV_WINOGRAD_F43_H

#include "simd.h"

#define FW_S2 1.41421356237309504880f
#define FW_S2_2 0.70710678118654752440f
#define FW_S2_4 0.35355339059327376220f
#define FW_2S2 2.82842712474619009760f

/* Geometry of one tile of a block: where its 6x6 input window starts (offset of (ih0, iw0) in x,
 * which may lie outside the image), which window rows and columns lie inside (bit k: row k), and
 * where its 4x4 output block starts in y with how many rows and columns are real. */
typedef struct {
    fc_idx xoff;  /* n * C * H * W + ih0 * W + iw0 (may be negative; only in-range taps are read) */
    fc_idx yoff;  /* n * F * OH * OW + oh0 * OW + ow0 */
    int rows, cols; /* in-image window rows / columns as bit masks; 63 and 63: no bound checks */
    int vh, vw;     /* real output rows / columns, 1..4; 0 for a padding tile of a short block */
    int row8;       /* every window row and the 8 floats from its start lie in the image */
} fw_tile;

/* 6-point B^T on vectors: out[i * so] = sum_k B^T[i][k] in[k * si]. */
#define FW_BT6(V, in, si, out, so)                                                                 \
    do {                                                                                           \
        const V d0 = in[0 * si], d1 = in[1 * si], d2 = in[2 * si];                                 \
        const V d3 = in[3 * si], d4 = in[4 * si], d5 = in[5 * si];                                 \
        const V e1 = d4 - 0.5f * d2, o1 = FW_S2 * d3 - FW_S2_2 * d1;                               \
        const V e2 = d4 - 2.0f * d2, o2 = FW_S2_2 * d3 - FW_S2 * d1;                               \
        out[0 * so] = (d0 + d4) - 2.5f * d2;                                                       \
        out[1 * so] = e1 + o1;                                                                     \
        out[2 * so] = e1 - o1;                                                                     \
        out[3 * so] = e2 + o2;                                                                     \
        out[4 * so] = e2 - o2;                                                                     \
        out[5 * so] = (d1 + d5) - 2.5f * d3;                                                       \
    } while (0)

/* 6 -> 4 point A^T: out[i * so] = sum_k A^T[i][k] in[k * si]. */
#define FW_AT6(V, in, si, out, so)                                                                 \
    do {                                                                                           \
        const V m0 = in[0 * si], m5 = in[5 * si];                                                  \
        const V a = in[1 * si] + in[2 * si], b = in[1 * si] - in[2 * si];                          \
        const V c = in[3 * si] + in[4 * si], e = in[3 * si] - in[4 * si];                          \
        out[0 * so] = (m0 + a) + c;                                                                \
        out[1 * so] = FW_S2 * b + FW_S2_2 * e;                                                     \
        out[2 * so] = 2.0f * a + 0.5f * c;                                                         \
        out[3 * so] = (FW_2S2 * b + FW_S2_4 * e) + m5;                                             \
    } while (0)

/* 3 -> 6 point G: out[i * so] = sum_k G[i][k] in[k * si]. */
#define FW_G3(V, in, si, out, so)                                                                  \
    do {                                                                                           \
        const V g0 = in[0 * si], g1 = in[1 * si], g2 = in[2 * si];                                 \
        const V e1 = (1.0f / 6) * g0 + (1.0f / 3) * g2, o1 = (FW_S2 / 6) * g1;                     \
        const V e2 = (-2.0f / 3) * g0 - (1.0f / 3) * g2, o2 = (FW_S2 / 3) * g1;                    \
        out[0 * so] = g0;                                                                          \
        out[1 * so] = e1 + o1;                                                                     \
        out[2 * so] = e1 - o1;                                                                     \
        out[3 * so] = e2 - o2;                                                                     \
        out[4 * so] = e2 + o2;                                                                     \
        out[5 * so] = g2;                                                                          \
    } while (0)

#include "winograd_io.h" /* gathers and stores of tiles, per instruction set */

/* Floats from one point's matrix to the next in V and M: rows x T plus one cache line, so that
 * the 36 matrices an input/output transform touches at once do not all fall in the same L1 set
 * (with C * T * 4 bytes a multiple of 4 KiB they did: 1.6-2.5x slower). */
#define FW_PSTRIDE(rows, T) ((rows) * (T) + 16)

/* The same for U: floats from one point's FW_FR x C block to the next (at C = 512 the unpadded
 * 12 KiB stride made the weight transform's stores miss L1 set by set). */
#define FW_USTRIDE(C) (FW_FR * (C) + 16)

/* Filters per register block of fw_gemm (6 x 2 vector accumulators: 12 of the 16 registers). */
#define FW_FR 6

#define FW_DEFINE(SFX, VBYTES, TARGET)                                                             \
enum { FW_VL_##SFX = VBYTES / 4 };                                                                 \
                                                                                                   \
/* U = (G g G^T)[p] of filter f, channel c, packed for fw_gemm: U[f / FW_FR][p][c][f % FW_FR]      \
 * (Fp = F rounded up to FW_FR filters, the extra ones zero), for filter blocks [b0, b1); tap k  \
 * (kh * 3 + kw) of filter f, channel c is w[f sf + c sc + k sk]: (9 C, 9, 1) for weights (F, C, 3, \
 * 3), or for grad-input (9, 9 F, -1) from 8 floats into the forward weights (C, F, 3, 3). Vectorised over the FW_FR * C (channel, filter) pairs of a block in their U order, so     \
 * each point's results are stored as whole vectors (scattering them cost more than the GEMM at    \
 * C = 512); the 9 taps of a vector's pairs are gathered. */                                       \
TARGET static void fw_weights_##SFX(const float *w, fc_idx F, fc_idx C, fc_idx sf, fc_idx sc,      \
                                   fc_idx sk, fc_idx b0, fc_idx b1, float *U) {                    \
    typedef fw_vec_##SFX V;                                                                        \
    enum { VL = FW_VL_##SFX };                                                                     \
    const fc_idx Q = FW_FR * C, QS = FW_USTRIDE(C); /* pairs per block; U's stride per point */     \
    V g[9], t[18], u[36];                                                                          \
    int idx[VL];                                                                                   \
    float lanes[9][VL];                                                                            \
    for (fc_idx fb = b0; fb < b1; fb++) {                                                          \
        const float *wb = w + fb * FW_FR * sf;                                                     \
        float *Ub = U + fb * 36 * QS;                                                              \
        const int full = fb * FW_FR + FW_FR <= F;                                                  \
        for (fc_idx q0 = 0; q0 < Q; q0 += VL) {                                                    \
            const fc_idx nq = Q - q0 < VL ? Q - q0 : VL;                                           \
            for (fc_idx v = 0; v < VL; v++) {                                                      \
                const fc_idx q = q0 + (v < nq ? v : 0), c = q / FW_FR, r = q % FW_FR;              \
                idx[v] = (int)(r * sf + c * sc); /* (filter fb * FW_FR + r, channel c) */          \
            }                                                                                      \
            if (full && nq == VL) {                                                                \
                fw_gather9_##SFX(wb, idx, sk, g);                                                  \
            } else {                                                                               \
                for (fc_idx v = 0; v < VL; v++) {                                                  \
                    const fc_idx q = q0 + v;                                                       \
                    const int ok = v < nq && fb * FW_FR + q % FW_FR < F;                           \
                    for (int k = 0; k < 9; k++) lanes[k][v] = ok ? wb[idx[v] + k * sk] : 0.0f;     \
                }                                                                                  \
                for (int k = 0; k < 9; k++) g[k] = *(const V *)lanes[k];                           \
            }                                                                                      \
            for (int j = 0; j < 3; j++) FW_G3(V, (g + j), 3, (t + j), 3);  /* G g: 6 x 3 */        \
            for (int i = 0; i < 6; i++) FW_G3(V, (t + 3 * i), 1, (u + 6 * i), 1);  /* (G g) G^T */ \
            if (nq == VL) {                                                                        \
                for (int p = 0; p < 36; p++) *(V *)(Ub + p * QS + q0) = u[p];                      \
            } else {                                                                               \
                for (int p = 0; p < 36; p++) {                                                     \
                    *(V *)lanes[0] = u[p];                                                         \
                    for (fc_idx v = 0; v < nq; v++) Ub[p * QS + q0 + v] = lanes[0][v];             \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* V[p][c][t] = (B^T d B)[p] of tile t < T (a multiple of VL) and channel c < C, at Vt + p CT +    \
 * c T + t (CT: FW_PSTRIDE of all the block's channels). dh, dw: the                               \
 * dilation (window rows dh apart, columns dw apart: one sub-grid of a dilated convolution). */    \
TARGET static void fw_input_##SFX(const float *x, fc_idx C, fc_idx H, fc_idx W, fc_idx dh,         \
                                 fc_idx dw, const fw_tile *tiles, fc_idx T, float *Vt, fc_idx CT) {\
    typedef fw_vec_##SFX V;                                                                        \
    enum { VL = FW_VL_##SFX };                                                                     \
    V d[36], t[36];                                                                                \
    fw_plan_##SFX plan;                                                                            \
    const fc_idx HW = H * W;                                                                       \
    for (fc_idx t0 = 0; t0 < T; t0 += VL) {                                                        \
        const fw_tile *tl = tiles + t0;                                                            \
        fw_gplan_##SFX(tl, dw, &plan);                                                             \
        for (fc_idx c = 0; c < C; c++) {                                                           \
            fw_gather_##SFX(x + c * HW, tl, dh * W, dw, &plan, d);                                 \
            for (int l = 0; l < 6; l++) FW_BT6(V, (d + l), 6, (t + l), 6);  /* B^T d */            \
            for (int i = 0; i < 6; i++) FW_BT6(V, (t + 6 * i), 1, (d + 6 * i), 1);  /* (.) B */    \
            float *dst = Vt + c * T + t0;                                                          \
            for (int p = 0; p < 36; p++) *(V *)(dst + p * CT) = d[p];                   \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* y at each tile's outputs = (A^T M A) (+ bias) (then ReLU) from M[p][f][t], f < F, t < T; M      \
 * holds FM >= F rows per point. Returns whether an output before bias and ReLU was inf or NaN  \
 * (their sums times 0 are kept: 0 for finite ones, NaN otherwise): an inf or NaN in a tile's      \
 * input window or in a weight makes outputs of the tile inf or NaN, so the caller can compute    \
 * such inputs on an exact path without a pass over them first (and overflowing finite sums    \
 * only send it there too). */                                                                    \
TARGET static int fw_output_##SFX(const float *M, fc_idx FM, fc_idx F, fc_idx T, const float *bias,\
                                  int relu, const fw_tile *tiles, float *y, fc_idx OHW,            \
                                  fc_idx OW, fc_idx dh, fc_idx dw) {                               \
    typedef fw_vec_##SFX V;                                                                        \
    typedef int IV __attribute__((vector_size(sizeof(V))));                                        \
    enum { VL = FW_VL_##SFX };                                                                     \
    V m[36], t[24], o[16], chk = {0};                                                              \
    const fc_idx FT = FW_PSTRIDE(FM, T);                                                           \
    for (fc_idx t0 = 0; t0 < T; t0 += VL) {                                                        \
        const fw_tile *tl = tiles + t0;                                                            \
        if (tl[0].vh == 0) break; /* padding tiles come last */                                    \
        for (fc_idx f = 0; f < F; f++) {                                                           \
            const float *src = M + f * T + t0;                                                     \
            for (int p = 0; p < 36; p++) m[p] = *(const V *)(src + p * FT);                        \
            for (int j = 0; j < 6; j++) FW_AT6(V, (m + j), 6, (t + j), 6);  /* A^T m: 4 x 6 */     \
            for (int i = 0; i < 4; i++) FW_AT6(V, (t + 6 * i), 1, (o + 4 * i), 1);  /* (.) A */    \
            const float b = bias ? bias[f] : 0.0f;                                                 \
            V s8[8];                                                                               \
            for (int k = 0; k < 8; k++) s8[k] = o[k] + o[k + 8];                                   \
            for (int k = 0; k < 4; k++) s8[k] += s8[k + 4];                                        \
            chk += ((s8[0] + s8[1]) + (s8[2] + s8[3])) * 0.0f;                                     \
            for (int k = 0; k < 16; k++) {                                                         \
                o[k] += b;                                                                         \
                /* o <= 0 is false for NaN: ReLU keeps NaN, as the other paths do. */              \
                if (relu) o[k] = (V)((IV)o[k] & ~(IV)(o[k] <= 0.0f));                              \
            }                                                                                      \
            fw_store_##SFX(o, tl, y + f * OHW, OW, dh, dw);                                        \
        }                                                                                          \
    }                                                                                              \
    int bad = 0;                                                                                   \
    for (int k = 0; k < VL; k++) bad |= chk[k] != chk[k];                                          \
    return bad;                                                                                    \
}                                                                                                  \
                                                                                                   \
/* For filters f in [f0, f1) (multiples of FW_FR; F filters are real), in groups of G blocks of    \
 * FW_FR filters: M[p][f][t] = sum over c < C of U[p][f][c] V[p][c][t] for the 36 points p and     \
 * t < T (a multiple of VL), then the output transform of the group. The group keeps its M         \
 * (36 x G FW_FR x T, the caller sizes G for L2) in cache on its way to the output transform, and  \
 * each V[p] (C x T) is read once per group (a group of one block re-read all of V, from L3 at     \
 * C = 512, for every 6 filters). FW_FR x 2 vector accumulators; U is packed once per call and     \
 * V is written by fw_input in the layout read here, so nothing is repacked per block (OpenBLAS's  \
 * packing of U cost more than its multiply at C = 256). Each element is summed over c in order    \
 * by one call: no dependence on the thread count. M: 36 * FW_PSTRIDE(G * FW_FR, T) floats. */     \
TARGET static int fw_gemm_##SFX(const float *U, fc_idx F, fc_idx C, const float *Vt, fc_idx T,     \
                                fc_idx f0, fc_idx f1, fc_idx G, float *M, const float *bias,       \
                                int relu, const fw_tile *tiles, float *y, fc_idx OHW, fc_idx OW,   \
                                fc_idx dh, fc_idx dw) {                                            \
    typedef fw_vec_##SFX V;                                                                        \
    enum { VL = FW_VL_##SFX };                                                                     \
    int bad = 0;                                                                                   \
    for (fc_idx g0 = f0; g0 < f1; g0 += G * FW_FR) {                                               \
        const fc_idx g1 = f1 - g0 < G * FW_FR ? f1 : g0 + G * FW_FR;                               \
        for (int p = 0; p < 36; p++) {                                                             \
            const float *Vp = Vt + p * FW_PSTRIDE(C, T);                                           \
            for (fc_idx f = g0; f < g1; f += FW_FR) {                                              \
                const float *u = U + ((f / FW_FR) * 36 + p) * FW_USTRIDE(C);                        \
                float *m = M + p * FW_PSTRIDE(G * FW_FR, T) + (f - g0) * T;                        \
                fc_idx t = 0;                                                                      \
                for (; t + 2 * VL <= T; t += 2 * VL) {                                             \
                    V a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0};            \
                    V a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0};            \
                    const float *v = Vp + t;                                                       \
                    for (fc_idx c = 0; c < C; c++) {                                               \
                        const V v0 = *(const V *)(v + c * T), v1 = *(const V *)(v + c * T + VL);   \
                        const float *uc = u + c * FW_FR;                                           \
                        a00 += uc[0] * v0; a01 += uc[0] * v1;                                      \
                        a10 += uc[1] * v0; a11 += uc[1] * v1;                                      \
                        a20 += uc[2] * v0; a21 += uc[2] * v1;                                      \
                        a30 += uc[3] * v0; a31 += uc[3] * v1;                                      \
                        a40 += uc[4] * v0; a41 += uc[4] * v1;                                      \
                        a50 += uc[5] * v0; a51 += uc[5] * v1;                                      \
                    }                                                                              \
                    *(V *)(m + 0 * T + t) = a00; *(V *)(m + 0 * T + t + VL) = a01;                 \
                    *(V *)(m + 1 * T + t) = a10; *(V *)(m + 1 * T + t + VL) = a11;                 \
                    *(V *)(m + 2 * T + t) = a20; *(V *)(m + 2 * T + t + VL) = a21;                 \
                    *(V *)(m + 3 * T + t) = a30; *(V *)(m + 3 * T + t + VL) = a31;                 \
                    *(V *)(m + 4 * T + t) = a40; *(V *)(m + 4 * T + t + VL) = a41;                 \
                    *(V *)(m + 5 * T + t) = a50; *(V *)(m + 5 * T + t + VL) = a51;                 \
                }                                                                                  \
                if (t < T) { /* one vector of columns left */                                      \
                    V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0};                  \
                    const float *v = Vp + t;                                                       \
                    for (fc_idx c = 0; c < C; c++) {                                               \
                        const V v0 = *(const V *)(v + c * T);                                      \
                        const float *uc = u + c * FW_FR;                                           \
                        a0 += uc[0] * v0; a1 += uc[1] * v0; a2 += uc[2] * v0;                      \
                        a3 += uc[3] * v0; a4 += uc[4] * v0; a5 += uc[5] * v0;                      \
                    }                                                                              \
                    *(V *)(m + 0 * T + t) = a0; *(V *)(m + 1 * T + t) = a1;                        \
                    *(V *)(m + 2 * T + t) = a2; *(V *)(m + 3 * T + t) = a3;                        \
                    *(V *)(m + 4 * T + t) = a4; *(V *)(m + 5 * T + t) = a5;                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        const fc_idx nf = F - g0 < g1 - g0 ? F - g0 : g1 - g0;                                     \
        if (nf > 0)                                                                                \
            bad |= fw_output_##SFX(M, G * FW_FR, nf, T, bias ? bias + g0 : NULL, relu, tiles,      \
                                   y + g0 * OHW, OHW, OW, dh, dw);                                 \
    }                                                                                              \
    return bad;                                                                                    \
}

#ifdef FC_X86_DISPATCH
FW_DEFINE(avx512, 64, FC_TARGET_AVX512)
FW_DEFINE(avx2, 32, FC_TARGET_AVX2)
#endif
FW_DEFINE(base, 16, )

#ifdef FC_X86_DISPATCH
#define FW_DISPATCH(KERNEL, ...)                                                                   \
    do {                                                                                           \
        if (level == 2) KERNEL##_avx512(__VA_ARGS__);                                              \
        else if (level == 1) KERNEL##_avx2(__VA_ARGS__);                                           \
        else KERNEL##_base(__VA_ARGS__);                                                           \
    } while (0)
#else
#define FW_DISPATCH(KERNEL, ...) KERNEL##_base(__VA_ARGS__)
#endif
/* The same for kernels that return an int. */
#ifdef FC_X86_DISPATCH
#define FW_DISPATCH_INT(KERNEL, ...)                                                               \
    (level == 2 ? KERNEL##_avx512(__VA_ARGS__)                                                     \
     : level == 1 ? KERNEL##_avx2(__VA_ARGS__) : KERNEL##_base(__VA_ARGS__))
#else
#define FW_DISPATCH_INT(KERNEL, ...) KERNEL##_base(__VA_ARGS__)
#endif

/* Tiles per vector at `level`: blocks hold a multiple of it. */
static int fw_lanes(int level) { return fc_vector_bytes(level) / 4; }

static void fw_weights(int level, const float *w, fc_idx F, fc_idx C, fc_idx sf, fc_idx sc,
                       fc_idx sk, fc_idx b0, fc_idx b1, float *U) {
    FW_DISPATCH(fw_weights, w, F, C, sf, sc, sk, b0, b1, U);
}
static void fw_input(int level, const float *x, fc_idx C, fc_idx H, fc_idx W, fc_idx dh,
                     fc_idx dw, const fw_tile *tiles, fc_idx T, float *Vt, fc_idx CT) {
    FW_DISPATCH(fw_input, x, C, H, W, dh, dw, tiles, T, Vt, CT);
}
static int fw_gemm(int level, const float *U, fc_idx F, fc_idx C, const float *Vt, fc_idx T,
                   fc_idx f0, fc_idx f1, fc_idx G, float *M, const float *bias, int relu,
                   const fw_tile *tiles, float *y, fc_idx OHW, fc_idx OW, fc_idx dh, fc_idx dw) {
    return FW_DISPATCH_INT(fw_gemm, U, F, C, Vt, T, f0, f1, G, M, bias, relu, tiles, y, OHW, OW,
                           dh, dw);
}
static int fw_output(int level, const float *M, fc_idx FM, fc_idx F, fc_idx T, const float *bias,
                     int relu, const fw_tile *tiles, float *y, fc_idx OHW, fc_idx OW, fc_idx dh,
                     fc_idx dw) {
    return FW_DISPATCH_INT(fw_output, M, FM, F, T, bias, relu, tiles, y, OHW, OW, dh, dw);
}

#endif
