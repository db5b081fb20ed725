// Convolution forward and grad_input as implicit GEMMs (no im2col buffer in global memory).
//
// Forward, per group g (Cg = C/groups input and Fg = F/groups output channels):
//     Y_g (Fg x P) = W_g (Fg x K) * Xcol_g (K x P),   K = Cg*KH*KW,  P = N*OH*OW
// where Xcol_g[(c,kh,kw), (n,oh,ow)] = x[n, g*Cg + c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw]
// (zero outside the image) is never stored: each block gathers its GEMM_BK x GEMM_BN slice
// straight from x into shared memory. Bottom/right padding is implied by OH/OW.
//
// grad_input, per group g:
//     dX_g (Cg x Q) = sum over taps (kh, kw) of W_g[:, :, kh, kw]^T (Cg x Fg) * dY_tap (Fg x Q),
// Q = N*H*W, where dY_tap[f, (n,ih,iw)] = dy[n, g*Fg + f, oh, ow] for the output position the
// tap reaches from (ih, iw): oh = (ih + pt - kh*dh)/sh integral and in [0, OH), same for ow.
// Each dX element is owned by one thread: a gather, no atomics, deterministic. Slices of the
// reduction run tap by tap (16 filters at a time), so whether a tap reaches a pixel is known
// per column for the whole slice: taps that miss are skipped, not multiplied by zero (so a
// non-finite weight poisons only the pixels it reaches, like the CPU backend's col2im).
// The price: with Fg not a multiple of 16, each tap's last slice is partly empty.
//
// Grid: x = tiles of P (or Q), y = tiles of Fg (or Cg), z = groups (grid-stride, so any number
// of groups fits the 65535 limit of gridDim.z). Block: GEMM_THREADS threads.
#include "common.cuh"

