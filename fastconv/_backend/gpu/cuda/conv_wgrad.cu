// Convolution grad_weight (and, fused, grad_bias) as an implicit GEMM with a split reduction.
//
// Per group g:  dW_g (Fg x K) = dY_g (Fg x P) * Xcol_g^T (P x K),  K = (c, kh, kw),
// P = N*OH*OW, Xcol the virtual im2col matrix of conv_igemm.cu's forward, gathered on the fly
// through the forward's k table (int4: unused, x offset c*H*W + kh*dh*W + kw*dw, kh*dh, kw*dw).
// P is usually far larger than Fg*K, so the reduction over P is cut into `splits` contiguous
// ranges of p_per_split positions; split s writes its partial tile to out + s*F*K, and
// wgrad_reduce adds the splits in a fixed order (no float atomics: bitwise reproducible). With
// splits == 1, out is grad_weight itself. Each thread decodes one position p per slice into
// (n, oh, ow) with multiply-high division by constants (FastDiv), not a hardware divide.
//
// grad_bias rides along: the dY slice of row f passes through the blocks of column tile 0 anyway,
// so when bias_out is wanted those blocks also sum it (per split, in a fixed order) into
// bias_out + s*F.
//
// Grid: x = tiles of K, y = tiles of Fg, z = groups*splits (grid-stride).
#include "common.cuh"
#include "igemm_tile.cuh"
#include "igemm_mma.cuh"

template <typename T, int BM, int BN>
struct WgradLoader {
    using S = TileShape<BM, BN>;
    static constexpr int STEP = S::THREADS / IGEMM_BK;
    static constexpr int A_LOADS = BM / STEP;
    static constexpr int B_LOADS = BN / STEP;

    const T* dy;  // grad_y of group g, filter row m0
    const T* x;   // x of group g
    idx_t dy_n, x_n, plane;  // F*OH*OW, C*H*W, OH*OW
    int in_h, in_w;
    FastDiv div_plane, div_ow;
    int sh, sw, pt, pl, rows, tid;
    long long p_end;
    // This thread's k columns: their table entries in registers for float; for double, where
    // the 64 accumulators leave no room (ptxas spilled), re-read from the (L1-cached) table.
    static constexpr bool KEEP = sizeof(T) == 4;
    int4 ent[KEEP ? B_LOADS : 1];
    const int4* tab;
    int kcol0;
    __device__ __forceinline__ int4 entry(int r) const {
        if constexpr (KEEP) return ent[r];
        const int k = kcol0 + STEP * r;
        return k < K ? tab[k] : make_int4(-1, 0, -(1 << 30), 0);
    }
    int K;
    bool with_bias;
    T ra[A_LOADS], rb[B_LOADS], bsum[A_LOADS];

    __device__ __forceinline__ void load(long long p0) {
        const long long p = p0 + tid % IGEMM_BK;
        const bool ok = p < p_end;
        const unsigned pu = ok ? (unsigned)p : 0u;
        const unsigned n = div_plane.div(pu);
        const unsigned rem = pu - n * (unsigned)plane;
        const unsigned oh = div_ow.div(rem);
        const int ow = (int)(rem - oh * div_ow.d);
        const int ih0 = (int)oh * sh - pt;
        const int iw0 = ow * sw - pl;
        const T* dyp = dy + n * dy_n + rem;
        const T* xp = x + n * x_n + (idx_t)ih0 * in_w + iw0;
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            const int m = tid / IGEMM_BK + STEP * r;
            ra[r] = (ok && m < rows) ? dyp[m * plane] : T(0);
            if (with_bias) bsum[r] += ra[r];
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            const int4 e = entry(r);
            const int ih = ih0 + e.z;
            const int iw = iw0 + e.w;
            const bool in = ok && ih >= 0 && ih < in_h && iw >= 0 && iw < in_w;
            rb[r] = in ? xp[e.y] : T(0);
        }
    }

    template <typename Math>  // through the math's store_a / store_b (its layout, conversion)
    __device__ __forceinline__ void store(const Math& math, T* As, T* Bs) const {
        const int k = tid % IGEMM_BK;
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) math.store_a(As, k, tid / IGEMM_BK + STEP * r, ra[r]);
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) math.store_b(Bs, k, tid / IGEMM_BK + STEP * r, rb[r]);
    }
};

#define CONV_WGRAD_PARAMS                                                                    \
    const T *__restrict__ grad_y, /* IN  (N, F, OH, OW) */                                   \
        const T *__restrict__ x,  /* IN  (N, C, H, W) */                                     \
        T *__restrict__ out,      /* OUT (splits, F, K): grad_weight when splits == 1 */     \
        T *__restrict__ bias_out, /* OUT (splits, F) when with_bias, else unused */          \
        const int *__restrict__ ktab, /* IN  int4 per k (the forward's table), K entries */  \
        idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW, int sh, int sw, int pt, \
        int pl, int groups, int K, int splits, idx_t p_per_split, unsigned plane_mul,        \
        unsigned plane_shift, unsigned ow_mul, unsigned ow_shift, int with_bias
#define CONV_WGRAD_ARGS                                                                      \
    grad_y, x, out, bias_out, ktab, N, C, H, W, F, OH, OW, sh, sw, pt, pl, groups, K, splits, \
        p_per_split, plane_mul, plane_shift, ow_mul, ow_shift, with_bias

