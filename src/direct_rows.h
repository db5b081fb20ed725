/* Direct convolution vectorised along output rows (stride 1 along W), for the shapes where the
 * filter-vectorised kernel (direct_conv.h) leaves lanes empty: few filters per vector (LeNet-5's
 * conv1, 1 -> 6 channels, fills 6 of 8 AVX2 lanes) or a grad-input run as a forward pass
 * (LeNet-5's conv2 grad-input has 6 output channels).
 *
 * Why rows: each SIMD register holds VL neighbouring output pixels of one output row, so the
 * input the taps read is VL contiguous values (one unaligned load) and the output is stored
 * contiguously in NCHW. A register block is FC_ROWS_FO filters x two vectors: two of one row,
 * or, for rows of a vector or less, one of each of two rows (at AVX-512 LeNet-5's conv2
 * grad-input fills 14 of 16 lanes so, against 14 of 32 with two vectors of a row); per tap it
 * loads two input vectors and broadcasts FC_ROWS_FO weights into 2 * FC_ROWS_FO fused
 * multiply-adds. 6 x 2 = 12 accumulators: more independent FMA chains than the 8 that Zen 3's
 * two FMA pipes with 4-cycle latency need, and room left in the 16 AVX2 registers for the
 * loaded vectors and a broadcast.
 *
 * The caller copies the input rows an item reads into a zero-padded window whose rows are
 * XWP >= roundup(OW, fc_rows_block) + (KW - 1) * dw wide, so the loads of a row's last,
 * partial block stay in that row. Lanes past OW are computed; their stores land in rows the call
 * writes later, or are left out in its last row.
 * Sums run bias first, then taps in (c, kh, kw) order: the same for any thread count.
 */
#ifndef FASTCONV_DIRECT_ROWS_H
#define FASTCONV_DIRECT_ROWS_H

#include "simd.h"

#define FC_ROWS_FO 6 /* filters per register block (the weights are packed in blocks of 6) */
/* Grad-weight: 2 filters x 5 kernel columns = 10 accumulators (5: LeNet-5's kernels), 2 + 5
 * vectors loaded per 10 FMAs. */
#define FC_ROWS_GF 2
#define FC_ROWS_GK 5

#define FC_DEFINE_ROWS(SFX, T, VBYTES, TARGET)                                                     \
typedef T fc_rvec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                   \
/* The stores of a block that would run past the call's last row: for f < FB, r < rows,             \
 * i < n: y[f * YPLANE + r * OW + i] = lane i of slot r of acc (FC_ROWS_FO x 2 vectors; with        \
 * one row, its n lanes run on through both slots) (out of line: rare, and its loop kept out of     \
 * the register-blocked code). */                                                                   \
TARGET static __attribute__((noinline)) void fc_rows_tail_##SFX(T *y, fc_idx YPLANE, fc_idx FB,     \
                                                                fc_idx rows, fc_idx OW, fc_idx n,   \
                                                                const fc_rvec_##SFX *acc) {         \
    for (fc_idx f = 0; f < FB; f++)                                                                 \
        for (fc_idx r = 0; r < rows; r++) {                                                         \
            const T *lanes = (const T *)(acc + f * 2 + r);                                          \
            for (fc_idx i = 0; i < n; i++) y[f * YPLANE + r * OW + i] = lanes[i];                   \
        }                                                                                           \
}                                                                                                   \
/* acc[f][s] += xs[s][kw dw .. + VL) * wk[kw FO + f] over kw < KW for the slots s in use (use0,     \
 * use1: constants where this is inlined). */                                                       \
