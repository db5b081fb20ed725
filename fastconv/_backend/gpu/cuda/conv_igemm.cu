// Convolution forward and grad_input as one implicit GEMM (no im2col buffer in global memory).
//
// Both are C (M x cols) = A (M x K) * B (K x cols) per group, where B is gathered on the fly:
//   forward:    M = F/groups filters, columns = output positions (n, oh, ow), K = (c, kh, kw);
//               A = weight rows, B[(c,kh,kw), (n,oh,ow)] = x[n, c, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw].
//   grad_input: one GEMM per stride phase (a, b): the input pixels with (ih+pt) % sh == a and
//               (iw+pl) % sw == b. Only the taps with kh*dh % sh == a (kw*dw % sw == b) reach
//               them, each at a fixed output offset, so for a phase
//               dX[c, (n,i,j)] = sum over (f, tap) of w[f, c, kh, kw] * dy[n, f, i+ohoff, j+owoff]
//               with M = C/groups channels: a dense GEMM, no multiply wasted on taps that miss
//               (3x3 stride 2 used to run 4x the work and discard 3/4 of it).
// The host (fastconv/_backend/gpu_plans.py) describes each phase in a row of `geo` (GEO_* below)
// and lists its reduction in `ktab`: per k an int4 (A offset, B offset, row shift, column shift),
// padded to a multiple of IGEMM_BK with entries that miss. So the inner loop does no division:
// a thread decodes its one B column (n, i, j) once, then adds table offsets and bounds-checks.
//
// Split-K: with few blocks (< 2x the SM count) the reduction is cut into `splits` ranges; split s
// writes its partial tile to out + s*split_stride (a workspace laid out like the output) and
// splitk_reduce adds the splits in a fixed order and applies bias/ReLU (no atomics: results are
// bitwise reproducible). Grid: x = column tiles, y = row tiles, z = groups*phases*splits
// (grid-stride).
#include "common.cuh"
#include "igemm_tile.cuh"
#include "igemm_mma.cuh"
#include "conv_geo.cuh"
#include "conv_loader.cuh"

#define CONV_IGEMM_PARAMS                                                                  \
    const T *__restrict__ A,        /* IN  weights (F, C/groups, KH, KW) */                \
        const T *__restrict__ B,    /* IN  x (forward) or grad_y (grad_input) */           \
        const T *__restrict__ bias, /* IN  (F,); read only when has_bias */                \
        T *__restrict__ out,        /* OUT y / grad_x, or the split-K workspace */         \
        const idx_t *__restrict__ geo, /* IN  (phases, GEO_SIZE) */                        \
        const int *__restrict__ ktab,  /* IN  int4 entries, per phase from geo[GEO_KTAB] */ \
        int groups, int phases, int splits, int has_bias, int relu, int exact_misses,      \
        idx_t split_stride
#define CONV_IGEMM_ARGS \
    A, B, bias, out, geo, ktab, groups, phases, splits, has_bias, relu, exact_misses, split_stride

