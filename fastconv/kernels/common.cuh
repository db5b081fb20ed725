// Helpers shared by fastconv's CUDA kernels (C++17, compiled by NVRTC through cupy.RawModule).
//
// _gpu.py pastes this header into each .cu text in place of its `#include "common.cuh"` line,
// so the source that CuPy hashes for its on-disk kernel cache covers the header too (CuPy keys
// the cache on the source text and options, not on the files an #include reads).
// NVRTC has no C++ standard library headers: only builtins and CUDA's device math here.
#pragma once

// 64-bit index: N*C*H*W and N*OH*OW may exceed 2^31. Sizes along the reduction dimension of
// the weights (C/groups*KH*KW, F) stay `int`: _gpu.py checks they fit, and 32-bit division
// is several times cheaper than 64-bit in the gather loops.
typedef long long idx_t;

// Implicit-GEMM tiling shared by the three convolution GEMMs: a block of GEMM_THREADS threads
// computes a GEMM_BM x GEMM_BN tile of the output in GEMM_BK-deep slices of the reduction;
// threads form a 16 x 16 grid and each keeps GEMM_TM x GEMM_TN accumulators in registers, at
// rows ty + 16*i and columns tx + 16*j (strided, so a warp reads consecutive shared-memory
// words and writes consecutive output positions).
// (Enumerators rather than constexpr variables: under NVRTC's device-by-default mode an unused
// namespace-scope constexpr variable draws a "declared but never referenced" warning.)
enum : int {
    GEMM_BM = 64,
    GEMM_BN = 64,
    GEMM_BK = 16,
    GEMM_THREADS = 256,
    GEMM_TM = 4,
    GEMM_TN = 4,
    GEMM_TDIM = 16,  // GEMM_BM / GEMM_TM == GEMM_BN / GEMM_TN
    // Block size of the reduction kernels (block_sum / block_max use a static shared buffer).
    REDUCE_THREADS = 256,
};

template <typename T>
__device__ __forceinline__ bool fc_isnan(T v) {
    return v != v;  // IEEE: only NaN compares unequal to itself (no fast-math here)
}

__device__ __forceinline__ float fc_neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double fc_neg_inf(double) {
    return __longlong_as_double(0xfff0000000000000LL);
}
__device__ __forceinline__ float fc_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double fc_nan(double) {
    return __longlong_as_double(0x7ff8000000000000LL);
}

__device__ __forceinline__ float fc_exp(float v) { return expf(v); }
__device__ __forceinline__ double fc_exp(double v) { return exp(v); }
__device__ __forceinline__ float fc_log(float v) { return logf(v); }
__device__ __forceinline__ double fc_log(double v) { return log(v); }

__device__ __forceinline__ idx_t imax64(idx_t a, idx_t b) { return a > b ? a : b; }
__device__ __forceinline__ idx_t imin64(idx_t a, idx_t b) { return a < b ? a : b; }

// ReLU that keeps NaN (like numpy.maximum(v, 0)): `v > 0 ? v : 0` would turn NaN into 0.
template <typename T>
__device__ __forceinline__ T relu_keep_nan(T v) {
    return v < T(0) ? T(0) : v;
}

// Sum of one value per thread over the block, in a fixed tree order (so results are
// deterministic). Needs blockDim.x == REDUCE_THREADS (a power of two); every thread of the
// block must call it; all threads get the result.
template <typename T>
__device__ T block_sum(T v, T* smem) {
    const int t = threadIdx.x;
    smem[t] = v;
    __syncthreads();
    for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) smem[t] += smem[t + s];
        __syncthreads();
    }
    const T r = smem[0];
    __syncthreads();  // smem may be reused by the caller right away
    return r;
}

// Maximum over the block (NaN-propagating), same contract as block_sum.
template <typename T>
__device__ T block_max(T v, T* smem) {
    const int t = threadIdx.x;
    smem[t] = v;
    __syncthreads();
    for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            const T a = smem[t], b = smem[t + s];
            smem[t] = (fc_isnan(a) || a >= b) ? a : b;
        }
        __syncthreads();
    }
    const T r = smem[0];
    __syncthreads();
    return r;
}

// Register-tile update shared by the GEMM kernels: acc += As[:, rows]^T * Bs[:, cols] over
// one GEMM_BK slice. As is [GEMM_BK][GEMM_BM + 1] and Bs is [GEMM_BK][GEMM_BN + 1]; the +1
// column of padding keeps the transposed stores of the loaders free of bank conflicts.
template <typename T>
__device__ __forceinline__ void gemm_tile_update(T (&acc)[GEMM_TM][GEMM_TN],
                                                 const T (*As)[GEMM_BM + 1],
                                                 const T (*Bs)[GEMM_BN + 1], int tx, int ty) {
#pragma unroll
    for (int kk = 0; kk < GEMM_BK; ++kk) {
        T a[GEMM_TM];
        T b[GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) a[i] = As[kk][ty + GEMM_TDIM * i];
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) b[j] = Bs[kk][tx + GEMM_TDIM * j];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) acc[i][j] += a[i] * b[j];
        }
    }
}

// gemm_tile_update for the columns with use[j] only: a skipped column adds nothing at all
// (not 0 * a, which is NaN when a is inf or NaN).
template <typename T>
__device__ __forceinline__ void gemm_tile_update_cols(T (&acc)[GEMM_TM][GEMM_TN],
                                                      const T (*As)[GEMM_BM + 1],
                                                      const T (*Bs)[GEMM_BN + 1], int tx, int ty,
                                                      const bool (&use)[GEMM_TN]) {
#pragma unroll
    for (int kk = 0; kk < GEMM_BK; ++kk) {
        T a[GEMM_TM];
        T b[GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) a[i] = As[kk][ty + GEMM_TDIM * i];
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) b[j] = Bs[kk][tx + GEMM_TDIM * j];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) {
                if (use[j]) acc[i][j] += a[i] * b[j];
            }
        }
    }
}
