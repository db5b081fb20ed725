/* Direct convolution vectorised along output rows (stride 1 along W), for the shapes where the
 * filter-vectorised kernel (direct_conv.h) leaves lanes empty: few filters per vector (LeNet-5's
 * conv1, 1 -> 6 channels, fills 6 of 8 AVX2 lanes) or a grad-input run as a forward pass
 * (LeNet-5's conv2 grad-input has 6 output channels).
 *
 * Why rows: each SIMD register holds VL neighbouring output pixels of one output row, so the
 * input the taps read is VL contiguous values (one unaligned load) and the output is stored
 * contiguously in NCHW. A register block is FC_ROWS_FO filters x FC_ROWS_PV vectors of one row;
 * per tap it loads FC_ROWS_PV input vectors and broadcasts FC_ROWS_FO weights into
 * FC_ROWS_FO * FC_ROWS_PV fused multiply-adds. 6 x 2 = 12 accumulators: more independent FMA
 * chains than the 8 that Zen 3's two FMA pipes with 4-cycle latency need, and room left in
 * the 16 AVX2 registers for the loaded vectors and a broadcast.
 *
 * The caller copies the input rows an item reads into a zero-padded window whose rows are
 * XWP >= roundup(OW, FC_ROWS_PV * VL) + (KW - 1) * dw wide, so the loads of a row's last,
 * partial block stay in that row. Lanes past OW are computed; their stores land in rows the call
 * writes later, or are left out in its last row.
 * Sums run bias first, then taps in (c, kh, kw) order: the same for any thread count.
 */
#ifndef FASTCONV_DIRECT_ROWS_H
#define FASTCONV_DIRECT_ROWS_H

#include "simd.h"

#define FC_ROWS_FO 6 /* filters per register block (the weights are packed in blocks of 6) */
#define FC_ROWS_PV 2 /* vectors of one output row per register block */
/* Grad-weight: 2 filters x 5 kernel columns = 10 accumulators (5: LeNet-5's kernels), 2 + 5
 * vectors loaded per 10 FMAs. */
#define FC_ROWS_GF 2
#define FC_ROWS_GK 5

#define FC_DEFINE_ROWS(SFX, T, VBYTES, TARGET)                                                     \
typedef T fc_rvec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                  \
/* The stores of a block that would run past the call's last row: y[f * YPLANE + i] = lane i of \
 * acc (FC_ROWS_FO x FC_ROWS_PV vectors) for f < FB, i < n (out of line: rare, and its loop     \
 * kept out of the register-blocked code). */                                                      \
TARGET static __attribute__((noinline)) void fc_rows_tail_##SFX(T *y, fc_idx YPLANE, fc_idx FB,   \
                                                                fc_idx n, const fc_rvec_##SFX *acc) { \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    for (fc_idx f = 0; f < FB; f++) {                                                              \
        const T *lanes = (const T *)(acc + f * FC_ROWS_PV);                                        \
        for (fc_idx i = 0; i < n && i < FC_ROWS_PV * VL; i++) y[f * YPLANE + i] = lanes[i];        \
    }                                                                                              \
}                                                                                                  \
/* y[f, oh, ow] for f < FB (planes YPLANE apart, rows OW apart), oh < nrows, ow < OW: bias[f] +    \
 * sum over c < C, kh in [khr[2 oh], khr[2 oh + 1]) (all KH if khr is NULL), kw < KW of            \
 * x[c, oh * sh + kh * dh, ow + kw * dw] * wpack[(c KH + kh) KW + kw][f], then ReLU if asked.       \
 * x: the window (C planes of R rows of XWP); wpack: FC_ROWS_FO weights per tap, zero past FB;     \
 * bias: FC_ROWS_FO values. */                                                                      \
