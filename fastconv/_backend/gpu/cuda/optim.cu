// The optimisers' update rules as multi-tensor kernels: one launch steps every parameter of one
// dtype (and one step count), the arithmetic of the CPU kernels (src/optim.pyx), step by step in
// T, each hyper-parameter already rounded to T by the caller. (nvcc/NVRTC may contract a*b+c
// into an FMA, so GPU and CPU agree to rounding, not bit for bit.)
//
// A launch steps up to OPTIM_PARAMS parameters. The state that stays put between steps is
// described by `tab`, an int64 table the host builds once per parameter set and keeps on the
// device (fastconv/_backend/gpu_optim.py): n_params rows of device addresses (Adam: p, m, v;
// SGD: p, buf), then n_chunks rows (parameter, begin, end) cutting every parameter into pieces of
// at most a few thousand elements. The gradients' addresses, which change whenever a backward
// pass assigns new gradient arrays, come as kernel arguments g0..g15 instead, so a step needs no
// host-to-device copy. Block b steps chunks b, b + gridDim.x, ...; its threads stride over the
// chunk: small and large parameters share one launch, blocks get similar work, nothing is read
// back to the host.
#include "common.cuh"

enum : int {
    ADAM_PTRS = 3,
    SGD_PTRS = 2,
    CHUNK_ROW = 3,
    OPTIM_PARAMS = 16,  // gradient address arguments per launch (gpu_optim.MAX_PARAMS)
};

#define FC_GRAD_PARAMS                                                                       \
    long long g0, long long g1, long long g2, long long g3, long long g4, long long g5,      \
        long long g6, long long g7, long long g8, long long g9, long long g10, long long g11, \
        long long g12, long long g13, long long g14, long long g15
#define FC_GRAD_LIST {g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15}

// Runs step(ptr, g, i) for every element i of every chunk this block owns: ptr[0..WIDTH) the
// parameter's table addresses (data first), g its gradient.
template <typename T, int WIDTH, typename Step>
__device__ __forceinline__ void for_each_element(const long long* __restrict__ tab, int n_params,
                                                 int n_chunks,
                                                 const long long (&grads)[OPTIM_PARAMS],
                                                 Step step) {
    const long long* chunks = tab + (idx_t)WIDTH * n_params;
    for (int c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const long long* ch = chunks + (idx_t)CHUNK_ROW * c;
        T* ptr[WIDTH];
#pragma unroll
        for (int w = 0; w < WIDTH; ++w) ptr[w] = reinterpret_cast<T*>(tab[WIDTH * ch[0] + w]);
        const T* g = reinterpret_cast<const T*>(grads[ch[0]]);
        for (idx_t i = ch[1] + threadIdx.x; i < ch[2]; i += blockDim.x) step(ptr, g, i);
    }
}

// Adam with bias correction and L2 weight decay (as torch.optim.Adam), in place.
template <typename T>
__global__ void adam_update(const long long* __restrict__ tab,  // IN (n_params, 3) + chunks
                            int n_params, int n_chunks, T weight_decay, T one_minus_beta1,
                            T beta2, T one_minus_beta2, T bias2_root, T eps, T minus_step,
                            FC_GRAD_PARAMS) {
    const long long grads[OPTIM_PARAMS] = FC_GRAD_LIST;
    auto step = [&](T* const (&ptr)[ADAM_PTRS], const T* g, idx_t i) {
        T* p = ptr[0];
        T* m = ptr[1];
        T* v = ptr[2];
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + p[i] * weight_decay;
        const T mi = m[i] + (gi - m[i]) * one_minus_beta1;
        const T vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] + (mi / (sqrt(vi) / bias2_root + eps)) * minus_step;
    };
    for_each_element<T, ADAM_PTRS>(tab, n_params, n_chunks, grads, step);
}

// SGD with momentum (first: the buffer starts as the gradient), Nesterov and L2 weight decay.
// The buffer address is only dereferenced with momentum (the host passes p's without it).
template <typename T>
__global__ void sgd_update(const long long* __restrict__ tab,  // IN (n_params, 2) + chunks
                           int n_params, int n_chunks, T weight_decay, T momentum, int first,
                           int nesterov, T minus_lr, FC_GRAD_PARAMS) {
    const long long grads[OPTIM_PARAMS] = FC_GRAD_LIST;
    auto step = [&](T* const (&ptr)[SGD_PTRS], const T* g, idx_t i) {
        T* p = ptr[0];
        T* buf = ptr[1];
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + p[i] * weight_decay;
        if (momentum != T(0)) {
            const T b = first ? gi : buf[i] * momentum + gi;
            buf[i] = b;
            gi = nesterov ? gi + b * momentum : b;
        }
        p[i] = p[i] + gi * minus_lr;
    };
    for_each_element<T, SGD_PTRS>(tab, n_params, n_chunks, grads, step);
}
