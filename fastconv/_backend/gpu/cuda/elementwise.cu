// Elementwise kernels (ReLU backward, bias + ReLU epilogue of linear layers) and the fused
// softmax cross-entropy. Elementwise kernels run one thread per element, grid-stride.
#include "common.cuh"

// grad_x = grad_y where y > 0 else 0 (y is the ReLU output; NaN in y gives 0).
template <typename T>
__global__ void relu_backward(const T* __restrict__ grad_y,  // IN  (n,)
                              const T* __restrict__ y,       // IN  (n,)
                              T* __restrict__ grad_x,        // OUT (n,)
                              idx_t n) {
    FC_GRID_STRIDE(i, n) {
        grad_x[i] = y[i] > T(0) ? grad_y[i] : T(0);
    }
}

// y[r, c] = act(y[r, c] + bias[c]) in place, after the cuBLAS product of linear_forward.
template <typename T>
__global__ void bias_act(T* __restrict__ y,             // IN/OUT (rows, cols)
                         const T* __restrict__ bias,    // IN (cols,); read only when has_bias
                         idx_t rows, idx_t cols, int has_bias, int relu) {
    const idx_t total = rows * cols;
    FC_GRID_STRIDE(i, total) {
        T v = y[i];
        if (has_bias) v += bias[i % cols];
        if (relu) v = relu_keep_nan(v);
        y[i] = v;
    }
}

// Per row i: log_probs[i] = logits[i] - (m + log(sum_j exp(logits[i, j] - m))), m = max_j
// logits[i, j] (subtracting m keeps exp from overflowing); losses[i] = -log_probs[i, labels[i]]
// (NaN for a label outside [0, K)). One block of REDUCE_THREADS threads per row, grid-stride
// over rows; block reductions in a fixed order, so the result is deterministic.
template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS)
softmax_xent_forward(const T* __restrict__ logits,         // IN  (N, K)
                     const long long* __restrict__ labels,  // IN  (N,)
                     T* __restrict__ log_probs,             // OUT (N, K)
                     T* __restrict__ losses,                // OUT (N,)
                     idx_t N, idx_t K) {
    __shared__ T smem[REDUCE_THREADS];
    const int tid = threadIdx.x;
    for (idx_t row = blockIdx.x; row < N; row += gridDim.x) {
        const T* lp = logits + row * K;
        T m = fc_neg_inf(T(0));
        for (idx_t j = tid; j < K; j += REDUCE_THREADS) {
            const T v = lp[j];
            m = (fc_isnan(m) || m >= v) ? m : v;  // NaN-propagating max
        }
        m = block_max(m, smem);
        T s = T(0);
        for (idx_t j = tid; j < K; j += REDUCE_THREADS) s += fc_exp(lp[j] - m);
        s = block_sum(s, smem);
        // (x - m) - log(s), never x - (m + log(s)): beside a large shared offset m, m + log(s)
        // rounds log(s) away (logits [1e8, 1e8] gave log-probs [0, 0]).
        const T log_s = fc_log(s);
        T* out = log_probs + row * K;
        for (idx_t j = tid; j < K; j += REDUCE_THREADS) out[j] = (lp[j] - m) - log_s;
        if (tid == 0) {
            const long long label = labels[row];
            losses[row] = (label >= 0 && label < K) ? -((lp[label] - m) - log_s) : fc_nan(T(0));
        }
    }
}

// grad_logits[i, j] = (exp(log_probs[i, j]) - (j == labels[i])) * scale.
template <typename T>
__global__ void softmax_xent_backward(const T* __restrict__ log_probs,       // IN  (N, K)
                                      const long long* __restrict__ labels,  // IN  (N,)
                                      T* __restrict__ grad_logits,           // OUT (N, K)
                                      idx_t N, idx_t K, T scale) {
    const idx_t total = N * K;
    FC_GRID_STRIDE(i, total) {
        const idx_t row = i / K;
        const idx_t col = i - row * K;
        T v = fc_exp(log_probs[i]);
        if (col == labels[row]) v -= T(1);
        grad_logits[i] = v * scale;
    }
}
