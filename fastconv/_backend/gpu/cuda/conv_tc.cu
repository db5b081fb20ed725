// The convolution GEMMs on tensor cores (float, sm_80+): conv_igemm and conv_wgrad with TF32 or
// 3xTF32 main-loop math (igemm_mma.cuh) in place of fp32 FMAs. Same arguments, launch plans,
// split-K workspaces and second passes (splitk_reduce, wgrad_reduce from the fp32 modules) as
// the fp32 kernels; only the products differ. A module of its own: fastconv compiles it only
// when fastconv.set_gpu_precision asks for tensor cores on an sm_80+ device, so the default
// fp32 path never depends on it.
#include "conv_igemm.cu"
#include "conv_wgrad.cu"

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS) conv_igemm_tf32(CONV_IGEMM_PARAMS) {
    conv_igemm_body<T, BM, BN, MmaTile<BM, BN, PREC_TF32>>(CONV_IGEMM_ARGS);
}

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS)
conv_igemm_3xtf32(CONV_IGEMM_PARAMS) {
    conv_igemm_body<T, BM, BN, MmaTile<BM, BN, PREC_3XTF32>>(CONV_IGEMM_ARGS);
}

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS) conv_wgrad_tf32(CONV_WGRAD_PARAMS) {
    conv_wgrad_body<T, BM, BN, MmaTile<BM, BN, PREC_TF32>>(CONV_WGRAD_ARGS);
}

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(TileShape<BM, BN>::THREADS)
conv_wgrad_3xtf32(CONV_WGRAD_PARAMS) {
    conv_wgrad_body<T, BM, BN, MmaTile<BM, BN, PREC_3XTF32>>(CONV_WGRAD_ARGS);
}