TARGET static inline __attribute__((always_inline)) void fc_rows_taps_##SFX(                        \
        fc_rvec_##SFX acc[FC_ROWS_FO][2], const T *x0, const T *x1, const T *wk, fc_idx KW,         \
        fc_idx dw, const int use0, const int use1) {                                                \
    for (fc_idx kw = 0; kw < KW; kw++, wk += FC_ROWS_FO) {                                          \
        /* unaligned loads (element alignment) */                                                   \
        const fc_rvec_##SFX xv0 = use0 ? *(const fc_rvec_##SFX *)(x0 + kw * dw) : (fc_rvec_##SFX){0}; \
        const fc_rvec_##SFX xv1 = use1 ? *(const fc_rvec_##SFX *)(x1 + kw * dw) : (fc_rvec_##SFX){0}; \
        for (int f = 0; f < FC_ROWS_FO; f++) {                                                      \
            const T wf = wk[f];                                                                     \
            if (use0) acc[f][0] += xv0 * wf;                                                        \
            if (use1) acc[f][1] += xv1 * wf;                                                        \
        }                                                                                           \
    }                                                                                               \
}                                                                                                   \
/* y[f, oh, ow] for f < FB (planes YPLANE apart, rows OW apart), oh < nrows, ow < OW: bias[f] +     \
 * sum over c < C, kh in [khr[2 oh], khr[2 oh + 1]) (all KH if khr is NULL), kw < KW of             \
 * x[c, oh * sh + kh * dh, ow + kw * dw] * wpack[(c KH + kh) KW + kw][f], then ReLU if asked.       \
 * x: the window (C planes of R rows of XWP); wpack: FC_ROWS_FO weights per tap, zero past FB;      \
 * bias: FC_ROWS_FO values. A register block is FC_ROWS_FO filters x two vectors: two of one row    \
 * (PV = 2, RR = 1), or one of each of two rows (PV = 1, RR = 2: rows of a vector or less, where    \
 * two vectors of a row would leave most lanes empty). Constants where this is inlined. */          \
