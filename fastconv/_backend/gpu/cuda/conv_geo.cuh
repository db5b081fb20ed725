// The per-phase description of a convolution GEMM that conv_igemm reads from `geo` (one row of
// GEO_SIZE idx_t per phase, written by fastconv/_backend/gpu_plans.py: keep the two in step;
// tests/test_gpu_plans.py checks the names and order).
//
// Column p of the GEMM is (n, i, j) with p = (n*HP + i)*WP + j. It reads the B operand (x or
// grad_y) around row i*IS_H + IO_H, column j*IS_W + IO_W of image n (plane IN_H x IN_W, images
// IN_N apart, groups IN_G apart) and writes output element
// n*OUT_N + g*OUT_G + (i*OS_H + OO_H)*OUT_W + j*OS_W + OO_W + m*C_MS.
#pragma once

enum : int {
    GEO_M,       // GEMM rows per group
    GEO_COLS,    // GEMM columns of this phase (N*HP*WP)
    GEO_KPAD,    // reduction length, padded to a multiple of IGEMM_BK
    GEO_KTAB,    // first ktab entry of this phase
    GEO_KSPLIT,  // reduction length per split (a multiple of IGEMM_BK)
    GEO_HPWP,
    GEO_WP,
    GEO_IN_N,
    GEO_IN_G,
    GEO_IN_H,
    GEO_IN_W,
    GEO_IS_H,
    GEO_IS_W,
    GEO_IO_H,
    GEO_IO_W,
    GEO_OUT_N,
    GEO_OUT_G,
    GEO_OUT_W,
    GEO_OS_H,
    GEO_OS_W,
    GEO_OO_H,
    GEO_OO_W,
    GEO_A_MS,  // A row stride
    GEO_A_G,   // A offset per group
    GEO_C_MS,  // output stride between GEMM rows
    GEO_HPWP_MUL,  // FastDiv multiplier and shift of HPWP and of WP (gpu_plans.fast_div)
    GEO_HPWP_SHIFT,
    GEO_WP_MUL,
    GEO_WP_SHIFT,
    GEO_SIZE
};

struct GemmColumn {
    int ih0, iw0;    // B row/column the column's window starts at (before the tap shift);
                     // int, not idx_t: image sides fit (gpu_plans checks), registers are scarce
    idx_t in_off;    // offset of (ih0, iw0) of image n in B (the table adds the tap's offset)
    idx_t out_off;   // offset of the output element of GEMM row 0
    bool ok;         // p < GEO_COLS
};

// One division pair per column, by multiply-high (FastDiv), not a 64-bit divide: the epilogue
// decodes each of a thread's 8 (fp32 tile) or 16 (tensor-core tile) columns. Exact for columns
// p < GEO_COLS < 2^31 (gpu_plans checks), so the result is the same integer as p / HPWP.
__device__ __forceinline__ GemmColumn gemm_column(const idx_t* G, idx_t p) {
    GemmColumn c;
    c.ok = p < G[GEO_COLS];
    const unsigned q = c.ok ? (unsigned)p : 0u;
    const unsigned hpwp = (unsigned)G[GEO_HPWP], wp = (unsigned)G[GEO_WP];
    const FastDiv div_hpwp{hpwp, (unsigned)G[GEO_HPWP_MUL], (unsigned)G[GEO_HPWP_SHIFT]};
    const FastDiv div_wp{wp, (unsigned)G[GEO_WP_MUL], (unsigned)G[GEO_WP_SHIFT]};
    const unsigned n32 = div_hpwp.div(q);
    const unsigned r = q - n32 * hpwp;
    const unsigned i32 = div_wp.div(r);
    const idx_t n = n32, i = i32, j = r - i32 * wp;
    c.ih0 = (int)(i * G[GEO_IS_H] + G[GEO_IO_H]);
    c.iw0 = (int)(j * G[GEO_IS_W] + G[GEO_IO_W]);
    c.in_off = n * G[GEO_IN_N] + (idx_t)c.ih0 * G[GEO_IN_W] + c.iw0;
    c.out_off = n * G[GEO_OUT_N] + (i * G[GEO_OS_H] + G[GEO_OO_H]) * G[GEO_OUT_W] +
                j * G[GEO_OS_W] + G[GEO_OO_W];
    return c;
}
