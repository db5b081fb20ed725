// The register-blocked GEMM tile shared by the implicit-GEMM convolution kernels.
//
// A block of (BM/8) x (BN/8) threads computes a BM x BN tile of C = A * B in IGEMM_BK-deep
// slices of the reduction. Each thread keeps 8 x 8 accumulators in registers: rows
// ty*4 + {0..3} and BM/2 + ty*4 + {0..3}, columns tx*4 + {0..3} and BN/2 + tx*4 + {0..3}.
// Splitting each thread's 8 rows (columns) into two runs of 4, half a tile apart, is what lets
// a warp read its operands with 128-bit shared-memory loads without bank conflicts: the 16
// threads along x read 16 consecutive float4 of one k row (256 contiguous bytes).
//
// Shared memory is k-major (As[k][m], Bs[k][n]) and double-buffered: while the block multiplies
// slice i out of one buffer, each thread holds slice i+1 in registers (loaded from global memory
// before the math, so the loads are in flight during it) and stores it into the other buffer
// afterwards: one __syncthreads per slice. (cp.async would skip the registers on sm_80+, but the
// CPU emulator the tests run cannot execute it.) The shared-memory layout belongs to the math:
// the loaders say which element (k, m) a value is (store_a / store_b of FmaTile or MmaTile) and
// the math puts it where its own reads want it. FmaTile's rows are padded by IGEMM_PAD
// elements: the loaders store a warp's values at k = tid % 8 and m = tid / 8 + ... (4
// consecutive m), and the pad of 4 moves each k row by 4 banks, so those stores hit 32
// different banks; rows stay 16-byte aligned. (MmaTile pads by 8 and swizzles: igemm_mma.cuh.
// tests/test_gpu_banks.py checks every store and fragment load of both, lane by lane.)
//
// Tile shapes (rows x columns, threads): 128x128 (256), 64x128 (128), 64x64 (64); the host
// (fastconv/_backend/gpu_plans.py) picks one per problem shape.
#pragma once

enum : int {
    IGEMM_BK = 8,
    IGEMM_PAD = 4,
};

template <int BM, int BN>
struct TileShape {
    static constexpr int THREADS = (BM / 8) * (BN / 8);
    static constexpr int TX = BN / 8;  // threads along the columns
    static constexpr int A_LD = BM + IGEMM_PAD;  // FmaTile's rows
    static constexpr int B_LD = BN + IGEMM_PAD;
    static_assert(BM % 32 == 0 && BN % 64 == 0 && THREADS >= BN, "unsupported tile shape");
};

// Four consecutive elements from 16-byte aligned shared memory in one 128-bit load (two for
// double).
__device__ __forceinline__ void load4(float (&r)[8], int at, const float* p) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    r[at] = v.x;
    r[at + 1] = v.y;
    r[at + 2] = v.z;
    r[at + 3] = v.w;
}
__device__ __forceinline__ void load4(double (&r)[8], int at, const double* p) {
    const double2 u = *reinterpret_cast<const double2*>(p);
    const double2 v = *reinterpret_cast<const double2*>(p + 2);
    r[at] = u.x;
    r[at + 1] = u.y;
    r[at + 2] = v.x;
    r[at + 3] = v.y;
}

// Row (column) of the tile that accumulator row i (column j) of thread ty (tx) holds.
template <int BM>
__device__ __forceinline__ int tile_row(int ty, int i) {
    return (i < 4 ? 0 : BM / 2 - 4) + ty * 4 + i;
}