TARGET static inline __attribute__((always_inline)) void fc_rows_forward_body_##SFX(                \
        const T *x, fc_idx C, fc_idx R, fc_idx XWP, fc_idx KH, fc_idx KW, fc_idx sh, fc_idx dh,     \
        fc_idx dw, const int *khr, const T *wpack, const T *bias, T *y, fc_idx YPLANE, fc_idx FB,   \
        fc_idx OW, fc_idx nrows, int relu, const int PV, const int RR) {                            \
    enum { VL = VBYTES / sizeof(T), FO = FC_ROWS_FO };                                              \
    typedef __typeof__((fc_rvec_##SFX){0} < (fc_rvec_##SFX){0}) mask_t;                             \
    const fc_idx BW = PV * VL; /* output columns per block */                                       \
    for (fc_idx oh = 0; oh < nrows; oh += RR) {                                                     \
        const fc_idx rows = oh + RR <= nrows ? RR : nrows - oh; /* rows in this block */            \
        const fc_idx lo0 = khr ? khr[2 * oh] : 0, hi0 = khr ? khr[2 * oh + 1] : KH;                 \
        const fc_idx lo1 = rows == 2 && khr ? khr[2 * oh + 2] : lo0;                                \
        const fc_idx hi1 = rows == 2 && khr ? khr[2 * oh + 3] : hi0;                                \
        /* the second slot: the row's next vector, or the next row */                               \
        const fc_idx slot1 = PV == 2 ? VL : sh * XWP, yslot1 = PV == 2 ? VL : OW;                   \
        for (fc_idx ow0 = 0; ow0 < OW; ow0 += BW) {                                                 \
            /* A row's last, partial block moves left to end at the row's end when the row has      \
             * room: it recomputes some outputs (bitwise the same sums) and stores whole vectors. */ \
            if (ow0 + BW > OW && OW >= BW) ow0 = OW - BW;                                           \
            fc_rvec_##SFX acc[FO][2];                                                               \
            for (int f = 0; f < FO; f++) acc[f][0] = acc[f][1] = (fc_rvec_##SFX){0} + bias[f];      \
            for (fc_idx c = 0; c < C; c++) {                                                        \
                for (fc_idx kh = lo0 < lo1 ? lo0 : lo1; kh < (hi0 > hi1 ? hi0 : hi1); kh++) {       \
                    const T *x0 = x + (c * R + oh * sh + kh * dh) * XWP + ow0;                      \
                    const T *wk = wpack + (c * KH + kh) * KW * FO;                                  \
                    /* the sums of a row skip the kernel rows it does not read */                   \
                    const int use0 = kh >= lo0 && kh < hi0;                                         \
                    const int use1 = (PV == 2 ? use0 : rows == 2 && kh >= lo1 && kh < hi1);         \
                    if (use0 && use1) fc_rows_taps_##SFX(acc, x0, x0 + slot1, wk, KW, dw, 1, 1);    \
                    else if (use0) fc_rows_taps_##SFX(acc, x0, x0, wk, KW, dw, 1, 0);               \
                    else if (use1) fc_rows_taps_##SFX(acc, x0, x0 + slot1, wk, KW, dw, 0, 1);       \
                }                                                                                   \
            }                                                                                       \
            /* Stores past the row's end land in the next rows of the plane, which this call        \
             * writes later (rows run in order; a block's second row after its first): so whole     \
             * vectors, unless they would end past this call's rows (another item's, or past the    \
             * plane: then fc_rows_tail). */                                                        \
            const fc_idx last = (oh + rows - 1) * OW + ow0 + (PV == 2 ? BW : VL);                   \
            const int whole = ow0 + BW <= OW || last <= nrows * OW;                                 \
            if (relu) /* v <= 0 is false for NaN: the ReLU keeps NaN, like the GEMM path's */       \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                               \
                    _Pragma("GCC unroll 16") for (int s = 0; s < 2; s++)                            \
                        acc[f][s] = (fc_rvec_##SFX)((mask_t)acc[f][s] &                             \
                                                    ~(acc[f][s] <= (fc_rvec_##SFX){0}));            \
            T *yb = y + oh * OW + ow0;                                                              \
            if (whole) {                                                                            \
                /* unrolled: constant f and s keep acc in registers */                              \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                               \
                    if (f < FB) {                                                                   \
                        *(fc_rvec_##SFX *)(yb + f * YPLANE) = acc[f][0];                            \
                        if (PV == 2 || rows == 2)                                                   \
                            *(fc_rvec_##SFX *)(yb + f * YPLANE + yslot1) = acc[f][1];               \
                    }                                                                               \
            } else {                                                                                \
                fc_rvec_##SFX spill[FO][2]; /* a copy: acc's address stays untaken */               \
                _Pragma("GCC unroll 16") for (int f = 0; f < FO; f++)                               \
                    _Pragma("GCC unroll 16") for (int s = 0; s < 2; s++) spill[f][s] = acc[f][s];   \
                const fc_idx n = OW - ow0 < BW ? OW - ow0 : BW;                                     \
                fc_rows_tail_##SFX(yb, YPLANE, FB, PV == 2 ? 1 : rows, OW, n, &spill[0][0]);        \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}                                                                                                   \
TARGET static void fc_rows_forward_##SFX(const T *x, fc_idx C, fc_idx R, fc_idx XWP, fc_idx KH,     \
                                        fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw,                 \
                                        const int *khr, const T *wpack, const T *bias, T *y,        \
                                        fc_idx YPLANE, fc_idx FB, fc_idx OW, fc_idx nrows,          \
                                        int relu, int two_rows) {                                   \
    if (two_rows)                                                                                   \
        fc_rows_forward_body_##SFX(x, C, R, XWP, KH, KW, sh, dh, dw, khr, wpack, bias, y, YPLANE,   \
                                   FB, OW, nrows, relu, 1, 2);                                      \
    else                                                                                            \
        fc_rows_forward_body_##SFX(x, C, R, XWP, KH, KW, sh, dh, dw, khr, wpack, bias, y, YPLANE,   \
                                   FB, OW, nrows, relu, 2, 1);                                      \
}                                                                                                   \
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
        FC_IN_REGISTER(xv); /* one load for the FC_ROWS_GF filters */                              \
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

/* Output columns one register block covers at `level` for elements of `itemsize` bytes (one
 * vector with `two_rows`, else two). */
static int fc_rows_block(int level, int itemsize, int two_rows) {
    return (two_rows ? 1 : 2) * fc_vector_bytes(level) / itemsize;
}

#define FC_DEFINE_ROWS_ENTRY(T)                                                                    \
static void fc_rows_forward_##T(int level, const T *x, fc_idx C, fc_idx R, fc_idx XWP, fc_idx KH,  \
                                fc_idx KW, fc_idx sh, fc_idx dh, fc_idx dw, const int *khr,        \
                                const T *wpack, const T *bias, T *y, fc_idx YPLANE, fc_idx FB,     \
                                fc_idx OW, fc_idx nrows, int relu, int two_rows) {                 \
    FC_DISPATCH(fc_rows_forward, T, x, C, R, XWP, KH, KW, sh, dh, dw, khr, wpack, bias, y, YPLANE, \
                FB, OW, nrows, relu, two_rows);                                                    \
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