// The kernel body, for any main-loop math: FmaTile (fp32, float and double) or MmaTile (TF32 /
// 3xTF32 tensor cores, float; conv_tc.cu).
template <typename T, int BM, int BN, typename Tile>
__device__ __forceinline__ void conv_igemm_body(CONV_IGEMM_PARAMS) {
    __shared__ __align__(16) T As[2 * Tile::A_BUF];
    __shared__ __align__(16) T Bs[2 * Tile::B_BUF];
    __shared__ int block_bad;

    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM;
    const idx_t p0 = (idx_t)blockIdx.x * BN;

    const Tile tile(tid);
    for (int z = blockIdx.z; z < groups * phases * splits; z += gridDim.z) {
        const int s = z % splits;
        const int ph = (z / splits) % phases;
        const int g = z / (splits * phases);
        const idx_t* G = geo + (idx_t)ph * GEO_SIZE;
        const int M = (int)G[GEO_M];
        if (m0 >= M || p0 >= G[GEO_COLS]) continue;  // whole block: a smaller phase

        ConvLoader<T, BM, BN> ld;
        ld.tid = tid;
        ld.a = A + g * G[GEO_A_G] + m0 * G[GEO_A_MS];
        ld.b = B + g * G[GEO_IN_G];
        ld.tab = reinterpret_cast<const int4*>(ktab) + G[GEO_KTAB];
        ld.a_ms = G[GEO_A_MS];
        ld.a_rows = M - m0;
        ld.col = gemm_column(G, p0 + tid % BN);
        ld.in_h = (int)G[GEO_IN_H];
        ld.in_w = (int)G[GEO_IN_W];
        ld.check_finite = exact_misses != 0;
        ld.bad = false;
        const long long k_begin = (long long)s * G[GEO_KSPLIT];
        const long long k_end = k_begin + G[GEO_KSPLIT] < G[GEO_KPAD]
                                    ? k_begin + G[GEO_KSPLIT] : G[GEO_KPAD];

        T acc[Tile::R][Tile::C];
#pragma unroll
        for (int i = 0; i < Tile::R; ++i) {
#pragma unroll
            for (int j = 0; j < Tile::C; ++j) acc[i][j] = T(0);
        }
        if (tid == 0) block_bad = 0;
        __syncthreads();  // block_bad cleared before any thread can set it
        igemm_mainloop<T, BM, BN>(tile, acc, ld, As, Bs, k_begin, k_end);
        if (ld.bad) block_bad = 1;
        __syncthreads();
        const bool exact = block_bad != 0;  // rare: recompute this tile tap by tap
        __syncthreads();                    // everyone read block_bad before the next z clears it

        T* o = out + (splits > 1 ? s * split_stride : 0) + g * G[GEO_OUT_G];
        const idx_t c_ms = G[GEO_C_MS];
        if (exact) {  // a separate loop: the accumulators are dead here, registers stay free
            for (int j = 0; j < Tile::C; ++j) {
                const GemmColumn c = gemm_column(G, p0 + tile.col(j));
                for (int i = 0; i < Tile::R && c.ok; ++i) {
                    const int m = m0 + tile.row(i);
                    if (m >= M) continue;
                    T v = exact_sum(A + g * G[GEO_A_G], G[GEO_A_MS], m, ld.b, c, ld.tab, k_begin,
                                    k_end, ld.in_h, ld.in_w);
                    if (splits == 1 && has_bias) v += bias[g * M + m];
                    if (splits == 1 && relu) v = relu_keep_nan(v);
                    o[c.out_off + m * c_ms] = v;
                }
            }
            continue;
        }
#pragma unroll
        for (int j = 0; j < Tile::C; ++j) {
            const GemmColumn c = gemm_column(G, p0 + tile.col(j));
            if (!c.ok) continue;
#pragma unroll
            for (int i = 0; i < Tile::R; ++i) {
                const int m = m0 + tile.row(i);
                if (m >= M) continue;
                T v = acc[i][j];
                if (splits == 1) {
                    if (has_bias) v += bias[g * M + m];
                    if (relu) v = relu_keep_nan(v);
                }
                o[c.out_off + m * c_ms] = v;
            }
        }
    }
}

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS) conv_igemm(CONV_IGEMM_PARAMS) {
    conv_igemm_body<T, BM, BN, FmaTile<T, BM, BN>>(CONV_IGEMM_ARGS);
}

// out[i] = act(sum over s of partial[s*n + i] (+ bias[(i / plane) % F])), s ascending: the
// second pass of a split-K conv_igemm (partial laid out like out). Grid-stride over i.
template <typename T>
__global__ void splitk_reduce(const T* __restrict__ partial,  // IN  (splits, n)
                              const T* __restrict__ bias,     // IN  (F,); when has_bias
                              T* __restrict__ out,            // OUT (n,) = (N, F, plane)
                              idx_t n, int splits, idx_t plane, int F, int has_bias, int relu) {
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = T(0);
        for (int s = 0; s < splits; ++s) v += partial[(idx_t)s * n + i];
        if (has_bias) v += bias[(i / plane) % F];
        if (relu) v = relu_keep_nan(v);
        out[i] = v;
    }
}
