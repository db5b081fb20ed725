// Direct kernels for depthwise convolution (C/groups == 1): output channel f reads only input
// channel c = f / M, with M = F / C output channels per input channel. The implicit GEMM would
// run with a reduction depth of only KH*KW here, so plain per-element loops are faster.
// Every output element is written by exactly one thread (gathers, no atomics).
// Non-finite values follow the implicit GEMM (and the CPU backend): forward and grad_weight
// multiply padded cells as zeros (0 * inf = NaN); grad_input sums only the taps that reach a
// pixel.
#include "common.cuh"

// y[n, f, oh, ow] = act(bias[f] + sum_{kh,kw} x[n, f/M, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw] *
// weight[f, 0, kh, kw]). One thread per output element, grid-stride.
template <typename T>
__global__ void depthwise_forward(const T* __restrict__ x,       // IN  (N, C, H, W)
                                  const T* __restrict__ weight,  // IN  (F, 1, KH, KW)
                                  const T* __restrict__ bias,    // IN  (F,) when has_bias
                                  T* __restrict__ y,             // OUT (N, F, OH, OW)
                                  idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW,
                                  int KH, int KW, int sh, int sw, int pt, int pl, int dh, int dw,
                                  int has_bias, int relu) {
    const int M = F / C;
    const idx_t total = N * F * OH * OW;
    FC_GRID_STRIDE(i, total) {
        idx_t plane, oh, ow;  // plane n * F + f
        plane_position(i, OH, OW, plane, oh, ow);
        const int f = (int)(plane % F);
        const T* xp = x + (plane / F * C + f / M) * H * W;
        const T* wp = weight + (idx_t)f * KH * KW;
        const idx_t ih0 = oh * sh - pt;
        const idx_t iw0 = ow * sw - pl;
        T acc = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const idx_t ih = ih0 + (idx_t)kh * dh;
            const bool row_ok = ih >= 0 && ih < H;
            for (int kw = 0; kw < KW; ++kw) {
                const idx_t iw = iw0 + (idx_t)kw * dw;
                // A padded tap multiplies a zero instead of being skipped, so a non-finite
                // weight gives NaN at the border too (0 * inf), as the implicit GEMM does.
                const T v = (row_ok && iw >= 0 && iw < W) ? xp[ih * W + iw] : T(0);
                acc += v * wp[kh * KW + kw];
            }
        }
        if (has_bias) acc += bias[f];
        if (relu) acc = relu_keep_nan(acc);
        y[i] = acc;
    }
}

// grad_x[n, c, ih, iw] = sum over the M channels f of c and the taps (kh, kw) whose output
// position oh = (ih + pt - kh*dh)/sh, ow = (iw + pl - kw*dw)/sw is integral and in range, of
// grad_y[n, f, oh, ow] * weight[f, 0, kh, kw]. One thread per input element, grid-stride.
template <typename T>
__global__ void depthwise_grad_input(const T* __restrict__ grad_y,  // IN  (N, F, OH, OW)
                                     const T* __restrict__ weight,  // IN  (F, 1, KH, KW)
                                     T* __restrict__ grad_x,        // OUT (N, C, H, W)
                                     idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH,
                                     idx_t OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                     int dh, int dw) {
    const int M = F / C;
    const idx_t total = N * C * H * W;
    FC_GRID_STRIDE(i, total) {
        idx_t plane, ih, iw;  // plane n * C + c
        plane_position(i, H, W, plane, ih, iw);
        const idx_t n = plane / C;
        const int c = (int)(plane % C);
        T acc = T(0);
        for (int m = 0; m < M; ++m) {
            const int f = c * M + m;
            const T* dyp = grad_y + (n * F + f) * OH * OW;
            const T* wp = weight + (idx_t)f * KH * KW;
            for (int kh = 0; kh < KH; ++kh) {
                const idx_t th = ih + pt - (idx_t)kh * dh;
                if (th < 0) break;  // th only decreases with kh
                if (th % sh != 0) continue;
                const idx_t oh = th / sh;
                if (oh >= OH) continue;
                for (int kw = 0; kw < KW; ++kw) {
                    const idx_t tw = iw + pl - (idx_t)kw * dw;
                    if (tw < 0) break;
                    if (tw % sw != 0) continue;
                    const idx_t ow = tw / sw;
                    if (ow >= OW) continue;
                    acc += dyp[oh * OW + ow] * wp[kh * KW + kw];
                }
            }
        }
        grad_x[i] = acc;
    }
}

// partial[s, f, kh, kw] = sum over the positions e = n*OH*OW + oh*OW + ow in split s's range
// [s*e_per_split, (s+1)*e_per_split) of grad_y[n, f, oh, ow] * x[n, f/M, ih, iw] (in range).
// Grid: x = F*KH*KW weights (grid-stride), y = splits; block: REDUCE_THREADS; sum_splits in
// reduce.cu adds the splits (skipped when splits == 1 and partial is grad_weight).
template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS)
depthwise_grad_weight(const T* __restrict__ grad_y,  // IN  (N, F, OH, OW)
                      const T* __restrict__ x,       // IN  (N, C, H, W)
                      T* __restrict__ partial,       // OUT (splits, F, 1, KH, KW)
                      idx_t N, int C, idx_t H, idx_t W, int F, idx_t OH, idx_t OW, int KH,
                      int KW, int sh, int sw, int pt, int pl, int dh, int dw,
                      idx_t e_per_split) {
    __shared__ T smem[REDUCE_THREADS];
    const int M = F / C;
    const int KHKW = KH * KW;
    const idx_t OHW = OH * OW;
    const idx_t HW = H * W;
    const int s = blockIdx.y;
    const idx_t e_begin = (idx_t)s * e_per_split;
    const idx_t e_end = imin64(N * OHW, e_begin + e_per_split);
    for (int ft = blockIdx.x; ft < F * KHKW; ft += gridDim.x) {
        const int f = ft / KHKW;
        const int tap = ft - f * KHKW;
        const int kh = tap / KW;
        const int kw = tap - kh * KW;
        const int c = f / M;
        T acc = T(0);
        for (idx_t e = e_begin + threadIdx.x; e < e_end; e += REDUCE_THREADS) {
            const idx_t n = e / OHW;
            const idx_t rem = e - n * OHW;
            const idx_t oh = rem / OW;
            const idx_t ow = rem - oh * OW;
            const idx_t ih = oh * sh - pt + (idx_t)kh * dh;
            const idx_t iw = ow * sw - pl + (idx_t)kw * dw;
            // Padding multiplies as a zero (a non-finite grad_y gives NaN, as in the GEMM).
            const T v = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[(n * C + c) * HW + ih * W + iw]
                                                                   : T(0);
            acc += grad_y[(n * F + f) * OHW + rem] * v;
        }
        acc = block_sum(acc, smem);
        if (threadIdx.x == 0) partial[(idx_t)s * F * KHKW + ft] = acc;
    }
}
