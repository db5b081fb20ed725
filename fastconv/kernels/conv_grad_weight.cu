// Convolution grad_weight as an implicit GEMM, reduction split over blocks deterministically.
//
// Per group g:  dW_g (Fg x K) = dY_g (Fg x P) * Xcol_g^T (P x K),  K = Cg*KH*KW, P = N*OH*OW,
// with Xcol_g the virtual im2col matrix of conv_implicit_gemm.cu, gathered on the fly.
// P is usually far larger than Fg*K, so the reduction over P is cut into `splits` contiguous
// ranges of p_per_split positions; split s writes its partial sums to partial[s] and the
// sum_splits kernel of reduce.cu adds the splits in a fixed order (no float atomics, so the
// result is bitwise reproducible). With splits == 1, partial is grad_weight itself.
//
// Grid: x = tiles of K, y = tiles of Fg, z = groups*splits (grid-stride). Block: GEMM_THREADS.
#include "common.cuh"

template <typename T>
__global__ void __launch_bounds__(GEMM_THREADS)
conv2d_grad_weight_igemm(const T* __restrict__ grad_y,  // IN  (N, F, OH, OW)
                         const T* __restrict__ x,       // IN  (N, C, H, W)
                         T* __restrict__ partial,       // OUT (splits, F, C/groups*KH*KW)
                         idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW, int KH,
                         int KW, int sh, int sw, int pt, int pl, int dh, int dw, int groups,
                         int splits, idx_t p_per_split) {
    __shared__ T As[GEMM_BK][GEMM_BM + 1];  // dY_g slice: rows f, reduction p
    __shared__ T Bs[GEMM_BK][GEMM_BN + 1];  // Xcol_g^T slice: reduction p, columns k

    const int Cg = C / groups;
    const int Fg = F / groups;
    const int KHKW = KH * KW;
    const int K = Cg * KHKW;
    const idx_t OHW = OH * OW;
    const idx_t HW = H * W;
    const idx_t P = N * OHW;

    const int tid = threadIdx.x;
    const int tx = tid % GEMM_TDIM;
    const int ty = tid / GEMM_TDIM;
    const int kt0 = blockIdx.x * GEMM_BN;
    const int f0 = blockIdx.y * GEMM_BM;

    // Both loaders use the reduction row lk = tid % GEMM_BK (one position p per slice, so one
    // (n, oh, ow) division per thread per slice) and the 4 tile rows/columns tid/16 + 16*r.
    // The 4 k columns of this thread are fixed for the whole kernel: decode them once.
    const int lk = tid % GEMM_BK;
    const int lrow = tid / GEMM_BK;
    constexpr int LOADS = GEMM_BN * GEMM_BK / GEMM_THREADS;  // == GEMM_BM * GEMM_BK / THREADS
    idx_t coff[LOADS];   // c*H*W of column k
    idx_t khd[LOADS];    // kh*dh
    idx_t kwd[LOADS];    // kw*dw
    bool k_ok[LOADS];
#pragma unroll
    for (int r = 0; r < LOADS; ++r) {
        const int k = kt0 + lrow + (GEMM_THREADS / GEMM_BK) * r;
        k_ok[r] = k < K;
        const int kc = k_ok[r] ? k : 0;
        const int c = kc / KHKW;
        const int rs = kc - c * KHKW;
        const int kh = rs / KW;
        const int kw = rs - kh * KW;
        coff[r] = c * HW;
        khd[r] = (idx_t)kh * dh;
        kwd[r] = (idx_t)kw * dw;
    }

    for (int gs = blockIdx.z; gs < groups * splits; gs += gridDim.z) {
        const int g = gs / splits;
        const int s = gs - g * splits;
        const idx_t p_begin = (idx_t)s * p_per_split;
        const idx_t p_end = imin64(P, p_begin + p_per_split);

        T acc[GEMM_TM][GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) acc[i][j] = T(0);
        }

        for (idx_t pk = p_begin; pk < p_end; pk += GEMM_BK) {
            const idx_t p = pk + lk;
            const bool p_ok = p < p_end;
            idx_t n = 0, rem = 0, ih0 = 0, iw0 = 0;
            if (p_ok) {
                n = p / OHW;
                rem = p - n * OHW;
                const idx_t oh = rem / OW;
                const idx_t ow = rem - oh * OW;
                ih0 = oh * sh - pt;
                iw0 = ow * sw - pl;
            }
            // dY slice: 16 neighbouring threads read 16 consecutive positions of one channel.
            const T* dyp = grad_y + (n * F + (idx_t)g * Fg) * OHW + rem;
#pragma unroll
            for (int r = 0; r < LOADS; ++r) {
                const int f = f0 + lrow + (GEMM_THREADS / GEMM_BK) * r;
                As[lk][lrow + (GEMM_THREADS / GEMM_BK) * r] =
                    (p_ok && f < Fg) ? dyp[(idx_t)f * OHW] : T(0);
            }
            // Xcol^T slice: same positions, the thread's 4 fixed (c, kh, kw) taps.
            const T* xp = x + (n * C + (idx_t)g * Cg) * HW;
#pragma unroll
            for (int r = 0; r < LOADS; ++r) {
                T v = T(0);
                if (p_ok && k_ok[r]) {
                    const idx_t ih = ih0 + khd[r];
                    const idx_t iw = iw0 + kwd[r];
                    if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = xp[coff[r] + ih * W + iw];
                }
                Bs[lk][lrow + (GEMM_THREADS / GEMM_BK) * r] = v;
            }
            __syncthreads();
            gemm_tile_update<T>(acc, As, Bs, tx, ty);
            __syncthreads();
        }

        T* out = partial + ((idx_t)s * F + (idx_t)g * Fg) * K;
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
            const int f = f0 + ty + GEMM_TDIM * i;
            if (f >= Fg) continue;
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) {
                const int k = kt0 + tx + GEMM_TDIM * j;
                if (k < K) out[(idx_t)f * K + k] = acc[i][j];
            }
        }
    }
}
