// Deterministic reductions: the second pass of split reductions, and grad_bias.
//
// Reductions over N*OH*OW are split over blocks to fill the GPU; each split writes a partial
// result and sum_splits adds the splits in a fixed order. No float atomics anywhere, so the
// gradients are bitwise reproducible run to run on a given device.
#include "common.cuh"

// out[i] = sum over s of partial[s*n + i], s ascending. Grid-stride over i.
template <typename T>
__global__ void sum_splits(const T* __restrict__ partial,  // IN  (splits, n)
                           T* __restrict__ out,            // OUT (n,)
                           idx_t n, int splits) {
    FC_GRID_STRIDE(i, n) {
        T acc = T(0);
        for (int s = 0; s < splits; ++s) acc += partial[(idx_t)s * n + i];
        out[i] = acc;
    }
}

// partial[s, f] = sum of grad_y[n, f, :, :] over the flat range of (n, oh*OW + ow) positions
// [s*e_per_split, (s+1)*e_per_split) of channel f. Grid: x = F (grid-stride), y = splits.
// Block: REDUCE_THREADS; consecutive threads read consecutive positions (coalesced).
template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS)
conv2d_grad_bias_partial(const T* __restrict__ grad_y,  // IN  (N, F, OH, OW)
                         T* __restrict__ partial,       // OUT (splits, F)
                         idx_t N, int F, idx_t OHW, idx_t e_per_split, unsigned ohw_mul,
                         unsigned ohw_shift) {
    __shared__ T smem[REDUCE_THREADS];
    // Positions e < N*OH*OW < 2^31 (the host checks): a FastDiv by OH*OW instead of a 64-bit
    // division, whose library call made ptxas spill on sm_80.
    const FastDiv plane{(unsigned)OHW, ohw_mul, ohw_shift};
    const int s = blockIdx.y;
    const idx_t total = N * OHW;
    const idx_t e_begin = (idx_t)s * e_per_split;
    const idx_t e_end = imin64(total, e_begin + e_per_split);
    for (int f = blockIdx.x; f < F; f += gridDim.x) {
        T acc = T(0);
#pragma unroll 1  // unrolled, the double version spilled 16 bytes on sm_80 (ptxas_report.py)
        for (idx_t e = e_begin + threadIdx.x; e < e_end; e += REDUCE_THREADS) {
            const unsigned n = plane.div((unsigned)e);
            const idx_t rem = e - (idx_t)n * OHW;
            acc += grad_y[((idx_t)n * F + f) * OHW + rem];
        }
        acc = block_sum(acc, smem);
        if (threadIdx.x == 0) partial[(idx_t)s * F + f] = acc;
    }
}
