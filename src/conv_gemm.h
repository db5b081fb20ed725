/* The GEMM of one output tile of the im2col convolution (conv_tiles.pxd), without BLAS:
 * y (F x T) = W (F x K) @ cols (K x T), cols row-major with T contiguous (an im2col tile, or the
 * input itself for a 1x1 convolution).
 *
 * Why: BLAS packs its right operand (here the column matrix, K x T) into panels before every
 * multiply and sets C to zero before adding into it: on a stride-2 3x3 64 -> 128 that copy and
 * that pass were about a quarter of OpenBLAS's time (perf, Ice Lake-SP). Here the column matrix is
 * read in place: a register block holds FO filters x PV vectors of columns; each k loads PV
 * vectors of one row of cols and broadcasts FO weights from the packed W (wpack[f / FO][k][f %
 * FO], packed once per call). A block's columns are taken a chunk of K rows at a time, which
 * stays in L1 while every filter group reads it (the partial sums wait in y), and the same rows
 * of the next block's columns are prefetched meanwhile, each group a share of them (group 0
 * prefetching them all waited on the line fill buffers: 1x1 256 -> 64, 8.9 -> 8.4 ms).
 *
 * Compiled once per instruction set (simd.h). Each y element is summed over k in order by one
 * call, from zero: results depend on the shapes only, never on the thread count.
 */
#ifndef FASTCONV_CONV_GEMM_H
#define FASTCONV_CONV_GEMM_H

#include "simd.h"

/* The register block at each vector width: FO filters x PV vectors of columns. AVX-512 (32
 * registers): 8 x 3 (or 6 x 4) ran 0.67-0.86x BLAS's time on the shapes of _simd_gemm's comment,
 * 4 x 6 0.75-1.0x, 12 x 2 0.89-1.08x, 5 x 5 0.76-0.98x. AVX2 (16 registers) on the same CPU
 * against OpenBLAS's Haswell kernels: 4 x 3 0.78-0.99x, 6 x 2 1.0-1.06x. */
#ifndef FC_GEMM_FO512
#define FC_GEMM_FO512 8
#define FC_GEMM_PV512 3
#define FC_GEMM_FO256 4
#define FC_GEMM_PV256 3
#endif
#define FC_GEMM_FO(VBYTES) (VBYTES == 64 ? FC_GEMM_FO512 : VBYTES == 32 ? FC_GEMM_FO256 : 6)
#define FC_GEMM_PV(VBYTES) (VBYTES == 64 ? FC_GEMM_PV512 : VBYTES == 32 ? FC_GEMM_PV256 : 2)

/* Filters per register block (the packing of W) at `level`. */
static int fc_gemm_filters(int level) { return FC_GEMM_FO(fc_vector_bytes(level)); }

#define FC_DEFINE_GEMM(SFX, T, VBYTES, TARGET)                                                     \
typedef T fc_gvec_##SFX __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                  \
/* y[f * ldy + v * VL + i] for f < fb, v < PV, i < VL: one register block of FO filters (wk: their \
 * packed weights) and PV * VL columns of cols, added to y's values unless first; with last, the \
 * sums are final: + b[f] (b not NULL), then ReLU if asked (v <= 0 is false for NaN: kept, as in \
 * the separate pass this replaces). */                                                            \
TARGET static inline __attribute__((always_inline)) void fc_gemm_block_##SFX(                      \
        int FO, int PV, const T *wk, fc_idx K, const T *c, fc_idx ldc, T *y, fc_idx ldy,          \
        fc_idx fb, const T *next, int first, fc_idx pk, fc_idx pstep, int last, const T *b,       \
        int relu) {                                                                                \
    typedef fc_gvec_##SFX V;                                                                       \
    enum { VL = VBYTES / sizeof(T), FM = 8, PM = 3 }; /* FO, PV at most */                         \
    V acc[FM][PM];                                                                                 \
    for (int f = 0; f < FO; f++)                                                                   \
        for (int v = 0; v < PV; v++)                                                               \
            acc[f][v] = first || f >= fb ? (V){0} : *(const V *)(y + f * ldy + v * VL);            \
    for (fc_idx k = 0; k < K; k++) {                                                               \
        V xv[PM];                                                                                  \
        for (int v = 0; v < PV; v++) xv[v] = *(const V *)(c + k * ldc + v * VL);                   \
        if (next && k == pk) { /* rows pk, pk + pstep, ... of the next block, a line a vector */ \
            for (int v = 0; v < PV; v++) __builtin_prefetch(next + k * ldc + v * VL, 0, 3);        \
            pk += pstep;                                                                           \
        }                                                                                          \
        for (int f = 0; f < FO; f++)                                                               \
            for (int v = 0; v < PV; v++) acc[f][v] += wk[k * FO + f] * xv[v];                      \
    }                                                                                              \
    typedef __typeof__(acc[0][0] <= acc[0][0]) M;                                                 \
    for (int f = 0; f < FO; f++)                                                                   \
        if (f < fb)                                                                                \
            for (int v = 0; v < PV; v++) {                                                         \
                V a = acc[f][v];                                                                   \
                if (last && b) a += b[f];                                                          \
                if (last && relu) a = (V)((M)a & ~(a <= (V){0}));                                  \
                *(V *)(y + f * ldy + v * VL) = a;                                                  \
            }                                                                                      \
}                                                                                                  \
/* The same for one column: FO scalar sums. */                                                     \
TARGET static inline __attribute__((always_inline)) void fc_gemm_column_##SFX(                     \
        int FO, const T *wk, fc_idx K, const T *c, fc_idx ldc, T *y, fc_idx ldy, fc_idx fb,       \
        const T *b, int relu) {                                                                    \
    T acc[8] = {0};                                                                                \
    for (fc_idx k = 0; k < K; k++)                                                                 \
        for (int f = 0; f < FO; f++) acc[f] += wk[k * FO + f] * c[k * ldc];                        \
    for (int f = 0; f < FO && f < fb; f++) {                                                       \
        T a = acc[f];                                                                              \
        if (b) a += b[f];                                                                          \
        y[f * ldy] = relu && a <= 0 ? (T)0 : a;                                                    \
    }                                                                                              \
}                                                                                                  \
/* y (F x T, rows ldy apart) = W @ cols (K x T, rows ldc apart) (+ bias, not NULL) (then ReLU);   \
 * wpack: (ceil(F / FO), K, FO), the filters past F zero. Blocks of PV vectors of columns, then   \
 * single vectors, then single columns; a block runs every filter group before the next block    \
 * (its columns stay in L1). */                                                                    \
