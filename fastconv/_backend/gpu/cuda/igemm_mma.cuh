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
//
// Shared memory. The operands are converted once, when the loaders store them (store_a /
// store_b): TF32 keeps tf32(x); 3xTF32 keeps big = tf32(x) and, one plane further (A_PLANE /
// B_PLANE elements on), small = tf32(x - big). So a fragment load is a plain 32-bit load into
// the mma's operand register, without the cvt (and, for 3xTF32, the subtraction) that every
// warp reading the value would otherwise repeat: each A element is read by BN/64 warps, each B
// element by BM/32.
// Layout and banks (32 banks of 4 bytes; a warp's 32-bit access takes one pass when its lanes
// hit 32 different banks, or the same word). Both operands are k-major with rows of
// LD = BM + MMA_PAD (BN + MMA_PAD) elements, and rows 4..7 sit MMA_SKEW elements further on:
// element (k, m) at k*LD + m + (k >= 4 ? MMA_SKEW : 0).
//  * fragment loads: lanes (g, t) read k = t (or t + 4, all lanes), m = 8j + g (j the same for
//    the warp), so the bank is t*LD + g + const (mod 32). A pad of 4 (LD = 4 mod 32, what this
//    tile used before) gives 4t + g: 20 banks for 32 lanes, lanes (g, t) and (g - 4, t + 1) on
//    the same bank, a 2-way conflict on every fragment load. The pad of 8 gives 8t + g: all 32.
//  * the loaders' stores: a warp stores k = tid % 8 at 4 consecutive m (tid / 8 + ...); with
//    LD = 8 (mod 32) alone, rows k and k + 4 would share banks (2-way). The skew of 4 moves
//    rows 4..7 by 4 banks: 8k + (k & 4) + 0..3 covers all 32. Being one constant for all lanes,
//    it leaves the fragment loads' banks distinct, and costs them no register: row t + 4 is
//    row t's address plus 4*LD + 4. (conv's B stores write 32 consecutive n of one row:
//    conflict-free in any layout.)
// tests/test_gpu_banks.py runs these very store and load functions for each lane of a warp
// and counts the distinct words per bank.
enum : int {
    MMA_PAD = 8,
    MMA_SKEW = 4,
};

template <int BM, int BN, int PREC>
struct MmaTile {
    static_assert(PREC == PREC_TF32 || PREC == PREC_3XTF32, "tensor-core precision");
    static constexpr int R = 4, C = 16;
    static constexpr int WARPS_N = BN / 64;
    static constexpr int A_LD = BM + MMA_PAD, B_LD = BN + MMA_PAD;
    static constexpr int PLANES = PREC == PREC_3XTF32 ? 2 : 1;  // big (, small)
    static constexpr int A_PLANE = IGEMM_BK * A_LD + MMA_SKEW;
    static constexpr int B_PLANE = IGEMM_BK * B_LD + MMA_SKEW;
    static constexpr int A_BUF = PLANES * A_PLANE, B_BUF = PLANES * B_PLANE;  // one slice
    int g, t, r0, c0;  // lane row group, lane in group, warp tile's first row and column

    __device__ __forceinline__ explicit MmaTile(int tid)
        : g(tid % 32 / 4), t(tid % 4), r0(tid / 32 / WARPS_N * 32), c0(tid / 32 % WARPS_N * 64) {}
    __device__ __forceinline__ int row(int i) const { return r0 + (i >> 1) * 16 + (i & 1) * 8 + g; }
    __device__ __forceinline__ int col(int j) const { return c0 + (j >> 1) * 8 + 2 * t + (j & 1); }

    // Where element (k, m), 0 <= k < 8, of an operand with rows of ld elements lives (the skew
    // above).
    __device__ __forceinline__ static int at(int ld, int k, int m) {
        return k * ld + m + (k >> 2) * MMA_SKEW;
    }

    // x as TF32 at p[0]; for 3xTF32 also the rounded rest tf32(x - big) at p[PLANE].
    template <int PLANE>
    __device__ __forceinline__ static void put(float* p, float x) {
        const unsigned big = tf32_bits(x);
        p[0] = __uint_as_float(big);
        if constexpr (PREC == PREC_3XTF32)
            p[PLANE] = __uint_as_float(tf32_bits(x - __uint_as_float(big)));
    }
    __device__ __forceinline__ static void store_a(float* As, int k, int m, float v) {
        put<A_PLANE>(As + at(A_LD, k, m), v);
    }
    __device__ __forceinline__ static void store_b(float* Bs, int k, int n, float v) {
        put<B_PLANE>(Bs + at(B_LD, k, n), v);
    }

    // One operand register (and its small part for 3xTF32): already TF32 in shared memory.
    template <int PLANE>
    __device__ __forceinline__ static void frag(const float* p, unsigned& big, unsigned& small) {
        big = __float_as_uint(p[0]);
        if constexpr (PREC == PREC_3XTF32) small = __float_as_uint(p[PLANE]);
    }

    // b0, b1 = (t, g), (t+4, g) of mma column ni.
    __device__ __forceinline__ static void frag_b(const float* pb, int ni, unsigned (&b)[2],
                                                  unsigned (&bs)[2]) {
        frag<B_PLANE>(pb + ni * 8, b[0], bs[0]);
        frag<B_PLANE>(pb + ni * 8 + 4 * B_LD + MMA_SKEW, b[1], bs[1]);
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

    // acc += one IGEMM_BK (= the mma's k of 8) slice. Lane (g, t) reads rows k = t and t + 4:
    // at(ld, t + 4, m) = at(ld, t, m) + 4*ld + MMA_SKEW, since t < 4. TF32 loads all its
    // fragments first (24 registers); 3xTF32, with twice as many, loads B's per mma column
    // (4 live instead of 32): each order is the one ptxas compiles without spills, for every
    // tile on sm_80 and sm_90 (benchmarks/results/ptxas_sm80_sm90.log).
    __device__ __forceinline__ void operator()(float (&acc)[4][16], const float* As,
                                               const float* Bs) const {
        constexpr bool B_FIRST = PREC == PREC_TF32;
        unsigned a[2][4], as[2][4], b[8][2], bs[8][2];
        const float* pa = As + at(A_LD, t, r0 + g);
        const float* pb = Bs + at(B_LD, t, c0 + g);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {  // a0..a3 = (g, t), (g+8, t), (g, t+4), (g+8, t+4)
            frag<A_PLANE>(pa + mi * 16, a[mi][0], as[mi][0]);
            frag<A_PLANE>(pa + mi * 16 + 8, a[mi][1], as[mi][1]);
            frag<A_PLANE>(pa + mi * 16 + 4 * A_LD + MMA_SKEW, a[mi][2], as[mi][2]);
            frag<A_PLANE>(pa + mi * 16 + 8 + 4 * A_LD + MMA_SKEW, a[mi][3], as[mi][3]);
        }
        if constexpr (B_FIRST) {
#pragma unroll
            for (int ni = 0; ni < 8; ++ni) frag_b(pb, ni, b[ni], bs[ni]);
        }
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) {
            if constexpr (!B_FIRST) frag_b(pb, ni, b[ni], bs[ni]);
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                if constexpr (PREC == PREC_3XTF32) {  // the small terms first
                    mma(acc, mi, ni, as[mi], b[ni]);
                    mma(acc, mi, ni, a[mi], bs[ni]);
                }
                mma(acc, mi, ni, a[mi], b[ni]);
            }
        }
    }
};