// acc += As^T Bs over one IGEMM_BK slice (As: [BK][A_LD], Bs: [BK][B_LD]). For double, one A
// value at a time instead of all eight: the 64 double accumulators take 128 of the 255
// registers already, and holding both full fragments made ptxas spill.
template <typename T, int BM, int BN>
__device__ __forceinline__ void tile_fma(T (&acc)[8][8], const T* As, const T* Bs, int tx,
                                         int ty) {
    using S = TileShape<BM, BN>;
#pragma unroll
    for (int kk = 0; kk < IGEMM_BK; ++kk) {
        T b[8];
        load4(b, 0, Bs + kk * S::B_LD + tx * 4);
        load4(b, 4, Bs + kk * S::B_LD + BN / 2 + tx * 4);
        if constexpr (sizeof(T) == 8) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const T a = As[kk * S::A_LD + tile_row<BM>(ty, i)];
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] += a * b[j];
            }
        } else {
            T a[8];
            load4(a, 0, As + kk * S::A_LD + ty * 4);
            load4(a, 4, As + kk * S::A_LD + BM / 2 + ty * 4);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
            }
        }
    }
}

// The fp32 math of the main loop: 8 x 8 accumulators per thread (an array the kernel declares
// inside its loop over work items, as T acc[R][C]), accumulator row i at tile row row(i) and
// column j at col(j). The tensor-core alternative, MmaTile in igemm_mma.cuh, has the same
// interface with 4 x 16. (Only the thread's coordinates live in the object, made once before
// that loop: the shape the fp32 kernels had, which ptxas keeps out of local memory for double.)
template <typename T, int BM, int BN>
struct FmaTile {
    using S = TileShape<BM, BN>;
    static constexpr int R = 8, C = 8;
    // One slice's shared memory: k-major rows of A_LD (B_LD) elements, nothing converted.
    static constexpr int A_BUF = IGEMM_BK * S::A_LD;
    static constexpr int B_BUF = IGEMM_BK * S::B_LD;
    __device__ __forceinline__ static void store_a(T* As, int k, int m, T v) {
        As[k * S::A_LD + m] = v;
    }
    __device__ __forceinline__ static void store_b(T* Bs, int k, int n, T v) {
        Bs[k * S::B_LD + n] = v;
    }
    int tx, ty;
    __device__ __forceinline__ explicit FmaTile(int tid)
        : tx(tid % TileShape<BM, BN>::TX), ty(tid / TileShape<BM, BN>::TX) {}
    __device__ __forceinline__ int row(int i) const { return tile_row<BM>(ty, i); }
    __device__ __forceinline__ int col(int j) const { return tile_row<BN>(tx, j); }
    __device__ __forceinline__ void operator()(T (&acc)[8][8], const T* As, const T* Bs) const {
        tile_fma<T, BM, BN>(acc, As, Bs, tx, ty);
    }
};

// The double-buffered main loop over slices [k_begin, k_end) (k_end - k_begin a multiple of
// IGEMM_BK; nothing when empty). The loader supplies load(k0) (global -> its registers) and
// store(math, As, Bs) (its registers -> shared memory, through math.store_a / store_b);
// math(acc, As, Bs) adds one slice's products (FmaTile, MmaTile), whose A_BUF / B_BUF elements
// one buffer of As0 / Bs0 holds. Every thread of the block must call this with the same range
// (it has barriers).
template <typename T, int BM, int BN, typename Loader, typename Math, typename Acc>
__device__ __forceinline__ void igemm_mainloop(const Math& math, Acc& acc, Loader& ld, T* As0,
                                               T* Bs0, long long k_begin, long long k_end) {
    constexpr int A_BUF = Math::A_BUF;
    constexpr int B_BUF = Math::B_BUF;
    if (k_begin >= k_end) return;
    ld.load(k_begin);
    ld.store(math, As0, Bs0);
    __syncthreads();
    int buf = 0;
    for (long long k0 = k_begin; k0 < k_end; k0 += IGEMM_BK) {
        const bool more = k0 + IGEMM_BK < k_end;
        if (more) ld.load(k0 + IGEMM_BK);  // in flight during the math below
        math(acc, As0 + buf * A_BUF, Bs0 + buf * B_BUF);
        if (more) ld.store(math, As0 + (buf ^ 1) * A_BUF, Bs0 + (buf ^ 1) * B_BUF);
        // One barrier per slice: it orders this slice's reads of `buf` before the next
        // iteration's stores into it, and this iteration's stores before the next reads.
        __syncthreads();
        buf ^= 1;
    }
}