TARGET static inline __attribute__((always_inline)) void fc_gemm_run_##SFX(                        \
        int FO, int PV, const T *wpack, fc_idx F, fc_idx K, const T *cols, fc_idx ldc, fc_idx Tn, \
        T *y, fc_idx ldy, const T *bias, int relu) {                                               \
    enum { VL = VBYTES / sizeof(T) };                                                              \
    const fc_idx groups = (F + FO - 1) / FO;                                                       \
    /* rows of cols per pass: a block's PV * VL columns of them stay in L1 while every filter    \
     * group reads them (one pass over all K streamed the block from L2 for every group) */      \
    const fc_idx KC = 16384 / (PV * VBYTES) > 8 ? 16384 / (PV * VBYTES) : 8;                       \
    fc_idx t = 0;                                                                                  \
    /* Where every row starts at the same offset from a vector boundary (a 1x1 convolution reads \
     * x itself, which NumPy starts 16 bytes into a cache line), one vector at column 0, then     \
     * blocks from the first boundary (lead < VL): they recompute a few columns (bitwise the same \
     * sums) but no load spans two lines (such loads cost a fifth of the time). */                \
    const fc_idx lead = ldc * sizeof(T) % VBYTES ? 0                                               \
                        : (VBYTES - (size_t)cols % VBYTES) % VBYTES / sizeof(T);                   \
    if (lead > 0 && lead + PV * VL <= Tn) {                                                        \
        for (fc_idx g = 0; g < groups; g++)                                                        \
            fc_gemm_block_##SFX(FO, 1, wpack + g * K * FO, K, cols, ldc, y + g * FO * ldy, ldy,    \
                                F - g * FO, NULL, 1, 0, 1, 1, bias ? bias + g * FO : NULL, relu);  \
        t = lead;                                                                                  \
    }                                                                                              \
    for (; t + PV * VL <= Tn; t += PV * VL)                                                        \
        for (fc_idx k0 = 0; k0 < K; k0 += KC) {                                                    \
            const fc_idx kn = K - k0 < KC ? K - k0 : KC;                                           \
            const T *next = t + 2 * PV * VL <= Tn ? cols + k0 * ldc + t + PV * VL : NULL;         \
            for (fc_idx g = 0; g < groups; g++)                                                    \
                fc_gemm_block_##SFX(FO, PV, wpack + (g * K + k0) * FO, kn, cols + k0 * ldc + t,    \
                                    ldc, y + g * FO * ldy + t, ldy, F - g * FO,                    \
                                    next, k0 == 0, g, groups, k0 + kn == K,                        \
                                    bias ? bias + g * FO : NULL, relu);                            \
        }                                                                                          \
    /* single vectors; a last, partial one moves left to end at column Tn when there is room:  \
     * it recomputes some columns (bitwise the same sums) instead of going column by column */    \
    for (; t < Tn && Tn >= VL; t += VL) {                                                          \
        if (t + VL > Tn) t = Tn - VL;                                                              \
        for (fc_idx g = 0; g < groups; g++)                                                        \
            fc_gemm_block_##SFX(FO, 1, wpack + g * K * FO, K, cols + t, ldc,                       \
                                y + g * FO * ldy + t, ldy, F - g * FO, NULL, 1, 0, 1, 1,           \
                                bias ? bias + g * FO : NULL, relu);                                \
    }                                                                                              \
    for (; t < Tn; t++)                                                                            \
        for (fc_idx g = 0; g < groups; g++)                                                        \
            fc_gemm_column_##SFX(FO, wpack + g * K * FO, K, cols + t, ldc, y + g * FO * ldy + t,   \
                                 ldy, F - g * FO, bias ? bias + g * FO : NULL, relu);              \
}                                                                                                  \
TARGET static void fc_gemm_##SFX(const T *wpack, fc_idx F, fc_idx K, const T *cols, fc_idx ldc,    \
                                fc_idx Tn, T *y, fc_idx ldy, const T *bias, int relu) {            \
    fc_gemm_run_##SFX(FC_GEMM_FO(VBYTES), FC_GEMM_PV(VBYTES), wpack, F, K, cols, ldc, Tn, y, ldy,  \
                      bias, relu);                                                                 \
}

FC_SIMD_INSTANTIATE(FC_DEFINE_GEMM)

#define FC_DEFINE_GEMM_ENTRY(T)                                                                    \
static void fc_conv_gemm_##T(int level, const T *wpack, fc_idx F, fc_idx K, const T *cols,         \
                             fc_idx ldc, fc_idx Tn, T *y, fc_idx ldy, const T *bias, int relu) {   \
    FC_DISPATCH(fc_gemm, T, wpack, F, K, cols, ldc, Tn, y, ldy, bias, relu);                       \
}
FC_DEFINE_GEMM_ENTRY(float)
FC_DEFINE_GEMM_ENTRY(double)

#endif