template <typename T>
__global__ void __launch_bounds__(GEMM_THREADS)
conv2d_forward_igemm(const T* __restrict__ x,       // IN  (N, C, H, W)
                     const T* __restrict__ weight,  // IN  (F, C/groups, KH, KW)
                     const T* __restrict__ bias,    // IN  (F,); read only when has_bias
                     T* __restrict__ y,             // OUT (N, F, OH, OW)
                     idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW, int KH,
                     int KW, int sh, int sw, int pt, int pl, int dh, int dw, int groups,
                     int has_bias, int relu) {
    __shared__ T As[GEMM_BK][GEMM_BM + 1];  // W_g slice, stored k-major for the tile update
    __shared__ T Bs[GEMM_BK][GEMM_BN + 1];  // Xcol_g slice

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
    const idx_t p0 = (idx_t)blockIdx.x * GEMM_BN;
    const int f0 = blockIdx.y * GEMM_BM;

    // This thread always gathers Xcol column b_col (one output position), so the division of
    // the position into (n, oh, ow) happens once, not once per K slice.
    const int b_col = tid % GEMM_BN;
    const int b_row0 = tid / GEMM_BN;
    const idx_t p_load = p0 + b_col;
    const bool p_ok = p_load < P;
    idx_t n_load = 0, ih0 = 0, iw0 = 0;
    if (p_ok) {
        n_load = p_load / OHW;
        const idx_t rem = p_load - n_load * OHW;
        const idx_t oh = rem / OW;
        const idx_t ow = rem - oh * OW;
        ih0 = oh * sh - pt;
        iw0 = ow * sw - pl;
    }

    for (int g = blockIdx.z; g < groups; g += gridDim.z) {
        const T* xg = x + (n_load * C + (idx_t)g * Cg) * HW;  // only dereferenced when p_ok
        const T* wg = weight + (idx_t)g * Fg * K;

        T acc[GEMM_TM][GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) acc[i][j] = T(0);
        }

        for (int k0 = 0; k0 < K; k0 += GEMM_BK) {
            // W slice: the k index runs fastest over threads, so 16 neighbours read 16
            // consecutive weights of one filter (coalesced).
#pragma unroll
            for (int r = 0; r < GEMM_BM * GEMM_BK / GEMM_THREADS; ++r) {
                const int e = tid + r * GEMM_THREADS;
                const int am = e / GEMM_BK;
                const int ak = e % GEMM_BK;
                const int f = f0 + am;
                const int k = k0 + ak;
                As[ak][am] = (f < Fg && k < K) ? wg[(idx_t)f * K + k] : T(0);
            }
            // Xcol slice: neighbouring threads hold neighbouring positions (coalesced reads
            // of x along a row when sw == 1); bounds checks give the zero padding.
#pragma unroll
            for (int r = 0; r < GEMM_BN * GEMM_BK / GEMM_THREADS; ++r) {
                const int bk = b_row0 + r * (GEMM_THREADS / GEMM_BN);
                const int k = k0 + bk;
                T v = T(0);
                if (p_ok && k < K) {
                    const int c = k / KHKW;
                    const int rs = k - c * KHKW;
                    const int kh = rs / KW;
                    const int kw = rs - kh * KW;
                    const idx_t ih = ih0 + (idx_t)kh * dh;
                    const idx_t iw = iw0 + (idx_t)kw * dw;
                    if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = xg[c * HW + ih * W + iw];
                }
                Bs[bk][b_col] = v;
            }
            __syncthreads();
            gemm_tile_update<T>(acc, As, Bs, tx, ty);
            __syncthreads();  // the next slice overwrites As/Bs
        }

        // Epilogue: bias, optional ReLU, scatter of the tile into NCHW.
#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) {
            const idx_t p = p0 + tx + GEMM_TDIM * j;
            if (p >= P) continue;
            const idx_t n = p / OHW;
            const idx_t rem = p - n * OHW;
#pragma unroll
            for (int i = 0; i < GEMM_TM; ++i) {
                const int f = f0 + ty + GEMM_TDIM * i;
                if (f >= Fg) continue;
                const int fo = g * Fg + f;
                T v = acc[i][j];
                if (has_bias) v += bias[fo];
                if (relu) v = relu_keep_nan(v);
                y[(n * F + fo) * OHW + rem] = v;
            }
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(GEMM_THREADS)
conv2d_grad_input_igemm(const T* __restrict__ grad_y,  // IN  (N, F, OH, OW)
                        const T* __restrict__ weight,  // IN  (F, C/groups, KH, KW)
                        T* __restrict__ grad_x,        // OUT (N, C, H, W), fully written
                        idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW, int KH,
                        int KW, int sh, int sw, int pt, int pl, int dh, int dw, int groups) {
    __shared__ T As[GEMM_BK][GEMM_BM + 1];  // W_g^T slice: rows c, 16 filters f of one tap
    __shared__ T Bs[GEMM_BK][GEMM_BN + 1];  // dY_tap slice: 16 filters x 64 pixels
    __shared__ int Hit[GEMM_BN];            // does this slice's tap reach column n's pixel?

    const int Cg = C / groups;
    const int Fg = F / groups;
    const int KHKW = KH * KW;
    const idx_t OHW = OH * OW;
    const idx_t HW = H * W;
    const idx_t Q = N * HW;

    const int tid = threadIdx.x;
    const int tx = tid % GEMM_TDIM;
    const int ty = tid / GEMM_TDIM;
    const idx_t q0 = (idx_t)blockIdx.x * GEMM_BN;
    const int c0 = blockIdx.y * GEMM_BM;

    // This thread always gathers column b_col (one input pixel) of the dY_tap slices.
    const int b_col = tid % GEMM_BN;
    const int b_row0 = tid / GEMM_BN;
    const idx_t q_load = q0 + b_col;
    const bool q_ok = q_load < Q;
    idx_t n_load = 0, th0 = 0, tw0 = 0;
    if (q_ok) {
        n_load = q_load / HW;
        const idx_t rem = q_load - n_load * HW;
        const idx_t ih = rem / W;
        const idx_t iw = rem - ih * W;
        th0 = ih + pt;  // oh*sh == ih + pt - kh*dh for the output rows that saw this pixel
        tw0 = iw + pl;
    }

    for (int g = blockIdx.z; g < groups; g += gridDim.z) {
        const T* dyg = grad_y + (n_load * F + (idx_t)g * Fg) * OHW;  // used only when hit
        const T* wg = weight + (idx_t)g * Fg * Cg * KHKW;

        T acc[GEMM_TM][GEMM_TN];
#pragma unroll
        for (int i = 0; i < GEMM_TM; ++i) {
#pragma unroll
            for (int j = 0; j < GEMM_TN; ++j) acc[i][j] = T(0);
        }

        for (int tap = 0; tap < KHKW; ++tap) {
            const int kh = tap / KW;
            const int kw = tap - kh * KW;
            bool hit = false;
            idx_t oh = 0, ow = 0;
            if (q_ok) {
                const idx_t th = th0 - (idx_t)kh * dh;
                const idx_t tw = tw0 - (idx_t)kw * dw;
                if (th >= 0 && tw >= 0 && th % sh == 0 && tw % sw == 0) {
                    oh = th / sh;
                    ow = tw / sw;
                    hit = oh < OH && ow < OW;
                }
            }
            const T* dyq = dyg + oh * OW + ow;
            if (b_row0 == 0) Hit[b_col] = hit;  // read after the slice's first barrier

            for (int fs = 0; fs < Fg; fs += GEMM_BK) {
                // W^T slice: channel index fastest over threads (conflict-free shared stores;
                // the strided global reads hit the small, cached weight tensor).
#pragma unroll
                for (int r = 0; r < GEMM_BM * GEMM_BK / GEMM_THREADS; ++r) {
                    const int e = tid + r * GEMM_THREADS;
                    const int am = e % GEMM_BM;
                    const int ak = e / GEMM_BM;
                    const int c = c0 + am;
                    const int f = fs + ak;
                    As[ak][am] = (c < Cg && f < Fg) ? wg[((idx_t)f * Cg + c) * KHKW + tap] : T(0);
                }
#pragma unroll
                for (int r = 0; r < GEMM_BN * GEMM_BK / GEMM_THREADS; ++r) {
                    const int bk = b_row0 + r * (GEMM_THREADS / GEMM_BN);
                    const int f = fs + bk;
                    Bs[bk][b_col] = (hit && f < Fg) ? dyq[(idx_t)f * OHW] : T(0);
                }
                __syncthreads();
                bool use[GEMM_TN];
#pragma unroll
                for (int j = 0; j < GEMM_TN; ++j) use[j] = Hit[tx + GEMM_TDIM * j] != 0;
                gemm_tile_update_cols<T>(acc, As, Bs, tx, ty, use);
                __syncthreads();
            }
        }

#pragma unroll
        for (int j = 0; j < GEMM_TN; ++j) {
            const idx_t q = q0 + tx + GEMM_TDIM * j;
            if (q >= Q) continue;
            const idx_t n = q / HW;
            const idx_t rem = q - n * HW;
#pragma unroll
            for (int i = 0; i < GEMM_TM; ++i) {
                const int c = c0 + ty + GEMM_TDIM * i;
                if (c >= Cg) continue;
                grad_x[(n * C + (idx_t)g * Cg + c) * HW + rem] = acc[i][j];
            }
        }
    }
}
