// The optimisers' update rules, one thread per element, grid-stride: the arithmetic of the CPU
// kernels (src/optim.pyx), step by step in T, each hyper-parameter already rounded to T by the
// caller. (nvcc/NVRTC may contract a*b+c into an FMA, so GPU and CPU agree to rounding, not bit
// for bit.)
#include "common.cuh"

// Adam with bias correction and L2 weight decay (as torch.optim.Adam), in place.
template <typename T>
__global__ void adam_update(T* __restrict__ p,          // IN/OUT (n,) parameter
                            const T* __restrict__ g,    // IN     (n,) gradient
                            T* __restrict__ m,          // IN/OUT (n,) first moment
                            T* __restrict__ v,          // IN/OUT (n,) second moment
                            idx_t n, T weight_decay, T one_minus_beta1, T beta2,
                            T one_minus_beta2, T bias2_root, T eps, T minus_step) {
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + p[i] * weight_decay;
        const T mi = m[i] + (gi - m[i]) * one_minus_beta1;
        const T vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] + (mi / (sqrt(vi) / bias2_root + eps)) * minus_step;
    }
}

// SGD with momentum (first: the buffer starts as the gradient), Nesterov and L2 weight decay.
template <typename T>
__global__ void sgd_update(T* __restrict__ p,          // IN/OUT (n,) parameter
                           const T* __restrict__ g,    // IN     (n,) gradient
                           T* __restrict__ buf,        // IN/OUT (n,); read only with momentum
                           idx_t n, T weight_decay, T momentum, int first, int nesterov,
                           T minus_lr) {
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + p[i] * weight_decay;
        if (momentum != T(0)) {
            const T b = first ? gi : buf[i] * momentum + gi;
            buf[i] = b;
            gi = nesterov ? gi + b * momentum : b;
        }
        p[i] = p[i] + gi * minus_lr;
    }
}