TARGET static void fc_rows_forward_##SFX(const T *x, fc_idx C, fc_idx R, fc_idx XWP,               \
                                        fc_idx KH, fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw,     \
                                        const int *khr, const T *wpack, const T *bias, T *y,       \
                                        fc_idx YPLANE, fc_idx FB, fc_idx OW, fc_idx nrows,         \
                                        int relu) {                                                \
    enum { VL = VBYTES / sizeof(T), FO = FC_ROWS_FO, PV = FC_ROWS_PV };                            \
    typedef __typeof__((fc_rvec_##SFX){0} < (fc_rvec_##SFX){0}) mask_t;                           \
    for (fc_idx oh = 0; oh < nrows; oh++) {                                                        \
        const fc_idx lo = khr ? khr[2 * oh] : 0, hi = khr ? khr[2 * oh + 1] : KH;                  \
        for (fc_idx ow0 = 0; ow0 < OW; ow0 += PV * VL) {                                           \
            /* A row's last, partial block moves left to end at the row's end when the row has    \
             * room: it recomputes some outputs (bitwise the same sums) and stores whole vectors. */ \
            if (ow0 + PV * VL > OW && OW >= PV * VL) ow0 = OW - PV * VL;                           \
            fc_rvec_##SFX acc[FO][PV];                                                             \
            for (int f = 0; f < FO; f++)                                                           \
                for (int v = 0; v < PV; v++) acc[f][v] = (fc_rvec_##SFX){0} + bias[f];             \
            for (fc_idx c = 0; c < C; c++) {                                                       \
                for (fc_idx kh = lo; kh < hi; kh++) {                                              \
                    const T *xr = x + (c * R + oh * sh + kh * dh) * XWP + ow0;                     \
                    const T *wk = wpack + (c * KH + kh) * KW * FO;                                 \
                    for (fc_idx kw = 0; kw < KW; kw++, wk += FO) {                                 \
                        fc_rvec_##SFX xv[PV];                                                      \
                        for (int v = 0; v < PV; v++) /* unaligned loads (element alignment) */    \
                            xv[v] = *(const fc_rvec_##SFX *)(xr + kw * dw + v * VL);               \
                        for (int f = 0; f < FO; f++) {                                             \
                            const T wf = wk[f];                                                    \
                            for (int v = 0; v < PV; v++) acc[f][v] += xv[v] * wf;                  \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            /* Stores past the row's end land in the next rows of the plane, which this call      \
             * writes later (rows run in order): so whole vectors, unless they would end past      \
             * this call's rows (another item's, or past the plane: then fc_rows_tail). */        \
            const int whole = ow0 + PV * VL <= OW || (oh * OW + ow0 + PV * VL <= nrows * OW);       \
            if (relu) /* v <= 0 is false for NaN: the ReLU keeps NaN, like the GEMM path's */     \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                              \
                    _Pragma("GCC unroll 16") for (int v = 0; v < PV; v++)                          \
                        acc[f][v] = (fc_rvec_##SFX)((mask_t)acc[f][v] &                             \
                                                    ~(acc[f][v] <= (fc_rvec_##SFX){0}));            \
            T *yb = y + oh * OW + ow0;                                                             \
            if (whole) {                                                                           \
                /* unrolled: constant f and v keep acc in registers */                             \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                              \
                    if (f < FB)                                                                    \
                        _Pragma("GCC unroll 16") for (int v = 0; v < PV; v++)                      \
                            *(fc_rvec_##SFX *)(yb + f * YPLANE + v * VL) = acc[f][v];              \
            } else {                                                                               \
                fc_rvec_##SFX spill[FO][PV]; /* a copy: acc's address stays untaken */            \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                              \
                    _Pragma("GCC unroll 16") for (int v = 0; v < PV; v++) spill[f][v] = acc[f][v]; \
                fc_rows_tail_##SFX(yb, YPLANE, FB, OW - ow0, &spill[0][0]);                        \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* acc[f][k] += g[f] * x[j + k dw .. + VL) for f < FC_ROWS_GF, k < kn; with `masked`, x lanes      \
 * outside `keep` count as 0 (g's are zeroed by the caller). */                                    \
TARGET static inline __attribute__((always_inline)) void fc_rows_gw_step_##SFX(                   \
        const T *xr, const fc_rvec_##SFX *g, fc_idx j, fc_idx dw, int kn, int masked,             \
        __typeof__((fc_rvec_##SFX){0} < (fc_rvec_##SFX){0}) keep,                                 \
        fc_rvec_##SFX acc[FC_ROWS_GF][FC_ROWS_GK]) {                                               \
    typedef __typeof__(keep) mask_t;                                                               \
    for (int k = 0; k < FC_ROWS_GK; k++) {                                                         \
        if (k >= kn) break;                                                                        \
        fc_rvec_##SFX xv = *(const fc_rvec_##SFX *)(xr + j + k * dw);                              \
        if (masked) xv = (fc_rvec_##SFX)((mask_t)xv & keep);                                       \
        for (int f = 0; f < FC_ROWS_GF; f++) acc[f][k] += g[f] * xv;                               \
    }                                                                                              \
}                                                                                                  \
/* Grad-weight along rows for FC_ROWS_GF filters of one image: for c < C, kh < KH, kernel columns \
 * in blocks of FC_ROWS_GK (kb), accv[((c KH + kh) KB + kb) GF GK + f GK + k] (vectors) +=        \
 * sum over oh < OH, ow < OW (in lanes) of gy_f[oh OW + ow] * x[c][oh sh + kh dh][ow + kw dw],    \
 * kw = kb GK + k < KW; gy_f = gp[f] (one plane of grad_y), x: C planes of XH rows of XW. The      \
 * caller reduces the lanes. */                                                                    \
TARGET static void fc_rows_grad_weight_##SFX(const T *x, fc_idx C, fc_idx XH, fc_idx XW,           \
                                            const T *const *gp, fc_idx OH, fc_idx OW, fc_idx KH,   \
                                            fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw,            \
                                            fc_rvec_##SFX *accv) {                                 \
    enum { VL = VBYTES / sizeof(T), FG = FC_ROWS_GF, KG = FC_ROWS_GK };                            \
    typedef __typeof__((fc_rvec_##SFX){0} < (fc_rvec_##SFX){0}) mask_t;                           \
    const fc_idx nfull = OW / VL, tail = OW % VL, KB = (KW + KG - 1) / KG;                         \
    /* A partial last vector is loaded ending at the row's end (OW >= VL: the caller's rule), so   \
     * nothing past the row is read; its first VL - tail lanes, counted already, are masked to 0   \
     * in both factors (x there may be inf: 0 * inf would be NaN). */                              \
    T lane_index[VL];                                                                              \
    for (int l = 0; l < VL; l++) lane_index[l] = (T)l;                                             \
    const mask_t keep =                                                                            \
        *(const fc_rvec_##SFX *)lane_index >= (fc_rvec_##SFX){0} + (T)(VL - tail);                 \
    for (fc_idx c = 0; c < C; c++)                                                                 \
    for (fc_idx kh = 0; kh < KH; kh++)                                                             \
    for (fc_idx kb = 0; kb < KB; kb++, accv += FG * KG) {                                          \
        fc_rvec_##SFX acc[FG][KG];                                                                 \
        for (int f = 0; f < FG; f++)                                                               \
            for (int k = 0; k < KG; k++) acc[f][k] = accv[f * KG + k];                             \
        const int kn = KW - kb * KG < KG ? (int)(KW - kb * KG) : KG;                               \
        for (fc_idx oh = 0; oh < OH; oh++) {                                                       \
            const T *xr = x + (c * XH + oh * sh + kh * dh) * XW + kb * KG * dw;                    \
            fc_rvec_##SFX g[FG];                                                                   \
            for (fc_idx j = 0; j < nfull * VL; j += VL) {                                          \
                for (int f = 0; f < FG; f++) g[f] = *(const fc_rvec_##SFX *)(gp[f] + oh * OW + j); \
                if (kn == KG) /* constant trip count: no test in the unrolled loop */             \
                    fc_rows_gw_step_##SFX(xr, g, j, dw, KG, 0, keep, acc);                         \
                else                                                                               \
                    fc_rows_gw_step_##SFX(xr, g, j, dw, kn, 0, keep, acc);                         \
            }                                                                                      \
            if (tail) {                                                                            \
                for (int f = 0; f < FG; f++)                                                       \
                    g[f] = (fc_rvec_##SFX)((mask_t) * (const fc_rvec_##SFX *)(gp[f] + oh * OW +    \
                                                                            OW - VL) & keep);     \
                fc_rows_gw_step_##SFX(xr, g, OW - VL, dw, kn, 1, keep, acc);                       \
            }                                                                                      \
        }                                                                                          \
        for (int f = 0; f < FG; f++)                                                               \
            for (int k = 0; k < KG; k++) accv[f * KG + k] = acc[f][k];                             \
    }                                                                                              \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_ROWS)

/* Output columns one register block covers at `level` for elements of `itemsize` bytes. */
static int fc_rows_block(int level, int itemsize) {
    return FC_ROWS_PV * fc_vector_bytes(level) / itemsize;
}

#define FC_DEFINE_ROWS_ENTRY(T)                                                                    \
static void fc_rows_forward_##T(int level, const T *x, fc_idx C, fc_idx R, fc_idx XWP, fc_idx KH,  \
                                fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw, const int *khr,        \
                                const T *wpack, const T *bias, T *y, fc_idx YPLANE, fc_idx FB,     \
                                fc_idx OW, fc_idx nrows, int relu) {                               \
    FC_DISPATCH(fc_rows_forward, T, x, C, R, XWP, KH, KW, sh, dh, dw, khr, wpack, bias, y, YPLANE, \
                FB, OW, nrows, relu);                                                              \
}                                                                                                  \
static void fc_rows_grad_weight_##T(int level, const T *x, fc_idx C, fc_idx XH, fc_idx XW,          \
                                    const T *const *gp, fc_idx OH, fc_idx OW, fc_idx KH,           \
                                    fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw, T *accv) {        \
    FC_DISPATCH(fc_rows_grad_weight, T, x, C, XH, XW, gp, OH, OW, KH, KW, sh, dh, dw,              \
                (void *)accv);                                                                     \
}
FC_DEFINE_ROWS_ENTRY(float)
FC_DEFINE_ROWS_ENTRY(double)

#endif
