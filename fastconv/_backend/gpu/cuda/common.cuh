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

// Block size of the reduction kernels (block_sum / block_max use a static shared buffer).
// (An enumerator rather than a constexpr variable: under NVRTC's device-by-default mode an
// unused namespace-scope constexpr variable draws a "declared but never referenced" warning.)
enum : int {
    REDUCE_THREADS = 256,
};

template <typename T>
__device__ __forceinline__ bool fc_isnan(T v) {
    return v != v;  // IEEE: only NaN compares unequal to itself (no fast-math here)
}

template <typename T>
__device__ __forceinline__ bool fc_isfinite(T v) {
    return v - v == T(0);  // inf - inf and NaN - NaN are NaN
}

// n / d for 0 <= n < 2^31 by a multiply-high and a shift (Granlund & Montgomery; CUTLASS's
// FastDivmod): the host computes mul and shift once per divisor (gpu_plans.fast_div), so the
// loops that decode a position every slice do no hardware division. d == 1 is special-cased.
struct FastDiv {
    unsigned d, mul, shift;
    __device__ __forceinline__ unsigned div(unsigned n) const {
        return d == 1 ? n : __umulhi(n, mul) >> shift;
    }
};

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

// The grid-stride loop of the one-thread-per-element kernels: i over [0, total), each thread
// from its global id, in steps of the grid's thread count.
#define FC_GRID_STRIDE(i, total)                                                  \
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (idx_t)gridDim.x * blockDim.x)

// Element i of a (planes, rows, cols) array: its plane, row and column.
__device__ __forceinline__ void plane_position(idx_t i, idx_t rows, idx_t cols, idx_t& plane,
                                               idx_t& row, idx_t& col) {
    col = i % cols;
    const idx_t t = i / cols;
    row = t % rows;
    plane = t / rows;
}

// ReLU that keeps NaN (like numpy.maximum(v, 0)): `v > 0 ? v : 0` would turn NaN into 0.
template <typename T>
__device__ __forceinline__ T relu_keep_nan(T v) {
    return v < T(0) ? T(0) : v;
}

// One value per thread combined over the block by `combine` in a fixed tree order (so results
// are deterministic). Needs blockDim.x == REDUCE_THREADS (a power of two); every thread of the
// block must call it; all threads get the result.
template <typename T, typename Combine>
__device__ T block_reduce(T v, T* smem, Combine combine) {
    const int t = threadIdx.x;
    smem[t] = v;
    __syncthreads();
    for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) smem[t] = combine(smem[t], smem[t + s]);
        __syncthreads();
    }
    const T r = smem[0];
    __syncthreads();  // smem may be reused by the caller right away
    return r;
}

struct SumOf {
    template <typename T>
    __device__ T operator()(T a, T b) const { return a + b; }
};

struct MaxOf {  // NaN-propagating
    template <typename T>
    __device__ T operator()(T a, T b) const { return (fc_isnan(a) || a >= b) ? a : b; }
};

// Sum and maximum (NaN-propagating) over the block: block_reduce's contract.
template <typename T>
__device__ T block_sum(T v, T* smem) { return block_reduce(v, smem, SumOf()); }

template <typename T>
__device__ T block_max(T v, T* smem) { return block_reduce(v, smem, MaxOf()); }