// The kernel body, for any main-loop math: FmaTile (fp32) or MmaTile (tensor cores, conv_tc.cu).
template <typename T, int BM, int BN, typename Tile>
__device__ __forceinline__ void conv_wgrad_body(CONV_WGRAD_PARAMS) {
    using L = WgradLoader<T, BM, BN>;
    __shared__ __align__(16) T As[2 * Tile::A_BUF];
    __shared__ __align__(16) T Bs[2 * Tile::B_BUF];

    const int tid = threadIdx.x;
    const int k0 = blockIdx.x * BN;
    const int m0 = blockIdx.y * BM;
    const int Cg = C / groups;
    const int Fg = F / groups;
    const idx_t P = N * OH * OW;

    L ld;
    ld.tid = tid;
    ld.dy_n = (idx_t)F * OH * OW;
    ld.x_n = (idx_t)C * H * W;
    ld.plane = OH * OW;
    ld.in_h = (int)H;
    ld.in_w = (int)W;
    ld.div_plane = FastDiv{(unsigned)(OH * OW), plane_mul, plane_shift};
    ld.div_ow = FastDiv{(unsigned)OW, ow_mul, ow_shift};
    ld.sh = sh;
    ld.sw = sw;
    ld.pt = pt;
    ld.pl = pl;
    ld.rows = Fg - m0;
    ld.tab = reinterpret_cast<const int4*>(ktab);
    ld.kcol0 = k0 + tid / IGEMM_BK;
    ld.K = K;
    if constexpr (L::KEEP) {
#pragma unroll
        for (int r = 0; r < L::B_LOADS; ++r) {  // a column past K reads nothing: row shift -2^30
            const int k = ld.kcol0 + L::STEP * r;
            ld.ent[r] = k < K ? ld.tab[k] : make_int4(-1, 0, -(1 << 30), 0);
        }
    }
    const bool bias_block = with_bias != 0 && blockIdx.x == 0;
    ld.with_bias = bias_block;

    const Tile tile(tid);
    for (int gs = blockIdx.z; gs < groups * splits; gs += gridDim.z) {
        const int g = gs / splits;
        const int s = gs - g * splits;
        const long long p_begin = (long long)s * p_per_split;
        ld.p_end = p_begin + p_per_split < P ? p_begin + p_per_split : P;
        ld.dy = grad_y + ((idx_t)g * Fg + m0) * OH * OW;
        ld.x = x + (idx_t)g * Cg * H * W;
#pragma unroll
        for (int r = 0; r < L::A_LOADS; ++r) ld.bsum[r] = T(0);

        T acc[Tile::R][Tile::C];
#pragma unroll
        for (int i = 0; i < Tile::R; ++i) {
#pragma unroll
            for (int j = 0; j < Tile::C; ++j) acc[i][j] = T(0);
        }
        // The range is rounded up to whole slices; positions past p_end load zeros.
        const long long p_stop = p_begin + (ld.p_end - p_begin + IGEMM_BK - 1) / IGEMM_BK * IGEMM_BK;
        igemm_mainloop<T, BM, BN>(tile, acc, ld, As, Bs, p_begin, p_stop);

        T* o = out + ((idx_t)s * F + (idx_t)g * Fg) * K;
#pragma unroll
        for (int i = 0; i < Tile::R; ++i) {
            const int m = m0 + tile.row(i);
            if (m >= Fg) continue;
#pragma unroll
            for (int j = 0; j < Tile::C; ++j) {
                const int k = k0 + tile.col(j);
                if (k < K) o[(idx_t)m * K + k] = acc[i][j];
            }
        }
        if (bias_block) {  // the 8 threads holding row m's partial sums, added in a fixed order
            T* red = As;   // free: the main loop ended with a barrier
#pragma unroll
            for (int r = 0; r < L::A_LOADS; ++r) {
                red[tid] = ld.bsum[r];
                __syncthreads();
                const int m = tid / IGEMM_BK + L::STEP * r;
                if (tid % IGEMM_BK == 0 && m < ld.rows) {
                    T v = T(0);
                    for (int q = 0; q < IGEMM_BK; ++q) v += red[tid + q];
                    bias_out[(idx_t)s * F + (idx_t)g * Fg + m0 + m] = v;
                }
                __syncthreads();
            }
        }
    }
}

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS) conv_wgrad(CONV_WGRAD_PARAMS) {
    conv_wgrad_body<T, BM, BN, FmaTile<T, BM, BN>>(CONV_WGRAD_ARGS);
}

// grad_weight[i] = sum over s of partial[s*nw + i]; grad_bias[f] = sum over s of
// bias_partial[s*F + f] (when has_bias): the second pass of a split conv_wgrad, s ascending.
template <typename T>
__global__ void wgrad_reduce(const T* __restrict__ partial,       // IN  (splits, nw)
                             const T* __restrict__ bias_partial,  // IN  (splits, F)
                             T* __restrict__ grad_weight,         // OUT (nw,)
                             T* __restrict__ grad_bias,           // OUT (F,) when has_bias
                             idx_t nw, int F, int splits, int has_bias) {
    const idx_t n = nw + (has_bias ? F : 0);
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const bool w = i < nw;
        const T* src = w ? partial + i : bias_partial + (i - nw);
        const idx_t ld = w ? nw : F;
        T v = T(0);
        for (int s = 0; s < splits; ++s) v += src[(idx_t)s * ld];
        if (w)
            grad_weight[i] = v;
        else
            grad_bias[i - nw] = v;
    }
}
