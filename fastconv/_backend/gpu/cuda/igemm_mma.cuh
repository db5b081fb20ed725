// The tensor-core math of the implicit-GEMM main loop (float only, sm_80+): TF32 and 3xTF32.
//
// Opt-in (fastconv.set_gpu_precision); the kernels instantiated with it live in conv_tc.cu, a
// module of their own that is compiled only when asked for on an sm_80+ device.
//
// Why inline `mma.sync.aligned.m16n8k8` PTX rather than WMMA (nvcuda::wmma, m16n16k8): WMMA
// needs <mma.h>, which pulls in cuda_fp16.h and cuda_bf16.h; fastconv compiles its kernels with
// NVRTC through CuPy, which finds those headers only where a CUDA toolkit is installed, and
// where it is they have broken NVRTC builds before (cupy#8466, cuda-python#844). One asm
// statement needs no header at all. The cost: the operand layout in registers is ours to get
// right. It is the PTX ISA's ("Matrix Fragments for mma.m16n8k8", .tf32), restated here and in
// the emulator (tests/gpu_emulation/cuda_emu.h), which exchanges the fragments between the 32
// lanes of a warp exactly as stated; CUTLASS's SM80_16x8x8_F32TF32TF32F32_TN layouts say the
// same. With g = lane / 4 and t = lane % 4:
//   A (16 x 8, row):  a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B (8 x 8, col):   b0 = B[t][g], b1 = B[t+4][g]
//   C, D (16 x 8):    c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
//
// Precision. TF32 keeps 10 mantissa bits: each operand is rounded to nearest (ties away,
// cvt.rna.tf32.f32), a relative error up to 2^-11 per operand, so each product is off by up to
// about 2^-10 (~1e-3) relative; the sums stay fp32. 3xTF32 splits each operand into big =
// tf32(x) and small = tf32(x - big) and adds small*big + big*small + big*big (the small*small
// term, ~2^-22 relative, is dropped): close to fp32 accuracy at three tensor-core products.
#pragma once

enum : int {
    PREC_FP32 = 0,
    PREC_TF32 = 1,
    PREC_3XTF32 = 2,
};

#ifndef FASTCONV_EMULATOR  // the CPU emulator provides both with the same contract
// x rounded to TF32 (round to nearest, ties away from zero), as the bits of a float.
__device__ __forceinline__ unsigned tf32_bits(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d += A * B for one 16 x 8 x 8 TF32 tile of the warp (fragments as above). Every lane of the
// warp must execute it together (.sync.aligned): the kernels call it warp-uniformly.
__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const unsigned (&a)[4],
                                                const unsigned (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// The block tile is cut into warp tiles of 32 rows x 64 columns (BM/32 x BN/64 warps: exactly
// the block's BM*BN/64 threads); a warp tile is 2 x 8 mma tiles of 16 x 8. Each thread keeps
// 64 accumulators, as the fp32 tile does, viewed as acc[4][16]: row(i), col(j) in the block
// tile, acc[2*mi + h][2*ni + c] = mma tile (mi, ni)'s element c0..c3 (h: row + 8, c: column + 1).
// Operands are read from the k-major shared tiles As[k][m], Bs[k][n]: lanes (g, t) read
// k = t (+4), m or n = g + ...; the rows' pad of 4 elements puts k rows 4 banks apart, so the
// 32 lanes hit 32 different banks.
template <int BM, int BN, int PREC>
struct MmaTile {
    static_assert(PREC == PREC_TF32 || PREC == PREC_3XTF32, "tensor-core precision");
    static constexpr int R = 4, C = 16;
    static constexpr int WARPS_N = BN / 64;
    int g, t, r0, c0;  // lane row group, lane in group, warp tile's first row and column

    __device__ __forceinline__ explicit MmaTile(int tid)
        : g(tid % 32 / 4), t(tid % 4), r0(tid / 32 / WARPS_N * 32), c0(tid / 32 % WARPS_N * 64) {}
    __device__ __forceinline__ int row(int i) const { return r0 + (i >> 1) * 16 + (i & 1) * 8 + g; }
    __device__ __forceinline__ int col(int j) const { return c0 + (j >> 1) * 8 + 2 * t + (j & 1); }

    // big = tf32(x); small = tf32(x - big) (3xTF32 only).
    __device__ __forceinline__ static void split(float x, unsigned& big, unsigned& small) {
        big = tf32_bits(x);
        if constexpr (PREC == PREC_3XTF32) small = tf32_bits(x - __uint_as_float(big));
    }

    __device__ __forceinline__ static void mma(float (&acc)[4][16], int mi, int ni,
                                               const unsigned (&a)[4], const unsigned (&b)[2]) {
        float d[4] = {acc[2 * mi][2 * ni], acc[2 * mi][2 * ni + 1], acc[2 * mi + 1][2 * ni],
                      acc[2 * mi + 1][2 * ni + 1]};
        mma_tf32_16x8x8(d, a, b);
        acc[2 * mi][2 * ni] = d[0];
        acc[2 * mi][2 * ni + 1] = d[1];
        acc[2 * mi + 1][2 * ni] = d[2];
        acc[2 * mi + 1][2 * ni + 1] = d[3];
    }

    // acc += one IGEMM_BK (= the mma's k of 8) slice.
    __device__ __forceinline__ void operator()(float (&acc)[4][16], const float* As,
                                               const float* Bs) const {
        using S = TileShape<BM, BN>;
        unsigned a[2][4], as[2][4], b[8][2], bs[8][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
            const int m = r0 + mi * 16 + g;
#pragma unroll
            for (int q = 0; q < 4; ++q)  // q: a0..a3 = (g, t), (g+8, t), (g, t+4), (g+8, t+4)
                split(As[(t + (q >> 1) * 4) * S::A_LD + m + (q & 1) * 8], a[mi][q], as[mi][q]);
        }
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) {
            const int n = c0 + ni * 8 + g;
            split(Bs[t * S::B_LD + n], b[ni][0], bs[ni][0]);
            split(Bs[(t + 4) * S::B_LD + n], b[ni][1], bs[ni][1]);
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
            for (int ni = 0; ni < 8; ++ni) {
                if constexpr (PREC == PREC_3XTF32) {  // the small terms first
                    mma(acc, mi, ni, as[mi], b[ni]);
                    mma(acc, mi, ni, a[mi], bs[ni]);
                }
                mma(acc, mi, ni, a[mi], b[ni]);
            }
        }
    }
};
